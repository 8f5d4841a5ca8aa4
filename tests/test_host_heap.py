"""The C heap policy (``probes.host_heap``): under ``steady`` a freed block is reused without
page faults; under ``default`` glibc maps a large block afresh every time; records say which,
and ``compare`` will not judge one against the other."""

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.config import RunConfig
from harness.core.runner import Runner
from harness.probes.host_heap import GLIBC_ENV

ROOT = Path(__file__).resolve().parents[1]


def _has_glibc() -> bool:
    try:
        return (sys.platform.startswith("linux") and not os.environ.get("LD_PRELOAD")
                and hasattr(ctypes.CDLL("libc.so.6"), "mallopt"))
    except OSError:
        return False


glibc_only = pytest.mark.skipif(not _has_glibc(),
                                reason="the heap policy is glibc's (Linux, no preloaded malloc)")

# 64 MiB is above the 32 MiB ceiling of glibc's dynamic mmap threshold, so under the default
# policy each allocation is a fresh anonymous map: 64 MiB / 4 KiB = 16,384 pages, each faulted
# in by fill_. Under ``steady`` the heap keeps what was freed: once it has grown to hold the
# pattern (torch's 64-byte-aligned blocks take a few rounds to settle), no new pages.
PAGES = (64 << 20) // 4096
SCRIPT = """
import resource, torch
from harness.probes.host_heap import apply_host_heap
policy = apply_host_heap()
def once():
    block = torch.empty(64 << 20, dtype=torch.uint8)
    block.fill_(1)
    del block
for _ in range(20):
    once()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    once()
print(policy, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def faults_per_block(policy: str) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in GLIBC_ENV}  # a clean start
    env.update(TRAINMARK_HOST_HEAP=policy, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    return out[0], float(out[1])


@glibc_only
def test_steady_policy_reuses_a_freed_block_without_page_faults():
    name, faults = faults_per_block("steady")
    assert name == "steady"
    assert faults < 0.01 * PAGES  # a handful of pages of Python's own, not 16,384


@glibc_only
def test_default_policy_faults_a_large_block_in_again_every_time():
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists() and "[always]" in thp.read_text():
        pytest.skip("transparent huge pages 'always': a fresh map faults 2 MiB at a time")
    name, faults = faults_per_block("default")
    assert name == "default"
    assert faults >= 0.95 * PAGES


@glibc_only
def test_records_carry_the_policy_and_children_inherit_it(monkeypatch):
    for name in ("TRAINMARK_HOST_HEAP", *GLIBC_ENV):  # restored after the test
        monkeypatch.delenv(name, raising=False)
    cfg = RunConfig("convnet", "synthetic", device="cpu")
    assert Runner().base_record(cfg)["host_heap"] == "steady"
    assert all(os.environ[k] == v for k, v in GLIBC_ENV.items())
    monkeypatch.setenv("TRAINMARK_HOST_HEAP", "default")
    assert Runner().base_record(cfg)["host_heap"] == "default"
    assert not any(k in os.environ for k in GLIBC_ENV)  # a default run's children start clean


def test_a_bad_policy_is_a_one_line_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("TRAINMARK_HOST_HEAP", "jemalloc")
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "TRAINMARK_HOST_HEAP='jemalloc'" in err and "steady or default" in err


def test_compare_refuses_steady_against_default(tmp_path, capsys):
    from tests.test_compare import record

    base, cand = tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    base.write_text(json.dumps(record(host_heap="steady")) + "\n")
    cand.write_text(json.dumps(record(host_heap="default")) + "\n")
    assert main(["compare", str(base), str(cand)]) == 2
    assert "host_heap: 'steady' vs 'default'" in capsys.readouterr().err
