"""MkDocs hook: the committed example results in the built site, and what trainmark makes of
them, generated at every build (never screenshots that go stale).

- The files of results/examples/ and the committed example reports (reports/examples/, their
  HTML and figures) are copied to examples/results/ and examples/reports/ in the site, so that
  the pages link the evidence they cite.
- A line ``<!-- example: NAME -->`` in a page becomes that example's output or picture, made by
  trainmark's own code from those files (docs/hooks/example_outputs.py says which).
"""

from __future__ import annotations

import re
from pathlib import Path

import example_outputs  # docs/hooks/ is on sys.path while MkDocs loads a hook
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
# Copied as they are (Markdown reports would become pages of the site: their HTML twin is shown).
COPIED = {ROOT / "results" / "examples": "examples/results",
          ROOT / "reports" / "examples": "examples/reports"}
COPIED_SUFFIXES = {".jsonl", ".txt", ".json", ".html", ".png", ".csv"}
MARKER = re.compile(r"^<!-- example: ([\w-]+) -->$", re.M)

_made: dict[str, str] = {}  # example name -> its Markdown, made once per build


def on_files(files: Files, config) -> Files:  # noqa: ANN001 (MkDocs' config object)
    for source, target in COPIED.items():
        for path in sorted(source.rglob("*")):
            if path.is_file() and path.suffix in COPIED_SUFFIXES:
                uri = f"{target}/{path.relative_to(source).as_posix()}"
                files.append(File.generated(config, uri, abs_src_path=str(path)))
    _made.clear()
    example_outputs.clear_cache()  # `mkdocs serve` rebuilds in one process: read files anew
    for name, (make, inputs) in example_outputs.EXAMPLES_BY_NAME.items():
        if not all(path.is_file() for path in inputs):
            continue  # a page that shows it fails the build, naming the missing file
        text, pictures = make()
        _made[name] = text
        for uri, png in pictures.items():
            files.append(File.generated(config, uri, content=png))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001
    root = "../" * page.file.src_uri.count("/")  # pictures' paths are from the site's root

    def example(match: re.Match) -> str:
        name = match.group(1)
        if name not in example_outputs.EXAMPLES_BY_NAME:
            raise ValueError(f"{page.file.src_uri}: no example {name!r}; known: "
                             f"{', '.join(example_outputs.EXAMPLES_BY_NAME)}")
        if name not in _made:
            missing = [str(p) for p in example_outputs.EXAMPLES_BY_NAME[name][1]
                       if not p.is_file()]
            raise ValueError(f"{page.file.src_uri}: example {name!r} needs {', '.join(missing)}")
        return _made[name].replace("{root}", root) + "\n"  # a block: never glued to the next

    return MARKER.sub(example, markdown)
