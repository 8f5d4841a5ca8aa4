"""The timed loop's rules (core/loop.py): adaptive warm-up, fixed warm-up, min-time calibration,
cycled batches. Step functions here take scripted durations on a fake clock, so every count and
time below follows from the script and the rule, whatever the machine's load; one test uses
real sleeps and checks only what the rule promises."""

import math
import time

import pytest
import torch

from harness.core import loop, timing
from harness.core.knob import SLOWDOWN_ENV, injected_slowdown
from harness.core.loop import Clock, Limits, run_timed
from harness.core.timing import RegionTimer
from harness.errors import Diverged, UserError
from harness.probes.telemetry import NvmlSampler

CPU = torch.device("cpu")
ITEMS = 8  # items per step


class FakeTime:
    """Stands in for the ``time`` module in loop and timing: time moves only when a step (or the
    slowdown knob's spin, faked as a sleep) says so."""

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
    monkeypatch.setattr(loop, "spin", clock.sleep)  # a real spin would wait on a frozen clock
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


def test_the_slowdown_spin_keeps_the_cpu_busy_for_its_time():
    """Unlike a sleep, the knob's wait is work: the process's CPU time grows with it."""
    wall, cpu = time.perf_counter(), time.process_time()
    loop.spin(0.05)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert wall >= 0.05
    assert cpu >= 0.5 * 0.05  # a sleep would use ~0; half allows a busy machine's preemption


def test_injected_slowdown_spins_in_timed_steps_only(fake):
    c = clock()
    c.slowdown = 0.5
    m = run_timed(Script(fake, lambda i: 0.010), pool(), c, warmup=None, repeats=2, steps=3,
                  min_time_s=0.0)
    assert m.warmup.medians_s == pytest.approx([0.010, 0.010])
    assert m.step_times_s == pytest.approx([0.015] * 6)


@pytest.mark.parametrize(("knob", "config", "expected"), [
    ("0.25", {"optimizer": "sgd"}, 0.25),  # no filter: every config
    ("0.25@optimizer=adam", {"optimizer": "adam"}, 0.25),
    ("0.25@optimizer=adam", {"optimizer": "sgd"}, 0.0),
    ("0.25@batch_size=16", {"batch_size": 16}, 0.25),  # compared as text: ints match too
    ("0.25@batch_size=16", {"batch_size": 8}, 0.0),
    ("0.25@optimizer=adam", None, 0.25),  # no config: the knob as set (the record's flag)
    ("", {"optimizer": "adam"}, 0.0),
])
def test_the_slowdown_knob_can_target_one_config_field(monkeypatch, knob, config, expected):
    monkeypatch.setenv(SLOWDOWN_ENV, knob)
    assert injected_slowdown(config) == expected


@pytest.mark.parametrize("knob", ["fast", "-0.1", "0.1@optimizer", "0.1@=adam", "0.1@optimizer="])
def test_a_malformed_slowdown_knob_is_a_one_line_usage_error(monkeypatch, knob):
    monkeypatch.setenv(SLOWDOWN_ENV, knob)
    with pytest.raises(UserError, match=r"expected a fraction >= 0.*0\.087@optimizer=adam"):
        injected_slowdown({"optimizer": "adam"})


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


def test_page_faults_in_the_timed_regions_are_counted_per_step():
    """A step that maps 4 MiB afresh and writes one byte per page faults in 4 MiB / 4 KiB =
    1,024 pages; a step that only reuses a buffer faults in none (bar Python's own pages)."""
    import mmap

    def fresh(idx: torch.Tensor) -> torch.Tensor:
        with mmap.mmap(-1, 4 << 20) as block:  # anonymous: zero pages, mapped on first touch
            for offset in range(0, 4 << 20, mmap.PAGESIZE):
                block[offset] = 1
        return torch.zeros(())

    buffer = bytearray(4 << 20)

    def reused(idx: torch.Tensor) -> torch.Tensor:
        buffer[::mmap.PAGESIZE] = b"\x01" * len(range(0, len(buffer), mmap.PAGESIZE))
        return torch.zeros(())

    pages = (4 << 20) // mmap.PAGESIZE
    m = run_timed(fresh, pool(), clock(), warmup=1, repeats=2, steps=3, min_time_s=0.0)
    assert pages <= m.page_faults / len(m.step_times_s) < 1.1 * pages
    m = run_timed(reused, pool(), clock(), warmup=1, repeats=2, steps=3, min_time_s=0.0)
    assert m.page_faults / len(m.step_times_s) < 0.02 * pages


