"""The training step and the held-out evaluation: what a timed region repeats, and what follows.

A step returns its loss detached but *on the device*: reading it (``.item()``) would be a host
sync inside the timed region. Finiteness is checked after the region (``core.loop``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

from harness.core.data import Dataset
from harness.core.precision import PrecisionPlan

StepFn = Callable[[torch.Tensor], torch.Tensor]


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # Image: (B, classes) vs (B,). LM: (B, T, vocab) vs (B, T), flattened to tokens.
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def autocast(plan: PrecisionPlan, device: torch.device) -> contextlib.AbstractContextManager:
    if plan.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=plan.autocast_dtype)


_NO_PHASE = contextlib.nullcontext()  # reusable: the timed step pays one cheap `with` per phase


def _unmarked(name: str) -> contextlib.AbstractContextManager:
    return _NO_PHASE


def make_train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    plan: PrecisionPlan,
    device: torch.device,
    phases: Callable[[str], contextlib.AbstractContextManager] = _unmarked,
) -> StepFn:
    """One training step on the batch at ``idx``; returns the (detached, on-device) loss.

    ``phases(name)`` wraps the forward, backward and optimizer parts: a no-op for measured
    steps, ``torch.profiler.record_function`` for the profiled ones (``core.profiling``)."""
    if plan.use_scaler:
        scaler = torch.amp.GradScaler(device.type)

        def scaled_step(idx: torch.Tensor) -> torch.Tensor:
            x, y = data.batch(idx)
            with phases("forward"), autocast(plan, device):
                loss = loss_fn(model(x), y)
            with phases("backward"):
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
            with phases("optimizer"):
                scaler.step(optimizer)  # note: GradScaler checks for inf/NaN with one host sync
                scaler.update()
            return loss.detach()

        return scaled_step

    def step(idx: torch.Tensor) -> torch.Tensor:
        x, y = data.batch(idx)
        with phases("forward"), autocast(plan, device):
            loss = loss_fn(model(x), y)
        with phases("backward"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with phases("optimizer"):
            optimizer.step()
        return loss.detach()

    return step


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, data: Dataset, plan: PrecisionPlan, device: torch.device,
    limit: int, batch_size: int = 256,
) -> tuple[float | None, float | None]:
    """Held-out mean cross-entropy and top-1 accuracy (next-token accuracy for the LM)."""
    model.eval()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    for x, y in data.eval_batches(batch_size, limit):
        with autocast(plan, device):
            logits = model(x)
        logits = logits.float()
        total_loss += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
        ).double()
        correct += (logits.argmax(dim=-1) == y).sum()
        count += y.numel()
    model.train()
    if count == 0:
        return None, None
    return float(total_loss) / count, int(correct) / count
