"""Report tables: pure functions from a results DataFrame (``load_results``) to what a report shows.

Nothing here draws or renders; ``render.figures`` plots these frames and ``render.report`` turns
them into HTML and Markdown. Every function takes the frame returned by ``prepare`` (the records
plus a few derived columns) and returns a new DataFrame with readable column names and raw
(unformatted) values, so the same frame feeds the page, the Markdown and ``summary.csv``.

A *machine* is one (host, device name) pair (``harness.schema.MACHINE_LABEL_FIELDS``): the CPU and
the GPU of one host are two machines, because comparing them is exactly what a hardware
comparison is for. A record from a fleet job (``trainmark fleet``) names its Slurm partition, and
there the machine is the partition (with the device name where a partition has several): the
nodes of one partition are one kind of hardware, and the report sets partitions side by side.
"""

from __future__ import annotations

import pandas as pd

from harness.schema import MACHINE_LABEL_FIELDS, STATUSES

MIB = 1024 * 1024
# Config fields that define "the same experiment" across machines. ``device`` is deliberately
# absent (it is the hardware being compared), and so are lr/seed/steps: they change accuracy or
# noise, not what is measured. Optional axes join the key only where the results have them.
BASE_KEY = ("model", "dataset", "batch_size", "precision", "optimizer")
# Config axes that split configs where they vary (and are ignored where they do not, so older
# files without them still match): DDP vs FSDP, or checkpointing, are different configs.
OPTIONAL_AXES = ("compile", "channels_last", "nproc", "parallel", "activation_checkpointing",
                 "deterministic", "target_accuracy")
PRECISION_ORDER = ("fp32", "amp", "amp-bf16", "amp-fp16")
# Every record column a report reads, and nothing more: ``render.report.load_inputs`` asks the
# store for these alone. A report reads ~55 of the ~175 columns, and the others would be most
# of its memory at a fleet-year of records (3.6 GB at 1M records with every column). Sorted
# by name; ``tests/test_command_columns.py`` checks that every column named in the report's
# modules is here and that a report from these columns alone equals one from every column.
REPORT_COLUMNS = (
    "activation_checkpointing", "batch_size", "channels_last", "code_digest", "code_identity",
    "compile", "cpu_amx", "cpu_capability", "cpu_model", "cpu_native_bf16", "cpu_native_fp16",
    "cuda_version", "cudnn_version", "dataset", "deterministic", "device", "device_name",
    "driver_version", "error", "eval_accuracy", "eval_loss", "git_commit", "host", "job_id",
    "model", "node", "nproc", "num_threads", "optimizer", "os", "parallel", "partition",
    "peak_memory_allocated_bytes", "peak_rss_bytes", "power_w_mean", "precision", "python",
    "repeat_throughputs", "run_id", "samples_per_joule", "source", "status",
    "step_time_ms_iqr", "step_time_ms_median", "target_accuracy", "tf32_cudnn", "tf32_matmul",
    "throughput", "throughput_unit", "timestamp", "torch_version", "torchvision_version",
    "trainmark_version",
)
FAILED = tuple(s for s in STATUSES if s != "ok")


def _present(value: object) -> bool:
    return value is not None and value is not pd.NA and not (
        isinstance(value, float) and value != value)


def _num(series: pd.Series) -> pd.Series:
    """Numeric view of a column that may come from an untrusted extra field (strings -> NaN)."""
    return pd.to_numeric(series.astype(object), errors="coerce").astype("Float64")


def _text(series: pd.Series, missing: str) -> pd.Series:
    return series.astype(object).where(series.notna(), missing).astype(str)


def _finite_list(value: object) -> list[float]:
    """Repeat samples from an untrusted field: only finite positive numbers survive."""
    if not isinstance(value, (list, tuple)):
        return []
    out = []
    for v in value:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf"):
            out.append(float(v))
    return out


