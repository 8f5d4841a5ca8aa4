"""Failure-injection models, for tests: each fails in one way a real workload can.

Registered with ``test_only=True``, so ``list_models()`` hides them and sweeps use them only by
name. They live in the package (not in the tests) because a config runs in a fresh worker
process, which knows only what the package registers.
"""

from __future__ import annotations

import atexit
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


def _nothing() -> None:
    return None


@register_model(**_KW)
def test_linear(**kw: object) -> nn.Module:
    """A plain linear classifier that trains normally: the control for the models below."""
    return _Fails(_nothing)


BALLAST_MIB = 256  # what ``test_ballast`` holds on top of ``test_linear``


class _Ballast(_Fails):
    """``test_linear`` that, from its first forward pass on, holds BALLAST_MIB MiB more on the
    device it trains on (written, so every page is resident). A plain attribute, not a buffer:
    nothing copies or moves it, so the model holds exactly one ballast."""

    def __init__(self) -> None:
        super().__init__(_nothing)
        self.ballast: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ballast is None:
            self.ballast = torch.ones(BALLAST_MIB * 2**20 // 4, device=x.device)
        return super().forward(x)


@register_model(**_KW)
def test_ballast(**kw: object) -> nn.Module:
    """A linear classifier holding BALLAST_MIB MiB from its first step on: memory tests."""
    return _Ballast()


FAIL_ABOVE_ENV = "TRAINMARK_TEST_FAIL_ABOVE"  # batch sizes above this fail ...
FAIL_MESSAGE_ENV = "TRAINMARK_TEST_FAIL_MESSAGE"  # ... raising RuntimeError with this message


class _FailsAbove(_Fails):
    """``test_linear`` whose training steps raise, from batches above a size, the error a GPU
    raises near its limit (the message comes from the environment, so a test picks it)."""

    def __init__(self) -> None:
        super().__init__(_nothing)
        self.above = int(os.environ.get(FAIL_ABOVE_ENV, "0"))
        self.message = os.environ.get(FAIL_MESSAGE_ENV, "CUDA error: out of memory")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] > self.above:  # training steps; evaluation runs
            raise RuntimeError(self.message)
        return super().forward(x)


@register_model(**_KW)
def test_fails_above(**kw: object) -> nn.Module:
    """Raises a GPU's near-the-limit error for batches above TRAINMARK_TEST_FAIL_ABOVE."""
    return _FailsAbove()


KILL_AFTER_S = 1.5  # long enough for the sweep's parent to read the ballast's RSS (twice)


class _KilledWithBallast(_Ballast):
    """``test_ballast`` that, once the ballast is resident, waits and then takes SIGKILL, as
    a process the kernel's out-of-memory killer picks does (with nothing left to say)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        time.sleep(KILL_AFTER_S)
        os.kill(os.getpid(), signal.SIGKILL)
        return out


@register_model(**_KW)
def test_sigkill(**kw: object) -> nn.Module:
    """Holds BALLAST_MIB MiB, then is killed by SIGKILL, as the OOM killer does."""
    return _KilledWithBallast()


LATE_EXIT_S = 2.0  # how long a failing rank waits at exit: rank 0 has written its record by then


def _exit_late() -> None:
    time.sleep(LATE_EXIT_S)
    os._exit(3)


@register_model(**_KW)
def test_rank_exit_late(**kw: object) -> nn.Module:
    """Trains normally, but under a launcher every rank other than 0 (``RANK``) exits with
    status 3 as its process ends: after its last collective, once rank 0 has reported ok."""
    rank = os.environ.get("RANK")
    if rank is not None and rank != "0":
        atexit.register(_exit_late)
    return _Fails(_nothing)
