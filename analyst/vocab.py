"""The workbench's vocabularies, in one place: decisions, reason codes, why a case was sampled,
case and model statuses, and the words people read for each.

Pure Python at the bottom of `analyst/` (the store, sampling, the service and the pages all import
it; it imports nothing of theirs). A value stored in the database is the key; the dicts named
`*_LABELS` hold what a page shows for it.
"""
from __future__ import annotations

# ---------------------------------------------------------------------------------- decisions
# what an analyst decides on a case -> the label row it writes (escalate writes none)
DECISIONS: dict[str, int | None] = {"fraud": 1, "legit": 0, "escalate": None}
# a second review or an adjudication is a judgement: fraud or legit only
REVIEW_DECISIONS: dict[str, int] = {"fraud": 1, "legit": 0}
DECISION_LABELS: dict[str, str] = {"fraud": "Fraud confirmed", "legit": "Rejected (legit)",
                                   "escalate": "Escalated"}
# a label value as a word (label tables, reports, exports)
LABEL_WORDS: dict[int, str] = {1: "fraud", 0: "legit"}

REASON_CODES: tuple[str, ...] = (
    "account_takeover", "payment_fraud", "promo_abuse", "refund_abuse", "fake_reviews",
    "bot_activity", "order_brushing", "legitimate_behaviour", "insufficient_evidence", "other",
)
FRAUD_REASONS: frozenset[str] = frozenset({
    "account_takeover", "payment_fraud", "promo_abuse", "refund_abuse", "fake_reviews",
    "bot_activity", "order_brushing",
})
# reason codes that contradict a decision: refused before anything is written
CONTRADICTS: dict[str, frozenset[str]] = {
    "fraud": frozenset({"legitimate_behaviour"}),
    "legit": FRAUD_REASONS,
}
ALERT_QUALITY: tuple[str, ...] = ("useful", "partly useful", "not useful")

# ---------------------------------------------------------------------------------- cases
CASE_STATUSES: tuple[str, ...] = ("open", "claimed", "decided", "escalated")
OPEN_STATUSES: tuple[str, ...] = ("open", "claimed", "escalated")
# why a case is in the queue (analyst/sampling.py draws them)
CASE_WHY: tuple[str, ...] = ("high_risk", "uncertain", "control")
WHY_LABELS: dict[str, str] = {"high_risk": "High risk", "uncertain": "Uncertain",
                              "control": "Random control"}

# ---------------------------------------------------------------------------------- models, labels
MODEL_STATUSES: tuple[str, ...] = ("candidate", "current", "retired", "rejected")
# label sources that count as reviewed cases (not synthetic truth)
REVIEWED_SOURCES: tuple[str, ...] = ("analyst", "import")
INGEST_KINDS: tuple[str, ...] = ("events", "labels")


def check_choice(value: object, choices: tuple[str, ...] | dict, name: str) -> None:
    """ValueError naming `name`, the value and the choices when `value` is not one of them."""
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {list(choices)}")


def check_decision(decision: str, reason_code: str) -> None:
    """A decision and its reason code, checked together (a contradiction is refused)."""
    check_choice(decision, DECISIONS, "decision")
    check_choice(reason_code, REASON_CODES, "reason_code")
    if reason_code in CONTRADICTS.get(decision, ()):
        raise ValueError(f"reason_code={reason_code!r} contradicts decision={decision!r}: "
                         "pick a matching reason")