def machine_labels(df: pd.DataFrame) -> pd.Series:
    """A readable label per row: the device name, with the host added only where two machines
    share a device name (two identical GPUs in different hosts); for a fleet job's record, its
    partition (``partition: device name`` where the partition ran on several devices)."""
    host_field, name_field = MACHINE_LABEL_FIELDS
    host = _text(df[host_field], "unknown host")
    name = _text(df[name_field], "unknown device")
    pairs = list(dict.fromkeys(zip(host, name, strict=True)))
    label: dict[tuple[str, str], str] = {}
    for h, n in pairs:
        same_name = [p for p in pairs if p[1] == n]
        label[(h, n)] = n if len(same_name) == 1 else f"{n} @ {h}"
    out = pd.Series([label[p] for p in zip(host, name, strict=True)], index=df.index,
                    dtype=object)
    if "partition" in df.columns and df["partition"].notna().any():
        part = df["partition"].astype(object)
        for p in dict.fromkeys(part.dropna().astype(str)):
            rows = part.astype(str).eq(p) & part.notna()
            known = df.loc[rows, name_field].dropna().astype(str).unique()
            # a lost config's record may not know its device: it belongs to the partition's
            out[rows] = p if len(known) <= 1 else (p + ": " + name[rows])
    return out


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """The records plus derived columns every table uses:

    - ``machine``: readable machine label (see ``machine_labels``);
    - ``memory_mib`` / ``memory_kind``: torch allocator peak where recorded (CUDA), else the host
      process's peak RSS (CPU), in MiB, with which one it is;
    - ``per_watt``: samples (or tokens) per joule where energy or power was recorded, else NA;
    - ``items``: what ``throughput`` counts (``samples`` or ``tokens``).
    """
    out = df.copy()
    out["machine"] = machine_labels(out) if len(out) else pd.Series(dtype=object)
    alloc = _num(out["peak_memory_allocated_bytes"])
    rss = _num(out["peak_rss_bytes"])
    out["memory_mib"] = alloc.where(alloc.notna(), rss) / MIB
    out["memory_kind"] = pd.Series(
        ["allocator" if a else ("host RSS" if r else None)
         for a, r in zip(alloc.notna(), rss.notna(), strict=True)],
        index=out.index, dtype=object)
    tp = _num(out["throughput"])
    per_watt = pd.Series(pd.NA, index=out.index, dtype="Float64")
    if "samples_per_joule" in out:
        per_watt = _num(out["samples_per_joule"])
    if "power_w_mean" in out:  # throughput / watts = items per joule
        power = _num(out["power_w_mean"])
        derived = (tp / power.where(power > 0)).astype("Float64")
        per_watt = per_watt.where(per_watt.notna(), derived)
    out["per_watt"] = per_watt
    out["items"] = _text(out["throughput_unit"], "items/s").str.replace("/s", "", regex=False)
    out["throughput"] = tp
    return out


def machines(df: pd.DataFrame) -> list[str]:
    """Machine labels in order of first appearance (the first is the default reference)."""
    return list(dict.fromkeys(df["machine"]))


def sort_precisions(values: list[str]) -> list[str]:
    rank = {p: i for i, p in enumerate(PRECISION_ORDER)}
    return sorted(values, key=lambda p: (rank.get(p, len(rank)), p))


def _joined(values: pd.Series, limit: int = 3) -> object:
    uniq = [str(v) for v in dict.fromkeys(values.dropna())]
    if not uniq:
        return pd.NA
    return ", ".join(uniq[:limit]) + (f" (+{len(uniq) - limit} more)" if len(uniq) > limit else "")


# Provenance header rows: (label, record column); TF32 flags are joined in after "cuDNN".
_PROVENANCE_ROWS = (
    ("device", "device"), ("device name", "device_name"), ("host", "host"),
    ("CPU", "cpu_model"), ("threads", "num_threads"), ("OS", "os"),
    ("driver", "driver_version"), ("Python", "python"), ("torch", "torch_version"),
    ("torchvision", "torchvision_version"), ("CUDA (torch build)", "cuda_version"),
    ("cuDNN", "cudnn_version"), ("trainmark", "trainmark_version"),
)


def provenance_table(df: pd.DataFrame) -> pd.DataFrame:
    """One column per machine, one row per provenance fact: which hardware and software made the
    numbers, when, and how many of them failed."""
    rows: dict[str, dict[str, object]] = {}
    for label, g in df.groupby("machine", sort=False):
        stamps = pd.to_datetime(g["timestamp"].astype(object), errors="coerce", utc=True)
        stamps = stamps.dropna().dt.strftime("%Y-%m-%d %H:%M")
        failures = g[g["status"] != "ok"]["status"].fillna("no status").value_counts()
        commit = g["git_commit"].dropna().astype(str).map(
            lambda c: c[:12] + ("-dirty" if c.endswith("-dirty") else ""))
        tf32 = g[["tf32_matmul", "tf32_cudnn"]].dropna().astype(str).agg("/".join, axis=1)
        rows[label] = {
            **{name: _joined(g[col]) for name, col in _PROVENANCE_ROWS[:4]},
            "CPU features": _joined(cpu_feature_text(g)),
            **{name: _joined(g[col]) for name, col in _PROVENANCE_ROWS[4:12]},
            "TF32 matmul/cuDNN": _joined(tf32),
            **{name: _joined(g[col]) for name, col in _PROVENANCE_ROWS[12:]},
            "commit": _joined(commit),
            **_fleet_rows(g),
            "date (UTC)": (f"{stamps.min()} – {stamps.max()}" if stamps.min() != stamps.max()
                           else stamps.min()) if len(stamps) else pd.NA,
            "datasets": _joined(g["dataset"], limit=6),
            "runs": g["run_id"].nunique(),
            "records": len(g),
            "failures": int(failures.sum()) if failures.empty else
            f"{int(failures.sum())} ({', '.join(f'{n} {s}' for s, n in failures.items())})",
        }
    return pd.DataFrame(rows)


