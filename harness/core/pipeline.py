"""``--input loader``: batches from a real input pipeline, on the clock.

A ``torch.utils.data.DataLoader`` with ``workers`` processes decodes each training sample (PIL
for CIFAR-10 and image folders) and applies the training transforms; batches land in pinned
memory on CUDA and are copied with ``non_blocking=True``, as a training script does. The step
asks ``LoaderData.batch`` for the next batch, which records how long it waited for it: the
record's ``data_wait_share`` is that time over the timed regions' time (0: the pipeline keeps
up; near 1: the model waits for data). ``loader_samples_per_s`` is the loader alone, measured
after training, without a model: the most the pipeline can feed.

Transforms (``RunConfig.transforms``):

- ``standard``: the model's training augmentation. 32-pixel CIFAR-10: random crop with 4 pixels
  of padding and a flip (the ResNet paper's); other sizes: random resized crop and a flip
  (torchvision's ImageNet recipe); then normalisation with the dataset's channel means.
- ``totensor``: ``ToTensor()`` only, the article's CIFAR-10 recipe (images of another size are
  resized and centre-cropped first, so that they batch).

The held-out split stays resident on the device (evaluation is untimed), normalised like the
training batches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch

from harness.core.data import ImageData, as_float
from harness.core.imagefolder import folder_splits

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
RATE_MIN_S, RATE_MAX_BATCHES = 1.0, 50  # loader_samples_per_s: at least 1 s, at most 50 batches


def train_transform(kind: str, size: int, native: int | None, stats: tuple, pil: bool):
    """The training transforms: ``kind`` standard or totensor, to ``size`` pixels; ``native``
    is the dataset's own size where all its images share one (CIFAR-10's 32). Crops and flips
    run on uint8 pixels, before the conversion to float (cheaper, as torchvision advises)."""
    from torchvision.transforms import v2

    first = [v2.ToImage()] if pil else []  # PIL -> uint8 tensor; synthetic tensors already are
    to_float = v2.ToDtype(torch.float32, scale=True)  # with ToImage: what ToTensor() does
    if kind == "totensor":
        resize = [] if native == size else [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
        return v2.Compose([*first, *resize, to_float])
    if native == size == 32:
        crop = v2.RandomCrop(32, padding=4)
    else:
        crop = v2.RandomResizedCrop(size, antialias=True)
    return v2.Compose([*first, crop, v2.RandomHorizontalFlip(), to_float, v2.Normalize(*stats)])


class TensorImages(torch.utils.data.Dataset):
    """Resident images (float in [0, 1] or uint8, on the CPU) through tensor transforms."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.x[i]), int(self.y[i])


class FileImages(torch.utils.data.Dataset):
    """(path, label) samples decoded with PIL on every access, as ImageFolder does."""

    def __init__(self, samples: list[tuple[str, int]], transform) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from torchvision.datasets.folder import default_loader

        path, label = self.samples[i]
        return self.transform(default_loader(path)), label


def training_set(dataset: str, base: ImageData, kind: str, size: int, *, data_dir: str,
                 data_seed: int, train_samples: int | None) -> tuple[torch.utils.data.Dataset,
                                                                      tuple | None]:
    """The loader's training samples and the normalisation statistics applied to them (None for
    ``totensor``): decoded from files for CIFAR-10 and image folders, ``base``'s resident
    training split (moved to the CPU) for synthetic images."""
    if dataset == "cifar10":
        from torchvision.datasets import CIFAR10

        stats = CIFAR10_STATS
        ds = CIFAR10(root=data_dir, train=True,
                     transform=train_transform(kind, size, 32, stats, pil=True))
        if train_samples:
            ds = torch.utils.data.Subset(ds, range(min(train_samples, len(ds))))
    elif dataset.startswith("imagefolder:"):
        stats = IMAGENET_STATS
        samples = folder_splits(dataset.partition(":")[2], seed=data_seed).train
        ds = FileImages(samples[:train_samples] if train_samples else samples,
                        train_transform(kind, size, None, stats, pil=True))
    else:
        stats = IMAGENET_STATS
        ds = TensorImages(base.train_x.cpu(), base.train_y.cpu(),
                          train_transform(kind, size, base.train_x.shape[-1], stats, pil=False))
    return ds, (None if kind == "totensor" else stats)


