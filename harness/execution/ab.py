"""Same-job A/B of a git ref against the working tree, interleaved on this machine.

The reliable check on a noisy runner (asv ``continuous``): ``REF`` is checked out in a temporary
``git worktree`` (``execution.gitref``); then the same suite runs on REF (A, the baseline) and on
the working tree (B, the candidate), alternately, and ``analysis.compare`` judges the result.

**Interleaving by configs (default).** Every round starts one fresh worker process per side,
run with ``PYTHONPATH`` = that side's tree, so each side measures with its own runner, and
rounds are independent samples (a process's own offset cannot pose as a significant change).
For every round and every config, A and B measure that config back to back, the order
alternating (A B, then B A)::

    round 0:  cfg1 A B | cfg2 B A | cfg3 A B | cfg4 B A
    round 1:  cfg1 B A | cfg2 A B | ...

so the two measurements of a pair are a second or two apart. On a shared machine, a neighbour's
load comes and goes over tens of seconds and can halve the speed; a pair almost always sees the
same load, and ``compare`` tests per-round ratios (records carry ``ab_round``;
``analysis.paired``).

**The worker protocol** is the only thing one tree asks of another (``execution.ab_worker``
documents it). A tree that has ``harness/execution/ab_worker.py`` speaks protocol 1 or later;
an older tree (before the layered layout) is driven by ``execution.ab_legacy``, a frozen adapter
for the interfaces those trees had, so ``trainmark ab`` keeps working against any old commit.

**Interleaving by runs** is the fallback: whole ``trainmark run`` processes alternate,
``A B A B ... A`` (bracketed, so slow drift cancels), and ``compare`` pools the samples. Each
block pays interpreter start-up, so blocks are far apart and load changes show up as noise.

Both sides get ``OMP_NUM_THREADS=MKL_NUM_THREADS=threads`` (default 1): on a shared CPU runner,
multi-threaded kernels slow down erratically (2-7x) whenever a neighbour takes a core, while one
thread per process degrades smoothly. ``threads=0`` inherits the environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.execution import ab_legacy, ab_worker
from harness.store.jsonl import fill_missing

NO_REPORT = "--no-report"  # `trainmark run` option of newer trees: skip the report per block


@dataclass
class Side:
    """One side of the comparison: a source tree and the environment its runs get."""

    name: str  # baseline | candidate
    tree: Path  # the directory holding harness/ and models/
    label: str  # e.g. "A = main (1a2b3c4)"
    extra_env: dict[str, str] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    has_no_report: bool | None = None  # learnt from the first run block (old trees lack it)

    def speaks_protocol(self) -> bool:
        """Protocol 1 and later live at this path (the protocol's own convention)."""
        return (self.tree / "harness" / "execution" / "ab_worker.py").is_file()

    def env(self, threads: int) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.tree)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        if threads > 0:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        env.update(self.extra_env)
        return env


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _last_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no error output"


def run_block(side: Side, flags: Sequence[str], out: Path, threads: int, workdir: Path,
              fill: Mapping[str, object] | None = None) -> float:
    """One ``trainmark run`` of ``side``'s tree into ``out``; seconds taken.

    The process runs in ``workdir`` (a scratch directory: whatever a run writes relative to its
    cwd stays out of both trees) and imports ``side.tree``'s code through ``PYTHONPATH``.
    ``--no-report`` is passed where the tree knows it; a tree that rejects it is asked once more
    without it, and remembered. ``fill``: fields its records get where the tree recorded none
    (the suite, which trees before the field do not record).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    while True:
        extra = [NO_REPORT] if side.has_no_report is not False else []
        cmd = [sys.executable, "-m", "harness", "run", *flags, *extra,
               "--out", str(out.resolve()), "--quiet"]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=workdir, env=side.env(threads), text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate()
        except BaseException:
            stop(proc)
            raise
        seconds = time.perf_counter() - started
        if proc.returncode != 0 and extra and f"unrecognized arguments: {NO_REPORT}" in err:
            side.has_no_report = False  # an old tree: it writes its report, which costs time
            continue
        if proc.returncode != 0:
            raise UserError(f"{side.label}: trainmark run failed (exit {proc.returncode}): "
                            f"{_last_line(err)}")
        side.has_no_report = bool(extra)
        side.seconds.append(seconds)
        if fill and out.exists():
            fill_missing(out, fill)
        return seconds


def interleave(rounds: int) -> list[str]:
    """Block order of runs interleaving: ``A B A B ... A``, bracketed by the baseline."""
    return ["baseline", "candidate"] * rounds + ["baseline"]


def pair_order(round_index: int, config_index: int) -> tuple[str, str]:
    """Who goes first in a pair: alternates over configs and rounds (A B, B A, ...)."""
    if (round_index + config_index) % 2 == 0:
        return ("baseline", "candidate")
    return ("candidate", "baseline")


@dataclass(frozen=True)
class Sweep:
    """What both sides run: ``request`` for protocol workers (``ab_worker.hello_request``),
    ``run_flags`` (``trainmark run`` arguments) for old trees and runs interleaving."""

    request: dict[str, Any]
    run_flags: list[str]

    @property
    def suite(self) -> str | None:
        """The suite's name every record of either side carries (``core.suites.suite_name``
        of the request's file): given by this tree, since an older one records none."""
        from harness.core.suites import suite_name  # the CLI has imported it already

        return suite_name(str(self.request["suite"])) if self.request.get("suite") else None


