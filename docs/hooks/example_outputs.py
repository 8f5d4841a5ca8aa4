"""What trainmark prints and draws for the committed example results (results/examples/), made
by trainmark's own code when the site builds (docs/hooks/examples.py places them in pages):

- ``first-run``: the summary table `trainmark run` printed for its default (quick) suite;
- ``report-figure``: the report's throughput figure of that run;
- ``hardware``: the hardware comparison of one suite measured on two machines, its figure and
  its table;
- ``history``: the history chart of a series of commits with a step in it, and the step found;
- ``workflow-ab``: the regression gate's job of the project's own GitHub workflow;
- ``gate-comment``: the pull-request comment of an A/B that found a regression.

Each returns Markdown, and the pictures it refers to as {site path: PNG bytes}.
``EXAMPLES_BY_NAME`` also names the committed files each is made from.
"""

from __future__ import annotations

import functools
import html
import re
import warnings
from pathlib import Path

import pandas as pd
from matplotlib import rc_context

from harness.analysis import report_data as rd
from harness.analysis.hardware import hardware_comparison, resolve_baseline
from harness.analysis.history import build_history, regressions
from harness.render.document import markdown_table
from harness.render.figures import STYLE, history_figure, relative_figure, throughput_figure
from harness.render.history import steps_table
from harness.store.frame import load_lenient
from harness.render.tables import results_text

EXAMPLES = Path(__file__).resolve().parents[2] / "results" / "examples"
QUICK = EXAMPLES / "cpu-quick.jsonl"
# One suite on two machines: cpu-fsdp on an Intel Xeon (the first) and on an AMD EPYC.
MACHINES = (EXAMPLES / "cpu-fsdp.jsonl", EXAMPLES / "cpu-fsdp-epyc.jsonl")
HISTORY = EXAMPLES / "history-commits.jsonl"
WORKFLOW = EXAMPLES.parents[1] / ".github" / "workflows" / "benchmarks.yml"
COMMENT = EXAMPLES / "ab-comment.md"  # an A/B's comment.md (docs/guides/gate-pull-requests.md)


@functools.lru_cache(maxsize=8)  # the quick example feeds two outputs: read it once a build
def _frame(paths: tuple[Path, ...]) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a committed example is whole; nothing to say
        frame, _ = load_lenient(list(paths))  # every column: the summary, figures, history
    return frame


def clear_cache() -> None:
    _frame.cache_clear()


