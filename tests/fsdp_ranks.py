"""One rank of tests/test_parallel.py's 2-process FSDP run (started by torch.distributed.run).

Trains ``llama3-debug`` sharded with FSDP2 through ``harness.core.parallel.prepare``, each rank
on its half of one fixed global batch, and writes what the test compares with one process
training the whole batch: every step's loss on each rank, the full (gathered) gradients after
the first backward pass, the full parameters after the last step; then the losses of the same
run with selective activation checkpointing, and of float8 (torchao's emulation) and bf16
runs, all under FSDP. And whether the model built on the meta device, sharded and then
materialised rank by rank (``harness.core.build``) holds the parameters, rotary tables and first
loss of the model built whole and then sharded, under the same seed (plain, with activation
checkpointing, float8 with full checkpointing, and a tied output head).

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/fsdp_ranks.py OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.core import dist  # noqa: E402
from harness.core.build import Built, build_model  # noqa: E402
from harness.core.parallel import prepare  # noqa: E402
from harness.core.precision import PrecisionPlan, resolve_precision  # noqa: E402
from harness.core.step import loss_fn  # noqa: E402
from models import create_model  # noqa: E402
from models.llama import Llama, LlamaConfig  # noqa: E402

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


TIED = LlamaConfig(vocab_size=VOCAB, block_size=SEQ, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                   ffn_hidden=192, tie_embeddings=True)


def built(meta: bool, tied: bool, seed: int) -> Built:
    """llama3-debug (or a tied-head twin) built on meta for sharding, or whole under ``seed``."""
    if not tied:
        if meta:
            return build_model("llama3-debug", {"vocab_size": VOCAB, "block_size": SEQ}, CPU,
                               sharded=True, seed=seed)
        torch.manual_seed(seed)
        return Built(create_model("llama3-debug", vocab_size=VOCAB, block_size=SEQ), "whole", seed)
    if meta:
        with torch.device("meta"):
            return Built(Llama(TIED), "meta", seed)
    torch.manual_seed(seed)
    return Built(Llama(TIED), "whole", seed)


def meta_against_whole(seed: int = 5) -> dict[str, dict[str, object]]:
    """Per case: how each side was built, whether every full parameter and the rotary tables
    are equal, and each side's loss on the first rows of the global batch."""
    fp32 = resolve_precision("fp32", CPU)
    fp8 = PrecisionPlan("fp8", torch.bfloat16, False, float8=True)
    cases = {"plain": (fp32, "none", False), "selective": (fp32, "selective", False),
             "fp8-full": (fp8, "full", False), "tied": (fp32, "none", True)}
    x, y = global_batch()
    out = {}
    for case, (plan, ac, tied) in cases.items():
        sides = {}
        for meta in (False, True):
            b = built(meta, tied, seed)
            prepare(b.model, CPU, parallel="fsdp", activation_checkpointing=ac, plan=plan,
                    emulate_float8=plan.float8)
            b.materialize(CPU)
            full = {n: p.detach().full_tensor() for n, p in b.model.named_parameters()}
            with torch.no_grad():
                loss = loss_fn(b.model(x[:1]), y[:1]).item()
            tied_after = b.model.output.weight is b.model.tok_embeddings.weight
            sides[meta] = (b.build, full, b.model.rope_cos.clone(), loss, tied_after)
        (wb, wp, wr, wl, _), (mb, mp, mr, ml, mt) = sides[False], sides[True]
        out[case] = {"builds": (wb, mb), "names": sorted(mp) == sorted(wp),
                     "params_equal": all(torch.equal(wp[n], mp[n]) for n in wp),
                     "rope_equal": torch.equal(wr, mr), "losses": (wl, ml),
                     "tied": mt}  # the head still shares the embedding's parameter
    return out


def main(out: str) -> None:
    dist.init("cpu")
    fp32 = resolve_precision("fp32", CPU)
    losses, grads, params, fields = train(fp32, keep=True)
    selective = train(fp32, ac="selective")[0]
    # FSDP's mixed-precision mechanics are under test, not bf16's speed: emulated is fine
    bf16 = train(resolve_precision("amp-bf16", CPU, allow_emulated=True))[0]
    fp8 = PrecisionPlan("fp8", torch.bfloat16, False, float8=True)  # CPU: emulated
    float8, _, _, fp8_fields = train(fp8, emulate=True)
    meta = meta_against_whole()
    if dist.rank() == 0:
        torch.save({"losses": losses, "grads": grads, "params": params, "fields": fields,
                    "selective": selective, "bf16": bf16, "fp8": float8,
                    "fp8_fields": fp8_fields, "world": dist.world_size(), "meta": meta}, out)
    dist.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
