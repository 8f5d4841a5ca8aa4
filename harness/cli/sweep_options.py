"""The sweep options shared by ``run``, ``ab`` and ``baseline``: one table, three uses.

``SWEEP_OPTIONS`` defines each flag once. ``add_sweep_options`` puts them on a parser,
``overrides_from_args`` turns parsed values into ``core.suites`` settings (None = not given),
``configs_from_args`` expands the sweep, and ``run_arguments`` gives the same choice back as
``trainmark run`` arguments (for a fresh ``trainmark run`` process of another tree).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError


@dataclass(frozen=True)
class SweepOption:
    flag: str  # e.g. --batch-sizes
    key: str  # the core.suites setting it overrides, e.g. batch_sizes
    # names | ints | sizes (ints or "max[:LIMIT]") | int | float | count (an int or "auto") |
    # switch (True or not given) | axis (the [True] axis)
    kind: str
    help: str

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")


SWEEP_OPTIONS: tuple[SweepOption, ...] = (
    SweepOption("--models", "models", "names", "comma list, e.g. convnet,resnet20"),
    SweepOption("--devices", "devices", "names", "comma list: auto, cpu, cuda, cuda:N, mps"),
    SweepOption("--batch-sizes", "batch_sizes", "sizes",
                "comma list of integers, or max / max:LIMIT: the largest batch that trains "
                "without running out of memory (found before measuring)"),
    SweepOption("--precisions", "precisions", "names",
                "comma list: fp32, amp, amp-fp16, amp-bf16, fp8 (float8 linears through torchao, "
                "bf16 elsewhere; CUDA compute capability 8.9+)"),
    SweepOption("--optimizers", "optimizers", "names", "comma list: sgd, adam, adagrad"),
    SweepOption("--dataset", "datasets", "names",
                "comma list: synthetic, cifar10, imagefolder:PATH, synthetic-text, "
                "synthetic-tokens, text:PATH"),
    SweepOption("--lr", "lr", "float", "learning rate for every config (default: per model)"),
    SweepOption("--steps", "steps", "int",
                "timed steps per repeat, at least (more when --min-time needs them)"),
    SweepOption("--warmup", "warmup", "count",
                "untimed warm-up: 'auto' (until step times settle; the default) or N steps"),
    SweepOption("--repeats", "repeats", "int", "timed repeats (throughput samples)"),
    SweepOption("--min-time", "min_time", "float",
                "seconds each timed repeat lasts, at least (default: 1 on CUDA/MPS, 0 on CPU)"),
    SweepOption("--seed", "seed", "int", "seed for model init and batch order"),
    SweepOption("--eval-samples", "eval_samples", "int",
                "held-out samples evaluated after timing"),
    SweepOption("--train-samples", "train_samples", "int", "cap on training-set size"),
    SweepOption("--seeds", "seeds", "int", "repeat each config over N consecutive seeds"),
    SweepOption("--deterministic", "deterministic", "switch",
                "deterministic algorithms: bitwise-repeatable losses (may be slower)"),
    SweepOption("--allow-emulated", "allow_emulated", "switch",
                "measure bf16/fp16 where the hardware only emulates it (a CPU without "
                "AVX512_BF16/AMX, a GPU below compute capability 8.0): refused as "
                "unavailable by default, since such a number measures the emulation"),
    SweepOption("--target-accuracy", "target_accuracy", "float",
                "time-to-accuracy mode: train until held-out accuracy >= X (a fraction)"),
    SweepOption("--eval-interval", "eval_interval", "int",
                "steps between evaluations in time-to-accuracy mode (default 50)"),
    SweepOption("--max-steps", "max_steps", "int",
                "upper bound on steps in time-to-accuracy mode (default 2000)"),
    SweepOption("--nproc", "nproc", "ints",
                "comma list of data-parallel process counts (DDP, torchrun)"),
    SweepOption("--parallel", "parallel", "names",
                "comma list: ddp (a replica per process) or fsdp (FSDP2: parameters, gradients "
                "and optimizer state sharded over the --nproc processes, per block)"),
    SweepOption("--activation-checkpointing", "activation_checkpointing", "names",
                "comma list: none, selective (per operator, torchtitan's default), "
                "selective:N (every Nth block), full (recompute every block)"),
    SweepOption("--compile", "compile", "axis",
                "torch.compile each model (compile time recorded separately)"),
    SweepOption("--channels-last", "channels_last", "axis",
                "NHWC memory format for the convolutional models"),
    SweepOption("--image-size", "image_size", "int",
                "pixels per side of the image data (default: the model's own, e.g. 224)"),
    SweepOption("--num-classes", "num_classes", "int",
                "classes of the synthetic image data (default: the model's own)"),
    SweepOption("--seq-len", "seq_len", "int",
                "language models' context in tokens (default: the model's own)"),
    SweepOption("--input", "inputs", "names",
                "comma list: resident (data on the device, the default) or loader (a "
                "DataLoader decoding and transforming every batch)"),
    SweepOption("--workers", "workers", "ints",
                "comma list of DataLoader worker counts (--input loader; default 0)"),
    SweepOption("--transforms", "transforms", "name",
                "loader transforms: standard (crop, flip, normalise) or totensor (the "
                "article's CIFAR-10 recipe)"),
    SweepOption("--memory-budget", "memory_budget", "float",
                "GiB a config may use: a batch over it counts as out of memory "
                "(--batch-sizes max on a CPU, where no OOM happens)"),
)


def add_sweep_options(p: argparse.ArgumentParser, default_suite: str) -> None:
    """``--suite``, the sweep axes and settings, ``--data-dir`` and ``--download``."""
    p.add_argument("--suite", default=None,
                   help=f"suite name (see `trainmark list`) or a TOML path (default "
                        f"{default_suite})")
    p.set_defaults(default_suite=default_suite)
    for o in SWEEP_OPTIONS:
        if o.kind in ("names", "ints", "sizes", "name"):
            p.add_argument(o.flag, help=o.help)
        elif o.kind in ("int", "float"):
            p.add_argument(o.flag, type=int if o.kind == "int" else float, help=o.help)
        elif o.kind == "count":
            p.add_argument(o.flag, type=_count, help=o.help)
        elif o.kind == "switch":
            p.add_argument(o.flag, action="store_true", default=None, help=o.help)
        else:
            p.add_argument(o.flag, action="store_const", const=[True], help=o.help)
    p.add_argument("--data-dir", default="data", help="where datasets live (default: ./data)")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 if missing")


def _count(text: str) -> int | str:
    """An integer, or the text as given (``auto``, or a bad value ``core.suites`` reports with
    the valid choices)."""
    try:
        return int(text)
    except ValueError:
        return text.strip()


def _items(flag: str, text: str, ints: bool, sizes: bool = False) -> list:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"{flag}: empty list {text!r}")
    if sizes:  # "max[:LIMIT]" stays text: core.suites checks it
        bad = [t for t in items if not (t.lstrip("-").isdigit() or t.startswith("max"))]
        if bad:
            raise UserError(f"{flag} takes comma-separated integers or max / max:LIMIT, "
                            f"got {text!r}")
        return [t if t.startswith("max") else int(t) for t in items]
    if not ints:
        return items
    try:
        return [int(t) for t in items]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated integers, got {text!r}") from None


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Sweep settings given on the command line (``None``: not given, the suite decides)."""
    out: dict[str, Any] = {}
    for o in SWEEP_OPTIONS:
        value = getattr(args, o.dest)
        if value is not None and o.kind in ("names", "ints", "sizes"):
            value = _items(o.flag, value, ints=o.kind == "ints", sizes=o.kind == "sizes")
        out[o.key] = value
    return out


