"""The command line described as plain data, for the generated reference (docs/hooks): every
command and subcommand with its usage line and arguments. It builds the real parsers with a
parser class that remembers what each ``configure`` added, through argparse's public
``add_argument`` and ``add_subparsers``, so nothing reaches into argparse's internals."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli import Parser, build_parser


class _Recording(Parser):
    """A ``Parser`` that keeps the actions it was given and the subcommands added to it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.recorded: list[argparse.Action] = []
        self.commands: dict[str, _Recording] = {}
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.recorded.append(action)
        return action

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs["parser_class"] = _Recording  # nested commands (baseline, fleet) record too
        sub = super().add_subparsers(**kwargs)
        add = sub.add_parser

        def add_parser(name: str, **options: Any) -> _Recording:
            parser = add(name, **options)
            self.commands[name] = parser
            return parser

        sub.add_parser = add_parser  # type: ignore[method-assign]
        return sub


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help if action.help not in (None, argparse.SUPPRESS) else ""
    if "%" in text:  # argparse %-formats help: "5%%" prints "5%", "%(default)s" the default
        text = text % {**vars(action), "prog": prog}
    if action.choices and "choices" not in text and not isinstance(action.choices, dict):
        text += " (choices: " + ", ".join(str(c) for c in action.choices) + ")"
    unstated = action.default not in (None, argparse.SUPPRESS, []) and action.nargs != 0
    if unstated and action.option_strings and "default" not in text.lower():
        text += f" (default {action.default})"
    return text


def _argument(action: argparse.Action, prog: str) -> dict[str, Any]:
    return {"flags": list(action.option_strings), "name": action.metavar or action.dest,
            "takes_value": action.nargs != 0, "help": _help(action, prog)}


def _commands(parser: _Recording, prefix: str = "") -> list[dict[str, Any]]:
    out = []
    for name, sub in parser.commands.items():
        full = f"{prefix}{name}"
        out.append({"name": full, "description": sub.description or "",
                    "usage": sub.format_usage().strip(),
                    "arguments": [_argument(a, sub.prog) for a in sub.recorded
                                  if a.dest != "help"]})
        out += _commands(sub, f"{full} ")
    return out


def describe_commands() -> list[dict[str, Any]]:
    """Every command (``"baseline check"`` for a subcommand) as ``{name, description, usage,
    arguments: [{flags, name, takes_value, help}]}``, in ``trainmark --help``'s order."""
    parser = build_parser(parser_class=_Recording)
    assert isinstance(parser, _Recording)
    return _commands(parser)
