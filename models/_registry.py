"""Model registry: ``@register_model`` / ``create_model`` / ``list_models``.

A model is registered under its builder function's name. Each entry declares its task and its
default dataset so the sweep can pick data without a lookup table elsewhere. Unknown names fail
loudly with the valid choices (as timm's ``_registry.py`` does).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

import torch.nn as nn

IMAGE_CLASSIFICATION = "image-classification"
LANGUAGE_MODELING = "language-modeling"
TASKS = (IMAGE_CLASSIFICATION, LANGUAGE_MODELING)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., nn.Module]
    task: str  # one of TASKS
    default_dataset: str
    family: str  # groups models that share default learning rates (e.g. resnet18 and resnet20)
    # Default learning rate per optimizer name; the sweep uses these unless --lr overrides.
    default_lr: dict[str, float] = field(default_factory=dict)
    description: str = ""
    test_only: bool = False  # hidden from list_models() unless asked: failure-injection models


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    *,
    task: str,
    default_dataset: str,
    family: str,
    default_lr: dict[str, float],
    test_only: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``fn`` under ``fn.__name__`` with its task and defaults."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelInfo(
            name=name,
            builder=fn,
            task=task,
            default_dataset=default_dataset,
            family=family,
            default_lr=dict(default_lr),
            description=doc[0] if doc else "",
            test_only=test_only,
        )
        return fn

    return wrap


def list_models(pattern: str = "*", include_test: bool = False) -> list[str]:
    """Sorted registered model names matching a shell-style ``pattern``."""
    return sorted(
        name
        for name, info in _REGISTRY.items()
        if fnmatch.fnmatch(name, pattern) and (include_test or not info.test_only)
    )


def get_model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; ``KeyError`` naming the valid choices otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown model {name!r}; valid: {', '.join(list_models())}"
        ) from None


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build model ``name`` with builder keyword arguments ``kwargs``."""
    return get_model_info(name).builder(**kwargs)
