"""Report figures: matplotlib (Agg, no pyplot state) drawings of ``report_data`` frames as PNG.

One style for every figure (``STYLE``), one colour per precision and one line style and marker
per machine, so a reader learns the encoding once. Labels carry units. Strings from results
files are untrusted: mathtext parsing is off, so a ``$`` in a device name is drawn, not parsed.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # reports are built on headless machines; never open a window

import pandas as pd  # noqa: E402
from matplotlib import rc_context  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from harness.analysis import report_data as rd  # noqa: E402

STYLE = {
    "font.family": "DejaVu Sans",  # ships with matplotlib: identical text on every machine
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "savefig.dpi": 100,
    "savefig.bbox": "tight",
    "text.parse_math": False,
}
PRECISION_COLORS = {"fp32": "#4C72B0", "amp": "#DD8452", "amp-bf16": "#DD8452",
                    "amp-fp16": "#55A868"}
MACHINE_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3"]
MACHINE_LINES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]
PANEL_W, PANEL_H = 4.2, 3.0  # inches per panel
# matplotlib 3.10 renamed boxplot's ``vert=False`` to ``orientation="horizontal"``.
_MPL = tuple(int(p) for p in matplotlib.__version__.split(".")[:2])
HORIZONTAL = {"orientation": "horizontal"} if _MPL >= (3, 10) else {"vert": False}


@dataclass
class Chart:
    name: str  # file stem of the PNG beside report.md
    title: str
    caption: str
    png: bytes


def _short(text: object, limit: int = 40) -> str:
    """Figure text stays short: a long (or hostile) device name must not squash the axes."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _color(precision: str, i: int = 0) -> str:
    return PRECISION_COLORS.get(precision, MACHINE_COLORS[(i + 3) % len(MACHINE_COLORS)])


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _panels(n: int, ncols: int = 3, height: float = PANEL_H) -> tuple[Figure, list]:
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(PANEL_W * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend(fig: Figure, axes: list) -> None:
    """One legend under the panels: the same encoding holds for every panel, and a legend
    inside a panel hides data."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center",
                   ncols=min(4, len(entries)))


def _thousands(ax) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


def _by_batch(df: pd.DataFrame, value: str, ylabel: str) -> bytes | None:
    """Line per (machine, precision) over batch size, one panel per model."""
    data = rd.throughput_by_batch(df).dropna(subset=[value])
    if data.empty:
        return None
    labels = rd.machines(df)
    models = list(dict.fromkeys(data["model"]))
    fig, axes = _panels(len(models))
    for ax, model in zip(axes, models, strict=True):
        d = data[data["model"] == model]
        for (machine, prec), line in d.groupby(["machine", "precision"], sort=False):
            line = line.sort_values("batch_size")
            style, marker = MACHINE_LINES[labels.index(machine) % len(MACHINE_LINES)]
            name = prec if len(labels) == 1 else f"{prec}, {_short(machine)}"
            ax.plot(line["batch_size"].astype(float), line[value].astype(float), style,
                    marker=marker, color=_color(prec), label=name)
        sizes = sorted(int(b) for b in d["batch_size"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
        ax.set_title(model)
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel.format(items=d["items"].iloc[0]))
        _thousands(ax)
    _legend(fig, axes)
    return _png(fig)


def throughput_figure(df: pd.DataFrame) -> bytes | None:
    return _by_batch(df, "throughput", "throughput ({items}/s)")


def memory_figure(df: pd.DataFrame) -> bytes | None:
    return _by_batch(df, "memory_mib", "peak memory (MiB)")


def amp_speedup_figure(df: pd.DataFrame) -> bytes | None:
    """Bars of AMP over fp32 throughput per batch size (median over optimizers), per model."""
    pairs = rd.amp_speedup(df)
    if pairs.empty:
        return None
    med = (pairs.groupby(["model", "batch_size", "machine", "precision"], sort=False)["speedup"]
           .median().reset_index())
    models = list(dict.fromkeys(med["model"]))
    series = list(dict.fromkeys(zip(med["machine"], med["precision"], strict=True)))
    multi = med["machine"].nunique() > 1
    fig, axes = _panels(len(models))
    width = 0.8 / len(series)
    for ax, model in zip(axes, models, strict=True):
        d = med[med["model"] == model]
        sizes = sorted(int(b) for b in d["batch_size"].unique())
        for j, (machine, prec) in enumerate(series):
            s = d[(d["machine"] == machine) & (d["precision"] == prec)]
            xs = [sizes.index(int(b)) + (j - (len(series) - 1) / 2) * width
                  for b in s["batch_size"]]
            ax.bar(xs, s["speedup"].astype(float), width, color=MACHINE_COLORS[j % 7] if multi
                   else _color(prec), label=f"{prec}, {_short(machine)}" if multi else prec)
        ax.axhline(1.0, color="0.3", lw=0.8)
        ax.set_xticks(range(len(sizes)), [str(b) for b in sizes])
        ax.set_title(model)
        ax.set_xlabel("batch size")
        ax.set_ylabel("AMP / fp32 throughput (×)")
    _legend(fig, axes)
    return _png(fig)


def accuracy_figure(df: pd.DataFrame) -> bytes | None:
    """Mean held-out accuracy per optimizer × precision (bars), every config as a dot."""
    acc = rd.accuracy_by_optimizer(df)
    if acc.empty:
        return None
    models = list(dict.fromkeys(acc["model"]))
    precs = rd.sort_precisions(list(acc["precision"].dropna().unique()))
    fig, axes = _panels(len(models))
    width = 0.8 / len(precs)
    for ax, model in zip(axes, models, strict=True):
        d = acc[acc["model"] == model]
        opts = list(dict.fromkeys(d["optimizer"]))
        for j, prec in enumerate(precs):
            off = (j - (len(precs) - 1) / 2) * width
            s = d[d["precision"] == prec]
            means = s.groupby("optimizer")["eval_accuracy"].mean()
            ax.bar([opts.index(o) + off for o in means.index], means.astype(float), width,
                   color=_color(prec, j), alpha=0.85, label=prec)
            ax.plot([opts.index(o) + off for o in s["optimizer"]],
                    s["eval_accuracy"].astype(float), "o", color="0.15", ms=2.5)
        ax.set_xticks(range(len(opts)), opts)
        ax.set_ylim(0, 1)
        ax.set_title(model)
        ax.set_ylabel("held-out accuracy (fraction)")
    _legend(fig, axes)
    return _png(fig)


def spread_figure(df: pd.DataFrame) -> bytes | None:
    """Box plot per config of the per-repeat step time relative to its median repeat."""
    spread = rd.repeat_spread(df)
    if spread.empty:
        return None
    multi = spread["machine"].nunique() > 1
    models = list(dict.fromkeys(spread["model"]))
    counts = [spread[spread["model"] == m][["machine", "config"]].drop_duplicates().shape[0]
              for m in models]
    fig = Figure(figsize=(PANEL_W * 2, 0.6 + 0.22 * sum(counts) + 0.5 * len(models)),
                 layout="constrained")
    axes = fig.subplots(len(models), 1, squeeze=False, height_ratios=counts).ravel()
    for ax, model in zip(axes, models, strict=True):
        d = spread[spread["model"] == model]
        groups = list(dict.fromkeys(zip(d["machine"], d["config"], strict=True)))
        values = [d[(d["machine"] == m) & (d["config"] == c)]["step_time_pct"].astype(float)
                  for m, c in groups]
        names = [f"{c}, {_short(m, 24)}" if multi else c for m, c in groups]
        ax.boxplot(values, widths=0.6, flierprops={"markersize": 3},
                   medianprops={"color": "0.15"}, **HORIZONTAL)
        ax.set_yticks(range(1, len(names) + 1), names)
        ax.axvline(0.0, color="0.3", lw=0.8)
        ax.invert_yaxis()
        ax.set_title(model, loc="left")
    axes[-1].set_xlabel("per-repeat mean step time vs the median repeat (%)")
    return _png(fig)


def relative_figure(relative: pd.DataFrame, baseline: str) -> bytes | None:
    """Grouped bars: geometric-mean throughput relative to the reference, per model × precision."""
    if relative.empty:
        return None
    groups = list(dict.fromkeys(zip(relative["model"], relative["precision"], strict=True)))
    labels = list(dict.fromkeys(relative["machine"]))
    width = 0.8 / len(labels)
    fig = Figure(figsize=(max(5.0, 1.1 * len(groups) + 2), 3.6), layout="constrained")
    ax = fig.subplots()
    for j, machine in enumerate(labels):
        s = relative[relative["machine"] == machine]
        xs = [groups.index(g) + (j - (len(labels) - 1) / 2) * width
              for g in zip(s["model"], s["precision"], strict=True)]
        bars = ax.bar(xs, s["relative throughput"].astype(float), width,
                      color=MACHINE_COLORS[j % len(MACHINE_COLORS)], label=_short(machine))
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.axhline(1.0, color="0.3", lw=0.8)
    ax.set_xticks(range(len(groups)), [f"{m}\n{p}" for m, p in groups])
    ax.set_ylabel(f"throughput relative to\n{_short(baseline)} (×, geo. mean)")
    _legend(fig, [ax])
    return _png(fig)


def report_charts(df: pd.DataFrame, comparison=None) -> list[Chart]:
    """Every figure the data supports, in reading order (figures without data are skipped)."""
    one_kind = df["memory_kind"].dropna().unique()
    mem_note = {"allocator": "GPU: the torch allocator's peak (tensors only; the CUDA "
                "context and the allocator's cache are not included).",
                "host RSS": "CPU: the peak RSS of the config's own worker process (with "
                "--isolation none, of the sweep's one process: a high-water mark that never "
                "falls from one config to the next)."}
    specs = [
        ("throughput", "Throughput vs batch size", lambda: throughput_figure(df),
         "Median over optimizers (and seeds) of each config's median-repeat throughput."),
        ("amp_speedup", "AMP speed-up over fp32", lambda: amp_speedup_figure(df),
         "AMP throughput divided by fp32 throughput for the same model, batch size and "
         "optimizer; median over optimizers. Above 1 means AMP is faster."),
        ("memory", "Peak memory vs batch size", lambda: memory_figure(df),
         " ".join(mem_note[k] for k in mem_note if k in one_kind)),
        ("accuracy", "Held-out accuracy by optimizer and precision", lambda: accuracy_figure(df),
         "Bars: mean over batch sizes; dots: single configs. Short sweeps measure whether a "
         "config learns, not its final accuracy."),
        ("step_time_spread", "Step-time spread across repeats", lambda: spread_figure(df),
         "Each box: one config's timed repeats, as the repeat's mean step time relative to the "
         "median repeat. Wide boxes mean a noisy machine or too few steps."),
    ]
    if comparison is not None:
        specs.append(("relative_throughput", "Relative throughput per model and precision",
                      lambda: relative_figure(comparison.relative, comparison.baseline),
                      f"Throughput relative to {comparison.baseline} on the same configs "
                      "(geometric mean over batch sizes and optimizers)."))
    charts = []
    with rc_context(STYLE):
        for name, title, draw, caption in specs:
            png = draw()
            if png is not None:
                charts.append(Chart(name, title, caption, png))
    return charts


def history_figure(series: list, title: str) -> bytes | None:
    """One panel per series (``analysis.history.Series`` of one metric): the value per commit
    in commit order, each detected step a vertical line at its first commit after, coloured by
    verdict (red: regression, green: improvement)."""
    if not series:
        return None
    with rc_context(STYLE):
        fig, axes = _panels(len(series), ncols=2, height=PANEL_H)
        for ax, s in zip(axes, series, strict=True):
            scale, unit = (1 / 2**20, "MiB") if s.unit == "bytes" else (1.0, s.unit)
            x = list(range(len(s.points)))
            ax.plot(x, [p.value * scale for p in s.points], "-", marker="o", markersize=3,
                    color=MACHINE_COLORS[0])
            for st in s.steps:
                colour = "#C44E52" if st.verdict == "regression" else "#55A868"
                ax.axvline(st.index - 0.5, color=colour, linestyle="--", linewidth=1.2,
                           label=st.verdict)
                ax.hlines([st.before * scale, st.after * scale], [0, st.index],
                          [st.index - 1, len(x) - 1], colors=colour, linewidth=0.8, alpha=0.6)
            step = max(1, len(x) // 8)  # at most ~8 commit labels: short shas stay legible
            ax.set_xticks(x[::step], [p.commit[:7] for p in s.points][::step], rotation=45,
                          fontsize=7)
            ax.set_title(_short(series_label(s.config), 60))
            ax.set_xlabel("commit (in commit-time order)")
            ax.set_ylabel(f"{s.metric} ({_short(unit, 20)})")
            if s.metric != "accuracy":
                _thousands(ax)
        fig.suptitle(title)
        _legend(fig, axes)
        return _png(fig)


def series_label(config: dict) -> str:
    """A short name for a series' config: model, batch size, precision, optimizer, device."""
    keys = ("model", "batch_size", "precision", "optimizer", "device")
    return " ".join(f"bs{config[k]}" if k == "batch_size" else str(config[k])
                    for k in keys if config.get(k) is not None)