def cpu_feature_text(g: pd.DataFrame) -> pd.Series:
    """Per record, the CPU features that decide speed in a few words, e.g. ``AVX2, bf16
    emulated`` or ``AVX512, native bf16, AMX`` (null where a record predates the fields)."""
    def words(r: pd.Series) -> object:
        cap, bf16 = r.get("cpu_capability"), r.get("cpu_native_bf16")
        if pd.isna(cap) and pd.isna(bf16):
            return pd.NA
        bits = [] if pd.isna(cap) else [str(cap)]
        if not pd.isna(bf16):
            bits.append("native bf16" if bool(bf16) else "bf16 emulated")
        if not pd.isna(r.get("cpu_native_fp16")) and bool(r.get("cpu_native_fp16")):
            bits.append("native fp16")
        if not pd.isna(r.get("cpu_amx")) and bool(r.get("cpu_amx")):
            bits.append("AMX")
        return ", ".join(bits)

    cols = [c for c in ("cpu_capability", "cpu_native_bf16", "cpu_native_fp16", "cpu_amx")
            if c in g]
    if not cols:
        return pd.Series(pd.NA, index=g.index, dtype=object)
    return g[cols].apply(words, axis=1).astype(object)


def _fleet_rows(g: pd.DataFrame) -> dict[str, object]:
    """Which code made a machine's numbers and, for a fleet's records, where they ran."""
    rows: dict[str, object] = {}
    if "code_identity" in g and g["code_identity"].notna().any():
        rows["code"] = _joined(g["code_identity"])
    if "partition" in g and g["partition"].notna().any():
        jobs = g["job_id"].dropna().astype(str) if "job_id" in g else pd.Series(dtype=str)
        rows.update({"partition": _joined(g["partition"]), "nodes": _joined(g["node"], limit=6),
                     "jobs": _joined(jobs, limit=6)})
    return rows


def config_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every record as one readable row (failures included): what the figures are drawn from."""
    return pd.DataFrame({
        "machine": df["machine"],
        "model": df["model"],
        "dataset": df["dataset"],
        "batch size": df["batch_size"],
        "precision": df["precision"],
        "optimizer": df["optimizer"],
        "status": df["status"],
        "throughput": df["throughput"],
        "unit": df["throughput_unit"],
        "step ms (median)": _num(df["step_time_ms_median"]),
        "step ms (IQR)": _num(df["step_time_ms_iqr"]),
        "peak MiB": df["memory_mib"],
        "memory": df["memory_kind"],
        "items per joule": df["per_watt"],
        "eval accuracy": _num(df["eval_accuracy"]),
        "eval loss": _num(df["eval_loss"]),
    }).reset_index(drop=True)


def _config_words(row: pd.Series) -> str:
    return f"bs {row['batch_size']} {row['precision']} {row['optimizer']}"


def model_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per machine and model: the fastest config and its memory and accuracy, and the most
    accurate config (short sweeps favour different optimizers than speed does)."""
    rows = []
    for (label, model, dataset), g in df.groupby(
            ["machine", "model", "dataset"], sort=False, dropna=False):
        ok = g[(g["status"] == "ok") & g["throughput"].notna()]
        row: dict[str, object] = {"machine": label, "model": model, "dataset": dataset,
                                  "ok / configs": f"{len(ok)} / {len(g)}"}
        if len(ok):
            i = ok["throughput"].astype(float).idxmax()
            acc = _num(ok["eval_accuracy"])
            row.update({  # .at keeps each column's dtype (a row Series would make ints floats)
                "best throughput": ok.at[i, "throughput"], "unit": ok.at[i, "throughput_unit"],
                "batch size": ok.at[i, "batch_size"], "precision": ok.at[i, "precision"],
                "optimizer": ok.at[i, "optimizer"], "peak MiB": ok.at[i, "memory_mib"],
                "eval accuracy": acc.at[i],
            })
            if acc.notna().any():
                top = ok.loc[acc.astype(float).idxmax()]
                row.update({"best eval accuracy": acc.max(), "most accurate": _config_words(top)})
        rows.append(row)
    columns = ["machine", "model", "dataset", "best throughput", "unit", "batch size", "precision",
               "optimizer", "peak MiB", "eval accuracy", "best eval accuracy", "most accurate",
               "ok / configs"]
    # nullable dtypes: a model with no ok config must not turn batch sizes into floats
    return pd.DataFrame(rows).reindex(columns=columns).convert_dtypes()


