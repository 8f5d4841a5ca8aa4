"""The generated reference: commands and flags, record fields, suites and exit statuses as
Markdown, from the objects that define them (the parsers, described by ``cli.describe``;
``schema.COLUMNS`` with ``schema_docs.DESCRIPTIONS``, the suite TOML files and their expansion).
docs/hooks/reference.py gathers these when the documentation site builds, so the reference
cannot drift from the code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# Backtick code spans: Markdown shows their text as is, so only the text between them is escaped.
_CODE_SPAN = re.compile(r"(`[^`]*`)")


def _cell(text: object) -> str:
    """A Markdown table cell: pipes escaped, lines joined, and ``<`` / ``>`` outside code spans
    escaped, so that a placeholder such as ``results/<run_id>.jsonl`` is shown, not swallowed
    as an HTML tag."""
    parts = _CODE_SPAN.split(" ".join(str(text).split()))
    text = "".join(p if p.startswith("`") else p.replace("<", "&lt;").replace(">", "&gt;")
                   for p in parts)
    return text.replace("|", "\\|")


def _flags(arg: Mapping[str, Any]) -> str:
    if not arg["flags"]:
        return f"`{arg['name']}`"
    names = ", ".join(f"`{f}`" for f in arg["flags"])
    return f"{names} `{str(arg['name']).upper()}`" if arg["takes_value"] else names


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value) if value else "(none)"
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _help(arg: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """An argument's help, with the sweep default where the help does not give one: a sweep
    flag's default is the suite's value, and the built-in one where the suite sets none
    (``defaults`` is empty for a command without sweep flags)."""
    text = str(arg["help"])
    flag = next((f for f in arg["flags"] if f in defaults), None)
    if flag is not None and "default" not in text.lower():
        text += f" (default: the suite's; without it, {_value(defaults[flag])})"
    return text


def commands_markdown(commands: Sequence[Mapping[str, Any]],
                      defaults: Mapping[str, Any] | None = None) -> str:
    """Every command (as ``cli.describe.describe_commands`` gives them): its usage line and
    every argument with its help; ``defaults`` maps a sweep flag to its built-in default."""
    defaults = defaults or {}
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
            sweep = any("--suite" in a["flags"] for a in command["arguments"])
            lines += [f"| {_flags(a)} | {_cell(_help(a, defaults if sweep else {}))} |"
                      for a in command["arguments"]]
            lines.append("")
    return "\n".join(lines) + "\n"


def record_markdown(columns: Mapping[str, str], descriptions: Mapping[str, str],
                    sections: Sequence[tuple[str, Sequence[str]]]) -> str:
    """Every record field in the order ``load_results`` returns them, one table per section
    (``sections``: heading and its columns, in order): dtype and meaning."""
    lines = ["# Record fields", "",
             "One flat JSON object per configuration. Generated from `harness/schema.py` "
             "(`COLUMNS`: the order and dtypes `load_results()` returns, in its groups) and "
             "`harness/schema_docs.py` (what each means). Missing values are null.", ""]
    for heading, names in sections:
        lines += [f"## {heading}", "", "| field | dtype | meaning |", "|---|---|---|"]
        lines += [f"| `{name}` | {columns[name]} | {_cell(descriptions.get(name, ''))} |"
                  for name in names]
        lines.append("")
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _measured(run: Mapping[str, Any]) -> str:
    """One measured sweep of a suite: ``{configs, seconds, machine, threads, date, link}``."""
    n = run.get("threads")
    threads = f" ({n} thread{'s' * (n != 1)})" if n else ""
    return (f"{run['configs']} configs in {_duration(run['seconds'])} on {run['machine']}"
            f"{threads}, {run['date']}: [{run['file']}]({run['link']})")


def _counts(counts: Mapping[str, int]) -> str:
    """``{"a CPU": 36, "a GPU": 36}`` -> ``36``; ``{"a GPU": 4}`` -> ``4 (on a GPU only)``."""
    if len(set(counts.values())) == 1:
        n = next(iter(counts.values()))
        return str(n) if len(counts) > 1 else f"{n} (on {next(iter(counts))} only)"
    return ", ".join(f"{n} on {where}" for where, n in counts.items())


def _description(name: str, suite: Mapping[str, Any]) -> str:
    """The suite's description without the ``name: `` it starts with."""
    return str(suite.get("description", "")).removeprefix(f"{name}: ")


def suites_markdown(suites: Mapping[str, Mapping[str, Any]],
                    configs: Mapping[str, Mapping[str, int]],
                    measured: Mapping[str, Sequence[Mapping[str, Any]]],
                    defaults: Sequence[tuple[str, Any, str]]) -> str:
    """Each suite's settings and per-model tables, as its TOML file states them, with how many
    configs it expands to (``configs``: per kind of device) and the sweeps of it that committed
    example results measured; then the settings' defaults (key, value, meaning)."""
    lines = ["# Suites", "",
             "The suites shipped in `harness/suites/` (any TOML path works too). Keys are "
             "`trainmark run`'s flag names; a flag given on the command line replaces the "
             "suite's value; a key the suite leaves out takes its [default](#defaults). Each "
             "config is one record, measured in its own worker process. Counts are the "
             "suite's expansion when this site was built; times are the committed example "
             "results' (first config's start to last config's end: the sweep's start-up and "
             "report are not included).", "",
             "| suite | configs | measured | what it runs |", "|---|---|---|---|"]
    for name, suite in suites.items():
        runs = measured.get(name, [])
        when = "; ".join(f"{r['configs']} configs in {_duration(r['seconds'])} on "
                         f"{r['machine']}" for r in runs) or "—"
        lines.append(f"| [`{name}`](#{name}) | {_cell(_counts(configs[name]))} | "
                     f"{_cell(when)} | {_cell(_description(name, suite))} |")
    lines.append("")
    for name, suite in suites.items():
        lines += [f"## `{name}`", "", _cell(_description(name, suite)), "",
                  f"Configs: {_counts(configs[name])}."]
        runs = measured.get(name, [])
        if runs:
            lines += ["", "Measured (committed example results):", ""]
            lines += [f"- {_measured(r)}" for r in runs]
        lines += ["", "| key | value |", "|---|---|"]
        lines += [f"| `{k}` | {_cell(_value(v))} |" for k, v in suite.items()
                  if k not in ("description", "model")]
        models = set(_value(suite.get("models", [])).split(", "))
        for model, table in suite.get("model", {}).items():
            settings = "; ".join(f"`{k}` = {_value(v)}" for k, v in table.items())
            if model not in models:  # kept for `--models NAME`: the suite does not run it
                settings += f" (only with `--models {model}`: not one of this suite's models)"
            lines.append(f"| `[model.{model}]` | {_cell(settings)} |")
        lines.append("")
    lines += ["## Defaults", "",
              "What a suite key (or flag) is when neither the suite nor the command line sets "
              "it: `RunConfig`'s defaults (`harness/core/config.py`) and the sweep's own "
              "(`harness/core/suites.py`), read when this site was built.", "",
              "| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{key}` | {_cell(_value(value))} | {_cell(meaning)} |"
              for key, value, meaning in defaults]
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
