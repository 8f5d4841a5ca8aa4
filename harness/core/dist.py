"""Process-group primitives for data-parallel training (DDP under ``torch.distributed.run``).

What one rank needs while it trains: its rank and world size, its device, joining the group the
launcher set up, the few collectives the runner uses *outside* timed regions, and wrapping the
model in ``DistributedDataParallel``. Outside a multi-process launch every function is the
single-process identity. Launching ranks is ``harness.execution.distributed``'s job.

Backends: ``gloo`` on the CPU; on CUDA one group with two backends, ``cpu:gloo,cuda:nccl``:
DDP's gradients go through NCCL, while the runner's few scalar collectives (a region's slowest
rank, whether every rank's loss is finite) are CPU tensors, which NCCL refuses ("No backend type
associated with device type cpu"). A collective timeout
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


def backend_name() -> str | None:
    """The process group's backend (``gloo``, ``cpu:gloo,cuda:nccl``), None outside one."""
    return str(dist.get_backend()) if active() else None


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def backend_for(device_type: str) -> str:
    """The process-group backend string for ranks training on ``device_type``."""
    return "cpu:gloo,cuda:nccl" if device_type == "cuda" else "gloo"


def backend_devices(backend: str) -> dict[str, str]:
    """Which backend serves tensors of each device type, for a backend string as
    ``init_process_group`` takes it: ``"gloo"`` serves CPU and CUDA tensors, ``"nccl"`` CUDA
    tensors only, ``"cpu:gloo,cuda:nccl"`` names each device type's backend."""
    if ":" in backend:
        return dict(part.split(":", 1) for part in backend.split(","))  # type: ignore[misc]
    served = {"gloo": ("cpu", "cuda"), "nccl": ("cuda",), "mpi": ("cpu", "cuda")}
    return dict.fromkeys(served.get(backend, ()), backend)


def gpu_ordinal(local_rank: int, visible: int) -> int:
    """This rank's GPU among those it sees. torchrun shows every rank all the node's GPUs
    (rank i takes GPU i), but srun with one GPU bound per task shows each task only its own,
    as ``cuda:0``: there the local rank is no valid ordinal, and modulo the count it is."""
    if visible < 1:
        raise RuntimeError("no CUDA device is visible to this rank")
    return local_rank % visible


def local_device(device: str) -> str:
    """``cuda:*`` -> this rank's GPU (the local rank among the GPUs it sees); other devices
    unchanged."""
    env = env_from_os()
    if active() and env is not None and device.startswith("cuda"):
        return f"cuda:{gpu_ordinal(env.local_rank, torch.cuda.device_count())}"
    return device


def init(device_type: str) -> DistEnv | None:
    """Join the process group the launcher set up (idempotent); None outside a launch."""
    env = env_from_os()
    if env is None or active():
        return env
    os.environ.setdefault("RANK", str(env.rank))  # SLURM: init_method env:// reads these
    os.environ.setdefault("WORLD_SIZE", str(env.world_size))
    os.environ.setdefault("MASTER_PORT", "29500")
    backend = backend_for(device_type)
    if device_type == "cuda":
        torch.cuda.set_device(gpu_ordinal(env.local_rank, torch.cuda.device_count()))
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
    t = torch.tensor([value], dtype=torch.float64)  # on the CPU: gloo's half of the group
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
