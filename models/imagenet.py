"""The image workloads published hardware comparisons use, at ImageNet's size.

- ``resnet50``: He et al. 2016's ResNet-50 as torchvision builds it (bottleneck blocks,
  7x7/2 stem + max-pool), 25,557,032 parameters at 1000 classes.
- ``vit_b_16``: Dosovitskiy et al. 2021's ViT-B/16 as torchvision builds it (12 layers, 12
  heads, width 768, 16x16 patches), 86,567,656 parameters at 224 px and 1000 classes.

Both come from torchvision's builders with ``weights=None``: random initialisation, never a
download. Compared at (3, 224, 224) with 1000 classes; the builders take any size (ViT: a
multiple of its 16 px patch) so tests can run them tiny.
"""

from __future__ import annotations

import torch.nn as nn

from models._registry import IMAGE_CLASSIFICATION, register_model
from models.sources import adapt_in_channels

IMAGENET_SHAPE = (3, 224, 224)
IMAGENET_CLASSES = 1000
VIT_PATCH = 16

# Goyal et al. 2017 ("ImageNet in 1 hour"): SGD momentum 0.9 at lr 0.1 per 256 images, the
# reference ResNet-50 recipe; Adam 1e-3 is Kingma & Ba's default; Adagrad 1e-2 PyTorch's.
# All at batch 256 and scaled linearly with the batch (their rule): 0.003 at batch 8.
_RESNET50_LR = {"sgd": 0.1, "adam": 1e-3, "adagrad": 1e-2}
# ViTs want smaller steps: Adam 5e-4 is DeiT's rate at batch 512 (Touvron et al. 2021:
# 5e-4 x batch / 512); SGD momentum 0.9 at 0.03 is the top of the ViT paper's fine-tuning
# sweep (Dosovitskiy et al. 2021, appendix B.1.1, batch 512); Adagrad 1e-2 PyTorch's default.
# All at batch 512, scaled linearly with the batch as DeiT does.
_VIT_LR = {"sgd": 0.03, "adam": 5e-4, "adagrad": 1e-2}


@register_model(
    task=IMAGE_CLASSIFICATION, default_dataset="synthetic", family="resnet50",
    default_lr=_RESNET50_LR, input_shape=IMAGENET_SHAPE, num_classes=IMAGENET_CLASSES,
    lr_batch=256, num_params=25_557_032,  # torchvision's model card
)
def resnet50(
    num_classes: int = IMAGENET_CLASSES, in_channels: int = 3, image_size: int = 224
) -> nn.Module:
    """ResNet-50 (torchvision, random init) at 224 px, 25.6M parameters."""
    from torchvision.models import resnet as tv_resnet  # on use: torchvision is slow to import

    # image_size is accepted for the builder contract only: global average pooling makes the
    # network size-agnostic (down to 32 px, where the last stage sees 1x1).
    model = tv_resnet.resnet50(weights=None, num_classes=num_classes)
    return adapt_in_channels(model, in_channels)


@register_model(
    task=IMAGE_CLASSIFICATION, default_dataset="synthetic", family="vit",
    default_lr=_VIT_LR, input_shape=IMAGENET_SHAPE, num_classes=IMAGENET_CLASSES,
    lr_batch=512, num_params=86_567_656,  # torchvision's model card
)
def vit_b_16(
    num_classes: int = IMAGENET_CLASSES, in_channels: int = 3, image_size: int = 224
) -> nn.Module:
    """ViT-B/16 (torchvision, random init) at 224 px, 86.6M parameters."""
    from torchvision.models import vision_transformer as tv_vit  # on use: slow to import

    if image_size % VIT_PATCH:
        # torchvision only asserts "Input shape indivisible by patch size!"; say which sizes fit.
        raise ValueError(f"vit_b_16 needs an image size divisible by its {VIT_PATCH} px patch, "
                         f"got {image_size}")
    # The position-embedding table has one row per patch, so the size is part of the model.
    model = tv_vit.vit_b_16(weights=None, num_classes=num_classes, image_size=image_size)
    return adapt_in_channels(model, in_channels)