class Worker:
    """A long-lived worker process measuring one side's configs on request."""

    def __init__(self, side: Side, sweep: Sweep, run_id: str, threads: int,
                 workdir: Path) -> None:
        self.side = side
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / "stderr.txt"
        self.protocol = side.speaks_protocol()
        if self.protocol:
            cmd = [sys.executable, "-m", "harness.execution.ab_worker"]
        else:  # the adapter's source, so it runs against the old tree's modules
            source = Path(ab_legacy.__file__).read_text(encoding="utf-8")
            cmd = [sys.executable, "-c", source, run_id, *sweep.run_flags]
        with open(self.stderr_path, "w", encoding="utf-8") as err:
            self.proc = subprocess.Popen(cmd, cwd=workdir, env=side.env(threads), text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err)
        if self.protocol:
            self._send({**sweep.request, "run_id": run_id})
        self.configs: list[dict] = []

    def _fail(self, what: str) -> UserError:
        stop(self.proc)
        try:
            text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        return UserError(f"{self.side.label}: {what}: {_last_line(text)}")

    def _send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self._fail("the worker is gone") from None

    def _reply(self) -> dict:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise self._fail(f"the worker exited (status {self.proc.wait()})")
            if line.startswith(ab_worker.PREFIX):  # anything else a run prints is ignored
                return json.loads(line[len(ab_worker.PREFIX):])

    def hello(self) -> list[dict]:
        msg = self._reply()
        if "error" in msg:
            raise UserError(f"{self.side.label}: {msg['error']}")
        version = int(msg.get("protocol", 0))
        if version > ab_worker.PROTOCOL:
            raise UserError(f"{self.side.label} speaks A/B protocol {version}; this trainmark "
                            f"knows up to {ab_worker.PROTOCOL}: run `trainmark ab` from the "
                            "newer tree")
        self.configs = msg["configs"]
        return self.configs

    def run(self, index: int, out: Path, annotate: dict) -> float:
        started = time.perf_counter()
        self._send({"op": "run", "index": index, "out": str(out), "annotate": annotate})
        self._reply()
        seconds = time.perf_counter() - started
        self.side.seconds.append(seconds)
        return seconds

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        stop(self.proc)


def config_label(c: dict) -> str:
    return (f"{c.get('model')} {c.get('dataset')} {c.get('device')} bs={c.get('batch_size')} "
            f"{c.get('precision')} {c.get('optimizer')}")


