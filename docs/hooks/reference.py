"""MkDocs hook: writes the reference pages from the code each time the site builds (commands and
flags from the argparse parsers, record fields from the schema, suites from their TOML files and
their expansion, exit statuses), so that the reference cannot drift. The Markdown comes from
harness/render/reference.py; this file and reference_inputs.py only gather the inputs."""

from __future__ import annotations

import tomllib

import reference_inputs as inputs  # docs/hooks/ is on sys.path while MkDocs loads a hook
from mkdocs.structure.files import File, Files

from harness.cli.describe import describe_commands
from harness.cli.exits import BY_COMMAND, COMMON
from harness.core.suites import list_suites, suite_path
from harness.render import reference
from harness.schema import COLUMNS
from harness.schema_docs import DESCRIPTIONS

# Where the built site keeps the committed example results (docs/hooks/examples.py copies them).
EXAMPLES_LINK = "../examples/results/"


def pages() -> dict[str, str]:
    """Reference page path (under docs/) -> Markdown."""
    names = list_suites()
    suites = {name: tomllib.loads(suite_path(name).read_text(encoding="utf-8"))
              for name in names}
    return {
        "reference/commands.md": reference.commands_markdown(describe_commands(),
                                                             inputs.sweep_flag_defaults()),
        "reference/record.md": reference.record_markdown(COLUMNS, DESCRIPTIONS,
                                                         inputs.record_sections()),
        "reference/suites.md": reference.suites_markdown(
            suites, {name: inputs.suite_configs(name) for name in names},
            inputs.measured_suites(EXAMPLES_LINK), inputs.defaults()),
        "reference/exit-status.md": reference.exit_status_markdown(COMMON, BY_COMMAND),
    }


def on_files(files: Files, config) -> Files:  # noqa: ANN001 (MkDocs' config object)
    for path, text in pages().items():
        files.append(File.generated(config, path, content=text))
    return files
