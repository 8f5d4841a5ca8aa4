"""How the model trains across processes: float8 conversion, activation checkpointing, then DDP
or FSDP2, in torchtitan's order; and ``torch.compile``, after the FLOPs are counted.

``parallel = "ddp"`` keeps a whole replica per process and all-reduces the gradients
(``core.dist.wrap``; outside a process group the model trains as it is). ``parallel = "fsdp"``
shards it with FSDP2 (``torch.distributed.fsdp.fully_shard``): one unit per transformer block,
then the root (embedding, final norm, output head), over a one-dimensional mesh of all ranks.
A unit's parameters are all-gathered just before its forward (and again for its backward) and
freed after; its gradients are reduce-scattered, so each rank keeps and updates only its shard
of the parameters, gradients and optimizer state. The last block stays gathered between its
forward and backward, which follow one another at once.

Mixed precision under FSDP is FSDP's own policy, as torchtitan sets it: ``amp-bf16`` (and
``fp8``) gather bf16 copies of the float32 parameters and reduce gradients in float32; the step
then runs without autocast (the returned plan says so). ``fp32`` keeps float32 throughout.
``amp-fp16`` needs loss scaling that this path does not do, so it is ``unavailable`` there.

Gradients are averaged over the ranks. FSDP2's reduce-scatter asks the backend for an average
(``ReduceOp.AVG``), which gloo has summed instead in some torch releases (pytorch issue 162338);
wherever gloo serves the device (the CPU), the reduction is therefore a sum followed by FSDP's
own division by the world size, correct in every release (tests/test_parallel.py compares a
2-rank run's gradients with one process's over the same global batch).

``fp8`` converts the linear layers (not the output head, and not a layer whose sizes are not
multiples of 16) to torchao's float8 training; under FSDP the gathers then move float8 weights,
with their scales computed for all layers at once after each optimizer step (torchtitan's
setup: ``enable_fsdp_float8_all_gather``, ``precompute_float8_dynamic_scale_for_fsdp``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from harness.core import dist
from harness.core.checkpointing import apply_checkpointing
from harness.core.precision import TORCHAO_MISSING, PrecisionPlan
from harness.errors import Unavailable
from models import transformer_blocks

FLOAT8_MULTIPLE = 16  # float8 matmuls need both sizes of a layer to be multiples of 16


@dataclass
class Prepared:
    """The model as it trains, and what the record says about how."""

    trained: nn.Module  # what the step calls (a DDP wrapper, the FSDP root, the model)
    plan: PrecisionPlan  # the step's precision (FSDP's policy replaces autocast)
    fields: dict[str, object] = field(default_factory=dict)
    after_optimizer_step: list[Callable[[], None]] = field(default_factory=list)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Run the post-step work (float8 scales for FSDP's gathers) after every step."""
        for fn in self.after_optimizer_step:
            optimizer.register_step_post_hook(lambda *_, fn=fn: fn())


def float8_filter(model: nn.Module) -> Callable[[nn.Module, str], bool]:
    """Which linear layers float8 converts: not the output head (the last linear layer:
    its vocabulary-wide matmul stays in bf16, as torchtitan keeps ``output`` out), and only
    layers whose sizes are multiples of 16. (The tokens a step feeds them, batch x seq_len,
    must be one too: ``check_float8_tokens`` refuses the config on its first training step.)"""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    head = linears[-1] if linears else None

    def convert(module: nn.Module, fqn: str) -> bool:
        if not isinstance(module, nn.Linear) or module is head:
            return False
        return (module.in_features % FLOAT8_MULTIPLE == 0
                and module.out_features % FLOAT8_MULTIPLE == 0)

    return convert


def float8_tokens_error(tokens: int) -> str | None:
    """Why a training step of ``tokens`` rows (batch x seq_len) cannot run in float8, or None:
    the weight gradient's float8 matmul (grad_out^T @ input) runs over the tokens, and
    ``torch._scaled_mm`` needs that size a multiple of 16."""
    if tokens % FLOAT8_MULTIPLE:
        return (f"float8 training needs batch x seq_len to be a multiple of {FLOAT8_MULTIPLE} "
                f"(the weight gradient's matmul runs over the tokens); this step has {tokens}")
    return None


def check_float8_tokens(model: nn.Module) -> None:
    """Refuse, on the first training forward, a step whose token count float8's backward
    cannot take (``unavailable`` with the reason, instead of a cuBLAS error in the backward);
    the check removes itself once a training step has passed it."""
    handles = []

    def check(module: nn.Module, args: tuple) -> None:
        if not (module.training and torch.is_grad_enabled() and args):
            return
        why = float8_tokens_error(args[0].shape[:-1].numel())
        if why:
            raise Unavailable(why)
        for h in handles:
            h.remove()

    for m in model.modules():
        if type(m).__name__ == "Float8Linear":
            handles.append(m.register_forward_pre_hook(check))


