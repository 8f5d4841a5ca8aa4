"""FLOPs of one training step, counted with ``torch.utils.flop_counter.FlopCounterMode``.

What is counted: the theoretical FLOPs (a multiply-add = 2 FLOPs) of the matrix-multiply-like
ops that PyTorch has formulas for -- ``mm``/``addmm``/``bmm``/``baddbmm`` (so ``nn.Linear`` and
``matmul``), convolutions (forward and ``convolution_backward``) and scaled-dot-product attention
(flash / memory-efficient / cuDNN kernels; the CPU flash kernel is added below because PyTorch has
no formula for it) -- in the forward pass and in the backward pass of one training step.

What is NOT counted, so MFU here is "model FLOPs" in the usual (PaLM / nanoGPT) sense and an
under-count of the arithmetic the device really does:

- the optimizer step (SGD/Adam/Adagrad updates are elementwise);
- elementwise ops, activations, normalisation (BatchNorm/LayerNorm), pooling, softmax and the
  loss, embedding lookups, bias adds (``addmm``'s bias is ignored), dropout, GradScaler work;
- causal masking savings: attention is counted as full (non-causal) ``QK^T`` and ``PV`` products;
- the gradient of the network's input, which autograd never computes: the first layer's backward
  costs one weight-gradient product, not two, so a step is a little under 3x the forward FLOPs;
- work inside ops without a formula (custom kernels, Triton, ...), which count as zero.

Counts depend only on shapes, not on dtype, so one count serves fp32 and AMP runs alike.

**Counted vs model FLOPs.** The counter sees every matmul the step runs, so with activation
checkpointing it also counts the forward work recomputed in the backward pass: over the peak,
that count is *hardware* FLOPs utilisation (``hfu``). MFU in the PaLM / torchtitan sense divides
the *model's* FLOPs instead, the arithmetic training needs whatever the implementation redoes:
``model_flops_per_token`` gives it analytically for a transformer language model, 6·N per token
(2 forward, 4 backward, N the parameters without the input embedding; a tied output head
counts, it is a matmul) plus 12·L·d·T for attention (QK^T and PV, forward and backward, over
the full T x T square: causal masking's savings are not taken off, by convention). Without
checkpointing the two agree up to the norm and bias parameters in N, which the counter, seeing
only matmuls, leaves out. Both are per rank; the record says which FLOPs each figure used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils import flop_counter as fc

from models import transformer_blocks

LossFn = Callable[..., torch.Tensor]


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """CPU flash attention forward: the same two batched products as the GPU kernels."""
    return fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args,
                            out_shape=None, **kwargs) -> int:
    return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _extra_formulas() -> dict[Any, Callable[..., int]]:
    """Formulas PyTorch lacks (checked at run time, so a future built-in one wins)."""
    aten = torch.ops.aten
    extra: dict[Any, Callable[..., int]] = {}
    for name, formula in (
        ("_scaled_dot_product_flash_attention_for_cpu", _cpu_sdpa_flop),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", _cpu_sdpa_backward_flop),
    ):
        op = getattr(aten, name, None)
        if op is not None and op not in fc.flop_registry:
            extra[op] = formula
    return extra


@dataclass(frozen=True)
class StepFlops:
    forward: int  # FLOPs of the forward pass (model + loss)
    backward: int  # FLOPs of loss.backward()
    conv: int = 0  # of both, the FLOPs in convolutions (forward and backward)

    @property
    def total(self) -> int:
        return self.forward + self.backward

    @property
    def conv_share(self) -> float:
        """Share of the step's FLOPs in convolutions: above one half, the model is a conv net
        (its fp32 peak on CUDA is TF32's, where cuDNN uses it; a ViT's patch convolution is a
        sliver of its FLOPs, its matmuls run in fp32)."""
        return self.conv / self.total if self.total else 0.0


def _as_tuple(inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)


@contextlib.contextmanager
def _preserved_state(model: nn.Module, device: torch.device):
    """Leave ``model`` (grads, buffers, train/eval mode) and the RNG streams as they were.

    A counting pass is a real forward + backward, so without this it would accumulate into
    ``.grad``, move BatchNorm running statistics and draw dropout random numbers -- changing the
    run that is being benchmarked. Parameters themselves are never written (no optimizer step).
    Only buffers are cloned (small: BatchNorm statistics), so the cost is one extra step's
    activations, not a copy of the model.
    """
    params = list(model.parameters())
    saved_grads = [p.grad for p in params]
    saved_buffers = [(b, b.detach().clone()) for b in model.buffers()]
    was_training = model.training
    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        try:
            for p in params:
                p.grad = None
            yield
        finally:
            for p, g in zip(params, saved_grads, strict=True):
                p.grad = g
            with torch.no_grad():
                for b, copy in saved_buffers:
                    b.copy_(copy)
            model.train(was_training)


def train_step_flops(
    model: nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    targets: torch.Tensor | None = None,
    loss_fn: LossFn | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> StepFlops:
    """Forward and backward FLOPs of one training step of ``model`` on this batch.

    ``loss_fn(output, targets)`` (or ``loss_fn(output)`` without targets) gives the scalar loss;
    without a ``loss_fn`` the output's sum is used. Runs one real forward + backward in training
    mode on the model's own device, restoring grads, buffers, mode and RNG state afterwards (see
    ``_preserved_state``). ``autocast_dtype`` runs the forward under ``torch.autocast`` as the
    benchmarked step does: the count is the same (FLOPs depend on shapes only), but the pass then
    picks the same kernels and needs no more activation memory than an AMP step.

    Pass the bare ``nn.Module``, not a DDP or ``torch.compile`` wrapper: DDP would all-reduce
    inside the count and a compiled graph hides the ops from the counter. Under DDP the count
    is per rank (each rank's own batch).
    """
    xs = _as_tuple(inputs)
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else (xs[0].device if xs else torch.device("cpu"))
    extra = _extra_formulas()
    with _preserved_state(model, device):
        model.train()
        autocast = (torch.autocast(device_type=device.type, dtype=autocast_dtype)
                    if autocast_dtype is not None else contextlib.nullcontext())
        with fc.FlopCounterMode(display=False, custom_mapping=extra) as fwd, autocast:
            out = model(*xs)
            if loss_fn is None:
                loss = out.float().sum()
            elif targets is None:
                loss = loss_fn(out)
            else:
                loss = loss_fn(out, targets)
        with fc.FlopCounterMode(display=False, custom_mapping=extra) as bwd:
            loss.backward()
        del out, loss
    conv = sum(n for counter in (fwd, bwd)
               for op, n in counter.get_flop_counts().get("Global", {}).items()
               if "convolution" in str(op))
    return StepFlops(forward=int(fwd.get_total_flops()), backward=int(bwd.get_total_flops()),
                     conv=int(conv))


def count_train_step_flops(
    model: nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    targets: torch.Tensor | None = None,
    loss_fn: LossFn | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> int:
    """Forward + backward FLOPs of one training step (see ``train_step_flops``)."""
    return train_step_flops(model, inputs, targets, loss_fn, autocast_dtype).total


def model_flops_per_token(model: nn.Module, seq_len: int) -> int | None:
    """Analytic training FLOPs per token of a transformer language model (module docstring):
    6·N + 12·L·d·T, N the parameters without embedding tables (a table that is also the
    output head's weight stays in N), L the transformer blocks, d the width of the token
    embedding, T ``seq_len``. None for a model without transformer blocks or an embedding (an
    image model: its MFU divides the counted FLOPs). Assumes the attention is as wide as the
    model, as in the GPT and Llama families."""
    blocks = transformer_blocks(model)
    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if blocks is None or not embeddings:
        return None
    matmul_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    n = sum(p.numel() for p in model.parameters())
    n -= sum(m.weight.numel() for m in embeddings if id(m.weight) not in matmul_weights)
    width = embeddings[0].embedding_dim  # the token embedding comes first in both families
    return 6 * n + 12 * len(blocks) * width * seq_len


def achieved_flops_per_s(flops_per_step: int | None, step_time_s: float | None) -> float | None:
    """FLOP/s achieved at ``step_time_s`` seconds per step; None if either is unknown."""
    if flops_per_step is None or step_time_s is None or step_time_s <= 0:
        return None
    return flops_per_step / step_time_s


def mfu(achieved: float | None, peak: float | None) -> float | None:
    """Model-FLOPs utilisation, a fraction of ``peak``; None if either is unknown."""
    if achieved is None or peak is None or peak <= 0:
        return None
    return achieved / peak
