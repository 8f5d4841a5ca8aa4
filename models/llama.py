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

All take RoPE base 500,000, RMSNorm eps 1e-5 and Llama 3.1's frequency scaling (long
wavelengths divided by the factor, short ones kept, a smooth ramp between; original context
8,192). The published models read the 128,256-token vocabulary; ``llama3-debug`` (for CPU
tests, in the spirit of torchtitan's debug model) reads 2,048. The context is the data's
(``--seq-len``; default 8,192, torchtitan's training length for Llama 3.1 8B).

Rotary embeddings rotate the two halves of each head (Hugging Face's ``rotate_half``
convention; Meta's interleaved pairs are the same model with q/k rows permuted), so weights copy
one to one from ``transformers``' ``LlamaForCausalLM`` (tests/test_llama.py checks the logits).
Initialisation: normal, std 0.02 for the linears (residual outputs ``wo``, ``w2``: 0.02 /
sqrt(2 x layers), GPT-2's rule), 1.0 for an untied embedding, width^-0.5 for the output head
(and a tied embedding), ones for the norms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models._registry import LANGUAGE_MODELING, register_model

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
        angles = torch.outer(torch.arange(cfg.block_size, dtype=torch.float32),
                             rope_frequencies(cfg))  # (T, hd / 2)
        angles = torch.cat((angles, angles), dim=-1)  # (T, hd): one angle per rotated pair
        self.register_buffer("rope_cos", angles.cos(), persistent=False)
        self.register_buffer("rope_sin", angles.sin(), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        residual_std = 0.02 / math.sqrt(2 * self.cfg.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                std = residual_std if name.endswith(("wo", "w2")) else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        nn.init.normal_(self.tok_embeddings.weight, mean=0.0, std=1.0)
        nn.init.normal_(self.output.weight, mean=0.0, std=self.cfg.dim ** -0.5)  # tied: both

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
