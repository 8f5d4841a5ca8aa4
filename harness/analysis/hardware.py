"""Side-by-side hardware comparison: pure functions on a ``report_data.prepare``d DataFrame.

Configurations are matched across machines on their config fields (``report_data.BASE_KEY`` plus
the optional axes the results have). Each machine's throughput is divided by the reference
machine's for the same configuration; memory and, where energy was recorded, throughput per watt
sit side by side. Configurations missing on some machine are listed, never dropped.

AMP is matched by intent: ``--precisions amp`` resolves to bf16 autocast on a CPU and fp16 on a
GPU, so where a machine ran exactly one AMP variant of a configuration it matches the other
machine's one AMP variant (the table shows both, e.g. ``amp-bf16 / amp-fp16``). A machine that
ran both variants keeps them apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.analysis.report_data import BASE_KEY, OPTIONAL_AXES, machines, sort_precisions
from harness.errors import UserError

MATCH = "precision match"  # the precision as matched: "amp" where the AMP variant is unambiguous


@dataclass
class HardwareComparison:
    baseline: str  # label of the reference machine
    machines: list[str]  # all machines, reference first
    key: list[str]  # config fields matched on
    table: pd.DataFrame  # one row per config present on the reference and another machine
    only_some: pd.DataFrame  # configs missing on at least one machine
    relative: pd.DataFrame  # geometric-mean relative throughput per machine x model x precision


def match_key(df: pd.DataFrame) -> list[str]:
    """Config fields to match on: the base fields, plus the optional axes that vary. An axis with
    one value everywhere is left out, so older files that lack it still match newer ones."""
    extra = [c for c in OPTIONAL_AXES
             if c in df.columns and df[c].dropna().astype(str).nunique() > 1]
    return [*BASE_KEY, *extra]


def machines_named(df: pd.DataFrame, name: str) -> list[str]:
    """Machine labels that ``name`` names, case-insensitively: a machine label, else a host (every
    machine on it: its CPU and its GPU), else a device name (every host with that device). Empty
    when it names none. ``--baseline`` takes the first; ``--price`` prices them all."""
    want = name.strip().casefold()
    for col in ("machine", "host", "device_name"):
        hits = df[df[col].astype(str).str.casefold() == want]
        if len(hits):
            return list(dict.fromkeys(hits["machine"].astype(str)))
    return []


def resolve_baseline(df: pd.DataFrame, baseline: str | None) -> str:
    """The reference machine's label from ``--baseline``: a results file (its first record's
    machine), a machine label, a host or a device name. Default: the first machine."""
    labels = machines(df)
    if not baseline:
        return labels[0]
    want = baseline.strip()
    sources = df["source"].astype(str) if "source" in df.columns else pd.Series(dtype=str)
    for i, src in sources.items():
        if src == want or Path(src).name == want or _same_file(src, want):
            return str(df.at[i, "machine"])
    named = machines_named(df, want)
    if named:
        return named[0]
    choices = ", ".join([*labels, *dict.fromkeys(sources)])
    raise UserError(f"--baseline {baseline!r} matches no results file or machine; valid: {choices}")


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def precision_match(df: pd.DataFrame, rest: list[str]) -> pd.Series:
    """The precision as matched across machines: ``amp`` where a machine ran exactly one AMP
    variant of the config (the ``rest`` fields), else the precision itself."""
    prec = df["precision"].astype(object).where(df["precision"].notna(), "—").astype(str)
    is_amp = prec.str.startswith("amp")
    variants = (df.assign(_p=prec)[is_amp]
                .groupby(["machine", *rest], dropna=False)["_p"].transform("nunique"))
    out = prec.copy()
    out.loc[variants.index[variants == 1]] = "amp"
    return out


def _aggregate(g: pd.DataFrame) -> dict[str, object]:
    """One machine's records of one config (several with --seeds or merged files)."""
    ok = g[(g["status"] == "ok") & g["throughput"].notna()]
    if ok.empty:
        return {"status": str(g["status"].dropna().iloc[-1]) if g["status"].notna().any()
                else "missing", "throughput": math.nan, "memory": math.nan, "per_watt": math.nan}
    return {"status": "ok", "throughput": float(ok["throughput"].astype(float).median()),
            "memory": float(ok["memory_mib"].astype(float).max()),
            "per_watt": float(ok["per_watt"].astype(float).median())}


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def hardware_comparison(df: pd.DataFrame, baseline: str | None = None) -> HardwareComparison:
    """Match configs across machines and put them side by side (see the module docstring)."""
    ref = resolve_baseline(df, baseline)
    labels = [ref, *[m for m in machines(df) if m != ref]]
    key = match_key(df)
    rest = [c for c in key if c != "precision"]
    work = df.assign(**{MATCH: precision_match(df, rest)})
    group_cols = [*rest[:3], MATCH, *rest[3:]]  # model, dataset, batch_size, precision, ...
    energy = bool(df["per_watt"].notna().any())

    rows, missing, ratios = [], [], {}
    for values, g in work.groupby(group_cols, dropna=False, sort=False):
        fields = dict(zip(group_cols, values, strict=True))
        shown = {c: fields[c] for c in rest[:3]}
        shown["precision"] = " / ".join(sort_precisions(list(dict.fromkeys(
            g["precision"].dropna().astype(str))))) or pd.NA
        shown.update({c: fields[c] for c in rest[3:]})
        per = {m: _aggregate(g[g["machine"] == m]) for m in labels if (g["machine"] == m).any()}
        absent = [m for m in labels if m not in per]
        if absent:
            missing.append({**shown, "present on": ", ".join(per), "missing on": ", ".join(absent)})
        if ref not in per or len(per) < 2:
            continue
        row: dict[str, object] = {**shown, "unit": g["throughput_unit"].dropna().iloc[0]
                                  if g["throughput_unit"].notna().any() else pd.NA}
        base_tp = per[ref]["throughput"]
        notes = []
        for m in labels:
            a = per.get(m)
            tp = a["throughput"] if a else math.nan
            row[f"{m} throughput"] = tp
            if m != ref:
                rel = tp / base_tp if a and base_tp > 0 else math.nan
                row[f"{m} × ref"] = rel
                if rel == rel:
                    ratios.setdefault((m, fields["model"], fields[MATCH]), []).append(rel)
            row[f"{m} peak MiB"] = a["memory"] if a else math.nan
            if energy:
                row[f"{m} items/J"] = a["per_watt"] if a else math.nan
            if a and a["status"] != "ok":
                notes.append(f"{a['status']} on {m}")
            elif not a:
                notes.append(f"not run on {m}")
        row["notes"] = "; ".join(notes)
        rows.append(row)

    relative = []
    for (m, model, prec), vals in ratios.items():
        relative.append({"machine": m, "model": model, "precision": prec,
                         "relative throughput": _geomean(vals), "configs": len(vals)})
    if relative:  # the reference's own bars (1.0) make the chart's scale obvious
        seen = dict.fromkeys((r["model"], r["precision"]) for r in relative)
        relative = [{"machine": ref, "model": mo, "precision": p, "relative throughput": 1.0,
                     "configs": 0} for mo, p in seen] + relative
    key_shown = [*rest[:3], "precision", *rest[3:]]
    readable = {"batch_size": "batch size"}
    return HardwareComparison(
        baseline=ref, machines=labels, key=key,
        table=pd.DataFrame(rows).rename(columns=readable),
        only_some=pd.DataFrame(missing, columns=[*key_shown, "present on", "missing on"])
        .rename(columns=readable),
        relative=pd.DataFrame(relative, columns=["machine", "model", "precision",
                                                 "relative throughput", "configs"]),
    )
