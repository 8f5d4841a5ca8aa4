"""Failure-injection models, for tests: each fails in one way a real workload can.

Registered with ``test_only=True``, so ``list_models()`` hides them and sweeps use them only by
name. They live in the package (not in the tests) because a config runs in a fresh worker
process, which knows only what the package registers.
"""

from __future__ import annotations

import os
import signal
import time

import torch
import torch.nn as nn

from models._registry import IMAGE_CLASSIFICATION, register_model

_KW = dict(task=IMAGE_CLASSIFICATION, default_dataset="synthetic", family="test",
           default_lr={"sgd": 0.01, "adam": 1e-3, "adagrad": 1e-2}, test_only=True)


class _Fails(nn.Module):
    """A linear classifier whose forward pass calls ``fail`` instead of returning."""

    def __init__(self, fail) -> None:
        super().__init__()
        self.lin = nn.Linear(3 * 32 * 32, 10)
        self.fail = fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fail()
        return self.lin(x.flatten(1))  # (B, 10)


def _raise(exc: BaseException):
    def fail() -> None:
        raise exc

    return fail


@register_model(**_KW)
def test_oom(**kw: object) -> nn.Module:
    """Raises torch.cuda.OutOfMemoryError in forward."""
    return _Fails(_raise(torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2 GiB")))


@register_model(**_KW)
def test_nan(**kw: object) -> nn.Module:
    """Produces NaN logits, so the loss diverges."""
    model = _Fails(lambda: None)
    nn.init.constant_(model.lin.weight, float("nan"))
    return model


@register_model(**_KW)
def test_error(**kw: object) -> nn.Module:
    """Raises a plain bug-like exception."""
    return _Fails(_raise(ValueError("boom\nsecond line is dropped")))


@register_model(**_KW)
def test_unsupported(**kw: object) -> nn.Module:
    """Raises NotImplementedError, as an unsupported dtype kernel does."""
    return _Fails(_raise(NotImplementedError("\"addmm\" not implemented for 'Half'")))


@register_model(**_KW)
def test_segfault(**kw: object) -> nn.Module:
    """Kills its own process with SIGSEGV, as a native crash does."""
    return _Fails(lambda: os.kill(os.getpid(), signal.SIGSEGV))


@register_model(**_KW)
def test_exit(**kw: object) -> nn.Module:
    """Exits its process with status 3 without a word, as a library calling exit() does."""
    return _Fails(lambda: os._exit(3))


@register_model(**_KW)
def test_hang(**kw: object) -> nn.Module:
    """Never returns from forward, as a deadlocked kernel does."""
    return _Fails(lambda: time.sleep(10**6))
