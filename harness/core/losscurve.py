"""Training-loss trajectories in a compact, comparable form.

A record stores the per-step loss when a run has at most ``MAX_POINTS`` steps, otherwise the
mean of every ``every`` consecutive steps, so a 20,000-step run still costs only ~1,000 numbers.
``curve_digest`` hashes the exact float32 trajectory of *every* step, so two runs can be checked
for bitwise-identical losses without storing them all.
"""

from __future__ import annotations

import hashlib
import math

import torch

MAX_POINTS = 1000


def compact_curve(curve: torch.Tensor, max_points: int = MAX_POINTS) -> tuple[list[float], int]:
    """``(values, every)``: the losses, averaged over windows of ``every`` steps if too many."""
    n = curve.numel()
    every = max(1, math.ceil(n / max_points))
    if every == 1:
        return [float(v) for v in curve.tolist()], 1
    full = (n // every) * every
    means = curve[:full].double().view(-1, every).mean(dim=1).tolist()
    if full < n:
        means.append(float(curve[full:].double().mean()))
    return [float(v) for v in means], every


def curve_digest(curve: torch.Tensor) -> str:
    """SHA-256 of the float32 losses' bytes: equal digests mean bitwise-equal trajectories."""
    data = curve.detach().to(torch.float32).contiguous().cpu().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


def curve_steps(n_points: int, every: int) -> list[int]:
    """The (1-based) step each stored point belongs to: its window's last step."""
    return [min((i + 1) * every, n_points * every) for i in range(n_points)]
