"""The ``trainmark`` command line: one module per command; ``main()`` returns an exit code.

Commands are registered by name in ``COMMANDS`` and imported only when they run: ``trainmark
--help`` imports no command module, and a command module imports torch, pandas or matplotlib
only inside the function that needs them, so ``trainmark compare --help`` stays fast. Each
command module exposes ``configure(parser)``, which adds its arguments and sets ``func``.

A ``UserError`` (bad input) becomes one line on stderr and exit status 2, before any results file
is created or changed. To add a command: write ``harness/cli/NAME.py`` with ``configure`` and a
``cmd_*`` function, and add a line here (docs/architecture.md, "Where things go").
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from harness import __version__
from harness.errors import UserError

# name -> (module, one-line help). The order is the order of `trainmark --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("harness.cli.run", "run a benchmark sweep (default: the quick suite)"),
    "list": ("harness.cli.listing", "models, datasets, precisions, optimizers, devices"),
    "env": ("harness.cli.env", "provenance of this machine as JSON"),
    "show": ("harness.cli.show", "print results files as a table"),
    "reproduce": ("harness.cli.reproduce",
                  "re-run the article's experiment (ConvNet on CIFAR-10)"),
    "rerun": ("harness.cli.replay", "replay the configs recorded in a results file"),
    "verify": ("harness.cli.replay", "replay recorded configs and check that they reproduce"),
    "peak": ("harness.cli.peak", "peak FLOP/s per device: measured GEMM and datasheet"),
    "report": ("harness.cli.report",
               "HTML + Markdown report (and hardware comparison) from results files"),
    "history": ("harness.cli.history",
                "performance over commits with detected steps (HTML + Markdown + PNGs)"),
    "publish": ("harness.cli.publish",
                "a static, interactive site of every series over commits (works from disk)"),
    "export": ("harness.cli.export", "stored records into MLflow, one run per record"),
    "compare": ("harness.cli.compare", "regression verdicts: baseline vs candidate results"),
    "explain": ("harness.cli.explain",
                "which operators changed: two profiled results (run --profile), op by op"),
    "ab": ("harness.cli.ab", "A/B: a git ref vs the working tree, interleaved on this machine"),
    "bisect": ("harness.cli.bisect",
               "first commit in GOOD..BAD slower than GOOD: git bisect run with an A/B per step"),
    "backfill": ("harness.cli.backfill",
                 "measure every commit of a range, rounds in shuffled order, for history"),
    "baseline": ("harness.cli.baseline", "record or check this machine's stored baseline"),
    "fleet": ("harness.cli.fleet", "one sweep on every partition of a Slurm cluster, one folder"),
}


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are ``UserError``s: one line, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def build_parser(commands: Sequence[str] | None = None,
                 parser_class: type[Parser] = Parser) -> Parser:
    """The parser with every command listed; only ``commands`` (default: all) get their
    arguments, so the others' modules are not imported. ``parser_class`` is ``Parser`` or a
    subclass (``cli.describe`` records the arguments with one)."""
    parser = parser_class(prog="trainmark",
                          description="Training benchmark and reproducibility suite.")
    parser.add_argument("--version", action="version", version=f"trainmark {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=parser_class, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:])
        if commands is None or name in commands:
            importlib.import_module(module).configure(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv) or ["run"]  # bare: the quick suite
    chosen = [a for a in argv[:1] if a in COMMANDS]
    try:
        args = build_parser(chosen).parse_args(argv)
        if getattr(args, "func", None) is None:
            raise UserError(f"choose a command: {', '.join(COMMANDS)}")
        from harness.core.knob import injected_slowdown
        from harness.execution.interrupts import sigterm_as_interrupt
        from harness.probes.host_heap import apply_host_heap

        # Here, before the fork server, torchrun or an A/B worker starts: they inherit it.
        apply_host_heap()
        injected_slowdown()  # a malformed test-only knob: one usage error, not a crash per config

        # SIGTERM (CI cancelling a job) unwinds like Ctrl-C: every command's cleanup (killing
        # a worker, removing a worktree, reporting what was recorded) runs for both.
        with sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except UserError as exc:
        print(f"trainmark: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a command without its own message about what was kept
        print("trainmark: interrupted", file=sys.stderr)
        return 130
