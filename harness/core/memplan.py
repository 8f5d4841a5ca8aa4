"""Will a config fit? A memory plan per rank, made before the model exists.

Before a config builds its model, the runner estimates what one rank will hold at its peak and
refuses, as an ``oom`` record naming the estimate, a config whose estimate exceeds the memory
the rank may use: a 70B model on two CPU processes is refused in seconds, instead of growing
until the kernel kills a rank. The estimate, per rank, in bytes:

- **parameters**: float32 master weights, 4 bytes each; divided by the world size under FSDP
  (each rank holds its shard), whole on every rank otherwise;
- **gradients**: float32, as the parameters (FSDP keeps only the rank's shard of them);
- **optimizer state**: float32 copies of the (sharded) parameters: SGD's momentum 1x, Adam's
  two moments 2x, Adagrad's sums 1x;
- **activations**: what the forward pass saves for the backward pass at the rank's batch,
  measured by running the forward pass and the loss on the meta device (shapes only, no
  memory) with ``torch.autograd.graph.saved_tensors_hooks``, in the dtype the step computes
  in. Attention is counted as the fused kernels save it (queries, keys, values, output and the
  log-sum-exp), not the T x T matrix a meta tensor's fallback would build. With activation
  checkpointing, a checkpointed block keeps only its input (``full``, ``selective:N``) or its
  input and the outputs its per-operator policy keeps (``selective``: attention, every other
  matmul; ``core.checkpointing``), and the largest block's activations come back once, while
  its backward pass recomputes them;
- **transient buffers**: under FSDP the gathered units (the root and two blocks, one of them
  prefetched) and one unit's unsharded gradient with its float32 reduce-scatter copy; under DDP
  its gradient buckets (a float32 copy of the gradients); under autocast its low-precision
  copies of the weights; and always the largest saved tensor once more (the gradient flowing
  back through it).

What a rank may use: a GPU's total memory; on the CPU, the memory this process may use (the
memory cgroup's limit where one is set, else the physical memory), shared by the ranks of this
host. What is not counted: the runtime itself (CUDA context, libraries, a few hundred MB of
host memory), the resident dataset, allocator fragmentation, compiled kernels' workspaces. The
plan is an estimate to check against the measured peaks on real hardware (its fields sit in the
record beside ``peak_memory_*`` and ``peak_rss_bytes``), not a promise: a config is refused only
when the estimate exceeds the whole memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.multiprocessing.reductions import StorageWeakRef
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from harness.core.checkpointing import KEPT, MATMULS, parse_mode
from harness.core.failures import DoesNotFit
from harness.core.step import loss_fn
from harness.probes.memory import host_memory_bytes
from models import LANGUAGE_MODELING, create_model, get_model_info, transformer_blocks

FP32 = 4  # bytes of a float32 master weight, gradient or optimizer state
OPTIMIZER_STATES = {"sgd": 1, "adam": 2, "adagrad": 1}  # float32 copies of the parameters
CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED = 1 << 62  # cgroup v1 writes "no limit" as a page-rounded 2^63 - 1
GIB = 2**30


# ------------------------------------------------------------------ what a rank may use


def cgroup_memory_limit(proc_cgroup: str | None = None,
                        root: Path = CGROUP_ROOT) -> int | None:
    """The tightest memory limit on this process's cgroup and its ancestors, in bytes (None:
    no limit). ``proc_cgroup`` is ``/proc/self/cgroup``'s text; both the unified hierarchy
    (v2, ``memory.max``) and the v1 memory controller (``memory.limit_in_bytes``) are read."""
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text(encoding="ascii")
        except OSError:
            return None
    limits: list[int] = []
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one unified hierarchy
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = root / "memory", "memory.limit_in_bytes"
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts), -1, -1):  # the cgroup, then each ancestor
            try:
                text = (base.joinpath(*parts[:depth]) / name).read_text(encoding="ascii").strip()
            except OSError:
                continue  # not mounted there (a cgroup namespace shows only its own root)
            if text != "max" and int(text) < UNLIMITED:
                limits.append(int(text))
    return min(limits) if limits else None


def process_memory_bytes() -> int | None:
    """The memory this process may use: the cgroup's limit if set, else the physical memory."""
    limits = [m for m in (cgroup_memory_limit(), host_memory_bytes()) if m]
    return min(limits) if limits else None


