"""The timed loop never synchronises with the device inside a timed region
(docs/method/measuring.md), whatever the optimizer and precision.

- On the CPU (every machine): inside a region (between ``RegionTimer.start`` and ``stop``,
  warm-up chunks included) the harness and the models never read a tensor back to the host
  (``.item()``, ``float()``, ``bool()``, ...) and never call the device synchronize; a read of a
  tensor that is not on the CPU is refused whoever makes it. (torch's own optimizers read their
  CPU step counters with ``.item()``: host memory, no device sync, allowed.) tests/test_runner.py
  checks SGD in fp32; this extends it to Adam, Adagrad and AMP.
- On CUDA (wherever a GPU is present): the regions run under
  ``torch.cuda.set_sync_debug_mode("error")``, which raises on any synchronising CUDA call,
  torch's own included. The one documented exception, ``GradScaler.step``'s read of the
  inf/NaN flag with ``amp-fp16`` (one sync per step, inherent to dynamic loss scaling), is
  allowed explicitly and counted; nothing else is.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import harness
import models
from harness.core import loop, timing
from harness.core.config import RunConfig
from harness.core.optim import OPTIMIZERS
from harness.core.runner import Runner
from harness.core.timing import RegionTimer

OURS = tuple(str(Path(m.__file__).resolve().parent) for m in (harness, models))
HOST_READS = ("item", "cpu", "numpy", "tolist", "__bool__", "__float__", "__int__", "__index__")
LR = {"sgd": 0.01, "adam": 1e-3, "adagrad": 1e-2}
STEPS, REPEATS = 3, 2
STEPS_IN_REGIONS = 1 + STEPS * REPEATS  # fixed warm-up of 2: one step alone, a chunk of one


def tiny(optimizer: str, precision: str, device: str = "cpu") -> RunConfig:
    return RunConfig(model="convnet", dataset="synthetic", device=device, optimizer=optimizer,
                     lr=LR[optimizer], precision=precision, batch_size=4, warmup_steps=2,
                     timed_steps=STEPS, repeats=REPEATS, min_time_s=0.0, eval_samples=32,
                     train_samples=64,
                     # the step's code path is under test, not the format's speed: a CPU
                     # without native bf16 runs amp emulated here instead of refusing it
                     allow_emulated=device == "cpu")


@pytest.fixture(scope="module")
def runner():
    return Runner(run_id="nosync-test", isolation="none")


class Regions:
    """Patches the region timer so ``inside`` is true between its edges; counts steps."""

    def __init__(self, monkeypatch, on_enter=lambda: None, on_leave=lambda: None) -> None:
        self.inside = False
        self.steps = 0
        real_start, real_step, real_stop = RegionTimer.start, RegionTimer.step, RegionTimer.stop

        def start(timer):
            real_start(timer)  # its own synchronize comes before the region
            self.inside = True
            on_enter()

        def step(timer):
            self.steps += self.inside
            real_step(timer)

        def stop(timer):
            on_leave()
            self.inside = False
            return real_stop(timer)  # its own synchronize comes after the region

        monkeypatch.setattr(RegionTimer, "start", start)
        monkeypatch.setattr(RegionTimer, "step", step)
        monkeypatch.setattr(RegionTimer, "stop", stop)


def _ours(filename: str) -> bool:
    return str(Path(filename).resolve()).startswith(OURS)


@pytest.mark.parametrize("precision", ["fp32", "amp"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_no_host_read_or_device_sync_inside_cpu_regions(monkeypatch, runner, optimizer,
                                                        precision):
    regions = Regions(monkeypatch)
    for name in HOST_READS:
        real = getattr(torch.Tensor, name)

        def guarded(self, *a, _real=real, _name=name, **k):
            if regions.inside:
                caller = sys._getframe(1).f_code.co_filename
                if self.device.type != "cpu" or _ours(caller):
                    raise AssertionError(f"{_name}() of a {self.device.type} tensor by "
                                         f"{caller} inside a timed region")
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, guarded)
    for module in (loop, timing):  # the device synchronize, as each module calls it
        real_sync = module.synchronize

        def sync(device, _real=real_sync):
            if regions.inside:
                raise AssertionError(f"synchronize({device}) inside a timed region")
            return _real(device)

        monkeypatch.setattr(module, "synchronize", sync)

    rec = runner.run(tiny(optimizer, precision))
    assert rec["status"] == "ok", rec["error"]
    assert rec["optimizer"] == optimizer and rec["precision"] == precision
    assert regions.steps == STEPS_IN_REGIONS  # the guard was up for every timed step
    assert not regions.inside


cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="needs a CUDA device: set_sync_debug_mode checks CUDA syncs")


@cuda
@pytest.mark.parametrize("precision", ["fp32", "amp-bf16", "amp-fp16"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_no_sync_inside_cuda_regions_under_sync_debug_mode(monkeypatch, runner, optimizer,
                                                           precision):
    if precision == "amp-bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no native bf16 (emulated autocast creates tensors per step)")
    regions = Regions(monkeypatch, on_enter=lambda: torch.cuda.set_sync_debug_mode("error"),
                      on_leave=lambda: torch.cuda.set_sync_debug_mode("default"))
    real_sync = torch.cuda.synchronize

    def sync(*a, **k):  # explicit, so not what the debug mode reports: refused here
        if regions.inside:
            raise AssertionError("torch.cuda.synchronize() inside a timed region")
        return real_sync(*a, **k)

    monkeypatch.setattr(torch.cuda, "synchronize", sync)
    # GradScaler.step reads whether the gradients hold an inf/NaN (torch's
    # GradScaler._maybe_opt_step): the documented sync of amp-fp16. That read alone is allowed,
    # and counted; the optimizer step it then takes stays under the debug mode.
    scaler_reads = []

    def scaler_opt_step(self, optimizer, optimizer_state, *args, **kwargs):
        mode = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("default")
        try:
            found_inf = sum(v.item() for v in optimizer_state["found_inf_per_device"].values())
        finally:
            torch.cuda.set_sync_debug_mode(mode)
        scaler_reads.append(regions.inside)
        return None if found_inf else optimizer.step(*args, **kwargs)

    assert hasattr(torch.amp.GradScaler, "_maybe_opt_step"), "torch's GradScaler changed"
    monkeypatch.setattr(torch.amp.GradScaler, "_maybe_opt_step", scaler_opt_step)
    try:
        rec = runner.run(tiny(optimizer, precision, device="cuda:0"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert rec["status"] == "ok", rec["error"]  # a sync inside a region raises: status error
    assert regions.steps == STEPS_IN_REGIONS
    in_regions = sum(scaler_reads)
    assert in_regions == (STEPS_IN_REGIONS if precision == "amp-fp16" else 0)
