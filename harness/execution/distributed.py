"""Multi-process data-parallel runs: DistributedDataParallel launched by ``torch.distributed.run``.

Two ways in, one code path:

- ``trainmark run --nproc N`` (single node): for each config with ``nproc > 1`` the sweep process
  launches ``python -m torch.distributed.run --standalone --nproc-per-node N -m
  harness.execution.distributed CONFIG.json OUTDIR`` and reads back rank 0's record.
- Under a launcher the user started (multi-node torchrun, SLURM ``srun``), ``trainmark run``
  itself finds ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (or SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``/
  ``SLURM_LOCALID`` in an srun step), meets the other ranks and runs every config
  data-parallel, each config's ranks in fresh workers with a process group of their own
  (``execution.isolation.RankIsolation``; ``--isolation none``: in the launched processes);
  rank 0 alone writes results.

Each rank trains ``batch_size`` samples per step (the global batch is ``batch_size x nproc``);
throughput is global (all ranks) and each timed region lasts as long as its slowest rank. The
process-group primitives live in ``harness.core.dist``; the launcher's exit status is honoured.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.core import dist
from harness.core.config import RunConfig
from harness.core.runner import Peaks, Runner
from harness.execution.proctree import kill_tree

FAIL_RANK_ENV = "TRAINMARK_TEST_FAIL_RANK"  # test-only: this rank exits at once
HANG_RANK_ENV = "TRAINMARK_TEST_HANG_RANK"  # test-only: this rank hangs (a launch timeout)


# ----------------------------------------------------------------------- single-node launch


def run_config(runner: Runner, cfg: RunConfig,
               timeout_s: float | None = None) -> dict[str, object]:
    """One config's record: in this process, or under torchrun when ``cfg.nproc > 1`` (or the
    config shards with FSDP, which needs a process group even of one) and no process group is
    active yet (each rank is then its own process; rank 0 reports). ``timeout_s`` bounds a
    launch (the sweep's ``--timeout``)."""
    if cfg.needs_launcher and not dist.active():
        rec = runner.base_record(cfg)
        started = time.perf_counter()
        rec.update(launch(cfg, runner.data_dir, runner.download, runner.run_id, runner.peaks,
                          timeout_s=timeout_s))
        rec["isolation"] = runner.isolation  # the sweep's choice, not the ranks' own
        rec["wall_time_s"] = time.perf_counter() - started
        return rec
    return runner.run(cfg)


ALLOC_CONF = "PYTORCH_CUDA_ALLOC_CONF"
EXPANDABLE = "expandable_segments:True"


def rank_environment(cfg: RunConfig, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Variables a config's ranks get beyond the launcher's: a sharded (FSDP) config on CUDA
    runs with the caching allocator's expandable segments, as torchtitan's launcher sets them
    (its gathers and frees of whole blocks fragment fixed segments), unless the user set the
    allocator's configuration."""
    e = os.environ if environ is None else environ
    if cfg.parallel == "fsdp" and cfg.device.startswith("cuda") and ALLOC_CONF not in e:
        return {ALLOC_CONF: EXPANDABLE}
    return {}


def torchrun_command(cfg: RunConfig, spec: Path, out_dir: str) -> list[str]:
    """The launcher's command line for one config (its ranks write into ``out_dir``)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            f"--nproc-per-node={cfg.nproc}", "-m", "harness.execution.distributed",
            str(spec), out_dir]


def launch(cfg: RunConfig, data_dir: str, download: bool, run_id: str,
           peaks: Peaks | None = None, timeout_s: float | None = None) -> dict[str, object]:
    """Run ``cfg`` (``nproc > 1``, or fsdp) under torchrun on this node; return rank 0's record.

    A launch that fails without a record (a rank crashed) becomes an ``error`` record carrying
    the launcher's exit status and the last line of its output. One still running after
    ``timeout_s`` (default: twice the collective timeout plus two minutes) is a ``timeout``
    record, and the launcher is killed with its whole process tree: torchrun starts each rank
    in a session of its own, so killing torchrun alone would leave them holding their GPUs.
    """
    with tempfile.TemporaryDirectory(prefix="trainmark-ddp-") as tmp:
        spec = Path(tmp) / "config.json"
        spec.write_text(json.dumps({"config": dataclasses.asdict(cfg), "data_dir": data_dir,
                                    "download": download, "run_id": run_id,
                                    "peaks": peaks or {}}))
        cmd = torchrun_command(cfg, spec, tmp)
        limit = timeout_s or dist.collective_timeout_s() * 2 + 120
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **rank_environment(cfg),
                                     "PYTHONPATH": _pythonpath()})
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            killed = kill_tree(proc.pid)
            proc.communicate()
            return {"status": "timeout", "nproc": cfg.nproc,
                    "error": f"no record within {limit:g} s; the launcher and its "
                             f"{len(killed) - 1} processes were killed"}
        finally:
            if proc.poll() is None:  # interrupted: the ranks go down with us
                kill_tree(proc.pid)
                proc.wait()
        why, code = root_cause(err + out), proc.returncode
        result = Path(tmp) / "rank0.json"
        if result.exists():
            rec = json.loads(result.read_text())
            if code != 0:  # rank 0 recorded, but the run failed: say which rank failed first
                own = f"; rank 0: {rec['error']}" if rec.get("error") else ""
                rec.update(status="error" if rec.get("status") == "ok" else rec.get("status"),
                           error=f"torchrun exited with status {code}: {why}{own}"[:300])
            return rec
        errors = sorted(Path(tmp).glob("rank*.json"))
        if errors:  # a non-zero rank recorded why it failed
            return json.loads(errors[0].read_text())
        return {"status": "error", "error": f"torchrun exited with status {code}: {why}"[:300],
                "nproc": cfg.nproc}


def root_cause(output: str) -> str:
    """One line from torchrun's failure summary: which rank died first, and how."""
    text = output.split("Root Cause", 1)[-1]
    rank = re.search(r"rank\s*:\s*(\d+)", text)
    code = re.search(r"exitcode\s*:\s*(-?\d+)", text)
    if "Root Cause" in output and rank and code:
        return f"rank {rank.group(1)} failed first with exit code {code.group(1)}"
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip(" =-")]
    return lines[-1] if lines else "no output"


def _pythonpath() -> str:
    """This process's ``harness`` first on the ranks' path (an A/B side's tree, a checkout)."""
    root = str(Path(__file__).resolve().parents[2])
    rest = os.environ.get("PYTHONPATH")
    return root + (os.pathsep + rest if rest else "")


def worker_main(argv: list[str]) -> int:
    """Entry point of each rank launched by ``launch``."""
    spec = json.loads(Path(argv[0]).read_text())
    cfg = RunConfig(**spec["config"])
    env = dist.init(cfg.device.split(":")[0])
    if env is not None and os.environ.get(FAIL_RANK_ENV) == str(env.rank):
        os._exit(3)  # test-only: a rank that dies without a word, as a crashed process does
    if env is not None and os.environ.get(HANG_RANK_ENV):
        pids = os.environ.get("TRAINMARK_TEST_PIDS")
        if pids:  # test-only: where the test finds the ranks it expects to be killed
            Path(pids, f"rank{env.rank}.pid").write_text(str(os.getpid()))
        if os.environ[HANG_RANK_ENV] == str(env.rank):
            time.sleep(3600)  # test-only: a hung rank (a deadlock, a stuck collective)
    try:
        # The parent's peaks: ranks run under torchrun's OMP_NUM_THREADS=1, so a cache lookup
        # here would miss the entry measured with the sweep's thread count.
        peaks = {k: tuple(v) for k, v in spec.get("peaks", {}).items()}
        rec = Runner(run_id=spec["run_id"], data_dir=spec["data_dir"],
                     download=spec["download"], peaks=peaks).run(cfg)
    finally:
        me = dist.rank()
        dist.shutdown()
    if me == 0 or rec.get("status") != "ok":
        Path(argv[1], f"rank{me}.json").write_text(json.dumps(rec))
    return 0 if rec.get("status") == "ok" else 1


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
