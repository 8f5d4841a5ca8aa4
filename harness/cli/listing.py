"""``trainmark list``: what a sweep can name (models with their size and input, datasets,
precisions, optimizers, suites) and the devices present, with the reason for those absent.
``trainmark list PATTERN`` lists the models a pattern names instead (``'resnet*'``,
``'torchvision:*'``, ``'timm:vit_*'``)."""

from __future__ import annotations

import argparse

# Above this many matches a pattern's listing skips parameter counts: each is a model built
# (on the meta device, but timm's 1,000+ models still take minutes).
COUNT_LIMIT = 25


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "pattern", nargs="?", metavar="PATTERN",
        help="list only the models matching a shell-style pattern: over trainmark's models "
             "('resnet*') or a library's ('torchvision:*', 'timm:resnet*'); parameter counts "
             f"are shown for up to {COUNT_LIMIT} matches")
    p.set_defaults(func=cmd_list)


def format_count(n: int) -> str:
    """A parameter count for people: 25557032 -> '25.6M'."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)


def format_input(shape: tuple[int, ...]) -> str:
    """(3, 224, 224) -> '3x224x224'; a language model's (1024,) -> '1024 tokens'."""
    return f"{shape[0]} tokens" if len(shape) == 1 else "x".join(str(d) for d in shape)


def model_rows(names: list[str], counts: bool = True) -> list[str]:
    """A header, then one line per model: name, task, parameters at its declared input, input,
    default dataset, description."""
    from models import count_parameters, get_model_info

    width = max([12, *(len(n) for n in names)])
    rows = [f"  {'name':{width}} {'task':20} {'params':>7}  {'input':12} "
            f"{'default dataset':17} description"]
    for name in names:
        info = get_model_info(name)
        params = "-"
        if counts:
            try:
                params = format_count(count_parameters(name))
            except Exception:  # the count is information; one unbuildable model must not
                params = "?"  # hide the rest of the listing
        rows.append(f"  {name:{width}} {info.task:20} {params:>7}  "
                    f"{format_input(info.input_shape):12} {info.default_dataset:17} "
                    f"{info.description}".rstrip())
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    if args.pattern is not None:
        from harness.core.suites import model_names

        names = model_names([args.pattern])
        print(f"models matching {args.pattern!r} ({len(names)}):")
        for row in model_rows(names, counts=len(names) <= COUNT_LIMIT):
            print(row)
        return 0

    from harness.core.data import DATASET_CHOICES
    from harness.core.devices import device_status
    from harness.core.optim import OPTIMIZERS
    from harness.core.precision import PRECISIONS
    from harness.core.suites import list_suites
    from models import SOURCES, list_models

    print("models:")
    for row in model_rows(list_models()):
        print(row)
    print("  and any " + ", ".join(f"{s}:NAME" for s in SOURCES)
          + " (random init; list them with `trainmark list 'torchvision:*'`)")
    print("datasets:   " + ", ".join(DATASET_CHOICES))
    print("precisions: " + ", ".join(PRECISIONS) + "  (amp: bf16 on CPU, fp16 on CUDA/MPS)")
    print("optimizers: " + ", ".join(OPTIMIZERS))
    print("suites:     " + ", ".join(list_suites()))
    print("devices:")
    for name, present, detail in device_status():
        print(f"  {name:8} {'present' if present else 'absent ':8} {detail}")
    return 0
