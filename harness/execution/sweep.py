"""The sweep loop: configs -> runner -> store, with progress and scaling efficiency.

Kept apart from the CLI so that the same loop serves ``trainmark run`` on one process and on
every rank of a multi-process launch (where only rank 0 stores and prints), ``trainmark
rerun``/``verify`` and the A/B worker. Whatever a sweep must prepare once (the peak FLOP/s its
MFU figures need) happens here, before the first config, never in the middle of one.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable

from harness.core import dist
from harness.core.config import CONFIG_FIELDS, RunConfig, record_key
from harness.core.runner import Runner, peak_dtype
from harness.execution.distributed import run_config
from harness.probes.peak import peak_flops_per_s
from models import IMAGE_CLASSIFICATION, get_model_info

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


def prepare_peaks(configs: Iterable[RunConfig], *, quiet: bool = False) -> None:
    """Measure the GEMM peaks the configs' MFU needs that no datasheet lists and no earlier run
    cached (a few seconds per device and dtype, once per machine). Ranks of a multi-process
    launch only read the cache: they would measure each other's load."""
    if dist.active():
        return
    needed = dict.fromkeys(
        (c.device, peak_dtype(c, conv=get_model_info(c.model).task == IMAGE_CLASSIFICATION))
        for c in configs)
    for device, dtype in needed:
        if peak_flops_per_s(device, dtype, measure=False)[0] is None:
            if not quiet:
                print(f"measuring the {dtype} GEMM peak of {device} for MFU (cached)",
                      file=sys.stderr, flush=True)
            peak_flops_per_s(device, dtype, measure=True)


def run_sweep(
    configs: list[RunConfig],
    runner: Runner,
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
            rec = run_config(runner, cfg)
            scaling.annotate(rec)
            scaling.add(rec)
            if store is not None:
                store(rec)
            finished += 1
            if show:
                tp = rec.get("throughput")
                what = f"{tp:,.0f} {rec['throughput_unit']}" if tp else rec.get("error") or ""
                msg = f"[{finished}/{len(configs)}] {cfg.label()}: {rec['status']} {what}"
                if bar.disable:
                    print(msg, file=sys.stderr, flush=True)
                else:
                    tqdm.write(msg, file=sys.stderr)
    finally:
        bar.close()
    return finished


def for_world(configs: list[RunConfig], world_size: int) -> list[RunConfig]:
    """Under an external launcher every config runs on all its processes."""
    return list(dict.fromkeys(dataclasses.replace(c, nproc=world_size) for c in configs))
