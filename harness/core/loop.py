"""The timed loop: a warm-up that runs until step times settle, then timed regions that last at
least a minimum time, synchronized only at their edges.

Plain functions that run a step function over batch indices drawn before timing and return what
they measured (``Measured``); the runner turns that into a record. Nothing here reads a loss or
prints inside a region or a warm-up chunk: on a GPU either would be a host sync that hides the
real speed.

**Warm-up, adaptive** (``warmup=None``, the default):

1. The first step runs alone, then the device is synchronized. It is never judged: it pays for
   lazy initialisation, cuDNN autotuning and, with ``compile``, compilation (its time is then
   ``compile_time_s``).
2. Then chunks, each timed with the region timer (synchronized only at the chunk's edges). A
   chunk has at least ``chunk_steps`` (5) steps and, from the second on, enough steps to last a
   quarter of ``min_time_s`` at the previous chunk's median step time: on an accelerator the
   effects to wait out (clock ramp-up, power management) are a matter of time, not of steps.
3. Stop after a chunk whose median step time is within ``tolerance`` (10%) of the previous
   chunk's median, but never before ``min_chunks`` (2) chunks: the warm-up is *stable*.
4. Cap: otherwise stop once the chunks have run ``max_steps`` (1000) steps or ``max_s`` (10)
   seconds (the first step not counted), even after one chunk; the record then says
   ``warmup_stable`` false.

Medians, fastest steps and seconds are the slowest rank's (``dist.max_over_ranks``), so under
DDP every rank takes the same decisions and runs the same number of steps.

**Warm-up, fixed** (``warmup=N``): exactly N steps, no adaptation; the first runs alone (and
yields ``compile_time_s``), the other N - 1 run as one chunk that gives the step-time estimate.

**Timed regions**: ``repeats`` regions of n steps each, n = max(``steps``, ceil(``min_time_s`` /
t)), where t is the *fastest* step of the warm-up's last chunk (the slowest rank's): a region run
at warm-up's pace lasts at least ``min_time_s`` (in the spirit of pytest-benchmark's
calibration of rounds). n is capped at ``max_region_steps`` (10,000). With ``min_time_s`` 0,
or no estimate (a fixed warm-up of 0 or 1 steps), n = ``steps``. Throughput is items x the
steps a region ran / its measured seconds.

**Batches**: step i (counting from the first warm-up step) trains on row i mod P of ``pool``,
the (P, B) indices the runner drew for the seed before timing. The row is picked with Python
integer arithmetic (a view, no device work), so a region's batches depend only on the seed and
the step number, however many steps the rules choose.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from harness.core import dist
from harness.core.devices import synchronize
from harness.core.step import StepFn
from harness.core.timing import RegionTimer
from harness.errors import Diverged
from harness.probes.memory import minor_page_faults
from harness.probes.telemetry import NvmlSampler

# Test-only knob for checking that regression gates detect slowdowns: when set to a fraction f,
# each timed step is followed by f x its own duration of busy waiting (and, only then, a device
# sync). Busy, not asleep: a sleep's real cost depends on how late an idle core wakes up, so an
# 8% knob measured anywhere from -3% to -22% in one history run; a spin costs what it says and
# keeps the core busy, like a real code change's extra work. Its value is read by ``core.knob``.
ADAPTIVE, FIXED = "adaptive", "fixed"  # the record's warmup_rule


def spin(seconds: float) -> None:
    """Keep this thread busy for ``seconds`` (the slowdown knob's extra work)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@dataclass(frozen=True)
class Limits:
    """The numbers of the warm-up rule and of region calibration (module docstring)."""

    chunk_steps: int = 5  # steps per warm-up chunk, at least
    chunk_fraction: float = 0.25  # of min_time_s: a chunk's least duration (from chunk 2)
    tolerance: float = 0.10  # stable: |median - previous median| <= tolerance x previous
    min_chunks: int = 2  # chunks before the rule may stop the warm-up
    max_steps: int = 1000  # cap on chunk steps (the first step not counted)
    max_s: float = 10.0  # cap on chunk seconds (the first step not counted)
    max_region_steps: int = 10_000  # cap on a calibrated region


@dataclass
class Warmup:
    """What a warm-up ran: its rule, steps (the first included) and the step-time estimate."""

    rule: str  # ADAPTIVE or FIXED
    steps: int = 0
    stable: bool | None = None  # adaptive: True if the rule stopped it, False if a cap did
    seconds: float = 0.0  # the chunks' time on the clock (slowest rank), first step excluded
    medians_s: list[float] = field(default_factory=list)  # median step time per chunk
    step_s: float | None = None  # fastest step of the last chunk: the calibration estimate


@dataclass
class Measured:
    """What a loop measured on this rank (throughputs are global: all ranks' items)."""

    losses: list[torch.Tensor] = field(default_factory=list)  # every step's loss, on device
    region_throughputs: list[float] = field(default_factory=list)  # items/s, one per region
    region_seconds: list[float] = field(default_factory=list)  # each region (slowest rank)
    step_times_s: list[float] = field(default_factory=list)  # every timed step
    trained_s: float = 0.0  # seconds on the clock, all regions (the slowest rank's)
    compile_time_s: float | None = None  # the first warm-up step, when it compiled the model
    reached_at: int | None = None  # time to accuracy: steps run when the target was met
    last_eval: tuple[float | None, float | None] = (None, None)  # the last (loss, accuracy)
    warmup: Warmup | None = None  # run_timed only
    region_steps: int | None = None  # run_timed: steps per timed region, as calibrated
    min_time_s: float | None = None  # run_timed: the minimum region time applied
    page_faults: int = 0  # the host's minor page faults inside the timed regions (this rank)

    @property
    def steps_run(self) -> int:
        return len(self.losses)


@dataclass
class Clock:
    """The instruments a timed region runs between: the region timer and NVML's sampler."""

    timer: RegionTimer
    sampler: NvmlSampler
    items_per_step: int  # samples (or tokens) per step on one rank
    slowdown: float = 0.0  # test-only injected slowdown (core.knob)


class Rows:
    """Batch indices for ``n`` consecutive steps from ``start``: row ``i`` is
    ``pool[(start + i) % len(pool)]``, a view picked by integer arithmetic on the host."""

    def __init__(self, pool: torch.Tensor, start: int, n: int) -> None:
        self.pool, self.start, self.n = pool, start, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.pool[(self.start + i) % self.pool.shape[0]]


Batches = Rows | torch.Tensor  # anything with len() whose item i is one step's (B,) indices


def timed_region(step: StepFn, batches: Batches, clock: Clock, out: Measured) -> None:
    """Run one step per item of ``batches`` on the clock, appending the losses, the region's
    throughput and seconds, and the per-step times to ``out``."""
    device = clock.timer.device
    clock.sampler.start()  # outside the region: a thread polls NVML while it runs
    # Stopped on every way out: a step that raises (OOM, a cuBLAS error) must not leave the
    # polling thread running into the next config of this process (--isolation none). The
    # try costs nothing per step.
    try:
        faults = minor_page_faults()  # a syscall at each edge, none per step
        clock.timer.start()
        for i in range(len(batches)):
            t_step = time.perf_counter() if clock.slowdown else 0.0
            out.losses.append(step(batches[i]))
            if clock.slowdown:
                synchronize(device)
                spin(clock.slowdown * (time.perf_counter() - t_step))
            clock.timer.step()
        seconds, per_step = clock.timer.stop()
        out.page_faults += minor_page_faults() - faults
    finally:
        clock.sampler.stop()
    seconds = dist.max_over_ranks(seconds)  # after the region: the slowest rank
    out.trained_s += seconds
    out.region_seconds.append(seconds)
    out.region_throughputs.append(dist.world_size() * clock.items_per_step * len(batches)
                                  / seconds)
    out.step_times_s.extend(per_step)


def _first_step(step: StepFn, pool: torch.Tensor, device: torch.device, out: Measured,
                compiled: bool) -> None:
    """The first step, alone and synchronized: its one-time costs stay out of every chunk."""
    t0 = time.perf_counter()
    out.losses.append(step(Rows(pool, out.steps_run, 1)[0]))
    synchronize(device)
    if compiled:  # the first call traces and compiles the model
        out.compile_time_s = time.perf_counter() - t0


def _chunk(step: StepFn, pool: torch.Tensor, n: int, timer: RegionTimer, out: Measured,
           warmup: Warmup) -> float:
    """``n`` warm-up steps on the timer (synchronized only at the edges); records the chunk in
    ``warmup`` and returns its median step time (all three figures the slowest rank's)."""
    rows = Rows(pool, out.steps_run, n)
    timer.start()
    for i in range(n):
        out.losses.append(step(rows[i]))
        timer.step()
    seconds, per_step = timer.stop()
    median = dist.max_over_ranks(statistics.median(per_step))
    warmup.step_s = dist.max_over_ranks(min(per_step))
    warmup.seconds += dist.max_over_ranks(seconds)
    warmup.steps += n
    warmup.medians_s.append(median)
    return median


def adaptive_warmup(step: StepFn, pool: torch.Tensor, timer: RegionTimer, out: Measured, *,
                    min_time_s: float, compiled: bool = False,
                    limits: Limits = Limits()) -> Warmup:
    """Warm up until step times settle or a cap is reached (the rule: module docstring)."""
    warmup = Warmup(ADAPTIVE)
    _first_step(step, pool, timer.device, out, compiled)
    warmup.steps = 1
    n, previous = limits.chunk_steps, None
    while True:
        median = _chunk(step, pool, n, timer, out, warmup)
        chunks, chunk_steps = len(warmup.medians_s), warmup.steps - 1
        if (chunks >= limits.min_chunks and previous is not None
                and abs(median - previous) <= limits.tolerance * previous):
            warmup.stable = True
            return warmup
        if chunk_steps >= limits.max_steps or warmup.seconds >= limits.max_s:
            warmup.stable = False
            return warmup
        previous = median
        wanted = steps_to_last(limits.chunk_fraction * min_time_s, median)
        n = min(max(limits.chunk_steps, wanted), limits.max_steps - chunk_steps)


def fixed_warmup(step: StepFn, pool: torch.Tensor, timer: RegionTimer, out: Measured, *,
                 steps: int, compiled: bool = False) -> Warmup:
    """Exactly ``steps`` warm-up steps: the first alone, the rest as one timed chunk (which
    gives the step-time estimate for calibration)."""
    warmup = Warmup(FIXED)
    if steps > 0:
        _first_step(step, pool, timer.device, out, compiled)
        warmup.steps = 1
    if steps > 1:
        _chunk(step, pool, steps - 1, timer, out, warmup)
    return warmup


def steps_to_last(seconds: float, step_s: float | None) -> int:
    """Steps of ``step_s`` seconds that last ``seconds`` at least (0 without an estimate)."""
    if seconds <= 0 or not step_s or step_s <= 0:
        return 0
    # The small epsilon keeps float noise (0.2 / 0.01 = 20.000000000000004) from adding a step.
    return math.ceil(seconds / step_s - 1e-9)


def region_steps(steps: int, min_time_s: float, step_s: float | None,
                 cap: int = Limits.max_region_steps) -> int:
    """Steps per timed region: at least ``steps``, and enough to last ``min_time_s`` at
    ``step_s`` seconds per step (at most ``cap``, unless ``steps`` itself is more)."""
    return max(steps, min(cap, steps_to_last(min_time_s, step_s)))


def run_timed(step: StepFn, pool: torch.Tensor, clock: Clock, *, warmup: int | None,
              repeats: int, steps: int, min_time_s: float, compiled: bool = False,
              limits: Limits = Limits()) -> Measured:
    """Warm-up (adaptive when ``warmup`` is None, else exactly ``warmup`` steps), then
    ``repeats`` timed regions of at least ``steps`` steps and ``min_time_s`` seconds each.
    ``pool`` is (P, B) batch indices, cycled (module docstring)."""
    out = Measured(min_time_s=min_time_s)
    if warmup is None:
        out.warmup = adaptive_warmup(step, pool, clock.timer, out, min_time_s=min_time_s,
                                     compiled=compiled, limits=limits)
    else:
        out.warmup = fixed_warmup(step, pool, clock.timer, out, steps=warmup, compiled=compiled)
    out.region_steps = region_steps(steps, min_time_s, out.warmup.step_s,
                                    limits.max_region_steps)
    for _ in range(repeats):
        timed_region(step, Rows(pool, out.steps_run, out.region_steps), clock, out)
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
