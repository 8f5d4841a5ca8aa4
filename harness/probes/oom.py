"""Why a worker was killed: the kernel's out-of-memory killer, read from what Linux exposes.

A SIGKILL alone says nothing: the OOM killer, a scheduler's memory limit, ``kill -9`` and the
timeout all send it. Two readings tell the OOM killer apart, and neither needs the kernel log
(``dmesg`` is closed to most users):

- the OOM-kill counter, the cgroup's ``memory.events`` (cgroup v2) or the machine's
  ``/proc/vmstat`` ``oom_kill`` (Linux >= 4.13): if it grew while the worker ran, the kernel
  killed something for memory then;
- the worker's own peak RSS (``VmHWM``, which the worker restarts when it begins) against the
  memory it may use: the smaller of the machine's ``MemTotal`` and the cgroup's limit.

No torch here: the sweep's parent reads these without touching a device.
"""

from __future__ import annotations

from pathlib import Path

GIB = 1024**3
# A worker whose peak RSS reached this share of its memory limit was most likely the victim
# when the OOM killer chose (it picks the largest process); below it, some other process was.
NEAR_LIMIT_SHARE = 0.5


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def process_peak_rss_bytes(pid: int) -> int | None:
    """Peak resident set size of process ``pid`` (``VmHWM``), None once it is gone or off
    Linux."""
    text = _read(f"/proc/{pid}/status")
    for line in (text or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # "VmHWM:  123456 kB"
    return None


def _cgroup_dir(root: str = "/sys/fs/cgroup") -> Path | None:
    """This process's cgroup v2 folder (``0::/path`` in /proc/self/cgroup), if mounted."""
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        if line.startswith("0::"):
            folder = Path(root) / line[3:].strip().lstrip("/")
            return folder if (folder / "memory.events").exists() else None
    return None


def memory_limit_bytes() -> int | None:
    """What this process tree may use: the machine's ``MemTotal``, or its cgroup's
    ``memory.max`` when that is smaller (a container, a Slurm job). None off Linux."""
    total = None
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
    folder = _cgroup_dir()
    limit_text = (_read(folder / "memory.max") or "").strip() if folder else ""
    if limit_text.isdigit():
        limit = int(limit_text)
        return limit if total is None else min(total, limit)
    return total


def oom_kill_count() -> int | None:
    """Processes the OOM killer has killed so far: in this cgroup where cgroup v2 counts them,
    else on the machine. None where neither is readable."""
    folder = _cgroup_dir()
    sources = ([folder / "memory.events"] if folder else []) + ["/proc/vmstat"]
    for source in sources:
        for line in (_read(source) or "").splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    return None


def explain_sigkill(peak_rss: int | None, limit: int | None, kills_before: int | None,
                    kills_after: int | None) -> str:
    """One clause on why a worker got SIGKILL, from the OOM counter and its peak RSS."""
    seen = ""
    if peak_rss is not None:
        seen = f"its peak RSS was {peak_rss / GIB:.1f} GiB"
        seen += f" of the {limit / GIB:.1f} GiB it may use" if limit else ""
    counted = kills_before is not None and kills_after is not None
    near = peak_rss is not None and limit is not None and peak_rss >= NEAR_LIMIT_SHARE * limit
    if counted and kills_after > kills_before:
        why = "the kernel's out-of-memory killer killed it (its counter grew meanwhile)"
    elif near:
        why = "most likely the kernel's out-of-memory killer"
    elif counted:
        why = "not the out-of-memory killer (its counter did not move): another process killed it"
    else:
        why = "the cause is unknown (no out-of-memory counter here)"
    return f"{why}; {seen}" if seen else why
