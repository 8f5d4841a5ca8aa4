"""``trainmark publish``: build or update the static site from results files.

What is rebuilt is decided by a manifest (``data/manifest.json``) of digests of the inputs:

- Records are split into **groups**: one machine (``schema.machine_key``) and one model,
  dataset, batch size, precision, optimizer and device. Every series of ``analysis.history``
  lies inside one group (its key has these fields and more), so a group's series depend on its
  records only. A group's digest is its record count and the order-free sum of a hash of each
  record's identity, config, commit, status and metric fields. Only groups whose digest
  changed (or that are new) go through change-point detection again and get their series pages
  rewritten; the others keep their pages and their overview entries from the manifest.
- Each results file is one **record shard** (``data/records/KEY.js``, what the record page
  reads), rewritten only when the file's size or modification time changed.
- A change of trainmark's version, of the site's format or of the detection's settings
  rebuilds everything; so does ``full``.

The overview and the matrix are small and rewritten every time. A build removes the manifest
first and writes it last: a build stopped halfway leaves none, so the next one redoes
everything (series and record files are written in place, not renamed into place).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness import __version__
from harness.analysis.cost import resolve_prices
from harness.analysis.hardware import machines_named
from harness.analysis.history import HISTORY_COLUMNS, METRICS, build_history, runner_steps
from harness.core.config import CONFIG_FIELDS
from harness.errors import UserError
from harness.render.published import files, payloads
from harness.schema import COLUMNS, machine_key
from harness.store.frame import load_results

SITE_FORMAT = 2  # the data layout (2: runners' own series); another format: rebuilt whole
GROUP_FIELDS = ("model", "dataset", "batch_size", "precision", "optimizer", "device")
IDENTITY = ("device_name", "cpu_model", "torch_version", "num_threads", "host")
KEPT = ("record_id", "source", "status", "git_commit", "git_commit_time", "timestamp",
        "throughput_unit")
MACHINE = "site_machine"  # the frame's column of machine keys
GROUP = "site_group"


@dataclass(frozen=True)
class PublishSummary:
    out: Path
    records: int
    series: int
    groups: int
    groups_rebuilt: int
    shards_written: int
    shards_kept: int
    regressions: int
    seconds: float


def needed_columns() -> list[str]:
    """The record fields the site reads in bulk, through the store's columnar reader (the
    record page's shards copy the files' lines instead)."""
    cols = [*HISTORY_COLUMNS, *CONFIG_FIELDS, *IDENTITY, *KEPT]
    return [c for c in dict.fromkeys(cols) if c in COLUMNS or c == "source"]


def load(paths: Sequence[Path]) -> pd.DataFrame:
    """The records' ``needed_columns``; ``source`` is always the file each came from."""
    return load_results(paths, needed_columns(), file_source=True)


def _machines(frame: pd.DataFrame) -> pd.Series:
    ids = frame[list(IDENTITY[:4])].astype(object).where(frame[list(IDENTITY[:4])].notna(), None)
    combos = ids.drop_duplicates()
    keys = {tuple(r): machine_key(dict(zip(IDENTITY[:4], r, strict=True)))
            for r in combos.itertuples(index=False)}
    return pd.Series([keys[tuple(r)] for r in ids.itertuples(index=False)], index=frame.index,
                     dtype=object)


def group_digests(frame: pd.DataFrame, metrics: Sequence[str]) -> dict[str, str]:
    """{group key: digest} (module docstring)."""
    cols = [c for c in (*KEPT, *CONFIG_FIELDS, MACHINE,
                        *(c for m in metrics for c in METRICS[m][0])) if c in frame.columns]
    hashes = pd.util.hash_pandas_object(frame[cols], index=False)
    sums = hashes.groupby(frame[GROUP]).sum()
    counts = frame.groupby(GROUP).size()
    return {str(g): f"{counts[g]}:{int(sums[g]):016x}" for g in sums.index}


