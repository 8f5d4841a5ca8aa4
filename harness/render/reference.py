"""The generated reference: commands and flags, record fields, suites and exit statuses as
Markdown, from the objects that define them (the parsers, described by ``cli.describe``;
``schema.COLUMNS`` with
``schema_docs.DESCRIPTIONS``, the suite TOML files). docs/hooks/reference.py calls these when
the documentation site builds, so the reference cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _cell(text: object) -> str:
    """A Markdown table cell: pipes escaped, lines joined."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _flags(arg: Mapping[str, Any]) -> str:
    if not arg["flags"]:
        return f"`{arg['name']}`"
    names = ", ".join(f"`{f}`" for f in arg["flags"])
    return f"{names} `{str(arg['name']).upper()}`" if arg["takes_value"] else names


def commands_markdown(commands: Sequence[Mapping[str, Any]]) -> str:
    """Every command (as ``cli.describe.describe_commands`` gives them): its usage line and
    every argument with its help."""
    top = [c for c in commands if " " not in c["name"]]
    lines = ["# Commands", "",
             "Generated from the command line's own parsers when this site was built.", "",
             "| command | what it does |", "|---|---|"]
    lines += [f"| [`{c['name']}`](#{c['name']}) | {_cell(c['description'])} |" for c in top]
    lines.append("")
    for command in commands:
        depth = 2 + command["name"].count(" ")
        lines += [f"{'#' * depth} `{command['name']}`", "", _cell(command["description"]), "",
                  "```text", command["usage"], "```", ""]
        if command["arguments"]:
            lines += ["| argument | meaning |", "|---|---|"]
            lines += [f"| {_flags(a)} | {_cell(a['help'])} |" for a in command["arguments"]]
            lines.append("")
    return "\n".join(lines) + "\n"


def record_markdown(columns: Mapping[str, str], descriptions: Mapping[str, str]) -> str:
    """Every record field in the order ``load_results`` returns them: dtype and meaning."""
    lines = ["# Record fields", "",
             "One flat JSON object per configuration. Generated from `harness/schema.py` "
             "(`COLUMNS`: the order and dtypes `load_results()` returns) and "
             "`harness/schema_docs.py` (what each means). Missing values are null.", "",
             "| field | dtype | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {dtype} | {_cell(descriptions.get(name, ''))} |"
              for name, dtype in columns.items()]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def suites_markdown(suites: Mapping[str, Mapping[str, Any]]) -> str:
    """Each suite's settings and per-model tables, as its TOML file states them."""
    lines = ["# Suites", "",
             "The suites shipped in `harness/suites/` (any TOML path works too). Keys are "
             "`trainmark run`'s flag names; a flag given on the command line replaces the "
             "suite's value. Unset keys take `RunConfig`'s defaults (warm-up: adaptive).", ""]
    for name, suite in suites.items():
        lines += [f"## `{name}`", "", _cell(suite.get("description", "")), "",
                  "| key | value |", "|---|---|"]
        lines += [f"| `{k}` | {_cell(_value(v))} |" for k, v in suite.items()
                  if k not in ("description", "model")]
        for model, table in suite.get("model", {}).items():
            settings = "; ".join(f"`{k}` = {_value(v)}" for k, v in table.items())
            lines.append(f"| `[model.{model}]` | {_cell(settings)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def exit_status_markdown(statuses: Mapping[int, str],
                         by_command: Mapping[str, Mapping[int, str]]) -> str:
    """The exit statuses every command shares, then what the others mean per command."""
    lines = ["# Exit statuses", "", "| status | meaning (every command) |", "|---|---|"]
    lines += [f"| {code} | {_cell(text)} |" for code, text in statuses.items()]
    lines += ["", "| command | status | meaning |", "|---|---|---|"]
    lines += [f"| `{cmd}` | {code} | {_cell(text)} |"
              for cmd, table in by_command.items() for code, text in table.items()]
    return "\n".join(lines) + "\n"
