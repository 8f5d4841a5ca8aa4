"""Evaluation fits wherever training fits: its batch is bounded by the size of its logits, and
its loss is computed a slice of rows at a time (``core.step``)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from harness.core.data import TextData
from harness.core.precision import resolve_precision
from harness.core.step import eval_batch_size, evaluate, loss_and_correct

MIB = 2**20


def test_gpt2_evaluates_one_window_at_a_time_unless_training_held_more():
    # GPT-2 at its 1,024-token context: one window's logits are 1,024 x 50,257 float32 =
    # 205,852,672 B (196 MiB); the 256 MiB output budget holds one of them, not 256 (53 GB).
    per_window = 1024 * 50_257
    assert per_window * 4 == 205_852_672
    assert eval_batch_size(1, per_window) == 1
    # Training at batch 4 held four windows' logits and their gradient: evaluation may too.
    assert eval_batch_size(4, per_window) == 4
    # A vocabulary of 128,256 (Llama 3) at 8,192 tokens: 4.2 GB per window, still one.
    assert eval_batch_size(1, 8192 * 128_256) == 1


def test_small_outputs_keep_the_full_batch_of_256():
    # CIFAR-10's 10 class scores: 40 B a sample, so the cap of 256, not the budget, decides.
    assert eval_batch_size(4, 10) == 256
    # The character transformer: 64 tokens x 65 characters x 4 B = 16,640 B; 256 of them
    # are 4.1 MiB, within the budget.
    assert eval_batch_size(16, 64 * 65) == 256
    # 1 MiB of logits a sample: the budget holds 256 of them exactly, 2 MiB only 128.
    assert eval_batch_size(1, MIB // 4) == 256
    assert eval_batch_size(1, MIB // 2) == 128


def _reference(logits: torch.Tensor, target: torch.Tensor) -> tuple[float, int]:
    """Summed cross-entropy by hand in float64: log-sum-exp minus the target's logit."""
    total, hits = 0.0, 0
    rows = logits.reshape(-1, logits.shape[-1]).double().tolist()
    for row, want in zip(rows, target.reshape(-1).tolist(), strict=True):
        top = max(row)
        total += top + math.log(sum(math.exp(v - top) for v in row)) - row[want]
        hits += int(row.index(top) == want)
    return total, hits


def test_the_sliced_loss_is_the_whole_loss():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=gen) * 3  # (B, T, vocab)
    target = torch.randint(0, 7, (3, 5), generator=gen)
    want_loss, want_hits = _reference(logits, target)
    for chunk_bytes in (4 * 7, 4 * 7 * 4, 10**9):  # one row, four rows (uneven), all at once
        loss, hits = loss_and_correct(logits, target, chunk_bytes=chunk_bytes)
        assert math.isclose(float(loss), want_loss, rel_tol=1e-6)
        assert int(hits) == want_hits
    # bf16 logits (autocast's output) are upcast per slice: the same result as upcasting first.
    half = logits.bfloat16()
    loss, _ = loss_and_correct(half, target, chunk_bytes=4 * 7)
    assert math.isclose(float(loss), _reference(half.float(), target)[0], rel_tol=1e-6)


class _WideLM(nn.Module):
    """A language model with a wide vocabulary that remembers the batch sizes it was fed."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 4)
        self.head = nn.Linear(4, vocab)
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.head(self.emb(x))  # (B, T, vocab)


def test_evaluation_of_a_wide_vocabulary_runs_in_bounded_batches():
    vocab, block = 8192, 64
    tokens = torch.randint(0, vocab, (40 * block + 1,))
    data = TextData("t", tokens, tokens, block_size=block, vocab_size=vocab)
    per_window = data.outputs_per_sample()
    assert per_window == block * vocab  # (T, vocab) logits a window
    # 2 MiB of float32 logits a window: 128 windows fit the budget; training held only 2.
    size = eval_batch_size(2, per_window)
    assert size == 128
    small = eval_batch_size(2, per_window, budget_bytes=8 * MIB)  # a tighter budget: 4
    assert small == 4
    model = _WideLM(vocab)
    plan = resolve_precision("fp32", torch.device("cpu"))
    loss, acc = evaluate(model, data, plan, torch.device("cpu"), limit=30, batch_size=small)
    assert model.batches == [4] * 7 + [2]  # 30 windows in batches of at most 4
    assert loss is not None and math.isclose(loss, math.log(vocab), rel_tol=0.05)  # untrained
    assert acc is not None and 0 <= acc <= 1
