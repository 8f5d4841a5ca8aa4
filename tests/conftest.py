"""Shared fixtures: test-only failure-injection models and a CIFAR-10 archive on disk."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn

from models import IMAGE_CLASSIFICATION, list_models, register_model
from tests.cifar_fixture import patch_cifar_md5, write_cifar10

os.environ.setdefault("OMP_NUM_THREADS", "2")


class _Raises(nn.Module):
    def __init__(self, exc: BaseException, **_: object) -> None:
        super().__init__()
        self.lin = nn.Linear(3 * 32 * 32, 10)
        self.exc = exc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise self.exc


class _NaN(nn.Module):
    def __init__(self, **_: object) -> None:
        super().__init__()
        self.lin = nn.Linear(3 * 32 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1)) * float("nan")


_LR = {"sgd": 0.01, "adam": 1e-3, "adagrad": 1e-2}
_KW = dict(task=IMAGE_CLASSIFICATION, default_dataset="synthetic", family="test",
           default_lr=_LR, test_only=True)

if "test_oom" not in list_models(include_test=True):

    @register_model(**_KW)
    def test_oom(**kw: object) -> nn.Module:
        """Raises torch.cuda.OutOfMemoryError in forward."""
        return _Raises(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))

    @register_model(**_KW)
    def test_nan(**kw: object) -> nn.Module:
        """Produces NaN logits, so the loss diverges."""
        return _NaN()

    @register_model(**_KW)
    def test_error(**kw: object) -> nn.Module:
        """Raises a plain bug-like exception."""
        return _Raises(ValueError("boom\nsecond line is dropped"))

    @register_model(**_KW)
    def test_unsupported(**kw: object) -> nn.Module:
        """Raises NotImplementedError, as an unsupported dtype kernel does."""
        return _Raises(NotImplementedError("\"addmm\" not implemented for 'Half'"))


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Peak-FLOP/s measurements are cached per machine; tests keep theirs out of ~/.cache."""
    old = os.environ.get("TRAINMARK_CACHE_DIR")
    os.environ["TRAINMARK_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("TRAINMARK_CACHE_DIR", None)
    else:
        os.environ["TRAINMARK_CACHE_DIR"] = old


@pytest.fixture()
def cifar_dir(tmp_path, monkeypatch):
    root = tmp_path / "data"
    patch_cifar_md5(monkeypatch, write_cifar10(root))
    return root