def convert_float8(model: nn.Module, *, fsdp: bool, emulate: bool = False) -> int:
    """Swap ``model``'s linear layers (``float8_filter``) for torchao's ``Float8Linear`` in
    place; the number converted. ``emulate`` computes the float8 casts and matmuls in higher
    precision on any device (tests only: it runs anywhere and is slow)."""
    try:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    except ImportError as exc:
        raise Unavailable(f"{TORCHAO_MISSING} ({exc})") from None
    config = Float8LinearConfig(enable_fsdp_float8_all_gather=fsdp, emulate=emulate)
    convert_to_float8_training(model, config=config, module_filter_fn=float8_filter(model))
    check_float8_tokens(model)
    return sum(type(m).__name__ == "Float8Linear" for m in model.modules())


def gloo_reduces(device: torch.device) -> bool:
    """Whether the process group's gloo backend serves ``device``'s tensors."""
    backend = dist.backend_name()
    return backend is not None and dist.backend_devices(backend).get(device.type) == "gloo"


def shard(model: nn.Module, device: torch.device, plan: PrecisionPlan) -> dict[str, object]:
    """FSDP2 over every rank of the process group (module docstring), in place; the record's
    fields about it."""
    try:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
    except ImportError as exc:  # torch < 2.6
        raise Unavailable(f"fsdp needs torch.distributed.fsdp.fully_shard (torch 2.6 or "
                          f"newer): {exc}") from None
    if plan.use_scaler or plan.autocast_dtype == torch.float16:
        raise Unavailable("fsdp trains fp32, amp-bf16 or fp8 (bf16 parameters, fp32 gradient "
                          "reductions); fp16 needs loss scaling that this path does not do")
    if not dist.active():
        raise Unavailable("fsdp runs under torch.distributed.run (a process group); this "
                          "process has none")
    low = plan.autocast_dtype  # bf16 for amp-bf16 and fp8, None for fp32
    policy = MixedPrecisionPolicy(param_dtype=low, reduce_dtype=torch.float32)
    mesh = init_device_mesh(device.type, (dist.world_size(),))
    blocks = transformer_blocks(model)
    units = list(blocks) if blocks is not None else []
    for i, block in enumerate(units):
        fully_shard(block, mesh=mesh, mp_policy=policy,
                    reshard_after_forward=i < len(units) - 1)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    summed = gloo_reduces(device)
    if summed:
        for module in model.modules():
            if isinstance(module, FSDPModule):
                module.set_force_sum_reduction_for_comms(True)
    return {"fsdp_units": len(units) + 1,
            "fsdp_param_dtype": str(low or torch.float32).removeprefix("torch."),
            "fsdp_reduce_dtype": "float32",
            "fsdp_reduce_op": "sum, then / world size" if summed else "avg"}


def prepare(model: nn.Module, device: torch.device, *, parallel: str,
            activation_checkpointing: str, plan: PrecisionPlan,
            emulate_float8: bool = False) -> Prepared:
    """Convert and wrap ``model`` (built on ``device``, identical on every rank, or, sharded,
    on the meta device: ``core.build`` materialises it afterwards) for training:
    float8, then activation checkpointing, then DDP or FSDP2 (torchtitan's order). FSDP shards
    ``model`` in place, so ``model`` itself is what the FLOPs are counted on either way.
    ``emulate_float8``: torchao's emulation (tests, on the CPU; ``convert_float8``)."""
    fsdp = parallel == "fsdp"
    fields: dict[str, object] = {"fsdp_units": None}
    after: list[Callable[[], None]] = []
    if plan.float8:
        fields["float8_linears"] = convert_float8(model, fsdp=fsdp, emulate=emulate_float8)
        if fsdp:
            from torchao.float8 import precompute_float8_dynamic_scale_for_fsdp

            after.append(lambda: precompute_float8_dynamic_scale_for_fsdp(model))
    fields["ac_blocks"] = apply_checkpointing(model, activation_checkpointing)
    if not fsdp:
        return Prepared(dist.wrap(model, device), plan, fields, after)
    fields.update(shard(model, device, plan))
    # FSDP's policy casts the parameters; autocast would only add work per op
    return Prepared(model, dataclasses.replace(plan, autocast_dtype=None), fields, after)


def compiled(prepared: Prepared, backend: str) -> nn.Module:
    """``torch.compile`` applied after the FLOPs were counted (the counter cannot see into a
    compiled graph): the whole wrapper under DDP; each transformer block under FSDP, as
    torchtitan does (identical blocks reuse one graph; FSDP's gathers stay between them)."""
    model = prepared.trained
    blocks = transformer_blocks(model) if prepared.fields.get("fsdp_units") else None
    if blocks is None:
        return torch.compile(model, backend=backend)
    for i, block in enumerate(blocks):
        blocks[i] = torch.compile(block, backend=backend)
    return model