def _figure(src: str, alt: str, caption: str) -> str:
    """``src`` relative to the site's root; pages get it relative to themselves (``{root}``)."""
    return (f'<figure><img src="{{root}}{src}" alt="{html.escape(alt)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _link(path: Path) -> str:
    """A committed example file, linked where the site keeps its copy (docs/hooks/examples.py)."""
    return (f'<a href="{{root}}examples/results/{path.name}"><code>results/examples/'
            f"{path.name}</code></a>")


def _machine(frame: pd.DataFrame) -> str:
    first = frame.iloc[0]
    return html.escape(f"{first['cpu_model']}, {int(first['num_threads'])} threads, "
                       f"torch {first['torch_version']}")  # strings of a results file


def first_run() -> tuple[str, dict[str, bytes]]:
    frame = _frame((QUICK,))
    return "```text\n" + results_text(frame) + "\n```", {}


def report_figure() -> tuple[str, dict[str, bytes]]:
    """The report's first figure (only it: drawing all five would double the build's time)."""
    frame = _frame((QUICK,))
    with rc_context(STYLE):
        png = throughput_figure(rd.prepare(frame))
    text = _figure("img/quick-throughput.png", "Throughput vs batch size",
                   f"Throughput vs batch size, the report's first figure, for the quick suite on "
                   f"{_machine(frame)} ({_link(QUICK)}): per model, each precision's median "
                   "over the optimizers of each config's median-repeat throughput.")
    return text, {"img/quick-throughput.png": png}


def hardware() -> tuple[str, dict[str, bytes]]:
    df = rd.prepare(_frame(MACHINES))
    comparison = hardware_comparison(df, resolve_baseline(df, str(MACHINES[0])))
    with rc_context(STYLE):
        png = relative_figure(comparison.relative, comparison.baseline)
    machines = " and ".join(_link(p) for p in MACHINES)
    figure = _figure("img/hardware-relative.png", "Relative throughput per model and precision",
                     f"The <code>cpu-fsdp</code> suite on {html.escape(comparison.machines[1])} "
                     f"relative to {html.escape(comparison.baseline)} ({machines}): throughput "
                     "relative to the "
                     "reference machine on the same configs, geometric mean over the configs "
                     "of each model and precision.")
    throughput = [c for c in comparison.table.columns if "MiB" not in c]
    return (figure + "\n\n" + _narrow(comparison.table[throughput])
            + "\n\n(The report's table also has each machine's peak memory.)"), {
        "img/hardware-relative.png": png}


def _narrow(table: pd.DataFrame) -> str:
    """The table without the columns that hold one value in every row (or none), which a
    sentence above it states instead: a page has room for six columns, not fourteen."""
    same = [c for c in table.columns
            if len(table) > 1 and table[c].astype(str).nunique() == 1]
    said = [f"{c} {table[c].iloc[0]}" for c in same if str(table[c].iloc[0]) not in ("", "nan")]
    rest = table.drop(columns=same).rename(columns=lambda c: c.replace("_", " "))  # can wrap
    return (f"In every row: {', '.join(said)}.\n\n" if said else "") + markdown_table(rest)


def history() -> tuple[str, dict[str, bytes]]:
    series = build_history(_frame((HISTORY,)), ["throughput"])
    png = history_figure(series, "throughput by commit")
    figure = _figure("img/history-throughput.png", "Throughput by commit, with the step found",
                     f"<code>trainmark history</code> of {_link(HISTORY)}. Dashed line: the step "
                     "found (red: a regression); thin lines: the medians on either side.")
    steps = steps_table(regressions(series))
    shown = ["config", "last good", "first changed", "may be", "change", "p (adjusted)"]
    return figure + "\n\n" + _narrow(steps[shown]), {"img/history-throughput.png": png}


def workflow_ab() -> tuple[str, dict[str, bytes]]:
    """The ``ab`` job of the project's own workflow, as it stands, under a header that runs it
    on pull requests: the guide's YAML is the one the project runs."""
    lines = WORKFLOW.read_text(encoding="utf-8").splitlines()
    start = lines.index("  ab:")
    end = next(i for i in range(start + 1, len(lines)) if re.match(r"  \S", lines[i]))
    job = "\n".join(lines[start:end]).rstrip()
    header = ("name: benchmarks\non: pull_request\npermissions:\n  contents: read\n"
              "jobs:\n")
    return f"```yaml\n{header}{job}\n```", {}


def gate_comment() -> tuple[str, dict[str, bytes]]:
    """The committed ``comment.md`` of an A/B, in a box; its headings become bold lines, so
    that they stay out of the page's table of contents."""
    text = re.sub(r"^#{1,6} (.+)$", r"**\1**", COMMENT.read_text(encoding="utf-8").strip(),
                  flags=re.M)
    body = "\n".join(f"    {line}" if line else "" for line in text.splitlines())
    return f'!!! example "comment.md"\n\n{body}\n', {}


# name -> (what makes it, the committed files it is made from)
EXAMPLES_BY_NAME = {"first-run": (first_run, (QUICK,)),
                    "report-figure": (report_figure, (QUICK,)),
                    "hardware": (hardware, MACHINES),
                    "history": (history, (HISTORY,)),
                    "workflow-ab": (workflow_ab, (WORKFLOW,)),
                    "gate-comment": (gate_comment, (COMMENT,))}
