"""Suites and sweeps: suite file + command-line flags -> ``list[RunConfig]``.

A sweep is the cartesian product of its axes (models x datasets x devices x batch sizes x
precisions x optimizers x nproc x parallel x activation checkpointing x compile x channels-last x
seeds). Suites are TOML files shipped inside the package (``harness/suites/NAME.toml``) or given
by path; their keys are the CLI's flag names, and flags given on the command line replace the
suite's values. A ``[model.NAME]`` table overrides keys for one model (e.g. smaller batch sizes
for the Transformer).

``warmup`` is ``"auto"`` (the adaptive warm-up, ``core.loop``; the default) or a fixed count of
steps; ``min_time`` is seconds per timed region, at least (not set: the device's default,
``core.config.DEFAULT_MIN_TIME_S``, resolved when each config runs).

Defaults have one source: the ``RunConfig`` dataclass. ``DEFAULTS`` below derives every setting
that maps to a config field from it; only the keys that exist for sweeps alone (which models,
devices and datasets; ``lr`` = "per model"; ``seeds`` = how many) are defined here.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core.config import (
    CONFIG_DEFAULTS,
    INPUT_MODES,
    MAX_BATCH_LIMIT,
    PARALLEL_MODES,
    TRANSFORMS,
    RunConfig,
    check_ac_mode,
)
from harness.core.data import NATIVE_IMAGE_SIZE, dataset_task
from harness.core.devices import resolve_device
from harness.core.optim import OPTIMIZERS
from harness.core.precision import PRECISIONS, resolve_alias
from harness.errors import UserError
from models import IMAGE_CLASSIFICATION, SourceUnavailable, expand_model_names, get_model_info

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"  # package data
DEFAULT_SUITE = "quick"

# Sweep keys (flag names, dashes as underscores) -> the RunConfig field each sets.
LIST_FIELDS = {"batch_sizes": "batch_size", "precisions": "precision",
               "optimizers": "optimizer", "nproc": "nproc", "compile": "compile",
               "channels_last": "channels_last", "inputs": "input", "workers": "workers",
               "parallel": "parallel", "activation_checkpointing": "activation_checkpointing"}
SCALAR_FIELDS = {"seed": "seed", "warmup": "warmup_steps", "steps": "timed_steps",
                 "repeats": "repeats", "min_time": "min_time_s", "eval_samples": "eval_samples",
                 "train_samples": "train_samples", "data_seed": "data_seed",
                 "deterministic": "deterministic", "target_accuracy": "target_accuracy",
                 "eval_interval": "eval_interval", "max_steps": "max_steps",
                 "image_size": "image_size", "num_classes": "num_classes", "seq_len": "seq_len",
                 "transforms": "transforms", "memory_budget": "memory_budget_gib",
                 "allow_emulated": "allow_emulated"}
SWEEP_ONLY: dict[str, Any] = {
    "models": ["convnet", "resnet20", "transformer"],
    "datasets": [],  # empty: each model's default dataset
    "devices": ["auto"],
    "lr": None,  # None: the model family's default for the optimizer
    "seeds": 1,  # repeat each config over this many consecutive seeds
}
DEFAULTS: dict[str, Any] = {
    **SWEEP_ONLY,
    **{key: [CONFIG_DEFAULTS[f]] for key, f in LIST_FIELDS.items()},
    **{key: CONFIG_DEFAULTS[f] for key, f in SCALAR_FIELDS.items()},
}
LIST_KEYS = ("models", "datasets", "devices", *LIST_FIELDS)
SCALAR_KEYS = ("lr", "seeds", *SCALAR_FIELDS)
BOOLEAN_KEYS = ("deterministic", "compile", "channels_last", "allow_emulated")
# Axes chosen once for the whole sweep: a [model.NAME] table cannot set them.
SWEEP_WIDE_KEYS = ("models", "devices", "datasets")
MODEL_KEYS = tuple(k for k in (*LIST_KEYS, *SCALAR_KEYS) if k not in SWEEP_WIDE_KEYS)


def list_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def suite_path(name_or_path: str) -> Path:
    """The file behind a suite name (``quick``) or path (``my.toml``); ``UserError`` if none."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise UserError(
            f"suite {name_or_path!r} not found ({path}); valid: {', '.join(list_suites())}"
        )
    return path.resolve()


