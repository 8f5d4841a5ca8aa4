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
live ones, its live rows are compacted into one pack.

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
from harness.store.jsonl import read_records
from harness.store.table import records_to_frame

CACHE_ENV = "TRAINMARK_CACHE_DIR"  # a folder, or "off": parse every file on every read
MAX_PACKS = 16
PACK_ROWS = 20_000  # records parsed into one pack at most (bounds the memory of a cold read)
META = b"trainmark"
FILE, KEY, LINE = "__tm_file", "__tm_key", "__tm_line"  # a pack's own columns
PACK = "__tm_pack"  # the pack a row was read from (DuckDB's filename column): two readers may
# parse one file into two packs at once, and only one of them is read
_ARROW = {"Int64": pa.int64(), "Float64": pa.float64(), "boolean": pa.bool_(),
          "string": pa.string()}
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


def file_key(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"


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


def _json(value: object) -> str:
    return json.dumps(value, allow_nan=True)


def pack_table(files: Sequence[tuple[str, str, list[dict[str, object]]]]) -> tuple[pa.Table,
                                                                                      list]:
    """Records of ``files`` ((resolved path, key, records)) as one Arrow table, and the
    footer's file list. Wrongly typed fields raise ``UserError`` as ``records_to_frame``."""
    columns: dict[str, list[object]] = {FILE: [], KEY: [], LINE: []}
    listing = []
    extras_seen: dict[str, None] = {}
    raw: list[dict[str, object]] = []
    for name, key, records in files:
        extras: dict[str, None] = {}
        known = set(COLUMNS)  # COLUMNS and the extras seen so far: a set difference per record
        for rec in records:
            if rec.keys() - known:  # new fields, in this record's order
                extras.update(dict.fromkeys(k for k in rec if k not in known))
                known.update(rec.keys())
            if "source" not in rec and "source" not in extras:
                extras["source"] = None  # where iter_records' default goes in the key order
                known.add("source")
        extras_seen.update(extras)
        listing.append([name, key, len(records), list(extras), []])
        columns[FILE] += [name] * len(records)
        columns[KEY] += [key] * len(records)
        columns[LINE] += list(range(len(records)))
        raw += records
    frame = records_to_frame(raw)[list(COLUMNS)] if raw else None
    arrays: dict[str, pa.Array] = {FILE: pa.array(columns[FILE], pa.string()),
                                   KEY: pa.array(columns[KEY], pa.string()),
                                   LINE: pa.array(columns[LINE], pa.int64())}
    for col, dtype in COLUMNS.items():
        if frame is None:
            values: list[object] = []
            arrays[col] = pa.array(values, _ARROW.get(dtype, pa.string()))
        elif dtype == "object":
            arrays[col] = pa.array([None if col not in r else _json(r[col]) for r in raw],
                                   pa.string())
        else:
            arrays[col] = pa.Array.from_pandas(frame[col].astype(object).where(
                frame[col].notna(), None), type=_ARROW[dtype])
    for col in extras_seen:
        arrays[col] = pa.array([None if col not in r else _json(r[col]) for r in raw],
                               pa.string())
    return pa.table(arrays), listing


def write_pack(folder: Path, table: pa.Table, listing: list) -> Path:
    """``table`` as a new pack in ``folder``, atomically (a temporary name, then a rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{uuid.uuid4().hex}.parquet"
    tmp = folder / f".{final.name}.tmp"
    meta = {META: json.dumps({"files": listing}).encode()}
    pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")
    os.replace(tmp, final)
    return final


def _parse(path: Path, resolved: str, key: str) -> tuple[str, str, list[dict[str, object]],
                                                         list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = read_records(path)
    return resolved, key, records, [str(w.message) for w in caught]


def _fill(folder: Path, todo: list[tuple[Path, str, str]]) -> list[Pack]:
    """Parse ``todo`` ((path, resolved, key)) into new packs of at most ``PACK_ROWS`` rows."""
    made: list[Pack] = []
    batch: list[tuple[str, str, list[dict[str, object]], list[str]]] = []
    rows = 0

    def flush() -> None:
        nonlocal batch, rows
        if batch:
            table, listing = pack_table([(n, k, r) for n, k, r, _ in batch])
            for entry, (*_, warns) in zip(listing, batch, strict=True):
                entry[4] = warns
            made.append(Pack(write_pack(folder, table, listing)))
        batch, rows = [], 0

    for path, resolved, key in todo:
        parsed = _parse(path, resolved, key)
        batch.append(parsed)
        rows += len(parsed[2])
        if rows >= PACK_ROWS:
            flush()
    flush()
    return made


def folder_of(path: str) -> str:
    """The cache folder of a file's directory (absolute ``path``)."""
    return hashlib.sha256(os.path.dirname(path).encode()).hexdigest()[:20]


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
                                                              file_key(st)))
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
                table = _in_order(con.sql(sql).to_arrow_table())  # duckdb >= 1.5 (and 2.x)
            break
        except duckdb.IOException:  # a pack compacted away by another reader meanwhile
            if attempt:
                raise
    extra_names = {e for ex in extras for e in ex}
    out = pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    for col in names:
        arrow = table.column(col)
        dtype = COLUMNS.get(col)
        if dtype is not None and dtype != "object":
            # straight into pandas' masked and Arrow-backed dtypes: no Python object per cell
            out[col] = arrow.to_pandas(types_mapper=_PANDAS.get).astype(dtype)
        elif dtype == "object":
            out[col] = pd.Series(_decode(arrow, "null"), dtype=object)
        elif col == "source":
            given = table.column(FILE).to_pylist()
            out[col] = pd.Series(given if file_source else [  # NaN: the record has none
                g if v != v else v for v, g in zip(_decode(arrow, "NaN"), given, strict=True)]
                ).astype(object)  # inferred, then object: as for any extra field
        elif col in extra_names:  # inferred as DataFrame.from_records would (a missing field
            out[col] = pd.Series(_decode(arrow, "NaN")).astype(object)  # is NaN), then object
        else:
            out[col] = pd.Series([None] * table.num_rows, dtype=object)
    return out


def _in_order(table: pa.Table) -> pa.Table:
    """The rows in the order of the files asked for, then of their lines."""
    pos = table.column(KEY).to_numpy()
    line = table.column(LINE).to_numpy()
    order = np.lexsort((line, pos))
    if not (order[1:] > order[:-1]).all():
        table = table.take(order)
    return table


def _decode(column: pa.ChunkedArray, missing: str) -> list[object]:
    """A column of JSON texts as Python values, SQL NULL as ``missing`` (JSON): one parse of
    the whole column, not one per cell."""
    texts = pa.compute.fill_null(column.cast(pa.string()), missing)
    return json.loads("[" + ",".join(texts.to_pylist()) + "]") if len(texts) else []
