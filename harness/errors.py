"""Exceptions that carry meaning across the harness.

``UserError`` is bad input: the CLI prints its message as one line and exits with status 2.
The others are raised inside a run and become a record's ``status`` instead of a crash.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input (unknown name, bad number, missing file). One line, exit status 2."""


class Unavailable(Exception):
    """The device cannot run this configuration (e.g. bf16 on a GPU without it)."""


class Diverged(Exception):
    """The training loss became non-finite."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of message``, trimmed: the record's ``error`` field."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