# --- timing.py: the region timer on CUDA and MPS, faked at the torch.cuda / torch.mps layer ---


class FakeCuda:
    """``torch.cuda.Event`` and ``torch.cuda.synchronize`` as the region timer uses them. Each
    ``record()`` stamps the next time (ms, the device's clock) from ``stamps_ms``; ``log`` keeps
    the order of syncs, records and reads. Like the real ``elapsed_time``, reading an event pair
    needs both recorded with ``enable_timing=True``. Like the real ``record()``, an event given
    no stream records on the *current* device's stream (``current``, GPU 0 unless set);
    ``streams`` keeps the device of each stream recorded on."""

    def __init__(self, stamps_ms: list[float], current: int = 0) -> None:
        self.stamps, self.log, self.streams, self.current = list(stamps_ms), [], [], current
        fake = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                self.timing, self.ms = enable_timing, None

            def record(self, stream=None) -> None:
                fake.log.append("record")
                fake.streams.append(fake.current if stream is None else stream)
                self.ms = fake.stamps.pop(0)

            def elapsed_time(self, end) -> float:
                fake.log.append("read")
                if not (self.timing is True and end.timing is True):
                    raise RuntimeError("events were not created with enable_timing=True")
                if self.ms is None or end.ms is None:
                    raise RuntimeError("event not recorded")
                return end.ms - self.ms

        self.Event = Event

    def synchronize(self, device=None) -> None:
        self.log.append("sync")

    def current_stream(self, device=None) -> int:
        """A stream, named here by its device's index."""
        return self.current if device is None else torch.device(device).index or 0


def test_cuda_step_times_come_from_events_read_after_one_closing_sync(fake, monkeypatch):
    # Device stamps 100, 112.5, 130, 134 ms: steps of 12.5, 17.5 and 4 ms. The host clock only
    # sees 1 ms of enqueueing per step (the GPU runs ahead), so it must not give the step times;
    # the region's total is the host clock's, between the two syncs: 5.5 - 5.0 = 0.5 s.
    cuda = FakeCuda([100.0, 112.5, 130.0, 134.0])
    monkeypatch.setattr(torch.cuda, "Event", cuda.Event)
    monkeypatch.setattr(torch.cuda, "synchronize", cuda.synchronize)
    monkeypatch.setattr(torch.cuda, "current_stream", cuda.current_stream)
    timer = RegionTimer(torch.device("cuda"))
    fake.now = 5.0
    timer.start()
    for _ in range(3):
        fake.now += 0.001
        timer.step()
    fake.now = 5.5
    total, steps = timer.stop()
    assert total == 0.5
    assert steps == pytest.approx([0.0125, 0.0175, 0.004])
    # Synchronized at the edges only; the events are read after the closing sync.
    assert cuda.log == ["sync"] + ["record"] * 4 + ["sync"] + ["read"] * 3


