"""Process-group primitives for data-parallel training (DDP under ``torch.distributed.run``).

What one rank needs while it trains: its rank and world size, its device, joining the group the
launcher set up, the few collectives the runner uses *outside* timed regions, and wrapping the
model in ``DistributedDataParallel``. Outside a multi-process launch every function is the
single-process identity. Launching ranks is ``harness.execution.distributed``'s job.

Backends: ``gloo`` on the CPU, ``nccl`` on CUDA. A collective timeout
(``TRAINMARK_DIST_TIMEOUT_S``, default 300 s) turns a dead peer into an error instead of a hang.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

TIMEOUT_ENV = "TRAINMARK_DIST_TIMEOUT_S"


def collective_timeout_s() -> float:
    return float(os.environ.get(TIMEOUT_ENV, "300"))


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
    timeout = dt.timedelta(seconds=collective_timeout_s())
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
