"""Streaming (issue 16): events from a drop folder or a real Kafka-protocol broker are stored
exactly once (a SIGKILL at any step neither loses nor doubles one), only their users are
rescored, and their cases open or are marked "risk changed"."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyst.config import Settings
from analyst.service import Workbench
from analyst.service.rescoring import RISE_MIN, STREAM_TAG
from analyst.service.stream_sources import StreamSourceError, parse_source
from analyst.store import Store
from analyst.store import database
from analyst.store.stream import StreamPosition, StreamPositionError
from tests import kafka_broker

ROOT = Path(__file__).resolve().parents[1]
START = pd.Timestamp("2026-11-30 12:00:00")


def new_events(users, n_each: int, start: pd.Timestamp = START) -> list[dict]:
    """`n_each` declined payments per user, each unique by (user_id, ts, amount)."""
    out = []
    for i in range(n_each):
        for j, user in enumerate(users):
            out.append({"user_id": str(user), "ts": (start + pd.Timedelta(seconds=60 * i + j)).isoformat(),
                        "event_type": "payment", "amount": 100.0 + i, "status": "declined",
                        "payment_method": f"card_stream_{j}", "device_id": "dev_stream"})
    return out


def streamed(store: Store, since: pd.Timestamp = START) -> pd.DataFrame:
    events = store.events()
    return events[events["ts"] >= since]


@pytest.fixture
def wb(home_copy):
    warnings.simplefilter("ignore")
    with Workbench(home_copy) as bench:
        yield bench


# ----------------------------------------------------------------------------- drop folder
def test_a_dropped_file_is_stored_once_its_bad_rows_quarantined_and_it_moves(wb, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    user = str(wb.queue()["user_id"].iloc[0])
    rows = new_events([user], 3) + [{"user_id": user, "ts": "not a time", "event_type": "login"}]
    (drop / "batch1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = wb.store.counts()["events"]

    status = wb.stream_worker(str(drop)).run(idle_exit_s=0.5)

    assert status["batches"] == 1 and status["events"] == 3 and status["rejected"] == 1
    assert wb.store.counts()["events"] == before + 3
    bad = wb.store.quarantine(file=str((drop / "batch1.jsonl").resolve()))
    assert bad["row_number"].tolist() == [4] and "ts" in bad["reason"].iloc[0]
    assert not (drop / "batch1.jsonl").exists() and (drop / "processed" / "batch1.jsonl").exists()
    assert wb.store.ingests()["imported_by"].iloc[-1] == "stream"
    assert wb.store.stream_pending().empty

    # the same bytes dropped again under another name: moved, nothing stored twice
    (drop / "again.jsonl").write_bytes((drop / "processed" / "batch1.jsonl").read_bytes())
    status = wb.stream_worker(str(drop)).run(idle_exit_s=0.5)
    assert status["batches"] == 0 and wb.store.counts()["events"] == before + 3
    assert (drop / "processed" / "again.jsonl").exists()


def test_files_being_written_wait_and_a_file_that_is_not_a_table_moves_aside(wb, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    for name in ("half.jsonl.tmp", ".hidden.jsonl", "~lock.csv", "notes.txt"):
        (drop / name).write_text(json.dumps(new_events(["u_wait"], 1)[0]) + "\n")
    (drop / "garbage.csv").write_bytes(b"\x00\x01\x02 binary")
    before = wb.store.counts()["events"]

    worker = wb.stream_worker(str(drop))
    status = worker.run(idle_exit_s=0.5)

    assert status["events"] == 0 and wb.store.counts()["events"] == before
    assert sorted(p.name for p in drop.iterdir() if p.is_file()) == [
        ".hidden.jsonl", "half.jsonl.tmp", "notes.txt", "~lock.csv"]
    why = (drop / "rejected" / "garbage.csv.why.txt").read_text()
    assert "garbage.csv" in why and "binary" in why
    assert len(worker.source.failures) == 1


def test_a_source_that_is_neither_kafka_nor_a_folder_is_refused_in_one_line(tmp_path):
    with pytest.raises(StreamSourceError, match="no such folder"):
        parse_source(str(tmp_path / "missing"))
    with pytest.raises(StreamSourceError, match="kafka://HOST:PORT/TOPIC"):
        parse_source("kafka://localhost:9092")
    assert parse_source("kafka://h1:9092,h2:9092/events") == ("kafka", {"bootstrap": "h1:9092,h2:9092",
                                                                      "topic": "events"})


# ----------------------------------------------------------------------------- the store's part
def test_a_batch_that_does_not_start_where_the_store_stands_writes_nothing(tmp_path):
    from analyst.ingest import normalise_events

    with Store(tmp_path / "s.duckdb") as store:
        events, _ = normalise_events(pd.DataFrame(new_events(["a", "b"], 2)))
        store.record_ingest("kafka://h:1/t", None, "events", events=events,
                            position=StreamPosition("kafka://h:1/t", {0: 0}, {0: 4}), append_only=True)
        assert store.stream_offsets("kafka://h:1/t") == {0: 4}
        counts = store.counts()
        later, _ = normalise_events(pd.DataFrame(new_events(["c"], 2, START + pd.Timedelta(days=1))))
        with pytest.raises(StreamPositionError, match="starts at offset 2 but the store stands at 4"):
            store.record_ingest("kafka://h:1/t", None, "events", events=later,
                                position=StreamPosition("kafka://h:1/t", {0: 2}, {0: 6}), append_only=True)
        assert store.counts() == counts and store.stream_offsets("kafka://h:1/t") == {0: 4}
        assert sorted(store.stream_pending()["user_id"]) == ["a", "b"]


def test_streamed_batches_append_to_a_tail_and_reads_stay_in_order(tmp_path, monkeypatch):
    from analyst.ingest import normalise_events

    monkeypatch.setattr(database, "TAIL_MAX_ROWS", 10)
    with Store(tmp_path / "s.duckdb") as store:
        store.add_events(normalise_events(pd.DataFrame(new_events(["m", "a", "z"], 3)))[0])
        runs = lambda: store._read("SELECT value FROM sleuth.meta WHERE key IN ('events_runs', 'events_tail') "
                                   "ORDER BY key")["value"].tolist()
        assert runs() == ["1", "0"]
        for k, user in enumerate(["b", "a", "y"]):   # three small batches: 3 + 3 rows tail, then > 10
            batch = normalise_events(pd.DataFrame(new_events([user], 4, START + pd.Timedelta(hours=k + 1))))[0]
            store.record_ingest(f"batch{k}", None, "events", events=batch, append_only=True)
            events = store.events()
            assert events[["user_id", "ts"]].equals(events.sort_values(["user_id", "ts"])[["user_id", "ts"]])
            assert len(store.timeline(user)) == len(events[events["user_id"] == user])
            if k < 2:
                assert runs() == ["2", str(4 * (k + 1))]      # one unsorted run, growing
        assert runs() == ["1", "0"]                            # 12 > 10 tail rows: rebuilt sorted


# ----------------------------------------------------------------------------- rescoring and cases
def test_only_the_batch_users_are_rescored_their_cases_marked_and_a_new_risky_user_opens_one(wb, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    queue = wb.queue()
    open_users = queue["user_id"].astype(str).tolist()[:4]
    labelled = sorted(wb.store.labelled_user_ids() - set(queue["user_id"]))[0]
    (drop / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in
                                          new_events(open_users + [labelled, "u_brand_new"], 25)))
    version = wb.current_version()
    before = wb.store.latest_scores(version)
    old = dict(zip(before["user_id"], before["score"]))
    n_scores = len(wb.store._read("SELECT * FROM sleuth.scores"))

    results = []
    wb.stream_worker(str(drop), open_at=0.0, on_batch=results.append).run(idle_exit_s=0.5)

    (result,) = results
    assert result.rescored == 6
    assert len(wb.store._read("SELECT * FROM sleuth.scores")) == n_scores + 6   # nobody else rescored
    after = wb.store.latest_scores(version)
    new = dict(zip(after["user_id"], after["score"]))
    moved = {u for u in open_users if abs(new[u] - old[u]) >= RISE_MIN}
    assert moved, "25 declined payments moved no open case's risk by a point"
    assert {c["user_id"] for c in result.changed} == moved
    marked = wb.queue().set_index("user_id")
    for user in open_users:
        assert (STREAM_TAG in marked.at[user, "tags"]) == (user in moved)
        if user in moved:
            assert marked.at[user, "risk_now"] == pytest.approx(new[user], abs=1e-4)
    changes = wb.risk_changes()
    assert set(changes["user_id"]) == moved
    # open_at 0: the unlabelled new user gets a case; the labelled user never does
    assert result.opened == ("u_brand_new",)
    assert wb.store.latest_case("u_brand_new")["why"] == "high_risk"
    assert wb.store.latest_case(labelled) is None or wb.store.latest_case(labelled)["status"] == "decided"


def test_streamed_users_wait_for_a_model_and_are_scored_once_one_exists(tmp_path):
    home = Settings.from_env(env={"SLEUTH_HOME": str(tmp_path / "home")})
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in new_events(["p", "q"], 2)))
    with Workbench(home) as bench:
        status = bench.stream_worker(str(drop)).run(idle_exit_s=0.3)
        assert status["events"] == 4 and status["rescored"] == 0
        assert sorted(bench.store.stream_pending()["user_id"]) == ["p", "q"]


# ----------------------------------------------------------------------------- a real broker
def test_kafka_batches_are_stored_once_with_their_offsets_and_bad_messages_quarantined(wb):
    users = wb.queue()["user_id"].astype(str).tolist()[:3] + ["k_new"]
    events = new_events(users, 30)
    with kafka_broker.broker("events", partitions=2) as bootstrap:
        kafka_broker.produce(bootstrap, "events", events, raw=[b"{not json", b"[1, 2]"])
        source = f"kafka://{bootstrap}/events"
        before = wb.store.counts()["events"]
        results = []
        status = wb.stream_worker(source, max_messages=25, on_batch=results.append).run(idle_exit_s=1.5)

        assert status["events"] == 120 and status["rejected"] == 2 and status["batches"] >= 5
        assert wb.store.counts()["events"] == before + 120
        stored = streamed(wb.store)
        assert len(stored) == 120 and not stored.duplicated(["user_id", "ts", "amount"]).any()
        offsets = wb.store.stream_offsets(source)
        assert sum(offsets.values()) == 122                       # every message, read once
        bad = wb.store.quarantine()
        bad = bad[bad["file"].str.startswith(source)]
        assert sorted(bad["reason"].str.split(" \\(").str[0]) == ["not a JSON object", "not valid JSON"]
        assert all(np.isfinite(r.latency_ms).all() and (r.latency_ms > 0).all() for r in results)

        # a restart reads from the stored offsets: nothing again
        again = wb.stream_worker(source).run(idle_exit_s=1.0)
        assert again["events"] == 0 and wb.store.counts()["events"] == before + 120


# The child streams in batches of 20 and SIGKILLs itself at the third batch: inside the events'
# transaction (before it commits), or after the commit and before the rescore.
CHILD = textwrap.dedent("""
    import os, signal, sys, warnings
    from analyst.config import Settings
    from analyst.service import Workbench, streaming
    from analyst.store import stream

    home, source, step = sys.argv[1], sys.argv[2], sys.argv[3]
    warnings.simplefilter("ignore")
    calls = {"n": 0}
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    if step == "inside":
        real = stream.record_position
        def record_then_die(*a, **k):
            real(*a, **k)
            calls["n"] += 1
            if calls["n"] == 3:
                die()
        stream.record_position = record_then_die
    elif step == "after_commit":
        real = streaming.Streamer.rescore_pending
        def die_before_rescore(self):
            calls["n"] += 1
            if calls["n"] == 4:          # the first call rescores what a kill left, then one per batch
                die()
            return real(self)
        streaming.Streamer.rescore_pending = die_before_rescore
    with Workbench(Settings.from_env(env={"SLEUTH_HOME": home})) as wb:
        status = wb.stream_worker(source, max_messages=20).run(idle_exit_s=2.0)
        print(status["events"], status["batches"])
