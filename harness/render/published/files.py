"""The published site's files: the pages (jinja2 templates, autoescaped), the static scripts and
plotly.js copied from the installed ``plotly`` package, and data as ``.js`` files.

Pages opened from disk (``file://``) cannot ``fetch()`` JSON in Chromium, so every piece of
data is a script that hands its JSON to ``TM.put(name, data)`` (``static/common.js``); a page
loads the one it needs with a ``<script>`` element. JSON is valid JavaScript, and a string in
it stays a string: an untrusted field cannot become code, and the pages put strings into the
document as text only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jinja2

from harness import __version__
from harness.errors import UserError
from harness.store.jsonl import read_records

HERE = Path(__file__).resolve().parent
PAGES = ("index.html", "series.html", "matrix.html", "record.html")


def write_text(path: Path, text: str, atomic: bool = True) -> None:
    """Write ``path``; ``atomic``: whole or not at all (a reader never sees half a file). The
    many series and record files are written in place (a rename each cost more than the
    write); a build that stops halfway leaves no manifest, so the next one redoes them all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not atomic:
        path.write_text(text, encoding="utf-8")
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def data_script(name: str, data: object) -> str:
    """A ``.js`` file that registers ``data`` under ``name``."""
    return f"TM.put({json.dumps(name)}, {json.dumps(data, separators=(',', ':'))});\n"


def write_data(path: Path, name: str, data: object, atomic: bool = True) -> None:
    write_text(path, data_script(name, data), atomic)


def plotly_js() -> Path:
    """plotly.min.js as shipped inside the installed ``plotly`` Python package (no CDN)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("publish needs the plotly package (its bundled plotly.min.js draws the "
                        "charts offline): pip install plotly")
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise UserError(f"plotly.min.js is missing from the installed plotly package ({path})")
    return path


def write_pages(out: Path, title: str, generated: str) -> None:
    """The four pages, the static scripts and styles, and plotly.min.js (copied only when it
    differs from the one already there)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    for page in PAGES:
        html = env.get_template(page + ".j2").render(title=title, version=__version__,
                                                     generated=generated)
        write_text(out / page, html)
    static = out / "static"
    static.mkdir(parents=True, exist_ok=True)
    for src in (HERE / "static").iterdir():
        if src.is_file():
            shutil.copyfile(src, static / src.name)
    source, dest = plotly_js(), static / "plotly.min.js"
    if not dest.exists() or dest.stat().st_size != source.stat().st_size:
        shutil.copyfile(source, dest)


def record_body(path: Path) -> str:
    """The records of one results file as JSON texts joined by commas (the inside of a JS
    array). A JSON Lines file's lines are taken as they are (its loader has just parsed them;
    a torn last line is left out, as the loader does); any other file (pytest-benchmark JSON)
    is converted by the store."""
    if path.suffix != ".jsonl":
        return ",\n".join(json.dumps(r, default=str) for r in read_records(path))
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        head, _, last = text.rpartition("\n")
        try:
            json.loads(last)
        except ValueError:
            text = head
    text = text.strip()
    if "\n\n" in text or "\r" in text or "\n " in text:  # blank lines: drop them
        return ",\n".join(line for line in text.splitlines() if line.strip())
    return text.replace("\n", ",\n")  # one pass, no list of lines: the common case


def write_shard(out: Path, key: str, source: Path) -> None:
    """``data/records/KEY.js``: every record of one results file, for the record page."""
    text = (f"TM.put({json.dumps('records/' + key)}, {{\"source\": {json.dumps(str(source))}, "
            f"\"records\": [\n{record_body(source)}\n]}});\n")
    write_text(out / "data" / "records" / f"{key}.js", text, atomic=False)


class ShardWriter:
    """Writes the shards of ``jobs`` ((key, results file) pairs) in background threads, so
    that file reads and writes overlap the caller's change-point detection. ``wait`` returns
    the count written or raises the first error; ``cancel`` drops what has not started."""

    def __init__(self, out: Path, jobs: Sequence[tuple[str, Path]]) -> None:
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="shards")
        self.futures = [self.pool.submit(write_shard, out, key, path) for key, path in jobs]

    def wait(self) -> int:
        try:
            for future in self.futures:
                future.result()
        finally:
            self.cancel()
        return len(self.futures)

    def cancel(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def remove_data(out: Path, folder: str, keys: Iterable[str]) -> None:
    for key in keys:
        (out / "data" / folder / f"{key}.js").unlink(missing_ok=True)


def read_manifest(path: Path) -> dict[str, object]:
    """The last build's manifest, or {} when there is none or it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_manifest(path: Path, manifest: Mapping[str, object]) -> None:
    write_text(path, json.dumps(manifest, separators=(",", ":")))
