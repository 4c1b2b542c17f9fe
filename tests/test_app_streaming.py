"""The app while events stream in (issue 16), driven by AppTest on a tiny real store: the stream
runs on a thread of the app's process (SLEUTH_STREAM); the sidebar says it is live, the queue
lists the open cases whose risk changed, an open case says "risk changed" with the new risk and
loads the new events on request, and nothing is announced before anything changed."""
from __future__ import annotations

import json
import time

import pytest

from analyst import resources
from tests.test_app import app, metric, no_errors, open_case, shown
from tests.test_streaming import new_events


@pytest.fixture
def streaming_home(home_copy, monkeypatch, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    monkeypatch.setenv("SLEUTH_HOME", str(home_copy.home))
    monkeypatch.setenv("SLEUTH_STREAM", str(drop))
    for key in ("SLEUTH_DB", "SLEUTH_MODELS", "SLEUTH_ANALYST"):
        monkeypatch.delenv(key, raising=False)
    yield drop
    resources._workbench.clear()       # stops the stream, closes the store


def wait_for_batches(n: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = resources.workbench().stream_status()
        if status and status["batches"] >= n and status["running"]:
            return status
        time.sleep(0.1)
    raise AssertionError(f"the stream did not store {n} batch(es) in {timeout:.0f} s: {status}")


def warnings_text(at) -> list[str]:
    return [shown(w.value) for w in at.warning]


def test_risk_changes_show_on_the_queue_and_the_open_case_without_a_new_visit(streaming_home):
    at = app().run()
    no_errors(at)
    wb = resources.workbench()
    assert wb.stream_status()["running"]
    assert any("live" in shown(m.value) and "0 events streamed" in shown(m.value) for m in at.sidebar.markdown)
    users = wb.queue()["user_id"].astype(str).tolist()[:4]
    case_at = open_case(app(), users[0])
    no_errors(case_at)
    events_before = int(metric(case_at, "Events").replace(",", ""))
    assert not [w for w in warnings_text(case_at) if "Risk changed" in w]      # nothing changed yet

    (streaming_home / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in new_events(users, 25)))
    wait_for_batches(1)
    changes = wb.risk_changes()
    assert len(changes), "25 declined payments moved no open case's risk by a point"

    at.run()                      # what the fragment's timer does in the browser
    no_errors(at)
    (banner,) = [w for w in warnings_text(at) if "Risk changed with new events" in w]
    for row in changes.itertuples():
        assert f"user {row.user_id}" in banner and f"{row.old:.0%} -> {row.new:.0%}" in banner
    assert any("100 events streamed" in shown(m.value) for m in at.sidebar.markdown)

    case_at.run()
    no_errors(case_at)
    assert users[0] in set(changes["user_id"]), "the case's own risk did not move: pick events that move it"
    (note,) = [w for w in warnings_text(case_at) if "Risk changed with new events" in w]
    row = changes[changes["user_id"] == users[0]].iloc[0]
    assert f"{row.old:.0%} -> {row.new:.0%}" in note
    assert metric(case_at, "Risk") == f"{row.old:.0%}"          # the page still shows what was loaded
    case_at.button(key=f"live_reload_{users[0]}").click().run()
    no_errors(case_at)
    assert not [w for w in warnings_text(case_at) if "Risk changed" in w]
    assert metric(case_at, "Risk") == f"{row.new:.0%}"
    assert int(metric(case_at, "Events").replace(",", "")) == events_before + 25


def test_a_stream_that_cannot_start_leaves_the_app_working_and_says_why(home_copy, monkeypatch, tmp_path):
    monkeypatch.setenv("SLEUTH_HOME", str(home_copy.home))
    monkeypatch.setenv("SLEUTH_STREAM", str(tmp_path / "no-such-folder"))
    for key in ("SLEUTH_DB", "SLEUTH_MODELS", "SLEUTH_ANALYST"):
        monkeypatch.delenv(key, raising=False)
    try:
        at = app().run()
        no_errors(at)
        assert len(at.dataframe) or at.metric                  # the queue is there
        sidebar = [shown(m.value) for m in at.sidebar.markdown]
        assert any("not streaming" in m for m in sidebar)
        assert any("no-such-folder" in shown(c.value) and "no such folder" in shown(c.value)
                   for c in at.sidebar.caption)
    finally:
        resources._workbench.clear()
