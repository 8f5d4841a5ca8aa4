"""Multi-process data-parallel runs: DistributedDataParallel launched by ``torch.distributed.run``.

Two ways in, one code path:

- ``trainmark run --nproc N`` (single node): for each config with ``nproc > 1`` the sweep process
  launches ``python -m torch.distributed.run --standalone --nproc-per-node N -m
  harness.distributed CONFIG.json OUTDIR`` and reads back rank 0's record.
- Under a launcher the user started (multi-node torchrun, SLURM ``srun``), ``trainmark run``
  itself finds ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (or SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``/
  ``SLURM_LOCALID`` with ``MASTER_ADDR`` set), joins the process group and runs every config
  data-parallel; rank 0 alone writes results.

Backends: ``gloo`` on the CPU, ``nccl`` on CUDA. Each rank trains ``batch_size`` samples per
step (the global batch is ``batch_size x nproc``); throughput is global (all ranks) and each
timed region lasts as long as its slowest rank. A collective timeout
(``TRAINMARK_DIST_TIMEOUT_S``, default 300 s) turns a dead peer into an error instead of a hang,
and the launcher's exit status is honoured.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

TIMEOUT_ENV = "TRAINMARK_DIST_TIMEOUT_S"
FAIL_RANK_ENV = "TRAINMARK_TEST_FAIL_RANK"  # test-only: this rank exits at once


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int


def env_from_os(environ: dict[str, str] | None = None) -> DistEnv | None:
    """The launcher's rank variables, or None outside a multi-process launch."""
    e = os.environ if environ is None else environ
    if "WORLD_SIZE" in e and "RANK" in e:
        # torchrun-style variables: honoured even for one process (DDP path with --nproc 1).
        world, rank, local = int(e["WORLD_SIZE"]), int(e["RANK"]), int(e.get("LOCAL_RANK", 0))
        return DistEnv(rank, world, local)
    if "SLURM_NTASKS" in e and "SLURM_PROCID" in e and "MASTER_ADDR" in e:
        world, rank = int(e["SLURM_NTASKS"]), int(e["SLURM_PROCID"])
        local = int(e.get("SLURM_LOCALID", 0))
        return DistEnv(rank, world, local) if world > 1 else None  # a 1-task job: no group
    return None


def active() -> bool:
    return dist.is_available() and dist.is_initialized()



def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_device(device: str) -> str:
    """``cuda:*`` -> this rank's GPU (``cuda:LOCAL_RANK``); other devices unchanged."""
    env = env_from_os()
    if active() and env is not None and device.startswith("cuda"):
        return f"cuda:{env.local_rank}"
    return device


def init(device_type: str) -> DistEnv | None:
    """Join the process group the launcher set up (idempotent); None outside a launch."""
    env = env_from_os()
    if env is None or active():
        return env
    os.environ.setdefault("RANK", str(env.rank))  # SLURM: init_method env:// reads these
    os.environ.setdefault("WORLD_SIZE", str(env.world_size))
    os.environ.setdefault("MASTER_PORT", "29500")
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
    timeout = dt.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "300")))
    dist.init_process_group(backend=backend, timeout=timeout)
    return env


def shutdown() -> None:
    if active():
        dist.destroy_process_group()


def max_over_ranks(value: float) -> float:
    """The largest ``value`` on any rank (a timed region lasts as long as its slowest rank)."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_true(flag: bool) -> bool:
    """True only if ``flag`` is true on every rank (so all ranks fail together, none hangs)."""
    if not active():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def gather(obj: object) -> list[object]:
    """Every rank's ``obj``, in rank order (on every rank)."""
    if not active():
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids)


# ----------------------------------------------------------------------- single-node launch


def launch(cfg, data_dir: str, download: bool, run_id: str) -> dict[str, object]:
    """Run ``cfg`` (``nproc > 1``) under torchrun on this node; return rank 0's record.

    A launch that fails without a record (a rank crashed, a timeout) becomes an ``error``
    record carrying the launcher's exit status and the last line of its output.
    """
    with tempfile.TemporaryDirectory(prefix="trainmark-ddp-") as tmp:
        spec = Path(tmp) / "config.json"
        spec.write_text(json.dumps({"config": dataclasses.asdict(cfg), "data_dir": data_dir,
                                    "download": download, "run_id": run_id}))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
               f"--nproc-per-node={cfg.nproc}", "-m", "harness.distributed", str(spec), tmp]
        limit = float(os.environ.get(TIMEOUT_ENV, "300")) * 2 + 120
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                                  env={**os.environ, "PYTHONPATH": _pythonpath()})
            why, code = root_cause(proc.stderr + proc.stdout), proc.returncode
        except subprocess.TimeoutExpired:
            why, code = f"launcher did not finish within {limit:.0f} s", None
        result = Path(tmp) / "rank0.json"
        if result.exists():
            return json.loads(result.read_text())
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
    root = str(Path(__file__).resolve().parent.parent)
    rest = os.environ.get("PYTHONPATH")
    return root + (os.pathsep + rest if rest else "")


def worker_main(argv: list[str]) -> int:
    """Entry point of each rank launched by ``launch``."""
    from harness.config import RunConfig
    from harness.runner import Runner

    spec = json.loads(Path(argv[0]).read_text())
    cfg = RunConfig(**spec["config"])
    env = init(cfg.device.split(":")[0])
    if env is not None and os.environ.get(FAIL_RANK_ENV) == str(env.rank):
        os._exit(3)  # test-only: a rank that dies without a word, as a crashed process does
    try:
        rec = Runner(run_id=spec["run_id"], data_dir=spec["data_dir"],
                     download=spec["download"]).run(cfg)
    finally:
        me = rank()
        shutdown()
    if me == 0 or rec.get("status") != "ok":
        Path(argv[1], f"rank{me}.json").write_text(json.dumps(rec))
    return 0 if rec.get("status") == "ok" else 1


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
