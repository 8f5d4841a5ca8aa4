"""Test-only model variants, for the profile tests (``trainmark explain``): the same model with
and without one extra operator, switched by an environment variable so both sides of a
comparison are the same config. Registered with ``test_only=True`` (hidden from listings).
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn

from models._registry import IMAGE_CLASSIFICATION, register_model

SLOW_OP_ENV = "TRAINMARK_TEST_SLOW_OP"  # set (to anything): the forward pass also sorts


class _SortsToo(nn.Module):
    """A small MLP; with ``slow`` its forward also sorts a widened copy of its input (whose
    result it multiplies by zero: the output, and so training, is the same), so that one
    operator, ``aten::sort``, makes the step slower."""

    def __init__(self, slow: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 64), nn.ReLU(),
                                 nn.Linear(64, 10))
        self.slow = slow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if self.slow:
            # 32 copies: ~40 ms of sorting per 16 images on one core, far above the noise a
            # loaded machine adds to the MLP's own operators (about 1 ms per step)
            wide = x.detach().flatten(1).repeat(1, 32)
            out = out + 0.0 * torch.sort(wide, dim=1).values[:, :1]
        return out


@register_model(task=IMAGE_CLASSIFICATION, default_dataset="synthetic", family="test",
                default_lr={"sgd": 0.01, "adam": 1e-3, "adagrad": 1e-2}, test_only=True)
def test_slow_op(**kw: object) -> nn.Module:
    """An MLP; with TRAINMARK_TEST_SLOW_OP set, one extra operator (a sort) in every step."""
    return _SortsToo(slow=bool(os.environ.get(SLOW_OP_ENV)))
