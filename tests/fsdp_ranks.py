"""One rank of tests/test_parallel.py's 2-process FSDP run (started by torch.distributed.run).

Trains ``llama3-debug`` sharded with FSDP2 through ``harness.core.parallel.prepare``, each rank
on its half of one fixed global batch, and writes what the test compares with one process
training the whole batch: every step's loss on each rank, the full (gathered) gradients after
the first backward pass, the full parameters after the last step; then the losses of the same
run with selective activation checkpointing, and of float8 (torchao's emulation) and bf16
runs, all under FSDP.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/fsdp_ranks.py OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.core import dist  # noqa: E402
from harness.core.parallel import prepare  # noqa: E402
from harness.core.precision import PrecisionPlan, resolve_precision  # noqa: E402
from harness.core.step import loss_fn  # noqa: E402
from models import create_model  # noqa: E402

VOCAB, SEQ, BATCH, STEPS, LR = 2048, 32, 4, 3, 1e-3  # BATCH: the global batch, split in two
CPU = torch.device("cpu")


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1234)
    x = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)
    return x, torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)


def fresh_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("llama3-debug", vocab_size=VOCAB, block_size=SEQ)


def train(plan: PrecisionPlan, ac: str = "none", emulate: bool = False, keep: bool = False):
    model = fresh_model()
    prepared = prepare(model, CPU, parallel="fsdp", activation_checkpointing=ac, plan=plan,
                       emulate_float8=emulate)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    prepared.attach(optimizer)
    x, y = global_batch()
    half = BATCH // dist.world_size()
    rows = slice(dist.rank() * half, (dist.rank() + 1) * half)
    losses, grads = [], {}
    for step in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[rows]), y[rows])
        loss.backward()
        if keep and step == 0:
            grads = {n: p.grad.full_tensor() for n, p in model.named_parameters()}
        optimizer.step()
        losses.append(loss.item())
    params = ({n: p.detach().full_tensor() for n, p in model.named_parameters()}
              if keep else {})
    return dist.gather(losses), grads, params, prepared.fields


def main(out: str) -> None:
    dist.init("cpu")
    fp32 = resolve_precision("fp32", CPU)
    losses, grads, params, fields = train(fp32, keep=True)
    selective = train(fp32, ac="selective")[0]
    bf16 = train(resolve_precision("amp-bf16", CPU))[0]
    fp8 = PrecisionPlan("fp8", torch.bfloat16, False, float8=True)  # CPU: emulated
    float8, _, _, fp8_fields = train(fp8, emulate=True)
    if dist.rank() == 0:
        torch.save({"losses": losses, "grads": grads, "params": params, "fields": fields,
                    "selective": selective, "bf16": bf16, "fp8": float8,
                    "fp8_fields": fp8_fields, "world": dist.world_size()}, out)
    dist.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
