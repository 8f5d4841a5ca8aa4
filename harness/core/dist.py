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
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

from harness.errors import UserError

TIMEOUT_ENV = "TRAINMARK_DIST_TIMEOUT_S"


def collective_timeout_s() -> float:
    return float(os.environ.get(TIMEOUT_ENV, "300"))


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int


def env_from_os(environ: dict[str, str] | None = None) -> DistEnv | None:
    """The launcher's rank variables, or None outside a multi-process launch.

    torchrun sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; a step of ``srun`` sets
    ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID`` (and ``SLURM_STEP_ID``). Where both are
    set (``init`` exports ``RANK`` and ``WORLD_SIZE`` for ``env://``), the local rank still comes
    from ``LOCAL_RANK``, else ``SLURM_LOCALID``: every task of a node is not rank 0 of it."""
    e = os.environ if environ is None else environ
    if "WORLD_SIZE" in e and "RANK" in e:
        # torchrun-style variables: honoured even for one process (DDP path with --nproc 1).
        world, rank = int(e["WORLD_SIZE"]), int(e["RANK"])
        local = int(e.get("LOCAL_RANK", e.get("SLURM_LOCALID", 0)))
        return DistEnv(rank, world, local)
    if "SLURM_NTASKS" in e and "SLURM_PROCID" in e and ("MASTER_ADDR" in e or in_srun_step(e)):
        world, rank = int(e["SLURM_NTASKS"]), int(e["SLURM_PROCID"])
        local = int(e.get("SLURM_LOCALID", 0))
        return DistEnv(rank, world, local) if world > 1 else None  # a 1-task job: no group
    return None


def in_srun_step(environ: dict[str, str] | os._Environ) -> bool:
    """Inside a step that ``srun`` started (not the batch script, which has no step id)."""
    step = environ.get("SLURM_STEP_ID", environ.get("SLURM_STEPID", ""))
    return step.isdigit()


def first_host(nodelist: str) -> str:
    """The first host of a Slurm host list: ``n[03-05,9],gpu1`` -> ``n03``,
    ``rack1-[2-3]-ib`` -> ``rack1-2-ib`` (zero padding kept, as ``scontrol show hostnames``)."""
    text = nodelist.strip()
    depth, end = 0, len(text)
    for i, ch in enumerate(text):  # the first comma outside brackets ends the first entry
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            end = i
            break
    entry = text[:end]
    while "[" in entry:  # each bracket: its first number (or range start)
        head, _, rest = entry.partition("[")
        inside, _, tail = rest.partition("]")
        entry = head + re.split(r"[-,]", inside)[0] + tail
    if not entry:
        raise ValueError(f"empty Slurm host list {nodelist!r}")
    return entry


def default_port(environ: dict[str, str] | os._Environ) -> str:
    """A rendezvous port for a job that names none: one per Slurm job id (two jobs sharing a
    node do not collide), below Linux's ephemeral range (32768-60999), where the kernel hands
    out ports to outgoing connections and a fixed port can be found taken."""
    job = re.sub(r"\D", "", environ.get("SLURM_JOB_ID", ""))
    return str(PORT_BASE + int(job) % PORT_SPAN) if job else "29500"


PORT_BASE, PORT_SPAN = 20000, 12000  # 20000-31999: under the ephemeral range


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
    """Join the process group the launcher set up (idempotent); None outside a launch.

    Under ``srun`` without ``MASTER_ADDR`` the rendezvous host is the step's first node (as
    torchtitan's and submitit's launchers take it); a step of several tasks that cannot name
    one is refused, rather than every task running the whole sweep as its own rank 0."""
    env = env_from_os()
    if env is None or active():
        return env
    if "MASTER_ADDR" not in os.environ:
        nodes = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST")
        if not nodes:
            raise UserError(f"srun started {env.world_size} tasks but neither MASTER_ADDR nor "
                            "SLURM_STEP_NODELIST/SLURM_JOB_NODELIST is set: export "
                            "MASTER_ADDR=<first node> (and MASTER_PORT)")
        os.environ["MASTER_ADDR"] = first_host(nodes)
    os.environ.setdefault("RANK", str(env.rank))  # SLURM: init_method env:// reads these
    os.environ.setdefault("WORLD_SIZE", str(env.world_size))
    os.environ.setdefault("LOCAL_RANK", str(env.local_rank))  # else read back as 0 on each
    os.environ.setdefault("MASTER_PORT", default_port(os.environ))
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


def gather(obj: object, group: object = None) -> list[object]:
    """Every rank's ``obj``, in rank order (on every rank); over ``group`` if given."""
    if not active():
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj, group=group)
    return out


def sync_group(timeout_s: float) -> object:
    """A gloo group of all ranks whose collectives wait up to ``timeout_s``: the launcher's
    processes meet in it between configs, while each config's ranks run in workers of their
    own (``execution.isolation.RankIsolation``) and may take up to the per-config timeout."""
    return dist.new_group(backend="gloo", timeout=dt.timedelta(seconds=timeout_s))


def free_port() -> int:
    """A TCP port free on this host now (for the next group's rendezvous on rank 0)."""
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids)
