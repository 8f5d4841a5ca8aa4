"""Run configurations and sweeps: suite file and flags -> ``list[RunConfig]``.

A sweep is the cartesian product of its axes (models x datasets x devices x batch sizes x
precisions x optimizers). Suites are TOML files in ``benchmarks/suites/`` whose keys are the CLI's
flag names; flags given on the command line replace the suite's values. A ``[model.NAME]`` table
overrides keys for one model (e.g. smaller batch sizes for the Transformer).
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data import dataset_task
from harness.devices import resolve_device
from harness.errors import UserError
from harness.optim import OPTIMIZERS
from harness.precision import PRECISIONS, resolve_alias
from models import get_model_info, list_models

SUITES_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "suites"
DEFAULT_SUITE = "quick"


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
    deterministic: bool = False  # deterministic algorithms, cuDNN autotuning off (determinism.py)
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
CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}


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

# Sweep keys: list axes and scalar settings, as named by CLI flags (dashes become underscores).
LIST_KEYS = ("models", "datasets", "devices", "batch_sizes", "precisions", "optimizers", "nproc",
             "compile", "channels_last")
SCALAR_KEYS = ("lr", "seed", "seeds", "warmup", "steps", "repeats", "eval_samples",
               "train_samples", "data_seed", "deterministic", "target_accuracy", "eval_interval",
               "max_steps")
DEFAULTS: dict[str, Any] = {
    "models": ["convnet", "resnet20", "transformer"],
    "datasets": [],  # empty: each model's default dataset
    "devices": ["auto"],
    "batch_sizes": [32],
    "precisions": ["fp32"],
    "optimizers": ["sgd"],
    "nproc": [1],
    "compile": [False],
    "channels_last": [False],
    "lr": None,  # None: the model family's default for the optimizer
    "seed": 0,
    "warmup": 3,
    "steps": 10,
    "repeats": 3,
    "eval_samples": 512,
    "train_samples": None,
    "data_seed": 0,
    "seeds": 1,  # repeat each config over this many consecutive seeds
    "deterministic": False,
    "target_accuracy": None,
    "eval_interval": 50,
    "max_steps": 2000,
}


def list_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def load_suite(name_or_path: str) -> dict[str, Any]:
    """A suite by name (``benchmarks/suites/NAME.toml``) or path; ``UserError`` if bad."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise UserError(
            f"suite {name_or_path!r} not found ({path}); valid: {', '.join(list_suites())}"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"malformed suite file {path}: {exc}") from None
    allowed = set(LIST_KEYS) | set(SCALAR_KEYS) | {"description", "model"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UserError(
            f"suite {path}: unknown key {unknown[0]!r}; valid: {', '.join(sorted(allowed))}"
        )
    for name, table in data.get("model", {}).items():
        bad = sorted(set(table) - set(LIST_KEYS) - set(SCALAR_KEYS))
        if bad:
            raise UserError(f"suite {path}: unknown key {bad[0]!r} in [model.{name}]")
    return data


def _as_list(key: str, value: Any) -> list:
    if isinstance(value, list):
        return value
    return [value]


def _positive_int(key: str, value: Any, allow_zero: bool = False) -> int:
    try:
        number = int(value)
        if isinstance(value, float) and value != number:
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"{key} must be an integer, got {value!r}") from None
    if number < 0 or (number == 0 and not allow_zero):
        limit = ">= 0" if allow_zero else "> 0"
        raise UserError(f"{key} must be {limit}, got {value!r}")
    return number


