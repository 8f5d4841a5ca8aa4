"""Bad input to every command: exit status 2, one ``trainmark: error: ...`` line naming the bad
value (and the valid choices, where the code offers them), and nothing created or changed on disk.

Each case runs in an empty working directory (``tmp_path``) holding only the files it needs; the
whole tree, empty directories included, is snapshotted before and after ``main(argv)``. Every
case fails during validation, before anything is trained or measured.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.cli import COMMANDS, main
from harness.cli.verdict_options import FORMATS
from harness.core.config import AC_MODES, PARALLEL_MODES
from harness.core.data import DATASET_CHOICES, IMAGE_DATASETS
from harness.core.devices import DEVICE_CHOICES
from harness.core.optim import OPTIMIZERS
from harness.core.precision import PRECISIONS
from harness.core.suites import list_suites
from harness.probes.peak import DTYPES
from models import list_models

FIXTURES = Path(__file__).parent / "fixtures"
A = "fixtures/machine_a_cpu.jsonl"  # results from one CPU machine (9 records)
B = "fixtures/machine_b_gpu.jsonl"  # results from a GPU machine
MALFORMED = "fixtures/malformed.jsonl"  # line 2 of 3 is not JSON

BAD_TOML = 'models = ["convnet"\nsteps = \n'
STRING_BOOL = 'models = ["convnet"]\ndeterministic = "false"\n'
MODEL_DEVICES = 'models = ["convnet"]\n\n[model.convnet]\ndevices = ["cpu"]\n'
UNKNOWN_MODEL_TABLE = 'models = ["convnet"]\n\n[model.nosuchnet]\nsteps = 3\n'
UNKNOWN_KEY = 'models = ["convnet"]\nbogus_key = 3\n'

# Records of two different codes (digests of the installed sources differ).
CODE_A = ('{"model": "convnet", "dataset": "synthetic", "status": "ok", "throughput": 1.0, '
          '"code_digest": "1111111111111111", "code_identity": "aaaa/1111111111111111"}\n')
CODE_B = CODE_A.replace("1111111111111111", "2222222222222222").replace("aaaa", "bbbb")

# The valid choices, as the error messages list them.
SUITES = ", ".join(list_suites())
MODELS = ", ".join(list_models())
DEVICES = ", ".join(DEVICE_CHOICES)


@dataclass
class Case:
    """``argv`` run in a working directory holding ``files`` (path -> text or bytes; ``None``
    makes an empty directory; ``"fixture"`` copies the file of that name from tests/fixtures)."""

    id: str
    argv: list[str]
    names: list[str]  # substrings the error line must contain: the bad value, valid choices
    files: dict[str, str | bytes | None] = field(default_factory=dict)
    # WITH_BASELINE only: the --threads values this machine has a stored baseline in bl/ for
    # (0: the inherited thread count).
    baselines: tuple[int, ...] = (1, 0)
    git: bool = False  # gets as far as resolving a ref in the package's git checkout
    env: dict[str, str] = field(default_factory=dict)  # environment variables set for the case
    slurm: bool = False  # needs the local Slurm cluster (conftest's slurm_cluster)


def _fixture_files(*names: str) -> dict[str, str | bytes | None]:
    return {n: "fixture" for n in names}


SUITE_CASES = [  # (id, TOML text, what the error names); run through run, ab and baseline
    ("malformed-toml", BAD_TOML, ["malformed suite file", "bad.toml"]),
    ("string-boolean", STRING_BOOL, ["deterministic", "'false'", "true or false"]),
    ("model-table-devices", MODEL_DEVICES, ["[model.convnet]", "'devices'", "valid here:"]),
    ("unknown-model-table", UNKNOWN_MODEL_TABLE, ["[model.nosuchnet]", "'nosuchnet'", MODELS]),
    ("unknown-suite-key", UNKNOWN_KEY, ["'bogus_key'", "valid:"]),
]

CASES: list[Case] = [
    # ------------------------------------------------------------------ top level
    Case("top-unknown-command", ["nosuchcmd"], ["'nosuchcmd'", "run", "baseline"]),
    # ------------------------------------------------------------------ run
    Case("run-unknown-suite", ["run", "--suite", "nosuchsuite"], ["'nosuchsuite'", SUITES]),
    Case("run-missing-suite-file", ["run", "--suite", "missing.toml"], ["'missing.toml'"]),
    Case("run-unknown-model", ["run", "--models", "nosuchnet"], ["'nosuchnet'", MODELS]),
    Case("run-unknown-precision", ["run", "--suite", "smoke", "--precisions", "fp64"],
         ["'fp64'", ", ".join(PRECISIONS)]),
    Case("run-unknown-optimizer", ["run", "--suite", "smoke", "--optimizers", "rmsprop"],
         ["'rmsprop'", ", ".join(OPTIMIZERS)]),
    # issue 24: an unknown Llama preset names every model, the presets among them
    Case("run-unknown-llama-preset", ["run", "--models", "llama3.1-7b"],
         ["'llama3.1-7b'", "llama3-debug, llama3.1-405b, llama3.1-70b, llama3.1-8b, llama3.2-1b, "
          "llama3.2-3b"]),
    Case("run-unknown-parallel", ["run", "--suite", "smoke", "--parallel", "zero3"],
         ["'zero3'", ", ".join(PARALLEL_MODES)]),
    Case("run-bad-activation-checkpointing",
         ["run", "--suite", "smoke", "--activation-checkpointing", "selective:0"],
         ["'selective:0'", ", ".join(AC_MODES)]),
    Case("run-unknown-dataset", ["run", "--suite", "smoke", "--dataset", "imagenet"],
         ["'imagenet'", ", ".join(DATASET_CHOICES)]),
    Case("run-unknown-device", ["run", "--suite", "smoke", "--devices", "tpu"], ["'tpu'", DEVICES]),
    Case("run-steps-zero", ["run", "--suite", "smoke", "--steps", "0"], ["steps", "> 0", "0"]),
    Case("run-steps-not-int", ["run", "--steps", "many"], ["--steps", "'many'"]),
    Case("run-batch-sizes-not-int", ["run", "--batch-sizes", "8,x"], ["--batch-sizes", "'8,x'"]),
    Case("run-empty-model-list", ["run", "--models", ","], ["--models", "','"]),
    Case("run-seeds-zero", ["run", "--suite", "smoke", "--seeds", "0"], ["seeds", "got 0"]),
    Case("run-lr-negative", ["run", "--suite", "smoke", "--lr", "-0.1"], ["lr", "-0.1"]),
    Case("run-target-accuracy-above-one", ["run", "--suite", "smoke", "--target-accuracy", "1.5"],
         ["target accuracy", "1.5"]),
    Case("run-missing-text-dataset", ["run", "--models", "transformer",
                                      "--dataset", "text:missing.txt"], ["missing.txt"]),
    Case("run-missing-cifar10", ["run", "--models", "convnet", "--dataset", "cifar10"],
         ["CIFAR-10", "--download", "synthetic"]),
    Case("run-out-is-directory",
         ["run", "--suite", "smoke", "--devices", "cpu", "--out", "outdir"],
         ["--out outdir", "directory"], {"outdir": None}),
    Case("run-out-exists", ["run", "--suite", "smoke", "--devices", "cpu", "--out", "old.jsonl"],
         ["old.jsonl", "exists"], {"old.jsonl": '{"model": "convnet"}\n'}),
    Case("run-out-not-jsonl", ["run", "--suite", "smoke", "--devices", "cpu", "--out", "r.csv"],
         ["r.csv", ".jsonl"]),
    Case("run-resume-nothing", ["run", "--suite", "smoke", "--devices", "cpu", "--resume"],
         ["--resume", "results"]),
    Case("run-unknown-option", ["run", "--bogus-flag"], ["--bogus-flag"]),
    Case("run-resume-malformed-out", ["run", "--suite", "smoke", "--devices", "cpu", "--resume",
                                      "--out", "m.jsonl"], ["m.jsonl:2", "malformed record"],
         {"m.jsonl": '{"model": "convnet"}\n{"model": \n{"model": "convnet"}\n'}),
    Case("run-text-dataset-not-utf8", ["run", "--models", "transformer",
                                       "--dataset", "text:latin1.txt"],
         ["latin1.txt", "not UTF-8"], {"latin1.txt": "caf\u00e9".encode("latin-1")}),
    Case("run-text-dataset-too-short",
         ["run", "--suite", "smoke", "--models", "transformer", "--devices", "cpu",
          "--dataset", "text:tiny.txt", "--quiet", "--no-report"],
         ["tiny.txt", "characters"], {"tiny.txt": "hello world\n"}),
    Case("run-out-parent-is-file",
         ["run", "--suite", "smoke", "--models", "convnet", "--devices", "cpu", "--quiet",
          "--no-report", "--out", "taken/r.jsonl"], ["taken"], {"taken": "x\n"}),
    Case("run-tensorboard-is-file",
         ["run", "--suite", "smoke", "--models", "convnet", "--devices", "cpu", "--quiet",
          "--no-report", "--out", "r.jsonl", "--tensorboard", "taken"], ["taken"],
         {"taken": "x\n"}),
    *[Case(f"run-suite-{sid}", ["run", "--suite", "bad.toml"], names, {"bad.toml": text})
      for sid, text, names in SUITE_CASES],
    # ------------------------------------------------------------------ list, env
    Case("list-unknown-option", ["list", "--bogus-flag"], ["--bogus-flag"]),
    Case("list-extra-argument", ["list", "a", "b"], ["unrecognized arguments: b"]),
    Case("list-unknown-pattern", ["list", "models"], ["'models'", "convnet"]),
    Case("env-unknown-option", ["env", "--json"], ["--json"]),
    # ------------------------------------------------------------------ show
    Case("show-missing-file", ["show", "missing.jsonl"], ["missing.jsonl"]),
    Case("show-malformed-file", ["show", MALFORMED], ["malformed.jsonl:2", "malformed record"],
         _fixture_files(MALFORMED)),
    Case("show-csv-suffix", ["show", A, "--csv", "out.txt"], ["--csv out.txt", ".csv"],
         _fixture_files(A)),
    Case("show-parquet-suffix", ["show", A, "--parquet", "out.csv"],
         ["--parquet out.csv", ".parquet"], _fixture_files(A)),
    Case("show-missing-file-with-export", ["show", "missing.jsonl", "--csv", "new/out.csv"],
         ["missing.jsonl"]),
    Case("show-csv-is-directory", ["show", A, "--csv", "out.csv"], ["out.csv", "directory"],
         {**_fixture_files(A), "out.csv": None}),
    Case("show-parquet-is-directory-after-csv",
         ["show", A, "--csv", "ok.csv", "--parquet", "out.parquet"],
         ["out.parquet", "directory"], {**_fixture_files(A), "out.parquet": None}),
    Case("show-csv-parent-is-file", ["show", A, "--csv", "taken/out.csv"], ["taken"],
         {**_fixture_files(A), "taken": "x\n"}),
    # ------------------------------------------------------------------ reproduce
    Case("reproduce-unknown-experiment", ["reproduce", "paper"], ["'paper'", "valid: article"]),
    Case("reproduce-epochs-zero", ["reproduce", "article", "--epochs", "0"], ["--epochs", "0"]),
    Case("reproduce-epochs-not-int", ["reproduce", "article", "--epochs", "ten"],
         ["--epochs", "'ten'"]),
    Case("reproduce-train-samples-zero", ["reproduce", "article", "--train-samples", "0"],
         ["--train-samples", "0"]),
    Case("reproduce-unknown-dataset", ["reproduce", "article", "--dataset", "mnist"],
         ["'mnist'", ", ".join(IMAGE_DATASETS)]),
    Case("reproduce-report-is-directory", ["reproduce", "article", "--report", "rep"],
         ["--report rep", "directory"], {"rep": None}),
    Case("reproduce-unknown-device",
         ["reproduce", "article", "--dataset", "synthetic", "--device", "tpu"],
         ["'tpu'", DEVICES]),
    Case("reproduce-missing-cifar10", ["reproduce", "article", "--device", "cpu"],
         ["CIFAR-10", "--download", "synthetic"]),
    Case("reproduce-out-exists",
         ["reproduce", "article", "--dataset", "synthetic", "--device", "cpu",
          "--out", "old.jsonl"], ["old.jsonl", "exists"], {"old.jsonl": "{}\n"}),
    Case("reproduce-out-parent-is-file",
         ["reproduce", "article", "--dataset", "synthetic", "--device", "cpu", "--epochs", "1",
          "--train-samples", "8", "--out", "taken/r.jsonl"], ["taken"], {"taken": "x\n"}),
    # ------------------------------------------------------------------ rerun
    Case("rerun-missing-file", ["rerun", "missing.jsonl"], ["missing.jsonl"]),
    Case("rerun-malformed-file", ["rerun", MALFORMED], ["malformed.jsonl:2"],
         _fixture_files(MALFORMED)),
    Case("rerun-unknown-record", ["rerun", A, "--record", "nosuchid"],
         ["'nosuchid'", "valid:", "aaaa0001"], _fixture_files(A)),
    Case("rerun-out-exists", ["rerun", A, "--out", "old.jsonl"], ["old.jsonl", "exists"],
         {**_fixture_files(A), "old.jsonl": "{}\n"}),
    Case("rerun-out-not-jsonl", ["rerun", A, "--out", "new.csv"], ["new.csv", ".jsonl"],
         _fixture_files(A)),
    Case("rerun-out-is-directory", ["rerun", A, "--out", "outdir"], ["outdir"],
         {**_fixture_files(A), "outdir": None}),
    Case("rerun-out-parent-is-file", ["rerun", A, "--record", "aaaa0001",
                                      "--out", "taken/r.jsonl"], ["taken"],
         {**_fixture_files(A), "taken": "x\n"}),
    # ------------------------------------------------------------------ verify
    Case("verify-missing-file", ["verify", "missing.jsonl"], ["missing.jsonl"]),
    Case("verify-unknown-record", ["verify", A, "--record", "nosuchid"],
         ["'nosuchid'", "valid:", "aaaa0001"], _fixture_files(A)),
    Case("verify-negative-loss-rtol", ["verify", A, "--loss-rtol", "-1"],
         ["--loss-rtol", "-1"], _fixture_files(A)),
    Case("verify-negative-throughput-tolerance", ["verify", A, "--throughput-tolerance", "-0.5"],
         ["--throughput-tolerance", "-0.5"], _fixture_files(A)),
    Case("verify-negative-confirm", ["verify", A, "--confirm", "-1"], ["--confirm", "-1"]),
    Case("verify-unknown-format", ["verify", A, "--format", "xml"], ["'xml'", "text", "json"],
         _fixture_files(A)),
    Case("verify-out-exists", ["verify", A, "--out", "old.jsonl"], ["old.jsonl", "exists"],
         {**_fixture_files(A), "old.jsonl": "{}\n"}),
    # ------------------------------------------------------------------ explain
    Case("explain-missing-file", ["explain", "missing.jsonl", A], ["missing.jsonl"],
         _fixture_files(A)),
    Case("explain-top-zero", ["explain", A, A, "--top", "0"], ["--top", "0"],
         _fixture_files(A)),
    Case("explain-no-profiles", ["explain", A, A], ["no config has a profile"],
         _fixture_files(A)),
    Case("ab-confirm-negative", ["ab", "HEAD", "--confirm", "-1"], ["--confirm", "-1"]),
    # ------------------------------------------------------------------ history
    Case("history-missing-file", ["history", "missing.jsonl"], ["missing.jsonl"]),
    Case("history-unknown-metric", ["history", A, "--metrics", "speed"],
         ["'speed'", "throughput, memory, accuracy"], _fixture_files(A)),
    Case("history-bad-threshold", ["history", A, "--threshold", "200%"],
         ["--threshold", "'200%'"], _fixture_files(A)),
    Case("history-out-is-file", ["history", A, "--out", "taken.txt"],
         ["--out taken.txt", "file"], {**_fixture_files(A), "taken.txt": "x\n"}),
    Case("history-no-commits", ["history", MALFORMED], ["malformed.jsonl"],
         _fixture_files(MALFORMED)),
    # ------------------------------------------------------------------ publish
    Case("publish-missing-file", ["publish", "missing.jsonl"], ["missing.jsonl"]),
    Case("publish-unknown-metric", ["publish", A, "--metrics", "speed"],
         ["'speed'", "throughput, memory, accuracy"], _fixture_files(A)),
    Case("publish-bad-threshold", ["publish", A, "--threshold", "200%"],
         ["--threshold", "'200%'"], _fixture_files(A)),
    Case("publish-out-is-file", ["publish", A, "--out", "taken.txt"],
         ["--out taken.txt", "file"], {**_fixture_files(A), "taken.txt": "x\n"}),
    Case("publish-unknown-reference", ["publish", A, "--out", "s", "--reference", "nosuchbox"],
         ["'nosuchbox'", "amd-epyc-7b13-torch2.14.1-16t"], _fixture_files(A)),
    Case("publish-price-unknown-machine", ["publish", A, "--out", "s", "--price", "nosuchbox=2"],
         ["'nosuchbox'", "amd-epyc-7b13-torch2.14.1-16t"], _fixture_files(A)),
    Case("publish-malformed-price", ["publish", A, "--out", "s", "--price", "h100"],
         ["'h100'", "LABEL=USD_PER_HOUR"], _fixture_files(A)),
    Case("publish-no-commits", ["publish", MALFORMED, "--out", "s"], ["malformed.jsonl"],
         _fixture_files(MALFORMED)),
    # ------------------------------------------------------------------ export
    Case("export-no-target", ["export"], ["choose a target", "mlflow"]),
    Case("export-unknown-target", ["export", "wandb"], ["'wandb'", "mlflow"]),
    Case("export-no-tracking-uri", ["export", "mlflow", A], ["--tracking-uri"],
         _fixture_files(A)),
    Case("export-missing-file", ["export", "mlflow", "missing.jsonl", "--tracking-uri",
                                 "sqlite:///m.db"], ["missing.jsonl"]),
    # ------------------------------------------------------------------ peak
    Case("peak-budget-zero", ["peak", "--budget", "0"], ["--budget", "0"]),
    Case("peak-unknown-dtype", ["peak", "--devices", "cpu", "--dtypes", "fp64"],
         ["'fp64'", ", ".join(DTYPES)]),
    Case("peak-unknown-device", ["peak", "--devices", "tpu"], ["'tpu'", DEVICES]),
    Case("peak-tf32-on-cpu", ["peak", "--devices", "cpu", "--dtypes", "tf32"], ["tf32", "CUDA"]),
    Case("peak-empty-dtypes", ["peak", "--devices", "cpu", "--dtypes", ","], ["--dtypes", "','"]),
    # ------------------------------------------------------------------ report
    Case("report-missing-file", ["report", "missing.jsonl"], ["missing.jsonl"]),
    Case("report-out-is-file", ["report", A, "--out", "taken.txt"], ["--out taken.txt", "file"],
         {**_fixture_files(A), "taken.txt": "x\n"}),
    Case("report-unknown-baseline", ["report", A, B, "--baseline", "nosuchmachine"],
         ["'nosuchmachine'", "valid:", "AMD EPYC 7B13", B], _fixture_files(A, B)),
    Case("report-out-parent-is-file", ["report", A, "--out", "taken/sub"], ["taken"],
         {**_fixture_files(A), "taken": "x\n"}),
    # ------------------------------------------------------------------ compare
    Case("compare-missing-baseline", ["compare", "missing.jsonl", A], ["missing.jsonl"],
         _fixture_files(A)),
    Case("compare-bad-threshold", ["compare", A, A, "--threshold", "lots"],
         ["--threshold", "'lots'"], _fixture_files(A)),
    Case("compare-threshold-out-of-range", ["compare", A, A, "--threshold", "100%"],
         ["--threshold", "'100%'"], _fixture_files(A)),
    Case("compare-bad-alpha", ["compare", A, A, "--alpha", "2"], ["--alpha", "'2'"],
         _fixture_files(A)),
    Case("compare-bad-accuracy-tolerance", ["compare", A, A, "--accuracy-tolerance", "x"],
         ["--accuracy-tolerance", "'x'"], _fixture_files(A)),
    Case("compare-md-out-is-directory", ["compare", A, A, "--md-out", "verdicts"],
         ["--md-out verdicts", "directory"], {**_fixture_files(A), "verdicts": None}),
    Case("compare-json-out-is-directory", ["compare", A, A, "--json-out", "verdicts"],
         ["--json-out verdicts", "directory"], {**_fixture_files(A), "verdicts": None}),
    Case("compare-unknown-format", ["compare", A, A, "--format", "html"],
         ["'html'", ", ".join(repr(f) for f in FORMATS)], _fixture_files(A)),
    Case("compare-different-machines", ["compare", A, B, "--md-out", "new/v.md"],
         ["different machines", "'AMD EPYC 7B13'", "--allow-different-machines"],
         _fixture_files(A, B)),
    Case("compare-empty-directory", ["compare", "empty", A], ["empty"],
         {**_fixture_files(A), "empty": None}),
    Case("compare-md-out-parent-is-file", ["compare", A, A, "--md-out", "taken/v.md"], ["taken"],
         {**_fixture_files(A), "taken": "x\n"}),
    Case("compare-json-out-parent-is-file",
         ["compare", A, A, "--md-out", "ok.md", "--json-out", "taken/v.json"], ["taken"],
         {**_fixture_files(A), "taken": "x\n"}),
    # ------------------------------------------------------------------ ab
    Case("ab-unknown-ref", ["ab", "no-such-ref-xyz", "--out-dir", "new/ab"],
         ["'no-such-ref-xyz'"], git=True),
    Case("ab-rounds-zero", ["ab", "HEAD", "--rounds", "0"], ["--rounds", "0"]),
    Case("bisect-rounds-zero", ["bisect", "HEAD~1", "HEAD", "--rounds", "0"],
         ["--rounds", "0"]),
    Case("bisect-unknown-ref", ["bisect", "no-such-ref-xyz", "HEAD"], ["'no-such-ref-xyz'"]),
    Case("bisect-unknown-model", ["bisect", "HEAD~1", "HEAD", "--models", "nosuchnet"],
         ["'nosuchnet'", MODELS]),
    Case("backfill-rounds-zero", ["backfill", "HEAD~1", "HEAD", "--rounds", "0"],
         ["--rounds", "0"]),
    Case("backfill-unknown-ref", ["backfill", "HEAD", "no-such-ref-xyz"], ["'no-such-ref-xyz'"]),
    Case("backfill-newer-first", ["backfill", "HEAD", "HEAD~1"],
         ["is not an ancestor of", "older commit first"]),
    Case("backfill-out-dir-is-a-file", ["backfill", "HEAD~1", "HEAD", "--out-dir", "taken"],
         ["--out-dir", "taken", "is a file"], {"taken": "x\n"}),
    Case("backfill-unknown-optimizer", ["backfill", "HEAD~1", "HEAD", "--optimizers", "lion"],
         ["'lion'", "sgd"]),
    Case("ab-threads-negative", ["ab", "HEAD", "--threads", "-1"], ["--threads", "-1"]),
    Case("ab-extra-time-negative", ["ab", "HEAD", "--extra-time", "-5"],
         ["--extra-time", "-5"]),
    Case("ab-extra-time-nan", ["ab", "HEAD", "--extra-time", "nan"], ["--extra-time", "nan"]),
    Case("ab-unknown-interleave", ["ab", "HEAD", "--interleave", "blocks"],
         ["'blocks'", "configs", "runs"]),
    Case("ab-bad-candidate-env", ["ab", "HEAD", "--candidate-env", "NOEQUALS"],
         ["--candidate-env", "'NOEQUALS'"]),
    Case("ab-md-out-is-directory", ["ab", "HEAD", "--md-out", "verdicts"],
         ["--md-out verdicts", "directory"], {"verdicts": None}),
    Case("ab-out-dir-not-empty", ["ab", "HEAD", "--out-dir", "full"],
         ["--out-dir full", "not an empty directory"], {"full/keep.txt": "x\n"}, git=True),
    Case("ab-out-dir-is-file", ["ab", "HEAD", "--out-dir", "taken"],
         ["--out-dir taken", "is a file"], {"taken": "x\n"}, git=True),
    Case("ab-unknown-model", ["ab", "HEAD", "--models", "nosuchnet", "--out-dir", "new/ab"],
         ["'nosuchnet'", MODELS]),
    Case("ab-abbreviated-out", ["ab", "HEAD", "--out", "x"], ["--out"]),
    *[Case(f"ab-suite-{sid}", ["ab", "HEAD", "--suite", "bad.toml", "--out-dir", "new/ab"],
           names, {"bad.toml": text}) for sid, text, names in SUITE_CASES],
    # ------------------------------------------------------------------ baseline
    Case("baseline-no-subcommand", ["baseline"], ["record, check or path"]),
    Case("baseline-unknown-subcommand", ["baseline", "update"],
         ["'update'", "record", "check", "path"]),
    Case("baseline-record-rounds-zero", ["baseline", "record", "--rounds", "0"],
         ["--rounds", "0"]),
    Case("baseline-record-threads-negative", ["baseline", "record", "--threads", "-1"],
         ["--threads", "-1"]),
    Case("baseline-record-unknown-suite", ["baseline", "record", "--suite", "nosuchsuite"],
         ["'nosuchsuite'", SUITES]),
    Case("baseline-record-unknown-model", ["baseline", "record", "--models", "nosuchnet"],
         ["'nosuchnet'", MODELS]),
    *[Case(f"baseline-record-suite-{sid}", ["baseline", "record", "--suite", "bad.toml"],
           names, {"bad.toml": text}) for sid, text, names in SUITE_CASES],
    Case("baseline-check-no-baseline", ["baseline", "check", "--dir", "empty"],
         ["no baseline for this machine", "empty", "baseline record"], {"empty": None}),
    Case("baseline-check-md-out-is-directory",
         ["baseline", "check", "--dir", "empty", "--md-out", "verdicts"],
         ["--md-out verdicts", "directory"], {"empty": None, "verdicts": None}),
    Case("baseline-check-bad-threshold",
         ["baseline", "check", "--dir", "empty", "--threshold", "-3"],
         ["--threshold", "'-3'"], {"empty": None}),
    Case("baseline-path-missing-results", ["baseline", "path", "missing.jsonl"],
         ["missing.jsonl"]),
    Case("baseline-path-two-machines", ["baseline", "path", "--dir", "empty", A, B],
         ["machines (", "amd-epyc-7b13", "a baseline is for one machine"],
         {**_fixture_files(A, B), "empty": None}),
    Case("baseline-path-threads-not-int", ["baseline", "path", "--threads", "all"],
         ["--threads", "'all'"]),
    Case("baseline-path-threads-negative", ["baseline", "path", "--threads", "-1"],
         ["--threads", "-1"]),
    # ------------------------------------------------------------------ report/compare: code
    Case("report-different-code", ["report", "a.jsonl", "b.jsonl", "--out", "new/rep"],
         ["different code", "aaaa/1111111111111111", "bbbb/2222222222222222",
          "--allow-different-code"], {"a.jsonl": CODE_A, "b.jsonl": CODE_B}),
    Case("compare-side-of-different-code", ["compare", A, "mixed", "--md-out", "new/v.md"],
         ["the candidate", "different code", "aaaa/1111111111111111", "--allow-different-code"],
         {**_fixture_files(A), "mixed/a.jsonl": CODE_A, "mixed/b.jsonl": CODE_B}),
    # ------------------------------------------------------------------ fleet
    Case("fleet-no-slurm", ["fleet", "--partitions", "hw_a", "--suite", "smoke",
                            "--out-dir", "new/f"],
         ["Slurm is not available", "sbatch", "--executor local"],
         env={"PATH": "/nonexistent-trainmark-test"}),
    Case("fleet-unknown-partition", ["fleet", "--partitions", "hw_a,h100", "--suite", "smoke",
                                     "--out-dir", "new/f"], ["'h100'", "hw_a, hw_b"],
         slurm=True),
    Case("fleet-cuda-on-a-cpu-partition", ["fleet", "--partitions", "hw_a", "--suite", "smoke",
                                           "--devices", "cuda", "--out-dir", "new/f"],
         ["'cuda'", "'hw_a'", "0 GPU"], slurm=True),
    Case("fleet-out-dir-is-a-file", ["fleet", "--executor", "local", "--partitions", "a",
                                     "--out-dir", "taken"], ["--out-dir taken", "is a file"],
         {"taken": "x\n"}),
    Case("fleet-missing-partitions", ["fleet", "--out-dir", "new/f"], ["--partitions"]),
    Case("fleet-missing-out-dir", ["fleet", "--partitions", "a"], ["--out-dir"]),
    Case("fleet-each-node-with-nodes", ["fleet", "--partitions", "a", "--out-dir", "new/f",
                                        "--each-node", "--nodes", "2"],
         ["--each-node", "--nodes 2"]),
    Case("fleet-local-with-constraint", ["fleet", "--executor", "local", "--partitions", "a",
                                         "--out-dir", "new/f", "--constraint", "h100"],
         ["--constraint", "--executor local"]),
    Case("fleet-local-across-nodes", ["fleet", "--executor", "local", "--partitions", "a",
                                      "--out-dir", "new/f", "--nodes", "2"],
         ["--nodes 2", "--executor local"]),
    Case("fleet-nodes-zero", ["fleet", "--partitions", "a", "--out-dir", "new/f",
                              "--nodes", "0"], ["--nodes", "0"]),
    Case("fleet-nproc-zero", ["fleet", "--executor", "local", "--partitions", "a",
                              "--out-dir", "new/f", "--nproc", "0"], ["--nproc", "'0'"]),
    Case("fleet-bad-sbatch-line", ["fleet", "--partitions", "a", "--out-dir", "new/f",
                                   "--sbatch", "mail type=END"], ["--sbatch", "'mail type=END'"]),
    Case("fleet-unknown-model", ["fleet", "--executor", "local", "--partitions", "a",
                                 "--out-dir", "new/f", "--models", "nosuchnet"],
         ["'nosuchnet'", MODELS]),
    Case("fleet-out-dir-of-other-code", ["fleet", "--executor", "local", "--partitions", "a",
                                         "--suite", "smoke", "--out-dir", "old"],
         ["old", "other code", "aaaa/1111111111111111", "--allow-different-code"],
         {"old/a.jsonl": CODE_A}),
    Case("fleet-status-not-a-fleet", ["fleet", "status", "empty"], ["empty", "no fleet"],
         {"empty": None}),
    Case("fleet-status-missing-dir", ["fleet", "status", "nowhere"], ["nowhere"]),
]

# Cases that need a stored baseline for this machine (so `baseline check` gets past that check).
WITH_BASELINE: list[Case] = [
    Case("baseline-check-rounds-zero", ["baseline", "check", "--dir", "bl", "--rounds", "0"],
         ["--rounds", "0"]),
    Case("baseline-check-threads-negative",
         ["baseline", "check", "--dir", "bl", "--threads", "-1", "--out-dir", "new/chk"],
         ["--threads", "-1"]),
    Case("baseline-check-unknown-model",
         ["baseline", "check", "--dir", "bl", "--models", "nosuchnet", "--out-dir", "new/chk"],
         ["'nosuchnet'", MODELS]),
    Case("baseline-check-out-dir-not-empty",
         ["baseline", "check", "--dir", "bl", "--out-dir", "full"],
         ["--out-dir full", "not an empty directory"], {"full/keep.txt": "x\n"}),
    Case("baseline-check-threads-negative-named",
         ["baseline", "check", "--dir", "bl", "--threads", "-1"], ["--threads", "-1"],
         baselines=(1,)),
    *[Case(f"baseline-check-suite-{sid}",
           ["baseline", "check", "--dir", "bl", "--suite", "bad.toml"], names, {"bad.toml": text})
      for sid, text, names in SUITE_CASES],
]


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every file (bytes digest, mtime) and directory (empty ones too) under ``root``."""
    out: dict[str, tuple] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = ("link", str(p.readlink()))
        elif p.is_dir():
            out[rel] = ("dir",)
        else:
            st = p.stat()
            out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns)
    return out


