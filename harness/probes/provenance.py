"""Provenance: which hardware and software produced a number. Travels with every record.

Nothing here assumes a git checkout: an installed wheel records ``git_commit`` as null, a
checkout records its HEAD (``-dirty`` with local changes).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import re
import socket
import subprocess
from pathlib import Path

import torch

from harness import __version__
from harness.probes.telemetry import driver_version

# The directory that holds the ``harness`` package: a checkout's root, or site-packages.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=SOURCE_ROOT, capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()


@functools.lru_cache(maxsize=1)
def source_checkout() -> Path | None:
    """The git checkout this ``harness`` package is tracked in, or None (an installed wheel).

    Being inside *some* work tree is not enough: a virtual environment inside another
    project's checkout would otherwise report that project's commit."""
    try:
        top = Path(_git("rev-parse", "--show-toplevel")).resolve()
        _git("ls-files", "--error-unmatch", str(Path(__file__).resolve()))
    except (OSError, subprocess.SubprocessError):
        return None
    return top


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """HEAD of the trainmark checkout, with ``-dirty`` when tracked files differ from it;
    None when trainmark runs from an installed package."""
    if source_checkout() is None:
        return None
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def git_commit_time() -> str | None:
    """HEAD's committer date (ISO 8601): ``trainmark history`` orders commits by it. None
    outside a checkout."""
    if source_checkout() is None:
        return None
    try:
        return _git("show", "-s", "--format=%cI", "HEAD") or None
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: torch.device, cpu: str | None) -> str | None:
    """The GPU's name, ``Apple MPS``, or the CPU model for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return cpu


def _torchvision_version() -> str | None:
    """``torchvision.__version__``, read from the package's generated ``version.py`` when it
    can be: importing torchvision pulls in torch._dynamo (about 1.5 s on a quiet 2-core CPU),
    which every fresh A/B worker would pay for a string when its models do not use torchvision.
    The distribution metadata is no substitute: it drops the local tag (``0.29.1`` for
    ``0.29.1+cu130``), and this field decides whether two results are comparable."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or ():
        try:
            text = (Path(folder) / "version.py").read_text(encoding="utf-8")
        except OSError:
            continue
        found = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", text, re.MULTILINE)
        if found:
            return found.group(1)
    try:
        import torchvision

        return torchvision.__version__
    except Exception:
        return None


@functools.lru_cache(maxsize=8)
def collect(device: str = "cpu") -> dict[str, object]:
    """Provenance fields for a run on ``device`` (record columns: docs/architecture.md)."""
    dev = torch.device(device)
    cpu = cpu_model()
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "host": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch_version": torch.__version__,
        "torchvision_version": _torchvision_version(),
        "cuda_version": torch.version.cuda,
        "cudnn_version": str(cudnn) if cudnn else None,
        "device_name": device_name(dev, cpu),
        "driver_version": driver_version() if dev.type == "cuda" else None,
        "cpu_model": cpu,
        "num_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "git_commit_time": git_commit_time(),
        "trainmark_version": __version__,
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
    }
