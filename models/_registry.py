"""The registry of trainmark's own models: ``@register_model`` and the lookups behind it.

A model is registered under its builder function's name. Each entry declares its task, its
default dataset and the input it is compared at (``input_shape``, ``num_classes``,
``vocab_size``), so the sweep can pick data without a lookup table elsewhere. Models from other
libraries (``torchvision:NAME``, ``timm:NAME``) get the same ``ModelInfo`` on the fly
(``models/sources.py``); ``models/catalog.py`` answers for both. Unknown names fail loudly with
the valid choices (as timm's ``_registry.py`` does).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

import torch.nn as nn

IMAGE_CLASSIFICATION = "image-classification"
LANGUAGE_MODELING = "language-modeling"
TASKS = (IMAGE_CLASSIFICATION, LANGUAGE_MODELING)

# What an image model is fed unless it says otherwise: CIFAR-10's shape and class count (the
# suite's small models and the test-only fault models all train on CIFAR-shaped data).
CIFAR_SHAPE = (3, 32, 32)
CIFAR_CLASSES = 10


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
    # The input the model is compared at: (C, H, W) for images, (T,) = context length in tokens
    # for language models.
    input_shape: tuple[int, ...] = CIFAR_SHAPE
    # Image models: the class count of their standard data (10 CIFAR, 1000 ImageNet).
    num_classes: int | None = CIFAR_CLASSES
    # Language models whose vocabulary the model fixes (GPT-2: 50,257 BPE tokens); None = the
    # dataset's vocabulary (the character-level transformer).
    vocab_size: int | None = None
    # The batch size ``default_lr`` is meant for, where the learning rate scales linearly with
    # the batch (Goyal et al. 2017's rule: lr x batch / lr_batch); None: the rates are used at
    # any batch size as they are (the small CIFAR-sized models).
    lr_batch: int | None = None
    # Parameters at the declared input, declared so that `trainmark list` need not build every
    # model to count them (tests/test_models.py checks each against a real count); None: count.
    num_params: int | None = None

    def lr_for(self, optimizer: str, batch_size: int) -> float:
        """The default learning rate of ``optimizer`` at ``batch_size`` (linear scaling from
        ``lr_batch`` when declared; a batch size of 0, not yet known, takes the rate as is)."""
        lr = float(self.default_lr[optimizer])
        return lr * batch_size / self.lr_batch if self.lr_batch and batch_size else lr

    @property
    def unit(self) -> str:
        """What its throughput counts: samples (images) or tokens per second."""
        return "tokens/s" if self.task == LANGUAGE_MODELING else "samples/s"

    def builder_kwargs(self) -> dict[str, int]:
        """The builder's keyword arguments at the declared input (the runner's contract: image
        models get ``num_classes``/``in_channels``/``image_size``, language models
        ``vocab_size``/``block_size``; a vocabulary of None is left to the builder)."""
        if self.task == LANGUAGE_MODELING:
            kw = {"block_size": self.input_shape[0]}
            if self.vocab_size is not None:
                kw["vocab_size"] = self.vocab_size
            return kw
        kw = {"in_channels": self.input_shape[0], "image_size": self.input_shape[1]}
        if self.num_classes is not None:
            kw["num_classes"] = self.num_classes
        return kw


_REGISTRY: dict[str, ModelInfo] = {}


def _check_shape(task: str, shape: tuple[int, ...]) -> None:
    want = 1 if task == LANGUAGE_MODELING else 3
    if len(shape) != want or any(not isinstance(d, int) or d < 1 for d in shape):
        what = "(T,)" if task == LANGUAGE_MODELING else "(C, H, W)"
        raise ValueError(f"a {task} model's input_shape is {what} of positive ints, got {shape}")
    if task == IMAGE_CLASSIFICATION and shape[1] != shape[2]:
        # The builder contract carries one image_size: square images only.
        raise ValueError(f"image input_shape must be square, got {shape}")


def register_model(
    *,
    task: str,
    default_dataset: str,
    family: str,
    default_lr: dict[str, float],
    test_only: bool = False,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    vocab_size: int | None = None,
    lr_batch: int | None = None,
    num_params: int | None = None,
    name: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``fn`` under ``fn.__name__`` (or ``name``, for a published name that
    is no Python identifier, such as ``llama3.1-8b``) with its task, defaults and input.

    Image models default to CIFAR-10's (3, 32, 32) and 10 classes; a language model must
    declare its context length as ``input_shape=(T,)``.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    if task == LANGUAGE_MODELING:
        if input_shape is None:
            raise ValueError("a language model declares its context: input_shape=(T,)")
        if num_classes is not None:
            raise ValueError("a language model has a vocabulary, not classes: use vocab_size")
    else:
        input_shape = CIFAR_SHAPE if input_shape is None else input_shape
        num_classes = CIFAR_CLASSES if num_classes is None else num_classes
        if vocab_size is not None:
            raise ValueError("an image model has classes, not a vocabulary: use num_classes")
    _check_shape(task, tuple(input_shape))

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = ModelInfo(
            name=key,
            builder=fn,
            task=task,
            default_dataset=default_dataset,
            family=family,
            default_lr=dict(default_lr),
            description=doc[0] if doc else "",
            test_only=test_only,
            input_shape=tuple(input_shape),
            num_classes=num_classes,
            vocab_size=vocab_size,
            lr_batch=lr_batch,
            num_params=num_params,
        )
        return fn

    return wrap


def registered_names(pattern: str = "*", include_test: bool = False) -> list[str]:
    """Sorted names of registered models matching a shell-style ``pattern``."""
    return sorted(
        name
        for name, info in _REGISTRY.items()
        if fnmatch.fnmatch(name, pattern) and (include_test or not info.test_only)
    )


def registered_info(name: str) -> ModelInfo | None:
    """The registry entry for ``name``, or None."""
    return _REGISTRY.get(name)
