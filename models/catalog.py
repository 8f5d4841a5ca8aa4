"""Every model a sweep can name, whatever defines it: trainmark's registry (``resnet50``), or a
library source (``torchvision:convnext_tiny``, ``timm:vit_small_patch16_224``).

The public lookups (``get_model_info``, ``create_model``, ``list_models``) answer for both;
``expand_model_names`` turns command-line patterns into names, and ``count_parameters`` sizes a
model without allocating it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

from models._registry import ModelInfo, registered_info, registered_names
from models.sources import SOURCES, list_source_models, source_model_info, split_source

_WILDCARDS = frozenset("*?[")


def list_models(pattern: str = "*", include_test: bool = False) -> list[str]:
    """Sorted model names matching a shell-style ``pattern``: registered models (test-only ones
    with ``include_test``), or a source's when the pattern has its prefix
    (``"torchvision:resnet*"``, ``"timm:vit_*"``; ``SourceUnavailable`` without timm)."""
    split = split_source(pattern)
    if split is None:
        return registered_names(pattern, include_test)
    return list_source_models(*split)


def get_model_info(name: str) -> ModelInfo:
    """The ``ModelInfo`` for ``name``; ``KeyError`` naming the valid choices otherwise
    (``SourceUnavailable`` for a ``timm:`` name without timm installed)."""
    info = registered_info(name)
    if info is not None:
        return info
    if split_source(name) is not None:
        return source_model_info(name)
    sources = " or ".join(f"{s}:NAME" for s in SOURCES)
    raise KeyError(f"unknown model {name!r}; valid: {', '.join(list_models())} "
                   f"(or any {sources}: see `trainmark list 'torchvision:*'`)")


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build model ``name`` with builder keyword arguments ``kwargs`` (image models:
    ``num_classes``, ``in_channels``, ``image_size``; language models: ``vocab_size``,
    ``block_size``)."""
    return get_model_info(name).builder(**kwargs)


def transformer_blocks(model: nn.Module) -> nn.ModuleList | None:
    """The repeated blocks of a transformer (``layers`` in the Llama family, ``blocks`` in the
    GPTs): the units that sharding and activation checkpointing wrap one by one; None for a
    model without them."""
    for attr in ("layers", "blocks"):
        blocks = getattr(model, attr, None)
        if isinstance(blocks, nn.ModuleList) and len(blocks) > 0:
            return blocks
    return None


def expand_model_names(patterns: list[str]) -> list[str]:
    """Model names for command-line items, in order and de-duplicated: a plain name (checked),
    a shell-style pattern over the registry (``resnet*``) or over a source
    (``torchvision:resnet*``). ``KeyError`` naming a pattern that matches nothing."""
    names: list[str] = []
    for pattern in patterns:
        if _WILDCARDS.isdisjoint(pattern):
            get_model_info(pattern)  # raises with the valid choices
            names.append(pattern)
            continue
        matched = list_models(pattern)
        if not matched:
            raise KeyError(f"no model matches {pattern!r}")
        names.extend(matched)
    return list(dict.fromkeys(names))


def count_parameters(name: str, *, use_declared: bool = True, **builder_kwargs: object) -> int:
    """Parameters of model ``name`` at its declared input (``builder_kwargs`` override it),
    built on the meta device: shapes only, no memory, no initialisation arithmetic, so GPT-2 or
    ViT-B/16 is counted in well under a second. Tied weights count once. A model that declares
    its count (``num_params``) is not built at its declared input unless ``use_declared`` is
    false."""
    info = get_model_info(name)
    if use_declared and info.num_params is not None and not builder_kwargs:
        return info.num_params
    kwargs = {**info.builder_kwargs(), **builder_kwargs}
    try:
        with torch.device("meta"):
            model = info.builder(**kwargs)
    except NotImplementedError:
        # A builder that computes its architecture with tensors (torchvision's RegNets turn
        # widths into ints with .tolist()) cannot run with meta as the default device; build
        # with each parameter sent to meta as it is registered instead.
        with _parameters_on_meta():
            model = info.builder(**kwargs)
    return sum(p.numel() for p in model.parameters())


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Move every parameter to the meta device the moment a module registers it (what
    accelerate's ``init_empty_weights`` does): at most one parameter is ever in host memory,
    and initialisers then run on meta tensors, doing nothing."""
    register = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), param.requires_grad)

    nn.Module.register_parameter = register_on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]
