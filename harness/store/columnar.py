"""Columnar reads of results: a Parquet cache kept in step with the JSON Lines, read by DuckDB.

JSON Lines stays what is written (``store.jsonl``: appended, fsynced, crash-safe). Parsing it is
what made reading slow, so each file is parsed once, into a **pack**: an immutable Parquet file
in the cache folder of the file's directory (``cache_root()/<hash of the directory>/``), whose
footer lists the files it holds, each with its **key**: size, mtime_ns, ctime_ns, inode and
device at the time it was parsed. A read stats every file (no parsing); a row of a pack counts
only if its file's key is still that file's key now. Any append, truncation or rewrite changes
the size or the change time (ctime, which no program can set back), so a changed file's old
rows are never read: the file is parsed again into a new pack. A stale cache therefore costs
time, never a wrong answer. Packs are written to a temporary name and renamed, so a reader sees
whole packs or none; when a folder holds more than ``MAX_PACKS`` packs, or more dead rows than
live ones, its live rows are compacted into one pack. ``store.packs`` makes the packs.

What a pack holds: the typed ``COLUMNS`` (integers, floats, booleans, strings) as Parquet types;
list- or dict-valued columns and every extra field as JSON text (SQL NULL: the record had no
such field). DuckDB reads only the requested columns of the live rows (``read_parquet`` with
``union_by_name``, joined with the wanted files' keys), and ``frame.load_results`` turns the
result into the same DataFrame as parsing the files would give (a test checks both ways).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from harness.schema import COLUMNS
from harness.store import packs as packs_mod
from harness.store.jsonl import read_records
from harness.store.packs import FILE, KEY, LINE, META

CACHE_ENV = "TRAINMARK_CACHE_DIR"  # a folder, or "off": parse every file on every read
MAX_PACKS = 16
PACK_ROWS = 20_000  # a folder with more dead rows than this (and than live ones) is compacted
PACK = "__tm_pack"  # the pack a row was read from (DuckDB's filename column): two readers may
# parse one file into two packs at once, and only one of them is read
_PANDAS = {pa.int64(): pd.Int64Dtype(), pa.float64(): pd.Float64Dtype(),
           pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype("pyarrow"),
           pa.large_string(): pd.StringDtype("pyarrow")}


def cache_root() -> Path | None:
    """Where packs live: ``$TRAINMARK_CACHE_DIR``, else ``$XDG_CACHE_HOME/trainmark/results``
    (``~/.cache/...``); None when the variable says ``off``."""
    env = os.environ.get(CACHE_ENV, "")
    if env.lower() == "off":
        return None
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trainmark" / "results"


class Pack:
    """One Parquet pack and the files it holds: resolved path -> (key, rows, extras, warnings)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        schema = pq.read_schema(path)
        self.columns = set(schema.names)
        self.files: dict[str, tuple[str, int, list[str], list[str]]] = {
            f: (k, n, extras, warns)
            for f, k, n, extras, warns in json.loads(schema.metadata[META])["files"]}
        self.rows = sum(n for _, n, _, _ in self.files.values())


def _packs(folder: Path) -> list[Pack]:
    packs = []
    for path in sorted(folder.glob("*.parquet"), key=lambda p: p.name):
        try:
            packs.append(Pack(path))
        except (OSError, KeyError, ValueError, pa.ArrowException):
            continue  # removed by a compaction meanwhile, or not a pack: not ours to read
    return packs


def _fill(folder: Path, todo: list[tuple[str, str, str]]) -> list[Pack]:
    """Parse ``todo`` ((path, resolved, key)) into new packs (``store.packs``)."""
    return [Pack(Path(p)) for p in packs_mod.fill(folder, todo)]


# What a pack's columns mean: the record columns and their types, and the pack's own layout.
# A pack made under other ``COLUMNS`` would read wrongly here (a field that became typed was
# stored as JSON text), so it lives in another folder and is never read by this version.
LAYOUT = json.dumps([packs_mod.FORMAT, list(COLUMNS.items())])


def folder_of(path: str) -> str:
    """The cache folder of a file's directory (absolute ``path``), for this ``LAYOUT``."""
    return hashlib.sha256(f"{LAYOUT}\0{os.path.dirname(path)}".encode()).hexdigest()[:20]


