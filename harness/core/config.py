"""``RunConfig``: one fully resolved configuration, and its identity in stored records.

The dataclass's defaults are the only defaults of the measurement settings: suites
(``core.suites``) take theirs from here. Pure Python (no torch), so analysis code and the CLI
can match records on config fields cheaply.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError


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
    warmup_steps: int = 3  # untimed steps before the first timed repeat
    timed_steps: int = 10  # steps per timed repeat
    repeats: int = 3  # timed repeats; each gives one throughput sample
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

    def key(self) -> tuple:
        """Identity of the configuration, used to match records (resume, compare)."""
        return tuple(dataclasses.astuple(self))

    def label(self) -> str:
        text = (
            f"{self.model} {self.dataset} {self.device} bs={self.batch_size} "
            f"{self.precision} {self.optimizer}"
        )
        if self.seed:
            text += f" seed={self.seed}"
        if self.target_accuracy is not None:
            text += f" target={self.target_accuracy:g}"
        if self.nproc > 1:
            text += f" nproc={self.nproc}"
        if self.compile:
            text += " compile"
        if self.channels_last:
            text += " channels-last"
        return text


CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))
# model and dataset have no default: a config must name both.
CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)
                   if f.default is not dataclasses.MISSING}


def record_key(record: dict[str, Any]) -> tuple:
    """The ``RunConfig.key()`` of a stored record; fields added since it was written take their
    defaults, so older results files still match."""
    return tuple(record.get(f, CONFIG_DEFAULTS.get(f)) for f in CONFIG_FIELDS)


def config_from_record(record: dict[str, Any]) -> RunConfig:
    """Rebuild the ``RunConfig`` a record measured (for rerun / verify)."""
    missing = [f for f in ("model", "dataset") if not record.get(f)]
    if missing:
        raise UserError(f"record {record.get('record_id')!r} lacks {', '.join(missing)}")
    values = {f: record[f] for f in CONFIG_FIELDS if record.get(f) is not None}
    return RunConfig(**values)
