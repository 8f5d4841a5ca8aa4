"""Rank variables under srun (review items 1, 2 and the port range of 11 in issue 29): every
task of a node is its own local rank after ``dist.init`` as before it, an srun step without
``MASTER_ADDR`` meets on its first node (or is refused), and default ports stay below the
kernel's ephemeral range. The process group itself is replaced by a recorder here; the real
srun runs are in tests/test_multinode.py."""

from __future__ import annotations

import pytest
import torch

from harness.core import dist
from harness.errors import UserError

RANK_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS",
             "SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEP_ID", "SLURM_STEPID",
             "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_JOB_ID")


@pytest.fixture()
def srun_task(monkeypatch):
    """The environment of task 3 of 4 (local id 1 on its node), as srun sets it, and a
    process group that only records how it was joined."""
    for name in RANK_VARS:  # set then delete: monkeypatch restores each at teardown
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    for name, value in {"SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
                        "SLURM_STEP_ID": "0", "SLURM_STEP_NODELIST": "gpu[07-08]",
                        "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "123456"}.items():
        monkeypatch.setenv(name, value)
    joined: dict[str, object] = {}
    monkeypatch.setattr(dist.dist, "init_process_group",
                        lambda **kw: joined.update(kw, initialized=True))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: joined.update(device=i))
    return joined


def test_local_rank_survives_init(srun_task, monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "gpu07")  # as a fleet job sets it
    before = dist.env_from_os()
    assert before is not None and (before.rank, before.world_size, before.local_rank) == (3, 4, 1)
    env = dist.init("cuda")
    assert srun_task["device"] == 1  # set_device(local rank 1)
    after = dist.env_from_os()  # RANK/WORLD_SIZE now set: it must not fall back to local 0
    assert after is not None and after.local_rank == 1 and env == after
    monkeypatch.setattr(dist, "active", lambda: True)
    assert dist.local_device("cuda") == "cuda:1"  # the runner's use_device keeps GPU 1


def test_srun_without_master_addr_meets_on_first_node(srun_task):
    import os

    dist.init("cpu")
    assert os.environ["MASTER_ADDR"] == "gpu07"
    port = int(os.environ["MASTER_PORT"])
    assert port == dist.PORT_BASE + 123456 % dist.PORT_SPAN and port < 32768


def test_srun_without_any_node_name_is_refused(srun_task, monkeypatch):
    monkeypatch.delenv("SLURM_STEP_NODELIST")
    monkeypatch.delenv("SLURM_JOB_NODELIST")
    with pytest.raises(UserError, match="MASTER_ADDR"):
        dist.init("cpu")
    assert "initialized" not in srun_task


def test_batch_script_is_no_launch(srun_task, monkeypatch):
    """The batch script (no step id, no MASTER_ADDR) is one process, not rank 3 of 4."""
    monkeypatch.delenv("SLURM_STEP_ID")
    assert dist.env_from_os() is None


@pytest.mark.parametrize("nodelist,first", [("n[03-05,9],gpu1", "n03"), ("a1,b2", "a1"),
                                            ("rack1-[2-3]-ib", "rack1-2-ib"), ("solo", "solo")])
def test_first_host(nodelist, first):
    assert dist.first_host(nodelist) == first
