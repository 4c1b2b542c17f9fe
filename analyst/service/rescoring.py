"""Rescore linked accounts after a decision (issue 14): a confirmed fraud changes the entity fraud
signal of the devices, cards, addresses and IPs its user touched, so the accounts on them are
scored again now, and open cases whose risk rose are marked.

Who is rescored: the users sharing a small value (`rings.RING_KINDS`, at most
`rings.RING_MAX_USERS` accounts on it) with the decided user, never the decided user, never
anyone else. They are scored by one model version with the scoring-time view of the signals
(analyst/store/signals.py `attach(known_at=...)`: each user's last event reads every label known
now), the scores stored as any scoring run's (the links' risk follows), and for each whose
risk rose by at least `RISE_MIN` while its latest case is open, an audit row
`risk_rose` (old and new risk, the decided user and decision) that the queue shows as
"risk rose after a linked decision".
"""
from __future__ import annotations

import json
from typing import Sequence

import pandas as pd

from analyst.service.records import ModelHandle, ProgressFn
from analyst.service.rings import RING_KINDS, RING_MAX_USERS
from analyst.store import Store, utcnow
from analyst.vocab import OPEN_STATUSES

RISE_MIN = 0.01          # a rise smaller than one point is noise, not news for the analyst
RISE_ACTION = "risk_rose"
RISE_TAG = "risk rose after a linked decision"


def linked_users(store: Store, user_id: str, *, kinds: Sequence[str] = RING_KINDS,
                 max_users: int = RING_MAX_USERS) -> list[str]:
    """Users other than `user_id` on a value of `kinds` that `user_id` used and at most
    `max_users` accounts used in all, sorted."""
    entities = store.links(user_id, max_users=max_users) or []
    out = {u.user_id for e in entities if e.kind in kinds and e.n_users <= max_users for u in e.users}
    out.discard(str(user_id))
    return sorted(out)


def rescore_linked(store: Store, model: ModelHandle, user_ids: str | Sequence[str], *,
                   decision: str | None = None, actor: str = "system",
                   on_progress: ProgressFn | None = None) -> dict:
    """Score again, with `model`, the accounts linked to `user_ids` (one user or a ring's; see
    the module docstring) and mark the open cases whose risk rose. Returns {"user_ids",
    "version", "linked", "rescored", "rose": [{"user_id", "case_id", "old", "new"}]}."""
    decided = [str(user_ids)] if isinstance(user_ids, str) else [str(u) for u in user_ids]
    report = on_progress or (lambda fraction, message: None)
    report(0.05, "updating signals and links")
    if model.reads_signals:
        store.refresh_signals()      # the decision's label changes the entity fraud counts
    store.refresh_links()
    users = sorted({u for d in decided for u in linked_users(store, d)} - set(decided))
    result = {"user_ids": decided, "version": model.version, "linked": len(users), "rescored": 0,
              "rose": []}
    if not users:
        report(1.0, "no linked account to rescore")
        return result
    before = store.latest_scores(model.version)
    before = dict(zip(before["user_id"].astype(str), before["score"].astype(float)))
    report(0.2, f"rescoring {len(users)} linked account{'s' if len(users) != 1 else ''}")
    events = store.events(user_ids=users, signals=model.reads_signals, known_at=utcnow())
    scores = model.scorer.score_users(events, progress=False)
    store.add_scores(scores, model.version)
    result["rescored"] = int(len(scores))
    report(0.8, "marking cases whose risk rose")
    for uid, new in zip(scores["user_id"].astype(str), scores["score"].astype(float)):
        old = before.get(uid)
        case = store.latest_case(uid)
        if old is None or new < old + RISE_MIN or case is None or case["status"] not in OPEN_STATUSES:
            continue
        store.add_audit(actor, RISE_ACTION, user_id=uid, case_id=int(case["case_id"]),
                        old=f"{old:.4f}", new=f"{new:.4f}",
                        detail={"after": ", ".join(decided), "decision": decision, "model_version": model.version})
        result["rose"].append({"user_id": uid, "case_id": int(case["case_id"]), "old": old, "new": new})
    report(1.0, f"rescored {result['rescored']} linked accounts, {len(result['rose'])} case(s) rose")
    return result


# the audit actions that move an open case's risk, and the queue tag each shows: a linked
# decision (this module) or new streamed events (analyst/service/streaming.py)
STREAM_ACTION = "risk_changed"
STREAM_TAG = "risk changed with new events"
MARK_TAGS = {RISE_ACTION: RISE_TAG, STREAM_ACTION: STREAM_TAG}


def risk_rises(store: Store) -> pd.DataFrame:
    """The latest risk mark per case (`risk_rose` after a linked decision, `risk_changed` after
    streamed events): case_id, old, new (risks), after (the decided user, if any), action."""
    found = [frame for frame in (store.audit_actions(a) for a in MARK_TAGS) if not frame.empty]
    audit = pd.concat(found, ignore_index=True) if found else pd.DataFrame()
    if audit.empty:
        return pd.DataFrame(columns=["case_id", "old", "new", "after", "action"])
    audit = audit.sort_values("audit_id").drop_duplicates("case_id", keep="last")
    after = [_detail_after(d) for d in audit["detail"]]
    return pd.DataFrame({"case_id": audit["case_id"].astype(int).to_numpy(),
                         "old": audit["old"].astype(float).to_numpy(),
                         "new": audit["new"].astype(float).to_numpy(), "after": after,
                         "action": audit["action"].astype(str).to_numpy()})


def _detail_after(detail: object) -> str | None:
    if isinstance(detail, str):
        detail = json.loads(detail)
    return (detail or {}).get("after") if isinstance(detail, dict) else None


def with_rises(queue: pd.DataFrame, rises: pd.DataFrame) -> pd.DataFrame:
    """`queue` with `risk_now` (the risk after the latest mark, else the case's risk) and the
    mark's tag (RISE_TAG or STREAM_TAG) on cases marked (see `risk_rises`)."""
    marks = rises.set_index("case_id") if not rises.empty else None
    now, tags = [], []
    for case_id, risk, tag_list in zip(queue["case_id"], queue["risk"], queue["tags"]):
        tag_list = list(tag_list) if isinstance(tag_list, (list, tuple)) else list(tag_list or [])
        if marks is not None and int(case_id) in marks.index:
            now.append(float(marks.at[int(case_id), "new"]))
            tags.append([MARK_TAGS.get(str(marks.at[int(case_id), "action"]), RISE_TAG)] + tag_list)
        else:
            now.append(float(risk))
            tags.append(tag_list)
    return queue.assign(risk_now=now, tags=tags)
