"""Render a report's sections as one self-contained HTML page and as GitHub-flavoured Markdown.

Both outputs come from the same ``Section`` list, so they say the same thing. Every string may
come from an untrusted results file: the HTML goes through jinja2 with autoescape on (and a
Content-Security-Policy that allows no scripts at all, as a second wall), and Markdown cells are
escaped so a device name can neither break a table nor inject HTML.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd

from harness.render.figures import Chart

TEMPLATES = Path(__file__).resolve().parent / "templates"
MISSING = "—"
MAX_CELL = 500  # characters; an untrusted field cannot blow up the page


@dataclass
class Table:
    frame: pd.DataFrame
    title: str = ""
    note: str = ""
    empty: str = "(none)"  # said instead of an empty table


@dataclass
class Section:
    title: str
    anchor: str
    text: list[str] = field(default_factory=list)  # plain-text paragraphs
    blocks: list[Table | Chart] = field(default_factory=list)
    collapsed: bool = False  # <details> in both outputs: long tables stay out of the way


def cell(value: object) -> str:
    """A value as table text: numbers rounded by magnitude, missing as an em dash."""
    if value is None or value is pd.NA or value is pd.NaT:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        v = float(value)
        if not math.isfinite(v):
            return MISSING
        a = abs(v)
        spec = (",.0f" if a >= 1000 else ".0f" if a >= 100 else ".1f" if a >= 10
                else ".2f" if a >= 1 else ".3f" if a >= 0.001 or a == 0 else ".2e")
        return format(v, spec)
    text = " ".join(str(value).split())  # one line, whatever the file held
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def table_rows(frame: pd.DataFrame) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and rows of (text, is_number) cells."""
    header = [cell(c) for c in frame.columns]
    rows = [[(cell(v), _is_number(v) and cell(v) != MISSING) for v in row]
            for row in frame.astype(object).itertuples(index=False, name=None)]
    return header, rows


# ------------------------------------------------------------------------------------ HTML


def _html_block(block: Table | Chart) -> dict[str, object]:
    if isinstance(block, Chart):
        uri = "data:image/png;base64," + base64.b64encode(block.png).decode("ascii")
        return {"kind": "figure", "title": block.title, "caption": block.caption, "src": uri,
                "name": block.name}
    header, rows = table_rows(block.frame)
    return {"kind": "table", "title": block.title, "note": block.note, "header": header,
            "rows": rows, "empty": block.empty}


def render_html(title: str, meta: list[str], sections: list[Section]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every {{ }} is escaped: results files are untrusted input
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    page = [{"title": s.title, "anchor": s.anchor, "text": s.text, "collapsed": s.collapsed,
             "blocks": [_html_block(b) for b in s.blocks]} for s in sections]
    return env.get_template("report.html.j2").render(title=title, meta=meta, sections=page)


# -------------------------------------------------------------------------------- Markdown

# Characters that would start emphasis, code, links or strikethrough, or end a table cell.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_text(value: object) -> str:
    """Plain text safe inside Markdown (and inside a table cell): HTML entities for < > &,
    backslash escapes for Markdown syntax and the cell separator."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(cell(value), quote=False))


def _numeric_column(rows: list[list[tuple[str, bool]]], i: int) -> bool:
    """Right-align a column only when every present value in it is a number."""
    present = [r[i] for r in rows if r[i][0] != MISSING]
    return bool(present) and all(num for _, num in present)


def markdown_table(frame: pd.DataFrame) -> str:
    header, rows = table_rows(frame)
    esc = [md_text(h) for h in header]
    lines = ["| " + " | ".join(esc) + " |",
             "|" + "|".join("---:" if _numeric_column(rows, i) else "---"
                            for i in range(len(esc))) + "|"]
    lines += ["| " + " | ".join(md_text(t) for t, _ in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(title: str, meta: list[str], sections: list[Section],
                    figure_files: dict[str, str]) -> str:
    """Markdown with each figure as ``![title](FILE.png)``; ``figure_files`` maps chart name to
    the PNG's file name beside the Markdown file."""
    out = [f"# {md_text(title)}", ""]
    out += [md_text(m) + "  " for m in meta] + [""]
    for s in sections:
        out += [f"## {md_text(s.title)}", ""]
        if s.collapsed:
            out += ["<details><summary>" + html.escape(s.title) + "</summary>", ""]
        for para in s.text:
            out += [md_text(para), ""]
        for b in s.blocks:
            if isinstance(b, Chart):
                out += [f"### {md_text(b.title)}", "",
                        f"![{md_text(b.title)}]({figure_files[b.name]})", "",
                        f"*{md_text(b.caption)}*" if b.caption else "", ""]
                continue
            if b.title:
                out += [f"### {md_text(b.title)}", ""]
            out += [markdown_table(b.frame) if len(b.frame) else md_text(b.empty), ""]
            if b.note:
                out += [md_text(b.note), ""]
        if s.collapsed:
            out += ["</details>", ""]
    return "\n".join(out).rstrip() + "\n"


def write_pages(out: Path, stem: str, title: str, meta: list[str], sections: list[Section],
                charts: list[Chart]) -> Path:
    """Each chart as ``NAME.png``, then ``STEM.md`` and ``STEM.html`` into ``out`` (created);
    the HTML's path."""
    out.mkdir(parents=True, exist_ok=True)
    files = {c.name: f"{c.name}.png" for c in charts}
    for c in charts:
        (out / files[c.name]).write_bytes(c.png)
    (out / f"{stem}.md").write_text(render_markdown(title, meta, sections, files), "utf-8")
    path = out / f"{stem}.html"
    path.write_text(render_html(title, meta, sections), "utf-8")
    return path