def test_events_record_on_the_configs_gpu_not_the_current_one(monkeypatch):
    # A config on cuda:1 while GPU 0 is current (no set_device yet, as in the single-process
    # path before the fix): events recorded on GPU 0's idle stream would time queueing, not
    # the steps. Every event must go on cuda:1's stream.
    cuda = FakeCuda([0.0, 1.0, 2.0], current=0)
    monkeypatch.setattr(torch.cuda, "Event", cuda.Event)
    monkeypatch.setattr(torch.cuda, "synchronize", cuda.synchronize)
    monkeypatch.setattr(torch.cuda, "current_stream", cuda.current_stream)
    timer = RegionTimer(torch.device("cuda:1"))
    timer.start()
    timer.step()
    timer.step()
    timer.stop()
    assert cuda.streams == [1, 1, 1]


def test_use_device_makes_the_configs_gpu_current(monkeypatch):
    # Stands in for a second GPU: what set_device is asked. The CPU and MPS have no current
    # device to set.
    from harness.core.devices import use_device

    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", calls.append)
    use_device(torch.device("cuda:1"))
    use_device(torch.device("cpu"))
    use_device(torch.device("mps"))
    assert calls == [torch.device("cuda:1")]


def test_mps_steps_each_get_the_regions_mean(fake, monkeypatch):
    # On MPS a per-step stamp would time only the enqueueing: 4 steps in a 1 s region are
    # 0.25 s each, however the host stamps fell; a region without steps has no step times.
    syncs = []
    monkeypatch.setattr(torch.mps, "synchronize", lambda: syncs.append(fake.now))
    timer = RegionTimer(torch.device("mps"))
    fake.now = 2.0
    timer.start()
    for dt in (0.001, 0.002, 0.5, 0.001):
        fake.now += dt
        timer.step()
    fake.now = 3.0
    assert timer.stop() == (1.0, [0.25] * 4)
    assert syncs == [2.0, 3.0]

    timer.start()
    fake.now = 3.5
    assert timer.stop() == (0.5, [])


def test_median_iqr():
    assert timing.median_iqr([]) == (None, None)
    assert timing.median_iqr([7.0]) == (7.0, 0.0)
    # Quartiles by linear interpolation between order statistics (numpy's default): for
    # 1, 2, 3, 4, Q1 sits at position 3 x 0.25 = 0.75 -> 1.75 and Q3 at 2.25 -> 3.25, so the
    # IQR is 1.5 (the 'exclusive' method would say 3.75 - 1.25 = 2.5). Median 2.5.
    assert timing.median_iqr([4.0, 1.0, 3.0, 2.0]) == pytest.approx((2.5, 1.5))


# --- loop.py: warm-up boundaries, the public warm-up functions, time to accuracy ---


def test_warmup_is_stable_when_the_change_equals_the_tolerance(fake):
    # Binary-exact times: chunk medians 0.125 s then 0.15625 s, a change of 0.03125 s, which
    # is exactly 25% of 0.125: "within" the tolerance of 0.25, so two chunks suffice.
    step = Script(fake, by_chunk(1.0, [0.125], then=0.15625))
    m = run(step, limits=Limits(tolerance=0.25))
    assert (m.warmup.steps, m.warmup.stable) == (1 + 2 * 5, True)


def test_the_seconds_cap_is_reached_when_equalled(fake):
    # One chunk of 5 x 0.125 s = 0.625 s meets a cap of exactly 0.625 s.
    m = run(Script(fake, alternating_exact), limits=Limits(max_s=0.625))
    assert (m.warmup.steps, m.warmup.stable, m.warmup.seconds) == (1 + 5, False, 0.625)


