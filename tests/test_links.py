"""Linked accounts (issue 14): the link tables of analyst/store/links.py on a real DuckDB file,
the service's depth 1 / depth 2 answer, hub truncation, incremental refresh (equal to a full
rebuild, all-or-nothing), risk from the current model, and `sleuth links` through the CLI."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from analyst.cli import main
from analyst.service.links import links
from analyst.store import Store
from analyst.store import links as link_table

T0 = pd.Timestamp("2026-03-01 09:00")
HUB_IP = "10.0.0.1"
N_HUB = 30    # h00..h29 use the hub IP (h00, h29 a device too); u1..u4 use it as well, u5 not
UNSCORED = {"h00", "h01"}


def ev(user: str, minutes: int, **entities: str) -> dict:
    return {"user_id": user, "ts": T0 + pd.Timedelta(minutes=minutes), "event_type": "login", **entities}


def world() -> pd.DataFrame:
    """u1, u2, u3 share device dev-A; u1 and u4 card-X; u2 and u5 dev-B; everyone the hub IP."""
    rows = [
        ev("u1", 0, device_id="dev-A", ip=HUB_IP), ev("u1", 5, device_id="dev-A", payment_method="card-X"),
        ev("u2", 1, device_id="dev-A", ip=HUB_IP), ev("u2", 9, device_id="dev-B"),
        ev("u3", 2, device_id="dev-A", ip=HUB_IP),
        ev("u4", 3, payment_method="card-X", ip=HUB_IP),
        ev("u5", 4, device_id="dev-B", address_id="addr-5"),
    ]
    rows += [ev(f"h{i:02d}", 10 + i, ip=HUB_IP) for i in range(N_HUB)]
    rows += [ev("h29", 50, device_id="dev-H"), ev("h00", 51, device_id="dev-Z")]
    return pd.DataFrame(rows)


SCORES = {"u1": 0.5, "u2": 0.95, "u3": 0.4, "u4": 0.7, "u5": 0.8,
          **{f"h{i:02d}": i / 100 for i in range(N_HUB) if f"h{i:02d}" not in UNSCORED}}


def score_frame(scores: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": list(scores), "score": list(scores.values())})


@pytest.fixture(autouse=True, params=["live", "stored"])
def hub_ranking(request, monkeypatch):
    """Every test twice: hubs ranked at the call (the defaults: no value here has 64 users), and
    with tiny thresholds so dev-A and the hub IP keep a stored ranking (`hub_top`) that serves
    max_users <= 5 (larger ones rank at the call)."""
    if request.param == "stored":
        monkeypatch.setattr(link_table, "HUB_MIN_USERS", 2)
        monkeypatch.setattr(link_table, "HUB_TOP", 6)
    return request.param


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "links.duckdb") as s:
        s.add_events(world())
        assert s.refresh_links() > 0
        s.add_scores(score_frame(SCORES), "v1")          # after the refresh: risk follows the write
        s.open_cases(pd.DataFrame({"user_id": ["u2", "u4"], "score": [0.95, 0.7], "why": "high_risk"}), "v1")
        case_u2 = int(s.cases().set_index("user_id").loc["u2", "case_id"])
        s.record_decision(user_id="u2", label=1, as_of=T0, analyst="ann", reason=None, note=None,
                          decision="fraud", case_id=case_u2)
        yield s


def user(user_id: str, risk: float | None, case_id: int | None = None, decision: str | None = None) -> dict:
    return {"user_id": user_id, "risk": risk, "case_id": case_id, "decision": decision}


def case_ids(store: Store) -> dict[str, int]:
    return {r.user_id: int(r.case_id) for r in store.cases().itertuples()}


def test_depth_one_lists_each_value_with_its_count_and_riskiest_others(store):
    cases = case_ids(store)
    doc = links(store, "u1", max_users=5)
    assert doc == {"user_id": "u1", "entities": [
        {"kind": "device", "value": "dev-A", "n_users": 3,
         "users": [user("u2", 0.95, cases["u2"], "fraud"), user("u3", 0.4)]},
        {"kind": "ip", "value": HUB_IP, "n_users": 4 + N_HUB,
         "users": [user("u2", 0.95, cases["u2"], "fraud"), user("u4", 0.7, cases["u4"]), user("u3", 0.4),
                   user("h29", 0.29), user("h28", 0.28)]},
        {"kind": "payment_method", "value": "card-X", "n_users": 2, "users": [user("u4", 0.7, cases["u4"])]},
    ]}
    assert json.loads(json.dumps(doc)) == doc


def test_a_hub_gives_its_full_count_and_only_the_top_users_by_risk(store):
    hub = links(store, "h05", max_users=3)["entities"]
    assert [(e["kind"], e["value"], e["n_users"]) for e in hub] == [("ip", HUB_IP, 4 + N_HUB)]
    assert [u["user_id"] for u in hub[0]["users"]] == ["u2", "u4", "u1"]
    everyone = links(store, "h05", max_users=100)["entities"][0]["users"]
    assert len(everyone) == 4 + N_HUB - 1 and "h05" not in {u["user_id"] for u in everyone}
    risks = [u["risk"] for u in everyone]
    scored = [r for r in risks if r is not None]
    assert scored == sorted(scored, reverse=True) and risks[len(scored):] == [None] * len(UNSCORED)
    assert [u["user_id"] for u in everyone[-2:]] == ["h00", "h01"]     # unscored last, then by id
    assert everyone[:3] == hub[0]["users"]


def test_depth_two_adds_the_values_of_the_riskiest_linked_users_once(store):
    one = links(store, "u1", max_users=5)
    two = links(store, "u1", depth=2, max_users=5)
    assert two["entities"][:len(one["entities"])] == one["entities"]
    added = two["entities"][len(one["entities"]):]
    # followed: the 5 riskiest listed users (u2, u4, u3, h29, h28); h00's dev-Z is not reached
    assert [(e["kind"], e["value"], e["n_users"], [u["user_id"] for u in e["users"]]) for e in added] == [
        ("device", "dev-B", 2, ["u2", "u5"]),
        ("device", "dev-H", 1, ["h29"]),
    ]
    keys = [(e["kind"], e["value"]) for e in two["entities"]]
    assert len(keys) == len(set(keys))
    assert ("device", "dev-Z") in {(e["kind"], e["value"]) for e in links(store, "h00")["entities"]}


def test_new_events_appear_after_an_incremental_refresh(store):
    assert store.refresh_links() == 0
    store.add_scores(score_frame({"u9": 0.99}), "v1")             # scored before its links exist
    store.add_events(pd.DataFrame([ev("u9", 100, device_id="dev-A"), ev("u1", 101, device_id="dev-new")]))
    before = links(store, "u1")["entities"][0]
    assert (before["value"], before["n_users"]) == ("dev-A", 3)
    assert store.refresh_links() == 2
    after = links(store, "u1")["entities"]
    assert [(e["value"], e["n_users"]) for e in after if e["kind"] == "device"] == [("dev-A", 4), ("dev-new", 1)]
    assert after[0]["users"][0] == user("u9", 0.99)
    assert store.refresh_links() == 0


PAIRS = ("SELECT v.kind, v.value, l.user_id, e.n_events, e.first_ts, e.last_ts, l.risk "
         "FROM sleuth.entity_users e JOIN sleuth.entity_values v USING (vid) JOIN sleuth.link_users l USING (uid) "
         "ORDER BY 1, 2, 3")
NAMED = ("SELECT u.kind, u.value, l.user_id FROM sleuth.user_entities u JOIN sleuth.link_users l USING (uid) "
         "ORDER BY 1, 2, 3")


@pytest.mark.parametrize("compact_below, max_runs", [(link_table.COMPACT_BELOW_ROWS, link_table.MAX_RUNS),
                                                     (0, 100), (0, 2)], ids=["rewrite", "runs", "runs-merged"])
def test_incremental_refresh_equals_a_full_build(tmp_path, monkeypatch, compact_below, max_runs):
    monkeypatch.setattr(link_table, "COMPACT_BELOW_ROWS", compact_below)
    monkeypatch.setattr(link_table, "MAX_RUNS", max_runs)
    events = world()
    extra = pd.DataFrame([ev("u1", 200, device_id="dev-A"), ev("u1", -30, device_id="dev-A"),   # earlier first_ts
                          ev("n1", 201, device_id="dev-B", ip="9.9.9.9"), ev("u5", 202, ip=HUB_IP)])
    with Store(tmp_path / "inc.duckdb") as inc, Store(tmp_path / "full.duckdb") as full:
        inc.add_events(events)
        inc.add_scores(score_frame(SCORES), "v1")
        inc.refresh_links()
        for i in range(len(extra)):                     # one batch at a time: several runs
            inc.add_events(extra.iloc[[i]])
            inc.refresh_links()
        full.add_events(pd.concat([events, extra], ignore_index=True))
        full.add_scores(score_frame(SCORES), "v1")
        full.refresh_links()
        assert inc._read(PAIRS).equals(full._read(PAIRS))
        assert inc._read(NAMED).equals(full._read(NAMED))
        row = inc._read(PAIRS).set_index(["value", "user_id"]).loc[("dev-A", "u1")]
        assert (row["n_events"], row["first_ts"], row["last_ts"]) == (4, T0 - pd.Timedelta(minutes=30),
                                                                       T0 + pd.Timedelta(minutes=200))
        for u in ("u1", "u2", "n1", "h03"):
            assert links(inc, u, depth=2) == links(full, u, depth=2)


def test_a_failed_refresh_changes_nothing(store, monkeypatch):
    store.add_events(pd.DataFrame([ev("u9", 100, device_id="dev-A")]))

    def boom(cur):
        raise RuntimeError("disk full")

    monkeypatch.setattr(link_table, "_sort_pairs", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        store.refresh_links()
    assert links(store, "u1")["entities"][0]["n_users"] == 3
    monkeypatch.undo()
    assert store.refresh_links() == 1
    assert links(store, "u1")["entities"][0]["n_users"] == 4


def test_risk_is_the_current_models_latest_score(store):
    assert links(store, "u3", max_users=1)["entities"][0]["users"][0]["user_id"] == "u2"   # any model: v1
    store.add_scores(score_frame({"u2": 0.1, "u1": 0.6}), "v1")          # a later v1 score wins
    assert links(store, "u3", max_users=1)["entities"][0]["users"] == [user("u1", 0.6)]
    store.add_scores(score_frame({"u2": 0.3}), "v2")
    store.register_model("v2", "/nowhere", status="current")              # only v2's scores count now
    device = links(store, "u3")["entities"][0]
    assert [(u["user_id"], u["risk"]) for u in device["users"]] == [("u2", 0.3), ("u1", None)]
    store.add_scores(score_frame({"u1": 0.9}), "v2")
    assert [u["user_id"] for u in links(store, "u3")["entities"][0]["users"]] == ["u1", "u2"]
    store.register_model("v1", "/nowhere")
    store.set_model_status("v1", "current")                               # a rollback to v1
    assert [(u["user_id"], u["risk"]) for u in links(store, "u3")["entities"][0]["users"]] == [
        ("u1", 0.6), ("u2", 0.1)]


def test_unknown_user_and_bad_arguments_are_one_line_errors(store):
    with pytest.raises(LookupError, match="no user 'nobody'") as info:
        links(store, "nobody")
    assert len(str(info.value).splitlines()) == 1
    with pytest.raises(ValueError, match="depth=3"):
        links(store, "u1", depth=3)
    with pytest.raises(ValueError, match="max_users=0"):
        links(store, "u1", max_users=0)
    with pytest.raises(ValueError, match="at most 1000"):
        links(store, "u1", max_users=1001)


def test_links_before_the_first_refresh_say_what_to_run(tmp_path):
    with Store(tmp_path / "fresh.duckdb") as s:
        s.add_events(world())
        with pytest.raises(ValueError, match="refresh_links"):
            links(s, "u1")


def test_cli_links_json_and_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLEUTH_HOME", str(tmp_path))
    monkeypatch.delenv("SLEUTH_DB", raising=False)
    with Store(tmp_path / "sleuth.duckdb") as s:          # $SLEUTH_HOME/sleuth.duckdb, links not built yet
        s.add_events(world())
        s.add_scores(score_frame(SCORES), "v1")
    assert main(["links", "u1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    with Store(tmp_path / "sleuth.duckdb") as s:
        assert doc == links(s, "u1")
    assert [(e["kind"], e["value"], e["n_users"]) for e in doc["entities"]] == [
        ("device", "dev-A", 3), ("ip", HUB_IP, 4 + N_HUB), ("payment_method", "card-X", 2)]

    assert main(["links", "u1", "--depth", "2", "--max-users", "3"]) == 0
    out = capsys.readouterr().out
    assert "device dev-B  (2 users)" in out and f"ip {HUB_IP}  (34 users, top 3 shown)" in out
    assert "u2" in out and "risk  0.950" in out

    assert main(["links", "nobody"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "sleuth: error: no user 'nobody' in the store"


def test_a_hubs_stored_ranking_equals_ranking_it_at_the_call_after_every_write(tmp_path, monkeypatch):
    monkeypatch.setattr(link_table, "HUB_MIN_USERS", 2)
    monkeypatch.setattr(link_table, "HUB_TOP", 6)
    everyone = ["u1", "u2", "u3", "u4", "u5", *(f"h{i:02d}" for i in range(N_HUB)), "n1", "n2"]

    def check(s: Store) -> None:
        hubs = s._read("SELECT v.value, h.n_users FROM sleuth.hub_top h JOIN sleuth.entity_values v USING (vid)")
        assert set(hubs["value"]) >= {"dev-A", HUB_IP}               # the stored path is the one taken
        stored = {u: links(s, u, depth=2, max_users=5) for u in everyone if u in set(s.users()["user_id"])}
        monkeypatch.setattr(link_table, "HUB_TOP", 0)                 # reads rank every value at the call
        try:
            assert {u: links(s, u, depth=2, max_users=5) for u in stored} == stored
        finally:
            monkeypatch.setattr(link_table, "HUB_TOP", 6)

    with Store(tmp_path / "hubs.duckdb") as s:
        s.add_events(world())
        s.refresh_links()
        check(s)                                                      # built, nobody scored
        s.add_scores(score_frame(SCORES), "v1")
        check(s)                                                      # everyone's risk at once
        s.add_scores(score_frame({"h00": 0.99, "u2": 0.01}), "v1")
        check(s)                                                      # a few users' risk
        s.add_events(pd.DataFrame([ev("n1", 300, ip=HUB_IP, device_id="dev-A"), ev("n2", 301, ip=HUB_IP)]))
        s.add_scores(score_frame({"n2": 0.97}), "v1")                 # scored before its links exist
        s.refresh_links()
        check(s)                                                      # new users on the hubs
        s.add_scores(score_frame({"u3": 0.5, "h10": 0.98}), "v2")
        s.register_model("v2", "/nowhere", status="current")
        check(s)                                                      # another model is current
        monkeypatch.setattr(link_table, "HUB_FULL_BELOW", 1)
        s.add_scores(score_frame({"u1": 0.96, "h11": 0.2}), "v2")
        check(s)                                                      # the re-rank-every-hub branch
