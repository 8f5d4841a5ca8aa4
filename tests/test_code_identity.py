"""Code identity: a digest of the installed sources that changes with any uncommitted edit, the
placement of a scheduled job, and the refusal to merge records of different code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.probes import provenance

REPO = Path(__file__).resolve().parent.parent


def digest_of(root: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(provenance, "SOURCE_ROOT", root)
    return provenance.code_digest.__wrapped__()  # uncached: this tree, now


def test_the_digest_follows_every_source_edit_and_nothing_else(tmp_path, monkeypatch):
    for pkg in ("harness", "models"):
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    first = digest_of(tmp_path, monkeypatch)
    assert first == digest_of(tmp_path, monkeypatch)  # stable
    (tmp_path / "models" / "notes.txt").write_text("not code\n")
    (tmp_path / "harness" / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "harness" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert digest_of(tmp_path, monkeypatch) == first
    model = tmp_path / "models" / "convnet.py"
    model.write_text(model.read_text() + "\n# an uncommitted edit\n")
    edited = digest_of(tmp_path, monkeypatch)
    assert edited != first
    suite = tmp_path / "harness" / "suites" / "smoke.toml"
    suite.write_text(suite.read_text().replace("steps = 2", "steps = 3"))
    assert digest_of(tmp_path, monkeypatch) not in (first, edited)  # suites are code too


def test_every_record_carries_this_trees_code_identity():
    fields = provenance.collect("cpu")
    ident = provenance.code_identity()
    assert fields["code_digest"] == ident["code_digest"] and len(ident["code_digest"]) == 16
    commit = provenance.git_commit()
    head = commit[:12] if commit else f"v{provenance.__version__}"
    assert ident["code_identity"].startswith(head)
    assert ident["code_identity"].endswith("/" + ident["code_digest"])
    assert ("-dirty/" in ident["code_identity"]) == bool(commit and commit.endswith("-dirty"))


def test_a_job_says_where_it_ran():
    fleet = {"TRAINMARK_EXECUTOR": "local", "TRAINMARK_JOB_ID": "123",
             "TRAINMARK_PARTITION": "laptop", "TRAINMARK_NODE": "vm", "SLURM_JOB_ID": "9"}
    assert provenance.job_placement(fleet) == {"executor": "local", "job_id": "123",
                                               "partition": "laptop", "node": "vm"}
    own_sbatch = {"SLURM_JOB_ID": "9", "SLURM_JOB_PARTITION": "h100", "SLURMD_NODENAME": "g7"}
    assert provenance.job_placement(own_sbatch) == {"executor": "slurm", "job_id": "9",
                                                    "partition": "h100", "node": "g7"}
    assert set(provenance.job_placement({}).values()) == {None}


def write(path: Path, digest: str, commit: str, throughput: float = 100.0) -> str:
    rec = {"model": "convnet", "dataset": "synthetic", "batch_size": 8, "precision": "fp32",
           "optimizer": "sgd", "device": "cpu", "status": "ok", "throughput": throughput,
           "throughput_unit": "samples/s", "repeat_throughputs": [throughput] * 3,
           "host": "h", "device_name": "CPU", "code_digest": digest,
           "code_identity": f"{commit}/{digest}"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec) + "\n")
    return str(path)


def test_report_merges_different_code_only_when_told(tmp_path, capsys):
    a = write(tmp_path / "a.jsonl", "1" * 16, "aaaa")
    b = write(tmp_path / "b.jsonl", "2" * 16, "bbbb")
    assert main(["report", a, b, "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert f"aaaa/{'1' * 16}" in err and f"bbbb/{'2' * 16}" in err
    assert not (tmp_path / "no").exists()
    assert main(["report", a, b, "--out", str(tmp_path / "yes"), "--allow-different-code"]) == 0
    same = write(tmp_path / "c.jsonl", "1" * 16, "cccc")  # another commit, the same sources
    assert main(["report", a, same, "--out", str(tmp_path / "same")]) == 0


def test_compare_judges_two_codes_but_not_a_side_merged_from_two(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", "1" * 16, "aaaa")
    cand = write(tmp_path / "cand.jsonl", "2" * 16, "bbbb")
    assert main(["compare", base, cand]) != 2  # old code vs new code: what compare is for
    write(tmp_path / "mixed" / "x.jsonl", "1" * 16, "aaaa")
    write(tmp_path / "mixed" / "y.jsonl", "3" * 16, "cccc")
    capsys.readouterr()
    assert main(["compare", base, str(tmp_path / "mixed")]) == 2
    assert "the candidate merges records of different code" in capsys.readouterr().err
    assert main(["compare", base, str(tmp_path / "mixed"), "--allow-different-code"]) != 2
