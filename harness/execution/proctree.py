"""A process and everything it started, found and killed together (Linux ``/proc``).

``torch.distributed.run`` starts each rank in a session of its own, so killing the launcher,
or the process group it leads, leaves its ranks running: they keep their GPU memory while the
next config starts. A timeout therefore stops the whole tree first (no process can fork a new
child while stopped), then kills every process in it. Elsewhere than Linux only the process
itself is killed.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def _parents() -> dict[int, int]:
    """{pid: parent pid} of every process this user can see."""
    out: dict[int, int] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        out[int(entry.name)] = int(stat.rsplit(")", 1)[-1].split()[1])
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first, then theirs), whatever its session."""
    parents = _parents()
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, pp in parents.items() if pp in frontier and p not in found]
        found.extend(children)
        frontier = children
    return found


def _signal(pids: list[int], sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and all its descendants; the pids it signalled. The tree is stopped
    before it is read again and killed, so nothing started meanwhile escapes."""
    tree = [pid]
    for _ in range(5):  # stop what is there, look again until nothing new appears
        _signal(tree, signal.SIGSTOP)
        now = [pid, *descendants(pid)]
        if set(now) <= set(tree):
            break
        tree = list(dict.fromkeys(tree + now))
    _signal(tree, signal.SIGKILL)
    return tree