""")


def stream_child(home: Path, source: str, step: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", CHILD, str(home), source, step], cwd=ROOT, env=env,
                          timeout=300, capture_output=True, text=True)


@pytest.mark.parametrize("step", ["inside", "after_commit"])
def test_a_kill_9_and_restart_neither_loses_nor_doubles_an_event(home_copy, step):
    with Workbench(home_copy) as bench:
        users = bench.queue()["user_id"].astype(str).tolist()[:4] + ["k_new"]
        before = bench.store.counts()["events"]
    events = new_events(users, 20)                  # 100 events: five batches of 20
    with kafka_broker.broker("events", partitions=2) as bootstrap:
        kafka_broker.produce(bootstrap, "events", events)
        source = f"kafka://{bootstrap}/events"
        killed = stream_child(home_copy.home, source, step)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        with Store(home_copy.db_path) as store:
            stored_at_kill = len(streamed(store))
            # what was committed: whole batches, each with its offsets (the killed one gone / kept)
            assert 0 < stored_at_kill < 100
            assert sum(store.stream_offsets(source).values()) == stored_at_kill
            if step == "after_commit":
                assert len(store.stream_pending()) > 0                   # stored, not yet rescored
        finished = stream_child(home_copy.home, source, "none")
        assert finished.returncode == 0, finished.stderr[-2000:]
    with Workbench(home_copy) as bench:
        stored = streamed(bench.store)
        assert bench.store.counts()["events"] == before + 100
        assert len(stored) == 100 and not stored.duplicated(["user_id", "ts", "amount"]).any()
        assert sum(bench.store.stream_offsets(source).values()) == 100
        assert bench.store.stream_pending().empty                       # every user rescored
        scores = bench.store.latest_scores(bench.current_version()).set_index("user_id")
        for user in users:
            assert scores.at[user, "n_events"] == len(bench.store.timeline(user))


def test_streamed_link_pairs_read_the_same_as_a_rebuild(wb, tmp_path, monkeypatch):
    from analyst.store import links as link_table

    monkeypatch.setattr(link_table, "TAIL_MAX_PAIRS", 16)     # the tail is sorted away once, then grows again
    sorts, real_sort = [], link_table._sort_pairs
    monkeypatch.setattr(link_table, "_sort_pairs", lambda cur: (sorts.append(1), real_sort(cur)))
    drop = tmp_path / "drop"
    drop.mkdir()
    users = wb.queue()["user_id"].astype(str).tolist()[:3] + ["s_new_1", "s_new_2"]
    for k in range(3):
        rows = [dict(r, device_id=f"shared_dev_{k}", ip=f"10.0.{k}.1")
                for r in new_events(users, 2, START + pd.Timedelta(hours=k))]
        (drop / f"b{k}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        wb.stream_worker(str(drop)).run(idle_exit_s=0.3)
    tail = lambda: wb.store._read("SELECT value FROM sleuth.meta WHERE key = 'links_tail'")["value"].tolist()
    assert tail() and int(tail()[0]) > 0 and len(sorts) == 1   # sorted once; the last batch sits in the tail
    streamed_links = {u: wb.links(u, max_users=10) for u in users}
    with wb.store._tx() as cur:                                 # forget the layout: the next refresh rebuilds
        cur.execute("DELETE FROM sleuth.meta WHERE key = 'links_config'")
    wb.store.refresh_links()
    assert {u: wb.links(u, max_users=10) for u in users} == streamed_links
    shared = [e for e in streamed_links["s_new_1"]["entities"] if e["value"] == "shared_dev_2"]
    assert shared and shared[0]["n_users"] == 5


def test_sleuth_stream_stores_a_dropped_file_and_says_what_it_did(home_copy, tmp_path, capsys):
    from analyst.cli import main

    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in new_events(["cli_user"], 3))
                                  + '{"user_id": "cli_user", "ts": "never", "event_type": "login"}\n')
    assert main(["stream", str(drop), "--db", str(home_copy.db_path), "--idle-exit", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "3 events (1 rejected) of 1 users; rescored 1" in out
    assert "stored 3 events in 1 batches (1 rejected), rescored 1, opened" in out
    assert main(["stream", str(tmp_path / "nowhere"), "--db", str(home_copy.db_path)]) == 2
    assert "no such folder" in capsys.readouterr().err
