"""Deterministic mode: same config, same machine -> bitwise-identical losses and accuracy.

``--deterministic`` seeds Python, NumPy and torch, turns on
``torch.use_deterministic_algorithms(True)`` (ops without a deterministic kernel then raise, and
the config is recorded as ``error``), turns cuDNN autotuning off and sets
``CUBLAS_WORKSPACE_CONFIG`` (cuBLAS reads it when CUDA starts, so the CLI sets it before any
CUDA call when a sweep contains deterministic configs). Outside deterministic mode cuDNN
autotuning is on, which is faster and what a benchmark of steady-state speed wants.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_VALUE = ":4096:8"  # the setting PyTorch's reproducibility notes give for CUDA >= 10.2


def prepare_process(any_deterministic: bool) -> None:
    """Call before CUDA starts: cuBLAS reads its workspace setting once per handle."""
    if any_deterministic:
        os.environ.setdefault(CUBLAS_ENV, CUBLAS_VALUE)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


@contextlib.contextmanager
def determinism(enabled: bool, seed: int) -> Iterator[None]:
    """Apply deterministic settings for one config and restore the previous ones after it."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    try:
        if enabled:
            prepare_process(True)
            seed_everything(seed)
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        else:
            torch.manual_seed(seed)
            torch.backends.cudnn.benchmark = True  # autotune convolutions for speed
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]
        torch.backends.cudnn.deterministic = saved[3]
