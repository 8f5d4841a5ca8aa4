"""Data at the model's shape (synthetic images at any size, synthetic tokens, image folders) and
the real input pipeline (``--input loader``)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from harness.cli import main
from harness.core.data import (
    RESIDENT_BUDGET_BYTES,
    InputSpec,
    image_pool,
    input_spec,
    load_dataset,
    synthetic_images,
)
from harness.core.pipeline import loader_data
from harness.errors import UserError

CPU = torch.device("cpu")
COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


def _nearest_mean_accuracy(x, y, ex, ey, classes: int) -> float:
    """Held-out accuracy of the nearest class mean: a classifier that owes nothing to the code
    under test, so above-chance accuracy means the classes carry signal."""
    means = torch.stack([x[y == k].float().mean(0) for k in range(classes)]).flatten(1)
    pred = torch.cdist(ex.float().flatten(1), means).argmin(1)
    return (pred == ey).float().mean().item()


def test_synthetic_images_at_any_size_and_class_count_stay_learnable():
    x, y = synthetic_images(400, seed=1, template_seed=0, num_classes=4, size=48)
    ex, ey = synthetic_images(200, seed=2, template_seed=0, num_classes=4, size=48)
    assert x.shape == (400, 3, 48, 48) and set(y.tolist()) == {0, 1, 2, 3}
    assert _nearest_mean_accuracy(x, y, ex, ey, 4) > 0.6  # chance: 0.25


def test_uint8_storage_is_the_float_image_quantized():
    f, yf = synthetic_images(20, seed=5, template_seed=1, size=40)
    q, yq = synthetic_images(20, seed=5, template_seed=1, size=40, dtype=torch.uint8)
    assert q.dtype == torch.uint8 and torch.equal(yf, yq)
    assert (q.float() / 255 - f).abs().max() <= 0.5 / 255 + 1e-6  # rounding, nothing else


def test_large_images_stay_within_the_resident_budget_as_uint8():
    n_train, n_eval, dtype = image_pool(4096, 512, 224)
    assert dtype == torch.uint8
    assert (n_train + n_eval) * 3 * 224 * 224 <= RESIDENT_BUDGET_BYTES
    assert n_train > 1000  # an ImageNet-shaped pool still has more samples than classes
    assert image_pool(4096, 512, 32) == (4096, 512, torch.float32)  # small images: unchanged


def test_imagenet_shaped_synthetic_data_batches_as_float():
    data = load_dataset("synthetic", CPU, train_samples=64, eval_samples=8,
                        spec=InputSpec(image_size=96, num_classes=1000))
    x, y = data.batch(torch.tensor([0, 3, 5]))
    assert x.shape == (3, 3, 96, 96) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    assert data.model_kwargs == {"num_classes": 1000, "in_channels": 3, "image_size": 96}
    assert data.input_shape == "3x96x96"


def test_shape_follows_config_then_dataset_then_model():
    assert input_spec("resnet50", "synthetic") == InputSpec(image_size=224, num_classes=1000)
    assert input_spec("resnet50", "cifar10").image_size == 32  # CIFAR-10 images are 32 px
    assert input_spec("resnet50", "cifar10", image_size=64).image_size == 64
    assert input_spec("convnet", "synthetic", num_classes=3).num_classes == 3
    gpt2 = input_spec("gpt2", "synthetic-tokens")
    assert (gpt2.block_size, gpt2.vocab_size) == (1024, 50257)
    assert input_spec("transformer", "synthetic-text", seq_len=32).block_size == 32


def test_synthetic_tokens_span_the_vocabulary_and_are_predictable():
    data = load_dataset("synthetic-tokens", CPU, spec=InputSpec(block_size=64, vocab_size=5000))
    train, held = data.train_tokens, data.eval_tokens
    assert data.model_kwargs == {"vocab_size": 5000, "block_size": 64}
    assert 0 <= int(train.min()) and int(train.max()) < 5000
    assert len(set(train.tolist())) > 4000  # phrases draw from the whole vocabulary
    # A table of what followed each pair of tokens in the training split predicts held-out next
    # tokens far above chance (1/5000): the stream is made of repeated phrases.
    t, h = train.tolist(), held.tolist()
    successor: dict[tuple[int, int], dict[int, int]] = {}
    for a, b, c in zip(t, t[1:], t[2:], strict=False):
        successor.setdefault((a, b), {}).setdefault(c, 0)
        successor[(a, b)][c] += 1
    best = {ab: max(nexts, key=nexts.get) for ab, nexts in successor.items()}
    hits = [best.get((a, b)) == c for a, b, c in zip(h, h[1:], h[2:], strict=False)]
    assert sum(hits) / len(hits) > 0.5


def _write_folder(root, per_class: int = 6, size: int = 20, fmt: str = "PNG") -> None:
    rng = np.random.default_rng(0)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 20, (size, size + 4, 3)), 0, 255)
            ext = "png" if fmt == "PNG" else "jpg"
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.{ext}", fmt)


def test_image_folder_loads_through_imagefolder_with_a_seeded_held_out_fraction(tmp_path):
    _write_folder(tmp_path / "imgs", per_class=10, fmt="JPEG")
    data = load_dataset(f"imagefolder:{tmp_path / 'imgs'}", CPU, spec=InputSpec(image_size=16))
    assert data.num_classes == 3 and data.train_x.shape[1:] == (3, 16, 16)
    assert data.train_x.shape[0] == 27 and data.eval_x.shape[0] == 3  # 1 of 10 per class out
    # Folders are classes in sorted order (ImageFolder's rule): blue 0, green 1, red 2; the
    # dominant channel of every decoded image says which folder it came from.
    dominant = data.train_x.float().mean((2, 3)).argmax(1)  # 0 red, 1 green, 2 blue
    assert torch.equal(dominant, torch.tensor([2, 1, 0])[data.train_y])


def test_image_folder_uses_train_and_val_folders_when_present(tmp_path):
    _write_folder(tmp_path / "ds" / "train", per_class=4)
    _write_folder(tmp_path / "ds" / "val", per_class=2)
    data = load_dataset(f"imagefolder:{tmp_path / 'ds'}", CPU, spec=InputSpec(image_size=8))
    assert (data.train_x.shape[0], data.eval_x.shape[0]) == (12, 6)


@pytest.mark.parametrize("layout, message", [
    ("missing", "image folder not found"),
    ("empty", "expected"),  # no class folders: torchvision's message plus the layout
    ("single", "both splits need images"),
])
def test_bad_image_folders_are_user_errors(tmp_path, layout, message):
    root = tmp_path / "imgs"
    if layout == "empty":
        root.mkdir()
    elif layout == "single":
        _write_folder(root, per_class=1)
    with pytest.raises(UserError, match=message):
        load_dataset(f"imagefolder:{root}", CPU, spec=InputSpec(image_size=8))


def _loader(data, dataset="synthetic", **kw):
    settings = dict(size=32, batch_size=8, workers=0, transforms="standard", seed=0,
                    data_dir="data", data_seed=0, train_samples=None)
    settings.update(kw)
    return loader_data(data, dataset, CPU, **settings)


def test_loader_batches_are_augmented_normalised_and_their_waits_recorded():
    base = load_dataset("synthetic", CPU, train_samples=64, eval_samples=16)
    data = _loader(base)
    for _ in range(10):  # more than one epoch of 64 samples: the iterator restarts
        x, y = data.batch(torch.zeros(1))
    assert x.shape == (8, 3, 32, 32) and y.shape == (8,)
    assert len(data.waits) == 10
    # normalised with ImageNet's channel statistics: no longer within [0, 1]
    assert x.min() < 0
    plain = _loader(base, transforms="totensor").batch(torch.zeros(1))[0]
    assert 0 <= plain.min() and plain.max() <= 1
    # the held-out split is normalised like training batches
    ex, _ = next(data.eval_batches(16, 16))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(ex, (base.eval_x - mean) / std, atol=1e-5)


def test_the_articles_cifar10_pipeline_is_totensor_of_the_files(cifar_dir):
    base = load_dataset("cifar10", CPU, data_dir=str(cifar_dir), eval_samples=16)
    data = _loader(base, "cifar10", transforms="totensor", data_dir=str(cifar_dir), workers=1)
    x, y = data.batch(torch.zeros(1))
    # every image is one of the training images exactly as ToTensor() gives it: uint8 / 255
    flat = base.train_x.flatten(1)
    for img, label in zip(x, y, strict=True):
        match = (flat - img.flatten()).abs().amax(1).argmin()
        assert torch.allclose(flat[match], img.flatten(), atol=1e-6)
        assert base.train_y[match] == label
    assert data.loader_rate() > 0
    data.close()


def test_a_loader_run_records_the_wait_share_and_the_loaders_rate(tmp_path, monkeypatch):
    _write_folder(tmp_path / "imgs", per_class=8)
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--models", "convnet", "--dataset", f"imagefolder:{tmp_path / 'imgs'}",
                 "--input", "loader", "--workers", "1", "--image-size", "16",
                 "--batch-sizes", "4", "--precisions", "fp32", "--optimizers", "sgd",
                 "--warmup", "1", "--steps", "3", "--repeats", "1", "--eval-samples", "8",
                 "--isolation", "none", "--out", "r.jsonl", "--no-report"])
    assert code == 0
    (rec,) = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert rec["status"] == "ok", rec["error"]
    assert rec["input"] == "loader" and rec["workers"] == 1 and rec["input_shape"] == "3x16x16"
    assert rec["model_classes"] == 3 and 0 <= rec["data_wait_share"] <= 1
    assert rec["loader_samples_per_s"] > 0


def test_loader_input_is_refused_for_language_models(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--models", "transformer", "--input", "loader", "--devices", "cpu"]) == 2
    assert "input 'loader' is for image models" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_loader_mode_reads_training_files_once(cifar_dir, tmp_path):
    """With ``held_out_only`` (what --input loader asks for) CIFAR-10 and image folders come
    without a decoded training split: the DataLoader reads those files itself."""
    full = load_dataset("cifar10", CPU, data_dir=str(cifar_dir), eval_samples=16)
    held = load_dataset("cifar10", CPU, data_dir=str(cifar_dir), eval_samples=16,
                        held_out_only=True)
    assert held.train_x.shape[0] == 0 and torch.equal(held.eval_x, full.eval_x)
    _write_folder(tmp_path / "imgs", per_class=10)  # 1 of 10 per class held out
    folder = load_dataset(f"imagefolder:{tmp_path / 'imgs'}", CPU, held_out_only=True,
                          spec=InputSpec(image_size=8))
    assert folder.train_x.shape[0] == 0 and folder.eval_x.shape[0] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (pinned host memory)")
def test_on_cuda_loader_batches_come_pinned_and_land_on_the_gpu():
    """Pinned host memory is what lets ``non_blocking=True`` copies overlap with compute; a
    pageable batch would copy synchronously and the data-wait share would be misread."""
    gpu = torch.device("cuda")
    base = load_dataset("synthetic", CPU, train_samples=64, eval_samples=16)
    data = loader_data(base, "synthetic", gpu, size=32, batch_size=8, workers=1,
                       transforms="standard", seed=0, data_dir="data", data_seed=0,
                       train_samples=None)
    try:
        raw_x, _ = next(iter(data.loader))
        assert raw_x.is_pinned()
        x, y = data.batch(torch.zeros(1))
        assert x.is_cuda and y.is_cuda and x.shape == (8, 3, 32, 32)
    finally:
        data.close()


def test_channels_last_loader_batches_arrive_nhwc():
    # --channels-last with a loader: each batch is copied to the device in NHWC, so the first
    # convolution does not convert its layout every step (the timed step's hidden copy).
    from harness.core.config import RunConfig
    from harness.core.runner import Runner

    cfg = RunConfig(model="convnet", dataset="synthetic", batch_size=8, input="loader",
                    workers=0, channels_last=True, train_samples=64, eval_samples=16)
    data = Runner(data_dir="data").dataset(cfg)
    x, _ = data.batch(torch.zeros(1))
    assert x.shape == (8, 3, 32, 32)
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    plain = Runner(data_dir="data").dataset(dataclasses.replace(cfg, channels_last=False))
    assert plain.batch(torch.zeros(1))[0].is_contiguous()
