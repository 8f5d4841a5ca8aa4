"""Host memory per rank while a sharded model is built: on the meta device and materialised
shard by shard (``harness.core.build``, what a ``--parallel fsdp`` config does), or whole on
every rank and then sharded (what it did before issue 30), over gloo ranks on the CPU.

Each rank joins the process group, returns the C heap's free memory, restarts its peak-RSS mark
(``/proc/self/clear_refs``) and then builds the model, converts and shards it as the runner does
(``core.parallel.prepare``, FSDP2, float32) and, for a meta build, materialises and initialises
its shards. The figure is the rank's peak RSS during that, above what it held before: the
largest over the ranks, beside the model's float32 parameter bytes.

    python -m benchmarks.build_memory [--model llama3.2-1b] [--ranks 1 2] [--whole-ranks 1]

It launches ``torch.distributed.run`` once per build and world size and prints one line each.
A whole build holds the whole model on every rank at once: ``--whole-ranks`` says at which world
sizes to try it (each rank needs the model's bytes, and the ranks share the host).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

from harness.core import dist
from harness.core.build import Built, build_model
from harness.core.parallel import prepare
from harness.core.precision import resolve_precision
from harness.probes.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss, trim_host_heap
from models import count_parameters, create_model

CPU = torch.device("cpu")


def build_peak(model: str, build: str, seq_len: int) -> int:
    """This rank's peak RSS above its RSS before building ``model`` sharded (bytes)."""
    kwargs = {"vocab_size": 128_256, "block_size": seq_len}
    trim_host_heap()
    before = current_rss_bytes() or 0
    if not reset_peak_rss():
        raise RuntimeError("no /proc/self/clear_refs: the peak RSS cannot be restarted here")
    if build == "meta":
        built = build_model(model, kwargs, CPU, sharded=True, seed=0)
    else:  # whole on every rank, then sharded: the build before issue 30
        torch.manual_seed(0)
        built = Built(create_model(model, **kwargs), "whole", 0)
    prepare(built.model, CPU, parallel="fsdp", activation_checkpointing="none",
            plan=resolve_precision("fp32", CPU))
    built.materialize(CPU)
    assert built.build == build
    return peak_rss_bytes() - before


def launch(model: str, build: str, ranks: int, seq_len: int) -> dict[str, object]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={ranks}", "-m", "benchmarks.build_memory", "--rank",
           "--model", model, "--build", build, "--seq-len", str(seq_len)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"build": build, "ranks": ranks, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(lines[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="llama3.2-1b")
    p.add_argument("--ranks", type=int, nargs="*", default=[1, 2])
    p.add_argument("--whole-ranks", type=int, nargs="*", default=[1])
    p.add_argument("--seq-len", type=int, default=2048)  # the rotary tables' length
    p.add_argument("--rank", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--build", default="meta", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rank:  # one rank of a launch: measure, rank 0 prints every rank's figure
        dist.init("cpu")
        peaks = dist.gather(build_peak(args.model, args.build, args.seq_len))
        if dist.rank() == 0:
            print(json.dumps({"build": args.build, "ranks": dist.world_size(), "peaks": peaks}))
        dist.shutdown()
        return
    param_bytes = count_parameters(args.model) * 4
    print(f"{args.model}: {param_bytes / 2**30:.2f} GiB of float32 parameters "
          f"({os.cpu_count()} CPUs)")
    print(f"{'build':>6} {'ranks':>5} {'peak RSS per rank (max), GiB':>29} {'x params':>9}")
    for build, sizes in (("meta", args.ranks), ("whole", args.whole_ranks)):
        for ranks in sizes:
            res = launch(args.model, build, ranks, args.seq_len)
            if "error" in res:
                print(f"{build:>6} {ranks:>5} failed: {res['error']}")
                continue
            peak = max(res["peaks"])  # type: ignore[type-var]
            print(f"{build:>6} {ranks:>5} {peak / 2**30:>29.2f} {peak / param_bytes:>9.2f}")


if __name__ == "__main__":
    main()
