"""Any model by name from another library: ``torchvision:NAME`` and ``timm:NAME``.

Every torchvision classification model (``torchvision.models.list_models``) and every timm model
(``timm.list_models()``) can be benchmarked without writing a builder: its ``ModelInfo`` is made
on first use (and cached) with the model's own default input size, 1000 classes (ImageNet, what
they are published on), generic learning rates and the ``synthetic`` dataset. Weights are always
random (``weights=None`` / ``pretrained=False``): a benchmark measures the architecture, and the
suite must never reach for the network.

torchvision and timm are imported only when such a name is used, so ``import models`` stays
cheap; timm is an optional extra, and its absence is one ``SourceUnavailable`` naming the extra.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from collections.abc import Callable
from types import ModuleType

import torch
import torch.nn as nn

from models._registry import IMAGE_CLASSIFICATION, ModelInfo

SOURCES = ("torchvision", "timm")
IMAGENET_CLASSES = 1000
# Generic defaults for a model nobody tuned here: SGD 0.1 is Goyal et al.'s ImageNet rate at
# batch 256, Adam 1e-3 Kingma & Ba's default, Adagrad 1e-2 PyTorch's default; all at batch
# 256, scaled linearly with the batch size (ModelInfo.lr_batch).
SOURCE_LR = {"sgd": 0.1, "adam": 1e-3, "adagrad": 1e-2}
SOURCE_LR_BATCH = 256
TIMM_MISSING = "timm models need the optional 'timm' extra: pip install 'trainmark[timm]'"

# torchvision builders that take the image size (the others pool adaptively and run at any
# size their strides allow): name prefix -> (keyword, whether it wants an (H, W) pair).
_TV_SIZE_ARGS = {"vit_": ("image_size", False), "maxvit_": ("input_size", True)}
# Inception-style nets return (logits, aux_logits) while training unless told not to; the
# benchmark's loss wants a tensor. init_weights=True silences torchvision's "will change"
# warning with the behaviour it has today.
_TV_EXTRA_ARGS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


class SourceUnavailable(ImportError):
    """A model source's library is not installed (timm is an optional extra)."""


def split_source(name: str) -> tuple[str, str] | None:
    """``"timm:resnet50"`` -> ``("timm", "resnet50")``; None for a registry name.

    ``KeyError`` for an unknown source prefix."""
    if ":" not in name:
        return None
    source, _, rest = name.partition(":")
    if source not in SOURCES:
        raise KeyError(f"unknown model source {source!r} in {name!r}; valid: "
                       + ", ".join(f"{s}:NAME" for s in SOURCES))
    return source, rest


def _timm() -> ModuleType:
    try:
        return importlib.import_module("timm")
    except ImportError:  # also when sys.modules["timm"] is None
        raise SourceUnavailable(TIMM_MISSING) from None


def list_source_models(source: str, pattern: str = "*") -> list[str]:
    """Sorted ``source:NAME`` names whose NAME matches the shell-style ``pattern``."""
    if source == "torchvision":
        import torchvision.models as tvm

        names = tvm.list_models(module=tvm, include=pattern)
    elif source == "timm":
        names = _timm().list_models(pattern)
    else:
        raise KeyError(f"unknown model source {source!r}; valid: {', '.join(SOURCES)}")
    return sorted(f"{source}:{n}" for n in names)


def _unknown(source: str, name: str) -> KeyError:
    near = difflib.get_close_matches(name, [n.split(":", 1)[1] for n in
                                            list_source_models(source)], n=3)
    hint = f"; did you mean {', '.join(f'{source}:{n}' for n in near)}?" if near else ""
    return KeyError(f"unknown model {source}:{name}{hint} (see `trainmark list '{source}:*'`)")


@functools.cache
def source_model_info(name: str) -> ModelInfo:
    """The ``ModelInfo`` of a ``torchvision:NAME`` or ``timm:NAME`` model, made once.

    ``KeyError`` for an unknown name, ``SourceUnavailable`` when timm is not installed."""
    split = split_source(name)
    if split is None:
        raise KeyError(f"{name!r} names no model source ({', '.join(SOURCES)})")
    source, arch = split
    size = _torchvision_size(arch) if source == "torchvision" else _timm_size(arch)
    if size is None:
        raise _unknown(source, arch)
    build = functools.partial(
        build_torchvision if source == "torchvision" else build_timm, arch, default_size=size)
    return ModelInfo(
        name=name,
        builder=build,
        task=IMAGE_CLASSIFICATION,
        default_dataset="synthetic",
        family=source,
        default_lr=dict(SOURCE_LR),
        lr_batch=SOURCE_LR_BATCH,
        description=f"{source}'s {arch}, random init",
        input_shape=(3, size, size),
        num_classes=IMAGENET_CLASSES,
    )


