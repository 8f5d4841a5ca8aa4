"""Timed regions: synchronize at the edges, never inside; per-step times without host syncs.

On CUDA each step boundary records a CUDA event (asynchronous, no host sync); the elapsed times
are read after the closing ``synchronize``. On the CPU ops run synchronously, so
``time.perf_counter()`` at each boundary is exact. On MPS, per-step stamps would only measure
kernel *enqueueing*, so each step gets the region's mean.
"""

from __future__ import annotations

import statistics
import time

import torch

from harness.core.devices import synchronize


class RegionTimer:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._cuda = device.type == "cuda"
        self._marks: list = []
        self._t0 = 0.0
        # The stream the steps are queued on: the device's own, named rather than implied by
        # the current device (``core.devices.use_device`` sets that too).
        self._stream = torch.cuda.current_stream(device) if self._cuda else None

    def start(self) -> None:
        synchronize(self.device)  # everything queued before the region is excluded
        self._marks = []
        if self._cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record(self._stream)
            self._marks.append(ev)
        self._t0 = time.perf_counter()
        if not self._cuda:
            self._marks.append(self._t0)

    def step(self) -> None:
        """Mark the end of one step (cheap; no synchronization)."""
        if self._cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record(self._stream)
            self._marks.append(ev)
        else:
            self._marks.append(time.perf_counter())

    def stop(self) -> tuple[float, list[float]]:
        """``(region seconds, per-step seconds)`` after waiting for the device."""
        synchronize(self.device)
        total = time.perf_counter() - self._t0
        m = self._marks
        if self._cuda:
            steps = [m[i].elapsed_time(m[i + 1]) / 1e3 for i in range(len(m) - 1)]
        elif self.device.type == "mps":
            n = len(m) - 1
            steps = [total / n] * n if n else []
        else:
            steps = [m[i + 1] - m[i] for i in range(len(m) - 1)]
        return total, steps


def median_iqr(values: list[float]) -> tuple[float | None, float | None]:
    """Median and interquartile range (Q3 - Q1); None for an empty list."""
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q3 - q1
