"""Results store: one JSON object per line, appended and fsynced as each config finishes.

A killed sweep loses at most the config in flight. A torn last line (the process died while
writing it) is skipped with a warning when reading, and cut off before the next append so the
file stays valid JSON Lines. Reading never executes code (plain ``json``, no pickle).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from harness.errors import UserError


def _clean(value: object) -> object:
    """JSON-safe value: non-finite floats become null (never NaN-as-string), at any depth."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, dict):  # e.g. per-operator tables: a NaN there must not lose the record
        return {k: _clean(v) for k, v in value.items()}
    return value


class ResultsWriter:
    """Appends records to a JSON Lines file; each ``write`` is durable when it returns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(self.path)

    def write(self, record: dict[str, object]) -> None:
        line = json.dumps(_clean(record), allow_nan=False)
        # One write() of one line, then flush + fsync: a crash leaves whole lines and at most
        # one torn last line behind.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())


def _cut_torn_tail(path: Path) -> None:
    """Drop a partial last line left by a killed writer, so appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    # stacklevel 3: the warning names the code that opened the writer, not ResultsWriter itself
    warnings.warn(f"{path}: removing a torn last line ({len(data) - keep} bytes) before appending",
                  stacklevel=3)
    with open(path, "r+b") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())


def read_records(path: str | os.PathLike[str]) -> list[dict[str, object]]:
    """Records of one JSON Lines file (or pytest-benchmark ``.json`` file: ``pytest_bench``).
    A torn *last* line is skipped with a warning; any other malformed line is a ``UserError``
    naming the file and line number."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"results file not found: {p}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{p}: not a UTF-8 results file ({exc.reason})") from None
    except OSError as exc:
        raise UserError(f"cannot read results file {p}: {exc.strerror}") from None
    if p.suffix == ".json":  # a pytest-benchmark file (saved or --benchmark-json)?
        from harness.store.pytest_bench import records_from_text

        converted = records_from_text(text, p)
        if converted is not None:
            return converted
    lines = text.split("\n")
    torn_tail_possible = not text.endswith("\n")
    records: list[dict[str, object]] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if torn_tail_possible and n == len(lines):
                warnings.warn(f"{p}:{n}: skipping a torn last line (the writer was interrupted)",
                              stacklevel=2)
                continue
            raise UserError(f"{p}:{n}: malformed record ({exc})") from None
        records.append(obj)
    return records


def fill_missing(path: str | os.PathLike[str], fields: Mapping[str, object]) -> int:
    """Give each record of the finished results file ``path`` the ``fields`` it lacks (null or
    absent): what an older trainmark did not record but its caller knows, such as the suite.
    The file is rewritten whole and renamed over the old one, so a reader sees either; how many
    records changed (none: the file is left as it was)."""
    p = Path(path)
    records = read_records(p)
    changed = 0
    for rec in records:
        lacking = {k: v for k, v in fields.items() if rec.get(k) is None}
        if lacking:
            rec.update(lacking)
            changed += 1
    if changed:
        tmp = p.with_name(p.name + ".filling")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(_clean(r), allow_nan=False) + "\n" for r in records)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    return changed


def iter_records(paths: Iterable[str | os.PathLike[str]]) -> Iterator[dict[str, object]]:
    for path in paths:
        for rec in read_records(path):
            rec.setdefault("source", str(path))
            yield rec
