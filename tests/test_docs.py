"""The documentation site: it builds with ``mkdocs build --strict`` (broken links and missing
pages fail), its generated reference names every command, flag, record field, suite and exit
status, and every guide's commands run as written.

Guides: each ``sh`` block is run, command by command, in a fresh folder that holds the
checkout's committed ``results/examples``; a command ending in ``# exits N`` must exit N, every
other must exit 0. ``pip install`` lines are skipped (the tests run in the installed tree). A
``bash`` block is shown but not run, and must say why in a ``<!-- not run: REASON -->`` comment
just above it; a ``python`` block of a guide is run as a script."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import HAVE_CHROMIUM, start_chromium

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GUIDES = ["getting-started.md", *sorted(f"guides/{p.name}" for p in (DOCS / "guides").glob("*.md"))]
# Guides whose commands take minutes (A/Bs, a backfill, replays): run with the long tests.
# Every guide's commands take 20 s to a few minutes: they run with the long tests (CI runs both),
# so that the default run stays within 10 minutes; the default run builds and checks the site.
LONG_GUIDES = {"getting-started.md", "guides/gate-pull-requests.md", "guides/find-slowdowns.md",
               "guides/provenance.md", "guides/sharded-training.md", "guides/cluster.md",
               "guides/compare-machines.md", "guides/add-a-model.md",
               "guides/reproduce-article.md", "guides/publish.md"}
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

    commands = _text(site / "reference" / "commands.html")
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
    record = _text(site / "reference" / "record.html")
    missing = [c for c in COLUMNS if f"<code>{c}</code>" not in record]
    assert missing == [], f"record fields missing from the reference: {missing}"
    suites = _text(site / "reference" / "suites.html")
    assert all(f"<code>{s}</code>" in suites for s in list_suites())
    exits = _text(site / "reference" / "exit-status.html")
    assert all(f"<code>{c}</code>" in exits for c in BY_COMMAND)


def _page_text(html: str) -> str:
    """What a reader sees of a page: tags dropped, entities decoded."""
    import html as html_lib

    return html_lib.unescape(re.sub(r"<[^>]+>", "", html))


def _rows(html: str) -> list[str]:
    """Each table row's text, its cells joined by single spaces."""
    return [" ".join(_page_text(row).split()) for row in re.findall(r"<tr>(.*?)</tr>", html,
                                                                      re.S)]


def test_the_command_reference_says_what_the_help_says(site):
    from harness.cli.describe import describe_commands

    html = _text(site / "reference" / "commands.html")
    text = _page_text(html)
    assert "%%" not in text  # argparse's escaped percent sign, shown as written
    described = describe_commands()
    for command in described:
        for arg in command["arguments"]:
            assert arg["help"].strip(), f"{command['name']} {arg['flags']} has no help"
            # Placeholders such as results/<run_id>.jsonl must not vanish as HTML tags.
            for placeholder in re.findall(r"<[^<>\s]+(?: [^<>]+)?>", arg["help"]):
                assert placeholder in text, f"{command['name']}: {placeholder} was swallowed"
    rows = _rows(html)
    assert any("results/<run_id>.jsonl" in r for r in rows)  # run --out
    for flag in ("--steps", "--repeats", "--seed", "--eval-samples", "--train-samples",
                 "--seeds"):  # sweep flags: the suite's value, else the built-in default
        flagged = [r for r in rows if r.startswith(flag + " ")]
        assert flagged and all("default" in r for r in flagged), flag
    assert any(r.startswith("--steps ") and "without it, 10" in r for r in rows)


def test_the_record_reference_has_a_section_per_group_of_the_schema(site):
    html = _text(site / "reference" / "record.html")
    headings = re.findall(r"<h2 id=\"([^\"]+)\"", html)
    assert {"identity", "outcome", "speed", "memory", "provenance"} <= set(headings)
    assert len(headings) >= 10
    # The page's table of contents (the right-hand sidebar) lists them.
    toc = html.split('data-md-component="toc"', 1)[1]
    assert all(f'href="#{h}"' in toc for h in headings)


