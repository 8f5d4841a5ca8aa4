"""``trainmark report``: results files -> one folder with report.html, report.md (+ PNG figures),
summary.csv/.parquet and the tables behind them.

Built from stored results alone (any machine, no network). Results files are untrusted: they are
read as JSON (never pickle), a malformed file is skipped with a one-line warning naming the file
and line while the others still report, and every string is escaped on the way out
(``render.document``). Analysis lives in ``analysis.report_data`` / ``analysis.hardware``, drawing
in ``render.figures``; this module only assembles sections and writes files. A new report
section goes in ``_sections`` (docs/architecture.md, "Where things go").
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from harness import __version__
from harness.analysis import cost as costs
from harness.analysis import report_data as rd
from harness.analysis.hardware import HardwareComparison, hardware_comparison, resolve_baseline
from harness.analysis.node_health import ALPHA, MIN_CONFIGS, THRESHOLD, NodeHealth, node_health
from harness.errors import UserError, one_line
from harness.render.document import Section, Table, write_pages
from harness.render.figures import Chart, report_charts
from harness.store.frame import export, load_lenient

REPORTS_DIR = Path("reports")


def load_inputs(paths: Sequence[str | os.PathLike[str]]) -> tuple[pd.DataFrame, list[str]]:
    """Records of every readable file, and one line per file (or torn line) that was skipped.
    ``UserError`` only when nothing at all is readable (``store.frame.load_lenient``: large
    inputs through the results cache). Only the columns a report reads
    (``analysis.report_data.REPORT_COLUMNS``)."""
    return load_lenient(paths, rd.REPORT_COLUMNS)


def default_out_dir(paths: Sequence[str | os.PathLike[str]]) -> Path:
    stems = list(dict.fromkeys(Path(p).stem for p in paths))
    return REPORTS_DIR / "-vs-".join(stems)[:120]


def _cost_section(cost: pd.DataFrame, prices: Mapping[str, float],
                  comparison: HardwareComparison | None) -> Section:
    priced = "; ".join(f"{m}: USD {usd:g}/h" for m, usd in prices.items())
    text = [f"At the hourly prices given with --price ({priced}): US dollars per million samples "
            "(tokens for language models; see unit) = USD/h / (throughput × 3600) × 1,000,000, "
            "from the median throughput of each configuration's ok records."]
    if comparison is not None:
        text.append(f"'× ref' is throughput over the reference machine's ({comparison.baseline}) "
                    "on the same configuration"
                    + ("; 'cost × ref' is cost per item over the reference's: above 1 is dearer "
                       "per item, however much faster." if comparison.baseline in prices
                       else "; price the reference too for cost relative to it."))
    text.append("J per item = 1 / items per joule, from recorded energy or power."
                if "J per item" in cost else
                "No energy or power was recorded, so there is no energy per item.")
    return Section("Cost", "cost", text, [
        Table(costs.cheapest(cost), "Cheapest configuration per model and machine",
              empty="No priced machine ran a configuration ok."),
        Table(cost, "Every configuration on a priced machine",
              empty="No priced machine ran a configuration ok."),
    ])


def _health_section(health: NodeHealth) -> Section:
    slow = health.slow
    verdict = (f"Slow beyond the noise: {', '.join(f'{n} ({p})' for p, n in slow)}."
               if slow else "No node is slow beyond the noise.")
    return Section("Node health", "node-health", [
        "Nodes of one partition that ran the same configurations: each node's throughput over "
        "the partition's median across its nodes, configuration by configuration. A node is "
        f"flagged slow when a one-sided t-test on the logs of its ratios (at least "
        f"{MIN_CONFIGS} configurations, Bonferroni over the partition's nodes) is significant "
        f"at {ALPHA:g} and its geometric mean is at least {THRESHOLD:.0%} below 1: slower on "
        "the whole, beyond the scatter of its own ratios. " + verdict,
    ], [Table(health.summary, "Each node against its partition"),
        Table(health.detail, "Each node and configuration")])


def _sections(df: pd.DataFrame, comparison: HardwareComparison | None, charts: list[Chart],
              skipped: list[str], cost: pd.DataFrame | None = None,
              prices: Mapping[str, float] | None = None,
              health: NodeHealth | None = None) -> list[Section]:
    labels = rd.machines(df)
    single = len(labels) == 1
    failures = rd.failures_table(df)
    n_fail = len(failures)

    def drop_machine(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.drop(columns="machine") if single and "machine" in frame else frame

    prov = rd.provenance_table(df)
    prov.insert(0, "", prov.index)
    sections = [Section(
        "Machines", "machines",
        [f"{len(df)} records from {len(labels)} machine{'s' if not single else ''}, "
         f"{n_fail} not ok. A machine is one host and device name pair"
         + (", or one Slurm partition for a fleet's records (trainmark fleet)."
            if "partition" in df and df["partition"].notna().any() else ".")],
        [Table(prov.reset_index(drop=True))])]

    summary = rd.model_summary(df)
    sections.append(Section("Summary", "summary", [
        "Per model: the fastest configuration (highest median throughput) with its peak memory "
        "and held-out accuracy, and the most accurate configuration. Peak MiB is the torch "
        "allocator's peak where recorded (CUDA), else the host process's peak RSS (CPU)."],
        [Table(drop_machine(summary))]))

    if comparison is not None:
        energy = "items/J" in " ".join(comparison.table.columns)
        sections.append(Section("Hardware comparison", "hardware", [
            f"Reference machine: {comparison.baseline}. Configurations are matched on "
            f"{', '.join(comparison.key)}; AMP matches AMP where each machine ran one variant. "
            "'× ref' is throughput over the reference's on the same configuration (median over "
            "seeds). "
            + ("Items per joule = throughput per watt of recorded power."
               if energy else "No power or energy was recorded, so there is no per-watt column."),
        ], [
            *[c for c in charts if c.name == "relative_throughput"],
            Table(comparison.table, "Matched configurations",
                  empty="No configuration was run on the reference and another machine."),
            Table(comparison.only_some, "Configurations not run on every machine",
                  empty="Every configuration ran on every machine."),
        ]))

    if cost is not None and prices:  # beside the comparison: speed and price read together
        sections.append(_cost_section(cost, prices, comparison))

    if health is not None and len(health.summary):
        sections.append(_health_section(health))

    figures = [c for c in charts if c.name != "relative_throughput"]
    sections.append(Section("Figures", "figures",
                            [] if figures else ["No figures: no configuration ran ok."], figures))
    skipped_here = [f"{n} configuration{'s' if n != 1 else ''} did not run on this "
                    f"machine (unavailable): {reason}" for reason, n in rd.unavailable_reasons(df)]
    sections.append(Section("Failures", "failures", skipped_here, [Table(
        drop_machine(failures), empty=f"No failures: all {len(df)} records are ok.")]))
    table = drop_machine(rd.config_table(df))
    table = table.drop(columns=[c for c in ("items per joule",) if table[c].isna().all()])
    sections.append(Section("All configurations", "configs", [], [Table(table)],
                            collapsed=True))

    inputs = df.groupby("source", sort=False).size().reset_index()
    inputs.columns = ["results file", "records"]
    sections.append(Section("Inputs", "inputs", [f"Skipped: {s}" for s in skipped],
                            [Table(inputs)]))
    return sections


def write_report(frame: pd.DataFrame, out_dir: str | os.PathLike[str],
                 baseline: str | None = None, skipped: Sequence[str] = (),
                 prices: Mapping[str, float] | None = None) -> Path:
    """Write the report for ``frame`` (from ``load_results``) into ``out_dir``; returns the path
    of report.html. ``prices``: {machine label, host or device name: USD per hour}
    (``analysis.cost.parse_prices``) adds a cost section. Raises ``UserError`` before writing
    anything if ``baseline`` or a priced label is unknown."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the report")
    if frame.empty:
        raise UserError("no records to report")
    df = rd.prepare(frame)
    if "source" not in df:
        df["source"] = "(in memory)"
    ref = resolve_baseline(df, baseline)
    priced = costs.resolve_prices(df, prices) if prices else {}
    comparison = hardware_comparison(df, ref) if len(rd.machines(df)) > 1 else None
    cost = (costs.cost_table(df, priced, comparison.baseline if comparison else None)
            if priced else None)
    charts = report_charts(df, comparison)
    health = node_health(df)
    sections = _sections(df, comparison, charts, list(skipped), cost, priced, health)

    labels = rd.machines(df)
    title = "trainmark report: " + " vs ".join(labels)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = [f"Generated {now} by trainmark {__version__} from {len(df)} records in "
            f"{df['source'].nunique()} results file(s) on {', '.join(labels)}."]

    html_path = write_pages(out, "report", title, meta, sections, charts)
    tables = {"summary": rd.model_summary(df), "records": rd.config_table(df)}
    if comparison is not None:
        tables["comparison"] = comparison.table
    if cost is not None:
        tables["cost"] = cost
    if len(health.summary):
        tables["node_health"] = health.summary
    for name, table in tables.items():
        tidy = table.convert_dtypes()  # nullable dtypes: Parquet keeps missing as null
        export(tidy, out / f"{name}.csv")
        export(tidy, out / f"{name}.parquet")
    return html_path


def report_after_run(results: Path, out_dir: Path) -> Path | None:
    """``trainmark run``'s report. The results are already on disk; any failure here is a
    warning, never a lost or failed sweep."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame, _ = load_inputs([results])
        path = write_report(frame, out_dir)
    except Exception as exc:  # a report bug must not turn a finished sweep into a failure
        print(f"trainmark: warning: report not written ({one_line(exc)}); results are safe in "
              f"{results}; retry with: trainmark report {results}", file=sys.stderr)
        return None
    print(f"report: {path}")
    return path
