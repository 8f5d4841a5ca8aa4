"""The device peaks a sweep's MFU figures need, prepared once before its first config."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from harness.core import dist
from harness.core.config import RunConfig
from harness.core.runner import Peaks, peak_dtype, peak_key
from harness.probes.peak import peak_flops_per_s
from models import IMAGE_CLASSIFICATION, get_model_info


def prepare_peaks(configs: Iterable[RunConfig], *, quiet: bool = False) -> Peaks:
    """The device peaks the configs' MFU needs (``peak_key`` -> value and source): from the
    datasheet table or the cache, measuring what neither has (a few seconds per device and
    dtype, once per machine). Handed to every worker and rank, so none measures or looks up a
    cache under another thread count. Ranks of a multi-process launch measure nothing: they
    would measure each other's load."""
    peaks: Peaks = {}
    # Whether a config is a conv net (TF32 peak for fp32 on CUDA) is known from its FLOPs only
    # once it runs (a ViT is an image model without being one): image models get both peaks.
    needed = dict.fromkeys(
        (c.device, peak_dtype(c, conv=conv)) for c in configs
        for conv in ((True, False) if get_model_info(c.model).task == IMAGE_CLASSIFICATION
                     else (False,)))
    for device, dtype in needed:
        value, source = peak_flops_per_s(device, dtype, measure=False)
        if value is None and not dist.active():
            if not quiet:
                print(f"measuring the {dtype} GEMM peak of {device} for MFU (cached)",
                      file=sys.stderr, flush=True)
            value, source = peak_flops_per_s(device, dtype, measure=True)
        peaks[peak_key(device, dtype)] = (value, source)
    return peaks