def live_rows(paths: Sequence[str | os.PathLike[str]], root: Path) -> tuple[
        list[Pack], pa.Table, list[list[str]], list[list[str]]]:
    """Bring the cache in step with ``paths`` and say where their rows are: the packs to read,
    the wanted (file, key, position, given path) table, each file's extras and warnings."""
    wanted = {"file": [], "key": [], "pack": [], "pos": [], "given": []}
    extras: list[list[str]] = []
    warns: list[list[str]] = []
    by_folder: dict[str, list[tuple[int, Path, str, str]]] = {}
    for pos, given in enumerate(paths):
        p = Path(given)
        try:
            st = os.stat(p)  # the key holds inode and device: a link's name is only a name
        except OSError:
            read_records(p)  # the same error as parsing it would give (UserError)
            raise
        resolved = os.path.abspath(p)
        by_folder.setdefault(folder_of(resolved), []).append((pos, p, resolved,
                                                              packs_mod.file_key(st)))
    used: dict[Path, Pack] = {}
    entries: dict[int, tuple[str, str, str, list[str], list[str]]] = {}
    for name, items in by_folder.items():
        folder = root / name
        packs = _packs(folder) if folder.is_dir() else []
        where = {(f, k): (pack, ex, w) for pack in packs
                 for f, (k, _, ex, w) in pack.files.items()}
        todo = list({(r, k): (p, r, k) for _, p, r, k in items if (r, k) not in where}
                    .values())
        for pack in _fill(folder, todo):
            packs.append(pack)
            where.update({(f, k): (pack, ex, w) for f, (k, _, ex, w) in pack.files.items()})
        packs = compact(folder, packs, {(r, k) for _, _, r, k in items})
        where = {(f, k): (pack, ex, w) for pack in packs
                 for f, (k, _, ex, w) in pack.files.items()}
        for pos, _, r, k in items:
            pack, ex, w = where[(r, k)]
            if pack.files[r][1]:
                used[pack.path] = pack
            entries[pos] = (r, k, str(pack.path), ex, w)
    for pos, given in enumerate(paths):
        r, k, pack_path, ex, w = entries[pos]
        wanted["file"].append(r)
        wanted["key"].append(k)
        wanted["pack"].append(pack_path)
        wanted["pos"].append(pos)
        wanted["given"].append(str(given))
        extras.append(ex)
        warns.append(w)
    return list(used.values()), pa.table(wanted), extras, warns


def compact(folder: Path, packs: list[Pack], keep: set[tuple[str, str]]) -> list[Pack]:
    """Merge ``folder``'s packs when there are more than ``MAX_PACKS`` (all but the largest,
    so a daily read does not rewrite a year) or when most of their rows are dead (all). A
    file's rows are live in the newest pack that lists it, or in the one holding the key this
    read needs (``keep``)."""
    if len(packs) <= 1:
        return packs
    owner: dict[str, Pack] = {}
    for pack in packs:  # packs are in name order; newer entries of a file come in later packs
        for f in pack.files:
            owner[f] = pack
    for f, k in keep:
        owner[f] = next((pk for pk in reversed(packs) if pk.files.get(f, ("",))[0] == k),
                        owner.get(f, packs[0]))
    live = sum(pack.files[f][1] for f, pack in owner.items())
    total = sum(pack.rows for pack in packs)
    if total > 2 * live and total > PACK_ROWS:
        merged = packs
    elif len(packs) > MAX_PACKS:
        largest = max(packs, key=lambda pk: pk.rows)
        merged = [pk for pk in packs if pk is not largest]
    else:
        return packs
    listing = [[f, pack.files[f][0], *pack.files[f][1:]] for f, pack in owner.items()
               if any(pack is m for m in merged)]
    keys = pa.table({"f": [e[0] for e in listing], "k": [e[1] for e in listing],
                     "p": [str(owner[e[0]].path) for e in listing]})
    final = folder / f"{uuid.uuid4().hex}.parquet"
    tmp = folder / f".{final.name}.tmp"
    meta = json.dumps({"files": listing}).replace("'", "''")
    with _connect() as con:
        con.register("live_keys", keys)
        con.execute(f"COPY (SELECT t.* EXCLUDE ({PACK}) FROM read_parquet("
                    f"{_sql_list(merged)}, union_by_name=true, filename='{PACK}') t SEMI JOIN "
                    f"live_keys l ON t.{FILE} = l.f AND t.{KEY} = l.k AND t.{PACK} = l.p) TO "
                    f"{_sql_str(str(tmp))} (FORMAT parquet, COMPRESSION zstd, "
                    f"KV_METADATA {{trainmark: '{meta}'}})")
    os.replace(tmp, final)
    for pack in merged:
        pack.path.unlink(missing_ok=True)
    return [*(pk for pk in packs if not any(pk is m for m in merged)), Pack(final)]


