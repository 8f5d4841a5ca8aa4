"""``trainmark fleet``'s submitting side: submit the plan, wait, notice dead jobs, settle them.

The submitting side never measures. It submits one job per slot that has configs to run
(``execution.fleet_plan``) through an engine (``execution.executor``), then polls the jobs'
states and their results files. A job that ends having recorded every config it was given is
done. A job that ends without recording some (cancelled, past its time limit, its node lost,
killed for memory, or its ``trainmark run`` refused to start) is *settled*: each missing config
becomes a record, ``timeout`` when the scheduler ended the job at its time limit and ``crashed``
otherwise, whose ``error`` carries the scheduler's state and reason, the job's last words and
the node, appended to the slot's results file; a rerun of the same command measures them again.
A job's state never depends on ``sacct`` (see ``execution.executor``), so a dead job cannot
leave the waiter hanging.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.config import record_key
from harness.errors import UserError
from harness.execution.batch_search import search_key
from harness.execution.executor import ACTIVE_STATES, GONE, JobState
from harness.execution.fleet_job import read_end_marker, run_job
from harness.execution.fleet_plan import (
    FleetJob,
    SlotPlan,
    record_settled,
    record_submitted,
)
from harness.schema import SCHEMA_VERSION, new_record_id, new_run_id, utc_timestamp
from harness.store.jsonl import ResultsWriter, read_records

PENDING_STATES = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD",
                            "REQUEUE_FED"})
# Provenance copied onto a settled config's record from the slot's newest record, so that the
# lost config is reported on its machine rather than on an "unknown device".
MACHINE_COPY = ("host", "os", "python", "torch_version", "torchvision_version", "cuda_version",
                "cudnn_version", "device_name", "driver_version", "cpu_model", "num_threads",
                "trainmark_version", "host_heap")


@dataclass
class Progress:
    pending: int
    running: int
    done: int
    recorded: int  # configs the jobs were given that have a record by their job
    planned: int
    elapsed_s: float

    def line(self) -> str:
        m, s = divmod(int(self.elapsed_s), 60)
        return (f"fleet: {self.pending} pending, {self.running} running, {self.done} done | "
                f"{self.recorded}/{self.planned} configs recorded | {m}:{s:02d}")


def submit(out_dir: Path, engine, plans: Sequence[SlotPlan], code: dict[str, str],
           allow_different_code: bool) -> list[FleetJob]:
    """Submit one job per slot with configs to run; the manifest records each at once."""
    jobs: list[FleetJob] = []
    for p in plans:
        if not p.todo:
            continue
        spec = {"out_dir": str(out_dir.resolve()), "partition": p.slot.partition,
                "argv": p.argv, "code_digest": code["code_digest"],
                "code_identity": code["code_identity"],
                "allow_different_code": allow_different_code}
        try:
            job_id = engine.submit(run_job, spec, p.request)
        except UserError as exc:
            if not jobs:
                raise
            done = ", ".join(f"{j.job_id} ({j.slot})" for j in jobs)
            raise UserError(f"{exc}; jobs already submitted: {done}; follow them with "
                            f"trainmark fleet status {out_dir}") from None
        jobs.append(record_submitted(out_dir, job_id, engine.name, p, code))
    return jobs


def records_by(job: FleetJob) -> list[dict]:
    """The records ``job`` wrote into its slot's results file (its id is on each one), not
    those the waiter wrote for it once it had died."""
    return [r for r in _read(job.results)
            if str(r.get("job_id")) == job.job_id and r.get("recorded_by") != "fleet"]


def missing(job: FleetJob) -> list:
    """The job's configs without a record by the job."""
    have = {search_key(record_key(r)) for r in records_by(job)}
    return [c for c in job.configs if search_key(c.key()) not in have]


def job_states(engine, out_dir: Path, jobs: Sequence[FleetJob]) -> dict[str, JobState] | None:
    """Each unsettled job's state, completed from its own files where the engine has forgotten
    it or ended it; None when the engine does not answer."""
    open_ids = [j.job_id for j in jobs if j.settled is None]
    raw = engine.states(open_ids) if open_ids else {}
    if raw is None:
        return None
    out = {}
    for jid, st in raw.items():
        if st.active:
            out[jid] = st
            continue
        marker = read_end_marker(out_dir, jid)
        words_state, words = engine.last_words(jid)
        state, reasons = st.state, [st.reason] if st.reason else []
        if marker is not None:
            node = marker.get("node") or st.node
            if marker.get("error"):
                reasons.append(str(marker["error"]))
            elif marker.get("exit_code") not in (0, None):
                reasons.append(f"trainmark run exited with status {marker['exit_code']}")
            if state == GONE:
                state = "COMPLETED" if marker.get("exit_code") == 0 else "FAILED"
        else:
            node = st.node
            if state == GONE:
                state = words_state or GONE
                if words_state is None:
                    reasons.append("the scheduler no longer knows the job and it left no end "
                                   "marker")
        if words and (state != "COMPLETED" or (marker or {}).get("exit_code") not in (0, None)):
            reasons.append(words)
        out[jid] = JobState(jid, state, "; ".join(dict.fromkeys(reasons)), node)
    return out


