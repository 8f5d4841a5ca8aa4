"""The documentation site: it builds with ``mkdocs build --strict`` (broken links and missing
pages fail), its generated reference names every command, flag, record field, suite and exit
status, and every guide's commands run as written.

Guides: each ``sh`` block is run, command by command, in a fresh folder that holds the
checkout's committed ``results/examples``; a command ending in ``# exits N`` must exit N, every
other must exit 0. ``pip install`` lines are skipped (the tests run in the installed tree). A
``bash`` block is shown but not run, and must say why in a ``<!-- not run: REASON -->`` comment
just above it; a ``python`` block of a guide is run as a script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GUIDES = ["getting-started.md", *sorted(f"guides/{p.name}" for p in (DOCS / "guides").glob("*.md"))]
# Guides whose commands take minutes (A/Bs, a backfill, replays): run with the long tests.
# Every guide's commands take 20 s to a few minutes: they run with the long tests (CI runs both),
# so that the default run stays within 10 minutes; the default run builds and checks the site.
LONG_GUIDES = {"getting-started.md", "guides/gate-pull-requests.md", "guides/find-slowdowns.md",
               "guides/provenance.md", "guides/sharded-training.md", "guides/cluster.md",
               "guides/compare-machines.md", "guides/add-a-model.md",
               "guides/reproduce-article.md"}
BLOCK = re.compile(r"(?:<!--\s*not run:(?P<why>[^>]*)-->\s*\n)?```(?P<lang>\w+)[^\n]*\n"
                   r"(?P<body>.*?)```", re.S)

pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def test_every_record_field_has_a_description():
    from harness.schema import COLUMNS
    from harness.schema_docs import DESCRIPTIONS

    assert sorted(set(COLUMNS) - set(DESCRIPTIONS)) == [], "describe these in schema_docs.py"
    assert sorted(set(DESCRIPTIONS) - set(COLUMNS)) == [], "no such column in schema.COLUMNS"


def test_the_reference_names_every_command_flag_field_suite_and_status(site):
    from harness.cli import COMMANDS
    from harness.cli.describe import describe_commands
    from harness.cli.exits import BY_COMMAND
    from harness.core.suites import list_suites
    from harness.schema import COLUMNS

    commands = _text(site / "reference" / "commands" / "index.html")
    described = describe_commands()
    # Every registered command, and the subcommands, each with arguments of its own.
    assert set(COMMANDS) <= {c["name"] for c in described}
    assert {"baseline record", "baseline check", "fleet status"} <= {c["name"] for c in described}
    for command in described:
        name = command["name"]
        assert f"<code>{name}</code>" in commands, f"command {name!r} is not in the reference"
        for arg in command["arguments"]:
            for flag in arg["flags"]:
                assert f"<code>{flag}</code>" in commands, f"{name} {flag} is missing"
    # What describe_commands found is what the parser accepts: --steps is one of run's flags.
    run = next(c for c in described if c["name"] == "run")
    assert any("--steps" in a["flags"] for a in run["arguments"])
    record = _text(site / "reference" / "record" / "index.html")
    missing = [c for c in COLUMNS if f"<code>{c}</code>" not in record]
    assert missing == [], f"record fields missing from the reference: {missing}"
    suites = _text(site / "reference" / "suites" / "index.html")
    assert all(f"<code>{s}</code>" in suites for s in list_suites())
    exits = _text(site / "reference" / "exit-status" / "index.html")
    assert all(f"<code>{c}</code>" in exits for c in BY_COMMAND)


def test_every_page_of_the_nav_is_built_and_has_a_title(site):
    nav = re.findall(r":\s*([\w./-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert len(nav) >= 18
    for page in nav:
        html = site / (page[:-3] + "/index.html" if page != "index.md" else "index.html")
        assert html.is_file(), f"{page} was not built"
        assert "<h1" in _text(html), f"{page} has no title"


def _commands_of(block: str) -> list[tuple[str, int]]:
    """A sh block's commands (continuation lines joined) and the exit status each must give."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or re.match(r"(python -m )?pip install", line):
            continue
        status = re.search(r"#\s*exits\s+(\d+)\s*$", line)
        out.append((line, int(status.group(1)) if status else 0))
    return out


def _blocks(guide: str) -> list[re.Match]:
    return list(BLOCK.finditer(_text(DOCS / guide)))


@pytest.mark.parametrize("guide", GUIDES)
def test_unrun_blocks_say_why(guide):
    for block in _blocks(guide):
        if block["lang"] == "bash":
            assert (block["why"] or "").strip(), f"{guide}: a bash block without a reason"


def _run_guide(guide: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "results" / "examples", tmp_path / "results" / "examples")
    env = {**os.environ, "TRAINMARK_CACHE_DIR": str(tmp_path / "cache"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT)}
    ran = 0
    for block in _blocks(guide):
        if block["lang"] == "python":
            script = tmp_path / f"block{ran}.py"
            script.write_text(block["body"], encoding="utf-8")
            commands = [(f"{sys.executable} {script}", 0)]
        elif block["lang"] == "sh":
            commands = _commands_of(block["body"])
        else:
            continue
        for command, want in commands:
            proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path,
                                  env=env, capture_output=True, text=True, timeout=900)
            assert proc.returncode == want, (
                f"{guide}: `{command}` exited {proc.returncode}, expected {want}\n"
                f"{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
            ran += 1
    assert ran, f"{guide} has no command to run"


@pytest.mark.slow
@pytest.mark.parametrize("guide", [g for g in GUIDES if g not in LONG_GUIDES] or
                         [pytest.param("-", marks=pytest.mark.skip("every guide is long"))])
def test_guide_commands_run(guide, tmp_path):
    _run_guide(guide, tmp_path)


def test_every_guide_is_run_by_one_of_the_guide_tests():
    # A guide that is neither default nor long would never run: LONG_GUIDES names files.
    assert set(LONG_GUIDES) <= set(GUIDES)
    assert len(GUIDES) == 9


@pytest.mark.long
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("guide", [g for g in GUIDES if g in LONG_GUIDES])
def test_long_guide_commands_run(guide, tmp_path):
    _run_guide(guide, tmp_path)


def test_the_add_a_model_example_registers_the_model_it_describes(tmp_path):
    # In a fresh interpreter: registering here would add the model to every later test's zoo.
    (code,) = [b["body"] for b in _blocks("guides/add-a-model.md") if b["lang"] == "python"]
    check = ("\nfrom models import count_parameters, create_model, get_model_info, list_models\n"
             "assert 'tinynet' in list_models()\n"
             "assert count_parameters('tinynet', use_declared=False) == 618  # as the guide says\n"
             "import torch\n"
             "assert create_model('tinynet')(torch.zeros(2, 3, 32, 32)).shape == (2, 10)\n")
    script = tmp_path / "example.py"
    script.write_text(code + check, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
