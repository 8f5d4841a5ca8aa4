"""The timed loop's rules (core/loop.py): adaptive warm-up, fixed warm-up, min-time calibration,
cycled batches. Step functions here take scripted durations on a fake clock, so every count and
time below follows from the script and the rule, whatever the machine's load; one test uses
real sleeps and checks only what the rule promises."""

import math
import time

import pytest
import torch

from harness.core import loop, timing
from harness.core.loop import Clock, Limits, run_timed
from harness.core.timing import RegionTimer
from harness.probes.telemetry import NvmlSampler

CPU = torch.device("cpu")
ITEMS = 8  # items per step


class FakeTime:
    """Stands in for the ``time`` module in loop and timing: time moves only when a step (or the
    slowdown knob's sleep) says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture()
def fake(monkeypatch):
    clock = FakeTime()
    monkeypatch.setattr(loop, "time", clock)
    monkeypatch.setattr(timing, "time", clock)
    return clock


class Script:
    """A step that takes ``duration(i)`` seconds of fake time on its i-th call (0-based) and
    returns i as its 'loss'; it remembers the batch indices it was given."""

    def __init__(self, fake: FakeTime, duration) -> None:
        self.fake, self.duration, self.seen = fake, duration, []

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        i = len(self.seen)
        self.seen.append(int(idx[0]))
        self.fake.now += self.duration(i)
        return torch.tensor(float(i))


def pool(rows: int = 1024) -> torch.Tensor:
    return torch.arange(rows).unsqueeze(1).repeat(1, 2)  # row r holds r: the step's batch id


def clock() -> Clock:
    return Clock(RegionTimer(CPU), NvmlSampler(CPU), items_per_step=ITEMS)


def by_chunk(first: float, chunks: list[float], then: float, size: int = 5):
    """Durations: ``first`` for call 0, ``chunks[k]`` for the k-th run of ``size`` calls after
    it, ``then`` afterwards."""
    def duration(i: int) -> float:
        if i == 0:
            return first
        k = (i - 1) // size
        return chunks[k] if k < len(chunks) else then
    return duration


def run(step, **kw):
    args = dict(warmup=None, repeats=2, steps=3, min_time_s=0.0)
    return run_timed(step, pool(), clock(), **{**args, **kw})


def test_adaptive_warmup_stops_at_the_first_chunk_within_tolerance(fake):
    # Chunk medians 50, 30, 21, 20 ms: 30 vs 50 and 21 vs 30 differ by 40% and 30%; 20 vs 21
    # by 4.8% <= 10%, so the fourth chunk ends the warm-up: 1 + 4 x 5 steps.
    step = Script(fake, by_chunk(2.0, [0.050, 0.030, 0.021], then=0.020))
    m = run(step)
    w = m.warmup
    assert (w.rule, w.stable, w.steps) == ("adaptive", True, 21)
    assert w.medians_s == pytest.approx([0.050, 0.030, 0.021, 0.020])
    assert w.seconds == pytest.approx(5 * (0.050 + 0.030 + 0.021 + 0.020))  # first step excluded
    assert w.step_s == pytest.approx(0.020)
    assert m.steps_run == 21 + 2 * 3 and len(step.seen) == m.steps_run
    assert m.step_times_s == pytest.approx([0.020] * 6)  # warm-up steps are not timed steps


def test_adaptive_warmup_runs_at_least_two_chunks_and_never_judges_the_first_step(fake):
    step = Script(fake, by_chunk(5.0, [], then=0.010))  # steady from the second step on
    m = run(step)
    assert (m.warmup.steps, m.warmup.stable) == (1 + 2 * 5, True)
    assert m.warmup.seconds == pytest.approx(0.100)


def test_compile_time_is_the_first_warmup_step(fake):
    step = Script(fake, by_chunk(7.5, [], then=0.010))
    assert run(step, compiled=True).compile_time_s == pytest.approx(7.5)
    assert run(Script(fake, by_chunk(7.5, [], then=0.010))).compile_time_s is None


def alternating(i: int) -> float:
    """Never settles: chunks of 5 alternate between 10 and 20 ms steps."""
    return 1.0 if i == 0 else (0.010 if ((i - 1) // 5) % 2 == 0 else 0.020)


def test_adaptive_warmup_is_capped_in_steps(fake):
    # Chunks of 5 until 20 chunk steps, then the 3 left under the cap of 23.
    m = run(Script(fake, alternating), limits=Limits(max_steps=23))
    assert (m.warmup.steps, m.warmup.stable) == (1 + 23, False)
    assert len(m.warmup.medians_s) == 5


def test_adaptive_warmup_is_capped_in_seconds_without_counting_the_first_step(fake):
    # Chunk seconds 0.05, 0.10, 0.05: a cap of 0.19 s is reached after the third chunk; the
    # first step's 1 s would have reached it at once had it counted.
    m = run(Script(fake, alternating), limits=Limits(max_s=0.19))
    assert (m.warmup.steps, m.warmup.stable) == (1 + 3 * 5, False)
    assert m.warmup.seconds == pytest.approx(0.20)


def test_the_seconds_cap_can_end_the_warmup_after_one_chunk(fake):
    m = run(Script(fake, by_chunk(1.0, [], then=0.010)), limits=Limits(max_s=0.04))
    assert (m.warmup.steps, m.warmup.stable) == (1 + 5, False)  # 0.05 s >= 0.04 s


def test_warmup_chunks_last_a_quarter_of_min_time_after_the_first(fake):
    # min-time 0.4 s: chunks after the first last >= 0.1 s, i.e. 10 steps of 10 ms.
    m = run(Script(fake, by_chunk(1.0, [], then=0.010)), min_time_s=0.4)
    assert m.warmup.steps == 1 + 5 + 10
    assert m.region_steps == 40  # 0.4 s / 10 ms


def test_regions_are_calibrated_to_min_time_and_throughput_uses_the_steps_run(fake):
    step = Script(fake, by_chunk(1.0, [0.030], then=0.010))
    m = run(step, repeats=3, steps=5, min_time_s=0.2)
    assert m.region_steps == 20  # ceil(0.2 s / 10 ms) > 5
    assert m.steps_run == m.warmup.steps + 3 * 20
    assert m.region_seconds == pytest.approx([0.2] * 3)
    assert m.region_throughputs == pytest.approx([ITEMS * 20 / 0.2] * 3)
    assert m.trained_s == pytest.approx(0.6) and len(m.step_times_s) == 60


@pytest.mark.parametrize("steps, min_time_s, cap, expected", [
    (30, 0.2, 10_000, 30),  # --steps is a minimum too
    (5, 10.0, 50, 50),  # capped
    (5, 0.0, 10_000, 5),  # min-time 0: exactly --steps
])
def test_region_length_rule(fake, steps, min_time_s, cap, expected):
    m = run(Script(fake, by_chunk(1.0, [], then=0.010)), steps=steps, min_time_s=min_time_s,
            limits=Limits(max_region_steps=cap))
    assert m.region_steps == expected


def test_fixed_warmup_runs_exactly_n_steps_and_estimates_from_all_but_the_first(fake):
    step = Script(fake, lambda i: [3.0, 0.030, 0.012, 0.025][i] if i < 4 else 0.012)
    m = run(step, warmup=4, min_time_s=0.12, compiled=True)
    w = m.warmup
    assert (w.rule, w.steps, w.stable) == ("fixed", 4, None)
    assert m.compile_time_s == pytest.approx(3.0)
    assert w.step_s == pytest.approx(0.012)  # the fastest of steps 1-3
    assert m.region_steps == 10  # ceil(0.12 / 0.012)


@pytest.mark.parametrize("warmup", [0, 1])
def test_fixed_warmup_without_an_estimate_keeps_regions_at_steps(fake, warmup):
    m = run(Script(fake, lambda i: 0.010), warmup=warmup, min_time_s=0.5)
    assert (m.warmup.steps, m.region_steps, m.steps_run) == (warmup, 3, warmup + 2 * 3)


def test_batches_cycle_through_the_pool_by_step_number(fake):
    step = Script(fake, lambda i: 0.010)
    m = run_timed(step, pool(7), clock(), warmup=None, repeats=2, steps=6, min_time_s=0.0)
    assert step.seen == [i % 7 for i in range(m.steps_run)]


def test_injected_slowdown_sleeps_in_timed_steps_only(fake):
    c = clock()
    c.slowdown = 0.5
    m = run_timed(Script(fake, lambda i: 0.010), pool(), c, warmup=None, repeats=2, steps=3,
                  min_time_s=0.0)
    assert m.warmup.medians_s == pytest.approx([0.010, 0.010])
    assert m.step_times_s == pytest.approx([0.015] * 6)


def test_real_sleeps_follow_the_rule():
    """10 ms sleeps, min-time 0.2 s, on the real clock: regions have the calibrated number of
    steps, last as long as those sleeps at least, and throughput is items x steps / seconds."""
    def step(idx: torch.Tensor) -> torch.Tensor:
        time.sleep(0.010)
        return torch.zeros(())

    m = run_timed(step, pool(), clock(), warmup=None, repeats=2, steps=5, min_time_s=0.2,
                  limits=Limits(max_s=2.0))  # a loaded machine may never settle: bound the test
    estimate = m.warmup.step_s
    assert estimate >= 0.0099  # a sleep never returns early (timer granularity aside)
    assert m.region_steps == max(5, math.ceil(0.2 / estimate - 1e-9))
    assert m.region_steps * estimate >= 0.2 - 1e-9
    for seconds, throughput in zip(m.region_seconds, m.region_throughputs, strict=True):
        assert seconds >= m.region_steps * 0.0099
        assert throughput == pytest.approx(ITEMS * m.region_steps / seconds)
