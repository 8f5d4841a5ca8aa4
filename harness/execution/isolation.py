"""One fresh worker process per config: isolated memory figures, timeouts, crash-proof sweeps.

``ProcessIsolation.run(cfg)`` forks a worker from a fork server (``multiprocessing``'s
``forkserver``), which has imported torch and the harness once, so a worker starts in tens of
milliseconds instead of seconds. The worker runs the config with the same runner as in-process
mode and sends its record back through a pipe. The parent never trains and never touches a
device, so one config's allocator state, autotuning cache, poisoned CUDA context or leaked
thread cannot reach the next one, and each record's peak RSS is that config's own.

What can go wrong becomes a record, and the sweep goes on:

- ``timeout``: no record within ``timeout_s`` seconds; the worker is killed;
- ``crashed``: the worker died (a signal such as SIGSEGV or SIGKILL from the OOM killer, or an
  exit without a record); the record names the signal or exit status and the worker's last
  line of stderr.

The worker sends its identity and provenance fields before it trains, so even a crashed row
says which machine and software produced it.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from harness.core.config import RunConfig
from harness.core.runner import Peaks, Runner, identity_fields
from harness.errors import one_line
from harness.execution.proctree import kill_tree
from harness.probes.memory import reset_peak_rss
from harness.probes.oom import (
    explain_sigkill,
    memory_limit_bytes,
    oom_kill_count,
    process_peak_rss_bytes,
)

DEFAULT_TIMEOUT_S = 1800.0  # per config: generous, it bounds hangs, not slow configs
# How often the parent reads the worker's peak RSS while it waits: a worker the OOM killer
# takes leaves no figure behind, so the last reading before its death is the evidence.
RSS_POLL_S = 0.5
ISOLATIONS = ("process", "none")
# Imported once by the fork server; torchvision because ResNets import it on use (~1 s).
PRELOAD = ["harness.execution.isolation", "torchvision.models.resnet"]
_context: Any = None


def _fork_server() -> Any:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _last_line(path: Path) -> str:
    """What the worker said last, for the record: after a native crash, faulthandler's
    "Fatal Python error" and the innermost frame; else the last line of stderr."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()
                 if ln.strip()]
    except OSError:
        return ""
    fatal = [i for i, ln in enumerate(lines) if ln.startswith("Fatal Python error")]
    if fatal:
        frames = [ln for ln in lines[fatal[-1]:] if ln.startswith("File ")]
        return "; ".join([lines[fatal[-1]], *frames[:1]])[:300]
    return lines[-1][:200] if lines else ""


CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # a job's cancellation
CANCEL_GRACE_S = 2.0  # how long a worker's death by one waits for the same signal here


