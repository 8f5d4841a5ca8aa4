"""``--batch-sizes max[:LIMIT]``: the largest batch size that fits, found by probing.

A searched config arrives with ``batch_size`` 0 and ``max_batch`` set (``core.suites``). Just
before it is measured, ``resolve_max_batch`` probes batch sizes with short runs of the config
(``probe_config``: one warm-up step, one timed step) through the sweep's own measure function,
so with isolation ``process`` every probe is a fresh worker and an out-of-memory probe cannot
leave a fragmented allocator or a poisoned CUDA context to the next one; under DDP a probe runs
with the config's ``nproc`` (the batch is per process, and so is the budget).

The sizes follow ``largest_fitting``: doubling from 1 until a size does not fit (or the limit,
which is probed itself when doubling passes it), then bisection between the last size that fit
and the first that did not, down to one sample (on the CPU, down to ``CPU_TOLERANCE`` of the
size: peak RSS varies by about 0.1 GiB between identical runs, so finer probes would measure
that noise, not the batch). A size fits when its probe is ``ok`` and, under
``--memory-budget``, its peak memory is within the budget (``fits``); an ``oom`` probe does not
fit (the runner's ``core.failures`` counts every way a GPU says "does not fit" as ``oom``:
cuBLAS and cuDNN allocation failures, the runtime's out-of-memory error, 32-bit indexing
limits); any other failure is not a memory verdict, so the search stops and that failure
becomes the config's record. Every probe is kept in the record's ``batch_size_probes``. If the
measurement at the size found runs out of memory after all, the config is measured at the
next size that fit (``measure_fallbacks``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from harness.core import dist
from harness.core.config import CONFIG_FIELDS, RunConfig

GIB = 1024**3
PROBE_WARMUP_STEPS = 1  # the first step pays for allocator growth and autotuning: it must run
PROBE_TIMED_STEPS = 1
# A probe's own speed and quality figures (one step) mean nothing for the config; a record that
# reports a size over the budget as ``oom`` drops them, as a real out-of-memory record lacks them.
_PROBE_FIGURES = ("throughput", "repeat_throughputs", "step_time_ms_median", "step_time_ms_iqr",
                  "achieved_flops_per_s", "mfu", "energy_j", "power_w_mean", "samples_per_joule",
                  "train_loss", "eval_loss", "eval_accuracy")
# What a probe changes in the config; the stored record shows the config's own values.
_PROBE_SETTINGS = ("warmup_steps", "timed_steps", "min_time_s", "repeats", "target_accuracy")
_BATCH = CONFIG_FIELDS.index("batch_size")
_MAX_BATCH = CONFIG_FIELDS.index("max_batch")

Measure = Callable[[RunConfig], dict]
CPU_TOLERANCE = 1 / 32  # bisection on the CPU stops within this share of the size found
MAX_FALLBACKS = 3  # smaller sizes tried when the size found runs out of memory when measured


class ProbeFailed(Exception):
    """A probe failed for a reason other than memory (error, crash, timeout, divergence...):
    no verdict on the size, so the search stops. ``probes`` are the verdicts before it."""

    def __init__(self, record: dict[str, Any], probes: list[tuple[int, bool]] | None = None):
        super().__init__(record.get("error") or record.get("status"))
        self.record = record
        self.probes = list(probes or [])


def largest_fitting(fits: Callable[[int], bool], limit: int, start: int = 1,
                    tolerance: float = 0.0) -> tuple[int | None, list[tuple[int, bool]]]:
    """The largest size in ``[start, limit]`` for which ``fits`` holds, assuming every size
    below one that fits fits too, and every ``(size, fits)`` probe in the order made. None if
    ``start`` does not fit. ``ProbeFailed`` from ``fits`` propagates with the probes so far.
    Bisection stops once the gap to a size that did not fit is at most ``tolerance`` x the
    size that fit (0: exact)."""
    if not 1 <= start or not 1 <= limit:
        raise ValueError(f"start and limit must be >= 1, got {start} and {limit}")
    probes: list[tuple[int, bool]] = []

    def probe(size: int) -> bool:
        try:
            ok = bool(fits(size))
        except ProbeFailed as exc:
            exc.probes = list(probes)
            raise
        probes.append((size, ok))
        return ok

    good = min(start, limit)
    if not probe(good):
        return None, probes
    bad: int | None = None
    while good < limit:  # doubling: few probes to bracket the answer, from small (cheap) sizes
        size = min(2 * good, limit)
        if not probe(size):
            bad = size
            break
        good = size
    if bad is None:
        return good, probes
    while bad - good > max(1, int(good * tolerance)):  # bisection: good fits, bad does not
        mid = (good + bad) // 2
        if probe(mid):
            good = mid
        else:
            bad = mid
    return good, probes


def probe_config(cfg: RunConfig, batch_size: int) -> RunConfig:
    """``cfg`` at ``batch_size`` as a short probe: a fixed warm-up of one step, one timed step
    (no minimum time), one repeat, no accuracy target. The data, the evaluation and everything
    else stay the config's own, so the probe needs the memory the measurement will: a smaller
    held-out split would leave its (device-resident) bytes and the evaluation's activations
    out of the verdict, and evaluating ``eval_samples`` costs a few forward passes."""
    return dataclasses.replace(cfg, batch_size=batch_size, warmup_steps=PROBE_WARMUP_STEPS,
                               timed_steps=PROBE_TIMED_STEPS, min_time_s=0.0, repeats=1,
                               target_accuracy=None)


def probe_memory_bytes(record: dict[str, Any]) -> tuple[int | None, str]:
    """The probe's peak memory as a budget judges it, and its name. On an accelerator, what
    the allocator had to reserve from the device. On the CPU, the process's peak RSS: in a
    fresh worker (isolation ``process``) that is the config's own; in a shared process the
    high-water mark also holds earlier configs', so the peak since this config's data loaded
    (``rss_before_model_bytes`` + ``train_rss_bytes``) stands in for it where known."""
    if not str(record.get("device") or "cpu").startswith("cpu"):
        return record.get("peak_memory_reserved_bytes"), "peak reserved memory"
    before, train = record.get("rss_before_model_bytes"), record.get("train_rss_bytes")
    if record.get("isolation") == "none" and before is not None and train is not None:
        return int(before) + int(train), "peak RSS"
    return record.get("peak_rss_bytes"), "peak RSS"


def over_budget(record: dict[str, Any], budget_gib: float | None) -> str | None:
    """Why an ``ok`` probe does not fit ``budget_gib`` (one line), or None if it does."""
    if budget_gib is None:
        return None
    used, what = probe_memory_bytes(record)
    if used is None:
        raise ProbeFailed({**record, "status": "error",
                           "error": f"memory budget {budget_gib:g} GiB, but the probe recorded "
                                    f"no {what}"})
    if used <= budget_gib * GIB:
        return None
    return (f"batch size {record.get('batch_size')} does not fit the memory budget of "
            f"{budget_gib:g} GiB: {what} {used / GIB:.2f} GiB")


def fits(record: dict[str, Any], budget_gib: float | None) -> bool:
    """Whether a probe's batch fits: ``ok`` and within the budget (if any); ``oom`` does not
    fit; any other status raises ``ProbeFailed`` (it says nothing about memory)."""
    status = record.get("status")
    if status == "oom":
        return False
    if status != "ok":
        raise ProbeFailed(record)
    return over_budget(record, budget_gib) is None


def needs_search(cfg: RunConfig) -> bool:
    return cfg.max_batch is not None and cfg.batch_size == 0


def search_key(key: tuple) -> tuple:
    """A ``RunConfig.key()`` (or ``record_key``) as resume matches it: a searched config asks
    for batch size 0 and its record holds the size found, so both match with the size left
    out; a fixed batch size (``max_batch`` None) stays part of the key."""
    if key[_MAX_BATCH] is None:
        return key
    return key[:_BATCH] + (0,) + key[_BATCH + 1:]


def _failure(cfg: RunConfig, record: dict[str, Any], probes: list[tuple[int, bool]],
             status: str | None = None, error: str | None = None) -> dict[str, Any]:
    """The config's record when no size can be measured: the deciding probe's record (its
    batch size, memory and provenance), with the config's own step settings and the probes."""
    rec = dict(record)
    rec.update({k: getattr(cfg, k) for k in _PROBE_SETTINGS})
    if status is not None:  # over the budget: a verdict on the probe, not its measurement
        rec.update(dict.fromkeys(_PROBE_FIGURES), status=status, error=error)
    elif rec.get("error"):
        rec["error"] = f"probe at batch size {rec.get('batch_size')}: {rec['error']}"
    rec["batch_size_probes"] = [[b, ok] for b, ok in probes]
    return rec


