"""Datasets as device-resident tensors; batches are index slices (no DataLoader on the clock).

Image datasets: ``synthetic`` (offline default) and ``cifar10`` (torchvision's real loader).
Text datasets: ``synthetic-text`` (offline default) and ``text:PATH`` (any UTF-8 file).
Synthetic data is deterministic from ``data_seed`` and generated on the CPU with its own
``torch.Generator``, so every device sees bitwise the same samples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness.errors import UserError
from models import IMAGE_CLASSIFICATION, LANGUAGE_MODELING

IMAGE_DATASETS = ("synthetic", "cifar10")
TEXT_DATASETS = ("synthetic-text", "text:PATH")
DATASET_CHOICES = IMAGE_DATASETS + TEXT_DATASETS

SYNTHETIC_TRAIN = 4096  # images in the synthetic training split
SYNTHETIC_TEXT_CHARS = 200_000  # characters of synthetic text (90% train / 10% held out)
BLOCK_SIZE = 128  # language-model context length in tokens


def dataset_task(name: str) -> str:
    """The task a dataset serves; ``UserError`` naming the valid choices if unknown."""
    if name in IMAGE_DATASETS:
        return IMAGE_CLASSIFICATION
    if name == "synthetic-text" or (name.startswith("text:") and len(name) > 5):
        return LANGUAGE_MODELING
    raise UserError(f"unknown dataset {name!r}; valid: {', '.join(DATASET_CHOICES)}")


@dataclass
class ImageData:
    name: str
    train_x: torch.Tensor  # (N, C, H, W) float32 in [0, 1]
    train_y: torch.Tensor  # (N,) int64
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    num_classes: int = 10
    task: str = IMAGE_CLASSIFICATION
    unit: str = "samples/s"

    @property
    def model_kwargs(self) -> dict[str, int]:
        c, h, _ = self.train_x.shape[1:]
        return {"num_classes": self.num_classes, "in_channels": c, "image_size": h}

    def sample_indices(self, steps: int, batch_size: int, gen: torch.Generator) -> torch.Tensor:
        """(steps, batch_size) training indices, drawn before timing, moved to the device."""
        n = self.train_x.shape[0]
        idx = torch.randint(0, n, (steps, batch_size), generator=gen)
        return idx.to(self.train_x.device)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.train_x[idx], self.train_y[idx]  # (B, C, H, W), (B,)

    def items_per_sample(self) -> int:
        return 1

    def device_bytes(self) -> int:
        """Bytes the resident splits hold (on the device they live on)."""
        return sum(t.nbytes for t in (self.train_x, self.train_y, self.eval_x, self.eval_y))

    def eval_batches(self, batch_size: int, limit: int):
        n = min(limit, self.eval_x.shape[0])
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)
            yield self.eval_x[i:j], self.eval_y[i:j]


@dataclass
class TextData:
    name: str
    train_tokens: torch.Tensor  # (N,) int64
    eval_tokens: torch.Tensor  # (M,) int64
    vocab: list[str] = field(default_factory=list)
    block_size: int = BLOCK_SIZE
    task: str = LANGUAGE_MODELING
    unit: str = "tokens/s"

    @property
    def model_kwargs(self) -> dict[str, int]:
        return {"vocab_size": len(self.vocab), "block_size": self.block_size}

    def sample_indices(self, steps: int, batch_size: int, gen: torch.Generator) -> torch.Tensor:
        """(steps, batch_size) window start offsets into the training tokens."""
        hi = self.train_tokens.shape[0] - self.block_size - 1
        idx = torch.randint(0, hi + 1, (steps, batch_size), generator=gen)
        return idx.to(self.train_tokens.device)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        offsets = idx[:, None] + self._arange(idx.device)  # (B, T)
        return self.train_tokens[offsets], self.train_tokens[offsets + 1]  # inputs, next tokens

    def _arange(self, device: torch.device) -> torch.Tensor:
        cached = getattr(self, "_ar", None)
        if cached is None or cached.device != device:
            cached = torch.arange(self.block_size, device=device)
            self._ar = cached
        return cached

    def items_per_sample(self) -> int:
        return self.block_size  # throughput is counted in tokens

    def device_bytes(self) -> int:
        """Bytes the resident splits hold (on the device they live on)."""
        return self.train_tokens.nbytes + self.eval_tokens.nbytes

    def eval_batches(self, batch_size: int, limit: int):
        """Non-overlapping held-out windows, at most ``limit`` of them."""
        T = self.block_size
        n_windows = min(limit, (self.eval_tokens.shape[0] - 1) // T)
        starts = torch.arange(n_windows, device=self.eval_tokens.device) * T
        for i in range(0, n_windows, batch_size):
            s = starts[i : i + batch_size, None] + self._arange(starts.device)  # (b, T)
            yield self.eval_tokens[s], self.eval_tokens[s + 1]


Dataset = ImageData | TextData


# ---------------------------------------------------------------- synthetic images


def synthetic_images(
    n: int, seed: int, template_seed: int, num_classes: int = 10, size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable images: a smooth random template per class, randomly shifted, scaled, noised.

    Templates depend only on ``template_seed``, so train and held-out splits drawn with different
    sample ``seed``s share them (they are the signal); shifts of up to 4 pixels and
    Gaussian noise (sigma 0.25) keep the task from being trivial.
    """
    tgen = torch.Generator().manual_seed(template_seed)
    coarse = torch.rand(num_classes, 3, 8, 8, generator=tgen)
    templates = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n,), generator=gen)
    x = templates[y].clone()  # (n, 3, size, size)
    shifts = torch.randint(-4, 5, (n, 2), generator=gen)
    for i in range(n):  # per-sample roll; n is thousands, this takes milliseconds
        x[i] = torch.roll(x[i], shifts=(int(shifts[i, 0]), int(shifts[i, 1])), dims=(1, 2))
    contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=gen)
    x = (x - 0.5) * contrast + 0.5 + 0.25 * torch.randn(x.shape, generator=gen)
    return x.clamp_(0.0, 1.0), y


