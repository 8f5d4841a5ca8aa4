"""``trainmark export mlflow``: each record one MLflow run (config as params, results as
metrics, provenance and code identity as tags, the loss curve as a metric history), against a
real tracking server (``mlflow server`` with a SQLite backend) that the test starts; exporting
twice creates no duplicates; without mlflow, one line names the extra."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness.cli import main
from harness.store.mlflow_export import RECORD_TAG, run_contents

EXAMPLES = Path(__file__).resolve().parent.parent / "results" / "examples"
QUICK = EXAMPLES / "cpu-quick.jsonl"  # 36 records of the quick suite, with loss curves
CODE = {"code_digest": "0123456789abcdef", "code_identity": "6904b864c2f2/0123456789abcdef"}


def quick_records() -> list[dict]:
    """The quick suite's records, with the code identity that newer records carry."""
    return [{**json.loads(line), **CODE} for line in QUICK.read_text().splitlines()]


def test_a_record_maps_to_params_metrics_tags_and_a_loss_history() -> None:
    rec = quick_records()[0]
    params, metrics, tags, histories = run_contents(rec)
    assert params["model"] == rec["model"] and params["batch_size"] == str(rec["batch_size"])
    assert "throughput" not in params and "host" not in params
    assert metrics["throughput"] == rec["throughput"]
    assert metrics["eval_accuracy"] == rec["eval_accuracy"]
    assert metrics["peak_rss_bytes"] == rec["peak_rss_bytes"]
    assert "num_threads" not in metrics and tags["trainmark.num_threads"] == str(
        rec["num_threads"])
    assert tags[RECORD_TAG] == rec["record_id"]
    assert tags["trainmark.torch_version"] == rec["torch_version"]
    assert tags["trainmark.code_identity"] == rec["code_identity"]
    assert tags["mlflow.source.git.commit"] == rec["git_commit"]
    every = rec["loss_curve_every"]
    curve = histories["loss_curve"]
    assert [v for _, v in curve] == rec["loss_curve"]
    assert curve[0][0] == every and curve[-2][0] == (len(curve) - 1) * every
    assert [v for _, v in histories["repeat_throughput"]] == rec["repeat_throughputs"]


