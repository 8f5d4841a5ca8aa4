"""The executor seam: the one module that knows how fleet jobs reach machines.

``trainmark fleet`` plans, waits and merges (``execution.fleet``); an *engine* here submits a
job, says what state it is in, and tells a job where it runs. Two engines stand behind one
interface, both driven through ``submitit``:

- ``SlurmEngine``: ``submitit.SlurmExecutor`` writes the ``sbatch`` script and submits it; the
  job's tasks start under ``srun``. Job state comes from ``squeue`` (which shows finished jobs
  while ``slurmctld`` keeps them, ``MinJobAge``) and, once Slurm has forgotten a job, from its
  own files: the log's ``slurmstepd`` epitaph. Never from ``sacct``: clusters without an
  accounting database have none, and submitit's own watcher then reports UNKNOWN forever.
- ``LocalEngine``: ``submitit.LocalExecutor`` runs the same job on this machine (a laptop, the
  tests); its state is whether the job's controller process is alive.

Another scheduler (Kubernetes, LSF, a cloud batch service) is one more class here with the same
methods: ``check``, ``partitions``, ``submit``, ``states``, ``last_words`` and ``cancel``; inside a
job, ``job_environment`` says where it runs. Nothing else in trainmark imports submitit (an
import-linter contract in pyproject.toml keeps it so).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError

EXECUTORS = ("slurm", "local")
# Slurm job states in which a job may still write records (squeue's long names).
ACTIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                           "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING",
                           "STAGE_OUT", "STOPPED"})
GONE = "GONE"  # the engine no longer knows the job: its own files must say how it ended
SLURM_COMMAND_TIMEOUT_S = 60


@dataclass(frozen=True)
class JobRequest:
    """What one job asks of the scheduler (engine-neutral; each engine maps what it can)."""

    name: str
    partition: str
    nodes: int = 1
    tasks_per_node: int = 1  # one task per rank: a DDP job has one per GPU
    gpus_per_node: int = 0
    cpus_per_task: int | None = None  # None: the node's CPUs shared by its tasks (whole_node)
    # A timing job takes the whole node (--exclusive, all its memory: --mem=0), so no other
    # job adds noise to its figures and Slurm's defaults (one core a task, DefMemPerCPU)
    # neither starve its ranks nor kill a big build. False: ask only for what is set here.
    whole_node: bool = True
    wckey: str | None = None  # none unless given: clusters that enforce wckeys reject others
    time_limit_min: int = 60
    nodelist: str | None = None  # pin the job to a node (fleet --each-node)
    constraint: str | None = None
    exclude: str | None = None
    account: str | None = None
    qos: str | None = None
    sbatch: tuple[str, ...] = ()  # extra #SBATCH options, e.g. "--mail-type=END"
    setup: tuple[str, ...] = ()  # shell lines run before the job (activate a venv, load modules)
    python: str | None = None  # the job's interpreter; default: this one (a shared venv)


@dataclass(frozen=True)
class JobState:
    job_id: str
    state: str  # Slurm's state name (PENDING, RUNNING, COMPLETED, CANCELLED, TIMEOUT...) or GONE
    reason: str = ""  # why it is pending, or how it ended, in the engine's words
    node: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: tuple[str, ...]
    gpus_per_node: int  # the fewest GPUs any of its nodes has (0: none)
    time_limit_min: int | None  # None: no limit
    cpus_per_node: int | None = None  # the fewest CPUs any of its nodes has (None: unknown)


@dataclass(frozen=True)
class JobEnvironment:
    """Inside a job: where this task runs, and the variables its ``trainmark run`` needs to
    join the job's process group (none for a one-task job)."""

    executor: str
    job_id: str
    node: str
    rank: int
    world_size: int
    rank_env: dict[str, str] = field(default_factory=dict)


def engine(name: str, folder: Path) -> SlurmEngine | LocalEngine:
    """The engine called ``name``; its jobs keep their scripts and logs under ``folder``."""
    if name == "slurm":
        return SlurmEngine(folder)
    if name == "local":
        return LocalEngine(folder)
    raise UserError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")


def parse_sbatch_options(lines: Sequence[str]) -> dict[str, Any]:
    """``--sbatch`` values (``--mail-type=END``, ``exclusive``) -> {option: value or True}."""
    out: dict[str, Any] = {}
    for line in lines:
        text = line.strip().removeprefix("#SBATCH").strip().lstrip("-")
        key, eq, value = text.partition("=")
        if not key or " " in key:
            raise UserError(f"--sbatch {line!r}: expected an sbatch option such as "
                            "--mail-type=END or --exclusive")
        out[key] = value if eq else True
    return out


def _minutes(text: str) -> int | None:
    """A Slurm time (``60``, ``1:00:00``, ``2-00:00:00``, ``infinite``) in minutes."""
    text = text.strip()
    if not text or text.lower() in ("infinite", "unlimited", "n/a"):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        hours, minutes = parts[0], parts[1] if len(parts) > 1 else 0
        return int(days) * 1440 + hours * 60 + minutes
    if len(parts) == 3:  # hours:minutes:seconds
        return parts[0] * 60 + parts[1]
    return parts[0]  # minutes[:seconds]