def match_configs(base: list[dict], cand: list[dict]) -> tuple[list[tuple[int, int]], list[str]]:
    """Pairs of (baseline index, candidate index) measuring the same config, on the fields
    both trees know (a field new in one tree does not split configs); labels of the rest."""
    common = sorted((set(base[0]) & set(cand[0])) - {"repeats"}) if base and cand else []

    def key(cfg: dict) -> tuple:
        return tuple(json.dumps(cfg.get(f), sort_keys=True) for f in common)

    by_key = {key(c): i for i, c in enumerate(base)}
    pairs = [(by_key[key(c)], j) for j, c in enumerate(cand) if key(c) in by_key]
    used_b = {i for i, _ in pairs}
    used_c = {j for _, j in pairs}
    rest = ([f"only in the baseline: {config_label(c)}" for i, c in enumerate(base)
             if i not in used_b]
            + [f"only in the candidate: {config_label(c)}" for j, c in enumerate(cand)
               if j not in used_c])
    return pairs, rest


def check_baseline_commits(commits: Iterable[object], ref_sha: str) -> None:
    """The baseline's records must come from the clean REF worktree: a record reporting another
    commit, or local changes, means the baseline imported other code (e.g. an installed
    trainmark shadowing the worktree on sys.path), and the comparison would be meaningless."""
    wrong = sorted({str(c) for c in commits if c is not None} - {ref_sha})
    if wrong:
        raise UserError(f"the baseline runs report git commit {wrong[0]}, expected {ref_sha} "
                        "(REF's clean worktree): another trainmark is shadowing it on sys.path")


def _paired_configs(workers: dict[str, Worker],
                    only: Sequence[dict] | None = None) -> list[tuple[int, int]]:
    configs = {name: w.hello() for name, w in workers.items()}
    pairs, unmatched = match_configs(configs["baseline"], configs["candidate"])
    for note in unmatched:
        print(f"  {note} (not measured)", file=sys.stderr)
    if not pairs:
        raise UserError("REF and the working tree share no config of this suite")
    if only is not None:
        pairs = [(bi, ci) for bi, ci in pairs if matches(configs["baseline"][bi], only)]
    return pairs


def matches(config: dict, wanted: Sequence[dict]) -> bool:
    """Is the worker's ``config`` one of ``wanted`` (verdict rows' config fields)? A field the
    worker's config lacks does not count against it."""
    return any(all(config.get(k, v) == v for k, v in want.items()) for want in wanted)


def by_configs(sides: dict[str, Side], sweep: Sweep, rounds: Iterable[int], threads: int,
               out_dir: Path, scratch: Path, run_id: str,
               only: Sequence[dict] | None = None) -> None:
    """Default mode: every round starts a fresh worker per side (so rounds are independent
    samples: no state of one process carries over), and each config is measured by A and B
    back to back. ``only``: measure just these configs (verdict rows' config fields)."""
    rounds = list(rounds)
    pairs: list[tuple[int, int]] | None = None
    for r in rounds:
        workers: dict[str, Worker] = {}
        spent = {"baseline": 0.0, "candidate": 0.0}
        try:
            for name, side in sides.items():  # both start at once: start-up is not measured
                workers[name] = Worker(side, sweep, f"{run_id}-{name}", threads,
                                       scratch / f"cwd-{name}")
            if pairs is None:
                pairs = _paired_configs(workers, only)
            else:
                for w in workers.values():
                    w.hello()
            for k, (bi, ci) in enumerate(pairs):
                for name in pair_order(r, k):
                    index = bi if name == "baseline" else ci
                    spent[name] += workers[name].run(
                        index, out_dir / f"{name}.jsonl",
                        {"ab_round": r, "ab_side": name, "suite": sweep.suite})
        finally:
            for w in workers.values():
                w.close()
        print(f"  round {r + 1}/{rounds[-1] + 1}: {len(pairs)} configs, A "
              f"{spent['baseline']:.1f} s, B {spent['candidate']:.1f} s", file=sys.stderr)


def by_runs(sides: dict[str, Side], sweep: Sweep, rounds: int, threads: int,
            out_dir: Path, scratch: Path) -> None:
    """Fallback mode: whole ``trainmark run`` processes alternate, A B A B ... A."""
    order = interleave(rounds)
    for i, name in enumerate(order):
        side = sides[name]
        out = out_dir / f"{name}-{len(side.seconds)}.jsonl"
        seconds = run_block(side, sweep.run_flags, out, threads, scratch / f"cwd-{name}",
                            fill={"suite": sweep.suite} if sweep.suite else None)
        print(f"  [{i + 1}/{len(order)}] {side.label}: {seconds:.1f} s", file=sys.stderr)
