"""The sweep loop: configs -> runner -> store, with progress and scaling efficiency.

Kept apart from the CLI so that the same loop serves ``trainmark run`` on one process and on
every rank of a multi-process launch (where only rank 0 stores and prints), ``trainmark
rerun``/``verify`` and the A/B worker. Whatever a sweep must prepare once (the peak FLOP/s its
MFU figures need, ``execution.peaks``) happens before the first config, never in the middle of
one.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable

from harness.core import dist
from harness.core.config import CONFIG_FIELDS, RunConfig, record_key
from harness.core.runner import Runner
from harness.execution.batch_search import searching
from harness.execution.distributed import run_config
from harness.execution.isolation import (
    ProcessIsolation,
    RankIsolation,
    measure_peaks_isolated,
)
from harness.execution.peaks import prepare_peaks

_NPROC = CONFIG_FIELDS.index("nproc")


def _single_process_key(key: tuple) -> tuple:
    return key[:_NPROC] + (1,) + key[_NPROC + 1:]


class ScalingTracker:
    """Remembers 1-process throughputs so an N-process record gets its scaling efficiency:
    ``throughput_N / (N x throughput_1)`` for the same config (1.0 is perfect scaling)."""

    def __init__(self, previous: Iterable[dict] = ()) -> None:
        self.single: dict[tuple, float] = {}
        for rec in previous:
            self.add(rec)

    def add(self, rec: dict) -> None:
        if rec.get("status") == "ok" and int(rec.get("nproc") or 1) == 1 and rec.get("throughput"):
            self.single[record_key(rec)] = float(rec["throughput"])

    def annotate(self, rec: dict) -> None:
        nproc = int(rec.get("nproc") or 1)
        base = self.single.get(_single_process_key(record_key(rec)))
        if nproc > 1 and base and rec.get("throughput"):
            rec["scaling_efficiency"] = float(rec["throughput"]) / (nproc * base)
        elif nproc > 1:
            rec["scaling_efficiency"] = None


def order_for_scaling(configs: list[RunConfig]) -> list[RunConfig]:
    """1-process configs first, so every N-process record finds its reference."""
    return sorted(configs, key=lambda c: c.nproc)  # stable: otherwise the sweep's order


Measure = Callable[[RunConfig], dict]


def config_runner(isolation: str, configs: list[RunConfig], *, run_id: str, data_dir: str,
                  download: bool, timeout_s: float, quiet: bool = False,
                  profile_dir: str | None = None) -> Measure:
    """How each config of the sweep is measured, its device peaks prepared first:
    ``process``, a fresh worker per config (``execution.isolation``), and under an external
    launcher (srun, multi-node torchrun) a fresh worker per rank and config, in a process
    group of its own; ``none``, this process (debugging, the overhead benchmark). A config with
    ``--batch-sizes max`` first has its batch size found by probes (``execution.batch_search``)
    made the same way, one worker each, and never profiled."""
    if isolation == "process":
        peaks = measure_peaks_isolated(configs)  # each rank its own node's
        kind = RankIsolation if dist.active() else ProcessIsolation
        measure: Measure = kind(run_id, data_dir, download, timeout_s, peaks,
                                profile_dir=profile_dir).run
        probe = kind(run_id, data_dir, download, timeout_s, peaks).run
    else:
        runner = Runner(run_id=run_id, data_dir=data_dir, download=download,
                        peaks=prepare_peaks(configs, quiet=quiet), profile_dir=profile_dir)
        # Probes that must not profile get a runner of their own (it loads its own data).
        prober = Runner(run_id=run_id, data_dir=data_dir, download=download,
                        peaks=runner.peaks) if profile_dir else runner

        def measure(cfg: RunConfig) -> dict:
            return run_config(runner, cfg, timeout_s)

        def probe(cfg: RunConfig) -> dict:
            return run_config(prober, cfg, timeout_s)

    return searching(measure, probe, report=None if quiet or dist.rank() else _tell)


def _tell(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)  # above the progress bar, if one is drawn


def run_sweep(
    configs: list[RunConfig],
    measure: Measure,
    store: Callable[[dict], None] | None,
    *,
    previous: Iterable[dict] = (),
    quiet: bool = False,
) -> int:
    """Run ``configs`` in order, passing each record to ``store`` (None: don't store, e.g. on
    a non-zero rank). Returns how many configs finished; KeyboardInterrupt propagates."""
    from tqdm import tqdm

    scaling = ScalingTracker(previous)
    show = store is not None and not quiet
    bar = tqdm(configs, unit="config", file=sys.stderr, disable=None if show else True,
               dynamic_ncols=True)
    finished = 0
    try:
        for cfg in bar:
            bar.set_description(cfg.label())
            rec = measure(cfg)
            scaling.annotate(rec)
            scaling.add(rec)
            if store is not None:
                store(rec)
            finished += 1
            if show:
                tp = rec.get("throughput")
                what = f"{tp:,.0f} {rec['throughput_unit']}" if tp else rec.get("error") or ""
                msg = f"[{finished}/{len(configs)}] {searched(cfg, rec)}: {rec['status']} {what}"
                if bar.disable:
                    print(msg, file=sys.stderr, flush=True)
                else:
                    tqdm.write(msg, file=sys.stderr)
    finally:
        bar.close()
    return finished


def searched(cfg: RunConfig, rec: dict) -> str:
    """The config's label, with the batch size a search found (or stopped at) and its probes."""
    probes = rec.get("batch_size_probes")
    if probes is None or not rec.get("batch_size"):
        return cfg.label()
    label = dataclasses.replace(cfg, batch_size=int(rec["batch_size"])).label()
    return f"{label} [{len(probes)} probe{'s' if len(probes) != 1 else ''}]"


def for_world(configs: list[RunConfig], world_size: int) -> list[RunConfig]:
    """Under an external launcher every config runs on all its processes."""
    return list(dict.fromkeys(dataclasses.replace(c, nproc=world_size) for c in configs))
