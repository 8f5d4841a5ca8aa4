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
    # Image: (B, classes) vs (B,). LM: (B, T, vocab) vs (B, T), flattened to tokens. In
    # float32 (as autocast runs cross-entropy): FSDP's bf16 parameters give bf16 logits.
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1))


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
                # A fused optimizer (CUDA) checks for inf/NaN on the device; another makes
                # GradScaler read the flag with .item(), a host sync (record: step_syncs_host).
                scaler.step(optimizer)
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


# Evaluation's batch: at most EVAL_BATCH_CAP samples, and no more than fit the output budget
# (the logits as float32) unless the training step already held a batch that large. A language
# model's logits are (B, T, vocab): GPT-2 at 1,024 tokens is 1,024 x 50,257 x 4 B = 196 MiB per
# sample, so a fixed batch of 256 would need 53 GB where training at batch 1 needed 0.2 GB.
EVAL_BATCH_CAP = 256
EVAL_OUTPUT_BUDGET_BYTES = 256 * 2**20
# The loss and accuracy are computed over this many bytes of float32 logits at a time, so the
# float copy and cross-entropy's log-softmax never hold a second full batch of logits.
LOSS_CHUNK_BYTES = 64 * 2**20


def eval_batch_size(train_batch: int, outputs_per_sample: int,
                    cap: int = EVAL_BATCH_CAP,
                    budget_bytes: int = EVAL_OUTPUT_BUDGET_BYTES) -> int:
    """Samples per evaluation batch, at most ``cap``: as many as the output budget allows, or
    the training batch where that is more (its forward pass held those logits, and their
    gradient, so evaluation at that size fits wherever training fits). Evaluation runs without
    autograd, so its activations are a fraction of what the training step kept."""
    by_budget = budget_bytes // max(1, 4 * outputs_per_sample)
    return max(1, min(cap, max(train_batch, by_budget)))


def loss_and_correct(logits: torch.Tensor, target: torch.Tensor,
                     chunk_bytes: int = LOSS_CHUNK_BYTES) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy (float64) and the count of top-1 hits of ``logits`` (..., classes)
    against ``target`` (...), a slice of rows at a time in float32 (see LOSS_CHUNK_BYTES)."""
    flat, y = logits.reshape(-1, logits.shape[-1]), target.reshape(-1)  # (N, classes), (N,)
    rows = max(1, chunk_bytes // (4 * flat.shape[1]))
    total = torch.zeros((), device=logits.device, dtype=torch.float64)
    correct = torch.zeros((), device=logits.device, dtype=torch.int64)
    for i in range(0, flat.shape[0], rows):
        part, want = flat[i:i + rows].float(), y[i:i + rows]
        total += F.cross_entropy(part, want, reduction="sum").double()
        correct += (part.argmax(dim=-1) == want).sum()
    return total, correct


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, data: Dataset, plan: PrecisionPlan, device: torch.device,
    limit: int, batch_size: int = EVAL_BATCH_CAP,
) -> tuple[float | None, float | None]:
    """Held-out mean cross-entropy and top-1 accuracy (next-token accuracy for the LM), in
    batches of ``batch_size`` samples (``eval_batch_size`` says how many fit)."""
    model.eval()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    for x, y in data.eval_batches(batch_size, limit):
        with autocast(plan, device):
            logits = model(x)
        loss, hits = loss_and_correct(logits, y)
        del logits  # before the next batch's forward pass allocates its own
        total_loss += loss
        correct += hits
        count += y.numel()
    model.train()
    if count == 0:
        return None, None
    return float(total_loss) / count, int(correct) / count
