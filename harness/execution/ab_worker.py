"""A/B worker, protocol 1: measures one tree's configs on request, for ``trainmark ab``.

``trainmark ab`` starts ``python -m harness.execution.ab_worker`` in a scratch directory with
``PYTHONPATH`` = one side's tree, so everything below runs that tree's code (REF's or the working
tree's). This protocol is the only contract between two trees: another tree's functions are
never called. Keep it backwards compatible; bump ``PROTOCOL`` only for a change an older parent
cannot read, and keep answering older requests.

One JSON object per line. Requests on stdin; replies on stdout prefixed with ``@@ab `` (anything
else on stdout, e.g. what a run prints, is ignored)::

    ab     -> {"protocol": 1, "run_id": "...", "suite": "/abs/suite.toml",
               "overrides": {"models": [...], "steps": 5, ...},   # sweep keys, None = suite's
               "data_dir": "/abs/data", "download": false,
               "profile_dir": "/abs/dir"}                         # optional: run --profile
                                                                   # (older trees ignore it)
    worker -> {"protocol": 1, "configs": [{RunConfig field: value, ...}, ...]}
              or {"protocol": 1, "error": "one line"}             # bad sweep: nothing ran
    ab     -> {"op": "run", "index": i, "out": "/abs/FILE.jsonl", "annotate": {...}}
    worker -> {"status": "ok" | "oom" | ...}                     # once the record is on disk
    ab     -> {"op": "quit"}                                     # or end of input

``overrides`` are the keys of ``harness.core.suites.DEFAULTS``; a key this tree does not know is
an error reply (it cannot run that sweep). Each record gets the ``annotate`` fields (e.g.
``ab_round``, ``ab_side``) and is appended to ``out``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import IO, Any

PROTOCOL = 1
PREFIX = "@@ab "


def reply(obj: dict[str, Any], out: IO[str] = sys.stdout) -> None:
    out.write(PREFIX + json.dumps(obj) + "\n")
    out.flush()


def hello_request(suite: str, overrides: dict[str, Any], data_dir: str,
                  download: bool) -> dict[str, Any]:
    """The first request (the parent adds ``run_id``); paths must be absolute."""
    return {"protocol": PROTOCOL, "suite": suite, "overrides": overrides,
            "data_dir": data_dir, "download": download}


def _configs(request: dict[str, Any]) -> list:
    from harness.core.data import check_dataset
    from harness.core.suites import expand, load_suite, merge_settings

    try:
        settings = merge_settings(load_suite(request["suite"]), request.get("overrides") or {})
    except KeyError as exc:  # a sweep key this tree does not have
        from harness.errors import UserError

        raise UserError(f"this tree cannot run the sweep: {exc.args[0]}") from None
    configs = expand(settings)
    for name in dict.fromkeys(c.dataset for c in configs):
        check_dataset(name, request["data_dir"], bool(request.get("download")))
    return configs


def serve(stdin: IO[str], stdout: IO[str]) -> int:
    """Answer one parent until it says quit (or closes stdin)."""
    from harness.errors import UserError

    try:
        request = json.loads(stdin.readline() or "{}")
        configs = _configs(request)
    except UserError as exc:
        reply({"protocol": PROTOCOL, "error": str(exc)}, stdout)
        return 2
    from harness.core.determinism import prepare_process
    from harness.execution.sweep import config_runner
    from harness.store.jsonl import ResultsWriter

    prepare_process(any(c.deterministic for c in configs))  # before CUDA starts
    reply({"protocol": PROTOCOL, "configs": [dataclasses.asdict(c) for c in configs]}, stdout)
    measure = None
    for line in stdin:
        cmd = json.loads(line)
        if cmd.get("op") != "run":
            break
        if measure is None:
            # On the first request, not at start-up: the parent waits for each reply, so the
            # two sides never measure a GEMM peak at the same time on the same device. This
            # worker is the side's own process; its configs run in it (isolation none).
            measure = config_runner("none", configs, run_id=request["run_id"],
                                    data_dir=request["data_dir"],
                                    download=bool(request.get("download")), timeout_s=0,
                                    quiet=True, profile_dir=request.get("profile_dir"))
        rec = measure(configs[cmd["index"]])
        rec.update(cmd.get("annotate") or {})
        ResultsWriter(cmd["out"]).write(rec)
        reply({"status": rec["status"]}, stdout)
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.stdin, sys.stdout))