# ---------------------------------------------------------------- synthetic text


def synthetic_text(n_chars: int, seed: int) -> str:
    """Text from a seeded word-level Markov source over an invented lexicon.

    Each word has 2-4 likely successors, sentences end with '.', so a model can learn spelling
    (characters within a word are fixed) and some grammar (which word follows which).
    """
    rng = random.Random(seed)
    letters = "abcdefghijklmnoprstuvwy"
    words = sorted({"".join(rng.choices(letters, k=rng.randint(2, 7))) for _ in range(300)})
    successors = {w: rng.sample(words, k=rng.randint(2, 4)) for w in words}
    weights = {w: [rng.random() + 0.2 for _ in successors[w]] for w in words}
    out: list[str] = []
    size = 0
    word = rng.choice(words)
    sentence_len = 0
    while size < n_chars:
        token = word.capitalize() if sentence_len == 0 else word
        sentence_len += 1
        if sentence_len >= rng.randint(5, 12):
            token += "."
            sentence_len = 0
            word = rng.choice(words)
        else:
            word = rng.choices(successors[word], weights=weights[word])[0]
        out.append(token)
        size += len(token) + 1
    return " ".join(out)[:n_chars]


def _check_text_length(name: str, text: str) -> None:
    if len(text) < 10 * (BLOCK_SIZE + 1):
        raise UserError(
            f"dataset {name!r} has {len(text)} characters; at least {10 * (BLOCK_SIZE + 1)} are "
            f"needed for a 90/10 split with context {BLOCK_SIZE}"
        )


def _text_data(name: str, text: str, device: torch.device) -> TextData:
    _check_text_length(name, text)
    vocab = sorted(set(text))
    lookup = {ch: i for i, ch in enumerate(vocab)}
    tokens = torch.tensor([lookup[ch] for ch in text], dtype=torch.long)
    split = int(0.9 * len(tokens))
    return TextData(name, tokens[:split].to(device), tokens[split:].to(device), vocab)


# ---------------------------------------------------------------- CIFAR-10


def _load_cifar10(data_dir: str, download: bool, train: bool):
    from torchvision.datasets import CIFAR10  # imported here: torchvision is slow to import

    try:
        return CIFAR10(root=data_dir, train=train, download=download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted. ..."
        hint = "pass --download (needs internet)" if not download else "the download failed"
        raise UserError(
            f"CIFAR-10 not found or corrupted in {Path(data_dir).resolve()}/cifar-10-batches-py "
            f"({hint}); offline, use --dataset synthetic"
        ) from exc
    except OSError as exc:  # network errors from --download without internet
        raise UserError(
            f"could not download CIFAR-10 into {data_dir}: {exc}; offline, use --dataset synthetic"
        ) from exc


def cifar10_to_tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision CIFAR10 (uint8 HWC numpy) -> what ``ToTensor()`` gives, all images at once."""
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, 32, 32)
    return x.contiguous(), torch.tensor(ds.targets, dtype=torch.long)


def check_dataset(name: str, data_dir: str, download: bool) -> None:
    """Fail early (before any file is written) if ``name`` cannot be loaded."""
    dataset_task(name)
    if name == "cifar10":
        _load_cifar10(data_dir, download, train=False)
    elif name.startswith("text:"):
        _check_text_length(name, _read_text(name[5:]))


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"text file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"text file {path} is not UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot read text file {path}: {exc.strerror}") from None


def load_dataset(
    name: str,
    device: torch.device,
    *,
    data_dir: str = "data",
    download: bool = False,
    data_seed: int = 0,
    train_samples: int | None = None,
    eval_samples: int = 1024,
) -> Dataset:
    """Load ``name`` onto ``device``; ``train_samples`` caps the training split (images only)."""
    dataset_task(name)
    if name == "synthetic":
        n_train = train_samples or SYNTHETIC_TRAIN
        tx, ty = synthetic_images(n_train, seed=2 * data_seed + 1, template_seed=data_seed)
        ex, ey = synthetic_images(eval_samples, seed=2 * data_seed + 2, template_seed=data_seed)
    elif name == "cifar10":
        tx, ty = cifar10_to_tensors(_load_cifar10(data_dir, download, train=True))
        ex, ey = cifar10_to_tensors(_load_cifar10(data_dir, download, train=False))
        if train_samples:
            tx, ty = tx[:train_samples], ty[:train_samples]
        ex, ey = ex[:eval_samples], ey[:eval_samples]
    elif name == "synthetic-text":
        return _text_data(name, synthetic_text(SYNTHETIC_TEXT_CHARS, data_seed), device)
    else:
        return _text_data(name, _read_text(name[5:]), device)
    return ImageData(name, tx.to(device), ty.to(device), ex.to(device), ey.to(device))
