"""What each record column means, with its unit: the text of the generated record reference
(docs/reference/record.md, built by docs/hooks/reference.py). Every column of
``schema.COLUMNS`` has an entry and nothing else does (tests/test_docs.py), so a new field
cannot reach a release undocumented. Kept apart from ``schema.py`` so the contract stays short.
"""

from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    # identity
    "schema_version": "Version of the record contract (harness/schema.py); bumped on a rename.",
    "run_id": "One sweep: every record of one `trainmark run` shares it.",
    "suite": "The suite the sweep was expanded from, by its file's stem (`quick`, `ci`; `gpu` "
             "for `--suite conf/gpu.toml`), flags on top or not; `rerun` keeps the replayed "
             "record's. `export mlflow` names the experiment after it. Not part of a config's "
             "identity. Null in records from before the field and where no suite made the "
             "config (`reproduce`, pytest-benchmark files).",
    "record_id": "This record, unique.",
    "timestamp": "When the record was made, UTC ISO-8601.",
    # config
    "model": "Registered model name, or `torchvision:NAME` / `timm:NAME`.",
    "task": "`image-classification` or `language-modeling`.",
    "dataset": "Dataset name (`synthetic`, `cifar10`, `imagefolder:PATH`, `text:PATH`, ...).",
    "device": "Device the config ran on: `cpu`, `cuda:N`, `mps`.",
    "batch_size": "Samples per step per process (the size found, for `--batch-sizes max`).",
    "precision": "`fp32`, `amp-fp16`, `amp-bf16` or `fp8` (`amp` resolved for the device).",
    "optimizer": "`sgd` (momentum 0.9), `adam` or `adagrad`.",
    "optimizer_fused": "True when torch's fused optimizer ran (on CUDA), else the for-each one.",
    "step_syncs_host": "True when `GradScaler` read its inf/NaN flag with a host sync in every "
                       "step (fp16 with a non-fused optimizer).",
    "lr": "Learning rate used.",
    "seed": "Seed of initialisation and batch order.",
    "warmup_steps": "Warm-up steps asked; null = adaptive (until step times settle).",
    "timed_steps": "Timed steps per repeat asked (at least).",
    "repeats": "Timed regions (repeats) asked.",
    "min_time_s": "Seconds per timed repeat asked (at least); null = the device's default.",
    "eval_samples": "Held-out images (or context windows) asked for evaluation.",
    "train_samples": "Training samples asked; null = the dataset's default.",
    "data_seed": "Seed of the synthetic data.",
    "deterministic": "Deterministic algorithms on (`--deterministic`).",
    "target_accuracy": "Time-to-accuracy target (fraction); null = throughput mode.",
    "eval_interval": "Steps between evaluations in time-to-accuracy mode.",
    "max_steps": "Step cap in time-to-accuracy mode.",
    "nproc": "Processes (ranks) on this node; the global batch is `batch_size` x ranks.",
    "dist_backend": "The process group's backend(s), e.g. `cpu:gloo,cuda:nccl`; null without "
                    "a group.",
    "compile": "Trained through `torch.compile`.",
    "channels_last": "NHWC memory format for the convolutional models.",
    "image_size": "Image side asked (pixels); null = the model's own.",
    "num_classes": "Classes asked; null = the dataset's or model's own.",
    "seq_len": "Context length asked (tokens); null = the model's own.",
    "input": "`resident` (data on the device, index slices) or `loader` (a DataLoader).",
    "workers": "DataLoader worker processes (`--input loader`).",
    "transforms": "Loader transforms: `standard` or `totensor`.",
    "max_batch": "Limit of the largest-batch search; null = a fixed batch size.",
    "memory_budget_gib": "Memory budget of the largest-batch search (GiB).",
    "num_params": "Model parameters (tied weights once).",
    "input_shape": "Input that ran: `3x224x224` (images) or `1024` (tokens per sequence).",
    "model_classes": "Classes (images) or vocabulary size (language models) that ran.",
    # outcome
    "status": "`ok`, `oom`, `diverged`, `unavailable`, `error`, `timeout` or `crashed`.",
    "error": "One line saying what failed; null when ok.",
    # speed
    "throughput": "Median over repeats of samples/s (tokens/s for language models), all ranks.",
    "throughput_unit": "`samples/s` or `tokens/s`.",
    "step_time_ms_median": "Median step time (ms).",
    "step_time_ms_iqr": "Interquartile range of step times (ms).",
    "repeat_throughputs": "Throughput of every timed repeat (list): the samples comparisons test.",
    "host_page_faults_per_step": "Host minor page faults per timed step (near 0: steps reuse "
                                 "their memory).",
    "wall_time_s": "Seconds the whole config took (data, warm-up, timing, evaluation).",
    "compile_backend": "`torch.compile` backend; null when not compiled.",
    "compile_time_s": "First warm-up step's seconds when compiled (compilation included).",
    "scaling_efficiency": "Throughput / (nproc x the 1-process throughput of the same config).",
    "rank_step_time_ms_median": "Each rank's median step time (ms), in rank order.",
    "data_wait_share": "Share of the timed regions spent waiting for the loader's batches.",
    "loader_samples_per_s": "What the loader alone delivers (samples/s), measured after training.",
    "batch_size_probes": "Largest-batch search: `[[batch size, fits], ...]` in the order probed.",
    "batch_size_fallbacks": "`[[batch size, error], ...]`: sizes that fit as probes but ran out "
                            "of memory when measured.",
    "warmup_rule": "`adaptive` or `fixed`.",
    "warmup_steps_run": "Warm-up steps run (the first, compiling one included).",
    "warmup_stable": "Adaptive warm-up: step times settled (false: a cap stopped it).",
    "warmup_time_s": "Warm-up seconds on the clock, the first step excluded.",
    "timed_steps_run": "Steps per timed repeat, as calibrated to `min_time_s_run`.",
    "min_time_s_run": "Seconds per timed repeat, at least, as applied.",
    "flops_per_step": "Counted FLOPs of one forward + backward step, this rank "
                      "(torch.utils.flop_counter), activation checkpointing's recomputation "
                      "included.",
    "achieved_flops_per_s": "Counted FLOPs per step over the median step time, all ranks.",
    "peak_flops_per_s": "The device's peak for the run's dtype, all ranks.",
    "peak_flops_source": "Where the peak came from: datasheet or measured GEMM.",
    "mfu": "Model FLOPs utilisation (fraction): `model_flops_per_step` (else the counted "
           "FLOPs, `mfu_flops`) per median step over `peak_flops_per_s`.",
    "flops_error": "Why the step's FLOPs were not counted (then no MFU); null otherwise.",
    # energy
    "energy_j": "Energy over the timed regions (J), NVML's counter.",
    "power_w_mean": "Mean board power over the timed regions (W).",
    "samples_per_joule": "Items per joule over the timed regions.",
    "throttled": "A power, thermal or hardware slowdown was seen during timing.",
    "throttle_reasons": "NVML's clock-event reasons seen (list).",
    "sm_clock_mhz_mean": "Mean SM clock during timing (MHz).",
    "temperature_c_max": "Highest GPU temperature during timing (deg C).",
    "gpu_util_mean": "Mean GPU utilisation during timing (%).",
    "telemetry_samples": "NVML samples taken during timing.",
    "telemetry_note": "Why telemetry is missing or partial (no NVML, a MIG slice, ...).",
    # sharded training (issue 24: core/parallel.py, core/checkpointing.py)
    "parallel": "`ddp` (a replica per process) or `fsdp` (FSDP2: parameters, gradients and "
                "optimizer state sharded per transformer block).",
    "activation_checkpointing": "`none`, `selective` (per operator), `selective:N` (every Nth "
                                "block) or `full`.",
    "allow_emulated": "`--allow-emulated`: measure bf16/fp16 where the hardware only emulates it "
                      "(refused as `unavailable` otherwise).",
    "precision_emulated": "The low-precision format ran emulated (no native instructions): the "
                          "number measures the emulation. Null for fp32.",
    "ac_blocks": "Transformer blocks checkpointed.",
    "fsdp_units": "FSDP units (`fully_shard` calls): the blocks and the root; null under DDP.",
    "fsdp_param_dtype": "What FSDP gathers the parameters as (`bfloat16` for amp-bf16 and fp8).",
    "fsdp_reduce_dtype": "What FSDP reduces the gradients in (`float32`).",
    "fsdp_reduce_op": "`avg`, or `sum, then / world size` where gloo reduces (pytorch#162338).",
    "float8_linears": "fp8: linear layers converted to torchao's float8 training.",
    "build": "How the model was built: `whole` on its device, or `meta`: on the meta device, "
             "sharded, then each rank's shards materialised and initialised (core/build.py).",
    "plan_params_bytes": "Memory plan, per rank: float32 master weights held (B).",
    "plan_grads_bytes": "Memory plan, per rank: float32 gradients held (B).",
    "plan_optimizer_bytes": "Memory plan, per rank: optimizer state, float32 (SGD momentum 1x, "
                            "Adam 2x, Adagrad 1x the parameters held) (B).",
    "plan_activations_bytes": "Memory plan, per rank: what the forward pass saves for the "
                              "backward pass at the batch, with activation checkpointing (B); "
                              "null when it could not be estimated.",
    "plan_transient_bytes": "Memory plan, per rank: FSDP's gathered units, DDP's buckets, "
                            "autocast's weight copies and the largest gradient in flight (B).",
    "plan_total_bytes": "Memory plan: the estimated peak per rank, the sum of the five (B); "
                        "compare with `peak_memory_allocated_bytes` or `peak_rss_bytes`.",
    "plan_capacity_bytes": "Memory plan: what one rank may use: the GPU's memory; on the CPU "
                           "the cgroup limit (else the host's memory) over this host's ranks "
                           "(B). A larger estimate is an `oom` record before anything starts.",
    "throughput_per_device": "Throughput over the ranks: torchtitan's tokens/s per GPU.",
    "model_flops_per_step": "The model's analytic FLOPs per rank and step: (6N + 12·L·d·T) per "
                            "token for transformer language models; null for other models.",
    "mfu_flops": "Which FLOPs `mfu` divides: `model` (analytic) or `counted`.",
    "hfu": "Counted FLOPs, recomputation included, over the peak: hardware FLOPs utilisation.",
    "peak_flops_dtype": "The GEMM dtype of the peak (`tf32`, `bf16`...; fp8 against bf16).",
    "power_limit_w": "The GPU's enforced board power limit (W), NVML.",
    "device_memory_capacity_bytes": "The GPU's memory (B); the host's on the CPU.",
    "peak_memory_active_bytes": "CUDA allocator's peak active bytes (live blocks) (B).",
    "peak_memory_active_gib": "The same in GiB, as torchtitan logs it.",
    "peak_memory_active_pct": "The same as a percentage of the device's memory.",
    "peak_memory_reserved_gib": "Peak reserved memory in GiB, as torchtitan logs it.",
    "peak_memory_reserved_pct": "Peak reserved memory as a percentage of the device's memory.",
    "alloc_retries": "Allocations that had to free cached blocks and retry (CUDA).",
    "alloc_ooms": "Allocations that failed for lack of memory (CUDA).",
    "peak_rss_pct": "`peak_rss_bytes` as a percentage of the host's memory.",
    # --profile
    "profile_dir": "Folder with trace.json (Chrome/Perfetto) and ops.json.",
    "profile_steps": "Steps profiled after every measurement.",
    "profile_forward_ms": "Profiled forward time per step (ms).",
    "profile_backward_ms": "Profiled backward time per step (ms).",
    "profile_optimizer_ms": "Profiled optimizer time per step (ms).",
    "profile_error": "Why profiling failed (the measurement is kept).",
    # memory
    "peak_memory_allocated_bytes": "Torch allocator's peak allocated (B), accelerators.",
    "peak_memory_reserved_bytes": "Torch allocator's peak reserved (B), accelerators.",
    "device_memory_used_bytes": "NVML's device memory used (B): the whole device, CUDA context "
                                "and other processes included.",
    "peak_rss_bytes": "The process's peak resident set (B): this config's own when isolated.",
    "rss_before_model_bytes": "Host RSS after the data loaded, before the model (B).",
    "train_rss_bytes": "What building and training the model added to the RSS (B).",
    "dataset_device_bytes": "The resident dataset on an accelerator (B).",
    "train_memory_allocated_bytes": "Allocator peak without the resident dataset (B).",
    # quality
    "train_loss": "Last training loss.",
    "eval_loss": "Mean held-out cross-entropy (nats).",
    "eval_accuracy": "Held-out top-1 accuracy (fraction; next-token for language models).",
    "eval_batch_size": "Samples per evaluation batch (bounded by the size of the logits).",
    "loss_curve": "Per-step training loss (window means beyond 1,000 steps).",
    "loss_curve_every": "Steps per `loss_curve` point.",
    "loss_curve_sha256": "Digest of the exact loss curve (bitwise reproducibility).",
    "target_reached": "Time to accuracy: the target was reached.",
    "steps_to_accuracy": "Steps until the target was reached.",
    "time_to_accuracy_s": "Training seconds until the target was reached (evaluation excluded).",
    "train_time_s": "Training seconds in time-to-accuracy mode.",
    "steps_run": "Steps run in time-to-accuracy mode.",
    "experiment": "Epoch-based experiment name (`reproduce article`).",
    "epoch": "Epoch of an epoch-based experiment.",
    "epochs": "Epochs the experiment trains in all (`reproduce --epochs`); `epoch` counts "
              "up to it.",
    # provenance
    "host": "Host name.",
    "os": "Operating system.",
    "python": "Python version.",
    "torch_version": "torch version.",
    "torchvision_version": "torchvision version.",
    "cuda_version": "CUDA version torch was built with.",
    "cudnn_version": "cuDNN version.",
    "device_name": "GPU name, `Apple MPS`, or the CPU model.",
    "driver_version": "NVIDIA driver version.",
    "cpu_model": "CPU model.",
    "num_threads": "torch intra-op threads.",
    "git_commit": "Commit of the trainmark checkout (`-dirty` with local changes); null for a "
                  "wheel.",
    "git_commit_time": "Committer date of `git_commit` (ISO 8601): history's order.",
    "trainmark_version": "trainmark's version.",
    "tf32_matmul": "TF32 allowed for matmuls.",
    "tf32_cudnn": "TF32 allowed for cuDNN convolutions.",
    "float32_matmul_precision": "torch's float32 matmul precision setting.",
    "cudnn_benchmark": "cuDNN autotuning on.",
    "omp_num_threads_env": "OMP_NUM_THREADS as set when the run started.",
    "cpu_capability": "The vector ISA torch dispatches CPU kernels to: `DEFAULT`, `AVX2`, "
                      "`AVX512`, ... (`torch.backends.cpu.get_cpu_capability()`).",
    "cpu_native_bf16": "The CPU has bf16 instructions (AVX512_BF16 or AMX-BF16; Arm BF16) and "
                       "oneDNN may use them; without, CPU bf16 is emulated.",
    "cpu_native_fp16": "The CPU has fp16 instructions (AVX512_FP16 or AMX-FP16; Arm FP16) and "
                       "oneDNN may use them.",
    "cpu_amx": "The CPU has AMX tiles (Intel Sapphire Rapids and newer).",
    "executor": "Engine of the scheduled job: `slurm` or `local`; null outside a job.",
    "job_id": "The scheduler's job id.",
    "partition": "The partition (node type) the job asked for.",
    "node": "The scheduler's name of the node.",
    "code_digest": "sha256 (16 hex) of the installed harness/ and models/ sources.",
    "code_identity": "`<commit>[-dirty]/<digest>`: which code produced the record.",
    "recorded_by": "`fleet` when the waiter recorded a dead job's config (no measurement).",
    "isolation": "`process` (a fresh worker per config) or `none`.",
    "host_heap": "The C heap's policy: `steady`, `default` or `preloaded:LIB`.",
    "injected_slowdown": "Test-only slowdown knob; set means not a real measurement.",
}
