"""Stored baselines: ``results/baselines/<machine-key>.jsonl``, one file per machine.

A same-job A/B (``trainmark ab``) is the reliable gate; a stored baseline is the cheap one for a
dedicated, quiet machine (a self-hosted GPU runner): record it on the main branch, check pull
requests against it. The key is ``harness.schema.machine_key`` (device, torch build, threads,
e.g. ``nvidia-h100-80gb-hbm3-torch2.14.1-cu130-1t``); ``compare`` also refuses a baseline whose
driver, CUDA or cuDNN version differs (exit 2), so re-record after an upgrade.

Each round is a fresh ``trainmark run`` process of the working tree (``execution.ab.run_block``),
so rounds are independent samples.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.execution.ab import Side, run_block
from harness.schema import machine_key


def key_of_records(records: Iterable[Mapping[str, Any]], what: str) -> str:
    """The one machine key of ``records``; ``UserError`` if they come from several machines."""
    keys = {machine_key(rec) for rec in records}
    if len(keys) != 1:
        raise UserError(f"{what} hold results from {len(keys)} machines "
                        f"({', '.join(sorted(keys))}); a baseline is for one machine")
    return keys.pop()


def this_machine_key(threads: int) -> str:
    """The key runs on this machine will have (``threads`` > 0 is what runs will use)."""
    from harness.core.devices import best_device
    from harness.probes import provenance

    prov = dict(provenance.collect(best_device()))
    if threads > 0:
        prov["num_threads"] = threads
    return machine_key(prov)


def baseline_path(directory: str | os.PathLike[str], key: str) -> Path:
    return Path(directory) / f"{key}.jsonl"


def run_rounds(source: Path, flags: Sequence[str], rounds: int, threads: int,
               out_dir: Path, start: int = 0) -> list[Path]:
    """``rounds`` runs of ``source``'s suite, each a fresh process, into ``out_dir`` (files
    ``run-<start>.jsonl`` on)."""
    side = Side("candidate", source, "working tree")
    paths = []
    for i in range(start, start + rounds):
        out = out_dir / f"run-{i}.jsonl"
        with tempfile.TemporaryDirectory(prefix="trainmark-cwd-") as cwd:
            seconds = run_block(side, flags, out, threads, Path(cwd))
        print(f"  [{i + 1}/{start + rounds}] {seconds:.1f} s", file=sys.stderr)
        paths.append(out)
    return paths


def write_baseline(runs: Sequence[Path], dest: Path) -> None:
    """The runs' records as ``dest``, replaced atomically: a reader never sees half a baseline."""
    lines: list[str] = []
    for path in runs:
        lines += [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".jsonl.partial")
    partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(partial, dest)
