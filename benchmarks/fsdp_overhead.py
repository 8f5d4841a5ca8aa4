"""Sharded-training overhead: trainmark's FSDP2 path vs a hand-written FSDP2 loop, 2 gloo ranks.

Both sides run in the same two processes under ``torch.distributed.run`` (so they share the
process group, the threads and the data), interleaved A B B A round by round so that machine
drift cancels: the harness measures its config (``Runner.run`` of ``llama3-debug`` with
``--parallel fsdp --nproc 2``), and the hand loop is what a person would write with the same
model -- ``fully_shard`` on each block and the root, Adam, ``cross_entropy`` -- timed the same
way (``warmup`` untimed steps, ``repeats`` regions of ``steps`` steps, a region's time the
slowest rank's). The figure is median(harness tokens/s) / median(hand tokens/s); 1.0 means no
overhead. Issue 24's goal: >= 0.97.

    python -m benchmarks.fsdp_overhead [--rounds 6] [--steps 20] [--batch-size 8] [--seq-len 64]

It launches its own two ranks (torch.distributed.run) and prints the figures from rank 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

import torch

from benchmarks.overhead import timed_median_rate
from harness.core import dist
from harness.core.config import RunConfig
from harness.core.runner import Runner
from models import create_model, transformer_blocks

MODEL, RANKS = "llama3-debug", 2


def hand_loop(runner: Runner, cfg: RunConfig) -> float:
    """FSDP2 as its tutorial writes it; returns global tokens/s (median over the repeats)."""
    from torch.distributed.fsdp import fully_shard

    data = runner.dataset(cfg)  # the very tokens the harness trains on
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, **data.model_kwargs)
    for block in transformer_blocks(model):
        fully_shard(block)
    fully_shard(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed + 1_000_003 * dist.rank())
    tokens, T = data.train_tokens, data.block_size
    total = cfg.warmup_steps + cfg.repeats * cfg.timed_steps
    starts = torch.randint(0, tokens.shape[0] - T - 1, (total, cfg.batch_size), generator=gen)
    window = torch.arange(T)
    batches = iter([(tokens[s[:, None] + window], tokens[s[:, None] + window + 1])
                    for s in starts])
    return timed_median_rate(model, opt, batches, cfg, RANKS * cfg.batch_size * T,
                             region_seconds=dist.max_over_ranks)


def measure(rounds: int, steps: int, batch_size: int, seq_len: int, warmup: int,
            repeats: int) -> dict[str, object]:
    cfg = RunConfig(model=MODEL, dataset="synthetic-tokens", device="cpu",
                    batch_size=batch_size, precision="fp32", optimizer="adam", lr=3e-4,
                    warmup_steps=warmup, timed_steps=steps, repeats=repeats, eval_samples=8,
                    seq_len=seq_len, nproc=RANKS, parallel="fsdp")
    runner = Runner(run_id="fsdp-overhead")
    harness_tp: list[float] = []
    hand_tp: list[float] = []
    for r in range(rounds):
        for side in (("harness", "hand") if r % 2 == 0 else ("hand", "harness")):
            if side == "harness":
                rec = runner.run(cfg)
                assert rec["status"] == "ok", rec["error"]
                harness_tp.append(float(rec["throughput"]))
            else:
                hand_tp.append(hand_loop(runner, cfg))
    return {"ratio": statistics.median(harness_tp) / statistics.median(hand_tp),
            "harness": harness_tp, "hand": hand_tp, "config": cfg.label()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    args = p.parse_args()
    if "RANK" not in os.environ:  # launch the two ranks, each running this same module
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={RANKS}", "-m", "benchmarks.fsdp_overhead", *sys.argv[1:]]
        sys.exit(subprocess.run(cmd).returncode)
    dist.init("cpu")
    res = measure(args.rounds, args.steps, args.batch_size, args.seq_len, args.warmup,
                  args.repeats)
    if dist.rank() == 0:
        print(f"config: {res['config']}")
        print("harness tokens/s:", ", ".join(f"{v:,.0f}" for v in res["harness"]))
        print("hand    tokens/s:", ", ".join(f"{v:,.0f}" for v in res["hand"]))
        print(f"ratio harness/hand (medians): {res['ratio']:.3f}  (goal >= 0.97)")
    dist.shutdown()


if __name__ == "__main__":
    main()
