"""ResNets for 32x32 inputs, built from torchvision's ``BasicBlock``.

- ``resnet18``: torchvision's ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool),
  about 11.2M parameters.
- ``resnet20``: the CIFAR ResNet of He et al. 2016 (section 4.2): 3 stages of 3 basic blocks with
  16/32/64 channels, global average pool, linear head; about 0.27M parameters. Down-sampling
  shortcuts use 1x1 projections (the paper's option B) so torchvision's block is reused as is.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models._registry import IMAGE_CLASSIFICATION, register_model

_RESNET_LR = {"sgd": 0.05, "adam": 1e-3, "adagrad": 1e-2}


@register_model(
    task=IMAGE_CLASSIFICATION, default_dataset="synthetic", family="resnet", default_lr=_RESNET_LR,
    input_shape=(3, 32, 32), num_classes=10,  # CIFAR-10
    num_params=11_173_962,
)
def resnet18(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """ResNet-18 with the CIFAR stem (3x3 stride-1 conv, no max-pool), ~11.2M parameters."""
    from torchvision.models import resnet as tv_resnet  # on use: torchvision takes ~1 s to import

    model = tv_resnet.resnet18(weights=None, num_classes=num_classes)
    # CIFAR stem: ImageNet's 7x7/2 conv + max-pool would shrink 32x32 to 8x8 before stage 1.
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet-(6n+2): three stages of ``n`` basic blocks (16, 32, 64 channels)."""

    def __init__(self, n: int = 3, num_classes: int = 10, in_channels: int = 3) -> None:
        from torchvision.models import resnet as tv_resnet  # on use: slow to import

        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        inplanes = 16
        for i, planes in enumerate((16, 32, 64)):
            stride = 1 if i == 0 else 2
            for b in range(n):
                s = stride if b == 0 else 1
                downsample = None
                if s != 1 or inplanes != planes:
                    downsample = nn.Sequential(
                        tv_resnet.conv1x1(inplanes, planes, s), nn.BatchNorm2d(planes)
                    )
                stages.append(tv_resnet.BasicBlock(inplanes, planes, s, downsample))
                inplanes = planes
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (B, 64, H/4, W/4)
        return self.fc(torch.flatten(self.pool(x), 1))  # (B, num_classes)


@register_model(
    task=IMAGE_CLASSIFICATION, default_dataset="synthetic", family="resnet", default_lr=_RESNET_LR,
    input_shape=(3, 32, 32), num_classes=10,  # CIFAR-10
    num_params=272_474,  # He et al. 2016, section 4.2: 0.27M
)
def resnet20(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """He et al. 2016 CIFAR ResNet-20 (3x3 basic blocks, 16/32/64 channels), ~0.27M parameters."""
    return CifarResNet(n=3, num_classes=num_classes, in_channels=in_channels)