def ranks_on_this_host(world: int) -> int:
    """How many ranks share this host (and its memory): torchrun's ``LOCAL_WORLD_SIZE``, else
    Slurm's tasks per node, else all ``world`` ranks."""
    if os.environ.get("LOCAL_WORLD_SIZE"):
        return int(os.environ["LOCAL_WORLD_SIZE"])
    per_node = os.environ.get("SLURM_NTASKS_PER_NODE", "").split("(")[0].split(",")[0]
    if per_node.isdigit():
        return int(per_node)
    nodes = os.environ.get("SLURM_NNODES", "")
    return -(-world // int(nodes)) if nodes.isdigit() and int(nodes) > 0 else world


def rank_capacity(device: torch.device, world: int) -> int | None:
    """The memory one rank may use on ``device`` (module docstring); None where unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu":
        whole = process_memory_bytes()
        return whole // ranks_on_this_host(world) if whole else None
    return None


# --------------------------------------------------------------------------- activations


@dataclass
class SavedTensors:
    """Bytes the forward pass saved for the backward pass, outside the transformer blocks and
    per block, with each block's input and what ``selective`` checkpointing would keep."""

    outside: int = 0
    blocks: list[int] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    largest: int = 0
    current: int | None = None
    matmuls: int = 0
    seen: set = field(default_factory=set)

    def add(self, nbytes: int, kept: bool = False) -> None:
        if self.current is None:
            self.outside += nbytes
        else:
            self.blocks[self.current] += nbytes
            self.kept[self.current] += nbytes if kept else 0
        self.largest = max(self.largest, nbytes)

    def save(self, t: torch.Tensor) -> None:
        """Count ``t``'s storage once (views and repeats of one tensor share it)."""
        ref = StorageWeakRef(t.untyped_storage())
        if ref not in self.seen:
            self.seen.add(ref)
            self.add(t.untyped_storage().nbytes())

    def total(self, ac_mode: str) -> int:
        """Activation bytes held at the start of the backward pass under ``ac_mode``, plus
        one checkpointed block's recomputation (module docstring)."""
        kind, every = parse_mode(ac_mode)
        n = len(self.blocks)
        ckpt = [kind == "ops" or (kind == "blocks" and (i + 1) % every == 0) for i in range(n)]
        held = [(self.inputs[i] + self.kept[i] if kind == "ops" else self.inputs[i])
                if ckpt[i] else self.blocks[i] for i in range(n)]
        again = max((self.blocks[i] for i in range(n) if ckpt[i]), default=0)
        return self.outside + sum(held) + again


class _FusedAttention(TorchFunctionMode):
    """Attention as the fused kernels save it: q, k, v, the output and a float32 log-sum-exp
    per query row, instead of the T x T matrix that meta tensors' math fallback builds."""

    def __init__(self, saved: SavedTensors) -> None:
        super().__init__()
        self.saved = saved

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is not F.scaled_dot_product_attention:
            return func(*args, **(kwargs or {}))
        q, k, v = args[:3]
        out = torch.empty((*q.shape[:-1], v.shape[-1]), dtype=q.dtype, device=q.device)
        for t in (q, k, v):
            self.saved.save(t)
        self.saved.add(out.nbytes + q[..., 0].numel() * FP32, kept=True)  # (B, nh, T, hd)
        return out


class _KeptOutputs(TorchDispatchMode):
    """The outputs ``selective`` checkpointing keeps: those of KEPT operators, every other
    matmul skipped (``core.checkpointing.selective_policy``)."""

    def __init__(self, saved: SavedTensors) -> None:
        super().__init__()
        self.saved = saved

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.saved.current is not None and func in KEPT:
            if func in MATMULS:
                self.saved.matmuls += 1
                if self.saved.matmuls % 2 == 0:
                    return out
            self.saved.kept[self.saved.current] += sum(
                t.nbytes for t in (out if isinstance(out, tuple) else (out,))
                if isinstance(t, torch.Tensor))
        return out


@contextmanager
def _in_block(model: nn.Module, saved: SavedTensors) -> Iterator[None]:
    blocks = list(transformer_blocks(model) or [])
    saved.blocks, saved.inputs, saved.kept = [0] * len(blocks), [0] * len(blocks), [0] * len(blocks)
    handles = []
    for i, block in enumerate(blocks):
        def enter(module, args, i=i):
            saved.current, saved.matmuls = i, 0
            saved.inputs[i] = args[0].untyped_storage().nbytes()

        def leave(module, args, output):
            saved.current = None

        handles += [block.register_forward_pre_hook(enter), block.register_forward_hook(leave)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def saved_activations(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      per_operator: bool = False) -> SavedTensors:
    """Run ``model`` (on the meta device) on ``x`` and the loss against ``y``, recording what
    the pass saves for its backward pass (parameters and buffers excluded); with
    ``per_operator``, also what ``selective`` checkpointing would keep (a dispatch mode, which
    costs a first-time import of torch._dynamo, half a second, so only when asked)."""
    saved = SavedTensors()
    state = {StorageWeakRef(t.untyped_storage())
             for t in (*model.parameters(), *model.buffers())}
    saved.seen |= state

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.save(t)
        return t

    with (torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), _in_block(model, saved),
          _FusedAttention(saved), _KeptOutputs(saved) if per_operator else nullcontext()):
        loss_fn(model(x), y)
    return saved


# ---------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class MemoryPlan:
    """One rank's estimated peak, by component, in bytes (module docstring)."""

    params: int
    grads: int
    optimizer: int
    activations: int | None  # None: not estimated (the model's forward pass cannot run on meta)
    transient: int
    capacity: int | None  # what the rank may use; None: unknown, nothing is refused
    world: int

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + (self.activations or 0) + \
            self.transient

    def fields(self) -> dict[str, object]:
        return {"plan_params_bytes": self.params, "plan_grads_bytes": self.grads,
                "plan_optimizer_bytes": self.optimizer,
                "plan_activations_bytes": self.activations,
                "plan_transient_bytes": self.transient, "plan_total_bytes": self.total,
                "plan_capacity_bytes": self.capacity}

    @property
    def fits(self) -> bool:
        """Whether the estimate is within capacity (an unknown capacity refuses nothing)."""
        return self.capacity is None or self.total <= self.capacity

    def check(self) -> None:
        """``DoesNotFit`` (an ``oom`` record) naming the estimate when it exceeds capacity."""
        if self.fits or self.capacity is None:
            return
        unit, scale = ("GiB", GIB) if self.total >= GIB // 10 else ("MiB", 2**20)
        parts = ", ".join(f"{name} {value / scale:.1f}" for name, value in (
            ("params", self.params), ("grads", self.grads), ("optimizer", self.optimizer),
            ("activations", self.activations or 0), ("transient", self.transient)))
        raise DoesNotFit(f"memory plan: {self.total / scale:.1f} {unit} per rank ({parts} "
                         f"{unit}; {self.world} rank(s)) > {self.capacity / scale:.1f} {unit} "
                         "this rank may use; not started")


def step_dtype(precision: str) -> torch.dtype:
    """The dtype the step's activations are in: bf16/fp16 under a mixed precision (FSDP's
    policy or autocast; fp8's other ops are bf16), else float32."""
    if precision == "amp-fp16":
        return torch.float16
    return torch.bfloat16 if precision in ("amp-bf16", "fp8") else torch.float32


def plan_memory(name: str, kwargs: dict[str, object], *, batch_size: int, precision: str,
                optimizer: str, parallel: str, activation_checkpointing: str, world: int,
                capacity: int | None) -> MemoryPlan:
    """The plan for model ``name`` (builder arguments ``kwargs``, as the data gives them) at
    ``batch_size`` per rank over ``world`` ranks; ``precision`` resolved (``amp-bf16``...)."""
    info = get_model_info(name)
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    dtype = step_dtype(precision)
    low = dtype != torch.float32
    n = sum(p.numel() for p in model.parameters())
    fsdp = parallel == "fsdp"
    shard = -(-n // world) if fsdp else n
    activations: int | None = None
    largest = 0
    if batch_size > 0 and not info.test_only:  # a fault model's forward pass is its fault
        try:
            x, y = meta_batch(info.task, kwargs, batch_size)
            x = x.to(dtype) if x.is_floating_point() else x  # images: in the step's dtype
            saved = saved_activations(model.to(dtype), x, y,
                                      per_operator=activation_checkpointing == "selective")
            activations, largest = saved.total(activation_checkpointing), saved.largest
        except Exception:  # a model that cannot run on meta: its activations stay unknown
            activations = None
    units = [sum(p.numel() for p in b.parameters()) for b in transformer_blocks(model) or []]
    per = dtype.itemsize if low else FP32
    if fsdp:
        block, root = max(units, default=0), n - sum(units)
        transient = (root + 2 * block) * per + max(root, block) * (per + FP32)
    else:
        transient = (n * FP32 if world > 1 else 0) + (n * per if low else 0)
    return MemoryPlan(params=shard * FP32, grads=shard * FP32,
                      optimizer=OPTIMIZER_STATES.get(optimizer, 2) * shard * FP32,
                      activations=activations, transient=transient + largest,
                      capacity=capacity, world=world)


def meta_batch(task: str, kwargs: dict[str, object],
               batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's inputs and targets on the meta device, at the data's shape."""
    if task == LANGUAGE_MODELING:
        shape = (batch_size, int(kwargs["block_size"]))  # type: ignore[call-overload]
        return (torch.empty(shape, dtype=torch.long, device="meta"),
                torch.empty(shape, dtype=torch.long, device="meta"))
    c, s = int(kwargs.get("in_channels", 3)), int(kwargs.get("image_size", 32))  # type: ignore
    return (torch.empty((batch_size, c, s, s), device="meta"),
            torch.empty((batch_size,), dtype=torch.long, device="meta"))
