"""The record contract: schema version, columns and dtypes, statuses, and machine identity.

A record is one flat JSON object per configuration (docs/architecture.md, "The record"). This
module is the foundation every layer shares, so it imports nothing but the standard library:
the runner stamps ``SCHEMA_VERSION`` without importing pandas, and compare, the report, the
baseline files, the pytest-benchmark interop and the peak-FLOP/s cache all ask the same
questions about machines here.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from typing import Any

SCHEMA_VERSION = 1

# Column -> pandas dtype. load_results() always returns these columns in this order with these
# dtypes, whatever subset of files (or fields) it reads; extra fields follow as ``object``.
COLUMNS: dict[str, str] = {
    # identity
    "schema_version": "Int64",
    "run_id": "string",
    "suite": "string",  # the suite the sweep was expanded from (core.suites.suite_name)
    "record_id": "string",
    "timestamp": "string",
    # config
    "model": "string",
    "task": "string",
    "dataset": "string",
    "device": "string",
    "batch_size": "Int64",
    "precision": "string",
    "optimizer": "string",
    "optimizer_fused": "boolean",  # torch's fused implementation (CUDA), else for-each
    "step_syncs_host": "boolean",  # GradScaler read found-inf with .item() in every step
    "lr": "Float64",
    "seed": "Int64",
    "warmup_steps": "Int64",
    "timed_steps": "Int64",
    "repeats": "Int64",
    "min_time_s": "Float64",  # asked: seconds per timed repeat, at least; null = device default
    "eval_samples": "Int64",
    "train_samples": "Int64",
    "data_seed": "Int64",
    "deterministic": "boolean",
    "target_accuracy": "Float64",
    "eval_interval": "Int64",
    "max_steps": "Int64",
    "nproc": "Int64",
    "dist_backend": "string",  # the process group's backend(s) under a launcher, else null
    "compile": "boolean",
    "channels_last": "boolean",
    "image_size": "Int64",  # asked input shape; null = the model's own
    "num_classes": "Int64",
    "seq_len": "Int64",
    "input": "string",  # resident | loader
    "workers": "Int64",
    "transforms": "string",
    "max_batch": "Int64",  # --batch-sizes max[:LIMIT]: the search's limit (batch_size: found)
    "memory_budget_gib": "Float64",
    # emulated low precision (core.precision): asked for, and whether it happened
    "allow_emulated": "boolean",  # --allow-emulated: measure bf16/fp16 the hardware emulates
    "precision_emulated": "boolean",  # the autocast dtype ran emulated; null for fp32
    # sharded training (core/parallel.py, core/checkpointing.py): how the model was held
    "parallel": "string",  # ddp | fsdp
    "activation_checkpointing": "string",  # none | selective | selective:N | full
    "ac_blocks": "Int64",  # transformer blocks checkpointed
    "fsdp_units": "Int64",  # fully_shard units (blocks + root); null under ddp
    "fsdp_param_dtype": "string",  # what FSDP gathers the parameters as (bfloat16, float32)
    "fsdp_reduce_dtype": "string",  # what it reduces the gradients in
    "fsdp_reduce_op": "string",  # avg, or "sum, then / world size" where gloo reduces
    "float8_linears": "Int64",  # fp8: linear layers converted to torchao's Float8Linear
    # building and planning the model (core/build.py, core/memplan.py): per rank, in bytes
    "build": "string",  # whole | meta (built on the meta device, sharded, then materialised)
    "plan_params_bytes": "Int64",  # float32 master weights this rank holds
    "plan_grads_bytes": "Int64",  # float32 gradients this rank holds
    "plan_optimizer_bytes": "Int64",  # optimizer state (sgd 1x, adam 2x, adagrad 1x, float32)
    "plan_activations_bytes": "Int64",  # saved for the backward pass; null: not estimated
    "plan_transient_bytes": "Int64",  # FSDP gathers, DDP buckets, autocast copies, a gradient
    "plan_total_bytes": "Int64",  # the estimated peak: the five above
    "plan_capacity_bytes": "Int64",  # what the rank may use (GPU memory; host or cgroup share)
    "throughput_per_device": "Float64",  # throughput / ranks (torchtitan's tokens/s per GPU)
    "model_flops_per_step": "Float64",  # analytic: (6N + 12 L d T) x tokens per rank and step
    "mfu_flops": "string",  # which FLOPs `mfu` divides: model (analytic) | counted
    "hfu": "Float64",  # counted FLOPs (recomputation included) / peak: hardware utilisation
    "peak_flops_dtype": "string",  # the GEMM dtype of the peak (fp8 is judged against bf16)
    "power_limit_w": "Float64",  # the GPU's enforced board power limit (NVML)
    "device_memory_capacity_bytes": "Int64",  # the GPU's memory; the host's on the CPU
    "peak_memory_active_bytes": "Int64",  # CUDA allocator: peak bytes in live blocks
    "peak_memory_active_gib": "Float64",
    "peak_memory_active_pct": "Float64",  # of the device's capacity, as torchtitan logs it
    "peak_memory_reserved_gib": "Float64",
    "peak_memory_reserved_pct": "Float64",
    "alloc_retries": "Int64",  # allocations that had to free cached blocks and retry
    "alloc_ooms": "Int64",  # allocations that failed (out of memory)
    "peak_rss_pct": "Float64",  # peak_rss_bytes as a percentage of the host's memory
    "num_params": "Int64",
    "input_shape": "string",  # what ran: "3x224x224" (images) or "1024" (tokens per sequence)
    "model_classes": "Int64",  # classes (images) or vocabulary size (language models) that ran
    # outcome
    "status": "string",
    "error": "string",
    # speed
    "throughput": "Float64",
    "throughput_unit": "string",
    "step_time_ms_median": "Float64",
    "step_time_ms_iqr": "Float64",
    "repeat_throughputs": "object",
    "host_page_faults_per_step": "Float64",  # minor faults in the timed regions per step
    "wall_time_s": "Float64",
    "compile_backend": "string",
    "compile_time_s": "Float64",
    "scaling_efficiency": "Float64",
    "rank_step_time_ms_median": "object",
    # input "loader" (core/pipeline.py): time the timed steps waited for their batch
    "data_wait_share": "Float64",  # waiting / timed-region seconds
    "loader_samples_per_s": "Float64",  # the loader alone, no training
    # --batch-sizes max (execution/batch_search.py)
    "batch_size_probes": "object",  # [[batch size, fits], ...] in the order probed
    "batch_size_fallbacks": "object",  # [[batch size, error], ...]: fit as probes, OOM measured
    # what the timed loop ran (core/loop.py); warmup_steps, timed_steps are what was asked
    "warmup_rule": "string",  # adaptive | fixed
    "warmup_steps_run": "Int64",  # warm-up steps run, the first (compiling) one included
    "warmup_stable": "boolean",  # adaptive: step times settled (false: a cap stopped it)
    "warmup_time_s": "Float64",  # warm-up chunks on the clock, the first step excluded
    "timed_steps_run": "Int64",  # steps per timed repeat, as calibrated to min_time_s_run
    "min_time_s_run": "Float64",  # seconds per timed repeat, at least, as applied
    # compute efficiency (FLOPs per step from torch.utils.flop_counter; peak from table/GEMM)
    "flops_per_step": "Float64",
    "achieved_flops_per_s": "Float64",
    "peak_flops_per_s": "Float64",
    "peak_flops_source": "string",
    "mfu": "Float64",
    "flops_error": "string",  # why the step's FLOPs were not counted (no MFU), else null
    # energy (NVML, timed regions only)
    "energy_j": "Float64",
    "power_w_mean": "Float64",
    "samples_per_joule": "Float64",
    "throttled": "boolean",
    "throttle_reasons": "object",
    "sm_clock_mhz_mean": "Float64",
    "temperature_c_max": "Float64",
    "gpu_util_mean": "Float64",
    "telemetry_samples": "Int64",
    "telemetry_note": "string",
    # --profile (core/profiling.py): steps profiled after every measurement, per step
    "profile_dir": "string",  # holds trace.json (Chrome/Perfetto) and ops.json
    "profile_steps": "Int64",
    "profile_forward_ms": "Float64",
    "profile_backward_ms": "Float64",
    "profile_optimizer_ms": "Float64",
    "profile_error": "string",
    # memory
    "peak_memory_allocated_bytes": "Int64",
    "peak_memory_reserved_bytes": "Int64",
    "device_memory_used_bytes": "Int64",
    "peak_rss_bytes": "Int64",
    "rss_before_model_bytes": "Int64",  # host RSS after the data loaded, before the model
    "train_rss_bytes": "Int64",  # peak_rss_bytes - rss_before_model_bytes (isolated worker)
    "dataset_device_bytes": "Int64",  # the resident dataset on an accelerator
    "train_memory_allocated_bytes": "Int64",  # allocator peak without the resident dataset
    # quality
    "train_loss": "Float64",
    "eval_loss": "Float64",
    "eval_accuracy": "Float64",
    "eval_batch_size": "Int64",  # samples per evaluation batch (bounded by the logits' size)
    "loss_curve": "object",
    "loss_curve_every": "Int64",
    "loss_curve_sha256": "string",
    # time to accuracy (target_accuracy set)
    "target_reached": "boolean",
    "steps_to_accuracy": "Int64",
    "time_to_accuracy_s": "Float64",
    "train_time_s": "Float64",
    "steps_run": "Int64",
    # epoch-based experiments (reproduce article)
    "experiment": "string",
    "epoch": "Int64",
    "epochs": "Int64",  # epochs the experiment trains in all (its records: one per epoch)
    # provenance
    "host": "string",
    "os": "string",
    "python": "string",
    "torch_version": "string",
    "torchvision_version": "string",
    "cuda_version": "string",
    "cudnn_version": "string",
    "device_name": "string",
    "driver_version": "string",
    "cpu_model": "string",
    "num_threads": "Int64",
    "git_commit": "string",
    "git_commit_time": "string",  # committer date of git_commit (ISO 8601): history's order
    "trainmark_version": "string",
    "tf32_matmul": "boolean",
    "tf32_cudnn": "boolean",
    "float32_matmul_precision": "string",
    "cudnn_benchmark": "boolean",
    "omp_num_threads_env": "string",
    # the CPU features that decide speed (probes.cpu); compare warns when they differ
    "cpu_capability": "string",  # torch's kernel ISA: DEFAULT | AVX2 | AVX512 | ...
    "cpu_native_bf16": "boolean",  # AVX512_BF16 / AMX-BF16 (Arm BF16), usable by oneDNN
    "cpu_native_fp16": "boolean",  # AVX512_FP16 / AMX-FP16 (Arm FP16), usable by oneDNN
    "cpu_amx": "boolean",  # AMX tiles
    # where a scheduled job ran (`trainmark fleet`, or any run inside a Slurm job); null outside
    # one. probes.provenance reads them from the job's environment (execution/fleet_job.py).
    "executor": "string",  # the engine that ran the job: slurm | local
    "job_id": "string",  # the scheduler's job id (Slurm: SLURM_JOB_ID)
    "partition": "string",  # the partition (node type) the job asked for
    "node": "string",  # the scheduler's name of the node (may differ from ``host``)
    # which code produced the record (probes.provenance.code_identity): records whose digests
    # differ are refused by fleet, report and compare unless --allow-different-code
    "code_digest": "string",  # sha256 of the installed harness/ and models/ sources (16 hex)
    "code_identity": "string",  # "<commit>[-dirty]/<digest>", or "v<version>/<digest>"
    "recorded_by": "string",  # "fleet": no measurement, the waiter recorded a dead job's config
    # how it was measured
    "isolation": "string",  # process: a fresh worker per config; none: in the sweep's process
    "host_heap": "string",  # the C heap's policy (probes.host_heap): steady, default, preloaded:LIB
    "injected_slowdown": "Float64",  # test-only knob; set means "not a real measurement"
}
STATUSES = ("ok", "oom", "diverged", "unavailable", "error", "timeout", "crashed")


# ----------------------------------------------------------------------- machine identity

# Where a number was measured, as reports show it: one host's device. The CPU and the GPU of one
# host are two machines, because comparing them is what a hardware comparison is for.
MACHINE_LABEL_FIELDS = ("host", "device_name")

# What makes two measurements comparable: the hardware and the software stack under the model.
# ``compare`` refuses results that differ in any of these (unknown is not a difference), the
# pytest-benchmark interop carries exactly these in ``machine_info``, and ``machine_key`` names
# baseline files and peak-FLOP/s cache entries from the ones that are always known.
MACHINE_FIELDS = ("device_name", "cpu_model", "driver_version", "torch_version",
                  "torchvision_version", "cuda_version", "cudnn_version", "num_threads",
                  "host_heap")
# The CPU's features that decide speed (probes.cpu). Two machines with one ``cpu_model`` string
# can differ in them (a VM that hides AVX-512, ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA):
# ``compare`` warns, rather than refuses, since a CPU model that differs is already refused.
CPU_FEATURE_FIELDS = ("cpu_capability", "cpu_native_bf16", "cpu_native_fp16", "cpu_amx")


def _known(prov: Mapping[str, Any], name: str) -> Any:
    value = prov.get(name)
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return None
    if type(value).__name__ == "NAType":  # pandas.NA, without importing pandas
        return None
    return value


def machine_key(prov: Mapping[str, Any], *, with_host: bool = False) -> str:
    """A file-name-safe key from provenance (a record, or ``probes.provenance.collect()``):
    device (GPU name, else CPU model), torch version and thread count, e.g.
    ``nvidia-h100-80gb-hbm3-torch2.14.1-cu130-1t``; ``with_host`` prefixes the host name (a
    measured peak holds for one host only). Driver, CUDA and cuDNN are left out of the key on
    purpose: ``compare`` checks them and refuses a mismatch, so an upgrade is caught rather than
    silently starting a new baseline."""
    device = str(_known(prov, "device_name") or _known(prov, "cpu_model") or "unknown-device")
    parts = [device, f"torch{_known(prov, 'torch_version') or 'unknown'}"]
    threads = _known(prov, "num_threads")
    if threads is not None:
        parts.append(f"{int(threads)}t")
    if with_host:
        parts.insert(0, str(_known(prov, "host") or "unknown-host"))
    slug = re.sub(r"[^a-z0-9.+]+", "-", "-".join(parts).lower()).replace("+", "-")
    return re.sub(r"-{2,}", "-", slug).strip("-.")


# ------------------------------------------------------------------------------- identity


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxxxx`` (UTC): sorts by time, unique across concurrent sweeps."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def new_record_id() -> str:
    return uuid.uuid4().hex[:12]


def utc_timestamp() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