class LoaderData:
    """An ``ImageData`` look-alike whose training batches come from a DataLoader."""

    task: str
    unit: str

    def __init__(self, base: ImageData, loader: torch.utils.data.DataLoader,
                 device: torch.device, size: int, stats: tuple | None) -> None:
        self.name, self.task, self.unit = base.name, base.task, base.unit
        self.num_classes = base.num_classes
        self.loader, self.device, self.size = loader, device, size
        self.batch_size = int(loader.batch_size or 1)
        eval_x = as_float(base.eval_x.to(device))
        if eval_x.shape[-1] != size:  # held out at the training size
            eval_x = torch.nn.functional.interpolate(eval_x, size=(size, size), mode="bilinear",
                                                     antialias=True)
        if stats is not None:
            mean, std = (torch.tensor(s, device=device).view(1, 3, 1, 1) for s in stats)
            eval_x = (eval_x - mean) / std
        self.eval_x, self.eval_y = eval_x, base.eval_y.to(device)
        self.waits: list[float] = []  # seconds each batch() waited for its batch
        # --channels-last: each batch lands NHWC in its host-to-device copy, instead of the
        # model's first convolution converting its layout every step.
        self.memory_format = torch.preserve_format
        self._it: Iterator | None = None

    @property
    def model_kwargs(self) -> dict[str, int]:
        return {"num_classes": self.num_classes, "in_channels": 3, "image_size": self.size}

    @property
    def input_shape(self) -> str:
        return f"3x{self.size}x{self.size}"

    def sample_indices(self, steps: int, batch_size: int, gen: torch.Generator) -> torch.Tensor:
        """One placeholder row per step: the loader, not an index, picks the samples."""
        return torch.zeros((steps, 1), dtype=torch.long)

    def _next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._it is None:
            self._it = iter(self.loader)
        try:
            return next(self._it)
        except StopIteration:  # an epoch ended; persistent workers carry on
            self._it = iter(self.loader)
            return next(self._it)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        started = time.perf_counter()
        x, y = self._next()
        x = x.to(self.device, non_blocking=True, memory_format=self.memory_format)
        y = y.to(self.device, non_blocking=True)
        self.waits.append(time.perf_counter() - started)
        return x, y

    def items_per_sample(self) -> int:
        return 1

    def outputs_per_sample(self) -> int:
        return self.num_classes

    def device_bytes(self) -> int:
        return self.eval_x.nbytes + self.eval_y.nbytes

    def eval_batches(self, batch_size: int, limit: int):
        n = min(limit, self.eval_x.shape[0])
        for i in range(0, n, batch_size):
            yield self.eval_x[i: i + batch_size], self.eval_y[i: i + batch_size]

    def wait_share(self, timed_steps: int, timed_s: float) -> float | None:
        """Share of the timed regions spent waiting for batches: the last ``timed_steps``
        batches are the timed ones (warm-up and FLOP counting came before)."""
        if timed_s <= 0 or timed_steps <= 0 or len(self.waits) < timed_steps:
            return None
        return min(1.0, sum(self.waits[-timed_steps:]) / timed_s)

    def loader_rate(self) -> float:
        """Samples per second the loader delivers alone (no model): batches pulled for at least
        ``RATE_MIN_S`` seconds or ``RATE_MAX_BATCHES`` batches, after one untimed batch."""
        self._next()
        started, batches = time.perf_counter(), 0
        while batches < RATE_MAX_BATCHES and (batches < 2 or
                                              time.perf_counter() - started < RATE_MIN_S):
            self._next()
            batches += 1
        return batches * self.batch_size / (time.perf_counter() - started)

    def close(self) -> None:
        """Stop the worker processes now rather than at garbage collection."""
        self._it = None


def loader_data(base: ImageData, dataset: str, device: torch.device, *, size: int,
                batch_size: int, workers: int, transforms: str, seed: int, data_dir: str,
                data_seed: int, train_samples: int | None) -> LoaderData:
    """``base`` (its held-out split) with training batches from a DataLoader of ``workers``
    processes, shuffled by ``seed``; pinned memory on CUDA."""
    ds, stats = training_set(dataset, base, transforms, size, data_dir=data_dir,
                             data_seed=data_seed, train_samples=train_samples)
    gen = torch.Generator().manual_seed(seed)
    # With replacement when the set is smaller than a batch: every batch has batch_size samples.
    sampler = torch.utils.data.RandomSampler(ds, replacement=len(ds) < batch_size,
                                             num_samples=max(len(ds), batch_size), generator=gen)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    return LoaderData(base, loader, device, size, stats)