def _gpus(gres: str) -> int:
    """GPUs in a node's generic resources (``gpu:4``, ``gpu:h100:8(S:0-1)``, ``(null)``)."""
    found = re.findall(r"gpu(?::[\w.-]+)?:(\d+)", gres)
    return sum(int(n) for n in found)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=SLURM_COMMAND_TIMEOUT_S)


class SlurmEngine:
    name = "slurm"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def check(self) -> None:
        """``UserError`` unless this machine can submit to a Slurm controller that answers."""
        missing = [c for c in ("sbatch", "squeue", "sinfo") if shutil.which(c) is None]
        if missing:
            raise UserError(f"Slurm is not available here ({', '.join(missing)} not found); "
                            "--executor local runs the same plan on this machine")
        try:
            proc = _run(["sinfo", "-h", "-o", "%P"])
        except (OSError, subprocess.SubprocessError) as exc:
            raise UserError(f"Slurm does not answer here (sinfo: {exc})") from None
        if proc.returncode != 0:
            said = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"Slurm does not answer here (sinfo: {said}); --executor local "
                            "runs the same plan on this machine")

    def partitions(self, names: Sequence[str]) -> dict[str, Partition]:
        """The partitions called ``names``, from ``sinfo``; ``UserError`` naming the ones it
        lists when a name is unknown."""
        proc = _run(["sinfo", "-h", "-N", "-o", "%P|%N|%G|%l|%c"])
        nodes: dict[str, list[str]] = {}
        gpus: dict[str, list[int]] = {}
        cpus: dict[str, list[int]] = {}
        limits: dict[str, int | None] = {}
        for line in proc.stdout.splitlines():
            part, node, gres, limit, ncpu = (line.split("|") + ["", "", "", ""])[:5]
            part = part.rstrip("*")  # sinfo marks the default partition
            nodes.setdefault(part, [])
            if node not in nodes[part]:
                nodes[part].append(node)
                gpus.setdefault(part, []).append(_gpus(gres))
                if ncpu.strip().isdigit():
                    cpus.setdefault(part, []).append(int(ncpu))
            limits[part] = _minutes(limit)
        unknown = [n for n in names if n not in nodes]
        if unknown:
            raise UserError(f"unknown partition {unknown[0]!r}; sinfo lists: "
                            f"{', '.join(nodes) or 'none'}")
        return {n: Partition(n, tuple(nodes[n]), min(gpus[n]), limits[n],
                             min(cpus[n]) if cpus.get(n) else None) for n in names}

    def submit(self, fn: Callable[[dict], int], spec: dict, request: JobRequest) -> str:
        """Submit ``fn(spec)`` as one job; its id."""
        import submitit

        ex = submitit.SlurmExecutor(folder=str(self.folder / "%j"), max_num_timeout=0,
                                    python=request.python)
        ex.update_parameters(**slurm_parameters(request))
        try:
            return str(ex.submit(fn, spec).job_id)
        except Exception as exc:  # sbatch refused the job: the whole message is the answer
            raise UserError(f"sbatch refused the job for partition {request.partition!r}: "
                            f"{' '.join(str(exc).split())[:400]}") from None

    def states(self, job_ids: Sequence[str]) -> dict[str, JobState] | None:
        """State of each job; ``GONE`` for one Slurm no longer lists; None when Slurm does not
        answer (nothing can be concluded this time)."""
        try:
            # --me: this user's jobs only; a poll every few seconds must not list a whole
            # cluster's queue (-t all: finished jobs too, while slurmctld keeps them)
            proc = _run(["squeue", "-h", "--me", "-t", "all", "-o", "%i|%T|%r|%N"])
        except (OSError, subprocess.SubprocessError):
            return None
        if proc.returncode != 0:
            return None
        listed = {}
        for line in proc.stdout.splitlines():
            jid, state, reason, node = (line.split("|") + ["", "", ""])[:4]
            listed[jid.strip()] = JobState(jid.strip(), state.strip(),
                                           "" if reason.strip() == "None" else reason.strip(),
                                           node.strip() or None)
        return {j: listed.get(j, JobState(j, GONE)) for j in job_ids}

    def last_words(self, job_id: str) -> tuple[str | None, str]:
        """How a job ended, from its own log when Slurm no longer knows it: a state (CANCELLED,
        TIMEOUT, NODE_FAIL, OUT_OF_MEMORY or None) and the telling line."""
        return _epitaph(self.folder / job_id / f"{job_id}_0_log.err")

    def cancel(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            _run(["scancel", *job_ids])


def slurm_parameters(request: JobRequest) -> dict[str, Any]:
    """``submitit.SlurmExecutor`` parameters for ``request``. ``wckey`` is None unless given
    (submitit's default, "submitit", is refused where wckeys are enforced); a whole-node job
    asks ``--exclusive`` and ``--mem=0``; CPUs per task are exported as
    ``SRUN_CPUS_PER_TASK``, without which srun of Slurm 22.05-23.02 gives each task one CPU
    whatever sbatch was asked."""
    params: dict[str, Any] = {
        "job_name": request.name, "partition": request.partition,
        "time": request.time_limit_min, "nodes": request.nodes,
        "ntasks_per_node": request.tasks_per_node, "wckey": request.wckey,
    }
    setup = list(request.setup)
    if request.cpus_per_task:
        setup.insert(0, f"export SRUN_CPUS_PER_TASK={request.cpus_per_task}")
    optional = {"gpus_per_node": request.gpus_per_node or None,
                "cpus_per_task": request.cpus_per_task, "nodelist": request.nodelist,
                "constraint": request.constraint, "exclude": request.exclude,
                "account": request.account, "qos": request.qos,
                "setup": setup or None}
    # As sbatch options (submitit would convert a mem figure to "0GB"); --sbatch overrides.
    whole = {"exclusive": True, "mem": "0"} if request.whole_node else {}
    extra = {**whole, **parse_sbatch_options(request.sbatch)}
    optional["additional_parameters"] = extra or None
    params.update({k: v for k, v in optional.items() if v is not None})
    return params


_EPITAPHS = (("DUE TO TIME LIMIT", "TIMEOUT"), ("DUE TO NODE FAILURE", "NODE_FAIL"),
             ("DUE TO PREEMPTION", "PREEMPTED"), ("CANCELLED", "CANCELLED"),
             ("oom-kill", "OUT_OF_MEMORY"), ("Out Of Memory", "OUT_OF_MEMORY"))


def _epitaph(log: Path) -> tuple[str | None, str]:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None, ""
    for line in reversed(lines):
        if "slurmstepd" in line or "oom-kill" in line:
            for words, state in _EPITAPHS:
                if words in line:
                    return state, line[:200]
    return None, lines[-1][:200] if lines else ""


class LocalEngine:
    """submitit's local executor: every "partition" is this machine."""

    name = "local"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.jobs: dict[str, Any] = {}  # job id -> submitit LocalJob (this process's jobs)

    def check(self) -> None:
        return None

    def partitions(self, names: Sequence[str]) -> dict[str, Partition]:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return {n: Partition(n, (socket.gethostname(),), gpus, None) for n in names}

    def submit(self, fn: Callable[[dict], int], spec: dict, request: JobRequest) -> str:
        import submitit

        if request.nodes > 1:
            raise UserError("--executor local runs on this one machine: --nodes must be 1")
        ex = submitit.LocalExecutor(folder=str(self.folder / "%j"), max_num_timeout=0,
                                    python=request.python)
        ex.update_parameters(timeout_min=request.time_limit_min,
                             tasks_per_node=request.tasks_per_node,
                             gpus_per_node=request.gpus_per_node,
                             **({"setup": list(request.setup)} if request.setup else {}))
        job = ex.submit(fn, spec)
        self.jobs[str(job.job_id)] = job
        return str(job.job_id)

    def states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        out = {}
        for jid in job_ids:
            job = self.jobs.get(jid)
            if job is not None:  # started here: submitit polls (and reaps) its process
                alive = job.state == "RUNNING"
            else:  # started by another trainmark process (fleet --detach): is the pid alive?
                alive = _controller_alive(jid)
            out[jid] = JobState(jid, "RUNNING", node=socket.gethostname()) if alive \
                else JobState(jid, GONE)
        return out

    def last_words(self, job_id: str) -> tuple[str | None, str]:
        return _epitaph(self.folder / job_id / f"{job_id}_0_log.err")

    def cancel(self, job_ids: Sequence[str]) -> None:
        for jid in job_ids:
            if jid in self.jobs:
                self.jobs[jid].cancel()


def _controller_alive(pid: str) -> bool:
    """A local job's controller process is alive: running (not a zombie) and still submitit's
    (a pid can be reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and b"submitit" in cmdline


def job_environment() -> JobEnvironment:
    """Where this job task runs; call inside a job only. A job of several tasks (DDP) gets the
    variables its ranks need: under Slurm, ``MASTER_ADDR`` (the first node) and
    ``MASTER_PORT`` beside Slurm's own ``SLURM_PROCID``/``SLURM_NTASKS``, which
    ``core.dist`` reads; locally, torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` too.

    The time-limit warning submitit asks Slurm for (``USR2``) is ignored here: the job keeps
    measuring until the limit, so Slurm records it as TIMEOUT, which the fleet reports."""
    import signal

    import submitit

    env = submitit.JobEnvironment()
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    executor = os.environ.get("SUBMITIT_EXECUTOR", "local")
    job_id = str(env.job_id)
    # one port per job, under Linux's ephemeral range (32768-60999), as core.dist picks it
    port = str(20000 + int(re.sub(r"\D", "", job_id) or 0) % 12000)
    rank_env: dict[str, str] = {}
    if env.num_tasks > 1 and executor == "slurm":
        rank_env = {"MASTER_ADDR": env.hostnames[0], "MASTER_PORT": port}
    elif env.num_tasks > 1:
        rank_env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
                    "RANK": str(env.global_rank), "WORLD_SIZE": str(env.num_tasks),
                    "LOCAL_RANK": str(env.local_rank)}
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    return JobEnvironment(executor, job_id, node, env.global_rank, env.num_tasks, rank_env)
