"""``trainmark fleet``: one sweep over many Slurm partitions (or node types), one folder of
records, one report.

    trainmark fleet --partitions h100,a100 [run's sweep flags] --out-dir DIR   # submit, wait
    trainmark fleet ... --detach                                               # submit only
    trainmark fleet status DIR [--wait]                                        # later

Each job is an ordinary isolated ``trainmark run`` on one node of its partition, appending to
``DIR/<partition>.jsonl`` (``execution.fleet_job``); this command plans, submits through the
executor seam (``execution.executor``: Slurm via submitit, or ``--executor local``), waits with
a progress line, and turns the configs of a job that died into ``crashed``/``timeout`` records
(``execution.fleet``). Running the same command again submits only what DIR lacks. Exit status:
0 every config recorded, 1 configs lost with a dead job (named), 2 bad input (nothing submitted,
nothing written), 130 interrupted (the jobs keep running).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.cli.paths import writable_dir
from harness.cli.sweep_options import (
    add_sweep_options,
    overrides_from_args,
    run_arguments,
    suite_of,
)
from harness.errors import UserError

EXECUTORS = ("slurm", "local")  # execution.executor.EXECUTORS, named here for a light --help
DEFAULT_TIME_LIMIT_MIN = 60
DEFAULT_POLL_S = 5.0
DEFAULT_TIMEOUT_S = 1800.0  # execution.isolation.DEFAULT_TIMEOUT_S
SLURM_ONLY = ("constraint", "exclude", "account", "qos", "sbatch", "each_node", "wckey")


def configure(p: argparse.ArgumentParser) -> None:
    p.description = ("Run one sweep on every partition of a Slurm cluster (one `trainmark run` "
                     "job per partition), wait, and keep every record in one folder; "
                     "`trainmark fleet status DIR` shows a fleet later. Here --nproc G (with "
                     "--nodes N) runs each config as one DDP job of NxG ranks started by srun, "
                     "one task per GPU.")
    p.set_defaults(func=cmd_fleet)
    sub = p.add_subparsers(dest="fleet_command", parser_class=type(p), metavar="status")
    st = sub.add_parser("status", help="a fleet's jobs and records (settles dead jobs)")
    st.add_argument("dir", metavar="DIR", help="the fleet's --out-dir")
    st.add_argument("--wait", action="store_true", help="wait until every job has ended")
    st.add_argument("--poll", type=float, default=DEFAULT_POLL_S, metavar="SECONDS",
                    help=f"seconds between looks at the jobs (default {DEFAULT_POLL_S:g})")
    st.set_defaults(func=cmd_status)

    add_sweep_options(p, default_suite="quick")
    p.add_argument("--partitions", help="comma list of Slurm partitions, e.g. h100,a100 "
                                        "(with --executor local: names for this machine)")
    p.add_argument("--out-dir", help="folder for the records, on a filesystem every node "
                                     "sees; the same folder again resumes")
    p.add_argument("--executor", choices=EXECUTORS, default="slurm",
                   help="slurm (default): submit with sbatch through submitit; local: run the "
                        "same plan on this machine")
    p.add_argument("--detach", action="store_true",
                   help="submit and return; follow with `trainmark fleet status DIR`")
    p.add_argument("--nodes", type=int, default=1,
                   help="nodes per job: >1 runs each config as one DDP job across them, "
                        "started by srun (default 1)")
    p.add_argument("--each-node", action="store_true",
                   help="one job per node of each partition (pinned with --nodelist): the "
                        "report's node health compares them")
    p.add_argument("--time-limit", type=int, default=DEFAULT_TIME_LIMIT_MIN, metavar="MINUTES",
                   help=f"each job's Slurm time limit (default {DEFAULT_TIME_LIMIT_MIN})")
    p.add_argument("--gpus-per-node", type=int, metavar="N",
                   help="GPUs each job asks for (default: --nproc's count where the partition's "
                        "nodes have GPUs and a device wants one, else 0)")
    p.add_argument("--cpus-per-task", type=int, metavar="N",
                   help="CPUs per task (rank) (default: the node's CPUs shared by its tasks)")
    p.add_argument("--shared", action="store_true",
                   help="do not take whole nodes: no --exclusive, no --mem=0, CPUs per task "
                        "only with --cpus-per-task (default: each job has its node to itself, "
                        "as timing needs)")
    p.add_argument("--wckey", help="Slurm --wckey (default: none)")
    p.add_argument("--constraint", help="Slurm --constraint (node features)")
    p.add_argument("--exclude", help="Slurm --exclude: nodes not to use, e.g. bad nodes")
    p.add_argument("--account", help="Slurm --account")
    p.add_argument("--qos", help="Slurm --qos")
    p.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                   help="an extra #SBATCH option, e.g. --sbatch=--mail-type=END; repeatable")
    p.add_argument("--setup", action="append", default=[], metavar="LINE",
                   help="a shell line run before each job, e.g. 'source ~/venv/bin/activate' "
                        "or 'module load cuda'; repeatable")
    p.add_argument("--python", metavar="CMD",
                   help="the jobs' Python (default: this one; the nodes must see it)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help=f"per-config limit inside each job (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--allow-different-code", action="store_true",
                   help="merge records of other code into DIR (and let a node whose trainmark "
                        "differs run its job)")
    p.add_argument("--poll", type=float, default=DEFAULT_POLL_S, metavar="SECONDS",
                   help=f"seconds between looks at the jobs (default {DEFAULT_POLL_S:g})")


def _names(flag: str, text: str | None) -> list[str]:
    names = [t.strip() for t in (text or "").split(",") if t.strip()]
    if not names:
        raise UserError(f"{flag} is required: a comma list of partitions, e.g. --partitions "
                        "h100,a100" if text is None else f"{flag}: empty list {text!r}")
    return list(dict.fromkeys(names))


def _check_numbers(args: argparse.Namespace) -> None:
    for flag, value, least in (("--nodes", args.nodes, 1), ("--time-limit", args.time_limit, 1),
                               ("--gpus-per-node", args.gpus_per_node, 0),
                               ("--cpus-per-task", args.cpus_per_task, 1)):
        if value is not None and value < least:
            raise UserError(f"{flag} must be at least {least}, got {value}")
    for flag, value in (("--timeout", args.timeout), ("--poll", args.poll)):
        if not value > 0:
            raise UserError(f"{flag} must be a positive number of seconds, got {value}")


def _check_conflicts(args: argparse.Namespace) -> None:
    if args.each_node and args.nodes > 1:
        raise UserError("--each-node runs one job per node; it cannot be combined with "
                        f"--nodes {args.nodes}")
    if args.executor == "local":
        given = [f"--{name.replace('_', '-')}" for name in SLURM_ONLY if getattr(args, name)]
        if args.nodes > 1:
            given.insert(0, f"--nodes {args.nodes}")
        if given:
            raise UserError(f"{given[0]} is for --executor slurm; --executor local runs on "
                            "this one machine")


def build_request(args: argparse.Namespace):
    """The fleet's plan request from the flags; ``UserError`` for any bad value."""
    from harness.core.suites import load_suite, merge_settings, suite_name
    from harness.execution.executor import JobRequest, parse_sbatch_options
    from harness.execution.fleet_plan import FleetRequest

    partitions = _names("--partitions", args.partitions)
    if not args.out_dir:
        raise UserError("--out-dir is required: the folder every job writes its records to")
    out_dir = writable_dir("--out-dir", args.out_dir)
    _check_numbers(args)
    _check_conflicts(args)
    parse_sbatch_options(args.sbatch)
    overrides = overrides_from_args(args)
    nproc = tuple(dict.fromkeys(overrides["nproc"] or [1]))
    if min(nproc) < 1:
        raise UserError(f"--nproc takes rank counts of at least 1, got {args.nproc!r}")
    settings = merge_settings(load_suite(suite_of(args)), {**overrides, "nproc": [1]})
    suite = Path(args.suite).resolve() if args.suite and Path(args.suite).is_file() \
        else Path(suite_of(args))
    run_argv = run_arguments(argparse.Namespace(**{**vars(args), "nproc": None}), suite)
    job = JobRequest(name="trainmark", partition="", time_limit_min=args.time_limit,
                     cpus_per_task=args.cpus_per_task, constraint=args.constraint,
                     exclude=args.exclude, account=args.account, qos=args.qos,
                     whole_node=not args.shared, wckey=args.wckey,
                     sbatch=tuple(args.sbatch), setup=tuple(args.setup), python=args.python)
    return FleetRequest(out_dir=out_dir, partitions=tuple(partitions), settings=settings,
                        run_argv=tuple(run_argv), job=job, executor=args.executor,
                        nodes=args.nodes, nproc=nproc, each_node=args.each_node,
                        gpus_per_node=args.gpus_per_node, timeout_s=args.timeout,
                        allow_different_code=args.allow_different_code,
                        suite=suite_name(suite_of(args)))