def _key_value(value: object) -> object:
    """A config value as the same JSON whether it came from the frame or from a series."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


def _group_keys(frame: pd.DataFrame) -> pd.Series:
    parts = frame[[MACHINE, *GROUP_FIELDS]].astype(object)
    parts = parts.where(parts.notna(), None)
    combos = {tuple(r): json.dumps([_key_value(v) for v in r], default=str)
              for r in parts.drop_duplicates().itertuples(index=False)}
    return pd.Series([combos[tuple(r)] for r in parts.itertuples(index=False)],
                     index=frame.index, dtype=object)


def group_of(machine: str, config: Mapping[str, object]) -> str:
    return json.dumps([machine, *(_key_value(config.get(f)) for f in GROUP_FIELDS)],
                      default=str)


def shard_key(source: str) -> str:
    return hashlib.sha1(str(Path(source).resolve()).encode()).hexdigest()[:16]


class PointRecords:
    """Per point (commit) of a series, its records as ``(shard, record_id)`` pairs: the ok
    records of the series' config with a value in its column. The rows of each group are taken
    apart once, and each config's rows found once for all its metrics."""

    def __init__(self, work: pd.DataFrame, shards: Mapping[str, str]) -> None:
        self.work = work
        self.groups = work.groupby(GROUP, sort=False).indices if len(work) else {}
        self.commit = work["git_commit"].to_numpy(dtype=object)
        self.rid = work["record_id"].to_numpy(dtype=object, na_value=None)
        self.shard = work["source"].map(shards).to_numpy(dtype=object, na_value="")
        self.ok = work["status"].eq("ok").fillna(False).to_numpy(dtype=bool) & (
            work["record_id"].notna().to_numpy())
        self.rows: dict[tuple[str, str], object] = {}

    def _config_rows(self, group: str, config: Mapping[str, object]):
        key = (group, json.dumps(sorted(config.items()), default=str))
        if key not in self.rows:
            idx = self.groups[group]
            rows = self.work.iloc[idx]
            mask = self.ok[idx].copy()
            for field, value in config.items():
                col = rows[field]
                if col.nunique(dropna=False) == 1 and (
                        col.isna().iloc[0] if value is None else col.iloc[0] == value):
                    continue  # the whole group has this value
                mask &= (col.isna() if value is None else (col == value).fillna(False)
                         ).to_numpy(dtype=bool)
            self.rows[key] = idx[mask]
        return self.rows[key]

    def of(self, group: str, config: Mapping[str, object], column: str,
           commits: Sequence[str], host: str | None = None) -> list[list[tuple[str, str]]]:
        """``host``: a runner's own series (``analysis.history``'s by_runner) has its rows."""
        idx = self._config_rows(group, config)
        idx = idx[self.work[column].iloc[idx].notna().to_numpy()]
        if host is not None:
            hosts = self.work["host"].iloc[idx].astype(object)
            idx = idx[hosts.where(hosts.notna(), "unknown-host").eq(host).to_numpy(dtype=bool)]
        by_commit: dict[str, list[tuple[str, str]]] = {}
        for commit, shard, rid in zip(self.commit[idx], self.shard[idx], self.rid[idx],
                                      strict=True):
            by_commit.setdefault(str(commit), []).append((shard, str(rid)))
        return [by_commit.get(c, []) for c in commits]


def resolve_reference(machines: pd.DataFrame, reference: str | None) -> str:
    labels = list(dict.fromkeys(machines["machine"]))
    if not reference:
        return labels[0]
    named = machines_named(machines, reference)
    if not named:
        raise UserError(f"--reference {reference!r} matches no machine in the results; valid: "
                        f"{', '.join(labels)} (a machine, host or device name)")
    return named[0]


def _series_pages(work: pd.DataFrame, out: Path, sources: Mapping[str, str],
                  metrics: Sequence[str], settings: Mapping[str, object],
                  groups: dict[str, dict], entries: dict[str, dict]) -> None:
    """Detect the series of the changed groups' records ``work``, write their pages' data, and
    add them to ``groups`` and the overview ``entries``."""
    history = build_history(work, metrics, threshold=settings["threshold"],
                            alpha=settings["alpha"], min_segment=settings["min_segment"],
                            by_runner=True)
    # A runner's own series keeps only the steps no sibling runner has (a sick runner, not a
    # code change: the pooled series shows those).
    alone = {(id(s), st.index) for s, st in runner_steps(history)}
    history = [s if s.host is None else dataclasses.replace(
        s, steps=[st for st in s.steps if (id(s), st.index) in alone]) for s in history]
    links = PointRecords(work, sources)
    for s in history:
        sid, g = payloads.series_id(s), group_of(s.machine, s.config)
        recs = links.of(g, s.config, s.column, [p.commit for p in s.points], s.host)
        files.write_data(out / "data" / "series" / f"{sid}.js", "series/" + sid,
                         payloads.series_payload(s, sid, recs, settings), atomic=False)
        entries[sid] = payloads.overview_entry(s, sid)
        groups[g]["series"].append(sid)


