"""``trainmark reproduce article``: the article's ConvNet-on-CIFAR-10 experiment, as specified.

The recipe (docs/architecture.md, "The article's experiment"): the ConvNet, CIFAR-10 with
``ToTensor()`` only, batch 4, shuffled training, SGD lr 0.001 momentum 0.9, 10 epochs, printing
per epoch the mean test cross-entropy and test accuracy as ``Epoch N, Loss: x.xxxx, Accuracy:
yy.yy%``. Each epoch also becomes a record (with its training wall time and throughput) and a
Markdown report compares the run with the recipe and lists the corrections made to the
article's code.

The training loop is the epoch loop the article describes (a fresh shuffle each epoch, every
image once, the last partial batch kept), not the benchmark loop: that is the experiment.
Data still lives in device tensors and batches are index slices, as everywhere in trainmark.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.core.data import load_dataset
from harness.core.determinism import determinism
from harness.core.devices import synchronize
from harness.core.precision import resolve_precision
from harness.core.step import evaluate
from harness.errors import UserError
from harness.probes import provenance
from harness.schema import SCHEMA_VERSION, new_run_id, utc_timestamp
from harness.store.jsonl import ResultsWriter
from models import create_model
from models.convnet import CORRECTIONS

RECIPE = {
    "model": "convnet",
    "dataset": "cifar10",
    "transform": "ToTensor() only (pixels scaled to [0, 1], no normalisation or augmentation)",
    "batch_size": 4,
    "shuffle": "yes, a new permutation every epoch",
    "optimizer": "SGD, lr 0.001, momentum 0.9",
    "loss": "cross-entropy (F.cross_entropy)",
    "epochs": 10,
    "printed per epoch": "mean test cross-entropy and test accuracy",
}
BATCH_SIZE, LR, MOMENTUM = 4, 0.001, 0.9


def epoch_line(epoch: int, loss: float, accuracy: float) -> str:
    """The article's per-epoch line."""
    return f"Epoch {epoch}, Loss: {loss:.4f}, Accuracy: {accuracy * 100:.2f}%"


def run_article(
    *, data_dir: str, download: bool, epochs: int, device: str, seed: int,
    dataset: str = "cifar10", train_samples: int | None = None, out: Path,
    deterministic: bool = False, echo=print,
) -> list[dict[str, object]]:
    """Train the recipe for ``epochs`` epochs; append one record per epoch to ``out``."""
    dev = torch.device(device)
    run_id = new_run_id()
    with determinism(deterministic, seed):
        test_size = 10_000
        # The synthetic stand-in is generated at CIFAR-10's size: 50,000 train, 10,000 test.
        n_train = train_samples or (50_000 if dataset != "cifar10" else None)
        data = load_dataset(dataset, dev, data_dir=data_dir, download=download, data_seed=0,
                            train_samples=n_train, eval_samples=test_size)
        model = create_model("convnet", **data.model_kwargs).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        plan = resolve_precision("fp32", dev)
        gen = torch.Generator().manual_seed(seed)
        n = data.train_x.shape[0]
        writer = ResultsWriter(out)
        records = []
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(n, generator=gen).to(dev)  # shuffled, without replacement
            loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
            synchronize(dev)
            t0 = time.perf_counter()
            for i in range(0, n, BATCH_SIZE):
                idx = perm[i : i + BATCH_SIZE]
                x, y = data.train_x[idx], data.train_y[idx]
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                loss_sum += loss.detach() * idx.numel()  # no host sync inside the epoch
            synchronize(dev)
            seconds = time.perf_counter() - t0
            train_loss = float(loss_sum) / n
            test_loss, test_acc = evaluate(model, data, plan, dev, test_size)  # untimed
            if test_loss is None or test_loss != test_loss or train_loss != train_loss:
                raise UserError(f"training diverged in epoch {epoch} (non-finite loss)")
            echo(epoch_line(epoch, test_loss, test_acc))
            rec = {
                "schema_version": SCHEMA_VERSION, "run_id": run_id,
                "record_id": f"{run_id}-e{epoch}", "timestamp": utc_timestamp(),
                "experiment": "article", "model": "convnet", "task": "image-classification",
                "dataset": dataset, "device": device, "batch_size": BATCH_SIZE,
                "precision": "fp32", "optimizer": "sgd", "lr": LR, "seed": seed,
                "deterministic": deterministic, "epoch": epoch, "epochs": epochs,
                "train_samples": n, "eval_samples": int(data.eval_x.shape[0]),
                "status": "ok", "error": None,
                "train_loss": train_loss, "eval_loss": test_loss, "eval_accuracy": test_acc,
                "wall_time_s": seconds, "throughput": n / seconds,
                "throughput_unit": "samples/s",
                **provenance.collect(device),
            }
            writer.write(rec)
            records.append(rec)
    return records


def write_report(records: list[dict[str, object]], path: Path, dataset: str) -> Path:
    """Markdown: the recipe vs this run, per-epoch results, the code corrections, provenance."""
    first = records[0]
    lines = ["# Reproduction of the article's ConvNet experiment", ""]
    if dataset != "cifar10":
        lines += [f"> Data: `{dataset}` stand-in, not CIFAR-10: accuracies are not comparable "
                  "with the article's; timings are (same image size and count).", ""]
    ran = {
        "model": "convnet (corrected, see below)",
        "dataset": f"{dataset} ({first['train_samples']} train / {first['eval_samples']} test)",
        "transform": "ToTensor() equivalent (uint8 / 255, CHW)",
        "batch_size": str(BATCH_SIZE),
        "shuffle": "yes, torch.randperm per epoch, seed " + str(first["seed"]),
        "optimizer": f"SGD, lr {LR}, momentum {MOMENTUM}",
        "loss": "F.cross_entropy",
        "epochs": str(first["epochs"]),
        "printed per epoch": "mean test cross-entropy and test accuracy",
    }
    lines += ["## Recipe", "", "| | article | this run |", "|---|---|---|"]
    lines += [f"| {k} | {v} | {ran[k]} |" for k, v in RECIPE.items()]
    lines += ["", "## Output", "", "```"]
    lines += [epoch_line(int(r["epoch"]), float(r["eval_loss"]), float(r["eval_accuracy"]))
              for r in records]
    lines += ["```", "", "| epoch | train loss | test loss | test accuracy | epoch time (s) | "
              "images/s |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['epoch']} | {r['train_loss']:.4f} | {r['eval_loss']:.4f} | "
              f"{100 * r['eval_accuracy']:.2f}% | {r['wall_time_s']:.1f} | {r['throughput']:.0f} |"
              for r in records]
    lines += ["", "## Corrections to the article's code", ""]
    lines += [f"{i}. {what} **Fix:** {fix}" for i, (what, fix) in enumerate(CORRECTIONS, 1)]
    lines += ["", "## Provenance", ""]
    for key in ("device", "device_name", "cpu_model", "torch_version", "torchvision_version",
                "cuda_version", "num_threads", "git_commit", "host", "timestamp"):
        lines.append(f"- {key}: `{first.get(key)}`")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