def cmd_fleet(args: argparse.Namespace) -> int:
    from harness.core.data import check_dataset
    from harness.execution import fleet
    from harness.execution.executor import engine
    from harness.execution.fleet_job import fleet_folder
    from harness.execution.fleet_plan import check_code, load_jobs, manifest_path, plan
    from harness.probes.provenance import code_identity

    request = build_request(args)
    out_dir = request.out_dir
    runner = engine(request.executor, fleet_folder(out_dir) / "jobs")
    runner.check()
    plans = plan(request, runner.partitions(request.partitions))  # every config validated
    for name in dict.fromkeys(c.dataset for p in plans for c in p.configs):
        check_dataset(name, args.data_dir, args.download)
    code = code_identity()
    check_code(out_dir, code, request.allow_different_code)
    earlier = load_jobs(out_dir) if manifest_path(out_dir).exists() else []
    other = {j.executor for j in earlier if j.settled is None} - {request.executor}
    if other:
        raise UserError(f"{out_dir} has jobs of --executor {other.pop()} not yet settled; "
                        f"settle them with: trainmark fleet status {out_dir} --wait")
    if earlier:  # a rerun: nothing may still be writing, and dead jobs are settled first
        states = fleet.job_states(runner, out_dir, earlier) or {}
        active = [j.job_id for j in earlier if j.settled is None
                  and (j.job_id not in states or states[j.job_id].active)]
        if active:
            raise UserError(f"{out_dir} has jobs still running or unknown ({', '.join(active)})"
                            f"; wait with: trainmark fleet status {out_dir} --wait")
        fleet.watch(out_dir, runner, earlier, poll_s=args.poll, say=_quiet, wait=False)
        plans = plan(request, runner.partitions(request.partitions))

    todo = sum(len(p.todo) for p in plans)
    if not todo:
        print(f"fleet: every config is already recorded ok in {out_dir}; nothing to submit")
        return 0
    jobs = fleet.submit(out_dir, runner, plans, code, request.allow_different_code)
    for job in jobs:
        print(f"fleet: {job.executor} job {job.job_id} on {job.slot}: {len(job.configs)} "
              f"config(s) -> {job.results}", flush=True)
    if args.detach:
        print(f"fleet: detached; follow with: trainmark fleet status {out_dir} --wait")
        return 0
    return _wait_and_tell(out_dir, runner, jobs, args.poll)