def suite_name(name_or_path: str) -> str:
    """The name a record carries for the suite it was expanded from: the file's stem, as
    ``list_suites`` names the shipped ones (``quick``; ``gpu`` for ``conf/gpu.toml``). Not the
    folder: ab, baseline, backfill and fleet hand their runs the file's absolute path, and one
    suite's records must not split by where they were run from."""
    return Path(name_or_path).stem


def _check_booleans(where: str, table: dict[str, Any]) -> None:
    for key in BOOLEAN_KEYS:
        values = table.get(key)
        for value in values if isinstance(values, list) else [values]:
            if value is not None and not isinstance(value, bool):
                raise UserError(f"{where}: {key} must be true or false (a TOML boolean, "
                                f"unquoted), got {value!r}")


def load_suite(name_or_path: str) -> dict[str, Any]:
    """A suite by name or path, validated; ``UserError`` naming the file and key if bad."""
    path = suite_path(name_or_path)
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
    _check_booleans(f"suite {path}", data)
    if not isinstance(data.get("model", {}), dict):
        raise UserError(f"suite {path}: 'model' must be tables such as [model.convnet]")
    for name, table in data.get("model", {}).items():
        where = f"suite {path}: [model.{name}]"
        if not isinstance(table, dict):
            raise UserError(f"{where} must be a table of keys")
        wide = sorted(set(table) & set(SWEEP_WIDE_KEYS))
        if wide:
            raise UserError(f"{where}: {wide[0]!r} applies to the whole sweep, not to one "
                            f"model; valid here: {', '.join(MODEL_KEYS)}")
        bad = sorted(set(table) - set(MODEL_KEYS))
        if bad:
            raise UserError(f"{where}: unknown key {bad[0]!r}; valid: {', '.join(MODEL_KEYS)}")
        _check_booleans(where, table)
    return data


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _positive_int(key: str, value: Any, allow_zero: bool = False) -> int:
    # bool is an int subclass and int("8") parses: neither is an integer setting.
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral:
        raise UserError(f"{key} must be an integer, got {value!r}")
    number = int(value)
    if number < 0 or (number == 0 and not allow_zero):
        limit = ">= 0" if allow_zero else "> 0"
        raise UserError(f"{key} must be {limit}, got {value!r}")
    return number


AUTO = "auto"  # warmup: the adaptive rule (None in RunConfig)


def _warmup(value: Any) -> int | None:
    """``"auto"`` -> None (adaptive), or a fixed count >= 0."""
    if value is None or value == AUTO:
        return None
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral or value < 0:
        raise UserError(f"warmup must be {AUTO!r} or an integer >= 0, got {value!r}")
    return int(value)


def _min_time(value: Any) -> float | None:
    """Seconds >= 0, or None (the device's default)."""
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise UserError(f"min time must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{key} must be true or false, got {value!r}")
    return value


def _optional_int(key: str, value: Any) -> int | None:
    return None if value is None else _positive_int(key, value)


def _budget(value: Any) -> float | None:
    """GiB > 0, or None (no budget)."""
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:
        raise UserError(f"memory budget must be a number of GiB > 0, got {value!r}")
    return float(value)


def batch_size_item(value: Any) -> tuple[int, int | None]:
    """One ``batch_sizes`` item -> (batch size, max_batch): an integer is itself;
    ``max`` / ``max:LIMIT`` is (0, the limit): the search (execution.batch_search) finds it."""
    if isinstance(value, str):
        text = value.strip()
        if text == "max":
            return 0, MAX_BATCH_LIMIT
        head, sep, limit = text.partition(":")
        if head == "max" and sep and limit.strip().isdigit() and int(limit) > 0:
            return 0, int(limit)
        raise UserError(f"batch size {value!r}: use an integer, max or max:LIMIT (an integer "
                        f"> 0), e.g. max:512")
    return _positive_int("batch size", value), None


def _check_choice(kind: str, value: Any, choices: list[str] | tuple[str, ...]) -> str:
    if value not in choices:
        raise UserError(f"unknown {kind} {value!r}; valid: {', '.join(choices)}")
    return str(value)


