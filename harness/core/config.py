"""``RunConfig``: one fully resolved configuration, and its identity in stored records.

The dataclass's defaults are the only defaults of the measurement settings: suites
(``core.suites``) take theirs from here. Pure Python (no torch), so analysis code and the CLI
can match records on config fields cheaply.

Two settings say what was *asked*, and the record says what was *run* (``core.loop``):
``warmup_steps`` None asks for the adaptive warm-up (``warmup_steps_run`` is what it ran), an
integer for exactly that many steps; ``min_time_s`` None asks for the device's default,
``DEFAULT_MIN_TIME_S``, resolved when the config runs (``resolved_min_time_s``; the record's
``min_time_s_run``). Leaving the default unresolved in the config keeps records of one config
comparable with those of older versions, which lack the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError

# Seconds a timed region lasts at least, per device type, when a config does not say.
# Accelerators: longer than NVML's energy counter updates (20-100 ms) and the clock's ramp-up.
# CPU: 0, regions are exactly ``timed_steps`` long. Ops run synchronously there and each step is
# timed exactly; and a count chosen by the clock would change how many steps train, so two runs
# of a deterministic config would no longer give the same losses.
DEFAULT_MIN_TIME_S = {"cpu": 0.0, "cuda": 1.0, "mps": 1.0}

# How batches reach the model (``input``): ``resident`` tensors on the device, sliced by index
# (no input pipeline on the clock: the model's speed), or a ``loader``: a DataLoader with
# ``workers`` processes that decodes and transforms every sample (core.pipeline), as training does.
INPUT_MODES = ("resident", "loader")
# Training transforms in loader mode: the model's ``standard`` augmentation (random resized crop
# or padded crop, flip, normalise) or ``totensor``, the article's CIFAR-10 recipe (ToTensor only).
TRANSFORMS = ("standard", "totensor")
# ``--batch-sizes max`` without a limit searches up to this many samples per step.
MAX_BATCH_LIMIT = 65536
# How the data-parallel processes hold the model (``parallel``): ``ddp`` a whole replica each,
# gradients all-reduced; ``fsdp`` FSDP2's ``fully_shard``, one unit per transformer block and
# the root, parameters, gradients and optimizer state sharded over the ranks (core.parallel).
PARALLEL_MODES = ("ddp", "fsdp")
# Activation checkpointing (``activation_checkpointing``, core.checkpointing): ``none``;
# ``selective`` per operator, as torchtitan's default: matmul and attention outputs kept (every
# second matmul recomputed), the rest recomputed; ``selective:N`` every Nth block whole; ``full``
# every block recomputed in the backward pass.
AC_MODES = ("none", "selective", "selective:N", "full")


def check_ac_mode(value: object) -> str:
    """``value`` as an activation-checkpointing mode, or ``UserError`` naming the choices."""
    text = str(value).strip()
    head, sep, every = text.partition(":")
    if text in ("none", "selective", "full") or (
            head == "selective" and sep and every.isdigit() and int(every) >= 1):
        return text
    raise UserError(f"unknown activation checkpointing {value!r}; valid: "
                    f"{', '.join(AC_MODES)} (N >= 1)")


@dataclass(frozen=True)
class RunConfig:
    """One fully resolved configuration: everything that defines what a record measured."""

    model: str
    dataset: str
    device: str = "cpu"  # canonical: cpu | cuda:N | mps (``auto`` is resolved before this)
    batch_size: int = 32  # samples per step (sequences of block_size tokens for the LM)
    precision: str = "fp32"  # resolved: fp32 | amp-fp16 | amp-bf16
    optimizer: str = "sgd"
    lr: float = 0.01
    seed: int = 0  # model initialisation and batch order
    warmup_steps: int | None = None  # untimed steps before timing; None = adaptive (core.loop)
    timed_steps: int = 10  # steps per timed repeat, at least (more if min_time_s needs them)
    repeats: int = 3  # timed repeats; each gives one throughput sample
    min_time_s: float | None = None  # seconds per timed repeat, at least; None = device default
    eval_samples: int = 512  # held-out images (or context windows) evaluated after timing
    train_samples: int | None = None  # cap on the training split; None = dataset default
    data_seed: int = 0  # synthetic data generation (fixed across training seeds)
    deterministic: bool = False  # deterministic algorithms, cuDNN autotuning off (determinism)
    # Time-to-accuracy mode (target_accuracy set): train until held-out accuracy >= target,
    # evaluating every eval_interval steps with the clock paused, for at most max_steps steps.
    target_accuracy: float | None = None
    eval_interval: int = 50
    max_steps: int = 2000
    nproc: int = 1  # data-parallel processes (DDP via torch.distributed.run); batch is per process
    compile: bool = False  # torch.compile the model; compile time is recorded separately
    channels_last: bool = False  # NHWC memory format (convolutional models only)
    # Input shape; None = the model's own (models.ModelInfo.input_shape, num_classes).
    image_size: int | None = None  # pixels per side (image models)
    num_classes: int | None = None  # classes of the synthetic image data (image models)
    seq_len: int | None = None  # context length in tokens (language models)
    input: str = "resident"  # INPUT_MODES
    workers: int = 0  # DataLoader worker processes (input "loader"; 0 = in the training process)
    transforms: str = "standard"  # TRANSFORMS (input "loader")
    # Largest batch that fits (--batch-sizes max[:LIMIT]): the search's upper limit. batch_size 0
    # until the search (execution.batch_search) sets the size it found.
    max_batch: int | None = None
    memory_budget_gib: float | None = None  # the memory a batch may use where no OOM happens (CPU)
    parallel: str = "ddp"  # PARALLEL_MODES; fsdp runs under torch.distributed.run, even nproc 1
    activation_checkpointing: str = "none"  # AC_MODES
    # Measure a low-precision format the hardware only emulates (bf16/fp16 on a CPU without their
    # instructions, bf16 below compute capability 8.0): refused by default (core.precision).
    allow_emulated: bool = False

    def resolved_min_time_s(self) -> float:
        """``min_time_s``, or the device type's default when the config leaves it to that."""
        if self.min_time_s is not None:
            return self.min_time_s
        return DEFAULT_MIN_TIME_S.get(self.device.split(":")[0], 0.0)

    @property
    def needs_launcher(self) -> bool:
        """Whether the config runs in a process group of its own (``torch.distributed.run``):
        several processes, or FSDP, which shards over a group even of one."""
        return self.nproc > 1 or self.parallel == "fsdp"

    def key(self) -> tuple:
        """Identity of the configuration, used to match records (resume, compare)."""
        return tuple(dataclasses.astuple(self))

    def label(self) -> str:
        bs = str(self.batch_size) if self.batch_size else "max"
        if self.max_batch is not None:
            bs += f" (max<={self.max_batch})" if self.batch_size else f"<={self.max_batch}"
        text = (f"{self.model} {self.dataset} {self.device} bs={bs} {self.precision} "
                f"{self.optimizer}")
        if self.seed:
            text += f" seed={self.seed}"
        if self.target_accuracy is not None:
            text += f" target={self.target_accuracy:g}"
        if self.nproc > 1:
            text += f" nproc={self.nproc}"
        if self.parallel != "ddp":
            text += f" {self.parallel}"
        if self.activation_checkpointing != "none":
            text += f" ac={self.activation_checkpointing}"
        if self.compile:
            text += " compile"
        if self.channels_last:
            text += " channels-last"
        shape = [f"{k}={v}" for k, v in (("image", self.image_size), ("classes", self.num_classes),
                                          ("seq", self.seq_len)) if v is not None]
        text += "".join(" " + s for s in shape)
        if self.input != "resident":
            text += f" loader workers={self.workers}"
            if self.transforms != "standard":
                text += f" {self.transforms}"
        return text


CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))
# model and dataset have no default: a config must name both.
CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)
                   if f.default is not dataclasses.MISSING}


def record_key(record: dict[str, Any]) -> tuple:
    """The ``RunConfig.key()`` of a stored record; fields added since it was written take their
    defaults, so older results files still match."""
    return tuple(record.get(f, CONFIG_DEFAULTS.get(f)) for f in CONFIG_FIELDS)


def config_from_record(record: dict[str, Any], as_run: bool = True) -> RunConfig:
    """Rebuild the ``RunConfig`` a record measured (for rerun / verify), with the step counts it
    actually ran: a fixed warm-up of ``warmup_steps_run`` steps and regions of
    ``timed_steps_run`` steps (min time 0). The adaptive warm-up and the min-time calibration
    follow the clock, so deciding them again could train a different number of steps, and a
    deterministic record's losses could not be reproduced. ``as_run`` False gives the config as
    it was asked instead (the same identity as the record: ``compare --confirm`` matches the
    re-measurement with the baseline's records)."""
    missing = [f for f in ("model", "dataset") if not record.get(f)]
    if missing:
        raise UserError(f"record {record.get('record_id')!r} lacks {', '.join(missing)}")
    values = {f: record[f] for f in CONFIG_FIELDS if record.get(f) is not None}
    ran = record.get("warmup_steps_run"), record.get("timed_steps_run")
    if as_run and None not in ran and record.get("target_accuracy") is None:
        values.update(warmup_steps=int(ran[0]), timed_steps=int(ran[1]), min_time_s=0.0)
    return RunConfig(**values)
