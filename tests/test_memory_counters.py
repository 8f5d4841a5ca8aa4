"""The allocator's retry and OOM counts are a config's own (issue 29, review item 6).

``torch.cuda.reset_peak_memory_stats`` resets the peaks but not ``num_alloc_retries`` or
``num_ooms``, which count over the process's life: in an in-process sweep every record after
one OOM probe showed ``alloc_ooms >= 1``. The allocator here is a stand-in with torch's
semantics (no GPU needed; on a GPU machine it replaces the real one for this test only)."""

from __future__ import annotations

import torch

from harness.probes import memory


class LifetimeCounters:
    """torch's caching allocator as ``memory_stats`` shows it: peaks reset, counters do not."""

    def __init__(self) -> None:
        self.stats = {"active_bytes.all.peak": 2**30, "reserved_bytes.all.peak": 2**31,
                      "num_alloc_retries": 0, "num_ooms": 0}

    def reset_peak(self, device=None) -> None:
        self.stats["active_bytes.all.peak"] = self.stats["reserved_bytes.all.peak"] = 0


def test_retries_and_ooms_count_from_the_last_reset(monkeypatch):
    alloc = LifetimeCounters()
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", alloc.reset_peak)
    monkeypatch.setattr(torch.cuda, "memory_stats", lambda device=None: dict(alloc.stats))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: type("P", (), {"total_memory": 80 * 2**30})())
    gpu = torch.device("cuda:0")

    alloc.stats.update(num_ooms=1, num_alloc_retries=4)  # an OOM probe before this config
    memory.reset_peak_memory(gpu)
    alloc.stats["num_alloc_retries"] += 2  # this config retried twice, never ran out
    fields = memory.device_memory_fields(gpu)
    assert (fields["alloc_ooms"], fields["alloc_retries"]) == (0, 2)

    memory.reset_peak_memory(gpu)  # the next config: one OOM of its own
    alloc.stats["num_ooms"] += 1
    fields = memory.device_memory_fields(gpu)
    assert (fields["alloc_ooms"], fields["alloc_retries"]) == (1, 0)
