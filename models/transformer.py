"""A small decoder-only GPT for character-level language modelling.

Token + learned position embeddings, pre-LayerNorm blocks with causal self-attention through
``F.scaled_dot_product_attention`` and a GELU MLP, final LayerNorm, output head tied to the token
embedding. Defaults: 4 layers, 4 heads, width 128, context 128 (about 0.8M parameters plus the
embedding for a ~65-character vocabulary). Structure follows nanoGPT's ``model.py``.

``gpt2`` is the same network at GPT-2 small's size (Radford et al. 2019): 12 layers, 12 heads,
width 768, context 1024, the 50,257-token BPE vocabulary, biases in every Linear and LayerNorm,
tied head: 124,439,808 parameters, the published figure. It adds GPT-2's two details that do
not change the shapes: the tanh approximation of GELU and residual projections initialised with
std 0.02 / sqrt(2 * n_layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models._registry import LANGUAGE_MODELING, register_model


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 65  # characters in Tiny Shakespeare; the dataset passes its own
    block_size: int = 128  # context length in tokens
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128  # model width; must be divisible by n_head
    dropout: float = 0.0  # 0 keeps benchmark steps deterministic in cost
    gelu_approximate: str = "none"  # GPT-2 uses "tanh" (nn.GELU's approximate=)
    scaled_residual_init: bool = False  # GPT-2: residual projections std 0.02/sqrt(2*n_layer)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd),
            nn.GELU(approximate=cfg.gelu_approximate),
            nn.Linear(4 * cfg.n_embd, cfg.n_embd),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))  # pre-LayerNorm residual blocks
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying
        self.apply(self._init_weights)
        if cfg.scaled_residual_init:
            # GPT-2 (section 2.3): each block adds two residual branches, so their output
            # projections start smaller to keep the residual stream's variance in check.
            std = 0.02 / (2 * cfg.n_layer) ** 0.5
            for block in self.blocks:
                nn.init.normal_(block.attn.proj.weight, mean=0.0, std=std)
                nn.init.normal_(block.mlp[2].weight, mean=0.0, std=std)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx`` (B, T) token ids -> logits (B, T, vocab_size)."""
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.cfg.block_size}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.tok_emb(idx) + self.pos_emb(pos)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))  # (B, T, vocab)


@register_model(
    task=LANGUAGE_MODELING,
    default_dataset="synthetic-text",
    family="transformer",
    default_lr={"sgd": 0.1, "adam": 1e-3, "adagrad": 1e-2},
    input_shape=(128,),
    num_params=818_048,  # at the default 65-character vocabulary
)
def transformer(
    vocab_size: int = 65,
    block_size: int = 128,
    n_layer: int = 4,
    n_head: int = 4,
    n_embd: int = 128,
) -> nn.Module:
    """Small decoder-only GPT (4 layers, 4 heads, width 128, context 128), tied output head."""
    return GPT(GPTConfig(vocab_size, block_size, n_layer, n_head, n_embd))


GPT2_VOCAB = 50_257  # GPT-2's byte-level BPE: 50,000 merges + 256 bytes + <|endoftext|>
GPT2_CONTEXT = 1024


@register_model(
    task=LANGUAGE_MODELING,
    default_dataset="synthetic-tokens",
    family="gpt2",
    # Adam 6e-4: GPT-3's rate for its 125M model (Brown et al. 2020, table 2.1), nanoGPT's
    # GPT-2 small recipe. SGD (momentum 0.9) and Adagrad have no published GPT-2 recipe: the
    # small transformer's rates scaled down for a 12-layer net. Checked by hand: 12 steps of
    # batch 4 x 32 tokens of a repeating stream take the loss from 11.0 to 6-7 with each.
    default_lr={"sgd": 0.03, "adam": 6e-4, "adagrad": 1e-3},
    input_shape=(GPT2_CONTEXT,),
    vocab_size=GPT2_VOCAB,
    num_params=124_439_808,  # with the tied output head counted once (nanoGPT: 124M)
)
def gpt2(vocab_size: int = GPT2_VOCAB, block_size: int = GPT2_CONTEXT) -> nn.Module:
    """GPT-2 small (12 layers, 12 heads, width 768, context 1024), 124.4M parameters."""
    if not 1 <= block_size <= GPT2_CONTEXT:
        raise ValueError(f"gpt2 has {GPT2_CONTEXT} positions: block_size must be 1 to "
                         f"{GPT2_CONTEXT}, got {block_size}")
    # The position table keeps GPT-2's 1024 rows whatever context the run uses (as Hugging
    # Face's GPT-2 does), so the model and its parameter count are GPT-2 small's at any block.
    return GPT(GPTConfig(vocab_size, GPT2_CONTEXT, n_layer=12, n_head=12, n_embd=768,
                         gelu_approximate="tanh", scaled_residual_init=True))
