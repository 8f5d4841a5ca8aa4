"""float8 refuses a step whose batch x seq_len is not a multiple of 16 (issue 29, review item
11): the weight gradient's float8 matmul runs over the tokens, and it failed in the backward
with a cuBLAS error. Here torchao's emulation on the CPU (as tests/test_parallel.py uses it)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from harness.core.failures import classify
from harness.core.parallel import convert_float8, float8_tokens_error
from harness.errors import Unavailable

pytest.importorskip("torchao.float8")


def model() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16), nn.Linear(16, 10))


def test_tokens_not_a_multiple_of_16_are_refused_before_the_backward():
    m = model()
    assert convert_float8(m, fsdp=False, emulate=True) == 2  # the head stays
    with pytest.raises(Unavailable, match="multiple of 16.*has 15") as caught:
        m(torch.randn(3, 5, 16))  # batch 3 x seq_len 5
    status, error = classify(caught.value)
    assert status == "unavailable" and "batch x seq_len" in error
    m.eval()
    with torch.no_grad():
        m(torch.randn(3, 5, 16))  # evaluation has no backward: any count


def test_a_multiple_of_16_trains():
    m = model()
    convert_float8(m, fsdp=False, emulate=True)
    m(torch.randn(2, 8, 16)).sum().backward()
    assert float8_tokens_error(16) is None and float8_tokens_error(4 * 3) is not None
