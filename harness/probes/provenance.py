"""Provenance: which hardware and software produced a number. Travels with every record.

Nothing here assumes a git checkout: an installed wheel records ``git_commit`` as null, a
checkout records its HEAD (``-dirty`` with local changes). ``code_identity`` says exactly which
code ran either way: a digest of the installed ``harness``/``models`` sources, uncommitted
changes included. Inside a scheduled job (``trainmark fleet``, or any run in a Slurm job) the
record also says where it ran: the engine, job id, partition and node (``job_placement``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import platform
import re
import socket
import subprocess
from pathlib import Path

import torch

from harness import __version__
from harness.probes.cpu import cpu_features
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


# The installed packages whose sources make up the code identity, and the files that count:
# code, the suites and the report templates that ship with it (caches and other files do not).
CODE_PACKAGES = ("harness", "models")
CODE_SUFFIXES = (".py", ".toml", ".j2")


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 (first 16 hex digits) over the installed ``harness`` and ``models`` sources:
    each file's path relative to the package root and its bytes, in path order. Two records
    with one digest ran the same code, committed or not; a "-dirty" commit alone cannot say so."""
    digest = hashlib.sha256()
    files = sorted(p for pkg in CODE_PACKAGES for p in (SOURCE_ROOT / pkg).rglob("*")
                   if p.suffix in CODE_SUFFIXES and p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(path.relative_to(SOURCE_ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def code_identity() -> dict[str, str]:
    """``code_digest`` and a readable ``code_identity``: the commit (``-dirty`` with local
    changes; the version for an installed wheel) and the digest, e.g.
    ``4f047ef1a2b3-dirty/9c1e44d0a7b2c3d4``."""
    commit = git_commit()
    head = (commit[:12] + ("-dirty" if commit.endswith("-dirty") else "") if commit
            else f"v{__version__}")
    return {"code_digest": code_digest(), "code_identity": f"{head}/{code_digest()}"}


# Where a scheduled job ran. The fleet's job (execution/fleet_job.py) sets the TRAINMARK_*
# variables for the run it starts, whatever its engine; a run inside a plain Slurm job falls
# back to Slurm's own variables.
JOB_ENV = {"executor": "TRAINMARK_EXECUTOR", "job_id": "TRAINMARK_JOB_ID",
           "partition": "TRAINMARK_PARTITION", "node": "TRAINMARK_NODE"}
SLURM_ENV = {"job_id": "SLURM_JOB_ID", "partition": "SLURM_JOB_PARTITION",
             "node": "SLURMD_NODENAME"}


def job_placement(environ: dict[str, str] | None = None) -> dict[str, str | None]:
    """``executor``, ``job_id``, ``partition`` and ``node`` of the job this process runs in;
    all None outside a scheduled job."""
    env = os.environ if environ is None else environ
    out = {field: env.get(name) or None for field, name in JOB_ENV.items()}
    if out["job_id"] is None and env.get("SLURM_JOB_ID"):  # a run in the user's own sbatch
        out.update({field: env.get(name) or None for field, name in SLURM_ENV.items()})
        out["executor"] = "slurm"
    return out


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
def collect(device: str = "cpu", query_device: bool = True) -> dict[str, object]:
    """Provenance fields for a run on ``device`` (record columns: docs/architecture.md).
    ``query_device`` False leaves the device's name and driver to the processes that train on
    it: a process that only launches ranks must not touch the GPU (a CUDA context it opened on
    GPU 0 would sit in rank 0's NVML memory figure)."""
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
        "device_name": device_name(dev, cpu) if query_device or dev.type == "cpu" else None,
        "driver_version": driver_version() if dev.type == "cuda" and query_device else None,
        "cpu_model": cpu,
        "num_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "git_commit_time": git_commit_time(),
        "trainmark_version": __version__,
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        **cpu_features(),
        **job_placement(),
        **code_identity(),
    }
