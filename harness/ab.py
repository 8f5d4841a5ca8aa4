"""``trainmark ab REF``: same-job A/B of a git ref against the working tree, interleaved.

The reliable check on a noisy runner (asv ``continuous``): ``REF`` is checked out in a temporary
``git worktree``; then the same suite runs on REF (A, the baseline) and on the working tree (B,
the candidate), alternately, on this machine, and ``compare`` judges the result, with the same
exit status as ``trainmark compare``. The worktree is removed afterwards, also on failure, Ctrl-C
or SIGTERM.

**Interleaving (default ``--interleave configs``).** One long-lived worker process per side
(``harness/ab_worker.py`` run with ``PYTHONPATH`` = that side's tree, so each side measures with its
own ``Runner.run``) takes configs one at a time. For every round and every config, A and B
measure that config back to back, the order alternating (A B, then B A)::

    round 0:  cfg1 A B | cfg2 B A | cfg3 A B | cfg4 B A
    round 1:  cfg1 B A | cfg2 A B | ...

so the two measurements of a pair are a second or two apart. On a shared machine, a neighbour's
load comes and goes over tens of seconds and can halve the speed; a pair almost always sees the
same load, and ``compare`` tests within pairs (records carry ``ab_round``): a stratified rank
test, with the change estimated as the median over rounds of each pair's ratio of medians.
Every record keeps the harness's per-repeat samples (repeats x rounds per side and config).

``--interleave runs`` is the fallback for a REF whose Python API the worker cannot drive: whole
``trainmark run`` processes alternate, ``A B A B ... A`` (bracketed, so slow drift cancels), and
``compare`` pools the samples. Each block then pays interpreter start-up, so blocks are far apart
in time and load changes between them show up as noise (the gate stays quiet but loses power).

Both sides get ``OMP_NUM_THREADS=MKL_NUM_THREADS=--threads`` (default 1): on a shared CPU runner,
multi-threaded kernels slow down erratically (2-7x) whenever a neighbour takes a core, while one
thread per process degrades smoothly. ``--threads 0`` inherits the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UserError

DEFAULT_SUITE = "ci"
DEFAULT_ROUNDS = {"configs": 8, "runs": 3}  # per --interleave mode
DEFAULT_THREADS = 1
# Options of ``trainmark run`` that A/B sets itself instead of forwarding.
OWN_RUN_OPTIONS = frozenset({"help", "out", "resume", "quiet", "suite", "data_dir"})
PATH_OPTIONS = frozenset({"tensorboard"})  # forwarded as absolute paths (the cwd changes)


# ---------------------------------------------------------------------------- suite flags


def _run_actions() -> list[argparse.Action]:
    """The options of ``trainmark run``, from cli's own parser, so the two never drift apart."""
    from harness import cli

    holder = cli._Parser(prog="trainmark")
    sub = holder.add_subparsers(parser_class=cli._Parser)
    cli._add_run(sub)
    return [a for a in sub.choices["run"]._actions if a.dest != "help"]


def add_suite_options(p: argparse.ArgumentParser) -> None:
    """Add ``trainmark run``'s sweep options (``--suite``, ``--models``, ``--steps``, ...) to
    ``p``, except ``--out``/``--resume``/``--quiet`` and any option ``p`` already has."""
    for action in _run_actions():
        if action.dest in ("out", "resume", "quiet"):
            continue
        if any(s in p._option_string_actions for s in action.option_strings):
            continue
        p._add_action(action)


def forwarded_flags(args: argparse.Namespace) -> list[str]:
    """The sweep options given on the command line, as ``trainmark run`` arguments."""
    flags: list[str] = []
    for action in _run_actions():
        if action.dest in OWN_RUN_OPTIONS or not action.option_strings:
            continue
        value = getattr(args, action.dest, None)
        if value is None or value == action.default:
            continue
        option = max(action.option_strings, key=len)
        if action.nargs == 0:
            if value:
                flags.append(option)
            continue
        if action.dest in PATH_OPTIONS:
            value = str(Path(value).resolve())
        if action.dest == "dataset":
            value = ",".join(f"text:{Path(d[5:]).resolve()}" if d.startswith("text:") else d
                             for d in str(value).split(","))
        flags += [option, str(value)]
    return flags


def resolve_suite(name_or_path: str | None) -> Path:
    """A suite name or path as an absolute path, so both trees run the same suite file."""
    from harness.config import SUITES_DIR, load_suite

    spec = name_or_path or DEFAULT_SUITE
    load_suite(spec)  # UserError if missing or malformed
    path = Path(spec)
    return (SUITES_DIR / f"{spec}.toml" if not path.suffix else path).resolve()


