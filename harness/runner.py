"""Runner: one ``RunConfig`` -> one record. Isolated: any failure becomes a row with a status.

Measurement follows DESIGN.md: data is resident on the device and batches are index slices
drawn before timing; untimed warm-up; ``repeats`` timed regions synchronized only at their edges
(the step loop never calls ``.item()``); loss finiteness is checked after the region; evaluation
is untimed and comes last.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import os
import time
import uuid
from collections.abc import Callable

import torch
import torch.nn.functional as F

from harness import distributed, provenance
from harness.config import RunConfig
from harness.data import Dataset, ImageData, load_dataset
from harness.determinism import determinism
from harness.devices import peak_memory, release_memory, reset_peak_memory, synchronize
from harness.errors import Diverged, Unavailable, one_line
from harness.flops import achieved_flops_per_s, count_train_step_flops, mfu
from harness.losscurve import compact_curve, curve_digest
from harness.optim import make_optimizer
from harness.peak import peak_flops_per_s
from harness.precision import PrecisionPlan, resolve_precision
from harness.results import SCHEMA_VERSION
from harness.telemetry import NvmlSampler, device_memory_used, peak_rss_bytes
from harness.timing import RegionTimer, median_iqr
from models import create_model, get_model_info

StepFn = Callable[[torch.Tensor], torch.Tensor]

# Test-only knob for checking that regression gates detect slowdowns: when set to a fraction f,
# each timed step is followed by a sleep of f x its own duration (and, only then, a device sync).
SLOWDOWN_ENV = "TRAINMARK_INJECT_SLOWDOWN"
COMPILE_BACKEND_ENV = "TRAINMARK_COMPILE_BACKEND"  # torch.compile backend; default inductor


def _injected_slowdown() -> float:
    text = os.environ.get(SLOWDOWN_ENV, "").strip()
    return float(text) if text else 0.0


def new_run_id() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # Image: (B, classes) vs (B,). LM: (B, T, vocab) vs (B, T), flattened to tokens.
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def _autocast(plan: PrecisionPlan, device: torch.device):
    if plan.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=plan.autocast_dtype)


def make_train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    plan: PrecisionPlan,
    device: torch.device,
) -> StepFn:
    """One training step on the batch at ``idx``; returns the (detached, on-device) loss."""
    if plan.use_scaler:
        scaler = torch.amp.GradScaler(device.type)

        def step(idx: torch.Tensor) -> torch.Tensor:
            x, y = data.batch(idx)
            with _autocast(plan, device):
                loss = _loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)  # note: GradScaler checks for inf/NaN with one host sync
            scaler.update()
            return loss.detach()

        return step

    def step(idx: torch.Tensor) -> torch.Tensor:
        x, y = data.batch(idx)
        with _autocast(plan, device):
            loss = _loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, data: Dataset, plan: PrecisionPlan, device: torch.device,
    limit: int, batch_size: int = 256,
) -> tuple[float | None, float | None]:
    """Held-out mean cross-entropy and top-1 accuracy (next-token accuracy for the LM)."""
    model.eval()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    for x, y in data.eval_batches(batch_size, limit):
        with _autocast(plan, device):
            logits = model(x)
        logits = logits.float()
        total_loss += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
        ).double()
        correct += (logits.argmax(dim=-1) == y).sum()
        count += y.numel()
    model.train()
    if count == 0:
        return None, None
    return float(total_loss) / count, int(correct) / count


class Runner:
    """Runs configs one after another in this process, caching datasets between them."""

    def __init__(self, run_id: str | None = None, data_dir: str = "data",
                 download: bool = False, tensorboard_dir: str | None = None) -> None:
        self.run_id = run_id or new_run_id()
        self.data_dir = data_dir
        self.download = download
        self.tensorboard_dir = tensorboard_dir
        self._data_key: tuple | None = None
        self._data: Dataset | None = None
        self._flops: dict[tuple, int | None] = {}  # FLOPs per step depend on shapes only
        self._peaks: dict[tuple, tuple[float | None, str]] = {}

    def dataset(self, cfg: RunConfig) -> Dataset:
        device = distributed.local_device(cfg.device)
        key = (cfg.dataset, device, cfg.data_seed, cfg.train_samples, cfg.eval_samples,
               cfg.channels_last)
        if key != self._data_key:
            self._data = None  # free the previous dataset before loading the next
            gc.collect()
            self._data = load_dataset(
                cfg.dataset, torch.device(device), data_dir=self.data_dir,
                download=self.download, data_seed=cfg.data_seed,
                train_samples=cfg.train_samples, eval_samples=cfg.eval_samples,
            )
            if cfg.channels_last and isinstance(self._data, ImageData):
                # Stored NHWC once, so batches (index slices) are NHWC without a per-step copy.
                nhwc = torch.channels_last
                self._data.train_x = self._data.train_x.contiguous(memory_format=nhwc)
                self._data.eval_x = self._data.eval_x.contiguous(memory_format=nhwc)
            self._data_key = key
        assert self._data is not None
        return self._data

    def base_record(self, cfg: RunConfig) -> dict[str, object]:
        info = get_model_info(cfg.model)
        rec: dict[str, object] = {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "record_id": uuid.uuid4().hex[:12],
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **{k: getattr(cfg, k) for k in RunConfig.__dataclass_fields__},
            "task": info.task,
            "status": None,
            "error": None,
        }
        rec.update(provenance.collect(cfg.device))
        return rec

    def run(self, cfg: RunConfig) -> dict[str, object]:
        """Measure ``cfg``; never raises for a failing config (KeyboardInterrupt excepted)."""
        rec = self.base_record(cfg)
        if cfg.nproc > 1 and not distributed.active():
            # Each rank is its own process under torchrun; rank 0 sends back the record.
            started = time.perf_counter()
            rec.update(distributed.launch(cfg, self.data_dir, self.download, self.run_id))
            rec["wall_time_s"] = time.perf_counter() - started
            return rec
        if distributed.active() and cfg.nproc != distributed.world_size():
            rec.update(status="error", error=f"nproc {cfg.nproc} but the launcher started "
                                             f"{distributed.world_size()} processes")
            return rec
        device = torch.device(distributed.local_device(cfg.device))
        started = time.perf_counter()
        try:
            with determinism(cfg.deterministic, cfg.seed):
                rec["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
                rec.update(self._measure(cfg, device))
            rec["status"] = "ok"
        except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
            rec.update(status="oom", error=one_line(exc))
        except Diverged as exc:
            rec.update(status="diverged", error=one_line(exc))
        except (Unavailable, NotImplementedError) as exc:
            rec.update(status="unavailable", error=one_line(exc))
        except Exception as exc:  # isolation: the sweep goes on, the error is a column
            rec.update(status="error", error=one_line(exc))
        finally:
            gc.collect()
            release_memory(device)
        rec["wall_time_s"] = time.perf_counter() - started
        rec["peak_rss_bytes"] = peak_rss_bytes()
        if self.tensorboard_dir and rec["status"] == "ok":
            from harness.tboard import write_record  # optional dependency, imported on use

            write_record(self.tensorboard_dir, rec)
        return rec

    def _step_flops(self, cfg: RunConfig, model: torch.nn.Module, data: Dataset,
                    idx: torch.Tensor, plan: PrecisionPlan) -> int | None:
        """FLOPs of one training step (forward + backward, per rank), counted once per shape."""
        key = (cfg.model, cfg.dataset, cfg.batch_size, cfg.channels_last, cfg.device)
        if key not in self._flops:
            try:
                x, y = data.batch(idx)
                self._flops[key] = count_train_step_flops(
                    model, x, y, loss_fn=_loss, autocast_dtype=plan.autocast_dtype)
            except Exception:  # counting is best effort; the benchmark itself must not fail
                self._flops[key] = None
        return self._flops[key]

    def _efficiency(self, cfg: RunConfig, device: torch.device, data: Dataset,
                    flops: int | None, step_ms: float | None, world: int) -> dict[str, object]:
        """Achieved FLOP/s over all ranks and MFU against the device's peak."""
        conv = isinstance(data, ImageData)
        key = (str(device), cfg.precision, conv)
        if key not in self._peaks:
            # cuDNN convolutions run fp32 as TF32 by default, so conv nets get the TF32 peak.
            tf32 = bool(torch.backends.cudnn.allow_tf32) if conv else None
            # Ranks of a multi-process run would measure each other's load: cached peaks only.
            self._peaks[key] = peak_flops_per_s(str(device), cfg.precision, tf32=tf32,
                                                measure=not distributed.active())
        peak, source = self._peaks[key]
        achieved = achieved_flops_per_s(flops * world if flops else None,
                                        step_ms / 1e3 if step_ms else None)
        total_peak = peak * world if peak else None
        return {
            "flops_per_step": flops,
            "achieved_flops_per_s": achieved,
            "peak_flops_per_s": total_peak,
            "peak_flops_source": source,
            "mfu": mfu(achieved, total_peak),
        }

    def _measure(self, cfg: RunConfig, device: torch.device) -> dict[str, object]:
        plan = resolve_precision(cfg.precision, device)
        data = self.dataset(cfg)
        torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP broadcasts anyway)
        model = create_model(cfg.model, **data.model_kwargs).to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
        trained = distributed.wrap(model, device)
        compile_backend = None
        if cfg.compile:
            compile_backend = os.environ.get(COMPILE_BACKEND_ENV, "inductor")
            trained = torch.compile(trained, backend=compile_backend)
        step = make_train_step(trained, optimizer, data, plan, device)
        world, rank = distributed.world_size(), distributed.rank()
        gen = torch.Generator().manual_seed(cfg.seed + 1_000_003 * rank)  # own batches per rank
        tta = cfg.target_accuracy is not None
        total_steps = cfg.max_steps if tta else cfg.warmup_steps + cfg.repeats * cfg.timed_steps
        indices = data.sample_indices(total_steps, cfg.batch_size, gen)  # (steps, B) on device
        flops = self._step_flops(cfg, model, data, indices[0], plan)  # untimed, state restored
        sampler = NvmlSampler(device)  # NVML power/energy/clocks; inert without NVML or on CPU
        reset_peak_memory(device)
        items = cfg.batch_size * data.items_per_sample()  # samples (or tokens) per step

        losses: list[torch.Tensor] = []
        timer = RegionTimer(device)
        slowdown = _injected_slowdown()
        region_tp: list[float] = []
        step_times: list[float] = []
        trained_s = 0.0
        pos = 0

        def timed_region(n: int) -> None:
            """``n`` training steps, synchronized only at the region's edges."""
            nonlocal pos, trained_s
            sampler.start()  # outside the region: a thread polls NVML while it runs
            timer.start()
            for _ in range(n):
                t_step = time.perf_counter() if slowdown else 0.0
                losses.append(step(indices[pos]))
                if slowdown:
                    synchronize(device)
                    time.sleep(slowdown * (time.perf_counter() - t_step))
                timer.step()
                pos += 1
            seconds, per_step = timer.stop()
            sampler.stop()
            seconds = distributed.max_over_ranks(seconds)  # after the region: the slowest rank
            trained_s += seconds
            region_tp.append(world * items * n / seconds)
            step_times.extend(per_step)

        extra: dict[str, object] = {}
        if tta:
            # Every training step is on the clock (no untimed warm-up); the clock stops only
            # while the held-out set is evaluated, every eval_interval steps.
            reached_at: int | None = None
            last_eval: tuple[float | None, float | None] = (None, None)
            while pos < total_steps:
                timed_region(min(cfg.eval_interval, total_steps - pos))
                _check_finite(losses)
                last_eval = evaluate(model, data, plan, device, cfg.eval_samples)
                acc = last_eval[1]
                if distributed.all_true(acc is not None and acc >= cfg.target_accuracy):
                    reached_at = pos
                    break
            extra.update({
                "target_reached": reached_at is not None,
                "steps_to_accuracy": reached_at,
                "time_to_accuracy_s": trained_s if reached_at is not None else None,
                "train_time_s": trained_s,
                "steps_run": pos,
            })
        else:
            for i in range(cfg.warmup_steps):  # cuDNN autotuning, allocator growth, lazy init
                t0 = time.perf_counter()
                losses.append(step(indices[pos]))
                pos += 1
                if i == 0 and cfg.compile:  # the first call traces and compiles the model
                    synchronize(device)
                    extra["compile_time_s"] = time.perf_counter() - t0
            synchronize(device)
            for _ in range(cfg.repeats):
                timed_region(cfg.timed_steps)

        curve = _check_finite(losses)
        alloc, reserved = peak_memory(device)
        used = device_memory_used(device)
        # Time to accuracy already evaluated the final model after its last interval.
        eval_loss, eval_acc = (last_eval if tta
                               else evaluate(model, data, plan, device, cfg.eval_samples))
        med, iqr = median_iqr([t * 1e3 for t in step_times])
        if world > 1:  # per-rank step-time medians show stragglers
            extra["rank_step_time_ms_median"] = distributed.gather(med)
        extra["compile_backend"] = compile_backend
        extra.update(self._efficiency(cfg, device, data, flops, med, world))
        energy = sampler.summary()
        timed_items = items * len(step_times)  # this rank's samples (or tokens) on the clock
        if energy.get("energy_j"):
            energy["samples_per_joule"] = timed_items / energy["energy_j"]
        extra.update(energy)
        tp_med, _ = median_iqr(region_tp)
        values, every = compact_curve(curve)
        return {
            "num_params": sum(p.numel() for p in model.parameters()),
            "throughput": tp_med,
            "throughput_unit": data.unit,
            "step_time_ms_median": med,
            "step_time_ms_iqr": iqr,
            "repeat_throughputs": region_tp,
            "peak_memory_allocated_bytes": alloc,
            "peak_memory_reserved_bytes": reserved,
            "device_memory_used_bytes": used,
            "train_loss": float(curve[-1]),
            "eval_loss": eval_loss,
            "eval_accuracy": eval_acc,
            "loss_curve": values,
            "loss_curve_every": every,
            "loss_curve_sha256": curve_digest(curve),
            **extra,
        }


def _check_finite(losses: list[torch.Tensor]) -> torch.Tensor:
    """All losses so far as one float32 CPU tensor (one host transfer); ``Diverged`` if any is
    NaN or infinite on any rank. Called only outside timed regions."""
    curve = torch.stack(losses).float().cpu()
    finite = torch.isfinite(curve)
    if not distributed.all_true(bool(finite.all())):
        if bool(finite.all()):
            raise Diverged("non-finite training loss on another rank")
        first = int((~finite).nonzero()[0])
        raise Diverged(f"non-finite training loss at step {first}")
    return curve
