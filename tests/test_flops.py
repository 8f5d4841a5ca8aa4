"""FLOPs per training step, checked against formulas worked out by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils import flop_counter as fc

from harness.core.flops import (
    achieved_flops_per_s,
    count_train_step_flops,
    mfu,
    train_step_flops,
)
from models import create_model


def test_linear_forward_is_2_b_in_out_and_backward_twice_that():
    torch.manual_seed(0)
    B, IN, OUT = 16, 32, 24
    layer = nn.Linear(IN, OUT)
    x = torch.randn(B, IN, requires_grad=True)  # an inner layer: its input needs a gradient
    f = train_step_flops(layer, x)
    assert f.forward == 2 * B * IN * OUT
    assert f.backward == 2 * f.forward  # grad of input + grad of weight (bias: uncounted)
    assert count_train_step_flops(layer, x) == 3 * 2 * B * IN * OUT


def test_first_layer_backward_skips_the_input_gradient():
    layer = nn.Linear(32, 24)
    f = train_step_flops(layer, torch.randn(16, 32))  # data needs no gradient
    assert f.backward == f.forward == 2 * 16 * 32 * 24


def _conv_flops(b: int, cin: int, cout: int, hw: int, k: int = 3) -> int:
    return 2 * b * cout * hw * hw * cin * k * k  # same-padding conv, stride 1


def test_convnet_matches_its_analytic_count():
    B = 8
    model = create_model("convnet")
    x, y = torch.rand(B, 3, 32, 32), torch.randint(0, 10, (B,))
    f = train_step_flops(model, x, y, F.cross_entropy)
    conv1 = _conv_flops(B, 3, 32, 32)
    conv2 = _conv_flops(B, 32, 64, 16)
    fcs = 2 * B * (4096 * 120 + 120 * 84 + 84 * 10)
    assert f.forward == conv1 + conv2 + fcs
    # Backward: weight and input gradients everywhere, except conv1's input gradient.
    assert f.backward == 2 * f.forward - conv1


def test_transformer_counts_attention_on_cpu():
    B, T, C, L, V = 2, 16, 128, 4, 11
    model = create_model("transformer", vocab_size=V, block_size=T)
    idx = torch.randint(0, V, (B, T))

    def loss_fn(logits, target):
        return F.cross_entropy(logits.reshape(-1, V), target.reshape(-1))

    f = train_step_flops(model, idx, idx, loss_fn)
    linears = L * 2 * B * T * (3 * C * C + C * C + 2 * 4 * C * C) + 2 * B * T * C * V
    attention = L * 2 * (2 * B * T * T * C)  # QK^T and PV, counted as full (not causal)
    assert f.forward == linears + attention
    assert f.backward == 2 * linears + attention * 5 // 2  # SDPA backward: 5 products


def test_counting_leaves_parameters_grads_buffers_and_rng_alone():
    torch.manual_seed(0)
    model = create_model("resnet20")
    model.eval()  # the mode must be restored too
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    F.cross_entropy(model(x), y).backward()  # existing grads must survive
    before = {k: v.clone() for k, v in model.state_dict().items()}  # params + BN buffers
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    rng = torch.get_rng_state()

    assert count_train_step_flops(model, x, y, F.cross_entropy) > 0

    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(grads[n], p.grad) for n, p in model.named_parameters())
    assert not model.training
    assert torch.equal(rng, torch.get_rng_state())


def test_fresh_model_has_no_grads_after_counting():
    model = create_model("convnet")
    count_train_step_flops(model, torch.rand(2, 3, 32, 32))
    assert all(p.grad is None for p in model.parameters())


def test_rates_and_mfu():
    assert achieved_flops_per_s(1_000_000, 0.5) == 2_000_000
    assert achieved_flops_per_s(None, 0.5) is None
    assert achieved_flops_per_s(10, 0.0) is None
    assert mfu(25.0, 100.0) == pytest.approx(0.25)
    assert mfu(25.0, None) is None and mfu(None, 1.0) is None


def test_autocast_pass_counts_the_same_flops():
    model = create_model("convnet")
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    fp32 = count_train_step_flops(model, x, y, F.cross_entropy)
    bf16 = count_train_step_flops(model, x, y, F.cross_entropy, autocast_dtype=torch.bfloat16)
    assert bf16 == fp32


def test_dropout_in_the_counting_pass_does_not_shift_the_rng_stream():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    x = torch.randn(4, 8)
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    count_train_step_flops(model, x)  # draws dropout masks
    assert torch.equal(torch.rand(3), expected)


def test_conv_flops_are_counted_apart():
    """By hand, batch 1: conv 3->8, 3x3, padding 1 on 8x8: forward 2*8*8*8*3*9 = 27,648, and as
    the first layer (its input needs no gradient) a backward of the weight gradient only, the
    same again; Linear 512->10: forward 2*512*10 = 10,240, backward input and weight gradients
    2 x 10,240. Convolutions: 55,296 of 86,016 FLOPs."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(512, 10))
    f = train_step_flops(model, torch.rand(1, 3, 8, 8))
    assert (f.conv, f.total) == (55_296, 86_016)
    assert f.conv_share > 0.5  # a conv net: the TF32 peak for fp32 on CUDA
    assert train_step_flops(nn.Linear(4, 3), torch.rand(2, 4)).conv_share == 0.0