def _populate(root: Path, files: dict[str, str | bytes | None]) -> None:
    for rel, text in files.items():
        path = root / rel
        if text is None:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if text == "fixture":
            shutil.copyfile(FIXTURES / Path(rel).name, path)
        elif isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")


def _check(case: Case, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(root)
    capsys.readouterr()  # drop anything the setup printed
    status = main(list(case.argv))
    err = capsys.readouterr().err
    after = _snapshot(root)

    assert status == 2, f"exit status {status}, stderr: {err!r}"
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"not exactly one line: {err!r}"
    assert lines[0].startswith("trainmark: error: "), lines[0]
    assert "Traceback" not in err
    for name in case.names:
        assert name in lines[0], f"{name!r} not named in {lines[0]!r}"
    created = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert (created, removed, changed) == ([], [], []), (
        f"disk changed: created {created}, removed {removed}, changed {changed}")


def _in_git_checkout() -> bool:
    """`ab` resolves refs in the checkout the package runs from (not the working directory)."""
    from harness.probes.provenance import SOURCE_ROOT

    try:
        return subprocess.run(["git", "-C", str(SOURCE_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


NO_GIT = pytest.mark.skipif(not _in_git_checkout(), reason="harness is not in a git checkout")


def _params(cases: list[Case]) -> list:
    params = []
    for c in cases:
        params.append(pytest.param(c, id=c.id, marks=[NO_GIT] if c.git else []))
    return params


@pytest.mark.parametrize("case", _params(CASES))
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> None:
    if case.slurm:
        request.getfixturevalue("slurm_cluster")
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    _populate(tmp_path, case.files)
    _check(case, tmp_path, capsys)


@pytest.fixture(scope="module")
def baseline_names() -> dict[int, str]:
    """--threads -> the file name `baseline path` gives this machine's baseline (it only
    prints the path)."""
    names = {}
    for threads in (1, 0):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            assert main(["baseline", "path", "--dir", "bl", "--threads", str(threads)]) == 0
        names[threads] = Path(out.getvalue().strip()).name
    return names


@pytest.mark.parametrize("case", _params(WITH_BASELINE))
def test_bad_input_with_stored_baseline(case: Case, baseline_names: dict[int, str],
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    stored = (FIXTURES / "machine_a_cpu.jsonl").read_text(encoding="utf-8")
    _populate(tmp_path, {**case.files,
                         **{f"bl/{baseline_names[t]}": stored for t in case.baselines}})
    _check(case, tmp_path, capsys)


def test_snapshot_sees_empty_directories_and_changed_files(tmp_path: Path) -> None:
    """The disk check itself: an empty folder, a new file and a rewritten file all show."""
    _populate(tmp_path, {"a.txt": "one\n"})
    before = _snapshot(tmp_path)
    (tmp_path / "empty" / "nested").mkdir(parents=True)
    assert set(_snapshot(tmp_path)) - set(before) == {"empty", "empty/nested"}
    (tmp_path / "a.txt").write_text("two\n", encoding="utf-8")
    assert _snapshot(tmp_path)["a.txt"] != before["a.txt"]


def test_every_command_has_a_case() -> None:
    """Each registered command (and each baseline subcommand) gets bad input above."""
    covered = {c.argv[0] for c in CASES + WITH_BASELINE}
    assert set(COMMANDS) <= covered, sorted(set(COMMANDS) - covered)
    subs = {c.argv[1] for c in CASES + WITH_BASELINE
            if c.argv[0] == "baseline" and len(c.argv) > 1}
    assert {"record", "check", "path"} <= subs


def test_case_ids_are_unique() -> None:
    """The ids are unique (pytest would otherwise rename them silently)."""
    ids = [c.id for c in CASES + WITH_BASELINE]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    assert all(re.fullmatch(r"[a-z0-9-]+", i) for i in ids)


def test_a_malformed_slowdown_knob_is_refused_before_any_worker_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The test-only knob is read in every worker; a bad value must not become one crashed
    record per config (exit 0) but one usage error, with nothing recorded."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAINMARK_INJECT_SLOWDOWN", "fast")
    case = Case("knob-malformed", ["run", "--suite", "smoke", "--out", "new/r.jsonl"],
                ["TRAINMARK_INJECT_SLOWDOWN='fast'", "0.087@optimizer=adam"])
    _check(case, tmp_path, capsys)


def test_fp8_on_a_cpu_is_an_unavailable_record_not_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Whether fp8 runs depends on the device (compute capability 8.9, torchao): the sweep is
    valid input, and the config is recorded as ``unavailable`` with the reason (exit 0)."""
    import json

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--models", "llama3-debug", "--devices", "cpu", "--precisions", "fp8",
                 "--optimizers", "adam", "--batch-sizes", "2", "--isolation", "none",
                 "--quiet", "--no-report", "--out", "r.jsonl"]) == 0
    (rec,) = [json.loads(line) for line in Path("r.jsonl").read_text().splitlines()]
    assert (rec["status"], rec["precision"]) == ("unavailable", "fp8")
    assert "compute capability 8.9" in rec["error"] and "cpu" in rec["error"]
