"""Ring cases (issue 14): flagged users linked through shared devices, cards, addresses or IPs,
grouped into one ring that one decision with one rationale can close.

A ring is a connected group of at least two users with an open case (open, claimed or
escalated), linked when both used one small entity value: a value of `RING_KINDS` used by at
most `RING_MAX_USERS` accounts in all (a public IP or a shop-wide item links strangers, not a
ring). Items are left out: honest shoppers share them. Decided here (2026-12-02), not asked by
anyone: 25 accounts is about the largest ring the synthetic generator and the rings in public
write-ups reach, and a value above it is shown as a hub on the links page instead.

`decide_ring` records the decision once per member, each with its own label row and audit row
(the audit detail names the ring and its size). A member whose case changed since the ring was
read (someone else decided or claimed it) is a conflict: reported, never overwritten.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from analyst.service.cases import Cases
from analyst.service.records import ConflictError, Decision
from analyst.store import Store
from analyst.vocab import OPEN_STATUSES, check_decision

RING_KINDS: tuple[str, ...] = ("device", "payment_method", "address", "ip")
RING_MAX_USERS = 25


@dataclass(frozen=True)
class RingMember:
    """One flagged user in a ring and its case as read (version: for the conflict check)."""
    user_id: str
    case_id: int
    risk: float
    status: str
    version: int


@dataclass(frozen=True)
class Ring:
    """Flagged users linked through shared small entity values; `ring_id` = "ring-<lowest case id>"."""
    ring_id: str
    members: tuple[RingMember, ...]
    shared: tuple[tuple[str, str, int], ...]   # (kind, value, members on it), most members first

    @property
    def user_ids(self) -> tuple[str, ...]:
        return tuple(m.user_id for m in self.members)

    @property
    def risk(self) -> float:
        return max(m.risk for m in self.members)


@dataclass(frozen=True)
class RingDecision:
    """What a ring decision wrote: one Decision per member decided, and the members left alone."""
    ring_id: str
    decided: tuple[Decision, ...]
    conflicts: tuple[tuple[str, int, str], ...]   # (user_id, case_id, why)
    rescore_job: str | None = None               # the background rescore of linked accounts


def rings(store: Store, *, statuses: Sequence[str] = OPEN_STATUSES, kinds: Sequence[str] = RING_KINDS,
          max_users: int = RING_MAX_USERS) -> list[Ring]:
    """The rings among users with a case in `statuses`, riskiest ring first (then by ring id).
    Each user is in at most one ring (its latest case in those statuses)."""
    cases = store.case_list(statuses=list(statuses))
    if cases.empty:
        return []
    cases = cases.sort_values("case_id").drop_duplicates("user_id", keep="last")
    edges = store.shared_values(cases["user_id"].astype(str).tolist(), kinds=kinds, max_users=max_users)
    if edges.empty:
        return []
    groups = _components(edges)
    by_user = cases.set_index(cases["user_id"].astype(str))
    out = []
    for users in groups:
        members = tuple(sorted(
            (RingMember(u, int(by_user.at[u, "case_id"]), float(by_user.at[u, "score"]),
                        str(by_user.at[u, "status"]), int(by_user.at[u, "version"])) for u in users),
            key=lambda m: (-m.risk, m.case_id)))
        mine = edges[edges["user_id"].isin(users)]
        counts = mine.groupby(["kind", "value"]).size().reset_index(name="members")
        counts = counts.sort_values(["members", "kind", "value"], ascending=[False, True, True])
        shared = tuple((str(k), str(v), int(n)) for k, v, n in counts.itertuples(index=False))
        out.append(Ring(f"ring-{min(m.case_id for m in members)}", members, shared))
    return sorted(out, key=lambda r: (-r.risk, r.ring_id))


def ring_of(store: Store, user_id: str, **kwargs) -> Ring | None:
    """The ring `user_id` belongs to (see `rings`), or None."""
    for ring in rings(store, **kwargs):
        if str(user_id) in ring.user_ids:
            return ring
    return None


def decide_ring(cases: Cases, ring: Ring, decision: str, *, analyst: str, reason_code: str, quality: str,
                note: str, model_version: str | None = None) -> RingDecision:
    """One decision and one rationale for every member of `ring` as read: a label row and an
    audit row per member (detail: ring id and size). Members whose case changed since are
    listed in `conflicts` and left as they are. Bad input (decision, reason, empty note or
    analyst) raises before anything is written."""
    check_decision(decision, reason_code)
    if not (note or "").strip():
        raise ValueError("note: a note is required to record a decision")
    if not (analyst or "").strip():
        raise ValueError("analyst: the analyst's name is required")
    context = {"ring_id": ring.ring_id, "ring_size": len(ring.members)}
    decided: list[Decision] = []
    conflicts: list[tuple[str, int, str]] = []
    for m in ring.members:
        try:
            decided.append(cases.decide(m.user_id, decision, analyst=analyst, reason_code=reason_code,
                                        quality=quality, note=note, case_id=m.case_id,
                                        expected_version=m.version, model_version=model_version,
                                        context=context))
        except ConflictError as err:
            now = err.case or {}
            conflicts.append((m.user_id, m.case_id,
                              f"changed since the ring was read (now {now.get('status', 'missing')}"
                              + (f", {now['decision']} by {now.get('assignee') or 'someone'}"
                                 if now.get("decision") else "") + ")"))
    return RingDecision(ring.ring_id, tuple(decided), tuple(conflicts))


def _components(edges: pd.DataFrame) -> list[set[str]]:
    """Connected groups of users (two or more) that share a value (union-find over the edges)."""
    parent: dict[str, str] = {}

    def find(u: str) -> str:
        while parent.setdefault(u, u) != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    for _, users in edges.groupby(["kind", "value"])["user_id"]:
        first, *rest = [str(u) for u in users]
        for other in rest:
            a, b = find(first), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, set[str]] = {}
    for u in list(parent):
        groups.setdefault(find(u), set()).add(u)
    return [g for g in groups.values() if len(g) >= 2]


def with_rings(queue: pd.DataFrame, found: Sequence[Ring]) -> pd.DataFrame:
    """`queue` (Cases.queue rows) with `ring_id` and `ring_size` (None / 0 outside a ring)."""
    by_case = {m.case_id: (r.ring_id, len(r.members)) for r in found for m in r.members}
    ids = [by_case.get(int(c), (None, 0)) for c in queue["case_id"]]
    return queue.assign(ring_id=[i for i, _ in ids], ring_size=[n for _, n in ids])


def group_rings(queue: pd.DataFrame) -> pd.DataFrame:
    """One row per ring (its first row in `queue`'s order: the riskiest member when sorted by
    risk; `ring_size` says how many it stands for) and the other cases as they are: the
    queue's "group rings" view."""
    if "ring_id" not in queue.columns or queue.empty:
        return queue
    keep = queue["ring_id"].isna() | ~queue["ring_id"].duplicated()
    return queue[keep].reset_index(drop=True)
