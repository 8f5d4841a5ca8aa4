"""A/B adapter for trees from before the worker protocol (before ``harness/execution/``).

FROZEN: this file drives *old* trees through the only interfaces they had: the flat modules'
``cli._Parser``, ``cli._add_run``, ``cli._sweep_configs``, ``runner.Runner`` and
``results.ResultsWriter``. It is never imported by those names from this tree's code, so do not
modernise it: its job is to keep ``trainmark ab REF`` working for any REF before the layered
layout. Newer trees speak ``execution.ab_worker``'s protocol instead.

``trainmark ab`` runs this file's *source* with ``python -c`` in a scratch directory, with
``PYTHONPATH`` pointing at the old tree, so every ``harness`` import below is that tree's code
and the measurement is that tree's own ``Runner.run``.

Protocol, one JSON object per line, replies prefixed with ``@@ab `` on stdout (anything else a
run prints is ignored):

    worker -> {"configs": [{field: value, ...}, ...]}        after start-up, or {"error": "..."}
    ab     -> {"op": "run", "index": i, "out": "FILE.jsonl", "annotate": {...}}
    worker -> {"status": "ok"}                               once the record is on disk
    ab     -> {"op": "quit"}
"""

from __future__ import annotations

import dataclasses
import json
import sys

PREFIX = "@@ab "


def reply(obj: dict) -> None:
    sys.stdout.write(PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    try:
        from harness import cli
        from harness.cli import _sweep_configs
        from harness.data import check_dataset
        from harness.errors import UserError
        from harness.results import ResultsWriter
        from harness.runner import Runner
    except Exception as exc:  # a tree this worker cannot drive
        reply({"error": f"cannot import the harness: {type(exc).__name__}: {exc}"})
        return 3
    run_id, flags = argv[0], argv[1:]
    try:
        # Only the `run` parser: other subcommands' modules are not needed (nor imported).
        holder = cli._Parser(prog="trainmark")
        cli._add_run(holder.add_subparsers(parser_class=cli._Parser))
        args = holder.parse_args(["run", *flags])
        configs = _sweep_configs(args)
        for name in dict.fromkeys(c.dataset for c in configs):
            check_dataset(name, args.data_dir, args.download)
    except UserError as exc:
        reply({"error": str(exc)})
        return 2
    except Exception as exc:
        reply({"error": f"cannot expand the suite: {type(exc).__name__}: {exc}"})
        return 3
    try:  # the determinism set-up `trainmark run` does before CUDA starts (newer trees)
        from harness.determinism import prepare_process

        prepare_process(any(getattr(c, "deterministic", False) for c in configs))
    except ImportError:
        pass
    runner = Runner(run_id=run_id, data_dir=args.data_dir, download=args.download)
    reply({"configs": [dataclasses.asdict(c) for c in configs]})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("op") != "run":
            break
        rec = runner.run(configs[cmd["index"]])
        rec.update(cmd.get("annotate") or {})
        ResultsWriter(cmd["out"]).write(rec)
        reply({"status": rec["status"]})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
