"""Write a tiny CIFAR-10 archive in the real on-disk format (pickled python batches).

The images carry a learnable pattern: each class has its own mean colour per channel plus noise,
so a model trained on them must beat chance. torchvision verifies each file's md5 against
constants in ``CIFAR10``; ``patch_cifar_md5`` (test-side only) points those at the fixture files.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np

BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]


def _images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    labels = rng.integers(0, 10, size=n)
    base = np.stack([(labels * 25 + 10) % 256, (labels * 77) % 256, 255 - labels * 25], axis=1)
    noise = rng.normal(0, 30, size=(n, 3, 1024))
    data = np.clip(base[:, :, None] + noise, 0, 255).astype(np.uint8).reshape(n, 3072)
    return data, [int(v) for v in labels]


def write_cifar10(root: Path, per_batch: int = 40, test: int = 60, seed: int = 0) -> dict[str, str]:
    """Create ``root/cifar-10-batches-py``; return {filename: md5}."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    md5: dict[str, str] = {}
    for name, n in [(b, per_batch) for b in BATCHES] + [("test_batch", test)]:
        data, labels = _images(n, rng)
        entry = {"batch_label": name, "labels": labels, "data": data,
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({"label_names": LABEL_NAMES, "num_cases_per_batch": per_batch}, protocol=2)
    )
    for f in folder.iterdir():
        md5[f.name] = hashlib.md5(f.read_bytes()).hexdigest()
    return md5


def patch_cifar_md5(monkeypatch, md5: dict[str, str]) -> None:
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "train_list", [[b, md5[b]] for b in BATCHES])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
