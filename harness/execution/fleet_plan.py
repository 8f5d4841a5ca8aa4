"""A fleet's plan and its manifest: which job runs which configs where, and what was submitted.

The plan has one *slot* per partition (and per node with ``--each-node``, and per DDP shape):
one results file, ``DIR/<slot>.jsonl``, that the slot's jobs write with ``trainmark run --out
FILE --resume``, so a rerun's job measures exactly the configs the file lacks, and no two jobs
ever write one file at once (a slot is submitted again only once its last job is over).

Configs are planned here with the devices of the partition's nodes, not of this machine (a
login node has no GPU): ``auto`` is the job's first GPU where it asks for GPUs, else the CPU, as
``trainmark run`` on the node resolves it. The manifest, ``DIR/fleet/jobs.jsonl``, is appended
one line per event (a job submitted, a job settled), so a killed ``fleet`` loses nothing and
``fleet status`` can pick up where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.config import RunConfig, record_key
from harness.core.devices import resolve_device
from harness.core.suites import expand
from harness.errors import UserError
from harness.execution.batch_search import search_key
from harness.execution.executor import JobRequest, Partition
from harness.execution.fleet_job import fleet_folder
from harness.schema import utc_timestamp
from harness.store.jsonl import ResultsWriter, read_records


@dataclass(frozen=True)
class Slot:
    """Where one stream of jobs runs: a partition (one node of it with ``--each-node``) and a
    job shape (``nodes`` x ``tasks_per_node`` ranks; 1 x 1 is a plain isolated sweep)."""

    partition: str
    node: str | None
    nodes: int = 1
    tasks_per_node: int = 1

    @property
    def world(self) -> int:
        return self.nodes * self.tasks_per_node

    @property
    def name(self) -> str:
        """The results file's stem, e.g. ``hw_a``, ``hw_a-node07``, ``hw_a-ddp2x4``."""
        parts = [self.partition, *([self.node] if self.node else [])]
        if self.world > 1:
            parts.append(f"ddp{self.nodes}x{self.tasks_per_node}")
        return "-".join(parts)


@dataclass(frozen=True)
class FleetRequest:
    """Everything a fleet plan needs, as plain values (the CLI builds it from its flags)."""

    out_dir: Path
    partitions: tuple[str, ...]
    settings: dict[str, Any]  # core.suites settings, nproc already [1]
    run_argv: tuple[str, ...]  # the sweep as `trainmark run` arguments (absolute paths)
    job: JobRequest  # the scheduler options; name, partition and shape are set per slot
    executor: str = "slurm"
    nodes: int = 1
    nproc: tuple[int, ...] = (1,)  # ranks per node, one slot per value
    each_node: bool = False
    gpus_per_node: int | None = None  # None: the partition's GPUs where a device wants one
    timeout_s: float = 1800.0  # per config, inside the job (trainmark run --timeout)
    allow_different_code: bool = False
    suite: str | None = None  # its name (core.suites.suite_name): a dead job's records get it


@dataclass
class SlotPlan:
    slot: Slot
    configs: list[RunConfig]  # the whole sweep on this slot
    todo: list[RunConfig]  # those its results file lacks (not recorded ok)
    results: Path
    request: JobRequest
    argv: list[str]  # the job's `trainmark run` arguments
    suite: str | None = None  # FleetRequest.suite


def partition_devices(partition: str, gpus: int) -> Callable[[str], str]:
    """A device resolver (``core.suites.expand``) for a job on ``partition`` given ``gpus``
    GPUs per node: what ``trainmark run`` on such a node resolves each spec to."""
    def resolve(spec: str) -> str:
        spec = spec.strip().lower()
        if spec == "cpu" or (spec == "auto" and not gpus):
            return "cpu"
        if spec == "auto":
            return "cuda:0"
        if spec == "cuda" or spec.startswith("cuda:"):
            index = spec.partition(":")[2] or "0"
            if not index.isdigit():
                raise UserError(f"bad device {spec!r}; valid: auto, cpu, cuda, cuda:N")
            if int(index) >= gpus:
                raise UserError(f"device {spec!r}: the job on partition {partition!r} gets "
                                f"{gpus} GPU(s) per node (sinfo's gres, or --gpus-per-node)")
            return f"cuda:{int(index)}"
        raise UserError(f"device {spec!r} is not available on partition {partition!r}; "
                        "valid: auto, cpu, cuda, cuda:N")
    return resolve


def ok_keys(results: Path) -> set[tuple]:
    """Config keys recorded ok in a results file (as ``trainmark run --resume`` counts them)."""
    if not results.exists():
        return set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a torn tail: the job's writer cuts it on resume
        return {search_key(record_key(r)) for r in read_records(results)
                if r.get("status") == "ok"}


def _gpus(request: FleetRequest, part: Partition, tasks: int) -> int:
    if request.gpus_per_node is not None:
        return request.gpus_per_node
    wants = any(str(d).strip().lower() != "cpu" for d in request.settings["devices"])
    return min(part.gpus_per_node, tasks) if wants and part.gpus_per_node else 0