def publish(paths: Sequence[Path], out: Path, *, metrics: Sequence[str] = tuple(METRICS),
            reference: str | None = None, prices: Mapping[str, float] | None = None,
            threshold: float, alpha: float, min_segment: int, title: str = "trainmark",
            full: bool = False) -> PublishSummary:
    """Build the site for the records of ``paths`` into ``out``, redoing only what changed
    since the last build there (module docstring)."""
    start = time.perf_counter()
    frame = load(paths)
    frame = frame[frame["git_commit"].notna()].reset_index(drop=True)
    if frame.empty:
        raise UserError("no records with a git commit in "
                        f"{', '.join(str(p) for p in paths[:3])}{' ...' * (len(paths) > 3)}: "
                        "the site shows performance over commits")
    frame[MACHINE] = _machines(frame)
    frame[GROUP] = _group_keys(frame)
    machines = (frame[[MACHINE, "host", "device_name"]].rename(columns={MACHINE: "machine"})
                .drop_duplicates().reset_index(drop=True))
    ref = resolve_reference(machines, reference)
    priced = resolve_prices(machines, prices) if prices else {}

    params = {"threshold": threshold, "alpha": alpha, "min_segment": min_segment,
              "metrics": list(metrics), "format": SITE_FORMAT, "version": __version__}
    manifest_path = out / "data" / "manifest.json"
    old = {} if full else files.read_manifest(manifest_path)
    manifest_path.unlink(missing_ok=True)  # until this build is whole (module docstring)
    if old.get("params") != params:
        old = {}
    old_groups: dict = old.get("groups", {})
    old_series: dict = old.get("series", {})

    sources = {str(s): shard_key(str(s)) for s in frame["source"].dropna().unique()}
    digests = group_digests(frame, metrics)
    changed = {g for g, d in digests.items() if old_groups.get(g, {}).get("digest") != d}

    # shards: one per results file, rewritten when the file changed
    old_sources: dict = old.get("sources", {})
    new_sources, jobs = {}, []
    for src, key in sources.items():
        st = Path(src).stat()
        stamp = [st.st_size, st.st_mtime_ns]
        if old_sources.get(key, {}).get("stamp") != stamp or not (
                out / "data" / "records" / f"{key}.js").exists():
            jobs.append((key, Path(src)))
        new_sources[key] = {"source": src, "stamp": stamp}
    files.remove_data(out, "records", set(old_sources) - set(new_sources))
    settings = {"threshold": threshold, "alpha": alpha, "min_segment": min_segment}
    groups = {g: {"digest": d, "series": [] if g in changed else old_groups[g]["series"]}
              for g, d in digests.items()}
    series_entries = {sid: old_series[sid] for g in groups if g not in changed
                      for sid in groups[g]["series"]}
    shards = files.ShardWriter(out, jobs)  # written while the series are detected
    try:
        _series_pages(frame[frame[GROUP].isin(changed)], out, sources, metrics, settings,
                      groups, series_entries)
        written = shards.wait()
    except BaseException:
        shards.cancel()
        raise
    files.remove_data(out, "series", set(old_series) - set(series_entries))

    entries = payloads.varying_details(payloads.order_entries(list(series_entries.values())))
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = {r.machine: {"hosts": sorted(frame.loc[frame[MACHINE] == r.machine, "host"]
                                        .dropna().astype(str).unique().tolist())[:20],
                        "device_name": None if pd.isna(r.device_name) else str(r.device_name)}
            for r in machines.drop_duplicates("machine").itertuples(index=False)}
    regs = sum(1 for e in entries if payloads.newest_regression(e))
    files.write_data(out / "data" / "overview.js", "overview", {
        "title": title, "generated": now, "version": __version__, "records": len(frame),
        "commits": int(frame["git_commit"].nunique()), "sources": len(sources),
        "params": settings, "series": entries})
    files.write_data(out / "data" / "matrix.js", "matrix",
                     payloads.matrix(entries, info, priced, ref))
    files.write_data(out / "data" / "fields.js", "fields",
                     payloads.record_fields(CONFIG_FIELDS, list(COLUMNS)))
    files.write_pages(out, title, now)
    files.write_manifest(manifest_path, {"params": params, "groups": groups,
                                         "series": series_entries, "sources": new_sources})
    return PublishSummary(out, len(frame), len(series_entries), len(groups), len(changed),
                          written, len(new_sources) - written, regs,
                          time.perf_counter() - start)
