"""What a failed config's exception means for its record: a status and one line.

Near the memory limit a GPU does not always raise ``torch.cuda.OutOfMemoryError``. cuBLAS fails
to get its workspace (``CUBLAS_STATUS_ALLOC_FAILED``), cuDNN reports ``INTERNAL_ERROR`` or
``NOT_SUPPORTED`` when no algorithm has room for its workspace, the runtime says ``CUDA error:
out of memory`` (an ``AcceleratorError``), and at huge batches kernels refuse tensors past
32-bit indexing. Each says "this batch does not fit", so each is ``oom`` here (the error keeps
the original words): the largest-batch search (``execution.batch_search``) then halves the
size instead of stopping, and a sweep row says what the failure was.
"""

from __future__ import annotations

import torch

from harness.errors import Diverged, Unavailable, one_line
from models import SourceUnavailable

# Fragments of the messages that mean "does not fit", with what to say of each.
DOES_NOT_FIT: tuple[tuple[str, str], ...] = (
    ("CUDA out of memory", ""),
    ("CUDA error: out of memory", ""),
    ("CUBLAS_STATUS_ALLOC_FAILED", "cuBLAS could not allocate its workspace"),
    ("CUDNN_STATUS_INTERNAL_ERROR", "cuDNN failed near the memory limit"),
    ("CUDNN_STATUS_NOT_SUPPORTED", "cuDNN found no algorithm for this size"),
    ("CUDNN_STATUS_ALLOC_FAILED", "cuDNN could not allocate its workspace"),
    ("canUse32BitIndexMath", "the batch is past 32-bit indexing"),
    ("32-bit index", "the batch is past 32-bit indexing"),
)


class DoesNotFit(RuntimeError):
    """A does-not-fit failure re-raised with where it happened (its message says why)."""


def does_not_fit(exc: BaseException) -> str | None:
    """Why ``exc`` means the config's batch does not fit ("" when it is a plain out-of-memory
    error), or None when it means something else."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError, DoesNotFit)):
        return ""
    text = str(exc)
    for fragment, why in DOES_NOT_FIT:
        if fragment in text:
            return why
    return None


def classify(exc: Exception) -> tuple[str, str]:
    """The record's ``(status, error)`` for a config that raised ``exc``."""
    if isinstance(exc, DoesNotFit):  # its message already says what failed, and where
        return "oom", str(exc)[:300]
    fit = does_not_fit(exc)
    if fit is not None:
        return "oom", f"{fit}: {one_line(exc)}" if fit else one_line(exc)
    if isinstance(exc, Diverged):
        return "diverged", one_line(exc)
    if isinstance(exc, (Unavailable, NotImplementedError, SourceUnavailable)):
        return "unavailable", one_line(exc)
    return "error", one_line(exc)  # isolation: the sweep goes on, the error is a column
