"""What a fleet job runs on its node: an ordinary ``trainmark run``, so every rule of a sweep
holds inside the job (a fresh worker per config, per-config timeouts, crashes and hangs become
records, records appended and fsynced one by one).

``run_job(spec)`` is the function the executor submits (``execution.executor``). It checks
that the node runs the code the fleet was planned with (the same ``code_digest``), then starts
``python -m harness run ARGS --out RESULTS --resume`` with the job's placement in its
environment (``probes.provenance.job_placement`` stamps it on every record) and, for a DDP job
of several tasks, the rank variables ``core.dist`` reads. Task 0 leaves an *end marker*,
``DIR/fleet/ends/<job id>.json``, when the run is over: how it ended, read by the waiter when
the scheduler has already forgotten the job.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from harness.execution.executor import job_environment
from harness.probes.provenance import JOB_ENV, code_identity

FLEET_FOLDER = "fleet"  # DIR/fleet/: the manifest, the end markers, the engine's job folders


def fleet_folder(out_dir: str | os.PathLike[str]) -> Path:
    return Path(out_dir) / FLEET_FOLDER


def end_marker(out_dir: str | os.PathLike[str], job_id: str) -> Path:
    return fleet_folder(out_dir) / "ends" / f"{job_id}.json"


def read_end_marker(out_dir: str | os.PathLike[str], job_id: str) -> dict | None:
    try:
        return json.loads(end_marker(out_dir, job_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_end(out_dir: str, job_id: str, content: dict) -> None:
    path = end_marker(out_dir, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(content), encoding="utf-8")
    os.replace(tmp, path)  # whole or absent: the waiter never reads half a marker


def run_job(spec: dict) -> int:
    """One fleet job's task. ``spec``: ``out_dir``, ``partition``, ``argv`` (the ``trainmark
    run`` arguments, results file included), ``code_digest``/``code_identity`` of the plan and
    ``allow_different_code``. Returns the run's exit status."""
    where = job_environment()
    ended = {"job_id": where.job_id, "node": where.node, "exit_code": None, "error": None}
    mine = code_identity()
    if (spec.get("code_digest") and mine["code_digest"] != spec["code_digest"]
            and not spec.get("allow_different_code")):
        ended["error"] = (f"the node's trainmark code {mine['code_identity']} differs from the "
                          f"code the fleet was planned with, {spec['code_identity']}")
        print(f"trainmark fleet job: {ended['error']}; nothing run", file=sys.stderr, flush=True)
        if where.rank == 0:
            _write_end(spec["out_dir"], where.job_id, {**ended, "ended": _now()})
        return 3
    env = {**os.environ, **where.rank_env,
           JOB_ENV["executor"]: where.executor, JOB_ENV["job_id"]: where.job_id,
           JOB_ENV["partition"]: spec["partition"], JOB_ENV["node"]: where.node}
    cmd = [sys.executable, "-m", "harness", "run", *spec["argv"]]
    meet = f" (MASTER_ADDR={where.rank_env['MASTER_ADDR']})" if where.rank_env else ""
    print(f"trainmark fleet job {where.job_id} task {where.rank}/{where.world_size} on "
          f"{where.node}{meet}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    code = subprocess.run(cmd, env=env, check=False).returncode
    if where.rank == 0:
        _write_end(spec["out_dir"], where.job_id, {**ended, "exit_code": code, "ended": _now()})
    return code


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
