"""``trainmark publish``: the site's data say what the records say (the injected step at its
commit, every point's records, the matrix's ratios and costs), publishing again redoes only
what new records changed, and strings from results files never reach a page as markup.

The pages themselves are driven in Chromium by test_publish_browser.py (long)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from harness.cli import main
from tests.site_store import sha, write_commit, write_runner_store, write_store

PUT = re.compile(r'^TM\.put\("([^"]+)", (.*)\);\s*$', re.S)


def data(site: Path, name: str) -> object:
    """What ``data/NAME.js`` hands to the page."""
    m = PUT.match((site / "data" / f"{name}.js").read_text())
    assert m and m.group(1) == name, name
    return json.loads(m.group(2))


def publish(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["publish", *argv]) == 0
    return capsys.readouterr().out


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    return write_store(tmp_path / "store")


def test_the_site_shows_the_injected_step_first_with_its_records_and_the_matrix(
        store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    out = publish(capsys, str(store), "--out", str(site), "--price", "host-m1=2.0",
                  "--price", "CPU M2=3.0", "--reference", "host-m2")
    assert "published 12 series from 96 records" in out
    assert "4 of 4 groups and 48 of 48 records files redone" in out

    overview = data(site, "overview")
    assert (overview["records"], overview["commits"], len(overview["series"])) == (96, 24, 12)
    first = overview["series"][0]  # newest regression first: the only one
    assert (first["model"], first["machine"], first["metric"]) == (
        "convnet", "cpu-m1-torch2.14.1-4t", "throughput")
    [step] = first["steps"]
    assert step["verdict"] == "regression" and step["first_after"] == sha(12)
    assert step["last_before"] == sha(11) and -0.12 < step["change"] < -0.08
    assert not any(s["steps"] for s in overview["series"][1:])  # no step in flat series
    assert len(first["spark"]) == 24

    series = data(site, f"series/{first['id']}")
    assert series["points"]["commit"][12] == sha(12)
    assert series["steps"][0]["index"] == 12
    # every point links to its record, and the record is in the shard the link names
    shard, rid = series["records"][12][0]
    records = data(site, f"records/{shard}")["records"]
    [rec] = [r for r in records if r["record_id"] == rid]
    assert (rec["git_commit"], rec["model"], rec["host"]) == (sha(12), "convnet", "host-m1")
    assert rec["loss_curve"][:2] == [2.3, 2.28]

    matrix = data(site, "matrix")
    assert matrix["machines"][0] == "cpu-m2-torch2.14.1-4t"  # --reference host-m2
    row = next(r for r in matrix["rows"]
               if r["metric"] == "throughput" and r["model"] == "resnet18")
    cells = row["cells"]
    assert cells["cpu-m1-torch2.14.1-4t"]["value"] == pytest.approx(2000, rel=0.05)
    assert cells["cpu-m2-torch2.14.1-4t"]["value"] == pytest.approx(4000, rel=0.05)
    m1 = cells["cpu-m1-torch2.14.1-4t"]
    assert m1["usd_per_million"] == pytest.approx(2.0 / (m1["value"] * 3600) * 1e6, rel=1e-4)
    assert matrix["info"]["cpu-m1-torch2.14.1-4t"]["latest_commit"] == sha(23)

    # the pages and plotly.js (from the installed package, no CDN) are beside the data
    for page in ("index.html", "series.html", "matrix.html", "record.html"):
        html = (site / page).read_text()
        assert "static/common.js" in html and "http://" not in html and "https://" not in html
    import plotly

    bundled = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    assert (site / "static" / "plotly.min.js").read_bytes() == bundled.read_bytes()


def test_publishing_again_redoes_only_what_new_records_changed(
        store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    publish(capsys, str(store), "--out", str(site))
    pages = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (site / "data" / "series")
             .iterdir()}
    m1_series = {e["id"] for e in data(site, "overview")["series"]
                 if e["machine"].startswith("cpu-m1")}

    # nothing new: nothing redone
    out = publish(capsys, str(store), "--out", str(site))
    assert "0 of 4 groups and 0 of 48 records files redone" in out

    # a new commit on m2 only: m2's two groups and one file are redone, m1's pages untouched
    write_commit(store, 24, "m2")
    out = publish(capsys, str(store), "--out", str(site))
    assert "2 of 4 groups and 1 of 49 records files redone" in out
    for sid in m1_series:
        page = site / "data" / "series" / f"{sid}.js"
        assert (page.stat().st_mtime_ns, page.read_bytes()) == pages[page.name]
    overview = data(site, "overview")
    counts = {e["machine"][:6]: e["n"] for e in overview["series"]}
    assert counts == {"cpu-m1": 24, "cpu-m2": 25}
    assert overview["series"][0]["steps"][0]["first_after"] == sha(12)  # kept from before

    # a results file removed: its records and their shard leave the site
    gone = store / "0024-m2.jsonl"
    shards = set(os.listdir(site / "data" / "records"))
    gone.unlink()
    out = publish(capsys, str(store), "--out", str(site))
    assert "2 of 4 groups and 0 of 48 records files redone" in out
    assert len(shards - set(os.listdir(site / "data" / "records"))) == 1

    # other detection settings: everything is redone
    out = publish(capsys, str(store), "--out", str(site), "--threshold", "3%")
    assert "4 of 4 groups and 48 of 48 records files redone" in out


def test_strings_from_results_files_stay_data(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A hostile title is escaped in every page; a hostile field is a JSON string in a data
    file (the browser test checks that the pages show it as text)."""
    fixture = Path(__file__).parent / "fixtures" / "hostile_strings.jsonl"
    site = tmp_path / "site"
    publish(capsys, str(fixture), "--out", str(site), "--title", "<script>alert(1)</script>")
    for page in ("index.html", "series.html", "matrix.html", "record.html"):
        html = (site / page).read_text()
        assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    # a data file stays one JSON value: the hostile device name is a string in it, whole
    matrix = data(site, "matrix")
    names = {i["device_name"] for i in matrix["info"].values()}
    assert '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">' in names
    assert (site / "data" / "matrix.js").read_text().count("TM.put(") == 1


def test_a_results_file_with_records_of_no_commit_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"model": "convnet", "status": "ok", "throughput": 1.0}) + "\n")
    assert main(["publish", str(path), "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert "no records with a git commit" in err and "r.jsonl" in err
    assert not (tmp_path / "site").exists()


def test_a_runner_that_alone_got_slower_has_its_own_series_with_the_step(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two runners of one machine pool into its series; one of them 15% slower from commit 12
    on, the other not: that runner's own series carries the step, its sibling's none (and the
    browser lists a runner's series only when it alone changed)."""
    store = write_runner_store(tmp_path / "store")
    site = tmp_path / "site"
    publish(capsys, str(store), "--out", str(site), "--metrics", "throughput")
    series = data(site, "overview")["series"]
    runners = {e["runner"]: e for e in series if e["runner"]}
    assert set(runners) == {"host-a", "host-b"}
    [step] = runners["host-b"]["steps"]
    assert step["first_after"] == sha(12) and -0.17 < step["change"] < -0.13
    assert runners["host-a"]["steps"] == []
    own = data(site, f"series/{runners['host-b']['id']}")
    assert all(rid.endswith("host-b") for per in own["records"] for _, rid in per)
    # the matrix compares machines, not runners
    matrix = data(site, "matrix")
    assert [len(r["cells"]) for r in matrix["rows"]] == [1]