def test_without_mlflow_one_line_names_the_extra(tmp_path: Path, monkeypatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    code = main(["export", "mlflow", str(QUICK), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "pip install 'trainmark[mlflow]'" in err
    assert not (tmp_path / "m.db").exists()


def _write(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _runs_by_experiment(uri: str) -> dict[str, set[str]]:
    """{experiment name: the record ids of its runs}, read back from MLflow itself."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return {e.name: {r.data.tags[RECORD_TAG]
                     for r in client.search_runs([e.experiment_id], max_results=1000)}
            for e in client.search_experiments()
            if e.name != "Default"}  # MLflow's own, always there, never ours


def test_one_experiment_per_suite_and_no_second_copy_anywhere(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("mlflow", reason="needs mlflow: pip install 'trainmark[mlflow]'")
    uri = f"sqlite:///{workdir}/m.db"
    base = quick_records()
    quick = [dict(base[i], record_id=f"q{i}", suite="quick") for i in range(3)]
    ci = [dict(base[3 + i], record_id=f"c{i}", suite="ci") for i in range(2)]
    old = base[5:7]  # the committed file is from before the field: no suite
    assert all("suite" not in r for r in old)
    files = [_write(workdir / "quick.jsonl", quick), _write(workdir / "ci.jsonl", ci),
             _write(workdir / "old.jsonl", old)]
    expected = {"trainmark/quick": {"q0", "q1", "q2"}, "trainmark/ci": {"c0", "c1"},
                "trainmark": {old[0]["record_id"], old[1]["record_id"]}}

    argv = ["export", "mlflow", *files, "--tracking-uri", uri]
    assert main(argv) == 0
    assert "exported 7 runs, 0 already there" in capsys.readouterr().out
    assert _runs_by_experiment(uri) == expected
    assert main(argv) == 0  # again: nothing new
    assert "exported 0 runs, 7 already there" in capsys.readouterr().out
    assert _runs_by_experiment(uri) == expected

    # --experiment: the same records are already in MLflow (in their suites' experiments), so
    # nothing is copied and no empty experiment is made
    assert main([*argv, "--experiment", "nightly"]) == 0
    out = capsys.readouterr().out
    assert "exported 0 runs, 7 already there" in out and "trainmark/quick: 3" in out
    assert _runs_by_experiment(uri) == expected

    # new records of two suites, with --experiment: every one into that experiment
    fresh = [dict(base[7], record_id="n0", suite="quick"),
             dict(base[8], record_id="n1", suite="ci")]
    new_file = _write(workdir / "new.jsonl", fresh)
    assert main(["export", "mlflow", new_file, "--tracking-uri", uri,
                 "--experiment", "nightly"]) == 0
    assert "exported 2 runs, 0 already there, into nightly" in capsys.readouterr().out
    assert main(["export", "mlflow", new_file, "--tracking-uri", uri]) == 0  # not again
    assert "exported 0 runs, 2 already there (nightly: 2)" in capsys.readouterr().out
    assert _runs_by_experiment(uri) == {**expected, "nightly": {"n0", "n1"}}


def test_an_experiment_of_ones_own_is_remembered_for_the_next_export(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("mlflow", reason="needs mlflow: pip install 'trainmark[mlflow]'")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{workdir}/m.db"
    MlflowClient(tracking_uri=uri).create_experiment("team")  # made by hand, not by trainmark
    rec = dict(quick_records()[0], record_id="t0", suite="ci")
    path = _write(workdir / "r.jsonl", [rec])
    assert main(["export", "mlflow", path, "--tracking-uri", uri, "--experiment", "team"]) == 0
    assert main(["export", "mlflow", path, "--tracking-uri", uri]) == 0
    assert "exported 0 runs, 1 already there (team: 1)" in capsys.readouterr().out
    assert _runs_by_experiment(uri) == {"team": {"t0"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """A real ``mlflow server`` on a free local port with a SQLite backend (~10-30 s to start:
    it creates the database's tables first)."""
    pytest.importorskip("mlflow", reason="needs mlflow: pip install 'trainmark[mlflow]' "
                        "(.ci/run installs the test extra, which has it)")
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"sqlite:///{root / 'mlflow.db'}", "--default-artifact-root", str(root / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail("mlflow server did not start:\n" + (root / "server.log").read_text())
        time.sleep(0.25)
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.mark.long  # the server's start alone takes 10-30 s on 2 cores
def test_export_to_a_tracking_server_twice_creates_each_run_once(
        tracking_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    quick = tmp_path / "quick.jsonl"
    quick.write_text("".join(json.dumps(r) + "\n" for r in quick_records()))
    argv = ["export", "mlflow", str(quick), "--tracking-uri", tracking_server,
            "--experiment", "nightly"]
    assert main(argv) == 0
    assert "exported 36 runs, 0 already there, into nightly" in capsys.readouterr().out
    assert main(argv) == 0
    assert "exported 0 runs, 36 already there" in capsys.readouterr().out

    client = MlflowClient(tracking_uri=tracking_server)
    exp = client.get_experiment_by_name("nightly")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert len(runs) == 36
    records = {r["record_id"]: r for r in quick_records()}
    assert {r.data.tags[RECORD_TAG] for r in runs} == set(records)
    run = runs[0]
    rec = records[run.data.tags[RECORD_TAG]]
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer"] == rec["optimizer"]
    assert run.data.params["precision"] == rec["precision"]
    assert run.data.metrics["throughput"] == pytest.approx(rec["throughput"])
    assert run.data.metrics["peak_rss_bytes"] == pytest.approx(rec["peak_rss_bytes"])
    assert run.data.tags["trainmark.host"] == rec["host"]
    assert run.data.tags["trainmark.code_digest"] == rec["code_digest"]
    assert run.data.tags["mlflow.source.git.commit"] == rec["git_commit"]
    history = client.get_metric_history(run.info.run_id, "loss_curve")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        rec["loss_curve"])

    # the default experiment, and a record that failed: a FAILED run with its status
    failed = dict(rec, record_id="failed-1", status="oom", error="CUDA out of memory",
                  throughput=None)
    path = tmp_path / "failed.jsonl"
    path.write_text(json.dumps(failed) + "\n")
    assert main(["export", "mlflow", str(path), "--tracking-uri", tracking_server]) == 0
    assert "into trainmark" in capsys.readouterr().out
    default = client.get_experiment_by_name("trainmark")
    [run] = client.search_runs([default.experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["trainmark.status"] == "oom"
    assert run.data.tags["trainmark.error"] == "CUDA out of memory"
    assert "throughput" not in run.data.metrics

    # a record that names its suite: that suite's experiment, on a real server too
    path.write_text(json.dumps(dict(rec, record_id="suite-1", suite="ci")) + "\n")
    assert main(["export", "mlflow", str(path), "--tracking-uri", tracking_server]) == 0
    assert "exported 1 runs, 0 already there, into trainmark/ci" in capsys.readouterr().out
    [run] = client.search_runs([client.get_experiment_by_name("trainmark/ci").experiment_id])
    assert run.data.tags[RECORD_TAG] == "suite-1" and run.data.tags["trainmark.suite"] == "ci"
