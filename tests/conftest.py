"""Shared fixtures: a private peak-FLOP/s cache and a CIFAR-10 archive on disk. (The
failure-injection models live in ``models/faults.py``: isolated workers must know them.)"""

from __future__ import annotations

import os

import pytest

from tests.cifar_fixture import patch_cifar_md5, write_cifar10

os.environ.setdefault("OMP_NUM_THREADS", "2")


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


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """A fresh temporary directory as the working directory (results/, reports/ land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
