"""Linked accounts in the app (issue 14), driven in-process by AppTest on a private copy of the
tiny store: the entity page, the network chart, a ring decided from the case page, and the
queue's ring column."""
from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("streamlit.testing.v1")
from tests.test_app import app, figures, home, no_errors, open_case, release_workbenches, shown, workbench  # noqa: E402,F401

from analyst import charts  # noqa: E402
from analyst.service import rescoring  # noqa: E402

ENTITY_PAGE = "analyst/views/entity.py"


def shared_device() -> tuple[str, str, list[str]]:
    """(user, device, others): a user of the tiny store sharing a small device with others."""
    wb = workbench()
    for user in wb.store.users()["user_id"].astype(str):
        for e in wb.links(user, max_users=10)["entities"]:
            if e["kind"] == "device" and 1 < e["n_users"] <= 10:
                return user, e["value"], [u["user_id"] for u in e["users"]]
    raise AssertionError("the tiny store has no shared device")


def entity_page(kind: str, value: str, **session):
    at = app(**session).run()
    at.switch_page(ENTITY_PAGE)
    at.query_params["kind"] = kind
    at.query_params["value"] = value
    return at.run()


def test_entity_page_lists_everyone_on_a_value(home):
    user, device, others = shared_device()
    at = entity_page("device", device)
    no_errors(at)
    doc = workbench().entity("device", device)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accounts"] == str(doc["n_users"]) and metrics["Events"] == f"{doc['n_events']:,}"
    table = at.dataframe[-1].value
    assert set(table["user_id"]) == {user, *others}
    assert all(link == f"case?user={u}" for link, u in zip(table["link"], table["user_id"]))
    assert any(f.get("layout", {}).get("meta", {}).get("chart") == "entity_daily" for f in figures(at))
    assert any(t.value == f"device: {device}" for t in at.text)


def test_entity_page_in_demo_mode_shows_the_mask_and_unknown_values_one_line(home):
    _, device, _ = shared_device()
    at = entity_page("device", device, demo_mode=True)
    no_errors(at)
    texts = [t.value for t in at.text]
    assert f"device: {charts.mask_entity('device', device)}" in texts and all(device not in s for s in texts)
    at = entity_page("device", "![x](http://example.invalid/x.png)")
    assert len(at.error) == 1 and "no device" in shown(at.error[0].value)
    at = entity_page("phone", "1")
    assert "kind='phone'" in shown(at.error[0].value)


def test_linked_tab_draws_the_network_and_links_each_value_to_its_entity_page(home):
    user, device, others = shared_device()
    at = open_case(app().run(), user)
    at.session_state["case_tab"] = "Linked accounts"
    at.run()
    no_errors(at)
    network = [f for f in figures(at) if f.get("layout", {}).get("meta", {}).get("chart") == "links_network"]
    assert len(network) == 1
    drawn = next(t for t in network[0]["data"] if t.get("name") == "linked users")
    assert set(others) <= set(drawn["customdata"])
    table = at.dataframe[-1].value
    row = table[(table["shared"] == "device") & (table["value"] == device)].iloc[0]
    assert row["entity"] == f"entity?kind=device&value={device}"


def test_a_ring_is_decided_from_the_case_page_one_label_per_member(home):
    wb = workbench()
    user, device, others = shared_device()
    version = wb.current_version()
    members = [user, *others]
    wb.store.open_cases(pd.DataFrame({"user_id": members, "score": 0.9, "why": "high_risk"}), version)
    ring = wb.ring_of(user)
    assert ring is not None and set(members) <= set(ring.user_ids)
    queue = wb.queue()
    assert set(queue[queue["ring_id"] == ring.ring_id]["user_id"]) == set(ring.user_ids)
    at = app(analyst_name="ana").run()
    at = open_case(at, user)
    at.session_state["case_tab"] = "Linked accounts"
    at.run()
    no_errors(at)
    at.selectbox(key=f"ring_reason_{ring.ring_id}").set_value("account_takeover")
    at.text_area(key=f"ring_note_{ring.ring_id}").input("same device, same operator")
    next(b for b in at.get("form_submit_button") if b.label == "Confirm fraud for the ring").click().run()
    no_errors(at)
    assert any(f"Ring {ring.ring_id}: {len(ring.members)} case(s) decided" in s.value for s in at.success)
    labels = wb.label_history().query("source == 'analyst'")
    assert sorted(labels["user_id"]) == sorted(ring.user_ids)
    assert set(labels["note"]) == {"same device, same operator"} and set(labels["analyst"]) == {"ana"}
    assert wb.jobs.wait(120)        # the ring's linked accounts were rescored in the background
    jobs = [j for j in wb.jobs._jobs.values() if j.kind == "rescore"]
    assert jobs and all(j.error is None for j in jobs)


def test_queue_shows_the_ring_column_and_groups_rings(home):
    wb = workbench()
    user, _, others = shared_device()
    wb.store.open_cases(pd.DataFrame({"user_id": [user, *others], "score": 0.9, "why": "high_risk"}),
                        wb.current_version())
    ring = wb.ring_of(user)
    at = app().run()
    no_errors(at)
    table = at.dataframe[0].value
    assert (table[table["ring_id"] == ring.ring_id]["ring"] == f"{len(ring.members)} accounts").all()
    at.toggle(key="q_rings").set_value(True).run()
    grouped = at.dataframe[0].value
    assert (grouped["ring_id"] == ring.ring_id).sum() == 1
    assert len(grouped) == len(table) - len(ring.members) + 1


def test_the_queue_tags_a_case_whose_risk_rose_after_a_linked_decision(home):
    wb = workbench()
    case = wb.queue().iloc[-1]
    wb.store.add_audit("system", rescoring.RISE_ACTION, user_id=str(case["user_id"]), case_id=int(case["case_id"]),
                       old=f"{case['risk']:.4f}", new="0.9900", detail={"after": "someone", "decision": "fraud"})
    at = app().run()
    no_errors(at)
    table = at.dataframe[0].value
    row = table[table["case_id"] == case["case_id"]].iloc[0]
    assert rescoring.RISE_TAG in list(row["tags"]) and row["risk_pct"] == 99
