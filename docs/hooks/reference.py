"""MkDocs hook: writes the reference pages from the code each time the site builds (commands and
flags from the argparse parsers, record fields from the schema, suites from their TOML files,
exit statuses), so that the reference cannot drift. The Markdown comes from
harness/render/reference.py; this file only gathers the inputs."""

from __future__ import annotations

import tomllib

from mkdocs.structure.files import File, Files

from harness.cli.describe import describe_commands
from harness.cli.exits import BY_COMMAND, COMMON
from harness.core.suites import list_suites, suite_path
from harness.render import reference
from harness.schema import COLUMNS
from harness.schema_docs import DESCRIPTIONS


def pages() -> dict[str, str]:
    """Reference page path (under docs/) -> Markdown."""
    suites = {name: tomllib.loads(suite_path(name).read_text(encoding="utf-8"))
              for name in list_suites()}
    return {
        "reference/commands.md": reference.commands_markdown(describe_commands()),
        "reference/record.md": reference.record_markdown(COLUMNS, DESCRIPTIONS),
        "reference/suites.md": reference.suites_markdown(suites),
        "reference/exit-status.md": reference.exit_status_markdown(COMMON, BY_COMMAND),
    }


def on_files(files: Files, config) -> Files:  # noqa: ANN001 (MkDocs' config object)
    for path, text in pages().items():
        files.append(File.generated(config, path, content=text))
    return files
