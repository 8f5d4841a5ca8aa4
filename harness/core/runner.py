"""Runner: one ``RunConfig`` -> one record. Any failure becomes a row with a status.

Measurement follows docs/architecture.md ("How a number is measured"): data is resident on the
device and batches are index slices drawn before timing (a pool of ``POOL_STEPS`` rows, cycled);
an untimed warm-up, adaptive unless the config fixes its length; ``repeats`` timed regions of at
least ``timed_steps`` steps and the config's minimum time, synchronized only at their edges
(``core.loop``); loss finiteness is checked after the regions; evaluation is untimed and comes
last. The runner plans the config's memory per rank before building anything (``core.memplan``:
a config that cannot fit is an ``oom`` record), builds what it needs (``core.build``: a sharded
model on the meta device where it can; ``core.parallel`` converts and wraps the model: float8,
activation checkpointing, DDP or FSDP2), hands it to the loop, and assembles the record from
what the loop measured (``core.record`` turns the results into fields).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import time
from pathlib import Path

import torch

from harness.core import dist
from harness.core.build import build_model
from harness.core.config import RunConfig
from harness.core.data import Dataset, ImageData, input_spec, load_dataset
from harness.core.determinism import determinism
from harness.core.devices import use_device
from harness.core.failures import DoesNotFit, classify, does_not_fit
from harness.core.flops import StepFlops, model_flops_per_token, train_step_flops
from harness.core.knob import injected_slowdown
from harness.core.loop import Clock, check_finite, run_timed, run_to_target
from harness.core.memplan import plan_memory, rank_capacity
from harness.core.optim import make_optimizer, step_syncs_host, uses_fused
from harness.core.parallel import compiled, prepare
from harness.core.pipeline import LoaderData, loader_data
from harness.core.precision import PrecisionPlan, resolve_precision
from harness.core.profiling import profile_steps
from harness.core.record import (  # noqa: F401  (Peaks, peak_dtype, peak_key: the sweep's)
    Peaks,
    efficiency_fields,
    energy_fields,
    identity_fields,
    input_fields,
    measured_fields,
    method_fields,
    peak_dtype,
    peak_key,
)
from harness.core.step import eval_batch_size, evaluate, loss_fn, make_train_step
from harness.core.timing import RegionTimer, median_iqr
from harness.errors import one_line
from harness.probes import provenance
from harness.probes.host_heap import apply_host_heap
from harness.probes.memory import (
    current_rss_bytes,
    device_memory_fields,
    host_memory_bytes,
    peak_memory,
    peak_rss_bytes,
    release_memory,
    reset_peak_memory,
    reset_peak_rss,
    share_pct,
    trim_host_heap,
)
from harness.probes.telemetry import NvmlSampler, device_memory_used, power_limit_w
from harness.schema import new_run_id
from models import get_model_info

COMPILE_BACKEND_ENV = "TRAINMARK_COMPILE_BACKEND"  # torch.compile backend; default inductor
# Batch-index rows drawn per config before timing; steps cycle through them (core.loop). A fixed
# size, so a replay that runs the same steps draws the same batches whatever the counts; the
# first rows equal what earlier versions drew for their fixed step counts.
POOL_STEPS = 1024


class Runner:
    """Runs configs one after another in this process, caching datasets between them.

    ``peaks`` are the device peaks the sweep measured before its first config (``peak_key`` ->
    value and source); a peak not given is read from the cache, never measured here.
    ``isolation`` is recorded: ``process`` when each config runs in a fresh worker.
    """

    def __init__(self, run_id: str | None = None, data_dir: str = "data",
                 download: bool = False, peaks: Peaks | None = None,
                 isolation: str = "none", profile_dir: str | None = None) -> None:
        self.run_id = run_id or new_run_id()
        self.data_dir = data_dir
        self.download = download
        self.peaks = dict(peaks or {})
        self.isolation = isolation
        self.profile_dir = profile_dir  # --profile: a folder per record, see core.profiling
        # Before the first allocation of a config: a step must reuse its buffers, not fault them
        # in again every step (probes.host_heap says why and what it measured).
        self.host_heap = apply_host_heap()
        self._hwm_before_model: int | None = None
        self._peak_before_profile: int | None = None
        self._data_key: tuple | None = None
        self._data: Dataset | None = None
        self._planned: dict[str, object] = {}  # the config's memory plan (core.memplan)
        # Per step shape: the count, or why there is none (shapes alone decide the count).
        self._flops: dict[tuple, tuple[StepFlops | None, str | None]] = {}

    def dataset(self, cfg: RunConfig) -> Dataset | LoaderData:
        device = dist.local_device(cfg.device)
        spec = input_spec(cfg.model, cfg.dataset, image_size=cfg.image_size,
                          num_classes=cfg.num_classes, seq_len=cfg.seq_len)
        key: tuple = (cfg.dataset, device, cfg.data_seed, cfg.train_samples, cfg.eval_samples,
                      cfg.channels_last, spec, cfg.input)
        if cfg.input == "loader":  # a loader is made for one batch size, seed and pipeline
            key += (cfg.batch_size, cfg.seed, cfg.workers, cfg.transforms)
        if key != self._data_key:
            if isinstance(self._data, LoaderData):
                self._data.close()
            self._data = None  # free the previous dataset before loading the next
            gc.collect()
            loader = cfg.input == "loader"
            # The loader decodes on the host; only its held-out split goes to the device. It
            # reads CIFAR-10's and an image folder's training files itself (synthetic data it
            # takes from the generated pool), so those are not decoded here too.
            data = load_dataset(
                cfg.dataset, torch.device("cpu" if loader else device),
                data_dir=self.data_dir, download=self.download, data_seed=cfg.data_seed,
                train_samples=cfg.train_samples, eval_samples=cfg.eval_samples, spec=spec,
                held_out_only=loader and cfg.dataset != "synthetic",
            )
            if loader:
                assert isinstance(data, ImageData)  # core.suites refuses loader for text
                data = loader_data(
                    data, cfg.dataset, torch.device(device), size=spec.image_size,
                    batch_size=cfg.batch_size, workers=cfg.workers, transforms=cfg.transforms,
                    seed=cfg.seed + 1_000_003 * dist.rank(), data_dir=self.data_dir,
                    data_seed=cfg.data_seed, train_samples=cfg.train_samples)
            if cfg.channels_last:
                # Stored NHWC once, so batches (index slices) are NHWC without a per-step copy.
                nhwc = torch.channels_last
                if isinstance(data, ImageData):
                    data.train_x = data.train_x.contiguous(memory_format=nhwc)
                elif isinstance(data, LoaderData):  # its batches are copied to the device NHWC
                    data.memory_format = nhwc
                data.eval_x = data.eval_x.contiguous(memory_format=nhwc)
            self._data, self._data_key = data, key
        assert self._data is not None
        return self._data

    def base_record(self, cfg: RunConfig) -> dict[str, object]:
        """Identity, config and provenance fields: what every record has, whatever happens."""
        rec: dict[str, object] = {
            **identity_fields(cfg, self.run_id),
            "task": get_model_info(cfg.model).task,
            "status": None,
            "error": None,
            "isolation": self.isolation,
            "host_heap": self.host_heap,
            # Test-only slowdown knob: recorded when set, so such a record is never mistaken
            # for a real measurement (compare refuses it as a baseline).
            "injected_slowdown": injected_slowdown(dataclasses.asdict(cfg)) or None,
        }
        # A process that will only launch this config's ranks (nproc > 1 or fsdp, no group yet)
        # leaves the device alone; rank 0's record brings the device's fields.
        launches = cfg.needs_launcher and not dist.active()
        rec.update(provenance.collect(cfg.device, query_device=not launches))
        return rec

    def run(self, cfg: RunConfig) -> dict[str, object]:
        """Measure ``cfg`` in this process (one rank of it, under a launcher); never raises for
        a failing config (KeyboardInterrupt excepted)."""
        rec = self.base_record(cfg)
        self._hwm_before_model = self._peak_before_profile = None
        self._planned = {}
        if cfg.nproc != dist.world_size():
            rec.update(status="error", error=f"nproc {cfg.nproc} but {dist.world_size()} "
                                             "processes run it (launch with torchrun)")
            return rec
        device = torch.device(dist.local_device(cfg.device))
        started = time.perf_counter()
        try:
            use_device(device)  # before anything asks the current device (core.devices)
            with determinism(cfg.deterministic, cfg.seed):
                rec["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
                rec.update(self._measure(cfg, device, str(rec["record_id"])))
            rec["status"] = "ok"
        except Exception as exc:  # any failure is a record (core.failures says which status)
            rec["status"], rec["error"] = classify(exc)
        finally:
            gc.collect()
            release_memory(device)
        rec.update(self._planned)  # what the plan estimated, whether or not the config ran
        rec["wall_time_s"] = time.perf_counter() - started
        # The process's peak: this config's own in a fresh worker (isolation "process"); in a
        # shared process it also holds what earlier configs left behind.
        # (Profiled steps come after the measurements and do not count.)
        rec["peak_rss_bytes"] = max(self._peak_before_profile or peak_rss_bytes(),
                                    self._hwm_before_model or 0)
        rec["peak_rss_pct"] = share_pct(rec["peak_rss_bytes"], host_memory_bytes())
        return rec

    def plan_fits(self, cfg: RunConfig, model_kwargs: dict[str, int], precision: str,
                  device: torch.device) -> None:
        """The config's memory plan per rank (``core.memplan``), kept for the record; a
        ``DoesNotFit`` (an ``oom`` record naming the estimate) when it exceeds what some rank
        may use. Every rank decides together, so none is left waiting in a collective."""
        world = dist.world_size()
        memory = plan_memory(cfg.model, model_kwargs, batch_size=cfg.batch_size,
                             precision=precision, optimizer=cfg.optimizer,
                             parallel=cfg.parallel, world=world,
                             activation_checkpointing=cfg.activation_checkpointing,
                             capacity=rank_capacity(device, world))
        self._planned = memory.fields()
        if not dist.all_true(memory.fits):
            memory.check()  # this rank's estimate, if it is the one that does not fit
            raise DoesNotFit("memory plan: another rank's estimate exceeds what it may use")

    def _step_flops(self, cfg: RunConfig, model: torch.nn.Module, data: Dataset | LoaderData,
                    idx: torch.Tensor, plan: PrecisionPlan) -> tuple[StepFlops | None, str | None]:
        """FLOPs of one training step (forward + backward, per rank, with any recomputation),
        counted once per shape and checkpointing, or None and why not. Counting runs the step
        once more: if that does not fit, neither will training, so the config is ``oom``
        (saying so) rather than silently without MFU; any other failure loses only the count.
        Under FSDP every rank counts at once (the pass gathers and reduces as a step does)."""
        key = (cfg.model, cfg.dataset, cfg.batch_size, cfg.channels_last, cfg.device,
               cfg.image_size, cfg.num_classes, cfg.seq_len, cfg.activation_checkpointing,
               cfg.parallel, cfg.precision)
        if key not in self._flops:
            try:
                x, y = data.batch(idx)
                self._flops[key] = (train_step_flops(
                    model, x, y, loss_fn=loss_fn, autocast_dtype=plan.autocast_dtype), None)
            except Exception as exc:
                if does_not_fit(exc) is not None:
                    raise DoesNotFit(f"counting the step's FLOPs: {classify(exc)[1]}") from exc
                self._flops[key] = (None, one_line(exc))
        return self._flops[key]

    def _measure(self, cfg: RunConfig, device: torch.device,
                 record_id: str) -> dict[str, object]:
        plan = resolve_precision(cfg.precision, device, allow_emulated=cfg.allow_emulated)
        data = self.dataset(cfg)
        self.plan_fits(cfg, data.model_kwargs, plan.name, device)
        # Host memory: what the process held once the data was in (the runtime, the data), and
        # from here a fresh high-water mark for what building and training the model adds.
        trim_host_heap()  # what loading the data freed is not the data
        rss_before_model, self._hwm_before_model = current_rss_bytes(), peak_rss_bytes()
        fresh_mark = reset_peak_rss()
        # Same initial weights on every rank; sharded on the meta device where the model can
        # initialise its own shards after sharding (core.build), else whole on the device.
        built = build_model(cfg.model, data.model_kwargs, device,
                            sharded=cfg.parallel == "fsdp", seed=cfg.seed)
        model = built.model
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        per_token = model_flops_per_token(model, data.items_per_sample())  # before sharding
        prepared = prepare(model, device, parallel=cfg.parallel, plan=plan,
                           activation_checkpointing=cfg.activation_checkpointing)
        plan = prepared.plan  # under FSDP its mixed-precision policy replaces autocast
        built.materialize(device)  # a meta build: each rank's shards, initialised
        optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr,
                                   fused=uses_fused(device.type))  # FSDP's shards, if sharded
        prepared.attach(optimizer)
        gen = torch.Generator().manual_seed(cfg.seed + 1_000_003 * dist.rank())  # own batches
        tta = cfg.target_accuracy is not None
        eval_batch = eval_batch_size(cfg.batch_size, data.outputs_per_sample())
        pool_steps = cfg.max_steps if tta else POOL_STEPS
        indices = data.sample_indices(pool_steps, cfg.batch_size, gen)  # (steps, B) on device
        flops, flops_error = self._step_flops(cfg, model, data, indices[0], plan)  # untimed
        backend = os.environ.get(COMPILE_BACKEND_ENV, "inductor") if cfg.compile else None
        trained = compiled(prepared, backend) if backend else prepared.trained
        step = make_train_step(trained, optimizer, data, plan, device)
        clock = Clock(RegionTimer(device), NvmlSampler(device),
                      cfg.batch_size * data.items_per_sample(),
                      injected_slowdown(dataclasses.asdict(cfg)))
        # The counting pass's cached blocks (cuDNN workspaces) go back before the peaks restart:
        # the reserved peak, which --memory-budget judges, is the timed steps' own.
        release_memory(device)
        reset_peak_memory(device)
        if tta:
            m = run_to_target(step, indices, clock, target=cfg.target_accuracy,
                              interval=cfg.eval_interval,
                              evaluate=lambda: evaluate(model, data, plan, device,
                                                        cfg.eval_samples, eval_batch))
        else:
            m = run_timed(step, indices, clock, warmup=cfg.warmup_steps, repeats=cfg.repeats,
                          steps=cfg.timed_steps, min_time_s=cfg.resolved_min_time_s(),
                          compiled=cfg.compile)
        curve = check_finite(m.losses)
        alloc, reserved = peak_memory(device)
        memory = device_memory_fields(device)  # torchtitan's view: active, reserved, retries
        used = device_memory_used(device)
        data_bytes = data.device_bytes() if device.type != "cpu" else None
        # Time to accuracy already evaluated the final model after its last interval.
        m.last_eval = m.last_eval if tta else evaluate(model, data, plan, device,
                                                       cfg.eval_samples, eval_batch)
        fields = {
            "num_params": sum(p.numel() for p in model.parameters()),
            "build": built.build,
            # Whether the low-precision format ran emulated (asked for); null for fp32.
            "precision_emulated": plan.emulated if plan.name != "fp32" else None,
            "eval_batch_size": eval_batch,
            "throughput_unit": data.unit,
            "peak_memory_allocated_bytes": alloc,
            "peak_memory_reserved_bytes": reserved,
            # What training added on the device: the allocator peak without the resident data
            # (which every config of a dataset pays alike; compare judges this figure).
            "dataset_device_bytes": data_bytes,
            "train_memory_allocated_bytes": (alloc - data_bytes if alloc is not None
                                             and data_bytes is not None else None),
            "device_memory_used_bytes": used,
            "rss_before_model_bytes": rss_before_model,
            "train_rss_bytes": (peak_rss_bytes() - rss_before_model
                                if fresh_mark and rss_before_model is not None else None),
            "compile_backend": backend,
            "flops_error": flops_error,
            "optimizer_fused": bool(optimizer.defaults.get("fused")),
            "dist_backend": dist.backend_name(),
            "step_syncs_host": step_syncs_host(optimizer, plan.use_scaler),
            "power_limit_w": power_limit_w(device),
            **memory,
            **prepared.fields,
            **measured_fields(m, curve, tta),
            **method_fields(m),
            **efficiency_fields(cfg, flops.total if flops else None,
                                median_iqr(m.step_times_s)[0],
                                conv=flops.conv_share > 0.5 if flops else False,
                                peaks=self.peaks,
                                model_flops=(per_token * cfg.batch_size * data.items_per_sample()
                                             if per_token else None)),
            **energy_fields(clock, len(m.step_times_s)),
            **input_fields(data, m),
        }
        if self.profile_dir and dist.world_size() == 1:
            # After every measurement: profiling costs time and host memory that no recorded
            # number may include (peak RSS is read here, before it).
            self._peak_before_profile = peak_rss_bytes()
            profiled = make_train_step(trained, optimizer, data, plan, device,
                                       phases=torch.profiler.record_function)
            try:
                fields.update(profile_steps(profiled, indices, device,
                                            Path(self.profile_dir) / record_id))
            except Exception as exc:  # a profiler failure must not lose the measurement
                fields["profile_error"] = one_line(exc)
        return fields

