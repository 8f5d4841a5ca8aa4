"""Small results stores over commits for the published site's tests (test_publish*.py): one
JSON Lines file per commit and machine, one record per config, a seeded 1% noise and a step in
one config of one machine from ``step_at`` on."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from pathlib import Path

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CONFIGS = (("convnet", 32, "fp32", "sgd"), ("resnet18", 64, "amp-bf16", "adam"))
MACHINES = ("m1", "m2")


def sha(commit: int) -> str:
    return hashlib.sha1(f"commit-{commit}".encode()).hexdigest()


def record(commit: int, machine: str, config: int, throughput: float) -> dict[str, object]:
    model, batch, precision, optimizer = CONFIGS[config]
    when = (START + dt.timedelta(hours=6 * commit)).isoformat()
    return {
        "schema_version": 1, "run_id": f"run-{commit}-{machine}",
        "record_id": hashlib.sha1(f"{commit}/{machine}/{config}".encode()).hexdigest()[:12],
        "timestamp": when, "model": model, "dataset": "synthetic", "device": "cpu",
        "batch_size": batch, "precision": precision, "optimizer": optimizer, "lr": 0.01,
        "seed": 0, "status": "ok", "error": None, "throughput": throughput,
        "throughput_unit": "samples/s", "peak_rss_bytes": 500_000_000 * (config + 1),
        "eval_accuracy": 0.5, "host": f"host-{machine}", "device_name": f"CPU {machine.upper()}",
        "cpu_model": f"CPU {machine.upper()}", "torch_version": "2.14.1", "num_threads": 4,
        "git_commit": sha(commit), "git_commit_time": when, "code_digest": "0123456789abcdef",
        "loss_curve": [2.3 - 0.02 * i for i in range(40)], "loss_curve_every": 5,
    }


def write_commit(folder: Path, commit: int, machine: str, *, step_at: int = 12,
                 step: float = -0.10, seed: int = 0) -> Path:
    """The file of one commit on one machine; config 0 on machine m1 steps at ``step_at``."""
    rng = random.Random(f"{seed}/{commit}/{machine}")
    lines = []
    for c in range(len(CONFIGS)):
        base = 1000.0 * (c + 1) * (MACHINES.index(machine) + 1)
        if c == 0 and machine == "m1" and commit >= step_at:
            base *= 1 + step
        lines.append(json.dumps(record(commit, machine, c, base * (1 + rng.gauss(0, 0.01)))))
    path = folder / f"{commit:04d}-{machine}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_store(folder: Path, commits: int = 24, **kwargs: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for commit in range(commits):
        for machine in MACHINES:
            write_commit(folder, commit, machine, **kwargs)
    return folder


def write_runner_store(folder: Path, commits: int = 24, step_at: int = 12) -> Path:
    """One machine (m1, config 0) measured by two runners, host-a and host-b; host-b alone is
    15% slower from ``step_at`` on (a sick runner, not a code change)."""
    rng = random.Random(1)
    folder.mkdir(parents=True, exist_ok=True)
    for commit in range(commits):
        for host in ("host-a", "host-b"):
            slow = 0.85 if host == "host-b" and commit >= step_at else 1.0
            rec = record(commit, "m1", 0, 1000 * slow * (1 + rng.gauss(0, 0.01)))
            rec.update(host=host, record_id=f"{rec['record_id']}-{host}")
            (folder / f"{commit:04d}-{host}.jsonl").write_text(json.dumps(rec) + "\n")
    return folder