def suite_of(args: argparse.Namespace) -> str:
    return args.suite or args.default_suite


def configs_from_args(args: argparse.Namespace) -> list:
    """The sweep's ``RunConfig``s; ``UserError`` on any bad value, before anything runs."""
    from harness.core.suites import expand, load_suite, merge_settings

    return expand(merge_settings(load_suite(suite_of(args)), overrides_from_args(args)))


def absolute_datasets(names: list[str]) -> list[str]:
    """``text:PATH`` and ``imagefolder:PATH`` with absolute paths, for a process in another
    working directory."""
    out = []
    for name in names:
        kind, sep, path = name.partition(":")
        out.append(f"{kind}:{Path(path).resolve()}" if sep and kind in ("text", "imagefolder")
                   else name)
    return out


def run_arguments(args: argparse.Namespace, suite: Path) -> list[str]:
    """The same sweep as ``trainmark run`` arguments, with absolute paths (the runs happen in
    another directory): ``--suite FILE --data-dir DIR`` and every sweep option given."""
    flags = ["--suite", str(suite), "--data-dir", str(Path(args.data_dir).resolve())]
    if args.download:
        flags.append("--download")
    for o in SWEEP_OPTIONS:
        value = getattr(args, o.dest)
        if value is None:
            continue
        if o.kind in ("switch", "axis"):
            flags.append(o.flag)
        elif o.key == "datasets":
            flags += [o.flag, ",".join(absolute_datasets(_items(o.flag, value, ints=False)))]
        else:
            flags += [o.flag, str(value)]
    return flags
