"""An installed wheel works without a checkout: build it, install it into a fresh virtual
environment, and run the smoke suite, ``list`` and ``report`` from a folder outside the tree."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Not part of a wheel's input; copying them would only cost time (and `build/` could hold
# stale modules from an earlier build, which setuptools would ship).
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".venv", ".tox",
    ".pytest_cache", ".ruff_cache", ".benchmarks", "data", "results", "reports")

PACKAGE_DATA = ("harness/suites/quick.toml", "harness/suites/smoke.toml",
                "harness/render/templates/report.html.j2",
                "harness/render/published/templates/index.html.j2",  # trainmark publish
                "harness/render/published/static/overview.js")
PACKAGE_DATA_DIRS = ("harness/suites", "harness/render/templates",
                     "harness/render/published/templates", "harness/render/published/static")


def _run(cmd: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def _clean_env(tmp: Path) -> dict[str, str]:
    """No PYTHONPATH (or other PYTHON* knobs) from the test process, a private cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(OMP_NUM_THREADS="2", TRAINMARK_CACHE_DIR=str(tmp / "cache"),
               PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    return env


def _outer_site_dirs() -> list[str]:
    """Where the interpreter running the tests finds torch, pandas, pip...: its own
    site-packages (a venv's, or the system's), the base interpreter's where a venv was made
    with --system-site-packages, and the user's (a `pip install --user`)."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if os.path.isdir(d)]


def _see_outer_packages(python: Path, env: dict[str, str]) -> None:
    """Let the fresh venv import what the test's interpreter has installed, wherever that
    is. A venv's --system-site-packages would give it the *base* interpreter's packages, which
    lack torch when the tests themselves run in a venv (the README's way). A .pth line that
    calls site.addsitedir also runs those folders' own .pth files; the folders come after the
    venv's own site-packages on sys.path, so the wheel installed there wins."""
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                   cwd=python.parent, env=env).stdout.strip()
    lines = [f"import site; site.addsitedir({d!r})" for d in _outer_site_dirs()]
    Path(purelib, "trainmark_test_outer.pth").write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_installed_wheel_runs_without_a_checkout(tmp_path: Path) -> None:
    # No build isolation (nothing may be downloaded), so the build backend must be here.
    pytest.importorskip("setuptools", minversion="68")
    env = _clean_env(tmp_path)

    # 1. The wheel. Built from a copy of the tree: building in place would write build/ and
    # trainmark.egg-info/ into the checkout, and a stale build/lib could leak into the wheel.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCES)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", wheels, src], cwd=tmp_path, env=env, timeout=180)
    (wheel,) = wheels.glob("trainmark-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # The named files, and whatever else the checkout has in the package-data folders.
    data = {*PACKAGE_DATA, *(p.relative_to(src).as_posix() for folder in PACKAGE_DATA_DIRS
                             for p in (src / folder).iterdir() if p.is_file())}
    missing = sorted(name for name in data if name not in names)
    assert not missing, f"package data missing from {wheel.name}: {missing}"
    assert not any(n.startswith("tests/") for n in names), "the test suite is not shipped"

    # 2. A fresh environment that reuses the installed torch, pandas, ... but not the checkout.
    # It lives in a git work tree of its own: provenance must not take that tree's HEAD for
    # trainmark's commit (the venv's files are not tracked there).
    project = tmp_path / "other-project"
    project.mkdir()
    if shutil.which("git"):
        _run(["git", "init", "-q"], cwd=project, env=env)
    venv = project / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, env=env)
    python, trainmark = venv / "bin" / "python", venv / "bin" / "trainmark"
    _see_outer_packages(python, env)
    # --without-pip: this interpreter's pip is visible through the outer folders and installs
    # into the venv it runs in (sys.prefix), which saves an ensurepip run.
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel],
         cwd=tmp_path, env=env)
    assert trainmark.is_file(), "the console script was not installed"

    # 3. The venv must import the wheel's packages. The editable install in the outer
    # site-packages is also visible (_see_outer_packages), but its .pth only *appends* a
    # meta-path finder, so the venv's own site-packages, earlier on sys.path, wins. Checked
    # here rather than assumed, for both top-level packages.
    work = tmp_path / "elsewhere"  # outside the checkout: nothing importable from the cwd
    work.mkdir()
    where = _run([python, "-c", "import harness, models; print(harness.__file__); "
                  "print(models.__file__)"], cwd=work, env=env).stdout.split()
    for path in where:
        assert Path(path).resolve().is_relative_to(venv.resolve()), (
            f"imported {path}, not the wheel installed in {venv}")

    # 4. The smoke suite on the CPU, then `list` and `report`, all from the console script.
    out = work / "out.jsonl"
    _run([trainmark, "run", "--suite", "smoke", "--devices", "cpu", "--no-report", "--quiet",
          "--out", out], cwd=work, env=env, timeout=240)
    records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert len(records) == 3, records
    assert [r["status"] for r in records] == ["ok"] * 3, [r.get("error") for r in records]
    for rec in records:
        assert rec["git_commit"] is None, "an installed package is not a checkout"
        assert rec["git_commit_time"] is None
        assert rec["trainmark_version"], "the version travels with every record"
    assert not (work / "results").exists() and not (work / "reports").exists()

    listing = _run([trainmark, "list"], cwd=work, env=env).stdout
    suites = [ln for ln in listing.splitlines() if ln.startswith("suites:")]
    assert suites == ["suites:     ci, cpu-fsdp, cpu-standard, gpu, gpu-node, quick, smoke, "
                      "standard"], listing

    # The report templates are package data too: render from the installed wheel.
    report = work / "report"
    _run([trainmark, "report", out, "--out", report], cwd=work, env=env)
    html = (report / "report.html").read_text(encoding="utf-8")
    assert "<html" in html.lower() and "convnet" in html
    assert (report / "report.md").is_file()
