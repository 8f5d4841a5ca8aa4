"""Harness overhead: trainmark's runner vs a minimal hand-written PyTorch training loop.

Same configuration on both sides (ConvNet, batch 128, fp32, SGD momentum 0.9, CPU, the same
synthetic tensors and batch indices), interleaved A B B A so that machine drift cancels.
Each side times ``repeats`` regions of ``steps`` steps after ``warmup`` untimed steps; the figure
is median(harness throughput) / median(hand-loop throughput); 1.0 means no overhead.

    python -m benchmarks.overhead [--rounds 6] [--steps 20] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from harness.core.config import RunConfig
from harness.core.runner import Runner
from models import create_model


def hand_loop(runner: Runner, cfg: RunConfig) -> float:
    """The loop a person would write; returns median samples/s over the repeats."""
    data = runner.dataset(cfg)  # the very tensors the harness trains on
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    gen = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randint(0, data.train_x.shape[0],
                        (cfg.warmup_steps + cfg.repeats * cfg.timed_steps, cfg.batch_size),
                        generator=gen)
    x_all, y_all = data.train_x, data.train_y
    i = 0
    for _ in range(cfg.warmup_steps):
        opt.zero_grad()
        F.cross_entropy(model(x_all[idx[i]]), y_all[idx[i]]).backward()
        opt.step()
        i += 1
    rates = []
    for _ in range(cfg.repeats):
        t0 = time.perf_counter()
        for _ in range(cfg.timed_steps):
            opt.zero_grad()
            F.cross_entropy(model(x_all[idx[i]]), y_all[idx[i]]).backward()
            opt.step()
            i += 1
        rates.append(cfg.batch_size * cfg.timed_steps / (time.perf_counter() - t0))
    return statistics.median(rates)


def measure(rounds: int = 6, steps: int = 20, batch_size: int = 128, repeats: int = 3,
            warmup: int = 5) -> dict[str, object]:
    cfg = RunConfig(model="convnet", dataset="synthetic", device="cpu", batch_size=batch_size,
                    precision="fp32", optimizer="sgd", lr=0.05, warmup_steps=warmup,
                    timed_steps=steps, repeats=repeats, eval_samples=64)
    runner = Runner(run_id="overhead")
    harness_tp: list[float] = []
    hand_tp: list[float] = []
    for r in range(rounds):
        order = ("harness", "hand") if r % 2 == 0 else ("hand", "harness")  # A B B A ...
        for side in order:
            if side == "harness":
                rec = runner.run(cfg)
                assert rec["status"] == "ok", rec["error"]
                harness_tp.append(float(rec["throughput"]))
            else:
                hand_tp.append(hand_loop(runner, cfg))
    ratio = statistics.median(harness_tp) / statistics.median(hand_tp)
    return {"ratio": ratio, "harness_samples_per_s": harness_tp, "hand_samples_per_s": hand_tp,
            "config": cfg.label()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args()
    res = measure(rounds=args.rounds, steps=args.steps, batch_size=args.batch_size)
    print(f"config: {res['config']}")
    print("harness samples/s:", ", ".join(f"{v:.0f}" for v in res["harness_samples_per_s"]))
    print("hand    samples/s:", ", ".join(f"{v:.0f}" for v in res["hand_samples_per_s"]))
    print(f"ratio harness/hand (medians): {res['ratio']:.3f}  (goal >= 0.97)")


if __name__ == "__main__":
    main()
