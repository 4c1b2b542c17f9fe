"""The `sleuth` command end to end, in-process, on a real DuckDB file in a tmp dir."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analyst.cli import main

TINY = ["--d-model", "16", "--layers", "1", "--max-events", "48", "--pretrain-epochs", "1",
        "--finetune-epochs", "2"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    assert main(["generate", "--users", "80", "--seed", "5", "--fraud-rate", "0.2", "--out", str(out)]) == 0
    return out


def test_help_lists_every_verb():
    out = subprocess.run([sys.executable, "-m", "analyst.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for verb in ("demo", "generate", "ingest", "train", "score", "explain", "evaluate", "export-labels", "app"):
        assert verb in out


def test_generate_writes_events_and_labels(data_dir):
    events = pd.read_parquet(data_dir / "events.parquet")
    labels = pd.read_parquet(data_dir / "labels.parquet")
    assert labels["user_id"].nunique() == 80 == events["user_id"].nunique()
    assert labels["label"].sum() > 0


def test_full_cli_loop(data_dir, tmp_path, capsys):
    db = str(tmp_path / "s.duckdb")
    assert main(["ingest", str(data_dir / "events.parquet"), "--labels", str(data_dir / "labels.parquet"), "--db", db]) == 0
    first = capsys.readouterr().out
    assert "accepted" in first
    assert main(["ingest", str(data_dir / "events.parquet"), "--db", db]) == 0
    assert "already ingested" in capsys.readouterr().out

    assert main(["train", "--db", db, *TINY]) == 0
    assert "current" in capsys.readouterr().out
    # every user is labelled, so the budget finds no unlabelled user: no case, and it says so
    assert main(["score", "--db", db, "--budget", "5"]) == 0
    assert "opened 0 cases" in capsys.readouterr().out

    user = pd.read_parquet(data_dir / "labels.parquet").query("label == 1")["user_id"].iloc[0]
    assert main(["explain", user, "--json", "--db", db]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"user_id", "model_version", "score", "delta", "events", "reasons", "what_if", "neighbours"}
    assert doc["user_id"] == user and 0 <= doc["score"] <= 1
    assert set(doc["events"][0]) == {"ts", "event_type", "attribution", "surprise", "attention", "fields"}
    assert doc["reasons"] and doc["neighbours"]

    out = tmp_path / "labels.csv"
    assert main(["export-labels", "--out", str(out), "--db", db]) == 0
    assert len(pd.read_csv(out)) == 80


def test_garbage_file_is_one_line_error_and_changes_nothing(tmp_path, capsys):
    db = str(tmp_path / "s.duckdb")
    junk = tmp_path / "junk.csv"
    junk.write_bytes(bytes(range(256)) * 20)
    assert main(["ingest", str(junk), "--db", db]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sleuth: error:") and "junk.csv" in err and len(err.splitlines()) == 1
    from analyst.store import Store

    with Store(db) as store:
        assert store.counts()["events"] == 0


def test_bad_mapping_and_missing_user_are_clear(data_dir, tmp_path, capsys):
    db = str(tmp_path / "s.duckdb")
    assert main(["ingest", str(data_dir / "events.parquet"), "--map", "nonsense", "--db", db]) == 2
    assert "--map" in capsys.readouterr().err
    assert main(["ingest", str(data_dir / "events.parquet"), "--db", db]) == 0
    assert main(["train", "--db", db, *TINY]) == 0
    capsys.readouterr()
    assert main(["explain", "nobody", "--db", db]) == 2
    assert "nobody" in capsys.readouterr().err


def test_evaluate_writes_the_contract_json(data_dir, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--events", str(data_dir / "events.parquet"), "--labels",
                 str(data_dir / "labels.parquet"), "--split", "random", "--json", str(out), *TINY]) == 0
    result = json.loads(out.read_text())
    keys = {"auprc", "auroc", "f1", "precision", "recall", "threshold", "precision_at_k", "k"}
    assert {"n_train", "n_test", "positives_test", "model", "baselines"} <= set(result)
    assert set(result["model"]) >= keys
    assert set(result["baselines"]) == {"isolation_forest", "gradient_boosting"}
    assert result["n_train"] + result["n_test"] == 80


def test_demo_builds_its_store_once_from_the_sample(data_dir, tmp_path):
    from analyst.cli import DEMO_HISTORY_FRACTION, prepare_demo
    from analyst.config import Settings
    from analyst.service import Workbench

    settings = Settings.from_env(env={"SLEUTH_HOME": str(tmp_path / "home"), "SLEUTH_SAMPLE_DIR": str(data_dir)})
    prepare_demo(settings)
    wb = Workbench(settings)
    try:
        truth = pd.read_parquet(data_dir / "labels.parquet")
        labels = wb.store.latest_labels()
        assert len(labels) == round(DEMO_HISTORY_FRACTION * len(truth)) and set(labels["source"]) == {"synthetic"}
        version = wb.current_version()
        assert version is not None
        cases = wb.store.cases()
        assert not set(cases["user_id"]) & set(labels["user_id"]), "the queue holds users without outcomes"
        assert {"high_risk", "control"} <= set(cases["why"]), "the demo queue mixes high risk and control cases"
    finally:
        wb.close()
    prepare_demo(settings)  # second run: everything is there, nothing is redone
    wb = Workbench(settings)
    try:
        assert list(wb.models()["version"]) == [version]
        assert len(wb.store.cases()) == len(cases)
    finally:
        wb.close()


def _ppid(proc_dir: Path) -> int:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):  # the process ended meanwhile
        return -1


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc (Linux)")
def test_stopping_sleuth_app_stops_its_server_and_frees_the_store(tiny_home, tmp_path):
    """`kill PID` of `sleuth app` (SIGTERM) ends the Streamlit server it started: nothing keeps
    the DuckDB file locked afterwards."""
    import os
    import shutil
    import signal
    import socket
    import time
    import urllib.request

    from analyst.config import Settings
    from analyst.service import Workbench

    home = tmp_path / "home"
    shutil.copytree(tiny_home.home, home)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("SLEUTH_DB", "SLEUTH_MODELS")}
    env["SLEUTH_HOME"] = str(home)
    # started from another directory, as a user would
    cli = subprocess.Popen([sys.executable, "-m", "analyst.cli", "app", "--port", str(port)], env=env,
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        deadline = time.monotonic() + 90
        while not healthy():
            assert cli.poll() is None, "sleuth app exited before serving"
            assert time.monotonic() < deadline, "sleuth app did not serve in 90 s"
            time.sleep(0.3)
        # a product server, not a dev server: it watches no source files (a watcher over the
        # project and its .venv costs CPU, overflows inotify and offers "Rerun" on every git pull)
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                    and (p / "stat").exists() and _ppid(p) == cli.pid]
        assert len(children) == 1, children
        args = Path(f"/proc/{children[0]}/cmdline").read_bytes().decode().split("\0")
        assert args[args.index("--server.fileWatcherType") + 1] == "none", args
        # it serves static/ (the charts' plotly.js bundle, analyst/views/chart.py)
        from analyst.charts import PLOTLY_JS

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/app/static/{PLOTLY_JS.name}", timeout=10) as r:
            assert r.status == 200 and len(r.read()) == PLOTLY_JS.stat().st_size
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=30) is not None
        assert not healthy(), "the server outlived `sleuth app`"
    finally:
        if cli.poll() is None:
            cli.kill()
    wb = Workbench(Settings.from_env(env={"SLEUTH_HOME": str(home)}))  # the file is free again
    wb.close()