def sweep_flags(args: argparse.Namespace) -> tuple[list[str], int]:
    """Validate the sweep here (bad input fails before anything runs); ``run`` arguments and
    the number of configs."""
    from harness.cli import _sweep_configs
    from harness.data import check_dataset

    suite = resolve_suite(getattr(args, "suite", None))
    args.suite = str(suite)
    configs = _sweep_configs(args)
    for name in dict.fromkeys(c.dataset for c in configs):
        check_dataset(name, args.data_dir, args.download)
    data_dir = str(Path(args.data_dir).resolve())
    return ["--suite", str(suite), "--data-dir", data_dir, *forwarded_flags(args)], len(configs)


# ---------------------------------------------------------------------------- processes


@dataclass
class Side:
    """One side of the comparison: a source tree and the environment its runs get."""

    name: str  # baseline | candidate
    tree: Path  # the directory holding harness/ and models/
    label: str  # e.g. "REF main (1a2b3c4)"
    extra_env: dict[str, str] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)

    def run_flags(self, flags: Sequence[str]) -> list[str]:
        """``flags`` plus ``--no-report`` where this tree's ``run`` has it (report generation
        after each block only costs time; older trees lack the option)."""
        cli = self.tree / "harness" / "cli.py"
        try:
            has_no_report = '"--no-report"' in cli.read_text(encoding="utf-8")
        except OSError:
            has_no_report = False
        return [*flags, "--no-report"] if has_no_report else list(flags)

    def env(self, threads: int) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.tree)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        if threads > 0:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        env.update(self.extra_env)
        return env


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_block(side: Side, flags: Sequence[str], out: Path, threads: int, workdir: Path) -> float:
    """One ``trainmark run`` of ``side``'s tree into ``out``; seconds taken.

    The process runs in ``workdir`` (a scratch directory: whatever a run writes relative to its
    cwd stays out of both trees) and imports ``side.tree``'s code through ``PYTHONPATH``.
    """
    cmd = [sys.executable, "-m", "harness", "run", *side.run_flags(flags),
           "--out", str(out.resolve()), "--quiet"]
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=workdir, env=side.env(threads), text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate()
    except BaseException:
        _stop(proc)
        raise
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        lines = [ln for ln in (err or "").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else "no error output"
        raise UserError(f"{side.label}: trainmark run failed (exit {proc.returncode}): {last}")
    side.seconds.append(seconds)
    return seconds


def interleave(rounds: int) -> list[str]:
    """Block order of ``--interleave runs``: ``A B A B ... A``, bracketed by the baseline."""
    return ["baseline", "candidate"] * rounds + ["baseline"]


def pair_order(round_index: int, config_index: int) -> tuple[str, str]:
    """Who goes first in a pair: alternates over configs and rounds (A B, B A, ...)."""
    if (round_index + config_index) % 2 == 0:
        return ("baseline", "candidate")
    return ("candidate", "baseline")


class Worker:
    """A long-lived ``ab_worker`` process measuring one side's configs on request."""

    def __init__(self, side: Side, flags: Sequence[str], run_id: str, threads: int,
                 workdir: Path) -> None:
        from harness import ab_worker

        self.side = side
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / "stderr.txt"
        source = Path(ab_worker.__file__).read_text(encoding="utf-8")
        with open(self.stderr_path, "w", encoding="utf-8") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", source, run_id, *flags], cwd=workdir,
                env=side.env(threads), text=True, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err)
        self.configs: list[dict] = []

    def _fail(self, what: str) -> UserError:
        _stop(self.proc)
        try:
            lines = self.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "no error output")
        return UserError(f"{self.side.label}: {what}: {last}")

    def _reply(self) -> dict:
        from harness.ab_worker import PREFIX

        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise self._fail(f"the worker exited (status {self.proc.wait()})")
            if line.startswith(PREFIX):
                return json.loads(line[len(PREFIX):])

    def hello(self) -> list[dict]:
        msg = self._reply()
        if "error" in msg:
            raise UserError(f"{self.side.label}: {msg['error']}")
        self.configs = msg["configs"]
        return self.configs

    def run(self, index: int, out: Path, annotate: dict) -> float:
        assert self.proc.stdin is not None
        started = time.perf_counter()
        try:
            self.proc.stdin.write(json.dumps({"op": "run", "index": index, "out": str(out),
                                              "annotate": annotate}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self._fail("the worker is gone") from None
        self._reply()
        seconds = time.perf_counter() - started
        self.side.seconds.append(seconds)
        return seconds

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        _stop(self.proc)


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

    def label(c: dict) -> str:
        return (f"{c.get('model')} {c.get('dataset')} {c.get('device')} bs={c.get('batch_size')} "
                f"{c.get('precision')} {c.get('optimizer')}")

    rest = ([f"only in the baseline: {label(c)}" for i, c in enumerate(base) if i not in used_b]
            + [f"only in the candidate: {label(c)}" for j, c in enumerate(cand)
               if j not in used_c])
    return pairs, rest


def parse_env(pairs: Sequence[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--candidate-env takes NAME=VALUE, got {pair!r}")
        env[name.strip()] = value
    return env


# ---------------------------------------------------------------------------- git


def git(repo: Path, *args: str, check: bool = True) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"git {args[0]} failed: {exc}") from None
    if check and proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"git {' '.join(args[:2])} failed in {repo}: {msg}")
    return proc.stdout.strip()


def repo_toplevel(path: Path) -> Path:
    try:
        return Path(git(path, "rev-parse", "--show-toplevel")).resolve()
    except UserError:
        raise UserError(f"{path} is not a git checkout; trainmark ab needs one") from None


def resolve_ref(top: Path, ref: str) -> str:
    sha = git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if not sha:
        raise UserError(f"unknown git ref {ref!r} in {top}")
    return sha


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Let cleanup finish even if Ctrl-C is pressed again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def worktree(top: Path, sha: str) -> Iterator[Path]:
    """A detached worktree of ``sha`` in a temporary directory, removed on any exit."""
    tmp = Path(tempfile.mkdtemp(prefix="trainmark-ab-"))
    path = tmp / "ref"
    try:
        git(top, "worktree", "add", "--detach", str(path), sha)
        yield path
    finally:
        with _no_interrupts():
            git(top, "worktree", "remove", "--force", str(path), check=False)
            git(top, "worktree", "prune", check=False)
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """CI cancellation sends SIGTERM: treat it like Ctrl-C so cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def check_baseline_commit(frame, ref_sha: str) -> None:
    """The baseline's records must come from the clean REF worktree: a record reporting another
    commit, or local changes, means the baseline imported other code (e.g. an installed
    trainmark shadowing the worktree on sys.path), and the comparison would be meaningless."""
    wrong = sorted({str(c) for c in frame["git_commit"].dropna()} - {ref_sha})
    if wrong:
        raise UserError(f"the baseline runs report git commit {wrong[0]}, expected {ref_sha} "
                        "(REF's clean worktree): another trainmark is shadowing it on sys.path")


# ---------------------------------------------------------------------------- command


def _by_configs(sides: dict[str, Side], flags: list[str], rounds: int, threads: int,
                out_dir: Path, scratch: Path, run_id: str) -> None:
    """Default mode: two workers, every config measured by A and B back to back."""
    workers: dict[str, Worker] = {}
    try:
        for name, side in sides.items():  # both start at once: start-up is not measured
            workers[name] = Worker(side, flags, f"{run_id}-{name}", threads,
                                   scratch / f"cwd-{name}")
        configs = {name: w.hello() for name, w in workers.items()}
        pairs, unmatched = match_configs(configs["baseline"], configs["candidate"])
        for note in unmatched:
            print(f"  {note} (not measured)", file=sys.stderr)
        if not pairs:
            raise UserError("REF and the working tree share no config of this suite")
        for r in range(rounds):
            spent = {"baseline": 0.0, "candidate": 0.0}
            for k, (bi, ci) in enumerate(pairs):
                for name in pair_order(r, k):
                    index = bi if name == "baseline" else ci
                    spent[name] += workers[name].run(index, out_dir / f"{name}.jsonl",
                                                     {"ab_round": r, "ab_side": name})
            print(f"  round {r + 1}/{rounds}: {len(pairs)} configs, A {spent['baseline']:.1f} s,"
                  f" B {spent['candidate']:.1f} s", file=sys.stderr)
    finally:
        for w in workers.values():
            w.close()


def _by_runs(sides: dict[str, Side], flags: list[str], rounds: int, threads: int,
             out_dir: Path, scratch: Path) -> None:
    """Fallback mode: whole ``trainmark run`` processes alternate, A B A B ... A."""
    order = interleave(rounds)
    for i, name in enumerate(order):
        side = sides[name]
        out = out_dir / f"{name}-{len(side.seconds)}.jsonl"
        seconds = run_block(side, flags, out, threads, scratch / f"cwd-{name}")
        print(f"  [{i + 1}/{len(order)}] {side.label}: {seconds:.1f} s", file=sys.stderr)


def cmd_ab(args: argparse.Namespace) -> int:
    from harness.compare import load_side, report, settings_from_args
    from harness.provenance import REPO_ROOT
    from harness.runner import new_run_id

    settings_from_args(args)
    if args.rounds is None:
        args.rounds = DEFAULT_ROUNDS[args.interleave]
    if args.rounds < 1:
        raise UserError(f"--rounds must be > 0, got {args.rounds}")
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0, got {args.threads}")
    candidate_env = parse_env(args.candidate_env)
    flags, n_configs = sweep_flags(args)
    top = repo_toplevel(REPO_ROOT)
    ref_sha = resolve_ref(top, args.ref)
    run_id = new_run_id()
    out_dir = Path(args.out_dir or Path("results") / f"ab-{run_id}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"--out-dir {out_dir} is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    out_dir = out_dir.resolve()
    args.md_out = args.md_out or str(out_dir / "verdict.md")
    args.json_out = args.json_out or str(out_dir / "verdict.json")

    if args.interleave == "configs":
        plan = f"{args.rounds} rounds of {n_configs} configs, A and B back to back per config"
    else:
        plan = f"{2 * args.rounds + 1} whole runs, " + " ".join(
            "AB"[s == "candidate"] for s in interleave(args.rounds))
    print(f"ab: {args.ref} ({ref_sha[:10]}) vs the working tree; {plan}; threads="
          f"{args.threads or 'inherited'}; results in {out_dir}", file=sys.stderr)
    started = time.perf_counter()
    try:
        with sigterm_as_interrupt(), worktree(top, ref_sha) as wt:
            sides = {
                "baseline": Side("baseline", wt / REPO_ROOT.relative_to(top),
                                 f"A = {args.ref} ({ref_sha[:10]})"),
                "candidate": Side("candidate", REPO_ROOT, "B = working tree",
                                  extra_env=candidate_env),
            }
            if args.interleave == "configs":
                _by_configs(sides, flags, args.rounds, args.threads, out_dir, wt.parent, run_id)
            else:
                _by_runs(sides, flags, args.rounds, args.threads, out_dir, wt.parent)
    except KeyboardInterrupt:
        print(f"ab: interrupted; the worktree was removed, partial results in {out_dir}",
              file=sys.stderr)
        return 130
    base = load_side(sorted(out_dir.glob("baseline*.jsonl")), "baseline")
    cand = load_side(sorted(out_dir.glob("candidate*.jsonl")), "candidate")
    check_baseline_commit(base, ref_sha)
    print(f"ab: done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return report(base, cand, args, title=f"trainmark ab {args.ref}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from harness.compare import add_compare_options

    p = sub.add_parser(
        "ab", allow_abbrev=False,  # --out must not silently mean --out-dir
        help="A/B: a git ref vs the working tree, interleaved on this machine",
        description="Run the same suite (default: ci) on REF and on the working tree, "
                    "interleaved, then compare; exit 0 no regression, 1 regression, 2 usage.")
    p.add_argument("ref", metavar="REF", help="git ref for the baseline, e.g. origin/main, HEAD")
    p.add_argument("--rounds", type=int, default=None,
                   help=f"A/B pairs per config (default {DEFAULT_ROUNDS['configs']}); with "
                        "--interleave runs: candidate runs, bracketed by rounds+1 baseline runs "
                        f"(default {DEFAULT_ROUNDS['runs']})")
    p.add_argument("--interleave", choices=("configs", "runs"), default="configs",
                   help="configs: one worker per side, A and B back to back per config "
                        "(default); runs: alternate whole `trainmark run` processes")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help="OMP/MKL threads per run, same on both sides; 0 inherits the "
                        f"environment (default {DEFAULT_THREADS})")
    p.add_argument("--out-dir", help="where the runs and verdicts go (default results/ab-<id>)")
    p.add_argument("--candidate-env", action="append", metavar="NAME=VALUE",
                   help="TEST ONLY: extra environment for the candidate side, e.g. "
                        "TRAINMARK_INJECT_SLOWDOWN=0.1 to check the gate detects a slowdown")
    add_compare_options(p)
    add_suite_options(p)
    p.set_defaults(func=cmd_ab)