def _connect():  # noqa: ANN202 (duckdb is imported late: a small read never loads it)
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # a library prints nothing on its own
    return con


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_list(packs: Sequence[Pack]) -> str:
    return "[" + ", ".join(_sql_str(str(pk.path)) for pk in packs) + "]"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read(paths: Sequence[str | os.PathLike[str]], columns: Sequence[str] | None,
         root: Path, *, exclude: Collection[str] = (), file_source: bool = False,
         ) -> pd.DataFrame | None:
    """The records of ``paths`` as ``frame.load_results`` returns them, through the cache in
    ``root``; None when they hold no records (the caller builds the empty frame)."""
    import duckdb

    for attempt in (0, 1):
        packs, wanted, extras, warns = live_rows(paths, root)
        for messages in warns:  # a torn last line is said on every read, as parsing says it
            for message in messages:
                warnings.warn(message, stacklevel=4)
        if not packs:
            return None
        names = list(columns) if columns is not None else [
            c for c in [*COLUMNS, *dict.fromkeys(e for ex in extras for e in ex)]
            if c not in exclude]
        present = set().union(*(pk.columns for pk in packs))
        select = [f"t.{_ident(c)}" if c in present else f"NULL AS {_ident(c)}"
                  for c in dict.fromkeys(names)]
        # No ORDER BY: sorting ~170 wide columns costs DuckDB more than taking the rows in
        # order afterwards (``_in_order``).
        sql = (f"SELECT {', '.join(select)}, w.given AS {FILE}, w.pos AS {KEY}, t.{LINE} "
               f"FROM read_parquet({_sql_list(packs)}, union_by_name=true, filename='{PACK}') "
               f"t JOIN wanted w ON t.{FILE} = w.file AND t.{KEY} = w.key "
               f"AND t.{PACK} = w.pack")
        try:
            with _connect() as con:
                con.register("wanted", wanted)
                table = con.sql(sql).to_arrow_table()  # duckdb >= 1.5 (and 2.x)
            break
        except duckdb.IOException:  # a pack compacted away by another reader meanwhile
            if attempt:
                raise
    extra_names = {e for ex in extras for e in ex}
    rows = table.num_rows
    order = _in_order(table)
    if order is not None:
        table = table.take(order)
    given = _shared_strings(table.column(FILE)) if "source" in names else []
    # Column by column, each Arrow column let go once converted, so the Arrow table shrinks as
    # the frame grows (1M records, the report's columns: 1.66 -> 1.56 GB at the peak).
    arrow_of = {c: table.column(c) for c in dict.fromkeys(names)}
    del table
    out = pd.DataFrame(index=pd.RangeIndex(rows))
    for col in list(arrow_of):
        arrow = arrow_of.pop(col)
        dtype = COLUMNS.get(col)
        if dtype is not None and dtype != "object":
            # straight into pandas' masked and Arrow-backed dtypes: no Python object per cell
            out[col] = arrow.to_pandas(types_mapper=_PANDAS.get).astype(dtype)
        elif dtype == "object":
            out[col] = pd.Series(_decode(arrow, "null"), dtype=object)
        elif col == "source":
            out[col] = pd.Series(given if file_source else [  # NaN: the record has none
                g if v != v else v for v, g in zip(_decode(arrow, "NaN"), given, strict=True)]
                ).astype(object)  # inferred, then object: as for any extra field
        elif col in extra_names:  # inferred as DataFrame.from_records would (a missing field
            out[col] = pd.Series(_decode(arrow, "NaN")).astype(object)  # is NaN), then object
        else:
            out[col] = pd.Series([None] * rows, dtype=object)
    return out


def _shared_strings(column: pa.ChunkedArray) -> list[str]:
    """A column of few distinct strings (a file's name on each of its rows) as a list whose
    equal strings are one object: 8 bytes a row, not ~100."""
    coded = column.combine_chunks().dictionary_encode()
    names = coded.dictionary.to_pylist()
    return [names[i] for i in coded.indices.to_numpy(zero_copy_only=False)]


def _in_order(table: pa.Table) -> np.ndarray | None:
    """The row order that puts the rows in the order of the files asked for, then of their
    lines; None when they are in it already."""
    pos = table.column(KEY).to_numpy()
    line = table.column(LINE).to_numpy()
    order = np.lexsort((line, pos))
    return None if (order[1:] > order[:-1]).all() else order


def _decode(column: pa.ChunkedArray, missing: str) -> list[object]:
    """A column of JSON texts as Python values, SQL NULL as ``missing`` (JSON): one parse of
    the whole column, not one per cell."""
    texts = pa.compute.fill_null(column.cast(pa.string()), missing)
    return json.loads("[" + ",".join(texts.to_pylist()) + "]") if len(texts) else []
