"""The DuckDB store: schema round trip, sorted layout, typed queries, labels, scores, models,
cases with optimistic concurrency, decisions, audit, explanations, ingest bookkeeping."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyst.store import database as store_mod
from models.contracts import EVENT_COLUMNS
from analyst.store import Store, StoreBusyError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "deep" / "dir" / "s.duckdb") as s:
        yield s


def full_events() -> pd.DataFrame:
    """Every schema column filled, users and times out of order, one tie on (user, ts)."""
    return pd.DataFrame({
        "user_id": ["u2", "u1", "u1", "u2", "u1"],
        "ts": pd.to_datetime(["2024-03-01 10:00", "2024-03-02 09:00", "2024-03-01 08:00",
                              "2024-03-01 09:00", "2024-03-01 08:00"]).astype("datetime64[us]"),
        "event_type": ["login", "payment", "login", "search", "view"],
        "session_id": ["s1", "s2", "s3", "s4", "s3"],
        "item_id": [None, "i9", None, None, "i9"],
        "category": [None, "c1", None, None, "c1"],
        "amount": [np.nan, 12.5, np.nan, np.nan, np.nan],
        "currency": [None, "EUR", None, None, None],
        "query": [None, None, None, "red shoes", None],
        "device_id": ["d1", "d2", "d2", "d1", "d2"],
        "ip": ["1.2.3.4", "5.6.7.8", "5.6.7.8", "1.2.3.4", "5.6.7.8"],
        "country": ["NA", "DE", "DE", "NA", "DE"],
        "status": [None, "ok", "ok", None, None],
        "payment_method": [None, "card_1234", None, None, None],
        "address_id": [None, "a1", None, None, None],
        "attrs": [None, '{"coupon": "X1"}', None, None, None],
    })


def physical_order(s: Store) -> pd.DataFrame:
    with s._con.cursor() as cur:
        return cur.execute("SELECT user_id, ts, event_id FROM sleuth.events ORDER BY rowid").df()


# ------------------------------------------------------------------------------------ events
def test_schema_round_trip(store):
    ev = full_events()
    assert store.add_events(ev) == 5
    got = store.events()
    assert list(got.columns) == list(EVENT_COLUMNS)
    want = ev.iloc[[2, 4, 1, 3, 0]].reset_index(drop=True)   # (user_id, ts), ties in arrival order
    assert got["ts"].dtype == "datetime64[us]" and got["amount"].dtype == "float64"
    assert got["amount"].tolist() == pytest.approx(want["amount"].tolist(), nan_ok=True)
    for c in EVENT_COLUMNS:
        if c != "amount":
            nulls_as_none = [None if pd.isna(v) else v for v in got[c]]
            assert nulls_as_none == [None if pd.isna(v) else v for v in want[c]], c


def test_timeline_sorted_until_limit(store):
    store.add_events(full_events())
    tl = store.timeline("u1")
    assert tl["event_type"].tolist() == ["login", "view", "payment"]      # tie keeps file order
    assert tl["ts"].is_monotonic_increasing
    assert store.timeline("u1", until="2024-03-01 08:00")["event_type"].tolist() == ["login", "view"]
    assert store.timeline("u1", until=pd.Timestamp("2024-03-01 09:00", tz="Europe/Berlin"))[
        "event_type"].tolist() == ["login", "view"]                      # 08:00 UTC, inclusive
    assert store.timeline("u1", limit=2)["event_type"].tolist() == ["view", "payment"]
    assert store.timeline("u1", until="2024-03-01 23:00", limit=1)["event_type"].tolist() == ["view"]
    empty = store.timeline("nobody")
    assert empty.empty and list(empty.columns) == list(EVENT_COLUMNS)
    assert str(empty["user_id"].dtype) == "str" and empty["ts"].dtype == "datetime64[us]"
    with pytest.raises(ValueError, match="limit=0"):
        store.timeline("u1", limit=0)
    with pytest.raises(ValueError, match="until='soon'"):
        store.timeline("u1", until="soon")


def test_tz_aware_ts_stored_as_naive_utc(store):
    ev = full_events().head(1).assign(ts=pd.Timestamp("2024-03-01 12:00", tz="Asia/Shanghai"))
    store.add_events(ev)
    assert store.timeline("u2")["ts"].iloc[0] == pd.Timestamp("2024-03-01 04:00")


def test_events_filters(store):
    store.add_events(full_events())
    assert store.events(["u2"])["event_type"].tolist() == ["search", "login"]
    sub = store.events(["u1", "u2", "ghost"], until="2024-03-01 09:00")
    assert list(zip(sub["user_id"], sub["event_type"])) == [("u1", "login"), ("u1", "view"), ("u2", "search")]
    assert store.events([]).empty


def test_appends_keep_table_sorted_and_stats_fresh(store):
    store.add_events(full_events())
    store.add_events(pd.DataFrame({"user_id": ["u0", "u1"], "ts": pd.to_datetime(["2024-01-01", "2024-01-01"]),
                                   "event_type": ["signup", "signup"]}))
    phys = physical_order(store)
    assert list(zip(phys["user_id"], phys["ts"])) == sorted(zip(phys["user_id"], phys["ts"]))
    assert store.timeline("u1")["event_type"].tolist()[0] == "signup"
    users = store.users()
    assert users["user_id"].tolist() == ["u0", "u1", "u2"]
    u1 = users.set_index("user_id").loc["u1"]
    assert u1["n_events"] == 4 and u1["first_ts"] == pd.Timestamp("2024-01-01")
    assert u1["last_ts"] == pd.Timestamp("2024-03-02 09:00")
    assert list(u1["event_types"]) == ["login", "payment", "signup", "view"]
    assert store.event_types() == ["login", "payment", "search", "signup", "view"]
    assert store.counts()["events"] == 7 and store.counts()["users"] == 3


def test_sorted_runs_then_compaction(store, monkeypatch):
    """Past the small-table threshold a batch is a sorted run; a run past MAX_RUNS rebuilds."""
    monkeypatch.setattr(store_mod, "COMPACT_BELOW_ROWS", 0)
    monkeypatch.setattr(store_mod, "MAX_RUNS", 2)
    rng = np.random.default_rng(0)

    def batch(n):
        return pd.DataFrame({"user_id": rng.choice(["a", "b", "c", "d"], n),
                             "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
                             "event_type": rng.choice(["x", "y"], n)})
    frames = [batch(50) for _ in range(3)]
    for i, f in enumerate(frames[:2]):
        store.add_events(f)
        with store._con.cursor() as cur:
            runs = cur.execute("SELECT value FROM sleuth.meta WHERE key = 'events_runs'").fetchall()[0][0]
        assert runs == str(i + 1)   # the first batch into an empty table is one sorted run
    phys = physical_order(store)
    assert list(phys["user_id"]) != sorted(phys["user_id"])              # two runs, not merged
    both = pd.concat(frames[:2])
    tl = store.timeline("a")
    assert tl["ts"].tolist() == sorted(both.loc[both["user_id"] == "a", "ts"])
    ev = store.events()                                                  # sorted despite two runs
    assert list(zip(ev["user_id"], ev["ts"])) == sorted(zip(both["user_id"], both["ts"]))
    store.add_events(frames[2])                                          # 3 runs > 2 -> rebuild
    phys = physical_order(store)
    assert list(zip(phys["user_id"], phys["ts"])) == sorted(zip(phys["user_id"], phys["ts"]))
    assert len(phys) == 150 and store.users()["n_events"].sum() == 150
    store.add_events(batch(10))
    assert list(physical_order(store)["user_id"]) != sorted(physical_order(store)["user_id"])
    store.compact()
    phys = physical_order(store)
    assert list(zip(phys["user_id"], phys["ts"])) == sorted(zip(phys["user_id"], phys["ts"]))


def test_add_events_validation(store):
    ev = full_events()
    with pytest.raises(ValueError, match=r"\['extra'\]"):
        store.add_events(ev.assign(extra=1))
    with pytest.raises(ValueError, match="event_type"):
        store.add_events(ev.drop(columns="event_type"))
    with pytest.raises(ValueError, match="'user_id' has 1 null"):
        store.add_events(ev.assign(user_id=["a", None, "b", "c", "d"]))
    with pytest.raises(ValueError, match="'ts' has dtype"):
        store.add_events(ev.assign(ts=["2024-01-01"] * 5))
    with pytest.raises(ValueError, match="negative"):
        store.add_events(ev.assign(amount=[-1.0, 1, 1, 1, 1]))
    assert store.counts()["events"] == 0


def test_persistence_and_read_only(tmp_path):
    path = tmp_path / "p.duckdb"
    with Store(path) as s:
        s.add_events(full_events())
        s.add_labels(pd.DataFrame({"user_id": ["u1"], "label": [1]}))
    with Store(path, read_only=True) as ro:
        assert len(ro.timeline("u1")) == 3 and len(ro.latest_labels()) == 1
        with pytest.raises(PermissionError):
            ro.add_labels(pd.DataFrame({"user_id": ["u2"], "label": [0]}))
    with pytest.raises(FileNotFoundError):
        Store(tmp_path / "missing.duckdb", read_only=True)
    with Store(":memory:") as mem:
        assert mem.add_events(full_events()) == 5 and len(mem.timeline("u2")) == 2


def test_second_process_gets_clear_busy_error(tmp_path):
    path = tmp_path / "busy.duckdb"
    code = ("import sys; sys.path.insert(0, sys.argv[2]);\n"
            "from analyst.store import Store, StoreBusyError\n"
            "try:\n    Store(sys.argv[1])\nexcept StoreBusyError as e:\n    print(e); sys.exit(3)\n")
    with Store(path):
        proc = subprocess.run([sys.executable, "-c", code, str(path), str(ROOT)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "locked by another process" in proc.stdout
    assert issubclass(StoreBusyError, RuntimeError)


def test_threads_share_one_store(store):
    store.add_events(full_events())
    errors, results = [], []

    def work():
        try:
            for _ in range(20):
                results.append(len(store.timeline("u1")))
        except Exception as exc:   # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [3] * 80


# ------------------------------------------------------------------------------------ labels
def test_labels_append_only_latest_wins(store):
    assert store.add_labels(pd.DataFrame({"user_id": ["u1", "u2"], "label": [1, 0],
                                          "split": ["train", None]})) == 2
    store.add_labels(pd.DataFrame({"user_id": ["u1"], "label": [0], "source": ["analyst"],
                                   "analyst": ["ann"], "as_of": [pd.Timestamp("2024-03-01")]}))
    latest = store.latest_labels().set_index("user_id")
    assert latest.loc["u1", "label"] == 0 and latest.loc["u1", "analyst"] == "ann"
    assert latest.loc["u2", "label"] == 0 and latest.loc["u2", "source"] == "import"
    hist = store.label_history("u1")
    assert hist["label"].tolist() == [1, 0] and hist["label_id"].is_monotonic_increasing
    assert hist["decided_at"].notna().all() and hist["split"].iloc[0] == "train"
    assert len(store.label_history()) == 3
    with pytest.raises(ValueError, match="expected 0 or 1"):
        store.add_labels(pd.DataFrame({"user_id": ["u3"], "label": [2]}))
    with pytest.raises(ValueError, match="split values"):
        store.add_labels(pd.DataFrame({"user_id": ["u3"], "label": [1], "split": ["dev"]}))
    assert len(store.label_history()) == 3


# ------------------------------------------------------------------------------ scores, models
def test_scores_latest_per_user_and_version(store):
    store.add_scores(pd.DataFrame({"user_id": ["u1", "u2"], "score": [0.9, 0.1]}), "v1")
    store.add_scores(pd.DataFrame({"user_id": ["u1"], "score": [0.2], "n_events": [3],
                                   "as_of": [pd.Timestamp("2024-03-02")]}), "v2")
    latest = store.latest_scores().set_index("user_id")
    assert latest.loc["u1", "score"] == 0.2 and latest.loc["u1", "model_version"] == "v2"
    assert latest.loc["u1", "n_events"] == 3
    v1 = store.latest_scores("v1")
    assert v1["user_id"].tolist() == ["u1", "u2"] and v1["score"].tolist() == [0.9, 0.1]   # riskiest first
    with pytest.raises(ValueError, match=r"\[1.5\]"):
        store.add_scores(pd.DataFrame({"user_id": ["u1"], "score": [1.5]}), "v3")


def test_models_exactly_one_current(store):
    assert store.current_model() is None
    store.register_model("v1", "/m/v1", metrics={"auprc": np.float32(0.5)}, status="current",
                         data_snapshot={"events": 10})
    store.register_model("v2", "/m/v2", created_by="bob")
    cur = store.current_model()
    assert cur["version"] == "v1" and cur["metrics"] == {"auprc": 0.5} and cur["data_snapshot"] == {"events": 10}
    store.set_model_status("v2", "current")
    models = store.models().set_index("version")
    assert (models["status"] == "current").sum() == 1 and models.loc["v1", "status"] == "retired"
    assert store.current_model()["version"] == "v2"
    with pytest.raises(ValueError, match="'v9' is not registered"):
        store.set_model_status("v9", "current")
    with pytest.raises(ValueError, match="status='best'"):
        store.set_model_status("v1", "best")
    with pytest.raises(ValueError, match="registered already"):
        store.register_model("v1", "/elsewhere")


# ------------------------------------------------------------------------------- cases, audit
def cases_frame(users, why="high_risk"):
    return pd.DataFrame({"user_id": users, "score": np.linspace(0.9, 0.5, len(users)), "why": why,
                         "top_reason": "new device"})


def test_open_cases_skips_users_with_open_case(store):
    assert store.open_cases(cases_frame(["u1", "u2", "u1"]), "v1") == 2
    assert store.open_cases(cases_frame(["u1", "u3"]), "v1") == 1
    cases = store.cases()
    assert cases["user_id"].tolist() == ["u1", "u2", "u3"]
    assert set(cases["status"]) == {"open"} and set(cases["version"]) == {1}
    first = int(cases["case_id"].iloc[0])
    assert store.update_case(first, status="decided", decision="fraud")
    assert store.open_cases(cases_frame(["u1"]), "v2") == 1            # decided -> may reopen
    assert len(store.cases("open")) == 3 and len(store.cases("decided")) == 1
    with pytest.raises(ValueError, match="why values"):
        store.open_cases(cases_frame(["u9"], why="hunch"), "v1")


def test_update_case_optimistic_concurrency(store):
    store.open_cases(cases_frame(["u1"]), "v1")
    cid = int(store.cases()["case_id"].iloc[0])
    case = store.case(cid)
    assert case["status"] == "open" and case["version"] == 1
    assert store.update_case(cid, expected_version=1, status="claimed", assignee="ann")
    assert not store.update_case(cid, expected_version=1, status="claimed", assignee="bob")
    case = store.case(cid)
    assert case["assignee"] == "ann" and case["version"] == 2
    assert not store.update_case(999, status="open")
    assert store.case(999) is None
    with pytest.raises(ValueError, match="unknown"):
        store.update_case(cid, colour="red")
    with pytest.raises(ValueError, match="status='gone'"):
        store.update_case(cid, status="gone")


def test_record_decision_is_atomic(store):
    store.open_cases(cases_frame(["u1", "u2"]), "v1")
    c1, c2 = (int(c) for c in store.cases()["case_id"])
    label_id = store.record_decision(user_id="u1", label=1, as_of="2024-03-02", analyst="ann",
                                     reason="account_takeover", note="new device", decision="fraud",
                                     quality="useful", case_id=c1, expected_version=1, model_version="v1")
    assert label_id >= 1
    assert store.case(c1)["status"] == "decided" and store.case(c1)["version"] == 2
    lab = store.latest_labels().iloc[0]
    assert (lab["user_id"], lab["label"], lab["source"], lab["analyst"]) == ("u1", 1, "analyst", "ann")
    audit = store.audit("u1")
    assert audit["action"].tolist() == ["decide"] and audit["new"].iloc[0] == "fraud"
    # stale version: nothing written
    assert store.record_decision(user_id="u1", label=0, as_of=None, analyst="bob", reason="other",
                                 note="late", decision="legit", case_id=c1, expected_version=1) is None
    assert len(store.label_history()) == 1 and len(store.audit()) == 1
    # escalate: no label, case escalated, returns 0
    assert store.record_decision(user_id="u2", label=None, as_of=None, analyst="ann", reason="other",
                                 note="ask team", decision="escalate", case_id=c2) == 0
    assert store.case(c2)["status"] == "escalated" and len(store.label_history()) == 1


def test_audit_records(store):
    store.add_audit("ann", "claim", user_id="u1", case_id=3, old="open", new="claimed")
    store.add_audit("sys", "train", new={"version": "v2"}, detail={"n": np.int64(5)})
    store.add_audit("ann", "note", user_id="u2")
    assert store.audit()["action"].tolist() == ["claim", "train", "note"]
    only = store.audit("u1")
    assert len(only) == 1 and only["old"].iloc[0] == "open" and only["case_id"].iloc[0] == 3
    assert store.audit()["new"].iloc[1] == '{"version": "v2"}'


# ------------------------------------------------------------------------------ explanations
def test_explanations_by_version_and_time(store):
    assert store.get_explanation("u1", "v1") is None
    at = pd.Timestamp("2024-03-02 09:00")
    store.save_explanation("u1", "v1", at, {"risk": np.float32(0.75), "attr": np.array([0.1, -0.2])})
    store.save_explanation("u1", "v1", pd.Timestamp("2024-03-01"), {"risk": 0.5})
    store.save_explanation("u1", "v2", at, {"risk": 0.1})
    assert store.get_explanation("u1", "v1", at) == {"risk": 0.75, "attr": [0.1, -0.2]}
    assert store.get_explanation("u1", "v1")["risk"] == 0.5            # newest stored for v1
    assert store.get_explanation("u1", "v2", at)["risk"] == 0.1
    assert store.get_explanation("u1", "v1", "2024-01-01") is None
    with pytest.raises(ValueError, match="payload"):
        store.save_explanation("u1", "v1", at, [1, 2])


# ------------------------------------------------------------------------- ingest bookkeeping
def rejects_frame(n=2):
    return pd.DataFrame({"file": ["f.csv"] * n, "row_number": range(2, 2 + n),
                         "reason": ["ts: missing"] * n, "raw": ['{"a": 1}'] * n})


def test_record_ingest_writes_everything_or_nothing(store, monkeypatch):
    ev = full_events()
    iid = store.record_ingest("f.csv", "abc", "events", events=ev, rejects=rejects_frame())
    assert store.has_ingested("abc") and not store.has_ingested("def")
    log = store.ingests()
    assert log[["ingest_id", "rows_accepted", "rows_rejected", "kind"]].values.tolist() == [[iid, 5, 2, "events"]]
    q = store.quarantine()
    assert q["row_number"].tolist() == [2, 3] and set(q["ingest_id"]) == {iid}
    with pytest.raises(ValueError, match="ingested already"):
        store.record_ingest("g.csv", "abc", "events", events=ev)

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(Store, "_insert_quarantine", staticmethod(boom))
    before = store.counts()
    with pytest.raises(RuntimeError, match="disk full"):
        store.record_ingest("h.csv", "xyz", "events", events=ev, rejects=rejects_frame())
    assert store.counts() == before and not store.has_ingested("xyz")


def test_add_events_with_source_and_quarantine(store):
    store.add_events(full_events(), source="synthetic:seed1")
    assert store.ingests()["file"].tolist() == ["synthetic:seed1"]
    assert store.add_quarantine(rejects_frame(3)) == 3
    assert len(store.quarantine(limit=2)) == 2 and len(store.quarantine(file="f.csv")) == 3
    with pytest.raises(ValueError, match="reason"):
        store.add_quarantine(rejects_frame().drop(columns="reason"))
