"""Why a worker got SIGKILL (``probes.oom``): the readings and the sentence built from them.

The kernel's OOM killer cannot be provoked safely on a test machine, so the counter and peak
readings are passed in by hand here; ``test_isolation`` checks the real readings on a worker
that kills itself."""

from __future__ import annotations

import os

import pytest

from harness.probes import oom

GIB = 2**30


def test_a_grown_oom_counter_names_the_oom_killer():
    text = oom.explain_sigkill(22 * GIB, 24 * GIB, 3, 4)
    assert text.startswith("the kernel's out-of-memory killer killed it")
    assert "22.0 GiB of the 24.0 GiB" in text


def test_a_still_counter_rules_the_oom_killer_out():
    text = oom.explain_sigkill(1 * GIB, 24 * GIB, 3, 3)
    assert text.startswith("not the out-of-memory killer")


def test_without_a_counter_a_peak_near_the_limit_is_the_likely_cause():
    assert oom.explain_sigkill(20 * GIB, 24 * GIB, None, None).startswith("most likely the")
    assert oom.explain_sigkill(2 * GIB, 24 * GIB, None, None).startswith("the cause is unknown")


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="Linux /proc only")
def test_readings_match_what_the_kernel_reports():
    with open("/proc/meminfo") as f:  # the first line is MemTotal, in KiB
        total_kib = int(f.readline().split()[1])
    limit = oom.memory_limit_bytes()
    assert limit is not None and 0 < limit <= total_kib * 1024
    with open(f"/proc/{os.getpid()}/status") as f:
        hwm_kib = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
    # The peak only grows, so the reading taken after ours is at least ours.
    assert oom.process_peak_rss_bytes(os.getpid()) >= hwm_kib * 1024
    assert oom.process_peak_rss_bytes(2**22 + 12345) is None  # no such process
