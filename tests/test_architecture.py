"""The shape of the code: the import contracts (pyproject's [tool.importlinter]) hold and would
catch a wrong-way import, no private name crosses a module boundary, modules stay small, and
the CLI's help imports no heavy library."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(REPO / "harness").rglob("*.py"), *(REPO / "models").rglob("*.py")])
# Driven as source inside trees from before the layered layout (see its docstring).
LEGACY_ADAPTER = REPO / "harness" / "execution" / "ab_legacy.py"
LINT = ("import sys\nfrom importlinter.cli import lint_imports\n"
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True))")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "HOME": str(root)}
    return subprocess.run([sys.executable, "-c", LINT], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def test_import_contracts_hold():
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize("module, line, broken", [
    # the runner (core) reaching up into the CLI
    ("harness/core/runner.py", "from harness.cli import main", "Layers import only downwards"),
    # probes importing core, which imports probes: a cycle between sibling packages
    ("harness/probes/memory.py", "from harness.core import devices",
     "No import cycles between sibling modules or packages"),
    ("models/convnet.py", "import harness.schema", "Models are self-contained"),
    ("harness/core/timing.py", "import pandas", "Measurement code stays light"),
    # submitit beside the executor seam: another engine could no longer stand beside it
    ("harness/execution/fleet.py", "import submitit", "One executor seam"),
])
def test_the_contracts_catch_a_wrong_way_import(tmp_path, module, line, broken):
    for name in ("harness", "models"):
        shutil.copytree(REPO / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0
    assert f"{broken}" in proc.stdout and "BROKEN" in proc.stdout


def _imports(path: Path) -> list[ast.ImportFrom]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]


def test_no_private_name_is_imported_across_modules():
    crossings = []
    for path in SOURCES:
        if path == LEGACY_ADAPTER:
            continue
        for node in _imports(path):
            if node.module.split(".")[0] not in ("harness", "models"):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    crossings.append(f"{path.relative_to(REPO)}: {node.module}.{alias.name}")
    assert crossings == []


def test_no_code_reaches_into_argparse_internals():
    private = ("_actions", "_option_string_actions", "_add_action", "_SubParsersAction")
    found = [f"{p.relative_to(REPO)}: {name}" for p in SOURCES if p != LEGACY_ADAPTER
             for name in private if f".{name}" in p.read_text(encoding="utf-8")]
    assert found == []


def test_every_module_is_readable_in_one_sitting():
    long = {str(p.relative_to(REPO)): n for p in SOURCES
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}


HEAVY = ("torch", "pandas", "matplotlib", "scipy", "jinja2")
PROBE = """
import sys
from harness.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print(sorted(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"], ["ab", "--help"],
                                  ["run", "--help"], ["baseline", "check", "--help"],
                                  ["report", "--help"], ["peak", "--help"],
                                  ["fleet", "--help"], ["fleet", "status", "--help"]])
def test_help_imports_no_heavy_library(argv):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage: trainmark" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_constants_named_in_the_cli_match_their_source():
    """The CLI repeats some defaults to keep --help free of heavy imports; they must agree."""
    from harness.cli import fleet as fleet_cli
    from harness.cli import peak as peak_cli
    from harness.cli import run as run_cli
    from harness.cli.verdict_options import FORMATS
    from harness.execution import executor, isolation
    from harness.probes import peak
    from harness.render.verdicts import RENDERERS

    assert set(FORMATS) == set(RENDERERS)
    assert peak_cli.DEFAULT_BUDGET_S == peak.DEFAULT_BUDGET_S
    assert run_cli.ISOLATIONS == isolation.ISOLATIONS
    assert run_cli.DEFAULT_TIMEOUT_S == isolation.DEFAULT_TIMEOUT_S
    assert fleet_cli.DEFAULT_TIMEOUT_S == isolation.DEFAULT_TIMEOUT_S
    assert fleet_cli.EXECUTORS == executor.EXECUTORS