def _cpus(job: JobRequest, part: Partition, tasks: int) -> int | None:
    """CPUs per task: as given; for a whole-node job the node's CPUs shared by its tasks
    (Slurm's default of one a task starves ranks that run data loaders and threads)."""
    if job.cpus_per_task or not job.whole_node or not part.cpus_per_node:
        return job.cpus_per_task
    return max(1, part.cpus_per_node // tasks)


def plan(request: FleetRequest, partitions: dict[str, Partition]) -> list[SlotPlan]:
    """One ``SlotPlan`` per partition x shape (x node): its configs and what is left to run.
    ``UserError`` (before anything is written) for a device or time limit the partition
    cannot give."""
    plans = []
    for name in request.partitions:
        part = partitions[name]
        limit = part.time_limit_min
        if limit is not None and request.job.time_limit_min > limit:
            raise UserError(f"--time-limit {request.job.time_limit_min} minutes exceeds "
                            f"partition {name!r}'s limit of {limit} minutes")
        for tasks in request.nproc:
            gpus = _gpus(request, part, tasks)
            resolve = (resolve_device if request.executor == "local"
                       else partition_devices(name, gpus))
            world = request.nodes * tasks
            configs = list(dict.fromkeys(dataclasses.replace(c, nproc=world)
                                         for c in expand(request.settings, resolve)))
            for node in (part.nodes if request.each_node else (None,)):
                slot = Slot(name, node, request.nodes, tasks)
                results = request.out_dir / f"{slot.name}.jsonl"
                done = ok_keys(results)
                job = dataclasses.replace(request.job, name=f"trainmark-{slot.name}",
                                          partition=name, nodes=request.nodes,
                                          tasks_per_node=tasks, gpus_per_node=gpus,
                                          cpus_per_task=_cpus(request.job, part, tasks),
                                          nodelist=node or request.job.nodelist)
                argv = [*request.run_argv, "--nproc", "1", "--out", str(results.resolve()),
                        "--resume", "--no-report", "--timeout", f"{request.timeout_s:g}"]
                plans.append(SlotPlan(slot, configs,
                                      [c for c in configs if search_key(c.key()) not in done],
                                      results, job, argv, request.suite))
    return plans


# --------------------------------------------------------------------------------- manifest


@dataclass
class FleetJob:
    """A submitted job, as the manifest tells it."""

    job_id: str
    executor: str
    slot: str
    partition: str
    results: Path
    configs: list[RunConfig]
    submitted: str
    code_identity: str | None = None
    code_digest: str | None = None
    settled: dict[str, Any] | None = None  # state, reason, node, lost: set once it is over
    suite: str | None = None  # the suite's name; None in manifests from before it was kept


def manifest_path(out_dir: str | os.PathLike[str]) -> Path:
    return fleet_folder(out_dir) / "jobs.jsonl"


def record_submitted(out_dir: Path, job_id: str, executor: str, plan_: SlotPlan,
                     code: dict[str, str]) -> FleetJob:
    job = FleetJob(job_id, executor, plan_.slot.name, plan_.slot.partition, plan_.results,
                   list(plan_.todo), utc_timestamp(), code.get("code_identity"),
                   code.get("code_digest"), suite=plan_.suite)
    ResultsWriter(manifest_path(out_dir)).write({
        "event": "submitted", "job_id": job_id, "executor": executor, "slot": job.slot,
        "partition": job.partition, "results": job.results.name, "submitted": job.submitted,
        "code_identity": job.code_identity, "code_digest": job.code_digest, "suite": job.suite,
        "configs": [dataclasses.asdict(c) for c in job.configs]})
    return job


def record_settled(out_dir: Path, job: FleetJob, settled: dict[str, Any]) -> None:
    job.settled = settled
    ResultsWriter(manifest_path(out_dir)).write({"event": "settled", "job_id": job.job_id,
                                                 **settled})


def load_jobs(out_dir: Path) -> list[FleetJob]:
    """The manifest's jobs in submission order; ``UserError`` when DIR has none."""
    path = manifest_path(out_dir)
    if not path.exists():
        raise UserError(f"{out_dir} holds no fleet (no {path.relative_to(out_dir)}); start one "
                        "with trainmark fleet --partitions ... --out-dir DIR")
    jobs: dict[str, FleetJob] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = read_records(path)
    for e in events:
        if e.get("event") == "submitted":
            jobs[str(e["job_id"])] = FleetJob(
                str(e["job_id"]), str(e["executor"]), str(e["slot"]), str(e["partition"]),
                out_dir / str(e["results"]), [RunConfig(**c) for c in e["configs"]],
                str(e["submitted"]), e.get("code_identity"), e.get("code_digest"),
                suite=e.get("suite"))
        elif e.get("event") == "settled" and str(e.get("job_id")) in jobs:
            jobs[str(e["job_id"])].settled = {k: v for k, v in e.items()
                                              if k not in ("event", "job_id")}
    return list(jobs.values())


def recorded_code(out_dir: Path) -> dict[str, str]:
    """{code digest: code identity} of the records in DIR's results files."""
    found: dict[str, str] = {}
    for path in sorted(out_dir.glob("*.jsonl")) if out_dir.is_dir() else ():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for rec in read_records(path):
                if rec.get("code_digest"):
                    found.setdefault(str(rec["code_digest"]),
                                     str(rec.get("code_identity") or rec["code_digest"]))
    return found


def check_code(out_dir: Path, mine: dict[str, str], allow: bool) -> None:
    """``UserError`` when DIR holds records of other code than this (unless ``allow``)."""
    other = {d: i for d, i in recorded_code(out_dir).items() if d != mine["code_digest"]}
    if other and not allow:
        raise UserError(f"{out_dir} holds records of other code ({', '.join(other.values())}) "
                        f"than this trainmark ({mine['code_identity']}); a fleet does not merge "
                        "them: use another --out-dir, or --allow-different-code")

