"""Linked accounts (issue 14): the users who share a device, IP, address, payment method or item
with a user, the riskiest first, with their latest case; one or two hops out.
"""
from __future__ import annotations

from analyst.store import Store
from analyst.store.links import EntityLinks, LinkConfig

DEPTHS = (1, 2)
DEFAULT_MAX_USERS = 20


def links(store: Store, user_id: str, depth: int = 1, max_users: int = DEFAULT_MAX_USERS) -> dict:
    """The entity values `user_id` used and who else used them, as
    `{"user_id", "entities": [{"kind", "value", "n_users", "users": [{"user_id", "risk",
    "case_id", "decision"}]}]}`.

    `n_users` counts every distinct user on the value (`user_id` included); `users` lists at
    most `max_users` (1-1000) of the others, by latest risk (the current model's score;
    highest first, unscored last), each with their latest case (`case_id` None when they have
    none, `decision` None until it is decided). A hub (a shared IP, a popular item) gives its
    full count and only its top users. Values come by kind (device, ip, address,
    payment_method, item), then most users first, then by value.

    depth 2 then adds, in the same order, the values of linked users that `user_id` did not
    use itself, each value once. It is bounded: only the `max_users` riskiest distinct users
    listed at depth 1 are followed (never everyone on a hub), so at most `max_users` users'
    values are added, each again listing at most `max_users` users; nothing is followed further.

    Reads the link tables as of the last `Store.refresh_links` (ingest, train and score refresh
    them). Unknown user: LookupError.
    """
    if depth not in DEPTHS:
        raise ValueError(f"depth={depth!r}: expected one of {DEPTHS}")
    entities = store.links(user_id, max_users=max_users)
    if entities is None:
        raise LookupError(f"no user {user_id!r} in the store")
    followed = _followed(entities, max_users) if depth == 2 else []
    if followed:
        entities = entities + (store.links(user_id, max_users=max_users, via=followed) or [])
    return {"user_id": str(user_id), "entities": [_entity_dict(e) for e in entities]}


def _followed(entities: list[EntityLinks], max_users: int) -> list[str]:
    """The `max_users` riskiest distinct users listed at depth 1 (unscored last, then by id)."""
    best: dict[str, float] = {}
    for entity in entities:
        for u in entity.users:
            risk = -1.0 if u.risk is None else u.risk
            best[u.user_id] = max(best.get(u.user_id, risk), risk)
    return sorted(best, key=lambda u: (-best[u], u))[:max_users]


def _entity_dict(entity: EntityLinks) -> dict:
    return {"kind": entity.kind, "value": entity.value, "n_users": entity.n_users,
            "users": [{"user_id": u.user_id, "risk": u.risk, "case_id": u.case_id, "decision": u.decision}
                      for u in entity.users]}


ENTITY_MAX_USERS = 200


def entity(store: Store, kind: str, value: str, max_users: int = ENTITY_MAX_USERS) -> dict:
    """One entity value (`kind` one of the link kinds: device, ip, address, payment_method, item)
    as the entity page shows it: `{"kind", "value", "n_users", "n_events", "first_ts", "last_ts",
    "fraud_users", "legit_users", "fraud_share", "users": [{"user_id", "risk", "n_events",
    "first_ts", "last_ts", "label", "case_id", "decision"}], "daily": [{"day", "events",
    "users"}]}`. `fraud_share` is fraud among its users with a label (None while none has one);
    `users` lists the `max_users` riskiest. LookupError (one line) for an unknown kind or value."""
    kinds = LinkConfig().kinds
    if kind not in kinds:
        raise LookupError(f"kind={kind!r}: expected one of {', '.join(kinds)}")
    if not str(value or "").strip():
        raise LookupError("value: an entity value is required, e.g. /entity?kind=device&value=d000123")
    found = store.entity(kind, value, max_users=max_users)
    if found is None:
        raise LookupError(f"no {kind} {value!r} in the store's linked accounts")
    labelled = found["fraud_users"] + found["legit_users"]
    users = found.pop("users")
    daily = found.pop("daily")
    found.pop("column", None)
    return {**found, "fraud_share": found["fraud_users"] / labelled if labelled else None,
            "users": [{k: _plain(v) for k, v in row.items()} for row in users.to_dict("records")],
            "daily": [{"day": str(r["day"])[:10], "events": int(r["events"]), "users": int(r["users"])}
                      for r in daily.to_dict("records")]}


def hide_decisions(doc: dict, hidden: set[str]) -> dict:
    """A `links()` or `entity()` dict with the decision and label of `hidden` users set to None
    (a blind second reviewer must not see the first decision anywhere)."""
    if not hidden:
        return doc

    def clean(user: dict) -> dict:
        if user.get("user_id") not in hidden:
            return user
        return {**user, "decision": None, **({"label": None} if "label" in user else {})}

    if "entities" in doc:
        return {**doc, "entities": [{**e, "users": [clean(u) for u in e["users"]]} for e in doc["entities"]]}
    return {**doc, "users": [clean(u) for u in doc.get("users", [])]}


def _plain(value):
    """A JSON-friendly cell: NaN / NaT as None, numpy numbers as Python numbers."""
    import pandas as pd
    if value is None or (not isinstance(value, (list, tuple, dict)) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value
