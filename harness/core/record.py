"""A record's fields, assembled from what a config's measurement produced.

``core.runner`` builds and measures; these functions turn its results into the flat fields of
a record (docs/architecture.md, "The record"): identity and config, speed and quality, what the
loop ran, FLOPs and utilisation, energy, the input, and how the model was held across ranks.
Plain functions of plain values, so each field's arithmetic can be checked by hand.

**Per device.** Throughput is global (all ranks' items over the slowest rank's time);
``throughput_per_device`` divides it by the ranks, torchtitan's "tokens/s per GPU". FLOP counts
are per rank (each rank's own batch), peaks and achieved FLOP/s are over all ranks, so every
utilisation is the same per rank and overall.
"""

from __future__ import annotations

import dataclasses

import torch

from harness.core import dist
from harness.core.config import RunConfig
from harness.core.data import Dataset
from harness.core.flops import achieved_flops_per_s, mfu
from harness.core.loop import Clock, Measured
from harness.core.losscurve import compact_curve, curve_digest
from harness.core.pipeline import LoaderData
from harness.core.precision import gemm_dtype
from harness.core.timing import median_iqr
from harness.probes.peak import peak_flops_per_s
from harness.schema import SCHEMA_VERSION, new_record_id, utc_timestamp

Peaks = dict[str, tuple[float | None, str]]  # "device|dtype" -> (FLOP/s, source)


def peak_key(device: str, dtype: str) -> str:
    return f"{device}|{dtype}"


def peak_dtype(cfg: RunConfig, conv: bool) -> str:
    """The GEMM dtype whose peak a config's MFU is measured against. cuDNN convolutions run
    fp32 as TF32 by default, so conv nets get the TF32 peak on CUDA."""
    device_type = cfg.device.split(":")[0]
    tf32 = bool(torch.backends.cudnn.allow_tf32) if conv else None
    return gemm_dtype(cfg.precision, device_type, tf32=tf32)


def identity_fields(cfg: RunConfig, run_id: str) -> dict[str, object]:
    """The schema version, ids, timestamp and config fields every record starts with."""
    return {"schema_version": SCHEMA_VERSION, "run_id": run_id, "record_id": new_record_id(),
            "timestamp": utc_timestamp(), **dataclasses.asdict(cfg)}


def input_fields(data: Dataset | LoaderData, m: Measured) -> dict[str, object]:
    """The input that ran, and for a loader how much of the timed time waited for it and what
    the loader delivers alone (measured here, after training: never on the clock)."""
    kwargs = data.model_kwargs
    fields: dict[str, object] = {
        "input_shape": data.input_shape,
        "model_classes": kwargs.get("num_classes", kwargs.get("vocab_size")),
    }
    if isinstance(data, LoaderData):
        fields["data_wait_share"] = data.wait_share(len(m.step_times_s), sum(m.region_seconds))
        fields["loader_samples_per_s"] = data.loader_rate()
    return fields


def measured_fields(m: Measured, curve: torch.Tensor, tta: bool) -> dict[str, object]:
    """Speed and quality fields of a record, from what the loop measured."""
    med, iqr = median_iqr([t * 1e3 for t in m.step_times_s])
    values, every = compact_curve(curve)
    throughput = median_iqr(m.region_throughputs)[0]
    fields: dict[str, object] = {
        "throughput": throughput,
        "throughput_per_device": throughput / dist.world_size(),
        "step_time_ms_median": med,
        "step_time_ms_iqr": iqr,
        "repeat_throughputs": m.region_throughputs,
        # A diagnostic, not a verdict: ~0 when a step reuses its memory (probes.host_heap)
        "host_page_faults_per_step": m.page_faults / max(1, len(m.step_times_s)),
        "train_loss": float(curve[-1]),
        "eval_loss": m.last_eval[0],
        "eval_accuracy": m.last_eval[1],
        "loss_curve": values,
        "loss_curve_every": every,
        "loss_curve_sha256": curve_digest(curve),
    }
    if m.compile_time_s is not None:
        fields["compile_time_s"] = m.compile_time_s
    if dist.world_size() > 1:  # per-rank step-time medians show stragglers
        fields["rank_step_time_ms_median"] = dist.gather(med)
    if tta:
        reached = m.reached_at is not None
        fields.update({"target_reached": reached, "steps_to_accuracy": m.reached_at,
                       "time_to_accuracy_s": m.trained_s if reached else None,
                       "train_time_s": m.trained_s, "steps_run": m.steps_run})
    return fields


def method_fields(m: Measured) -> dict[str, object]:
    """What the loop actually ran (the config's ``warmup_steps`` and ``timed_steps`` are what was
    asked); nothing in time-to-accuracy mode, which has no warm-up and no calibration."""
    if m.warmup is None:
        return {}
    return {"warmup_rule": m.warmup.rule, "warmup_steps_run": m.warmup.steps,
            "warmup_stable": m.warmup.stable, "warmup_time_s": m.warmup.seconds,
            "timed_steps_run": m.region_steps, "min_time_s_run": m.min_time_s}


def utilisation_fields(counted: int | None, model_flops: int | None, step_s: float | None,
                       peak: float | None, world: int) -> dict[str, object]:
    """Counted and model FLOPs (per rank and step) over a step of ``step_s`` seconds, against
    one device's ``peak`` FLOP/s, for ``world`` ranks. ``hfu`` divides the counted FLOPs (with
    any recomputation: hardware FLOPs utilisation); ``mfu`` the model's analytic FLOPs where
    the model has them (``mfu_flops`` "model"), else the counted ones ("counted": models
    without checkpointing, whose count is their model FLOPs)."""
    achieved = achieved_flops_per_s(counted * world if counted else None, step_s or None)
    total_peak = peak * world if peak else None
    basis = model_flops if model_flops else counted
    model_achieved = achieved_flops_per_s(basis * world if basis else None, step_s or None)
    return {"flops_per_step": counted, "achieved_flops_per_s": achieved,
            "peak_flops_per_s": total_peak, "hfu": mfu(achieved, total_peak),
            "model_flops_per_step": model_flops,
            "mfu_flops": ("model" if model_flops else "counted") if basis else None,
            "mfu": mfu(model_achieved, total_peak)}


def efficiency_fields(cfg: RunConfig, flops: int | None, step_s: float | None, *,
                      conv: bool, peaks: Peaks, model_flops: int | None = None,
                      ) -> dict[str, object]:
    """FLOPs, achieved FLOP/s over all ranks, and MFU/HFU against the device's peak. The peak
    comes from the datasheet table or the cache only: measuring a GEMM here would run in the
    middle of a sweep (``execution.peaks.prepare_peaks`` prepares them before the first
    config)."""
    device, dtype = dist.local_device(cfg.device), peak_dtype(cfg, conv)
    given = peaks.get(peak_key(cfg.device, dtype))
    peak, source = given if given else peak_flops_per_s(device, dtype, measure=False)
    fields = utilisation_fields(flops, model_flops, step_s, peak, dist.world_size())
    if cfg.activation_checkpointing != "none" and not model_flops:
        fields.update(mfu=None, mfu_flops=None)  # the count includes the recomputation
    return {**fields, "peak_flops_source": source, "peak_flops_dtype": dtype}


def energy_fields(clock: Clock, timed_steps: int) -> dict[str, object]:
    """NVML's summary over the timed regions, with samples (or tokens) per joule."""
    energy = clock.sampler.summary()
    if energy.get("energy_j"):  # this rank's items on the clock per joule of its device
        energy["samples_per_joule"] = clock.items_per_step * timed_steps / energy["energy_j"]
    return energy
