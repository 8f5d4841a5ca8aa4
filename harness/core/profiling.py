"""Profile a few training steps with ``torch.profiler``, outside every measured region.

``trainmark run --profile`` calls ``profile_steps`` after a config's timed regions, memory
figures and evaluation, so nothing it costs reaches a recorded number. It saves, per config:

- ``trace.json``: the Chrome / Perfetto trace (open it in ``chrome://tracing`` or
  ui.perfetto.dev);
- ``ops.json``: per operator, its self time per step on the host (and on the device where
  there is one) and its calls per step: what ``trainmark explain`` lines up between two runs;

and returns the split of a step into forward, backward and optimizer time, from the
``record_function`` ranges the profiled step marks (``core.step.make_train_step(phases=...)``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

PHASES = ("forward", "backward", "optimizer")
DEFAULT_STEPS = 5


def _activities(device: torch.device) -> list[ProfilerActivity]:
    acts = [ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(ProfilerActivity.CUDA)
    return acts


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_steps(step: Callable[[torch.Tensor], torch.Tensor], batches: torch.Tensor,
                  device: torch.device, out_dir: Path, steps: int = DEFAULT_STEPS,
                  ) -> dict[str, object]:
    """Run ``steps`` steps (one batch of indices per row of ``batches``, after one unprofiled
    step to settle) under the profiler; write ``trace.json`` and ``ops.json`` into ``out_dir``;
    return the record fields: the phase split in ms per step and the files' paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    step(batches[0])
    _sync(device)
    with profile(activities=_activities(device)) as prof:
        for i in range(steps):
            step(batches[(i + 1) % len(batches)])
        _sync(device)
    trace = out_dir / "trace.json"
    prof.export_chrome_trace(str(trace))
    averages = prof.key_averages()
    on_device = device.type != "cpu"
    phases = {e.key: e for e in averages if e.key in PHASES}
    ops = [{"name": e.key, "calls_per_step": e.count / steps,
            "self_cpu_us": e.self_cpu_time_total / steps,
            "self_device_us": (e.self_device_time_total / steps) if on_device else None}
           for e in averages if e.key not in PHASES and not e.key.startswith("ProfilerStep")]
    ops.sort(key=lambda o: -(o["self_device_us"] or o["self_cpu_us"]))
    (out_dir / "ops.json").write_text(json.dumps({"steps": steps, "device": str(device),
                                                  "ops": ops}, indent=1), "utf-8")

    def phase_ms(name: str) -> float | None:
        e = phases.get(name)
        if e is None:
            return None
        total = e.device_time_total if on_device and e.device_time_total else e.cpu_time_total
        return total / steps / 1000.0

    return {"profile_dir": str(out_dir), "profile_steps": steps,
            **{f"profile_{p}_ms": phase_ms(p) for p in PHASES}}

