"""How fast does ``trainmark publish`` build the site for a year of CI results, how fast does an
update go, and how fast does the overview open in Chromium? (issue 31: 1M records in <= 2 min,
the overview in <= 2 s.)

The store comes from ``benchmarks.store_data`` (the quick suite's 36 configs, one file per
commit and runner, ~3.7 KB a record, a 10% step in one config halfway), generated under
``--dir`` unless there; 1,400 commits x 2 runners is 100,800 records (362 MB), x 20 runners
1,008,000 (3.7 GB). ``--machines 2`` gives the second half of the runners another CPU (1.6x
the throughput), so that the hardware matrix has two columns. Each publish is one fresh
process (wall time, peak RSS):

- ``cold``: an empty site and an empty results cache (every file parsed into the store's
  Parquet packs first; with ``--warm``, the cache of an earlier run in ``--dir`` is kept);
- ``full``: ``--full`` with the cache warm (everything redone but the parsing);
- ``nothing new``: the same files again;
- ``one new commit``: one more commit from every runner, which adds a point to every series.

Then Chromium opens ``index.html`` from disk ``--loads`` times: the seconds from navigation
to the overview drawn (its script's ``TM.readyAt``, ``performance.now()`` when every row of
the first page is in the document), and the same for the stepped series' page.
``--pictures DIR`` keeps screenshots of the four pages (the guide's pictures).

    python -m benchmarks.publish_scale --commits 1400 --runners 2
    python -m benchmarks.publish_scale --commits 300 --runners 2 --machines 2 --pictures DIR
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.store_data import START, commit_sha, generate

OTHER_CPU = ("Intel Xeon Platinum 8480+", 1.6)  # --machines 2: the second machine, its speed-up


def make_store(folder: Path, commits: int, runners: int, machines: int) -> int:
    """The store, generated unless ``folder`` holds it; its record count."""
    marker = folder / ".complete"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        paths = generate(folder, commits=commits, runners=runners)
        if machines > 1:
            for path in paths:
                runner = int(path.stem.rsplit("-", 1)[-1])
                if runner >= runners // 2:
                    second_machine(path)
        marker.write_text(f"{commits} {runners} {machines}\n")
    return commits * runners * 36


def second_machine(path: Path) -> None:
    name, factor = OTHER_CPU
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in recs:
        r.update(device_name=name, cpu_model=name, host=r["host"].replace("runner", "xeon"))
        r["throughput"] *= factor
        r["repeat_throughputs"] = [v * factor for v in r["repeat_throughputs"]]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def add_commit(folder: Path, commit: int) -> int:
    """One more commit from every runner: the last commit's files under the next commit's
    sha, record ids and commit time. The files written."""
    old, new = commit_sha(commit - 1), commit_sha(commit)
    when_old = (START + dt.timedelta(hours=commit - 1)).isoformat()
    when_new = (START + dt.timedelta(hours=commit)).isoformat()
    written = 0
    for path in sorted(folder.glob(f"{commit - 1:05d}-*.jsonl")):
        text = path.read_text().replace(old, new).replace(when_old, when_new)
        text = re.sub(r'"record_id": "\d{6}', f'"record_id": "{commit:06d}', text)
        name = path.name.replace(f"{commit - 1:05d}-{old[:10]}", f"{commit:05d}-{new[:10]}")
        (folder / name).write_text(text)
        written += 1
    return written


def publish(store: Path, site: Path, cache: Path, *extra: str) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB, its summary line) of one ``trainmark publish`` process."""
    env = {**os.environ, "TRAINMARK_CACHE_DIR": str(cache)}
    code = ("import resource, sys, time\n"
            "t = time.perf_counter()\n"
            "from harness.cli import main\n"
            "rc = main(sys.argv[1:])\n"
            "print('BENCH', time.perf_counter() - t, "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, file=sys.stderr)\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, "publish", str(store), "--out", str(site),
                           *extra], env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode:
        raise SystemExit(f"publish failed:\n{proc.stdout}\n{proc.stderr}")
    _, seconds, rss = next(ln for ln in proc.stderr.splitlines() if ln.startswith("BENCH")
                           ).split()
    return float(seconds), float(rss), proc.stdout.strip()


