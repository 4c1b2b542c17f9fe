"""Scale-out (issue 16): `sleuth export --parquet` keeps each user in one file, sorted, and
scoring that export on a real local Ray (2 actors) gives the same score per user and the same
cases as scoring in this process. Skipped when Ray is not installed (`pip install -e ".[ray]"`)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from analyst.cli import main
from analyst.config import Settings
from analyst.service import Workbench
from analyst.service.export import MANIFEST, export_events


def second_copy(settings: Settings, tmp_path) -> Settings:
    target = tmp_path / "home-ray"
    shutil.copytree(settings.home, target)
    return Settings.from_env(env={"SLEUTH_HOME": str(target)})


def test_an_export_keeps_each_user_in_one_sorted_file_and_refuses_a_used_directory(home_copy, tmp_path):
    out = tmp_path / "events"
    with Workbench(home_copy) as wb:
        manifest = wb.export_events(out, partitions=4)
        stored = wb.store.events(signals=True)
        n_users = len(wb.store.users())
        with pytest.raises(ValueError, match="not an empty directory"):
            export_events(wb.store, out, partitions=4)
        with pytest.raises(ValueError, match="partitions=0"):
            export_events(wb.store, tmp_path / "other", partitions=0)
    files = sorted(out.glob("part-*.parquet"))
    assert [f.name for f in files] == manifest["files"] and 1 < len(files) <= 4
    assert json.loads((out / MANIFEST).read_text())["users"] == n_users
    frames = [pd.read_parquet(f) for f in files]
    owners = pd.concat([f[["user_id"]].drop_duplicates().assign(file=i) for i, f in enumerate(frames)])
    assert owners["user_id"].is_unique and len(owners) == n_users          # one file per user
    for frame in frames:
        keys = list(zip(frame["user_id"], frame["ts"]))
        assert keys == sorted(keys)
    assert sum(len(f) for f in frames) == len(stored) == manifest["events"]
    assert set(frames[0].columns) == set(stored.columns)                   # signal columns included
    assert not list(tmp_path.glob(".*.partial"))


def test_ray_scores_equal_in_process_scores_and_open_the_same_cases(home_copy, tmp_path):
    pytest.importorskip("ray")
    ray_home = second_copy(home_copy, tmp_path)
    with Workbench(home_copy) as wb:
        version = wb.model().version
        local = wb.score(budget=12, explain_cases=False)
        local_scores = wb.store.latest_scores(version).set_index("user_id")["score"].sort_index()
        local_cases = wb.store.cases()[["user_id", "status", "why"]].sort_values("user_id", ignore_index=True)
    with Workbench(ray_home) as wb:
        wb.export_events(tmp_path / "events", partitions=6)
        remote = wb.score_on_ray(tmp_path / "events", tmp_path / "scores", actors=2, budget=12,
                                 explain_cases=False)
        ray_scores = wb.store.latest_scores(version).set_index("user_id")["score"].sort_index()
        ray_cases = wb.store.cases()[["user_id", "status", "why"]].sort_values("user_id", ignore_index=True)
    assert remote["engine"] == "ray" and remote["scored"] == local["scored"] == len(local_scores)
    assert list(ray_scores.index) == list(local_scores.index)
    np.testing.assert_allclose(ray_scores.to_numpy(), local_scores.to_numpy(), rtol=0, atol=1e-5)
    assert ray_cases.equals(local_cases) and remote["opened"] == local["opened"] > 0
    written = pd.concat([pd.read_parquet(f) for f in (tmp_path / "scores").glob("*.parquet")])
    assert written["user_id"].is_unique and len(written) == len(local_scores)


def test_cli_export_and_ray_scoring_say_what_is_missing(home_copy, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLEUTH_HOME", str(home_copy.home))
    assert main(["export", "--parquet", str(tmp_path / "ev"), "--partitions", "3"]) == 0
    assert "events of" in capsys.readouterr().out
    assert main(["score", "--engine", "ray", "--events", str(tmp_path / "ev")]) != 0
    assert "--out DIR" in capsys.readouterr().err
    assert main(["score", "--engine", "ray", "--events", str(tmp_path / "nothing"),
                 "--out", str(tmp_path / "s")]) != 0
    assert "is not a sleuth export" in capsys.readouterr().err
