"""The input pipeline's cost: the ConvNet trained from an image folder of JPEG files through a
DataLoader (``--input loader``) with 0, 1 and 2 worker processes, beside the same images
resident (decoded once, index slices: no pipeline on the clock).

The folder is written first: ``--images`` JPEGs (quality 90) of the learnable synthetic images
at ``--size`` pixels in 10 classes, in torchvision's ImageFolder layout. Every config runs in
its own worker process (``trainmark run``'s default); the table gives throughput, the share of
timed step time spent waiting for the next batch, and the loader's own rate (no model).

    python -m benchmarks.loader [--images 2000] [--size 32] [--batch-size 64] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from PIL import Image

from harness.cli import main as trainmark
from harness.core.synthetic import synthetic_images


def write_folder(root: Path, images: int, size: int, classes: int = 10) -> None:
    x, y = synthetic_images(images, seed=1, template_seed=0, num_classes=classes, size=size)
    pixels = (x * 255).round().byte().permute(0, 2, 3, 1).numpy()  # (N, H, W, C) uint8
    for i, (img, label) in enumerate(zip(pixels, y.tolist(), strict=True)):
        folder = root / f"class{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:05d}.jpg", quality=90)


def run(out: Path, images: int, size: int, batch_size: int, steps: int) -> list[dict]:
    folder = out / "images"
    write_folder(folder, images, size)
    results = out / "loader.jsonl"
    common = ["--models", "convnet", "--dataset", f"imagefolder:{folder}", "--image-size",
              str(size), "--batch-sizes", str(batch_size), "--precisions", "fp32",
              "--optimizers", "sgd", "--warmup", "5", "--steps", str(steps), "--repeats", "3",
              "--eval-samples", "200", "--out", str(results), "--no-report"]
    assert trainmark(["run", *common, "--input", "resident"]) == 0
    assert trainmark(["run", *common, "--input", "loader", "--workers", "0,1,2", "--resume"]) == 0
    return [json.loads(line) for line in results.read_text().splitlines()]


def table(records: list[dict]) -> str:
    lines = [f"{'input':9} {'workers':>7} {'samples/s':>10} {'data wait':>9} "
             f"{'loader alone':>13} {'eval acc':>8}"]
    for r in records:
        wait, alone = r.get("data_wait_share"), r.get("loader_samples_per_s")
        lines.append(
            f"{r['input']:9} {r['workers']:>7} {r['throughput']:>10,.0f} "
            f"{'' if wait is None else f'{wait:.1%}':>9} "
            f"{'' if alone is None else f'{alone:,.0f}/s':>13} {r['eval_accuracy']:>8.3f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", help="folder for the images and results (default: a temp folder)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        records = run(out, args.images, args.size, args.batch_size, args.steps)
    r = records[0]
    print(f"convnet, image folder of {args.images} JPEGs at {args.size} px, batch "
          f"{args.batch_size}, fp32 SGD, {r['cpu_model']}, {r['num_threads']} threads")
    print(table(records))


if __name__ == "__main__":
    main()
