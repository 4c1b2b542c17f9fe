"""Cases: the queue, claiming, the next case, one user's case view, and recording a decision.

Domain rules live here, not in the pages: a decision needs an analyst, a note, a known reason
code that does not contradict it (analyst/vocab.py), and, with `expected_version`, a case that
nobody changed since the caller read it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from analyst.service.demo import ground_truth
from analyst.service.explanations import Explanations, split_window
from analyst.service.records import CaseView, ConflictError, Decision, ModelHandle
from analyst.store import Store, utcnow
from analyst.vocab import ALERT_QUALITY, DECISIONS, OPEN_STATUSES, check_choice, check_decision

QUEUE_COLUMNS = ["case_id", "user_id", "risk", "top_reason", "tags", "age_days", "status", "assignee",
                 "why", "model_version", "opened_at", "version"]
QUEUE_SORTS: dict[str, tuple[str, bool]] = {"risk": ("risk", False), "age": ("age_days", True),
                                            "opened": ("opened_at", False)}
# short pattern-like tags from the event types a user has (cheap, for the queue)
TAG_RULES: dict[str, frozenset[str]] = {
    "account change": frozenset({"password_change", "address_change", "payment_method_change"}),
    "refunds": frozenset({"refund", "refund_request"}),
    "reviews": frozenset({"review"}),
    "promo": frozenset({"coupon_redeem"}),
}


class Cases:
    """The case use cases over one store; explanations by the model handle they are given."""

    def __init__(self, store: Store, explanations: Explanations) -> None:
        self.store = store
        self.explanations = explanations
        self._synthetic: bool | None = None

    # ------------------------------------------------------------------ the queue
    def queue(self, *, statuses: Sequence[str] = OPEN_STATUSES, min_risk: float = 0.0,
              max_risk: float = 1.0, event_types: Sequence[str] = (), since=None, until=None,
              sort: str = "risk") -> pd.DataFrame:
        """Cases in `statuses`, riskiest first (or by age / opening), with what an analyst needs
        to pick one: risk, top reason, tags, the account's age in days, status, assignee, why."""
        if sort not in QUEUE_SORTS:
            raise ValueError(f"sort={sort!r}: expected one of {sorted(QUEUE_SORTS)}")
        cases = self.store.case_list(statuses=list(statuses), min_score=min_risk, max_score=max_risk,
                                     since=since, until=until)
        if cases.empty:
            return pd.DataFrame(columns=QUEUE_COLUMNS)
        types = [set(t) if isinstance(t, (list, np.ndarray)) else set() for t in cases["event_types"]]
        if event_types:
            wanted = set(event_types)
            keep = np.array([bool(wanted & t) for t in types], dtype=bool)
            cases, types = cases[keep], [t for t, k in zip(types, keep) if k]
        span = pd.to_datetime(cases["last_ts"]) - pd.to_datetime(cases["first_ts"])
        cases = cases.assign(
            risk=cases["score"].astype(float),
            age_days=(span.dt.total_seconds() / 86400).round(1),
            tags=[[tag for tag, needed in TAG_RULES.items() if t & needed] for t in types],
        )
        by, ascending = QUEUE_SORTS[sort]
        return cases.sort_values(by, ascending=ascending)[QUEUE_COLUMNS].reset_index(drop=True)

    def claim(self, case_id: int, analyst: str) -> bool:
        """Claim an open (or escalated) case; False when someone else holds it or won a race."""
        case = self.store.case(case_id)
        if case is None:
            raise LookupError(f"no case {case_id}")
        if case["status"] not in ("open", "escalated") and case.get("assignee") not in (None, analyst):
            return False
        ok = self.store.update_case(case_id, expected_version=case["version"], status="claimed", assignee=analyst)
        if ok:
            self.store.add_audit(analyst, "claim", user_id=case["user_id"], case_id=case_id,
                                 old=case["status"], new="claimed")
        return ok

    def next_case(self, analyst: str | None = None, after_case_id: int | None = None) -> int | None:
        """The riskiest open case nobody else has claimed (skipping `after_case_id`)."""
        queue = self.queue(statuses=("open", "claimed"))
        if queue.empty:
            return None
        mine_or_free = queue["assignee"].isna() | (queue["assignee"] == analyst)
        queue = queue[mine_or_free & (queue["case_id"] != after_case_id)]
        return None if queue.empty else int(queue.iloc[0]["case_id"])

    def user_of_case(self, case_id: int | None) -> str | None:
        """The user a case is about (None for no case or an unknown one)."""
        if case_id is None:
            return None
        case = self.store.case(int(case_id))
        return None if case is None else str(case["user_id"])

    # ------------------------------------------------------------------ one case
    def case(self, model: ModelHandle | None, user_id: str, *, fresh: bool = False) -> CaseView:
        """Everything the case page shows about one user, all of it by `model` (None: no model
        yet, the timeline alone). The timeline is read once."""
        signals = model is not None and model.reads_signals
        # the scoring-time view, as the queue scored it (analyst/service/scoring.py)
        full = self.store.timeline(user_id, signals=signals, known_at=utcnow() if signals else None)
        if full.empty:
            raise LookupError(f"user {user_id!r} has no events in {self.store.path}")
        if model is None:
            timeline, history, exp = full, full.iloc[0:0], None
        else:
            timeline, history = split_window(model, full)
            exp = self.explanations.explanation(model, user_id, fresh=fresh, window=(timeline, history))
            timeline = timeline.assign(
                risk=np.asarray(exp.risk_history, dtype=float),
                surprise=np.asarray(exp.surprise, dtype=float),
                attribution=np.asarray(exp.event_attribution, dtype=float),
            )
        return CaseView(
            user_id=user_id,
            header=header(full, len(timeline)),
            timeline=timeline,
            explanation=exp,
            model_version=model.version if model else None,
            risk=float(exp.risk) if exp is not None else None,
            case=self.store.latest_case(user_id),
            labels=self.store.label_history(user_id),
            audit=self.store.audit(user_id),
            neighbours=(self.explanations.neighbours(model, user_id, timeline=full) if model
                        else pd.DataFrame()),
            ground_truth=ground_truth(timeline) if self.has_ground_truth() else None,
        )

    def has_ground_truth(self) -> bool:
        """True when the events are synthetic and carry planted-pattern marks (demo reveal)."""
        if self._synthetic is None:
            self._synthetic = self.store.has_planted_events()
        return self._synthetic

    # ------------------------------------------------------------------ decisions
    def decide(self, user_id: str, decision: str, *, analyst: str, reason_code: str, quality: str,
               note: str, case_id: int | None = None, expected_version: int | None = None,
               model_version: str | None = None, context: dict | None = None) -> Decision:
        """Record an analyst's decision: a label row (not for escalate), an audit row, the case update.

        All three are written in one transaction by the store. When `expected_version` is given and
        the case changed since (another analyst decided it), raises ConflictError and writes nothing.
        """
        check_decision(decision, reason_code)
        if not (note or "").strip():
            raise ValueError("note: a note is required to record a decision")
        if not (analyst or "").strip():
            raise ValueError("analyst: the analyst's name is required")
        check_choice(quality, ALERT_QUALITY, "quality")
        last = self.store.timeline(user_id, limit=1)
        if last.empty:
            raise LookupError(f"user {user_id!r} has no events")
        result = self.store.record_decision(
            user_id=user_id, label=DECISIONS[decision], as_of=last["ts"].iloc[-1], analyst=analyst,
            reason=reason_code, note=note.strip(), quality=quality, decision=decision, case_id=case_id,
            expected_version=expected_version, model_version=model_version, context=context,
        )
        if result is None:
            raise ConflictError(f"case {case_id} was changed by someone else; reload it (your note was not lost)",
                                note=note.strip(), case=self.store.case(case_id) if case_id is not None else None)
        return Decision(label_id=result, case_id=case_id, user_id=user_id, decision=decision,
                        next_case_id=self.next_case(analyst, after_case_id=case_id))


def header(full: pd.DataFrame, in_window: int) -> dict:
    """The case header's account summary over the user's whole timeline."""
    money = full["amount"].fillna(0.0)
    payments = full["event_type"].eq("payment")
    return {
        "events": int(len(full)),
        "events_in_model_window": int(in_window),
        "first_seen": full["ts"].min(),
        "last_seen": full["ts"].max(),
        "account_age_days": round((full["ts"].max() - full["ts"].min()).total_seconds() / 86400, 1),
        "devices": int(full["device_id"].nunique()),
        "ips": int(full["ip"].nunique()),
        "countries": sorted(full["country"].dropna().unique().tolist()),
        "payments": int(payments.sum()),
        "paid_total": round(float(money[payments].sum()), 2),
        "refunds": int(full["event_type"].isin(["refund", "refund_request"]).sum()),
    }