def failures_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every record that is not ``ok``, with its one-line error: nothing is dropped silently."""
    bad = df[df["status"] != "ok"]
    return pd.DataFrame({
        "machine": bad["machine"], "model": bad["model"], "dataset": bad["dataset"],
        "batch size": bad["batch_size"], "precision": bad["precision"],
        "optimizer": bad["optimizer"], "status": bad["status"].fillna("missing"),
        "error": bad["error"],
    }).reset_index(drop=True)


def unavailable_reasons(df: pd.DataFrame) -> list[tuple[str, int]]:
    """Why configs did not run here (status ``unavailable``), each reason once with how many
    configs it held back, in order of first appearance: e.g. 18 amp-bf16 configs on a CPU
    without native bf16 are one reason, not 18 lines."""
    counts: dict[str, int] = {}
    for err in df.loc[df["status"] == "unavailable", "error"]:
        reason = unavailable_reason(err)
        counts[reason] = counts.get(reason, 0) + 1
    return list(counts.items())


def unavailable_reason(error: object) -> str:
    """An ``unavailable`` record's reason as ``unavailable_reasons`` names it."""
    return "no reason recorded" if pd.isna(error) else str(error).removeprefix("Unavailable: ")


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "ok") & df["throughput"].notna()]


def throughput_by_batch(df: pd.DataFrame) -> pd.DataFrame:
    """Median throughput and memory over optimizers (and seeds) per machine, model, precision
    and batch size: the optimizer changes speed little, and one line per optimizer is clutter."""
    ok = _ok(df)
    cols = ["machine", "model", "items", "precision", "batch_size"]
    if ok.empty:
        return pd.DataFrame(columns=[*cols, "throughput", "memory_mib", "memory_kind"])
    return (ok.groupby(cols, sort=False)
              .agg(throughput=("throughput", "median"), memory_mib=("memory_mib", "max"),
                   memory_kind=("memory_kind", "first"))
              .reset_index())


def amp_speedup(df: pd.DataFrame) -> pd.DataFrame:
    """AMP throughput over fp32 throughput for the same machine, model, dataset, batch size and
    optimizer (median over seeds), one row per AMP precision."""
    ok = _ok(df)
    key = ["machine", "model", "dataset", "batch_size", "optimizer"]
    med = ok.groupby([*key, "precision"], sort=False, dropna=False)["throughput"].median()
    med = med.reset_index()
    fp32 = med[med["precision"] == "fp32"].drop(columns="precision")
    amp = med[med["precision"].astype(str).str.startswith("amp")]
    pairs = amp.merge(fp32, on=key, suffixes=("", "_fp32"))
    pairs["speedup"] = pairs["throughput"] / pairs["throughput_fp32"]
    return pairs.rename(columns={"throughput": "throughput_amp"}).reset_index(drop=True)


def accuracy_by_optimizer(df: pd.DataFrame) -> pd.DataFrame:
    """Held-out accuracy of every ok record with its model, optimizer and precision."""
    ok = _ok(df).assign(eval_accuracy=lambda d: _num(d["eval_accuracy"]))
    ok = ok[ok["eval_accuracy"].notna()]
    return ok[["machine", "model", "optimizer", "precision", "batch_size", "eval_accuracy"]]


def repeat_spread(df: pd.DataFrame) -> pd.DataFrame:
    """Long frame of per-repeat step time relative to the config's median repeat, in percent.

    A repeat's mean step time is items / throughput, so its ratio to the median repeat's is
    median_throughput / repeat_throughput: exact, and comparable across models and units.
    """
    rows = []
    for _, r in _ok(df).iterrows():
        samples = _finite_list(r["repeat_throughputs"])
        if len(samples) < 2:
            continue
        med = float(pd.Series(samples).median())
        for i, tp in enumerate(samples):
            rows.append({"machine": r["machine"], "model": r["model"],
                         "config": _config_words(r), "repeat": i,
                         "step_time_pct": 100.0 * (med / tp - 1.0)})
    return pd.DataFrame(rows, columns=["machine", "model", "config", "repeat", "step_time_pct"])