def test_every_field_a_writer_emits_is_described():
    # The committed examples hold records of each writer: a sweep (cpu-quick), a sharded
    # sweep (cpu-fsdp), the article's epoch loop (reproduce-article-...), the newest runner.
    from harness.schema_docs import DESCRIPTIONS

    seen: dict[str, set[str]] = {}
    for path in sorted((ROOT / "results" / "examples").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            for key in json.loads(line):
                seen.setdefault(key, set()).add(path.name)
    assert "epochs" in seen  # reproduce writes it
    missing = {k: sorted(v) for k, v in seen.items() if k not in DESCRIPTIONS}
    assert missing == {}, f"describe these in harness/schema_docs.py: {missing}"


def test_the_suites_reference_counts_configs_and_names_only_the_suites_models(site):
    from harness.core.suites import expand, load_suite, merge_settings

    html = _text(site / "reference" / "suites.html")
    rows = _rows(html)
    quick = next(r for r in rows if r.startswith("quick"))
    n = len(expand(merge_settings(load_suite("quick"), {}), resolve=lambda d: "cpu"))
    assert quick.split()[1] == str(n), quick
    assert "1 min" in quick and "AMD EPYC" in quick  # the committed quick example's time
    gpt2 = next(r for r in rows if r.startswith("[model.gpt2]") and "steps = 3" in r)
    assert "not one of this suite's models" in gpt2  # quick's table for --models gpt2
    defaults = _rows(html.split('id="defaults"', 1)[1])
    assert next(r for r in defaults if r.startswith("steps ")).split()[1] == "10"  # RunConfig


def test_links_and_pictures_resolve_in_the_built_site(site):
    # Every relative href and src of every page names a file of the site (the site is opened
    # from disk, where a link to a folder shows a directory listing, not a page).
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20
    broken = []
    for page in pages:  # (404.html is for a web server: its links are absolute)
        for url in re.findall(r'(?:href|src)="([^"#?]*)[^"]*"', _text(page)):
            if url and not re.match(r"[a-z]+:", url) and page.name != "404.html":
                target = (page.parent / url).resolve()
                if not target.is_file():
                    broken.append(f"{page.relative_to(site)}: {url}")
    assert broken == []
    for name in ("quick-throughput", "hardware-relative", "history-throughput"):
        png = site / "img" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_no_link_became_a_doubled_code_path():
    # "`x.yml` (`x.yml`)" or "figures (`results/...`)": a Markdown link flattened to text.
    doubled = re.compile(r"(`?)([\w./-]+)\1 \(`\2`\)|\w \(`(?:results|reports)/examples/[^`]+`\)")
    for page in sorted(DOCS.rglob("*.md")):
        found = doubled.search(_text(page))
        assert found is None, f"{page.relative_to(DOCS)}: {found.group(0)}"


def test_the_site_works_from_disk(site):
    # Pages are files (use_directory_urls: false); search reads its index from a script and
    # runs its worker through the vendored iframe shim, so nothing is fetched.
    index = _text(site / "index.html")
    assert 'href="getting-started.html"' in index
    assert (site / "search" / "search_index.js").read_text(encoding="utf-8").startswith(
        "var __index =")
    scripts = re.findall(r'<script src="([^"]+)"', index)
    assert "assets/javascripts/iframe-worker-shim.js" in scripts
    assert not [s for s in scripts if "://" in s]


def test_the_pages_show_what_trainmark_prints_and_draws(site):
    started = _page_text(_text(site / "getting-started.html"))
    assert re.search(r"convnet\s+synthetic\s+cpu\s+32\s+fp32\s+sgd\s+ok", started)
    gate = _page_text(_text(site / "guides" / "gate-pull-requests.html"))
    workflow = (ROOT / ".github" / "workflows" / "benchmarks.yml").read_text(encoding="utf-8")
    ab_job = workflow.split("\n  ab:\n", 1)[1].split("\n\n  history:", 1)[0]
    assert ab_job.strip() in gate  # the guide's YAML is the project's own job
    for must in ("download.pytorch.org/whl/cpu", "cache: pip", "timeout-minutes",
                 "if [ -f ab-results/comment.md ]"):
        assert must in gate
    assert "92–139 s" in gate and "182–353 s" in gate
    machines = _page_text(_text(site / "guides" / "compare-machines.html"))
    assert "× ref" in machines and "--allow-different-code" in machines
    slow = _page_text(_text(site / "guides" / "find-slowdowns.html"))
    assert "regression" in slow and "adam" in slow


def test_every_page_of_the_nav_is_built_and_has_a_title(site):
    nav = re.findall(r":\s*([\w./-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert len(nav) >= 18
    for page in nav:
        html = site / (page[:-3] + ".html")  # use_directory_urls: false (works from disk)
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
    assert len(GUIDES) == 10


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


@pytest.mark.long
@pytest.mark.skipif(not HAVE_CHROMIUM,
                    reason="needs Debian's chromium and chromium-driver at /usr/bin")
def test_the_site_read_from_disk_in_chromium(site, tmp_path):
    """Opened as a newcomer opens it, site/index.html from disk: the sidebar's links open pages,
    search finds text, names do not break mid-word, no guide's code scrolls sideways, the
    sharded guide's sources are links, and every picture loads."""
    from selenium.webdriver.common.by import By

    browser = start_chromium(tmp_path / "profile", 1280, 900)
    browser.implicitly_wait(5)

    def page(path: str) -> None:
        browser.get((site / path).as_uri())

    try:
        page("index.html")
        browser.find_element(By.LINK_TEXT, "Run on a Slurm cluster").click()
        assert browser.current_url.endswith("guides/cluster.html")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Run on a Slurm cluster"

        search = browser.find_element(By.CSS_SELECTOR, "input.md-search__input")
        search.click()
        search.send_keys("nodelist")
        hits = browser.find_elements(By.CSS_SELECTOR, ".md-search-result__item")
        assert hits and "Slurm" in hits[0].text

        for guide in GUIDES:  # at 1280 px, beside the sidebar
            page(guide[:-3] + ".html")
            wide = browser.execute_script(
                "return [...document.querySelectorAll('.md-content pre > code')]"
                ".filter(c => c.scrollWidth > c.clientWidth + 1)"
                ".map(c => c.innerText.slice(0, 60))")
            assert wide == [], f"{guide}: code blocks that scroll sideways: {wide}"

        page("reference/record.html")
        broken = browser.execute_script(
            "return [...document.querySelectorAll('.md-typeset table td:first-child code')]"
            ".filter(c => c.getClientRects().length > 1).map(c => c.innerText)")
        assert broken == [], f"field names broken over lines: {broken[:5]}"

        page("guides/sharded-training.html")
        links = browser.execute_script(
            "return [...document.querySelectorAll('table a')].map(a => a.href)")
        assert any("torchtitan" in u for u in links) and any("Megatron" in u for u in links)

        for path in ("index.html", "getting-started.html", "guides/compare-machines.html",
                     "guides/find-slowdowns.html"):
            page(path)
            images = browser.execute_script(
                "return [...document.images].map(i => [i.src, i.complete && i.naturalWidth])")
            assert images and all(width > 300 for _, width in images), (path, images)
    finally:
        browser.quit()
