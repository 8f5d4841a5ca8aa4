"""The timed loop: untimed warm-up, then timed regions synchronized only at their edges.

Plain functions that run a step function over pre-drawn batch indices and return what they
measured (``Measured``); the runner turns that into a record. Nothing here reads a loss or
prints inside a region: on a GPU either would be a host sync that hides the real speed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from harness.core import dist
from harness.core.devices import synchronize
from harness.core.step import StepFn
from harness.core.timing import RegionTimer
from harness.errors import Diverged
from harness.probes.telemetry import NvmlSampler

# Test-only knob for checking that regression gates detect slowdowns: when set to a fraction f,
# each timed step is followed by a sleep of f x its own duration (and, only then, a device sync).
SLOWDOWN_ENV = "TRAINMARK_INJECT_SLOWDOWN"


def injected_slowdown() -> float:
    text = os.environ.get(SLOWDOWN_ENV, "").strip()
    return float(text) if text else 0.0


@dataclass
class Measured:
    """What a loop measured on this rank (throughputs are global: all ranks' items)."""

    losses: list[torch.Tensor] = field(default_factory=list)  # every step's loss, on device
    region_throughputs: list[float] = field(default_factory=list)  # items/s, one per region
    step_times_s: list[float] = field(default_factory=list)  # every timed step
    trained_s: float = 0.0  # seconds on the clock, all regions (the slowest rank's)
    compile_time_s: float | None = None  # the first warm-up step, when it compiled the model
    reached_at: int | None = None  # time to accuracy: steps run when the target was met
    last_eval: tuple[float | None, float | None] = (None, None)  # the last (loss, accuracy)

    @property
    def steps_run(self) -> int:
        return len(self.losses)


@dataclass
class Clock:
    """The instruments a timed region runs between: the region timer and NVML's sampler."""

    timer: RegionTimer
    sampler: NvmlSampler
    items_per_step: int  # samples (or tokens) per step on one rank
    slowdown: float = 0.0  # test-only injected slowdown (see SLOWDOWN_ENV)


def timed_region(step: StepFn, indices: torch.Tensor, clock: Clock, out: Measured) -> None:
    """Run one step per row of ``indices`` (``(n, B)`` batch indices) on the clock, appending
    the losses, the region's throughput and the per-step times to ``out``."""
    device = clock.timer.device
    clock.sampler.start()  # outside the region: a thread polls NVML while it runs
    clock.timer.start()
    for i in range(len(indices)):
        t_step = time.perf_counter() if clock.slowdown else 0.0
        out.losses.append(step(indices[i]))
        if clock.slowdown:
            synchronize(device)
            time.sleep(clock.slowdown * (time.perf_counter() - t_step))
        clock.timer.step()
    seconds, per_step = clock.timer.stop()
    clock.sampler.stop()
    seconds = dist.max_over_ranks(seconds)  # after the region: the slowest rank
    out.trained_s += seconds
    out.region_throughputs.append(dist.world_size() * clock.items_per_step * len(indices)
                                  / seconds)
    out.step_times_s.extend(per_step)


def run_fixed(step: StepFn, indices: torch.Tensor, clock: Clock, *, warmup: int,
              repeats: int, steps: int, compiled: bool = False) -> Measured:
    """``warmup`` untimed steps (cuDNN autotuning, allocator growth, lazy init, compilation),
    then ``repeats`` timed regions of ``steps`` steps each."""
    out = Measured()
    device = clock.timer.device
    for i in range(warmup):
        t0 = time.perf_counter()
        out.losses.append(step(indices[i]))
        if i == 0 and compiled:  # the first call traces and compiles the model
            synchronize(device)
            out.compile_time_s = time.perf_counter() - t0
    synchronize(device)
    for r in range(repeats):
        start = warmup + r * steps
        timed_region(step, indices[start:start + steps], clock, out)
    return out


def run_to_target(step: StepFn, indices: torch.Tensor, clock: Clock, *, target: float,
                  interval: int, evaluate: Callable[[], tuple[float | None, float | None]],
                  ) -> Measured:
    """Time to accuracy: every step is on the clock (no untimed warm-up); the clock stops only
    while ``evaluate`` runs, every ``interval`` steps, until accuracy >= ``target`` on every
    rank or the indices run out."""
    out = Measured()
    total = len(indices)
    while out.steps_run < total:
        start = out.steps_run
        timed_region(step, indices[start:min(start + interval, total)], clock, out)
        check_finite(out.losses)
        out.last_eval = evaluate()
        accuracy = out.last_eval[1]
        if dist.all_true(accuracy is not None and accuracy >= target):
            out.reached_at = out.steps_run
            break
    return out


def check_finite(losses: list[torch.Tensor]) -> torch.Tensor:
    """All losses so far as one float32 CPU tensor (one host transfer); ``Diverged`` if any is
    NaN or infinite on any rank. Called only outside timed regions."""
    curve = torch.stack(losses).float().cpu()
    finite = torch.isfinite(curve)
    if not dist.all_true(bool(finite.all())):
        if bool(finite.all()):
            raise Diverged("non-finite training loss on another rank")
        first = int((~finite).nonzero()[0])
        raise Diverged(f"non-finite training loss at step {first}")
    return curve
