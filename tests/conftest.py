"""Shared fixtures: a private peak-FLOP/s cache and a CIFAR-10 archive on disk. (The
failure-injection models live in ``models/faults.py``: isolated workers must know them.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cifar_fixture import patch_cifar_md5, write_cifar10

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Peak-FLOP/s measurements are cached per machine; tests keep theirs out of ~/.cache."""
    old = os.environ.get("TRAINMARK_CACHE_DIR")
    os.environ["TRAINMARK_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("TRAINMARK_CACHE_DIR", None)
    else:
        os.environ["TRAINMARK_CACHE_DIR"] = old


@pytest.fixture()
def cifar_dir(tmp_path, monkeypatch):
    root = tmp_path / "data"
    patch_cifar_md5(monkeypatch, write_cifar10(root))
    return root


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """A fresh temporary directory as the working directory (results/, reports/ land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


LOCAL_SLURM = Path(__file__).resolve().parent.parent / "scripts" / "local-slurm"


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real one-node Slurm cluster with partitions hw_a and hw_b (``scripts/local-slurm``):
    used as it is when one already answers, else started for the session (installing
    slurm-wlm and munge when missing, as root) and stopped at the end if no other job is left
    on it. Skips, saying why, only where it cannot be started (no root, no apt, no packages)."""
    def answers() -> bool:
        return shutil.which("sinfo") is not None and subprocess.run(
            [str(LOCAL_SLURM), "status"], capture_output=True, timeout=60).returncode == 0

    if answers():
        listed = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True,
                                timeout=60).stdout.replace("*", "").split()
        if not {"hw_a", "hw_b"} <= set(listed):
            pytest.skip(f"the Slurm cluster here is not scripts/local-slurm's (partitions "
                        f"{', '.join(listed)}; the tests need hw_a and hw_b)")
        yield "hw_a", "hw_b"
        return
    proc = subprocess.run([str(LOCAL_SLURM), "start"], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        said = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"no local Slurm cluster: scripts/local-slurm start failed: {said}")
    yield "hw_a", "hw_b"
    left = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                          timeout=60).stdout.split()
    if not left:  # another session's jobs keep the cluster up
        subprocess.run([str(LOCAL_SLURM), "stop"], capture_output=True, timeout=120)


MULTINODE_SLURM = Path(__file__).resolve().parent.parent / "scripts" / "multinode-slurm"
MULTINODE_DIR = "/tmp/trainmark-mn-tests"  # its own config, state and ports: beside local-slurm
SLOW_NODE = "n3"


@pytest.fixture(scope="session")
def multinode_cluster():
    """A real three-node Slurm cluster on this machine (``scripts/multinode-slurm``: one slurmd
    per node, each in its own UTS + mount namespace; node n3 in a cgroup with a tenth of one
    CPU), started for the session and stopped after it. Yields the environment its clients
    need (``SLURM_CONF``; ``MN_DIR`` for powering nodes off and on). Its own ports, state and
    SLURM_CONF, so it never meets scripts/local-slurm's one-node cluster. Skips, saying why,
    only where it cannot start (no root, no slurmd/slurmctld/munge, no unshare)."""
    env = {**os.environ, "MN_DIR": MULTINODE_DIR, "MN_NODES": "3", "MN_CPUS": "2",
           "MN_SLOW_NODE": SLOW_NODE, "MN_SLOW_PCT": "10",
           "SLURM_CONF": f"{MULTINODE_DIR}/etc/slurm.conf"}
    proc = subprocess.run([str(MULTINODE_SLURM), "start"], capture_output=True, text=True,
                          timeout=120, env=env)
    if proc.returncode != 0:
        said = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"no multi-node Slurm cluster: scripts/multinode-slurm start: {said}")
    yield {k: env[k] for k in ("MN_DIR", "SLURM_CONF")}
    subprocess.run([str(MULTINODE_SLURM), "stop"], capture_output=True, timeout=120, env=env)