def alternating_exact(i: int) -> float:
    """Never settles, in binary-exact times: chunks of 5 alternate 0.125 s and 0.25 s steps."""
    return 1.0 if i == 0 else (0.125 if ((i - 1) // 5) % 2 == 0 else 0.25)


@pytest.mark.parametrize("warm", ["adaptive", "fixed"])
def test_warmup_functions_record_compile_time_only_when_asked(fake, warm):
    out = loop.Measured()
    step = Script(fake, by_chunk(7.5, [], then=0.010))
    if warm == "adaptive":
        loop.adaptive_warmup(step, pool(), RegionTimer(CPU), out, min_time_s=0.0)
    else:
        loop.fixed_warmup(step, pool(), RegionTimer(CPU), out, steps=3)
    assert out.compile_time_s is None and out.steps_run > 0


def test_steps_to_last():
    assert loop.steps_to_last(0.2, 0.01) == 20  # not 21 for 20.000000000000004
    assert loop.steps_to_last(0.25, 0.1) == 3  # 2.5 rounds up
    assert loop.steps_to_last(0.2, None) == 0 and loop.steps_to_last(0.2, 0.0) == 0
    assert loop.steps_to_last(0.0, 0.01) == 0


class Evaluations:
    """``evaluate`` for time to accuracy: returns the scripted (loss, accuracy) pairs in turn
    and takes 5 s of fake time each, which must stay off the training clock."""

    def __init__(self, fake: FakeTime, results) -> None:
        self.fake, self.results, self.calls = fake, list(results), 0

    def __call__(self):
        self.fake.now += 5.0
        self.calls += 1
        return self.results.pop(0)


def test_time_to_accuracy_stops_at_the_first_evaluation_that_meets_the_target(fake):
    # Evaluations every 3 steps: accuracy 0.5, unknown, then exactly the target 0.9 after
    # step 9. Training time is 9 steps x 0.125 s; the three 5 s evaluations are not in it.
    step = Script(fake, lambda i: 0.125)
    evaluate = Evaluations(fake, [(2.0, 0.5), (1.5, None), (1.0, 0.9), (0.5, 1.0)])
    m = loop.run_to_target(step, pool(20), clock(), target=0.9, interval=3, evaluate=evaluate)
    assert (m.reached_at, m.steps_run, evaluate.calls) == (9, 9, 3)
    assert m.last_eval == (1.0, 0.9)
    assert step.seen == list(range(9))
    assert m.region_seconds == [0.375] * 3 and m.trained_s == 1.125
    assert m.region_throughputs == [ITEMS * 3 / 0.375] * 3
    assert m.step_times_s == [0.125] * 9


def test_time_to_accuracy_runs_out_of_batches_with_a_short_last_interval(fake):
    # 10 batches, evaluations every 4 steps: regions of 4, 4 and the 2 left; never reached.
    step = Script(fake, lambda i: 0.125)
    evaluate = Evaluations(fake, [(1.0, None), (0.9, 0.1), (0.8, 0.2)])
    m = loop.run_to_target(step, pool(10), clock(), target=0.9, interval=4, evaluate=evaluate)
    assert (m.reached_at, m.steps_run, evaluate.calls) == (None, 10, 3)
    assert m.region_seconds == [0.5, 0.5, 0.25] and m.last_eval == (0.8, 0.2)
    assert step.seen == list(range(10))


def test_time_to_accuracy_stops_on_a_non_finite_loss_before_evaluating(fake):
    def step(idx):
        fake.now += 0.125
        return torch.tensor(float("nan") if int(idx[0]) == 4 else 1.0)

    evaluate = Evaluations(fake, [(1.0, 0.1)] * 4)
    with pytest.raises(Diverged, match=r"^non-finite training loss at step 4$"):
        loop.run_to_target(step, pool(12), clock(), target=0.9, interval=3, evaluate=evaluate)
    assert evaluate.calls == 1  # after steps 0-2; steps 3-5 hold the NaN


def test_a_non_finite_loss_on_another_rank_stops_this_one_too(monkeypatch):
    # A two-rank MIN all-reduce of the 'all finite' flags in which the other rank votes 0.
    def all_reduce(t, op=None):
        t.fill_(min(int(t.item()), 0))

    monkeypatch.setattr(loop.dist, "active", lambda: True)
    monkeypatch.setattr(loop.dist.dist, "all_reduce", all_reduce)
    with pytest.raises(Diverged, match=r"^non-finite training loss on another rank$"):
        loop.check_finite([torch.tensor(1.0), torch.tensor(2.0)])
