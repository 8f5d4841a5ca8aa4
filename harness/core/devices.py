"""Device names and availability (``--devices``), and the per-backend synchronize."""

from __future__ import annotations

import torch

from harness.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def device_status() -> list[tuple[str, bool, str]]:
    """Every device kind as ``(name, present, detail)``; detail says why one is absent."""
    rows: list[tuple[str, bool, str]] = [("cpu", True, "always available")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            rows.append((f"cuda:{i}", True, torch.cuda.get_device_name(i)))
    elif torch.version.cuda is None:
        rows.append(("cuda", False, "this torch build has no CUDA support"))
    else:
        rows.append(
            ("cuda", False, f"torch is built for CUDA {torch.version.cuda} but finds no GPU/driver")
        )
    if _mps_available():
        rows.append(("mps", True, "Apple Metal"))
    else:
        built = getattr(torch.backends, "mps", None) and torch.backends.mps.is_built()
        rows.append(("mps", False, "no Apple GPU" if built else "this torch build has no MPS"))
    return rows


def best_device() -> str:
    if torch.cuda.is_available():
        return "cuda:0"
    if _mps_available():
        return "mps"
    return "cpu"


def resolve_device(spec: str) -> str:
    """Canonical device string (``cpu``, ``cuda:0``, ``mps``); ``UserError`` if absent or bad."""
    spec = spec.strip().lower()
    if spec == "auto":
        return best_device()
    if spec == "cpu":
        return "cpu"
    if spec == "mps":
        if not _mps_available():
            raise UserError("device 'mps' is not available here; present: " + _present())
        return "mps"
    if spec == "cuda" or spec.startswith("cuda:"):
        index_text = spec.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise UserError(f"bad device {spec!r}; valid: {', '.join(DEVICE_CHOICES)}")
        if not torch.cuda.is_available():
            raise UserError(
                f"device {spec!r} is not available (no CUDA GPU); present: " + _present()
            )
        index = int(index_text)
        if index >= torch.cuda.device_count():
            raise UserError(f"device {spec!r} does not exist; present: " + _present())
        return f"cuda:{index}"
    raise UserError(f"unknown device {spec!r}; valid: {', '.join(DEVICE_CHOICES)}")


def _present() -> str:
    return ", ".join(name for name, ok, _ in device_status() if ok)


def use_device(device: torch.device) -> None:
    """Make ``device`` the current CUDA device before a config touches it. What is not told a
    device uses the current one: CUDA events record on its stream, pinned memory is pinned for
    it, and kernels launched without a tensor argument run there. Without this, a config on
    ``cuda:1`` would time idle GPU 0's stream and open a context there too."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels; a no-op on the CPU, which runs ops synchronously."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
