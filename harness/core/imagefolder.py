"""``imagefolder:PATH``: a folder of JPEG/PNG images in torchvision's ``ImageFolder`` layout
(``PATH/CLASS/*.jpg``), read through torchvision's own ``ImageFolder`` class.

The held-out split is ``PATH/val`` when ``PATH/train`` and ``PATH/val`` both exist (ImageNet's
layout), else a seeded 10% of each class. Resident mode (``core.data``) decodes every image
once with the evaluation transform (resize the shorter side to size x 256/224, centre crop) and
keeps uint8 pixels within its budget; loader mode (``core.pipeline``) decodes per batch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.errors import UserError

HOLDOUT = 0.1  # held-out fraction of each class when the folder has no val/ split
RESIZE_RATIO = 256 / 224  # the standard ImageNet evaluation resize before the centre crop


@dataclass
class FolderSplits:
    """Samples as torchvision's ImageFolder lists them: (file path, class index) pairs."""

    root: Path
    classes: list[str]
    train: list[tuple[str, int]]
    held_out: list[tuple[str, int]]


def _image_folder(root: Path):
    from torchvision.datasets import ImageFolder  # imported on use: torchvision is slow

    try:
        return ImageFolder(str(root))
    except FileNotFoundError as exc:  # no class folders, or no JPEG/PNG/... files in them
        raise UserError(f"image folder {root}: {exc}; expected {root}/CLASS/IMAGE.jpg "
                        f"(torchvision ImageFolder layout)") from None


def folder_splits(path: str, seed: int) -> FolderSplits:
    """The training and held-out samples of ``path``; ``UserError`` if it is not an image
    folder or a split is empty."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"image folder not found: {path}")
    train_dir, val_dir = root / "train", root / "val"
    if train_dir.is_dir() and val_dir.is_dir():
        train, val = _image_folder(train_dir), _image_folder(val_dir)
        if train.classes != val.classes:
            raise UserError(f"image folder {root}: train/ and val/ have different classes "
                            f"({len(train.classes)} vs {len(val.classes)})")
        splits = FolderSplits(root, train.classes, list(train.samples), list(val.samples))
    else:
        folder = _image_folder(root)
        rng = random.Random(seed)
        train_samples: list[tuple[str, int]] = []
        held_out: list[tuple[str, int]] = []
        for k in range(len(folder.classes)):  # per class, so every class is in both splits
            mine = [s for s in folder.samples if s[1] == k]
            rng.shuffle(mine)
            n_out = round(HOLDOUT * len(mine)) if len(mine) > 1 else 0
            held_out += mine[:n_out]
            train_samples += mine[n_out:]
        splits = FolderSplits(root, folder.classes, train_samples, held_out)
    if not splits.train or not splits.held_out:
        raise UserError(f"image folder {root}: {len(splits.train)} training and "
                        f"{len(splits.held_out)} held-out images; both splits need images "
                        f"(give each class at least 2 images, or train/ and val/ folders)")
    return splits


def eval_transform(size: int):
    """Resize the shorter side to size x 256/224, centre crop ``size``: uint8 CHW tensors."""
    from torchvision.transforms import v2

    return v2.Compose([v2.PILToTensor(), v2.Resize(round(size * RESIZE_RATIO), antialias=True),
                       v2.CenterCrop(size)])


def decode(samples: list[tuple[str, int]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, size, size) uint8 pixels and (N,) labels, decoded with the evaluation transform."""
    from torchvision.datasets.folder import default_loader  # PIL, converted to RGB

    transform = eval_transform(size)
    x = torch.empty((len(samples), 3, size, size), dtype=torch.uint8)
    for i, (file, _) in enumerate(samples):
        x[i] = transform(default_loader(file))
    return x, torch.tensor([label for _, label in samples], dtype=torch.long)