def merge_settings(suite: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Defaults <- suite <- command-line overrides (None in overrides means 'not given')."""
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:  # a programming error, not bad input: the CLI builds these keys
        raise KeyError(f"unknown sweep setting {unknown[0]!r}; valid: {', '.join(DEFAULTS)}")
    settings = dict(DEFAULTS)
    settings.update({k: v for k, v in suite.items() if k in DEFAULTS})
    settings["model_overrides"] = suite.get("model", {})
    settings.update({k: v for k, v in overrides.items() if v is not None})
    # An axis given on the command line beats a per-model suite override of the same axis.
    settings["cli_keys"] = {k for k, v in overrides.items() if v is not None}
    return settings


def _model_settings(settings: dict[str, Any], model: str) -> dict[str, Any]:
    """The settings for one model: its ``[model.NAME]`` table applied, except where the command
    line set the same key."""
    per_model = dict(settings)
    for key, value in settings.get("model_overrides", {}).get(model, {}).items():
        if key not in settings.get("cli_keys", set()):
            per_model[key] = value
    return per_model


def _scalars(s: dict[str, Any]) -> dict[str, Any]:
    """Validated scalar settings, as ``RunConfig`` keyword arguments."""
    train_samples = s["train_samples"]
    target = s["target_accuracy"]
    number = isinstance(target, (int, float)) and not isinstance(target, bool)
    if target is not None and not (number and 0 < target <= 1):
        raise UserError(f"target accuracy must be a fraction in (0, 1], got {target!r}")
    return {
        "warmup_steps": _warmup(s["warmup"]),
        "timed_steps": _positive_int("steps", s["steps"]),
        "repeats": _positive_int("repeats", s["repeats"]),
        "min_time_s": _min_time(s["min_time"]),
        "eval_samples": _positive_int("eval samples", s["eval_samples"]),
        "train_samples": (None if train_samples is None
                          else _positive_int("train samples", train_samples)),
        "data_seed": _positive_int("data seed", s["data_seed"], allow_zero=True),
        "deterministic": _flag("deterministic", s["deterministic"]),
        "target_accuracy": None if target is None else float(target),
        "eval_interval": _positive_int("eval interval", s["eval_interval"]),
        "max_steps": _positive_int("max steps", s["max_steps"]),
        "image_size": _optional_int("image size", s["image_size"]),
        "num_classes": _optional_int("num classes", s["num_classes"]),
        "seq_len": _optional_int("seq len", s["seq_len"]),
        "transforms": _check_choice("transforms", s["transforms"], TRANSFORMS),
        "memory_budget_gib": _budget(s["memory_budget"]),
        "allow_emulated": _flag("allow_emulated", s["allow_emulated"]),
    }


def _axes(s: dict[str, Any], task: str) -> dict[str, list]:
    """Validated per-model list axes, keyed by the ``RunConfig`` field each sets."""
    axes = {
        "batch_size": [batch_size_item(b) for b in _as_list(s["batch_sizes"])],
        "precision": [_check_choice("precision", p, PRECISIONS)
                      for p in _as_list(s["precisions"])],
        "optimizer": [_check_choice("optimizer", o, OPTIMIZERS)
                      for o in _as_list(s["optimizers"])],
        "nproc": [_positive_int("nproc", n) for n in _as_list(s["nproc"])],
        "compile": [_flag("compile", v) for v in _as_list(s["compile"])],
        "channels_last": [_flag("channels_last", v) for v in _as_list(s["channels_last"])],
        "input": [_check_choice("input", v, INPUT_MODES) for v in _as_list(s["inputs"])],
        "workers": [_positive_int("workers", w, allow_zero=True)
                    for w in _as_list(s["workers"])],
        "parallel": [_check_choice("parallel", v, PARALLEL_MODES)
                     for v in _as_list(s["parallel"])],
        "activation_checkpointing": [check_ac_mode(v)
                                     for v in _as_list(s["activation_checkpointing"])],
    }
    if task != IMAGE_CLASSIFICATION:  # NHWC means nothing for a language model
        axes["channels_last"] = [False]
    return axes


def _lr(s: dict[str, Any]) -> float | None:
    lr = s["lr"]
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0):
        raise UserError(f"lr must be a number > 0, got {lr!r}")
    return None if lr is None else float(lr)


def model_names(patterns: list[str]) -> list[str]:
    """Model names for command-line items, wildcards (``resnet*``, ``torchvision:resnet*``)
    expanded; ``UserError`` naming an unknown name or pattern, or a missing optional extra."""
    try:
        return expand_model_names(patterns)
    except (KeyError, SourceUnavailable) as exc:
        raise UserError(str(exc.args[0]) if exc.args else repr(patterns)) from None


def _check_models(settings: dict[str, Any]) -> list[str]:
    """The sweep's model names (``model_names``), and its ``[model.NAME]`` tables checked."""
    models = model_names([str(m) for m in _as_list(settings["models"])])
    for name in settings.get("model_overrides", {}):
        try:
            get_model_info(name)
        except (KeyError, SourceUnavailable) as exc:
            raise UserError(f"[model.{name}] in the suite: {exc.args[0]}") from None
    return models


def expand(settings: dict[str, Any],
           resolve: Callable[[str], str] | None = None) -> list[RunConfig]:
    """Validate ``settings`` (from ``merge_settings``) and return the sweep's configs, in order;
    ``UserError`` on bad input. ``resolve`` turns a device spec (``auto``, ``cuda``...) into a
    canonical device: this machine's by default; ``trainmark fleet`` plans with the devices of
    a partition's nodes instead (``execution.fleet_plan``)."""
    models = _check_models(settings)
    resolve = resolve or resolve_device
    devices = [resolve(str(d)) for d in _as_list(settings["devices"])]
    datasets = [str(d) for d in _as_list(settings["datasets"])]
    dataset_tasks = {d: dataset_task(d) for d in datasets}
    configs: list[RunConfig] = []
    for model in models:
        info = get_model_info(model)
        s = _model_settings(settings, model)
        scalars, axes, lr = _scalars(s), _axes(s, info.task), _lr(s)
        if any(axes["compile"]) and scalars["warmup_steps"] == 0:
            raise UserError("compile needs warmup 'auto' or >= 1 so that compilation stays off "
                            "the clock")
        seed = _positive_int("seed", s["seed"], allow_zero=True)
        seeds = range(seed, seed + _positive_int("seeds", s["seeds"]))
        own = [d for d in datasets if dataset_tasks[d] == info.task] or [info.default_dataset]
        for dataset, device, *values, run_seed in itertools.product(
                own, devices, *axes.values(), seeds):
            axis = dict(zip(axes, values, strict=True))
            axis["precision"] = resolve_alias(axis["precision"], device.split(":")[0])
            axis["batch_size"], axis["max_batch"] = axis["batch_size"]
            configs.append(_meaningful(RunConfig(
                model=model, dataset=dataset, device=device, seed=run_seed, **axis, **scalars,
                lr=lr if lr is not None else info.lr_for(axis["optimizer"],
                                                         axis["batch_size"])),
                info.task))
    # De-duplicate (e.g. 'amp' and 'amp-bf16' on CPU resolve to the same config, workers of a
    # resident config mean nothing), keep order.
    return list(dict.fromkeys(configs))


def _meaningful(cfg: RunConfig, task: str) -> RunConfig:
    """``cfg`` with the settings that mean nothing for it at their defaults (so configs that
    differ only there are one config), or ``UserError`` for a combination that cannot run."""
    if task == IMAGE_CLASSIFICATION:
        cfg = dataclasses.replace(cfg, seq_len=None)
    else:
        if cfg.input != "resident":
            raise UserError(f"input {cfg.input!r} is for image models; {cfg.model} is a "
                            f"language model (its tokens are always resident)")
        cfg = dataclasses.replace(cfg, image_size=None, num_classes=None)
    native = NATIVE_IMAGE_SIZE.get(cfg.dataset)
    if cfg.input == "resident" and native and cfg.image_size not in (None, native):
        raise UserError(f"{cfg.dataset} images are {native}x{native}: --image-size "
                        f"{cfg.image_size} needs --input loader (its transforms resize), or "
                        f"synthetic or imagefolder data")
    if cfg.num_classes is not None and cfg.dataset != "synthetic":
        raise UserError(f"--num-classes sets the synthetic data's classes; {cfg.dataset} has "
                        f"its own")
    if cfg.input == "resident":
        cfg = dataclasses.replace(cfg, workers=0, transforms="standard")
    if cfg.precision == "fp32":  # fp32 is never emulated: the opt-in must not split its identity
        cfg = dataclasses.replace(cfg, allow_emulated=False)
    if cfg.max_batch is not None and cfg.device == "cpu" and cfg.memory_budget_gib is None:
        raise UserError("batch size max on the CPU needs --memory-budget GiB: no out-of-memory "
                        "error happens there to stop the search")
    return cfg
