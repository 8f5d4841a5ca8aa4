"""Synthetic data that a model can learn: images at any size and class count, character text,
and token streams over any vocabulary. Everything is generated on the CPU from seeded
``torch.Generator``s / ``random.Random``s, so every device sees bitwise the same samples.
"""

from __future__ import annotations

import random

import torch

CHUNK = 256  # images generated at a time: a 224-pixel float chunk is 154 MB, not gigabytes


def synthetic_images(
    n: int, seed: int, template_seed: int, num_classes: int = 10, size: int = 32,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable images: a smooth random template per class, randomly shifted, scaled, noised.

    Templates depend only on ``template_seed``, so train and held-out splits drawn with different
    sample ``seed``s share them (they are the signal); shifts of up to size/8 pixels (4 at 32)
    and Gaussian noise (sigma 0.25) keep the task from being trivial. ``dtype`` float32 gives
    values in [0, 1]; uint8 gives the same images quantized to 0..255 (4x smaller, for large
    images kept resident within a memory budget). Generated in chunks of ``CHUNK`` images, which
    draws exactly the random numbers one pass over all of them would.
    """
    tgen = torch.Generator().manual_seed(template_seed)
    coarse = torch.rand(num_classes, 3, 8, 8, generator=tgen)
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n,), generator=gen)
    reach = max(1, size // 8)
    shifts = torch.randint(-reach, reach + 1, (n, 2), generator=gen)
    contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=gen)
    out = torch.empty((n, 3, size, size), dtype=dtype)
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        x = torch.nn.functional.interpolate(coarse[y[lo:hi]], size=(size, size), mode="bilinear")
        for i in range(hi - lo):  # per-sample roll; thousands of samples take milliseconds
            s = shifts[lo + i]
            x[i] = torch.roll(x[i], shifts=(int(s[0]), int(s[1])), dims=(1, 2))
        x = (x - 0.5) * contrast[lo:hi] + 0.5 + 0.25 * torch.randn(x.shape, generator=gen)
        x.clamp_(0.0, 1.0)
        out[lo:hi] = x if dtype == torch.float32 else x.mul_(255.0).round_().to(dtype)
    return out, y


def synthetic_text(n_chars: int, seed: int) -> str:
    """Text from a seeded word-level Markov source over an invented lexicon.

    Each word has 2-4 likely successors, sentences end with '.', so a model can learn spelling
    (characters within a word are fixed) and some grammar (which word follows which).
    """
    rng = random.Random(seed)
    letters = "abcdefghijklmnoprstuvwy"
    words = sorted({"".join(rng.choices(letters, k=rng.randint(2, 7))) for _ in range(300)})
    successors = {w: rng.sample(words, k=rng.randint(2, 4)) for w in words}
    weights = {w: [rng.random() + 0.2 for _ in successors[w]] for w in words}
    out: list[str] = []
    size = 0
    word = rng.choice(words)
    sentence_len = 0
    while size < n_chars:
        token = word.capitalize() if sentence_len == 0 else word
        sentence_len += 1
        if sentence_len >= rng.randint(5, 12):
            token += "."
            sentence_len = 0
            word = rng.choice(words)
        else:
            word = rng.choices(successors[word], weights=weights[word])[0]
        out.append(token)
        size += len(token) + 1
    return " ".join(out)[:n_chars]


def synthetic_tokens(n_tokens: int, vocab_size: int, seed: int,
                     phrases: int = 4096) -> torch.Tensor:
    """A stream of ``n_tokens`` token ids in ``[0, vocab_size)``: seeded phrases of 4-16 tokens
    (drawn from the whole vocabulary), concatenated in random order.

    A phrase's first token says which phrase it is in most cases, so a model that learns the
    phrases predicts most tokens after the first: the loss can fall far below log(vocab_size),
    and held-out accuracy (on a stream drawn with another order seed) means something.
    """
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, 17, (phrases,), generator=gen)
    table = torch.randint(0, vocab_size, (int(lengths.sum()),), generator=gen)
    bounds = torch.cumsum(lengths, 0).tolist()
    pieces = [table[b - n: b] for b, n in zip(bounds, lengths.tolist(), strict=True)]
    order_gen = torch.Generator().manual_seed(seed + 1)
    mean_len = 10  # (4 + 16) / 2: enough phrase draws to pass n_tokens, rarely more than once
    out: list[torch.Tensor] = []
    total = 0
    while total < n_tokens:
        draws = torch.randint(0, phrases, (n_tokens // mean_len + 1,), generator=order_gen)
        for i in draws.tolist():
            out.append(pieces[i])
            total += len(out[-1])
    return torch.cat(out)[:n_tokens]
