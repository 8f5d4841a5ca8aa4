"""Harness overhead: trainmark's runner vs a minimal hand-written PyTorch training loop.

Same configuration on both sides (by default the ConvNet, batch 128, fp32, SGD momentum 0.9,
CPU, the same synthetic tensors), interleaved A B B A so that machine drift cancels. Each side
times ``repeats`` regions of ``steps`` steps after ``warmup`` untimed steps; the figure is
median(harness throughput) / median(hand-loop throughput); 1.0 means no overhead.

    python -m benchmarks.overhead [--model convnet] [--rounds 6] [--steps 20] [--batch-size 128]

The standard workloads (issue 11's goal, ratio >= 0.97 for both):

    python -m benchmarks.overhead --model resnet50 --batch-size 8 --rounds 4 --steps 3 --warmup 2
    python -m benchmarks.overhead --model gpt2 --batch-size 1 --rounds 4 --steps 2 --warmup 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from harness.core.config import RunConfig
from harness.core.runner import Runner
from models import create_model, get_model_info


def hand_batches(data, steps: int, batch_size: int, seed: int):
    """Batches as a person would slice them from the same tensors: images by index (uint8
    pools converted to float in [0, 1], as the harness does), text as windows of the context
    length with next-token targets."""
    gen = torch.Generator().manual_seed(seed)
    if hasattr(data, "train_x"):
        x_all, y_all = data.train_x, data.train_y
        idx = torch.randint(0, x_all.shape[0], (steps, batch_size), generator=gen)
        for row in idx:
            x = x_all[row]
            yield (x.float() / 255 if x.dtype == torch.uint8 else x), y_all[row]
    else:
        tokens, T = data.train_tokens, data.block_size
        starts = torch.randint(0, tokens.shape[0] - T - 1, (steps, batch_size), generator=gen)
        window = torch.arange(T)
        for row in starts:
            at = row[:, None] + window
            yield tokens[at], tokens[at + 1]


def hand_loop(runner: Runner, cfg: RunConfig) -> float:
    """The loop a person would write; returns median items/s (samples, or tokens for a
    language model) over the repeats."""
    data = runner.dataset(cfg)  # the very tensors the harness trains on
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, **data.model_kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    batches = hand_batches(data, cfg.warmup_steps + cfg.repeats * cfg.timed_steps,
                           cfg.batch_size, cfg.seed)
    return timed_median_rate(model, opt, batches, cfg,
                             cfg.batch_size * data.items_per_sample())


def timed_median_rate(model, opt, batches, cfg: RunConfig, items_per_step: int,
                      region_seconds=lambda seconds: seconds) -> float:
    """The minimal loop: ``cfg.warmup_steps`` untimed steps, then ``cfg.repeats`` regions of
    ``cfg.timed_steps`` steps; the median items/s. ``region_seconds`` turns a region's seconds
    into the ones that count (the slowest rank's, under a process group)."""

    def step() -> None:
        x, y = next(batches)
        opt.zero_grad()
        logits = model(x)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
        opt.step()

    for _ in range(cfg.warmup_steps):
        step()
    rates = []
    for _ in range(cfg.repeats):
        t0 = time.perf_counter()
        for _ in range(cfg.timed_steps):
            step()
        rates.append(items_per_step * cfg.timed_steps
                     / region_seconds(time.perf_counter() - t0))
    return statistics.median(rates)


def measure(rounds: int = 6, steps: int = 20, batch_size: int = 128, repeats: int = 3,
            warmup: int = 5, model: str = "convnet") -> dict[str, object]:
    info = get_model_info(model)
    cfg = RunConfig(model=model, dataset=info.default_dataset, device="cpu",
                    batch_size=batch_size, precision="fp32", optimizer="sgd",
                    lr=info.lr_for("sgd", batch_size), warmup_steps=warmup, timed_steps=steps,
                    repeats=repeats, eval_samples=8 if info.unit == "tokens/s" else 64,
                    train_samples=256)
    runner = Runner(run_id="overhead")
    harness_tp: list[float] = []
    hand_tp: list[float] = []
    last: dict = {}
    for r in range(rounds):
        order = ("harness", "hand") if r % 2 == 0 else ("hand", "harness")  # A B B A ...
        for side in order:
            if side == "harness":
                rec = last = runner.run(cfg)
                assert rec["status"] == "ok", rec["error"]
                harness_tp.append(float(rec["throughput"]))
            else:
                hand_tp.append(hand_loop(runner, cfg))
    ratio = statistics.median(harness_tp) / statistics.median(hand_tp)
    return {"ratio": ratio, "harness_samples_per_s": harness_tp, "hand_samples_per_s": hand_tp,
            "config": cfg.label(), "unit": info.unit, "mfu": last.get("mfu"),
            "achieved_flops_per_s": last.get("achieved_flops_per_s")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="convnet")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args()
    res = measure(rounds=args.rounds, steps=args.steps, batch_size=args.batch_size,
                  warmup=args.warmup, model=args.model)
    unit = res["unit"]
    print(f"config: {res['config']}")
    print(f"harness {unit}:", ", ".join(f"{v:.1f}" for v in res["harness_samples_per_s"]))
    print(f"hand    {unit}:", ", ".join(f"{v:.1f}" for v in res["hand_samples_per_s"]))
    if res["mfu"] is not None:
        print(f"harness MFU (last round): {res['mfu']:.3f} "
              f"({res['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s)")
    print(f"ratio harness/hand (medians): {res['ratio']:.3f}  (goal >= 0.97)")


if __name__ == "__main__":
    main()
