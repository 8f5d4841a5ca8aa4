"""Activation checkpointing of a transformer's blocks (``activation_checkpointing``).

A checkpointed block keeps only some of its forward pass's activations for the backward pass
and recomputes the rest there, trading arithmetic for memory: the model and its loss are the
same, the step does more work and holds less. The modes (``core.config.AC_MODES``), as
torchtitan offers them:

- ``full``: every block keeps only its input and recomputes its whole forward pass;
- ``selective:N``: every Nth block (the Nth, 2Nth, ...) does so, the others keep everything;
- ``selective``: per operator, in every block: the outputs of the expensive operators --
  attention, and every other matrix multiply -- are kept, everything cheap (norms, rotary
  embeddings, activations, elementwise products) is recomputed. Keeping only every other matmul
  halves what the matmuls hold at the price of recomputing them (torchtitan's default policy);
  float8's scale reductions (``max``) are kept so the recomputed casts match the forward's.

Built on ``torch.utils.checkpoint`` (non-reentrant, RNG state preserved) and its selective
policies (``create_selective_checkpoint_contexts``). The recomputation runs inside the
backward pass, so the counted FLOPs of a checkpointed step include it (``core.flops``: that
count gives hardware FLOPs utilisation, the analytic model FLOPs give MFU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
)

from harness.errors import Unavailable
from models import transformer_blocks

aten = torch.ops.aten
MATMULS = frozenset({aten.mm.default, aten.addmm.default})
# Kept outputs: attention (every kernel a backend may pick), batched matmuls, float8's scaled
# matmul and its amax reductions. Looked up by name: a kernel this torch lacks is left out.
_KEPT_NAMES = ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
               "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
               "_scaled_dot_product_attention_math",
               "_scaled_dot_product_fused_attention_overrideable", "bmm", "baddbmm", "_scaled_mm",
               "max")
KEPT = frozenset(getattr(aten, n).default for n in _KEPT_NAMES if hasattr(aten, n)) | MATMULS


def parse_mode(mode: str) -> tuple[str, int]:
    """``"selective:3"`` -> ``("blocks", 3)``; ``"selective"`` -> ``("ops", 1)``; ``"full"`` ->
    ``("blocks", 1)``; ``"none"`` -> ``("none", 0)``."""
    if mode == "none":
        return "none", 0
    if mode == "full":
        return "blocks", 1
    if mode == "selective":
        return "ops", 1
    head, _, every = mode.partition(":")
    if head != "selective" or not every.isdigit() or int(every) < 1:
        raise ValueError(f"unknown activation checkpointing {mode!r}")
    return "blocks", int(every)


def selective_policy() -> Callable[..., CheckpointPolicy]:
    """A fresh per-operator policy for one checkpointed call: keep the KEPT operators'
    outputs, except every second matmul; recompute everything else. The forward pass and the
    recomputation count their matmuls separately, so both make the same choices."""
    counts = {False: 0, True: 0}  # matmuls seen, in the forward pass / in the recomputation

    def policy(ctx: Any, func: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
        if func in MATMULS:
            counts[ctx.is_recompute] += 1
            if counts[ctx.is_recompute] % 2 == 0:
                return CheckpointPolicy.PREFER_RECOMPUTE
        return (CheckpointPolicy.MUST_SAVE if func in KEPT
                else CheckpointPolicy.PREFER_RECOMPUTE)

    return policy


def selective_context() -> tuple[Any, Any]:
    return create_selective_checkpoint_contexts(selective_policy())


class Checkpointed(nn.Module):
    """``block`` whose forward pass is recomputed in the backward pass (all of it, or, with
    ``selective``, all but the operators the per-operator policy keeps)."""

    def __init__(self, block: nn.Module, selective: bool = False) -> None:
        super().__init__()
        self.block = block
        self.selective = selective

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.selective:
            return checkpoint(self.block, *args, use_reentrant=False,
                              context_fn=selective_context, **kwargs)
        return checkpoint(self.block, *args, use_reentrant=False, **kwargs)


def apply_checkpointing(model: nn.Module, mode: str) -> int:
    """Wrap ``model``'s transformer blocks in place as ``mode`` says; the number of blocks
    checkpointed. ``Unavailable`` for a model without transformer blocks."""
    kind, every = parse_mode(mode)
    if kind == "none":
        return 0
    blocks = transformer_blocks(model)
    if blocks is None:
        raise Unavailable(f"activation checkpointing {mode!r} wraps transformer blocks; "
                          f"{type(model).__name__} has none (no `layers` or `blocks` list)")
    wrapped = 0
    for i, block in enumerate(blocks):
        if kind == "ops":
            blocks[i] = Checkpointed(block, selective=True)
        elif (i + 1) % every == 0:
            blocks[i] = Checkpointed(block)
        else:
            continue
        wrapped += 1
    return wrapped
