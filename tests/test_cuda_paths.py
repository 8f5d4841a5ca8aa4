"""The CUDA-only paths a line-by-line review found wrong (issue 22), each checked on the CPU
through the piece of torch that decides it. Each test says what it stands in for; the GPU
acceptance script (scripts/gpu-check) runs the real paths on a GPU machine."""

from __future__ import annotations

import datetime as dt

import pytest
import torch
import torch.distributed as tdist

from harness.core import dist, runner
from harness.core.config import RunConfig
from harness.core.optim import OPTIMIZERS, make_optimizer, step_syncs_host, uses_fused
from harness.core.precision import resolve_precision
from harness.errors import Unavailable

# ------------------------------------------------------------ 1. the group's backends


@pytest.fixture
def one_rank_group():
    """A real one-process gloo group: the collectives run for real."""
    tdist.init_process_group("gloo", store=tdist.HashStore(), rank=0, world_size=1,
                             timeout=dt.timedelta(seconds=30))
    yield
    tdist.destroy_process_group()


def test_scalar_collectives_go_to_a_backend_the_cuda_group_has(one_rank_group, monkeypatch):
    # Stands in for NCCL, which refuses CPU tensors ("No backend type associated with device
    # type cpu") and cannot start without a GPU: each tensor the runner's collectives send is
    # recorded, and its device type must be one the CUDA group's backend string serves.
    seen = []
    real = tdist.all_reduce
    monkeypatch.setattr(tdist, "all_reduce",
                        lambda t, *a, **k: (seen.append(t.device.type), real(t, *a, **k))[1])
    assert dist.backend_name() == "gloo"
    assert dist.max_over_ranks(2.5) == 2.5 and dist.all_true(True) is True
    assert seen == ["cpu", "cpu"]
    served = dist.backend_devices(dist.backend_for("cuda"))
    assert served == {"cpu": "gloo", "cuda": "nccl"}
    assert all(device in served for device in seen)
    # What it was before: NCCL alone, which serves no CPU tensor.
    assert "cpu" not in dist.backend_devices("nccl")
    assert dist.backend_for("cpu") == "gloo"


# ------------------------------------------------------------ 4. srun's one GPU per task


def test_a_task_that_sees_one_gpu_uses_cuda_0(monkeypatch):
    # Stands in for srun --gpus-per-task=1: task 3 of 4 on a node sees one GPU, as cuda:0.
    # Its local rank (3) is no valid ordinal there; torchrun's ranks see all the node's GPUs.
    for key, value in {"SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "3",
                       "MASTER_ADDR": "node1"}.items():
        monkeypatch.setenv(key, value)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(dist, "active", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert dist.local_device("cuda") == "cuda:0"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert dist.local_device("cuda") == "cuda:3"
    assert dist.local_device("cpu") == "cpu"
    assert [dist.gpu_ordinal(r, 2) for r in range(4)] == [0, 1, 0, 1]
    with pytest.raises(RuntimeError, match="no CUDA device"):
        dist.gpu_ordinal(0, 0)


# ------------------------------------------- 5. the FLOP count before the memory peaks

TINY = RunConfig(model="convnet", dataset="synthetic", batch_size=4, warmup_steps=1,
                 timed_steps=2, repeats=1, eval_samples=8, train_samples=32)


def test_the_counting_pass_is_released_before_the_peaks_restart(monkeypatch):
    # Stands in for the CUDA allocator: the order of counting, emptying the cache and
    # resetting the peaks, as the runner calls them.
    log = []
    real_count = runner.train_step_flops
    monkeypatch.setattr(runner, "train_step_flops",
                        lambda *a, **k: (log.append("count"), real_count(*a, **k))[1])
    monkeypatch.setattr(runner, "release_memory", lambda device: log.append("release"))
    monkeypatch.setattr(runner, "reset_peak_memory", lambda device: log.append("reset"))
    rec = runner.Runner(data_dir="data").run(TINY)
    assert rec["status"] == "ok", rec["error"]
    first = log.index("count")
    assert log[first:first + 3] == ["count", "release", "reset"]


def test_running_out_of_memory_while_counting_is_an_oom_record(monkeypatch):
    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(runner, "train_step_flops", oom)
    rec = runner.Runner(data_dir="data").run(TINY)
    assert rec["status"] == "oom"
    assert rec["error"].startswith(
        "counting the step's FLOPs: OutOfMemoryError: CUDA out of memory")


def test_another_counting_failure_is_said_in_the_record(monkeypatch):
    def unsupported(*a, **k):
        raise RuntimeError("no formula for aten::weird_op")

    monkeypatch.setattr(runner, "train_step_flops", unsupported)
    rec = runner.Runner(data_dir="data").run(TINY)
    assert rec["status"] == "ok" and rec["mfu"] is None
    assert rec["flops_error"] == "RuntimeError: no formula for aten::weird_op"


# ------------------------------------------------------ 6. fused optimizers under GradScaler


def _item_calls_in_a_scaled_step(optimizer: torch.optim.Optimizer, model, monkeypatch) -> int:
    calls = []
    real = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: (calls.append(1), real(self))[1])
    scaler = torch.amp.GradScaler("cpu")
    scaler.scale(model(torch.randn(3, 4)).square().mean()).backward()
    scaler.step(optimizer)
    monkeypatch.setattr(torch.Tensor, "item", real)
    return len(calls)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fused_optimizers_keep_gradscalers_check_on_the_device(name, monkeypatch):
    # Stands in for fp16 on CUDA: torch's GradScaler on the CPU takes the same path. With a
    # default optimizer it reads the found-inf flag with .item() (a host sync on a GPU); the
    # fused ones take the flag as a tensor, and nothing is read.
    model = torch.nn.Linear(4, 2)
    plain = make_optimizer(name, model.parameters(), 0.01)
    assert _item_calls_in_a_scaled_step(plain, model, monkeypatch) > 0
    assert step_syncs_host(plain, scaled=True)
    fused = make_optimizer(name, model.parameters(), 0.01, fused=uses_fused("cuda"))
    assert fused.defaults["fused"] is True
    assert _item_calls_in_a_scaled_step(fused, model, monkeypatch) == 0
    assert not step_syncs_host(fused, scaled=True)
    assert not step_syncs_host(plain, scaled=False)  # no scaler (fp32, bf16): no sync