def _flag(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UserError(f"{key} takes true/false values, got {value!r}")


def _check_choice(kind: str, value: str, choices: list[str] | tuple[str, ...]) -> str:
    if value not in choices:
        raise UserError(f"unknown {kind} {value!r}; valid: {', '.join(choices)}")
    return value


def merge_settings(suite: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Defaults <- suite <- command-line overrides (None in overrides means 'not given')."""
    settings = {k: v for k, v in DEFAULTS.items()}
    settings.update({k: v for k, v in suite.items() if k in DEFAULTS})
    settings["model_overrides"] = suite.get("model", {})
    settings.update({k: v for k, v in overrides.items() if v is not None and k in DEFAULTS})
    # An axis given on the command line beats a per-model suite override of the same axis.
    settings["cli_keys"] = {k for k, v in overrides.items() if v is not None}
    return settings


def expand(settings: dict[str, Any]) -> list[RunConfig]:
    """Validate ``settings`` and return the sweep's configs (``UserError`` on bad input)."""
    models = [str(m) for m in _as_list("models", settings["models"])]
    all_models = list_models()
    for m in models:
        try:
            get_model_info(m)
        except KeyError:
            raise UserError(f"unknown model {m!r}; valid: {', '.join(all_models)}") from None
    devices = [resolve_device(str(d)) for d in _as_list("devices", settings["devices"])]
    datasets = [str(d) for d in _as_list("datasets", settings["datasets"])]
    dataset_tasks = {d: dataset_task(d) for d in datasets}

    configs: list[RunConfig] = []
    for model in models:
        info = get_model_info(model)
        per_model = dict(settings)
        for k, v in settings.get("model_overrides", {}).get(model, {}).items():
            if k not in settings.get("cli_keys", set()):
                per_model[k] = v
        own = [d for d in datasets if dataset_tasks[d] == info.task] or [info.default_dataset]
        batch_sizes = [
            _positive_int("batch size", b)
            for b in _as_list("batch_sizes", per_model["batch_sizes"])
        ]
        precisions = [
            _check_choice("precision", str(p), PRECISIONS)
            for p in _as_list("precisions", per_model["precisions"])
        ]
        optimizers = [
            _check_choice("optimizer", str(o), OPTIMIZERS)
            for o in _as_list("optimizers", per_model["optimizers"])
        ]
        steps = _positive_int("steps", per_model["steps"])
        warmup = _positive_int("warmup", per_model["warmup"], allow_zero=True)
        repeats = _positive_int("repeats", per_model["repeats"])
        eval_samples = _positive_int("eval samples", per_model["eval_samples"])
        train_samples = per_model["train_samples"]
        if train_samples is not None:
            train_samples = _positive_int("train samples", train_samples)
        seed = _positive_int("seed", per_model["seed"], allow_zero=True)
        data_seed = _positive_int("data seed", per_model["data_seed"], allow_zero=True)
        n_seeds = _positive_int("seeds", per_model["seeds"])
        target = per_model["target_accuracy"]
        if target is not None and not (isinstance(target, (int, float)) and 0 < target <= 1):
            raise UserError(f"target accuracy must be a fraction in (0, 1], got {target!r}")
        eval_interval = _positive_int("eval interval", per_model["eval_interval"])
        max_steps = _positive_int("max steps", per_model["max_steps"])
        deterministic = bool(per_model["deterministic"])
        nprocs = [_positive_int("nproc", n) for n in _as_list("nproc", per_model["nproc"])]
        compiles = [_flag("compile", v) for v in _as_list("compile", per_model["compile"])]
        if any(compiles) and warmup == 0:
            raise UserError("compile needs warmup >= 1 so that compilation stays off the clock")
        # NHWC memory format means nothing for a language model: its configs keep the default.
        layouts = [_flag("channels_last", v) for v in _as_list("channels_last",
                                                               per_model["channels_last"])]
        if info.task != "image-classification":
            layouts = [False]
        lr_override = per_model["lr"]
        bad_lr = not isinstance(lr_override, (int, float)) or lr_override <= 0
        if lr_override is not None and bad_lr:
            raise UserError(f"lr must be a number > 0, got {lr_override!r}")
        for dataset, device, bs, prec, opt, nproc, comp, cl, run_seed in itertools.product(
            own, devices, batch_sizes, precisions, optimizers, nprocs, compiles, layouts,
            range(seed, seed + n_seeds)
        ):
            configs.append(
                RunConfig(
                    model=model,
                    dataset=dataset,
                    device=device,
                    batch_size=bs,
                    precision=resolve_alias(prec, device.split(":")[0]),
                    optimizer=opt,
                    lr=float(lr_override if lr_override is not None else info.default_lr[opt]),
                    seed=run_seed,
                    warmup_steps=warmup,
                    timed_steps=steps,
                    repeats=repeats,
                    eval_samples=eval_samples,
                    train_samples=train_samples,
                    data_seed=data_seed,
                    deterministic=deterministic,
                    target_accuracy=None if target is None else float(target),
                    eval_interval=eval_interval,
                    max_steps=max_steps,
                    nproc=nproc,
                    compile=comp,
                    channels_last=cl,
                )
            )
    # De-duplicate (e.g. 'amp' and 'amp-bf16' on CPU resolve to the same config), keep order.
    return list(dict.fromkeys(configs))