def cmd_status(args: argparse.Namespace) -> int:
    from harness.execution.executor import engine
    from harness.execution.fleet_job import fleet_folder
    from harness.execution.fleet_plan import load_jobs

    if not args.poll > 0:
        raise UserError(f"--poll must be a positive number of seconds, got {args.poll}")
    out_dir = Path(args.dir)
    if not out_dir.is_dir():
        raise UserError(f"{out_dir} is not a fleet folder (no such directory)")
    jobs = load_jobs(out_dir)
    runner = engine(jobs[-1].executor, fleet_folder(out_dir) / "jobs")
    if any(j.settled is None for j in jobs):
        runner.check()
    if args.wait:
        return _wait_and_tell(out_dir, runner, jobs, args.poll)
    return _tell(out_dir, runner, jobs, wait=False, poll_s=args.poll)


def _quiet(*_: object) -> None:
    return None


def _wait_and_tell(out_dir: Path, runner, jobs: list, poll_s: float) -> int:
    try:
        return _tell(out_dir, runner, jobs, wait=True, poll_s=poll_s)
    except KeyboardInterrupt:
        print(f"\nfleet: interrupted; the jobs keep running: trainmark fleet status {out_dir} "
              "--wait", file=sys.stderr)
        return 130


def _tell(out_dir: Path, runner, jobs: list, *, wait: bool, poll_s: float) -> int:
    from harness.execution import fleet

    tty = sys.stdout.isatty()
    last = {"text": "", "states": {}}

    def say(progress, states) -> None:
        last["states"] = states
        text = progress.line()
        if tty:
            print("\r" + text.ljust(len(last["text"])), end="", flush=True)
        elif text.rsplit("|", 1)[0] != last["text"].rsplit("|", 1)[0]:
            print(text, flush=True)  # a log gets a line when something changed
        last["text"] = text

    started = time.monotonic()
    fleet.watch(out_dir, runner, jobs, poll_s=poll_s, say=say, wait=wait, started=started)
    if tty:
        print()
    rows = fleet.summary_rows(jobs, last["states"])
    print(f"{'job':>10} {'slot':<20} {'node':<14} {'state':<12} recorded  ok  reason")
    for r in rows:
        print(f"{r['job']:>10} {r['slot']:<20} {str(r['node'] or '-'):<14} {r['state']:<12} "
              f"{r['recorded']:>4}/{r['configs']:<4} {r['ok']:>3}  {r['reason'][:80]}")
    lost = fleet.lost_lines(jobs)
    for line in lost:
        print(f"fleet: {line}", file=sys.stderr)
    if lost:
        print(f"fleet: lost configs are recorded as crashed/timeout in {out_dir}; run the same "
              "command again to measure only them", file=sys.stderr)
    if all(j.settled is not None for j in jobs):
        print(f"fleet: records in {out_dir}; report with: trainmark report {out_dir}")
    return 1 if lost else 0
