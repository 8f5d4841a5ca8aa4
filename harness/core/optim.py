"""Optimizer names -> torch optimizers. Learning-rate defaults live with each model family.

On CUDA the optimizers are torch's fused implementations: one kernel per parameter group
instead of a loop of small ones, and, for fp16 with ``GradScaler``, the inf/NaN check of the
gradients stays on the device (a fused optimizer takes the scale and the found-inf flag as
tensors). With a non-fused optimizer, ``GradScaler.step`` reads the flag with ``.item()``, a
host sync inside every timed step that would penalise fp16 rows against bf16 and fp32. On the
CPU the default (for-each) implementations stay: the CPU's published rows use them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

OPTIMIZERS = ("sgd", "adam", "adagrad")
FUSED_DEVICE_TYPES = ("cuda",)  # where trainmark asks for the fused implementations


def uses_fused(device_type: str) -> bool:
    """Whether configs on ``device_type`` train with the fused optimizers."""
    return device_type in FUSED_DEVICE_TYPES


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, fused: bool = False
) -> torch.optim.Optimizer:
    """``name``'s optimizer; ``fused`` selects torch's fused kernels (SGD, Adam and Adagrad all
    have them on CUDA and the CPU)."""
    kw = {"fused": True} if fused else {}
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, **kw)  # the article's momentum
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, **kw)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, **kw)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def step_syncs_host(optimizer: torch.optim.Optimizer, scaled: bool) -> bool:
    """Whether a training step with ``optimizer`` waits for the device on the host: only under
    ``GradScaler`` (``scaled``), and only when the optimizer cannot take the found-inf flag as
    a tensor (``_step_supports_amp_scaling``, set by the fused implementations)."""
    return scaled and not getattr(optimizer, "_step_supports_amp_scaling", False)
