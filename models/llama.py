"""The Llama 3 family (Meta, "The Llama 3 Herd of Models", 2024), randomly initialised.

A decoder-only transformer: token embedding, pre-norm blocks of grouped-query attention with
rotary position embeddings and a SwiGLU feed-forward, RMSNorm, an output head (tied to the
embedding in the Llama 3.2 1B and 3B models). Attention goes through
``F.scaled_dot_product_attention`` (causal; key/value heads shared by groups of query heads).

Presets at the published shapes (Meta's model cards; Hugging Face ``config.json``):

| preset | layers | width | heads / kv | SwiGLU hidden | tied | RoPE scale | parameters |
|---|---|---|---|---|---|---|---|
| ``llama3-debug`` | 4 | 64 | 4 / 2 | 192 | no | 8 | 459,328 (2,048-token vocabulary) |
| ``llama3.2-1b`` | 16 | 2,048 | 32 / 8 | 8,192 | yes | 32 | 1,235,814,400 |
| ``llama3.2-3b`` | 28 | 3,072 | 24 / 8 | 8,192 | yes | 32 | 3,212,749,824 |
| ``llama3.1-8b`` | 32 | 4,096 | 32 / 8 | 14,336 | no | 8 | 8,030,261,248 |
| ``llama3.1-70b`` | 80 | 8,192 | 64 / 8 | 28,672 | no | 8 | 70,553,706,496 |
| ``llama3.1-405b`` | 126 | 16,384 | 128 / 8 | 53,248 | no | 8 | 405,853,388,800 |

All take RoPE base 500,000, RMSNorm eps 1e-5 and Llama 3.1's frequency scaling (long
wavelengths divided by the factor, short ones kept, a smooth ramp between; original context
8,192). The published models read the 128,256-token vocabulary; ``llama3-debug`` (for CPU
tests, in the spirit of torchtitan's debug model) reads 2,048. The context is the data's
(``--seq-len``; default 8,192, torchtitan's training length for Llama 3.1 8B).

Rotary embeddings rotate the two halves of each head (Hugging Face's ``rotate_half``
convention; Meta's interleaved pairs are the same model with q/k rows permuted), so weights copy
one to one from ``transformers``' ``LlamaForCausalLM`` (tests/test_llama.py checks the logits).
Initialisation (``Llama.init_weights``): normal, std 0.02 for the linears (residual outputs
``wo``, ``w2``: 0.02 / sqrt(2 x layers), GPT-2's rule), 1.0 for an untied embedding, width^-0.5
for the output head (and a tied embedding), ones for the norms. Each weight is drawn in blocks
of rows with a generator per block, seeded from the seed and the weight's name, so a model built
on the meta device, sharded and then initialised rank by rank (``harness.core.build``) holds
exactly the values of one built whole under the same seed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models._registry import LANGUAGE_MODELING, register_model

try:  # a torch built without distributed support has no DTensor (nor any shard to fill)
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover
    DTensor = None  # type: ignore[assignment,misc]

LLAMA3_VOCAB = 128_256  # the Llama 3 tokenizer (tiktoken-based): 128,000 + 256 special
DEBUG_VOCAB = 2_048  # torchtitan's debug model's vocabulary
TRAIN_CONTEXT = 8_192  # Llama 3 pre-training's (and torchtitan's 8B recipe's) sequence length


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int = LLAMA3_VOCAB
    block_size: int = TRAIN_CONTEXT  # positions the rotary table covers (the context)
    dim: int = 4096  # model width
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 8  # key/value heads; each serves n_heads / n_kv_heads query heads
    ffn_hidden: int = 14336  # SwiGLU hidden width
    norm_eps: float = 1e-5
    rope_theta: float = 500_000.0
    rope_factor: float | None = 8.0  # Llama 3.1 scaling; None: plain RoPE
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_context: int = 8192
    tie_embeddings: bool = False


def rope_frequencies(cfg: LlamaConfig) -> torch.Tensor:
    """Inverse frequencies (head_dim / 2,) of the rotary embedding, with Llama 3.1's scaling:
    wavelengths longer than original_context / low_freq_factor are divided by the factor,
    shorter than original_context / high_freq_factor are kept, and in between interpolated."""
    head_dim = cfg.dim // cfg.n_heads
    inv = 1.0 / cfg.rope_theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    if cfg.rope_factor is None:
        return inv
    wavelength = 2 * math.pi / inv
    low_wave = cfg.rope_original_context / cfg.rope_low_freq_factor
    high_wave = cfg.rope_original_context / cfg.rope_high_freq_factor
    smooth = ((cfg.rope_original_context / wavelength - cfg.rope_low_freq_factor)
              / (cfg.rope_high_freq_factor - cfg.rope_low_freq_factor))
    ramp = (1 - smooth) * inv / cfg.rope_factor + smooth * inv
    scaled = torch.where(wavelength > low_wave, inv / cfg.rope_factor, ramp)
    return torch.where(wavelength < high_wave, inv, scaled)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


INIT_ROWS = 256  # rows per independently seeded block of a weight's initial values


def block_seed(seed: int, key: str, block: int) -> int:
    """A generator seed for block ``block`` of the weight named ``key``: a stable hash (not
    Python's salted ``hash``), the same in every process."""
    digest = hashlib.blake2b(f"{seed}/{key}/{block}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def local_rows(weight: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The part of ``weight`` this process holds and the global index of its first row: the
    whole tensor at row 0, or a ``DTensor``'s local shard, with FSDP2's placement (rows split
    in ``torch.chunk``'s chunks of ceil(rows / world) over a one-dimensional mesh)."""
    if DTensor is None or not isinstance(weight, DTensor):
        return weight, 0
    local, rows, start = weight.to_local(), weight.shape[0], 0
    for placement in weight.placements:
        if placement.is_replicate():
            continue
        if not placement.is_shard(dim=0) or weight.device_mesh.ndim != 1:
            raise NotImplementedError(f"initialising a weight placed {weight.placements} on a "
                                      f"{weight.device_mesh.ndim}-d mesh (rows only)")
        chunk = -(-rows // weight.device_mesh.size())
        start = min(weight.device_mesh.get_local_rank() * chunk, rows)
        if local.shape[0] != min(chunk, rows - start):
            raise NotImplementedError(f"a shard of {local.shape[0]} rows at row {start} of "
                                      f"{rows} is not a torch.chunk shard")
    return local, start


def init_normal(weight: torch.Tensor, std: float, seed: int, key: str) -> None:
    """Fill ``weight`` (whole, or this process's shard of it) from N(0, std^2), block by block
    of ``INIT_ROWS`` rows: each block is drawn whole on the weight's device from its own
    generator (``block_seed``) and the rows this process holds are kept, so the values do not
    depend on how the weight is split. Memory: one block beyond the weight."""
    if weight.is_meta:
        return
    local, start = local_rows(weight)
    rows, held = weight.shape[0], local.shape[0]
    for block in range(start // INIT_ROWS, -(-(start + held) // INIT_ROWS)):
        lo, hi = block * INIT_ROWS, min(rows, (block + 1) * INIT_ROWS)
        gen = torch.Generator(device=local.device).manual_seed(block_seed(seed, key, block))
        drawn = torch.empty((hi - lo, *weight.shape[1:]), device=local.device,
                            dtype=local.dtype).normal_(0.0, std, generator=gen)
        a, z = max(lo, start), min(hi, start + held)
        local[a - start:z - start].copy_(drawn[a - lo:z - lo])


def fill_ones(weight: torch.Tensor) -> None:
    if not weight.is_meta:
        local_rows(weight)[0].fill_(1.0)


def unwrapped(module: nn.Module, kind: type[nn.Module]) -> nn.Module:
    """``module``, or the ``kind`` inside the wrappers around it (activation checkpointing
    wraps a block in a module holding only it): one child each, no parameters of their own."""
    while not isinstance(module, kind):
        children = list(module.children())
        if len(children) != 1 or any(True for _ in module.parameters(recurse=False)):
            raise TypeError(f"{type(module).__name__} is no {kind.__name__} or wrapper of one")
        module = children[0]
    return module


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 whatever the input's dtype (as Meta's code)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        assert cfg.dim % cfg.n_heads == 0 and cfg.n_heads % cfg.n_kv_heads == 0
        self.n_heads, self.n_kv_heads = cfg.n_heads, cfg.n_kv_heads
        self.head_dim = cfg.dim // cfg.n_heads
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * self.head_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv..)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)  # (T, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        gqa = {"enable_gqa": True} if self.n_kv_heads != self.n_heads else {}
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa)  # (B, nh, T, hd)
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, dim)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)  # gate
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)  # up
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.dim, bias=False)  # down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin)
        return h + self.feed_forward(self.ffn_norm(h))


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        # cos and sin of one angle per rotated pair, (T, hd); filled by init_weights
        self.register_buffer("rope_cos", torch.empty(cfg.block_size, cfg.dim // cfg.n_heads),
                             persistent=False)
        self.register_buffer("rope_sin", torch.empty_like(self.rope_cos), persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """Initialise every parameter and recompute the rotary tables, in place, wherever the
        model lives: built whole, or sharded (FSDP2's ``DTensor`` shards, each rank filling
        its own rows after ``to_empty``, as torchtitan's ``init_weights``). Every weight is
        drawn in blocks of ``INIT_ROWS`` rows, each block from its own generator seeded by
        ``seed`` (default ``torch.initial_seed()``), the weight's name and the block's index
        (``init_normal``): a shard's values are the whole model's rows, whatever the world
        size. A model on the meta device is left alone (shapes only)."""
        if self.rope_cos.is_meta:
            return
        seed = torch.initial_seed() if seed is None else seed
        angles = torch.outer(torch.arange(self.cfg.block_size, dtype=torch.float32),
                             rope_frequencies(self.cfg))  # (T, hd / 2)
        angles = torch.cat((angles, angles), dim=-1).to(self.rope_cos.device)  # (T, hd)
        self.rope_cos.copy_(angles.cos())
        self.rope_sin.copy_(angles.sin())
        residual_std = 0.02 / math.sqrt(2 * self.cfg.n_layers)
        for i, layer in enumerate(self.layers):
            block = unwrapped(layer, Block)
            for name in ("wq", "wk", "wv", "wo"):
                std = residual_std if name == "wo" else 0.02
                init_normal(getattr(block.attention, name).weight, std, seed,
                            f"layers.{i}.attention.{name}.weight")
            for name in ("w1", "w3", "w2"):
                std = residual_std if name == "w2" else 0.02
                init_normal(getattr(block.feed_forward, name).weight, std, seed,
                            f"layers.{i}.feed_forward.{name}.weight")
            fill_ones(block.attention_norm.weight)
            fill_ones(block.ffn_norm.weight)
        fill_ones(self.norm.weight)
        if not self.cfg.tie_embeddings:  # tied: the output head's draw is the embedding's
            init_normal(self.tok_embeddings.weight, 1.0, seed, "tok_embeddings.weight")
        init_normal(self.output.weight, self.cfg.dim ** -0.5, seed, "output.weight")

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx`` (B, T) token ids -> logits (B, T, vocab_size)."""
        T = idx.shape[1]
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.cfg.block_size}")
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]  # (T, hd)
        x = self.tok_embeddings(idx)  # (B, T, dim)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.output(self.norm(x))  # (B, T, vocab)


# preset -> (shape, vocabulary, parameters at that vocabulary). Parameters are also checked
# against the published counts independently (tests/test_llama.py).
PRESETS: dict[str, tuple[dict[str, object], int, int]] = {
    "llama3-debug": (dict(dim=64, n_layers=4, n_heads=4, n_kv_heads=2, ffn_hidden=192),
                     DEBUG_VOCAB, 459_328),
    "llama3.2-1b": (dict(dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn_hidden=8192,
                         rope_factor=32.0, tie_embeddings=True), LLAMA3_VOCAB, 1_235_814_400),
    "llama3.2-3b": (dict(dim=3072, n_layers=28, n_heads=24, n_kv_heads=8, ffn_hidden=8192,
                         rope_factor=32.0, tie_embeddings=True), LLAMA3_VOCAB, 3_212_749_824),
    "llama3.1-8b": (dict(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_hidden=14336),
                    LLAMA3_VOCAB, 8_030_261_248),
    "llama3.1-70b": (dict(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, ffn_hidden=28672),
                     LLAMA3_VOCAB, 70_553_706_496),
    "llama3.1-405b": (dict(dim=16384, n_layers=126, n_heads=128, n_kv_heads=8,
                           ffn_hidden=53248), LLAMA3_VOCAB, 405_853_388_800),
}


def _register(preset: str) -> None:
    shape, vocab, params = PRESETS[preset]
    context = 64 if preset == "llama3-debug" else TRAIN_CONTEXT
    tied = " (tied output head)" if shape.get("tie_embeddings") else ""

    def build(vocab_size: int = vocab, block_size: int = context) -> nn.Module:
        return Llama(LlamaConfig(vocab_size=vocab_size, block_size=block_size, **shape))

    build.__doc__ = (f"Llama 3 family, {preset}: {shape['n_layers']} layers, width "
                     f"{shape['dim']}, {shape['n_heads']}/{shape['n_kv_heads']} heads{tied}")
    register_model(
        name=preset, task=LANGUAGE_MODELING, default_dataset="synthetic-tokens", family="llama3",
        # Adam 3e-4: torchtitan's Llama 3 8B recipe (AdamW 3e-4); Meta's paper trained 8B at
        # 3e-4 too. SGD (momentum 0.9) and Adagrad have no published Llama recipe: GPT-2's
        # rates here (models/transformer.py), checked by hand to lower llama3-debug's loss.
        default_lr={"sgd": 0.03, "adam": 3e-4, "adagrad": 1e-3},
        input_shape=(context,), vocab_size=vocab, num_params=params)(build)


for _preset in PRESETS:
    _register(_preset)