def browser_loads(site: Path, loads: int, pictures: Path | None) -> dict[str, list[float]]:
    from tests.test_publish_browser import start_chromium

    overview = json.loads(re.match(r"TM\.put\(\"overview\", (.*)\);\s*$",
                                   (site / "data" / "overview.js").read_text(), re.S).group(1))
    stepped = overview["series"][0]
    with tempfile.TemporaryDirectory() as profile:
        driver = start_chromium(Path(profile), 1400, 1000)
        try:
            times: dict[str, list[float]] = {"overview": [], "series": []}
            for page, key in (("index.html", "overview"),
                              (f"series.html#{stepped['id']}", "series")):
                for _ in range(loads):
                    times[key].append(_load(driver, site, page))
            if pictures:
                _pictures(driver, site, pictures, stepped)
            severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
            if severe:
                raise SystemExit(f"console errors: {severe}")
        finally:
            driver.quit()
    return times


def _load(driver, site: Path, page: str) -> float:
    name, _, fragment = page.partition("#")
    driver.get("about:blank")
    driver.get((site / name).as_uri() + (f"#{fragment}" if fragment else ""))
    for _ in range(600):
        ready = driver.execute_script("return window.TM && TM.readyAt")
        if ready:
            return ready / 1000
        time.sleep(0.05)
    raise SystemExit(f"{page} was not drawn in 30 s")


def _pictures(driver, site: Path, folder: Path, stepped: dict) -> None:
    from selenium.webdriver.support.ui import Select

    folder.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1280, 900)
    _load(driver, site, "index.html")
    driver.save_screenshot(str(folder / "overview.png"))
    Select(driver.find_element("name", "metric")).select_by_value("throughput")
    Select(driver.find_element("name", "model")).select_by_value("resnet20")
    driver.save_screenshot(str(folder / "overview-filtered.png"))
    _load(driver, site, f"series.html#{stepped['id']}")
    driver.save_screenshot(str(folder / "series.png"))
    href = driver.find_element("css selector", "#point-records a").get_attribute("href")
    _load(driver, site, "record.html#" + href.split("#", 1)[1])
    driver.save_screenshot(str(folder / "record.png"))
    _load(driver, site, "matrix.html")
    driver.save_screenshot(str(folder / "matrix.png"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--commits", type=int, default=1400)
    p.add_argument("--runners", type=int, default=2)
    p.add_argument("--machines", type=int, choices=(1, 2), default=1)
    p.add_argument("--dir", default=None, help="where the store is (or is made); default a "
                   "temporary folder, removed after")
    p.add_argument("--loads", type=int, default=3)
    p.add_argument("--price", action="append", default=[])
    p.add_argument("--pictures", type=Path, default=None)
    p.add_argument("--warm", action="store_true", help="keep the results cache of an earlier "
                   "run in --dir: the first publish then parses no file")
    args = p.parse_args(argv)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="publish-scale-"))
    store, site, cache = base / "store", base / "site", base / "cache"
    t = time.perf_counter()
    records = make_store(store, args.commits, args.runners, args.machines)
    print(f"store: {records:,} records in {args.commits * args.runners:,} files "
          f"({sum(f.stat().st_size for f in store.iterdir()) / 2**20:,.0f} MiB), ready in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    try:
        shutil.rmtree(site, ignore_errors=True)
        if not args.warm:
            shutil.rmtree(cache, ignore_errors=True)
        prices = [f"--price={x}" for x in args.price]
        rows = []
        first = "first (warm)" if args.warm else "cold"
        for label, extra in ((first, ()), ("full", ("--full",)), ("nothing new", ())):
            seconds, rss, line = publish(store, site, cache, *prices, *extra)
            rows.append((label, seconds, rss, line))
            print(f"{label:>15}: {seconds:6.1f} s, peak RSS {rss:6.0f} MiB  | {line}", flush=True)
        add_commit(store, args.commits)
        seconds, rss, line = publish(store, site, cache, *prices)
        print(f"{'one new commit':>15}: {seconds:6.1f} s, peak RSS {rss:6.0f} MiB  | {line}",
              flush=True)
        size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
        print(f"site: {size / 2**20:,.0f} MiB, overview.js "
              f"{(site / 'data' / 'overview.js').stat().st_size / 2**10:,.0f} KiB", flush=True)
        times = browser_loads(site, args.loads, args.pictures)
        for key, values in times.items():
            print(f"{key} drawn in Chromium: median {statistics.median(values):.2f} s "
                  f"(of {', '.join(f'{v:.2f}' for v in values)})", flush=True)
    finally:
        for path in store.glob(f"{args.commits:05d}-*.jsonl"):
            path.unlink()  # the added commit: the store stays as generated
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