# ---------------------------------------------------------------- torchvision


def _torchvision_size(arch: str) -> int | None:
    """The crop size of the model's default weights' transforms (inception_v3: 299, most:
    224); None when torchvision has no classification model of that name."""
    import torchvision.models as tvm

    if arch not in tvm.list_models(module=tvm):
        return None
    transforms = tvm.get_model_weights(arch).DEFAULT.transforms
    crop = getattr(transforms, "keywords", {}).get("crop_size", 224)
    return int(crop[0] if isinstance(crop, (list, tuple)) else crop)


def build_torchvision(
    arch: str, *, default_size: int, num_classes: int = IMAGENET_CLASSES, in_channels: int = 3,
    image_size: int | None = None,
) -> nn.Module:
    """torchvision's ``arch`` with random weights, ``num_classes`` outputs and ``in_channels``
    input channels, for ``image_size`` px square images (default: the model's own)."""
    import torchvision.models as tvm

    kwargs: dict[str, object] = {"num_classes": num_classes, **_TV_EXTRA_ARGS.get(arch, {})}
    size = default_size if image_size is None else image_size
    for prefix, (key, pair) in _TV_SIZE_ARGS.items():
        if arch.startswith(prefix):
            kwargs[key] = (size, size) if pair else size

    def construct() -> nn.Module:
        return adapt_in_channels(tvm.get_model(arch, weights=None, **kwargs), in_channels)

    if size != default_size:
        check_runs_at(construct, f"torchvision:{arch}", (in_channels, size, size), default_size)
    return construct()


def adapt_in_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """Replace the model's first 3-channel ``Conv2d`` (its stem) by one taking
    ``in_channels``, same in every other respect; torchvision builders have no such argument."""
    if in_channels == 3:
        return model
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            new = nn.Conv2d(
                in_channels, module.out_channels, module.kernel_size, module.stride,
                module.padding, module.dilation, module.groups, module.bias is not None,
                module.padding_mode, device=module.weight.device, dtype=module.weight.dtype)
            parent_path, _, attr = path.rpartition(".")
            setattr(model.get_submodule(parent_path), attr, new)
            return model
    raise ValueError(f"{type(model).__name__} has no 3-channel input convolution to adapt to "
                     f"{in_channels} channels")


# ---------------------------------------------------------------- timm


def _timm_size(arch: str) -> int | None:
    """The ``input_size`` of the model's default pretrained config (224 without one); None
    when timm has no such model."""
    timm = _timm()
    if not timm.is_model(arch):
        return None
    cfg = timm.models.get_pretrained_cfg(arch)
    return int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else 224


def build_timm(
    arch: str, *, default_size: int, num_classes: int = IMAGENET_CLASSES, in_channels: int = 3,
    image_size: int | None = None,
) -> nn.Module:
    """timm's ``arch`` with random weights (``pretrained=False``), ``num_classes`` outputs and
    ``in_chans`` input channels, for ``image_size`` px square images (default: the model's)."""
    timm = _timm()
    kwargs: dict[str, object] = {"num_classes": num_classes, "in_chans": in_channels}
    size = default_size if image_size is None else image_size
    cfg = timm.models.get_pretrained_cfg(arch)
    # Only models with a fixed input size (position embeddings, fixed windows) take img_size;
    # the rest pool adaptively and would reject the argument.
    if size != default_size and cfg is not None and cfg.fixed_input_size:
        kwargs["img_size"] = size

    def construct() -> nn.Module:
        return timm.create_model(arch, pretrained=False, **kwargs)

    if size != default_size:
        check_runs_at(construct, f"timm:{arch}", (in_channels, size, size), default_size)
    return construct()


# ---------------------------------------------------------------- either


def check_runs_at(
    construct: Callable[[], nn.Module], name: str, shape: tuple[int, int, int], default: int
) -> None:
    """Build the model on the meta device and run a training-mode forward pass of two inputs
    of ``shape``: no memory, no arithmetic, only shapes. A model that cannot take that size
    (a fixed position table, a kernel larger than its feature map) fails here with a
    ``ValueError`` naming the size, instead of deep inside the first timed step.

    A failure that only says the meta device lacks a kernel proves nothing, so it passes."""
    try:
        with torch.device("meta"):
            model = construct()
            model.train()  # batch 2: train-mode BatchNorm needs more than one value per channel
            with torch.no_grad():
                model(torch.empty(2, *shape))
    except NotImplementedError:
        return
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "meta" in msg.lower():
            return
        c, h, w = shape
        why = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
        raise ValueError(f"{name} cannot run on {c}x{h}x{w} images (its default is "
                         f"{default} px): {why}") from exc
