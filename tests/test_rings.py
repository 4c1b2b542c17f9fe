"""Ring cases, the scoring-time view of the entity signal, linked rescoring and the entity page's
data (issue 14), on real DuckDB files: a hand-built world for the rules, the tiny trained home
(tests/conftest.py) for rescoring with a real model."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from analyst import charts, report
from analyst.service import Workbench
from analyst.service import rescoring
from analyst.service.cases import Cases
from analyst.service.explanations import Explanations
from analyst.service.links import entity, links
from analyst.service.rings import RING_MAX_USERS, decide_ring, group_rings, ring_of, rings, with_rings
from analyst.store import Store

T0 = pd.Timestamp("2026-03-01 09:00")
HUB_IP = "10.9.9.9"


def ev(user: str, minutes: int, **entities: str) -> dict:
    return {"user_id": user, "ts": T0 + pd.Timedelta(minutes=minutes), "event_type": "login", **entities}


def world() -> pd.DataFrame:
    """r1, r2, r3 share dev-R; r3 and r4 card-R; x1 alone; everyone (and 30 hub users) the hub IP."""
    rows = [ev("r1", 0, device_id="dev-R", ip=HUB_IP), ev("r2", 1, device_id="dev-R", ip=HUB_IP),
            ev("r3", 2, device_id="dev-R", payment_method="card-R"), ev("r4", 3, payment_method="card-R", ip=HUB_IP),
            ev("x1", 4, device_id="dev-X", ip=HUB_IP), ev("r1", 6, address_id="addr-1")]
    rows += [ev(f"h{i:02d}", 10 + i, ip=HUB_IP) for i in range(RING_MAX_USERS + 5)]
    return pd.DataFrame(rows)


SCORES = {"r1": 0.9, "r2": 0.6, "r3": 0.8, "r4": 0.7, "x1": 0.95, "h00": 0.85, "h01": 0.5}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "rings.duckdb") as s:
        s.add_events(world())
        s.refresh_links()
        s.add_scores(pd.DataFrame({"user_id": list(SCORES), "score": list(SCORES.values())}), "v1")
        s.open_cases(pd.DataFrame({"user_id": list(SCORES), "score": list(SCORES.values()), "why": "high_risk"}), "v1")
        yield s


def case_of(store: Store, user: str) -> dict:
    return store.latest_case(user)


def test_rings_group_users_linked_through_small_values_and_skip_hubs(store):
    found = rings(store)
    assert len(found) == 1                   # the hub IP (35 accounts) links nobody; x1 and h* stay alone
    ring = found[0]
    assert set(ring.user_ids) == {"r1", "r2", "r3", "r4"}
    assert ring.ring_id == f"ring-{min(case_of(store, u)['case_id'] for u in ring.user_ids)}"
    assert ring.user_ids[0] == "r1" and ring.risk == pytest.approx(0.9)    # riskiest member first
    assert ring.shared[0] == ("device", "dev-R", 3)
    assert ("payment_method", "card-R", 2) in ring.shared
    assert all(kind != "ip" for kind, _, _ in ring.shared)
    assert ring_of(store, "r4").ring_id == ring.ring_id and ring_of(store, "x1") is None


def test_a_decided_member_leaves_the_ring(store):
    c = case_of(store, "r4")
    store.record_decision(user_id="r4", label=1, as_of=T0, analyst="ann", reason=None, note="n",
                          decision="fraud", case_id=int(c["case_id"]), expected_version=int(c["version"]))
    assert set(rings(store)[0].user_ids) == {"r1", "r2", "r3"}   # card-R now links only r3 to a closed case


def test_a_ring_decision_writes_one_label_and_audit_row_per_member(store):
    cases = Cases(store, Explanations(store))
    ring = rings(store)[0]
    result = decide_ring(cases, ring, "fraud", analyst="ann", reason_code="account_takeover", quality="useful",
                         note="one operator behind four accounts")
    assert {d.user_id for d in result.decided} == set(ring.user_ids) and not result.conflicts
    labels = store.label_history()
    assert sorted(labels["user_id"]) == sorted(ring.user_ids)
    assert (labels["label"] == 1).all() and set(labels["note"]) == {"one operator behind four accounts"}
    audit = store.audit()
    decided = audit[audit["action"] == "decide"]
    assert sorted(decided["user_id"]) == sorted(ring.user_ids)
    details = [json.loads(d) if isinstance(d, str) else d for d in decided["detail"]]
    assert {d["ring_id"] for d in details} == {ring.ring_id} and {d["ring_size"] for d in details} == {4}
    assert set(store.cases().set_index("user_id").loc[list(ring.user_ids), "status"]) == {"decided"}


def test_a_ring_decision_reports_a_conflict_and_overwrites_nothing(store):
    cases = Cases(store, Explanations(store))
    ring = rings(store)[0]                                  # read before bob decides r2
    c = case_of(store, "r2")
    store.record_decision(user_id="r2", label=0, as_of=T0, analyst="bob", reason=None, note="known customer",
                          decision="legit", case_id=int(c["case_id"]), expected_version=int(c["version"]))
    result = decide_ring(cases, ring, "fraud", analyst="ann", reason_code="account_takeover", quality="useful",
                         note="ring")
    assert [(u, cid) for u, cid, _ in result.conflicts] == [("r2", int(c["case_id"]))]
    assert "legit" in result.conflicts[0][2]
    r2 = store.label_history().query("user_id == 'r2'")
    assert list(r2["label"]) == [0] and list(r2["analyst"]) == ["bob"]     # bob's decision stands
    assert {d.user_id for d in result.decided} == {"r1", "r3", "r4"}


def test_a_ring_decision_checks_its_input_before_writing(store):
    cases = Cases(store, Explanations(store))
    ring = rings(store)[0]
    with pytest.raises(ValueError, match="note"):
        decide_ring(cases, ring, "fraud", analyst="ann", reason_code="account_takeover", quality="useful", note=" ")
    with pytest.raises(ValueError, match="decision"):
        decide_ring(cases, ring, "maybe", analyst="ann", reason_code="account_takeover", quality="useful", note="x")
    assert store.label_history().empty


def test_queue_rows_carry_their_ring_and_group_into_one(store):
    cases = Cases(store, Explanations(store))
    queue = with_rings(cases.queue(), rings(store))
    ringed = queue[queue["ring_id"].notna()]
    assert set(ringed["user_id"]) == {"r1", "r2", "r3", "r4"} and set(ringed["ring_size"]) == {4}
    grouped = group_rings(queue)
    assert len(grouped) == len(queue) - 3
    assert grouped[grouped["ring_id"].notna()]["user_id"].tolist() == ["r1"]     # the riskiest member


def test_the_scoring_time_view_reads_labels_known_now_and_keeps_the_causal_values(store):
    store.refresh_signals()
    c = case_of(store, "r2")
    store.record_decision(user_id="r2", label=1, as_of=T0, analyst="ann", reason=None, note="n",
                          decision="fraud", case_id=int(c["case_id"]), expected_version=int(c["version"]))
    store.refresh_signals()
    causal = store.timeline("r1", signals=True)
    assert causal["device_fraud_users"].fillna(0).tolist() == [0.0, 0.0]    # r2's label came later
    now = store.timeline("r1", signals=True, known_at=pd.Timestamp.now(tz="UTC"))
    # r1's last event (the address change) has no device: the view leaves it null; so does causal
    assert now["device_fraud_users"].isna().iloc[-1]
    r3 = store.timeline("r3", signals=True, known_at=pd.Timestamp.now(tz="UTC"))
    assert r3["device_fraud_users"].iloc[-1] == 1.0 and r3["device_fraud_share"].iloc[-1] == 1.0
    r3_causal = store.timeline("r3", signals=True)
    assert r3_causal["device_fraud_users"].fillna(0).iloc[-1] == 0.0
    own = store.timeline("r2", signals=True, known_at=pd.Timestamp.now(tz="UTC"))
    assert own["device_fraud_users"].iloc[-1] == 0.0          # a user's own label never counts
    assert pd.isna(own["device_fraud_share"].iloc[-1])        # r1, r3 have no label yet


def test_entity_detail_lists_everyone_with_use_per_day_and_fraud_share(store):
    c = case_of(store, "r2")
    store.record_decision(user_id="r2", label=1, as_of=T0, analyst="ann", reason=None, note="n",
                          decision="fraud", case_id=int(c["case_id"]), expected_version=int(c["version"]))
    doc = entity(store, "device", "dev-R")
    assert (doc["n_users"], doc["n_events"], doc["fraud_users"], doc["legit_users"]) == (3, 3, 1, 0)
    assert doc["fraud_share"] == 1.0
    assert [u["user_id"] for u in doc["users"]] == ["r1", "r3", "r2"]        # riskiest first
    assert {u["user_id"]: u["label"] for u in doc["users"]}["r2"] == 1
    assert doc["daily"] == [{"day": "2026-03-01", "events": 3, "users": 3}]
    hub = entity(store, "ip", HUB_IP, max_users=5)
    assert hub["n_users"] == RING_MAX_USERS + 5 + 4 and len(hub["users"]) == 5
    with pytest.raises(LookupError, match="no device 'nope'"):
        entity(store, "device", "nope")
    with pytest.raises(LookupError, match="kind='phone'"):
        entity(store, "phone", "x")


def test_network_chart_draws_each_user_once_and_is_deterministic(store):
    doc = links(store, "r3", max_users=10)
    doc["entities"] = [e for e in doc["entities"] if e["kind"] != "ip"]
    fig = charts.links_network(doc)
    users = next(t for t in fig.data if t.name == "linked users")
    assert sorted(users.customdata) == ["r1", "r2", "r4"]              # r1, r2 on dev-R; r4 on card-R
    assert charts.links_network(doc).to_json() == fig.to_json()
    masked = charts.links_network(doc, label=charts.mask_entity).to_json()
    assert "dev-R" not in masked and charts.mask_entity("device", "dev-R") in masked
    crowd = links(store, "r1", max_users=30)
    drawn = next(t for t in charts.links_network(crowd).data if t.name == "linked users")
    assert len(drawn.customdata) <= charts.NETWORK_MAX_PER_ENTITY + 2   # hub capped at 10, + dev-R's r2, r3


def test_demo_masks_an_entity_value_the_same_way_everywhere():
    events = pd.DataFrame({"payment_method": ["card-R"], "device_id": ["dev-R"]})
    masked = charts.mask_identifiers(events)
    assert charts.mask_entity("payment_method", "card-R") == masked["payment_method"].iloc[0] != "card-R"
    assert charts.mask_entity("device", "dev-R") == masked["device_id"].iloc[0]
    assert charts.mask_entity("item", "i1") == "i1"                    # items are not identifiers


def test_the_case_report_lists_linked_accounts_escaped_and_masked(home_copy):
    wb = Workbench(home_copy)
    try:
        user = _user_with_links(wb)
        doc = wb.links(user, max_users=10)
        view = wb.case(user)
        page = report.case_report_html(view, links=doc)
        assert "<h2>Linked accounts</h2>" in page
        shared = next(e for e in doc["entities"] if e["n_users"] > 1 and e["kind"] == "device")
        assert shared["value"] in page and shared["users"][0]["user_id"] in page
        demo = report.case_report_html(view, links=doc, masked=True)
        assert shared["value"] not in demo and charts.mask_entity("device", shared["value"]) in demo
    finally:
        wb.close()


def _user_with_links(wb: Workbench) -> str:
    """An open-case user sharing a device with another account (the generator's rings share them)."""
    for user in wb.queue()["user_id"].astype(str):
        if rescoring.linked_users(wb.store, user, kinds=("device",)):
            return user
    for user in wb.store.users()["user_id"].astype(str):
        if rescoring.linked_users(wb.store, user, kinds=("device",)):
            return user
    raise AssertionError("the tiny home has no user sharing a device")


def test_a_rescore_after_a_decision_changes_only_linked_users(home_copy):
    wb = Workbench(home_copy)
    try:
        user = _user_with_links(wb)
        linked = set(rescoring.linked_users(wb.store, user))
        assert linked and user not in linked
        counts = _score_rows(wb)
        result = rescoring.rescore_linked(wb.store, wb.model(), user, decision="fraud")
        after = _score_rows(wb)
        changed = {u for u in after if after[u] != counts.get(u, 0)}
        assert changed == linked and result["rescored"] == len(linked)
    finally:
        wb.close()


def _score_rows(wb: Workbench) -> dict[str, int]:
    rows = wb.store._read("SELECT user_id, count(*) AS n FROM sleuth.scores GROUP BY user_id")
    return dict(zip(rows["user_id"].astype(str), rows["n"].astype(int)))


def test_a_fraud_decision_rescores_in_the_background_and_marks_risen_cases(home_copy):
    wb = Workbench(home_copy)
    try:
        user = _user_with_links(wb)
        linked = rescoring.linked_users(wb.store, user)
        version = wb.current_version()
        # a linked account with an open case, last scored low: a rescore now reads higher
        target = linked[0]
        wb.store.open_cases(pd.DataFrame({"user_id": [target], "score": [0.0], "why": "high_risk"}), version)
        wb.store.add_scores(pd.DataFrame({"user_id": [target], "score": [0.0]}), version)
        case = wb.store.latest_case(user)
        if case is None or case["status"] not in ("open", "claimed", "escalated"):
            wb.store.open_cases(pd.DataFrame({"user_id": [user], "score": [0.9], "why": "high_risk"}), version)
            case = wb.store.latest_case(user)
        decision = wb.decide(user, "fraud", analyst="ann", reason_code="account_takeover", quality="useful",
                             note="confirmed", case_id=int(case["case_id"]), expected_version=int(case["version"]))
        assert decision.rescore_job is not None
        assert wb.jobs.wait(120)
        job = wb.job(decision.rescore_job)
        assert job.done and job.error is None, job.error
        assert target in {r["user_id"] for r in job.result["rose"]}
        queue = wb.queue()
        row = queue[queue["user_id"] == target].iloc[0]
        assert rescoring.RISE_TAG in row["tags"] and row["risk_now"] > 0.0
        marks = wb.store.audit_actions(rescoring.RISE_ACTION)
        assert set(marks["user_id"]) <= set(linked)              # only linked users are marked
    finally:
        wb.close()
