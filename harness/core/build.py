"""Building the model a config trains: whole on its device, or, for a sharded config, on the
meta device and materialised shard by shard, as torchtitan does.

A model built whole under FSDP is whole on every rank before ``fully_shard`` splits it: in
float32, 4 bytes per parameter on each rank (282 GB for Llama 3.1 70B), so the models that make
people shard could never start. Built sharded instead:

1. the model is built on the ``meta`` device: shapes only, no memory, no initialisation;
2. ``core.parallel.prepare`` converts and wraps it as it would the whole model (float8, then
   activation checkpointing, then ``fully_shard`` per block and the root), still on meta;
3. ``materialize``: ``to_empty(device=...)`` gives each rank storage for its own shards only,
   and the model's own ``init_weights(seed=...)`` fills them (and recomputes its buffers).

A model can be built so when its ``init_weights`` takes a ``seed`` and fills whatever the
process holds, a whole tensor or a rank's ``DTensor`` shard, with the values a whole build
would have under that seed (``models.llama``: blocks of rows, each from its own seeded
generator). Other models, and every unsharded config, are built whole on their device
(``build`` says which in the record). tests/test_meta_build.py checks, over two gloo ranks,
that a meta build's parameters equal a whole build's after sharding.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn as nn

from models import create_model

BUILDS = ("whole", "meta")  # the record's ``build``


def builds_on_meta(model: nn.Module) -> bool:
    """Whether ``model`` initialises itself from a seed in place (``init_weights(seed=...)``),
    so that it can be built on the meta device and materialised after sharding."""
    init = getattr(model, "init_weights", None)
    if not callable(init):
        return False
    try:
        return "seed" in inspect.signature(init).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


@dataclass
class Built:
    """A model as built for a config, and how (``build``: one of ``BUILDS``)."""

    model: nn.Module
    build: str
    seed: int

    def materialize(self, device: torch.device) -> None:
        """After ``core.parallel.prepare``: for a meta build, storage for what this rank holds
        on ``device`` and the model's own initialisation; nothing for a whole build."""
        if self.build != "meta":
            return
        self.model.to_empty(device=device)
        with torch.no_grad():
            self.model.init_weights(seed=self.seed)  # type: ignore[operator]


def build_model(name: str, kwargs: dict[str, object], device: torch.device, *,
                sharded: bool, seed: int) -> Built:
    """Model ``name`` (builder arguments ``kwargs``) for a config on ``device`` seeded by
    ``seed``: on the meta device when ``sharded`` and the model supports it (module
    docstring), else whole on ``device`` (a sharded config's whole model is built where it
    trains, with no host copy)."""
    if sharded:
        with torch.device("meta"):
            model = create_model(name, **kwargs)
        if builds_on_meta(model):
            return Built(model, "meta", seed)
        del model
    torch.manual_seed(seed)  # the same initial weights on every rank (DDP broadcasts anyway)
    if sharded:
        with torch.device(device):
            return Built(create_model(name, **kwargs), "whole", seed)
    return Built(create_model(name, **kwargs).to(device), "whole", seed)
