"""``trainmark list``: what a sweep can name (models, datasets, precisions, optimizers, suites)
and the devices present, with the reason for those absent."""

from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from harness.core.data import DATASET_CHOICES
    from harness.core.devices import device_status
    from harness.core.optim import OPTIMIZERS
    from harness.core.precision import PRECISIONS
    from harness.core.suites import list_suites
    from models import get_model_info, list_models

    print("models:")
    for name in list_models():
        info = get_model_info(name)
        print(f"  {name:12} {info.task:21} default dataset {info.default_dataset:15} "
              f"{info.description}")
    print("datasets:   " + ", ".join(DATASET_CHOICES))
    print("precisions: " + ", ".join(PRECISIONS) + "  (amp: bf16 on CPU, fp16 on CUDA/MPS)")
    print("optimizers: " + ", ".join(OPTIMIZERS))
    print("suites:     " + ", ".join(list_suites()))
    print("devices:")
    for name, present, detail in device_status():
        print(f"  {name:8} {'present' if present else 'absent ':8} {detail}")
    return 0