class _TwoInputs(nn.Module):
    """out = A a + B b: two inputs, passed to ``forward`` as two arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.fa = nn.Linear(6, 4, bias=False)
        self.fb = nn.Linear(5, 4, bias=False)

    def forward(self, a, b):
        return self.fa(a) + self.fb(b)


@pytest.mark.parametrize("wrap", [list, tuple])
def test_a_sequence_of_inputs_is_unpacked_into_forward(wrap):
    """Batch 3: forward 2*3*6*4 + 2*3*5*4 = 144 + 120 = 264; both layers see data that needs
    no gradient, so the backward is the two weight gradients only, 264 again."""
    a, b = torch.rand(3, 6), torch.rand(3, 5)
    f = train_step_flops(_TwoInputs(), wrap([a, b]))
    assert (f.forward, f.backward, f.total) == (264, 264, 528)


class _Gram(nn.Module):
    """x x^T per sample: matrix products but no parameters at all."""

    def forward(self, x):
        return x @ x.transpose(-1, -2)


def test_a_model_without_parameters_is_counted_on_its_inputs_device():
    """x: (2, 3, 4), needing a gradient. Forward: one (3x4)(4x3) product per sample,
    2*2*3*3*4 = 144. Backward: x appears on both sides, so two products of the same size,
    g x (2*2*3*3*4) and x^T g (2*2*4*3*3): 288."""
    x = torch.rand(2, 3, 4, requires_grad=True)
    f = train_step_flops(_Gram(), x)
    assert (f.forward, f.backward) == (144, 288)


def test_elementwise_work_counts_zero():
    """A per-feature scale is elementwise: nothing in the step has a FLOP formula."""
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return x * self.w

    f = train_step_flops(Scale(), torch.rand(2, 4))
    assert (f.forward, f.backward, f.conv, f.conv_share) == (0, 0, 0, 0.0)


def test_the_loss_function_is_used_and_counted():
    """A loss with a product in it: out (4x6) @ P (6x5), P a constant. Linear 8->6 on batch 4:
    2*4*8*6 = 384 forward, and as a first layer a weight gradient of 384 backward. Loss:
    2*4*6*5 = 240 forward, and backward only the gradient of out (P needs none): 240.
    Forward 624, backward 624. (A plain sum would have given 384 + 384.)"""
    torch.manual_seed(0)
    layer = nn.Linear(8, 6, bias=False)
    x, y = torch.rand(4, 8), torch.rand(4, 5)
    P = torch.rand(6, 5)

    f = train_step_flops(layer, x, loss_fn=lambda out: (out @ P).sum())  # no targets
    assert (f.forward, f.backward) == (624, 624)
    total = count_train_step_flops(layer, x, y, lambda out, t: ((out @ P) - t).pow(2).sum())
    assert total == 1248


def test_the_counting_pass_runs_under_autocast_only_when_asked():
    """What the loss function sees is the benchmarked step's output dtype: float16 under an
    fp16 autocast (not the CPU's default bfloat16), float32 without one."""
    seen = []

    def loss_fn(out):
        seen.append(out.dtype)
        return out.float().sum()

    layer = nn.Linear(4, 3)
    x = torch.rand(2, 4)
    count_train_step_flops(layer, x, None, loss_fn, autocast_dtype=torch.float16)
    count_train_step_flops(layer, x, None, loss_fn)
    assert seen == [torch.float16, torch.float32]


def test_a_builtin_formula_wins_over_ours(monkeypatch):
    """If PyTorch gains a formula for the CPU flash-attention op, it is used, not ours. A
    stand-in built-in that says 1,000 FLOPs per call shows which one counted the forward."""
    class Attention(nn.Module):
        def forward(self, q):
            return F.scaled_dot_product_attention(q, q, q)

    q = torch.rand(1, 2, 8, 16, requires_grad=True)
    # Ours: QK^T and PV, each 2 * (1*2 heads) * 8 * 8 * 16 = 4,096.
    assert train_step_flops(Attention(), q).forward == 2 * 4096
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    monkeypatch.setitem(fc.flop_registry, op, lambda *args, **kwargs: 1000)
    assert train_step_flops(Attention(), q).forward == 1000


def test_mfu_is_a_plain_ratio_and_needs_a_positive_peak():
    assert mfu(0.25, 1.0) == 0.25  # units are the caller's: a peak of 1 is a peak like any
    assert mfu(3.0e12, 0.0) is None
    assert mfu(3.0e12, -1.0) is None