def test_the_record_says_which_optimizer_ran_and_whether_the_step_syncs():
    rec = runner.Runner(data_dir="data").run(TINY)
    assert rec["optimizer_fused"] is False and rec["step_syncs_host"] is False  # CPU, fp32
    assert not uses_fused("cpu")


# ------------------------------------------------------------ 7. bf16 on the GPU in use


@pytest.mark.parametrize("capability, name, native", [
    ((7, 5), "Tesla T4", False), ((7, 0), "Tesla V100-SXM2-16GB", False),
    ((8, 0), "NVIDIA A100-SXM4-80GB", True), ((9, 0), "NVIDIA H100 80GB HBM3", True)])
def test_bf16_needs_native_support_on_the_configs_gpu(capability, name, native, monkeypatch):
    # Stands in for the GPUs: what torch.cuda reports of each. is_bf16_supported() says yes
    # on all four (it counts emulation); only compute capability 8.0 and newer is native.
    asked = []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: (asked.append(device), capability)[1])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    device = torch.device("cuda:1")
    if native:
        assert resolve_precision("amp-bf16", device).autocast_dtype == torch.bfloat16
    else:
        with pytest.raises(Unavailable, match=rf"{name} \(compute capability "
                                              rf"{capability[0]}\.{capability[1]}\)"):
            resolve_precision("amp-bf16", device)
    assert asked == [device]  # the config's GPU, not the current one
    assert resolve_precision("amp-fp16", device).use_scaler


# ------------------------------------ lesser: the launcher's parent leaves the GPU alone


def test_a_process_that_only_launches_ranks_does_not_touch_the_gpu(monkeypatch):
    # Stands in for a CUDA context on GPU 0: any device query from the process that only
    # starts torchrun would open one there, and rank 0's NVML "used" would include it.
    def touched(*a, **k):
        raise AssertionError("the launcher's parent queried the GPU")

    monkeypatch.setattr(torch.cuda, "get_device_name", touched)
    monkeypatch.setattr(torch.cuda, "get_device_properties", touched)
    cfg = RunConfig(model="convnet", dataset="synthetic", batch_size=4, device="cuda:0",
                    nproc=2)
    rec = runner.Runner(data_dir="data").base_record(cfg)
    assert rec["device"] == "cuda:0" and rec["device_name"] is None  # rank 0's record says
    assert rec["driver_version"] is None
    with pytest.raises(AssertionError, match="queried the GPU"):  # a one-process config asks
        runner.Runner(data_dir="data").base_record(
            RunConfig(model="convnet", dataset="synthetic", batch_size=4, device="cuda:0"))


def test_fp16_is_loss_scaled_wherever_it_trains_on_an_accelerator():
    # fp16 gradients underflow without loss scaling on MPS as on CUDA (resolve_precision only
    # reads the device's type here: no Apple GPU is needed); bf16 and the CPU need none.
    assert resolve_precision("amp-fp16", torch.device("mps")).use_scaler
    assert resolve_precision("amp", torch.device("mps")).use_scaler  # amp = fp16 there
    assert not resolve_precision("amp-bf16", torch.device("cpu")).use_scaler