def settle(out_dir: Path, engine_name: str, job: FleetJob, state: JobState) -> list:
    """Record every config ``job`` did not record (it has ended): ``timeout`` records when
    the scheduler stopped it at its time limit, else ``crashed``. Returns those configs."""
    lost = missing(job)
    if lost:
        status = "timeout" if state.state == "TIMEOUT" else "crashed"
        where = f" on {state.node}" if state.node else ""
        why = f"; {state.reason}" if state.reason else ""
        error = (f"fleet: {engine_name} job {job.job_id} ended {state.state}{where} before "
                 f"recording this config{why}")[:500]
        own = records_by(job)
        previous = own or _read(job.results)
        machine = {k: previous[-1].get(k) for k in MACHINE_COPY} if previous else {}
        run_id = str(own[0]["run_id"]) if own and own[0].get("run_id") else new_run_id()
        writer = ResultsWriter(job.results)
        for cfg in lost:
            writer.write({"schema_version": SCHEMA_VERSION, "run_id": run_id,
                          "suite": job.suite, "record_id": new_record_id(),
                          "timestamp": utc_timestamp(),
                          **dataclasses.asdict(cfg), "status": status, "error": error,
                          **machine, "executor": engine_name, "job_id": job.job_id,
                          "partition": job.partition, "node": state.node,
                          "code_digest": job.code_digest, "code_identity": job.code_identity,
                          "recorded_by": "fleet"})
    record_settled(out_dir, job, {"state": state.state, "reason": state.reason,
                                  "node": state.node, "lost": [c.label() for c in lost]})
    return lost


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_records(path)


def progress(jobs: Sequence[FleetJob], states: dict[str, JobState], started: float) -> Progress:
    pending = running = done = 0
    for j in jobs:
        st = states.get(j.job_id)  # None: the scheduler did not answer this time
        if j.settled is not None or (st is not None and not st.active):
            done += 1
        elif st is not None and st.state in PENDING_STATES:
            pending += 1
        else:
            running += 1
    planned = sum(len(j.configs) for j in jobs)
    recorded = planned - sum(len(missing(j)) for j in jobs)
    return Progress(pending, running, done, recorded, planned, time.monotonic() - started)


def watch(out_dir: Path, engine, jobs: Sequence[FleetJob], *, poll_s: float,
          say: Callable[[Progress, dict[str, JobState]], None], wait: bool = True,
          started: float | None = None) -> dict[str, list]:
    """Poll until every job has ended (``wait``) or once, settling each job that has ended;
    ``say`` gets the progress after each poll. Returns {job id: configs lost} for the jobs
    settled in this call. KeyboardInterrupt propagates (the jobs keep running)."""
    started = time.monotonic() if started is None else started
    lost: dict[str, list] = {}
    while True:
        states = job_states(engine, out_dir, jobs)
        if states is None:
            print("fleet: the scheduler does not answer; trying again", file=sys.stderr,
                  flush=True)
            states = {}
        for job in jobs:
            st = states.get(job.job_id)
            if job.settled is None and st is not None and st.state not in ACTIVE_STATES:
                lost[job.job_id] = settle(out_dir, engine.name, job, st)
        say(progress(jobs, states, started), states)
        if not wait or all(j.settled is not None for j in jobs):
            return lost
        time.sleep(poll_s)


def lost_lines(jobs: Sequence[FleetJob]) -> list[str]:
    """One line per settled job whose lost configs no later job of its slot recorded."""
    lines = []
    for i, job in enumerate(jobs):
        if not job.settled or not job.settled.get("lost"):
            continue
        later = [j for j in jobs[i + 1:] if j.slot == job.slot]
        redone = {c.label() for j in later for c in j.configs if c not in missing(j)}
        still = [name for name in job.settled["lost"] if name not in redone]
        if still:
            lines.append(f"{len(still)} config(s) lost with {job.executor} job {job.job_id} "
                         f"({job.settled.get('state')} on {job.settled.get('node') or '?'}, "
                         f"{job.partition}): {'; '.join(still[:4])}"
                         + (f" (+{len(still) - 4} more)" if len(still) > 4 else ""))
    return lines


def summary_rows(jobs: Sequence[FleetJob], states: dict[str, JobState]) -> list[dict]:
    """One row per job for ``fleet status``: where, state, and configs recorded."""
    rows = []
    for job in jobs:
        st = states.get(job.job_id)
        state = (job.settled or {}).get("state") or (st.state if st else "?")
        reason = (job.settled or {}).get("reason") if job.settled else (st.reason if st else "")
        recs = records_by(job)
        rows.append({"job": job.job_id, "partition": job.partition, "slot": job.slot,
                     "node": (job.settled or {}).get("node") or (st.node if st else None)
                     or next((r.get("node") for r in recs if r.get("node")), None),
                     "state": state, "configs": len(job.configs),
                     "recorded": len(job.configs) - len(missing(job)),
                     "ok": sum(1 for r in recs if r.get("status") == "ok"),
                     "reason": reason or ""})
    return rows

