"""Datasets as device-resident tensors; batches are index slices (no DataLoader on the clock;
``core.pipeline`` is the mode with one).

Image datasets: ``synthetic`` (offline default, at the model's size and class count),
``cifar10`` (torchvision's real loader) and ``imagefolder:PATH`` (``core.imagefolder``). Text
datasets: ``synthetic-text`` (characters), ``synthetic-tokens`` (ids in the model's
vocabulary) and ``text:PATH`` (any UTF-8 file, characters). Synthetic data is deterministic from
``data_seed`` (``core.synthetic``).

Resident data stays within ``RESIDENT_BUDGET_BYTES``: when the training split in float32 would
not fit (224-pixel images), images are kept as uint8 (converted per batch, on the device, as
input pipelines do) and the split is a pool of as many samples as fit, reused by the batches.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness.core.imagefolder import decode, folder_splits
from harness.core.synthetic import synthetic_images, synthetic_text, synthetic_tokens
from harness.errors import UserError
from models import IMAGE_CLASSIFICATION, LANGUAGE_MODELING, get_model_info

GPT2_VOCAB = 50_257  # GPT-2's BPE vocabulary: synthetic-tokens' default size

IMAGE_DATASETS = ("synthetic", "cifar10")
TEXT_DATASETS = ("synthetic-text", "synthetic-tokens", "text:PATH")
DATASET_CHOICES = (*IMAGE_DATASETS, "imagefolder:PATH", *TEXT_DATASETS)

SYNTHETIC_TRAIN = 4096  # images in the synthetic training split (fewer where the budget says)
SYNTHETIC_TEXT_CHARS = 200_000  # characters of synthetic text (90% train / 10% held out)
SYNTHETIC_TOKENS = 1 << 20  # ids in the synthetic token stream (90% train / 10% held out)
BLOCK_SIZE = 128  # the small transformer's context length in tokens
# Host or device memory the resident image splits may hold: 4,096 32x32 float images take 48 MiB;
# 224-pixel ones are kept as uint8, about 1,780 of them in a 256 MiB training pool.
RESIDENT_BUDGET_BYTES = 256 << 20
NATIVE_IMAGE_SIZE = {"cifar10": 32}  # datasets whose images have one size


def dataset_task(name: str) -> str:
    """The task a dataset serves; ``UserError`` naming the valid choices if unknown."""
    kind, sep, path = name.partition(":")
    if name in IMAGE_DATASETS or (kind == "imagefolder" and sep and path):
        return IMAGE_CLASSIFICATION
    if name in TEXT_DATASETS[:2] or (kind == "text" and sep and path):
        return LANGUAGE_MODELING
    raise UserError(f"unknown dataset {name!r}; valid: {', '.join(DATASET_CHOICES)}")


@dataclass(frozen=True)
class InputSpec:
    """The shape a config trains at (the runner resolves it from the model's declaration and
    the config's overrides): images of ``image_size`` pixels in ``num_classes`` classes, or
    sequences of ``block_size`` tokens over ``vocab_size`` ids (None: the data's own)."""

    image_size: int = 32
    num_classes: int = 10
    block_size: int = BLOCK_SIZE
    vocab_size: int | None = None


def input_spec(model: str, dataset: str, *, image_size: int | None = None,
               num_classes: int | None = None, seq_len: int | None = None) -> InputSpec:
    """The shape ``model`` trains at on ``dataset``: what the config asks, else the dataset's own
    size where all its images share one (CIFAR-10: 32 pixels, 10 classes), else the model's
    declared input (``models.ModelInfo``)."""
    info = get_model_info(model)
    if info.task == LANGUAGE_MODELING:
        return InputSpec(block_size=seq_len or info.input_shape[0], vocab_size=info.vocab_size)
    size = image_size or NATIVE_IMAGE_SIZE.get(dataset) or info.input_shape[-1]
    return InputSpec(image_size=size, num_classes=num_classes or info.num_classes or 10)


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

    @property
    def input_shape(self) -> str:
        return "x".join(str(d) for d in self.train_x.shape[1:])

    def sample_indices(self, steps: int, batch_size: int, gen: torch.Generator) -> torch.Tensor:
        """(steps, batch_size) training indices, drawn before timing, moved to the device."""
        n = self.train_x.shape[0]
        idx = torch.randint(0, n, (steps, batch_size), generator=gen)
        return idx.to(self.train_x.device)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return as_float(self.train_x[idx]), self.train_y[idx]  # (B, C, H, W), (B,)

    def items_per_sample(self) -> int:
        return 1

    def outputs_per_sample(self) -> int:
        """Logits one sample produces: its class scores."""
        return self.num_classes

    def device_bytes(self) -> int:
        """Bytes the resident splits hold (on the device they live on)."""
        return sum(t.nbytes for t in (self.train_x, self.train_y, self.eval_x, self.eval_y))

    def eval_batches(self, batch_size: int, limit: int):
        n = min(limit, self.eval_x.shape[0])
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)
            yield as_float(self.eval_x[i:j]), self.eval_y[i:j]


def as_float(x: torch.Tensor) -> torch.Tensor:
    """Images as float32 in [0, 1], whether kept as float32 or as uint8 (0..255)."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


@dataclass
class TextData:
    name: str
    train_tokens: torch.Tensor  # (N,) int64
    eval_tokens: torch.Tensor  # (M,) int64
    vocab: list[str] = field(default_factory=list)  # characters; empty for token-id data
    block_size: int = BLOCK_SIZE
    vocab_size: int | None = None  # the model's vocabulary when it fixes one; else len(vocab)
    task: str = LANGUAGE_MODELING
    unit: str = "tokens/s"

    @property
    def model_kwargs(self) -> dict[str, int]:
        return {"vocab_size": self.vocab_size or len(self.vocab), "block_size": self.block_size}

    @property
    def input_shape(self) -> str:
        return str(self.block_size)

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

    def outputs_per_sample(self) -> int:
        """Logits one sample (a context window) produces: (T, vocab)."""
        return self.block_size * self.model_kwargs["vocab_size"]

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


# ---------------------------------------------------------------- text


def _check_text_length(name: str, text: str, block: int = BLOCK_SIZE) -> None:
    if len(text) < 10 * (block + 1):
        raise UserError(
            f"dataset {name!r} has {len(text)} characters; at least {10 * (block + 1)} are "
            f"needed for a 90/10 split with context {block}"
        )


def _text_data(name: str, text: str, device: torch.device, spec: InputSpec) -> TextData:
    _check_text_length(name, text, spec.block_size)
    vocab = sorted(set(text))
    if spec.vocab_size is not None and len(vocab) > spec.vocab_size:
        raise UserError(f"dataset {name!r} has {len(vocab)} distinct characters; the model's "
                        f"vocabulary has {spec.vocab_size}")
    lookup = {ch: i for i, ch in enumerate(vocab)}
    tokens = torch.tensor([lookup[ch] for ch in text], dtype=torch.long)
    return _split_tokens(name, tokens, device, spec, vocab)


def _split_tokens(name: str, tokens: torch.Tensor, device: torch.device, spec: InputSpec,
                  vocab: list[str]) -> TextData:
    split = int(0.9 * len(tokens))
    return TextData(name, tokens[:split].to(device), tokens[split:].to(device), vocab,
                    block_size=spec.block_size, vocab_size=spec.vocab_size)


def synthetic_token_data(spec: InputSpec, data_seed: int, device: torch.device) -> TextData:
    """``synthetic-tokens``: ids over the model's vocabulary (GPT-2's 50,257 where it has none),
    at least 20 context windows of held-out tokens."""
    vocab = spec.vocab_size or GPT2_VOCAB
    n = max(SYNTHETIC_TOKENS, 200 * (spec.block_size + 1))
    tokens = synthetic_tokens(n, vocab, seed=data_seed)
    return _split_tokens("synthetic-tokens", tokens, device,
                         InputSpec(block_size=spec.block_size, vocab_size=vocab), [])


# ---------------------------------------------------------------- images within a budget


def image_pool(wanted: int, eval_samples: int, size: int) -> tuple[int, int, torch.dtype]:
    """(training samples, held-out samples, storage dtype) for resident images of ``size``
    pixels: float32 when ``wanted`` training samples fit ``RESIDENT_BUDGET_BYTES`` that way,
    else uint8 with the pools cut to fit (held-out data at most a quarter of the budget)."""
    pixels = 3 * size * size
    if (wanted + eval_samples) * pixels * 4 <= RESIDENT_BUDGET_BYTES:
        return wanted, eval_samples, torch.float32
    n_eval = min(eval_samples, RESIDENT_BUDGET_BYTES // 4 // pixels)
    n_train = min(wanted, (RESIDENT_BUDGET_BYTES - n_eval * pixels) // pixels)
    return max(1, n_train), max(1, n_eval), torch.uint8


def _imagefolder_data(name: str, device: torch.device, size: int, *, data_seed: int,
                      train_samples: int | None, eval_samples: int,
                      held_out_only: bool = False) -> ImageData:
    """``imagefolder:PATH`` decoded at ``size`` pixels, as uint8 within the budget: a seeded
    subset of the training images when the folder holds more than fit (none when
    ``held_out_only``)."""
    splits = folder_splits(name.partition(":")[2], seed=data_seed)
    wanted = 0 if held_out_only else min(len(splits.train), train_samples or len(splits.train))
    n_train, n_eval, _ = image_pool(wanted, min(eval_samples, len(splits.held_out)), size)
    n_train = min(n_train, wanted)  # image_pool keeps at least one sample; none was asked
    rng = random.Random(data_seed)
    train = rng.sample(splits.train, n_train) if n_train < len(splits.train) else splits.train
    tx, ty = decode(train, size)
    ex, ey = decode(splits.held_out[:n_eval], size)
    return ImageData(name, tx.to(device), ty.to(device), ex.to(device), ey.to(device),
                     num_classes=len(splits.classes))


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
    elif name.startswith("imagefolder:"):
        folder_splits(name.partition(":")[2], seed=0)


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
    spec: InputSpec | None = None,
    held_out_only: bool = False,
) -> Dataset:
    """Load ``name`` onto ``device`` at ``spec``'s shape (default: 32-pixel images in 10
    classes, 128-token contexts); ``train_samples`` caps the training split (images only).
    ``held_out_only``: CIFAR-10 and image folders without their (empty) training split, for
    ``--input loader``, which reads the training files itself."""
    dataset_task(name)
    spec = spec or InputSpec()
    if name == "synthetic":
        n_train, n_eval, dtype = image_pool(train_samples or SYNTHETIC_TRAIN, eval_samples,
                                            spec.image_size)
        shape = {"num_classes": spec.num_classes, "size": spec.image_size, "dtype": dtype}
        tx, ty = synthetic_images(n_train, seed=2 * data_seed + 1, template_seed=data_seed,
                                  **shape)
        ex, ey = synthetic_images(n_eval, seed=2 * data_seed + 2, template_seed=data_seed,
                                  **shape)
        return ImageData(name, tx.to(device), ty.to(device), ex.to(device), ey.to(device),
                         num_classes=spec.num_classes)
    elif name.startswith("imagefolder:"):
        return _imagefolder_data(name, device, spec.image_size, data_seed=data_seed,
                                 train_samples=train_samples, eval_samples=eval_samples,
                                 held_out_only=held_out_only)
    elif name == "cifar10":
        ex, ey = cifar10_to_tensors(_load_cifar10(data_dir, download, train=False))
        if held_out_only:
            tx, ty = ex[:0], ey[:0]
        else:
            tx, ty = cifar10_to_tensors(_load_cifar10(data_dir, download, train=True))
        if train_samples:
            tx, ty = tx[:train_samples], ty[:train_samples]
        ex, ey = ex[:eval_samples], ey[:eval_samples]
    elif name == "synthetic-text":
        return _text_data(name, synthetic_text(SYNTHETIC_TEXT_CHARS, data_seed), device, spec)
    elif name == "synthetic-tokens":
        return synthetic_token_data(spec, data_seed, device)
    else:
        return _text_data(name, _read_text(name[5:]), device, spec)
    return ImageData(name, tx.to(device), ty.to(device), ex.to(device), ey.to(device))