def _died(exitcode: int | None, end: WorkerEnd | None = None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else ""
        said = f"the worker was killed by signal {-exitcode} {name}".rstrip()
        if -exitcode == signal.SIGKILL and end is not None:
            said += " (" + explain_sigkill(end.peak_rss_bytes, memory_limit_bytes(),
                                           end.oom_kills_before, end.oom_kills_after) + ")"
        return said
    return f"the worker exited with status {exitcode} without a record"


@dataclasses.dataclass
class WorkerEnd:
    """How a worker's run ended, as the parent saw it."""
    messages: list[tuple[str, Any]]
    exitcode: int | None
    last_line: str  # its last stderr line
    timed_out: bool  # killed for running past the timeout
    peak_rss_bytes: int | None = None  # the last reading of its high-water mark
    oom_kills_before: int | None = None  # the OOM-kill counter when it started ...
    oom_kills_after: int | None = None  # ... and once it was gone


def _call(target: Callable, args: tuple, timeout_s: float) -> WorkerEnd:
    """Run ``target(send, *args)`` in a fresh worker: the messages it sent, its exit code,
    its last stderr line, whether it had to be killed for running past ``timeout_s``, and
    what tells an out-of-memory kill apart (its peak RSS, the OOM-kill counter)."""
    ctx = _fork_server()
    fd, err_name = tempfile.mkstemp(prefix="trainmark-worker-", suffix=".stderr")
    os.close(fd)
    err_path = Path(err_name)
    recv, send = ctx.Pipe(duplex=False)
    # Not daemonic: a daemonic process may not start processes of its own (a DataLoader's
    # workers); the finally below takes the worker down on every way out instead.
    proc = ctx.Process(target=_entry, args=(target, send, str(err_path), dict(os.environ),
                                            *args))
    end = WorkerEnd([], None, "", False, oom_kills_before=oom_kill_count())
    try:
        proc.start()
        send.close()  # the worker holds the only write end: EOF means it is gone
        deadline = time.monotonic() + timeout_s
        while not end.messages or end.messages[-1][0] != "done":
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                end.timed_out = True
                break
            if not recv.poll(min(remaining, RSS_POLL_S)):
                end.peak_rss_bytes = process_peak_rss_bytes(proc.pid) or end.peak_rss_bytes
                if not proc.is_alive() and not recv.poll(0):
                    break
                continue
            try:
                end.messages.append(recv.recv())
            except EOFError:
                break
        if end.timed_out:  # with what it started: torchrun's ranks live in sessions of their own
            kill_tree(proc.pid)
        proc.join(timeout=30)
        end.exitcode, end.last_line = proc.exitcode, _last_line(err_path)
        end.oom_kills_after = oom_kill_count()
        return end
    finally:
        if proc.is_alive():  # interrupted: take the worker (and its launches) down with us
            kill_tree(proc.pid)
            proc.join()
        recv.close()
        err_path.unlink(missing_ok=True)


def _entry(target: Callable, send: Connection, err_path: str, environ: dict[str, str],
           *args: Any) -> None:
    """The worker's first steps: the parent's current environment (the fork server's may be
    older), stdout and stderr into a file the parent reads if the worker dies, a fresh peak-RSS
    mark, then ``target``."""
    os.environ.clear()
    os.environ.update(environ)
    fd = os.open(err_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    faulthandler.enable()  # a native crash leaves its Python stack as the last stderr lines
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        import torch

        torch.set_num_threads(int(threads))  # the fork server read the variable at import
    reset_peak_rss()
    target(send, *args)
    send.close()


def _run_config(send: Connection, config: dict[str, Any], run_id: str, data_dir: str,
                download: bool, peaks: Peaks, profile_dir: str | None,
                timeout_s: float | None = None) -> None:
    from harness.execution.distributed import run_config

    runner = Runner(run_id=run_id, data_dir=data_dir, download=download, peaks=peaks,
                    isolation="process", profile_dir=profile_dir)
    cfg = RunConfig(**config)
    send.send(("started", runner.base_record(cfg)))
    send.send(("done", run_config(runner, cfg, timeout_s)))


def _measure_peaks(send: Connection, configs: list[dict[str, Any]]) -> None:
    from harness.execution.peaks import prepare_peaks

    send.send(("done", prepare_peaks([RunConfig(**c) for c in configs])))


def bare_record(cfg: RunConfig, run_id: str) -> dict[str, object]:
    """What the parent knows of a config whose worker never reported: identity and config."""
    return {**identity_fields(cfg, run_id), "isolation": "process"}


def unreported_record(end: WorkerEnd, cfg: RunConfig, run_id: str, timeout_s: float,
                      worker: str) -> dict[str, object]:
    """The record of a config whose worker ended without one: what it reported before it
    trained (else the parent's ``bare_record``), ``timeout`` when it was killed for running past
    ``timeout_s``, else ``crashed`` with how it died and its last line."""
    if not end.timed_out and end.exitcode is not None and -end.exitcode in CANCEL_SIGNALS:
        # Cancelling a job (scancel, a CI runner) signals each of its processes: the worker
        # may die of it an instant before this process is told. Wait for our own signal (it
        # raises KeyboardInterrupt here: no record, the run is interrupted) before calling the
        # config crashed; a worker killed alone is recorded after the wait.
        time.sleep(CANCEL_GRACE_S)
    base = next((m for kind, m in end.messages if kind == "started"), None)
    rec = dict(base) if base else bare_record(cfg, run_id)
    if end.timed_out:
        rec.update(status="timeout", error=f"no record within {timeout_s:g} s; {worker} was "
                                            "killed")
    else:
        why, last = _died(end.exitcode, end), end.last_line
        rec.update(status="crashed", error=f"{why}: {last}" if last else why)
    return rec


class ProcessIsolation:
    """Runs each config in a fresh worker process; same interface as ``Runner`` for a sweep."""

    def __init__(self, run_id: str, data_dir: str = "data", download: bool = False,
                 timeout_s: float = DEFAULT_TIMEOUT_S, peaks: Peaks | None = None,
                 profile_dir: str | None = None) -> None:
        self.run_id = run_id
        self.data_dir = data_dir
        self.download = download
        self.timeout_s = timeout_s
        self.peaks = dict(peaks or {})
        self.profile_dir = profile_dir

    def run(self, cfg: RunConfig) -> dict[str, object]:
        started = time.perf_counter()
        end = _call(
            _run_config,
            (dataclasses.asdict(cfg), self.run_id, self.data_dir, self.download, self.peaks,
             self.profile_dir, self.timeout_s),
            self.timeout_s)
        done = [m for kind, m in end.messages if kind == "done"]
        if done:
            return done[0]
        rec = unreported_record(end, cfg, self.run_id, self.timeout_s, "the worker")
        rec["peak_rss_bytes"] = rec.get("peak_rss_bytes") or end.peak_rss_bytes
        rec["wall_time_s"] = time.perf_counter() - started
        return rec


def _run_rank(send: Connection, config: dict[str, Any], run_id: str, data_dir: str,
              download: bool, peaks: Peaks, profile_dir: str | None,
              rank_env: dict[str, str]) -> None:
    """One rank of one config, in a fresh worker: join this config's own process group (the
    rendezvous port rank 0 chose), measure, leave."""
    from harness.core import dist
    from harness.execution.distributed import rank_environment

    cfg = RunConfig(**config)
    os.environ.update({**rank_env, **rank_environment(cfg)})  # before CUDA starts
    # torchrun's rank 0 would otherwise wait for its agent's store instead of hosting one
    os.environ.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    dist.init(cfg.device.split(":")[0])
    try:
        runner = Runner(run_id=run_id, data_dir=data_dir, download=download, peaks=peaks,
                        isolation="process", profile_dir=profile_dir)
        send.send(("started", runner.base_record(cfg)))
        rec = runner.run(cfg)
    finally:
        dist.shutdown()
    send.send(("done", rec))


class RankIsolation:
    """Under an external launcher (srun, a multi-node torchrun): each config's ranks run in
    fresh workers, one per launched process, which join a process group of their own for that
    config and leave it. So a distributed config keeps what a single-process one has: a fresh
    allocator, autotuning and compile state, its own ``timeout_s`` (the worker is killed with
    its process tree and the config recorded ``timeout``), and a crash that is a record. The
    launcher's processes never touch a device; between configs they meet in a gloo group whose
    collectives wait longer than a config may take. Every rank returns a record; rank 0's is
    the config's, marked failed when another rank's worker failed."""

    def __init__(self, run_id: str, data_dir: str = "data", download: bool = False,
                 timeout_s: float = DEFAULT_TIMEOUT_S, peaks: Peaks | None = None,
                 profile_dir: str | None = None) -> None:
        from harness.core import dist

        self.run_id, self.data_dir, self.download = run_id, data_dir, download
        self.timeout_s = timeout_s
        self.peaks = dict(peaks or {})
        self.profile_dir = profile_dir
        self.group = dist.sync_group(timeout_s + 300)  # a config's limit, and its teardown

    def run(self, cfg: RunConfig) -> dict[str, object]:
        from harness.core import dist

        started = time.perf_counter()
        port = dist.gather(dist.free_port() if dist.rank() == 0 else None, self.group)[0]
        end = _call(_run_rank, (dataclasses.asdict(cfg), self.run_id, self.data_dir,
                                self.download, self.peaks, self.profile_dir,
                                {"MASTER_PORT": str(port)}), self.timeout_s)
        done = [m for kind, m in end.messages if kind == "done"]
        rec = (dict(done[0]) if done else
               unreported_record(end, cfg, self.run_id, self.timeout_s, "the rank's worker"))
        outcomes = dist.gather((rec.get("status"), rec.get("error")), self.group)
        failed = [(r, o) for r, o in enumerate(outcomes) if r and o[0] != "ok"]  # type: ignore[index]
        if rec.get("status") == "ok" and failed:
            r, (status, error) = failed[0]
            rec.update(status="error" if status == "error" else status,
                       error=f"rank {r}: {status}: {error}"[:300])
        rec["isolation"] = "process"
        rec["wall_time_s"] = time.perf_counter() - started
        return rec


def measure_peaks_isolated(configs: list[RunConfig], timeout_s: float = 600.0) -> Peaks:
    """``prepare_peaks`` in a worker, so the parent never opens a device itself."""
    end = _call(_measure_peaks, ([dataclasses.asdict(c) for c in configs],), timeout_s)
    done = [m for kind, m in end.messages if kind == "done"]
    if not done:  # no peaks: MFU is null, the benchmark itself goes on
        print(f"trainmark: warning: peak FLOP/s not measured "
              f"({one_line(RuntimeError(end.last_line))}"
              f"{', timed out' if end.timed_out else ''}, exit {end.exitcode})", file=sys.stderr,
              flush=True)
        return {}
    return done[0]