def _verdict_text(verdict: str, rec: dict[str, Any], budget_gib: float | None) -> str:
    """One probe's outcome for the progress output: the verdict and what it rests on."""
    if verdict == "failed" or rec.get("status") == "oom":
        return f"{'does not fit' if verdict == 'no' else rec.get('status')}: {rec.get('error')}"
    text = "fits" if verdict == "fits" else "does not fit"
    used, what = probe_memory_bytes(rec)
    if budget_gib is None or used is None:
        return text
    return f"{text}: {what} {used / GIB:.2f} GiB, budget {budget_gib:g} GiB"


def resolve_max_batch(cfg: RunConfig, measure: Measure,
                      report: Callable[[str], None] | None = None,
                      ) -> tuple[RunConfig | None, dict[str, Any]]:
    """Probe ``cfg`` (``batch_size`` 0, ``max_batch`` the limit) through ``measure``: the
    config at the largest batch that fits (``max_batch`` kept) and the fields its measured
    record gains (``batch_size_probes``); or None and the record to store instead (``oom``
    when even batch size 1 does not fit, else the failure that stopped the search).
    ``report`` hears one line per probe."""
    assert cfg.max_batch is not None, "resolve_max_batch needs max_batch"
    records: dict[int, dict[str, Any]] = {}

    def try_size(size: int) -> bool:
        rec = records[size] = measure(probe_config(cfg, size))
        failed: dict[str, Any] | None = None
        try:
            verdict = "fits" if fits(rec, cfg.memory_budget_gib) else "no"
        except ProbeFailed as exc:
            verdict, failed = "failed", exc.record
        if report is not None:
            report(f"{cfg.label()}: probe bs={size} "
                   f"{_verdict_text(verdict, failed or rec, cfg.memory_budget_gib)}"[:300])
        # Under an external launcher every rank searches: all take the worst verdict of any
        # rank, so they probe the same sizes and none waits for a collective the others skip.
        worst = max(dist.gather(verdict), key=("fits", "no", "failed").index)
        if worst == "failed":
            raise ProbeFailed(failed or {**rec, "status": "error",
                                         "error": "another rank's probe failed"})
        return worst == "fits"

    tolerance = CPU_TOLERANCE if cfg.device == "cpu" else 0.0
    try:
        found, probes = largest_fitting(try_size, cfg.max_batch, tolerance=tolerance)
    except ProbeFailed as exc:
        return None, _failure(cfg, exc.record, exc.probes)
    if found is None:
        first = records[probes[0][0]]
        if first.get("status") == "oom":
            return None, _failure(cfg, first, probes)
        why = over_budget(first, cfg.memory_budget_gib) or "does not fit on another rank"
        return None, _failure(cfg, first, probes, status="oom", error=why)
    return dataclasses.replace(cfg, batch_size=found), {
        "batch_size_probes": [[b, ok] for b, ok in probes]}


