"""Concurrency and crash safety of decisions, against the real Workbench / Store (a private copy of
the tiny DuckDB home of tests/conftest.py): threads start together at a barrier, no sleeps."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import replace

import pytest

from analyst.service import ConflictError, Decision, Workbench
from analyst.store import Store
from tests.test_review import decide, open_more_cases


@pytest.fixture
def wb(home_copy):
    bench = Workbench(replace(home_copy, second_review_share=1.0))
    yield bench
    bench.close()


def run_together(jobs: list) -> list:
    """Run callables in threads released at once by a barrier; their results (or exceptions)."""
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = jobs[i]()
        except Exception as exc:  # kept for the assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a decision hung"
    return results


def snapshot(wb: Workbench, case_id: int) -> tuple:
    case = wb.store.case(case_id)
    return (len(wb.store.label_history()), len(wb.audit()), case["status"], case["version"], case["decision"])


@pytest.mark.parametrize("position", [0, 1, 2])
def test_two_analysts_decide_one_case_at_once_one_wins_the_other_keeps_their_note(wb, position):
    row = wb.queue().iloc[position]
    notes = {"ana": "ana: card testing burst", "bob": "bob: looks like a normal shopper"}
    results = run_together([lambda: decide(wb, row, "ana", "fraud", notes["ana"]),
                            lambda: decide(wb, row, "bob", "legit", notes["bob"])])
    winners = [r for r in results if isinstance(r, Decision)]
    losers = [r for r in results if isinstance(r, ConflictError)]
    assert len(winners) == 1 and len(losers) == 1, results
    won = winners[0].decision
    winner, loser = ("ana", "bob") if won == "fraud" else ("bob", "ana")
    assert losers[0].note == notes[loser], "the loser gets their note back"
    # the case as read right after the conflict: the winner's commit may still be in flight then
    assert losers[0].case["case_id"] == int(row["case_id"]) and losers[0].case["decision"] in (None, won)
    assert wb.store.case(int(row["case_id"]))["decision"] == won
    labels = wb.store.label_history(row["user_id"]).query("source == 'analyst'")
    assert labels[["analyst", "note"]].values.tolist() == [[winner, notes[winner]]]
    decided = wb.audit(row["user_id"]).query("action == 'decide'")
    assert decided["actor"].tolist() == [winner]
    assert wb.store.case(int(row["case_id"]))["version"] == int(row["version"]) + 1


def test_many_analysts_deciding_different_cases_at_once_lose_nothing(wb):
    open_more_cases(wb, 10)
    queue = wb.queue()
    assert len(queue) == 16
    labels_before, audit_before = len(wb.store.label_history()), len(wb.audit())
    jobs = [lambda row=row, i=i: decide(wb, row, f"analyst{i}", "fraud" if i % 2 else "legit", f"note {i}")
            for i, (_, row) in enumerate(queue.iterrows())]
    results = run_together(jobs)
    assert all(isinstance(r, Decision) for r in results), [r for r in results if not isinstance(r, Decision)]
    history = wb.store.label_history()
    assert len(history) == labels_before + 16
    new = history.iloc[labels_before:].set_index("user_id")
    for i, (_, row) in enumerate(queue.iterrows()):
        got = new.loc[row["user_id"]]
        assert (got["analyst"], got["note"], int(got["label"])) == (f"analyst{i}", f"note {i}", i % 2)
        case = wb.store.case(int(row["case_id"]))
        assert case["status"] == "decided" and case["version"] == int(row["version"]) + 1
    audit = wb.audit()
    assert len(audit) == audit_before + 16
    assert sorted(audit.iloc[audit_before:]["case_id"]) == sorted(queue["case_id"])
    assert len(set(history["label_id"])) == len(history), "label ids stay unique"


def test_two_second_reviewers_at_once_one_wins(wb):
    row = wb.queue().iloc[0]
    decide(wb, row, "ana", "fraud")
    case_id = int(row["case_id"])
    results = run_together([
        lambda: wb.second_review(case_id, "fraud", reviewer="bob", reason_code="other", note="bob agrees"),
        lambda: wb.second_review(case_id, "legit", reviewer="carl", reason_code="other", note="carl disagrees"),
    ])
    errors = [r for r in results if isinstance(r, ConflictError)]
    assert len(errors) == 1 and len(wb.store.reviews()) == 1, results
    assert errors[0].note in ("bob agrees", "carl disagrees")
    assert (wb.audit(row["user_id"])["action"] == "second_review").sum() == 1


class _CrashingCursor:
    """A cursor that fails on one statement, as a full disk or a killed write would."""

    def __init__(self, cur, needle: str) -> None:
        self._cur, self._needle = cur, needle

    def execute(self, sql: str, *args, **kwargs):
        if self._needle in sql:
            raise OSError("simulated crash: No space left on device")
        return self._cur.execute(sql, *args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._cur, name)


def crash_on(monkeypatch, needle: str) -> None:
    """Make Store's transactions fail at the first statement containing `needle`."""
    original = Store._tx

    @contextmanager
    def crashing_tx(self):
        with original(self) as cur:
            yield _CrashingCursor(cur, needle)

    monkeypatch.setattr(Store, "_tx", crashing_tx)


def test_a_crash_while_writing_a_decision_leaves_nothing_half_written(wb, monkeypatch):
    row = wb.queue().iloc[0]
    case_id = int(row["case_id"])
    before = snapshot(wb, case_id)
    crash_on(monkeypatch, "INSERT INTO sleuth.audit")  # after the case update and the label insert
    with pytest.raises(OSError, match="simulated crash"):
        decide(wb, row, "ana", "fraud", "ana: written before the crash?")
    assert snapshot(wb, case_id) == before, "neither the label nor the case update landed"
    assert wb.store.label_history(row["user_id"]).query("source == 'analyst'").empty
    monkeypatch.undo()
    decision = decide(wb, row, "ana", "fraud", "ana: after the crash")  # the store is still usable
    assert decision.label_id and wb.store.case(case_id)["status"] == "decided"


def test_a_crash_while_adjudicating_leaves_nothing_half_written(wb, monkeypatch):
    row = wb.queue().iloc[0]
    decide(wb, row, "ana", "legit")
    review = wb.second_review(int(row["case_id"]), "fraud", reviewer="bob", reason_code="other", note="bob: fraud")
    labels_before, audit_before = len(wb.store.label_history()), len(wb.audit())
    crash_on(monkeypatch, "INSERT INTO sleuth.audit")
    with pytest.raises(OSError, match="simulated crash"):
        wb.adjudicate(review.review_id, "fraud", adjudicator="lea", reason_code="other", note="lea: fraud")
    assert (len(wb.store.label_history()), len(wb.audit())) == (labels_before, audit_before)
    assert wb.store.reviews()["adjudicated_label_id"].isna().all()
    assert len(wb.disagreements()) == 1, "still waiting for adjudication"