def searching(measure: Measure, probe: Measure | None = None,
              report: Callable[[str], None] | None = None) -> Measure:
    """``measure`` that first resolves a searched config's batch size by probing through
    ``probe`` (default ``measure``; the sweep passes one that does not profile)."""

    def run(cfg: RunConfig) -> dict[str, Any]:
        if not needs_search(cfg):
            return measure(cfg)
        found, fields = resolve_max_batch(cfg, probe or measure, report)
        if found is None:
            return fields
        rec = measure(found)
        rec.update(fields)
        return measure_fallbacks(found, rec, measure, report)

    return run


def measure_fallbacks(found: RunConfig, rec: dict[str, Any], measure: Measure,
                      report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The record at the largest size that fit, or, if measuring there ran out of memory, at
    the next smaller size that fit (up to MAX_FALLBACKS of them). A one-step probe can fit
    where the measurement does not: its worker is new, and the warm-up's autotuning may try
    algorithms whose workspaces need more than the probe's. The record keeps each size given
    up, with its error, in ``batch_size_fallbacks``."""
    fitted = sorted((b for b, ok in rec.get("batch_size_probes") or () if ok
                     and b < found.batch_size), reverse=True)
    given_up: list[list[Any]] = []
    while rec.get("status") == "oom" and fitted and len(given_up) < MAX_FALLBACKS:
        given_up.append([found.batch_size, rec.get("error")])
        found = dataclasses.replace(found, batch_size=fitted.pop(0))
        if report is not None:
            report(f"{found.label()}: bs={given_up[-1][0]} ran out of memory when measured; "
                   f"measuring at bs={found.batch_size}, the next size that fit")
        rec = {**measure(found), "batch_size_probes": rec["batch_size_probes"]}
    if given_up:
        rec["batch_size_fallbacks"] = given_up
    return rec
