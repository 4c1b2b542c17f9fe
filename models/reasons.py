"""Plain-sentence reasons for a risk score, built from a timeline and its per-event attributions.

`top_reasons(timeline, attribution)` turns the events that carry the most (positive) attribution
into 2-5 short sentences that quote the data, e.g.

    "3 declined payments within 2 minutes (1.00-4.50 USD), after a password change from a new device."

How: events of the same *kind* (event type + non-"ok" status) that follow each other within
`burst_gap` form a burst; bursts are ranked by the attribution they carry; the top burst may quote
an earlier high-attribution burst of another kind as context ("after ..."); each sentence adds what
the data says about the burst: amounts (and how they compare with the user's earlier amounts),
"first time for this user" values (device, IP, country, address, payment method), the query text,
and, when the timeline carries the entity signals of models/signals.py (`<entity>_users`,
`<entity>_fraud_users`), who else uses the burst's device / card / address ("on a device shared
with 7 other accounts (3 of them confirmed fraud)").
When nothing raises the risk, the sentences name what lowers it. A closing fact about the account
("142 events over 12 days") fills up to `min_reasons`.

Needs only pandas/numpy: the attribution can come from any explainer. Optional columns of the
event schema (status, amount, currency, query, device_id, ip, country, address_id,
payment_method) are used when present and may be null or absent. `attrs` is never read.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.contracts import OK_STATUSES
from models.signals import known_signal_columns

# Columns of the event schema this module reads (restated: models/ never imports analyst).
_NOVELTY: tuple[tuple[str, str], ...] = (
    ("device_id", "device"),
    ("ip", "IP address"),
    ("country", "country"),
    ("address_id", "address"),
    ("payment_method", "payment method"),
)
_OK_STATUS = OK_STATUSES
# Entity signal prefixes (models/signals.py) -> the noun a sentence uses; others: the prefix in words.
_ENTITY_NOUN = {"device": "device", "ip": "IP address", "payment_method": "payment method",
                "address": "address", "item": "item", "category": "terminal / category",
                "session": "session", "country": "country"}
# When an entity is worth a sentence: shared with a few other users (a ring's device or drop
# address), or with known fraud. Not a hub (a generic value such as "wallet", a public IP) and not
# an item many honest shoppers buy, unless several of its buyers are known fraud.
_MIN_SHARED, _MAX_SHARED = 2, 50
_MIN_ITEM_FRAUD = 2
# Plural forms of the synthetic / Taobao event types whose plural is not "+s".
_PLURAL = {
    "search": "searches", "pv": "page views", "fav": "favourites", "buy": "purchases",
    "cart": "add-to-carts", "remove cart": "cart removals", "checkout": "checkouts",
    "refund request": "refund requests", "coupon redeem": "coupon redemptions",
    "login": "logins", "logout": "logouts", "signup": "signups",
}
_SINGULAR = {"pv": "page view", "fav": "favourite", "buy": "purchase", "cart": "add-to-cart",
             "remove cart": "cart removal", "coupon redeem": "coupon redemption"}


@dataclass(frozen=True)
class Burst:
    """Events of one kind close in time, and the attribution they carry."""

    kind: str                   # e.g. "declined payment"
    members: tuple[int, ...]    # positions in the timeline, ascending
    weight: float               # summed attribution of the members (signed)

    @property
    def first(self) -> int:
        return self.members[0]

    @property
    def last(self) -> int:
        return self.members[-1]


def top_reasons(
    timeline: pd.DataFrame,
    attribution: np.ndarray | Sequence[float],
    at: int | None = None,
    *,
    max_reasons: int = 5,
    min_reasons: int = 2,
    burst_gap: pd.Timedelta = pd.Timedelta(minutes=30),
    context_window: pd.Timedelta = pd.Timedelta(hours=24),
    min_share: float = 0.1,
    risk: float | None = None,
    low_risk: float = 0.2,
    high_risk: float = 0.5,
) -> tuple[str, ...]:
    """Short plain sentences saying which events drive the risk at event `at` (default the last).

    `timeline`: one user's events sorted by ts (positions 0..T-1 are what `attribution` indexes);
    `attribution`: (T,) signed per-event attribution (higher = pushes the risk up); events after
    `at` are ignored. Bursts carrying less than `min_share` of the top burst's attribution are
    dropped unless needed to reach `min_reasons`. Returns `min_reasons`..`max_reasons` sentences
    (fewer only when the timeline is too short to say more). With `risk` below `low_risk` the
    first sentence says so, so that what follows is not read as grounds for suspicion. With `risk`
    at or above `high_risk` and no event attributed above zero, the events are ranked by their
    attribution minus its median (what weighs most against the user's other events) and the last
    sentence says so.
    """
    if not 1 <= min_reasons <= max_reasons:
        raise ValueError(f"need 1 <= min_reasons <= max_reasons, got {min_reasons}, {max_reasons}")
    attribution = np.asarray(attribution, dtype=np.float64)
    n = len(timeline)
    if n == 0:
        raise ValueError("timeline is empty")
    if attribution.shape != (n,):
        raise ValueError(f"attribution shape {attribution.shape} does not match timeline length {n}")
    at = n - 1 if at is None else int(at)
    if not 0 <= at < n:
        raise ValueError(f"at={at} outside the timeline (0..{n - 1})")
    if "ts" not in timeline.columns or "event_type" not in timeline.columns:
        raise ValueError("timeline needs the columns 'ts' and 'event_type'")

    tl = timeline.iloc[: at + 1].reset_index(drop=True)
    attr = np.nan_to_num(attribution[: at + 1])
    facts = _Facts(tl)

    # A high risk with no event above the baseline: a population whose average user already
    # scores high can put the baseline above this user, so every event "lowers" the risk against
    # it. Say instead which events weigh most against the user's other events (attribution minus
    # its median). (With the old all-PAD baseline this was the rule for a surprise model.)
    relative = bool(attr.max() <= 0 and risk is not None and risk >= high_risk and len(attr) > 1)
    if relative:
        attr = attr - np.median(attr)
    raising = attr.max() > 0
    sign = 1.0 if raising else -1.0
    # ranked strongest first; weights made positive in the direction we explain
    ranked = [b for b in _bursts(facts, attr * sign, burst_gap) if b.weight > 0]
    strong = [b for b in ranked if b.weight >= min_share * ranked[0].weight] if ranked else []
    weak = [b for b in ranked if b not in strong]
    # events that push the risk up on their own inside bursts that, summed, do not
    covered = {i for b in ranked for i in b.members}
    singles = [Burst(facts.kind[i], (int(i),), float(attr[i] * sign))
               for i in np.argsort(-attr * sign, kind="stable") if attr[i] * sign > 0 and i not in covered]
    weak += singles
    context = _context_for(strong[0], strong[1:], facts, context_window) if raising and strong else None
    prefix = "" if raising else "Lowers the risk: "

    lead: list[str] = []
    if risk is not None and risk < low_risk:
        low = "raise it only a little" if raising else "lower it"
        lead.append(f"Low risk ({_percent(risk)}): the events below {low}.")
    room, need = max_reasons - len(lead), max(min_reasons - len(lead), 1)
    sentences: list[str] = []
    for b in strong + weak:  # the weak ones only to reach min_reasons
        if len(sentences) >= room or (b in weak and len(sentences) >= need):
            break
        if b is context:
            continue
        text = _describe(b, facts)
        if context is not None and b is strong[0]:
            gap = facts.ts.iloc[b.first] - facts.ts.iloc[context.last]
            text += (", after " + _describe(context, facts, lead=False)
                     + f" ({_duration(gap, within=True)} earlier)")
        text = _sentence(prefix + text)
        if text not in sentences:
            sentences.append(text)
    if len(sentences) < need:
        sentences.append(_sentence(facts.account_summary()))
    if relative and sentences:
        sentences = sentences[: max(room - 1, 1)]
        sentences.append(f"High risk ({_percent(risk)}) from the pattern as a whole: no single event raises it "
                         "against the baseline (an average event, as surprising as usual), so the events above are those that weigh most "
                         "against this user's other events.")
    sentences = lead + sentences
    return tuple(sentences[:max_reasons])


# --------------------------------------------------------------------------------------------
# facts from the data


class _Facts:
    """Per-event values derived from one user's timeline (positions 0..T-1)."""

    def __init__(self, tl: pd.DataFrame) -> None:
        self.tl = tl
        self.ts = pd.to_datetime(tl["ts"]).reset_index(drop=True)
        self.kind = [_kind(e, s) for e, s in zip(tl["event_type"], _col(tl, "status"))]
        amount = pd.to_numeric(_col(tl, "amount"), errors="coerce")
        self.amount = amount.to_numpy(dtype=np.float64)
        self.currency = [c if _present(c) else "" for c in _col(tl, "currency")]
        self.query = [str(q).strip() if _present(q) else "" for q in _col(tl, "query")]
        # "first time for this user": a value not seen before in the timeline, when one was seen
        self.new: list[list[tuple[str, str]]] = [[] for _ in range(len(tl))]
        for column, noun in _NOVELTY:
            seen: set[str] = set()
            for i, v in enumerate(_col(tl, column)):
                if not _present(v):
                    continue
                v = str(v)
                if seen and v not in seen:
                    self.new[i].append((noun, v))
                seen.add(v)
        # other users on this event's entities: prefix -> (users, fraud users) arrays (NaN = unknown)
        self.shared: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        known = set(known_signal_columns())
        for column in tl.columns:
            if column in known and column.endswith("_fraud_users"):
                prefix = column.removesuffix("_fraud_users")
                users = pd.to_numeric(_col(tl, prefix + "_users"), errors="coerce").to_numpy(np.float64)
                fraud = pd.to_numeric(tl[column], errors="coerce").to_numpy(np.float64)
                self.shared[prefix] = (users, fraud)

    def amounts(self, idx: Sequence[int]) -> np.ndarray:
        a = self.amount[list(idx)]
        return a[np.isfinite(a)]

    def account_summary(self) -> str:
        n = len(self.tl)
        span = self.ts.iloc[-1] - self.ts.iloc[0]
        first = self.ts.iloc[0].strftime("%Y-%m-%d")
        if n == 1:
            return f"Only one event so far ({self.kind[0]} on {first})"
        return f"Account history: {n} events over {_duration(span)}, first seen {first}"


def _col(tl: pd.DataFrame, name: str) -> pd.Series:
    if name in tl.columns:
        return tl[name]
    return pd.Series([None] * len(tl), index=tl.index, dtype=object)


def _present(v: object) -> bool:
    if v is None:
        return False
    try:
        if pd.isna(v):
            return False
    except (TypeError, ValueError):
        pass
    return str(v).strip() != ""


def _words(event_type: object) -> str:
    text = str(event_type).replace("_", " ").replace("-", " ").strip()
    return text.lower() if text.islower() or text.isupper() and len(text) > 4 else (text or "event")


def _kind(event_type: object, status: object) -> str:
    """'payment' + 'declined' -> 'declined payment'; 'ok' statuses are left out."""
    words = _words(event_type)
    words = _SINGULAR.get(words, words)
    if _present(status) and str(status).strip().lower() not in _OK_STATUS:
        return f"{str(status).strip().lower()} {words}"
    return words


def _plural(kind: str) -> str:
    head, _, last = kind.rpartition(" ")
    for singular, plural in _PLURAL.items():  # known types, possibly with a status prefix
        if kind == singular or kind.endswith(" " + singular):
            return kind[: len(kind) - len(singular)] + plural
    if last.endswith(("ed", "ing")) or not last.isalpha() or len(last) <= 3 or not last.islower():
        return f"{kind} events"
    if last.endswith(("s", "x", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}".strip()


# --------------------------------------------------------------------------------------------
# bursts


def _bursts(facts: _Facts, attr: np.ndarray, gap: pd.Timedelta) -> list[Burst]:
    """Split each kind's events into runs with gaps <= `gap`; rank runs by summed attribution."""
    by_kind: dict[str, list[int]] = {}
    for i, k in enumerate(facts.kind):
        by_kind.setdefault(k, []).append(i)
    out: list[Burst] = []
    ts = facts.ts.to_numpy()
    for kind, idx in by_kind.items():
        run = [idx[0]]
        for prev, cur in zip(idx, idx[1:]):
            if ts[cur] - ts[prev] <= gap.to_timedelta64():
                run.append(cur)
            else:
                out.append(Burst(kind, tuple(run), float(attr[run].sum())))
                run = [cur]
        out.append(Burst(kind, tuple(run), float(attr[run].sum())))
    # strongest first; ties: the later burst (closer to the scored event) first
    out.sort(key=lambda b: (-b.weight, -b.last))
    return out


def _context_for(top: Burst, others: Sequence[Burst], facts: _Facts,
                 window: pd.Timedelta) -> Burst | None:
    """An earlier chosen burst of another kind shortly before `top`, quoted as "after ..."."""
    start = facts.ts.iloc[top.first]
    for b in others:  # already ranked by weight
        if b.kind == top.kind or b.last >= top.first:
            continue
        if start - facts.ts.iloc[b.last] <= window:
            return b
    return None


# --------------------------------------------------------------------------------------------
# wording


def _describe(b: Burst, facts: _Facts, lead: bool = True) -> str:
    if len(b.members) == 1:
        article = "an" if b.kind[:1] in "aeiou" else "a"
        text = b.kind if lead else f"{article} {b.kind}"
    else:
        span = facts.ts.iloc[b.last] - facts.ts.iloc[b.first]
        text = f"{len(b.members)} {_plural(b.kind)} within {_duration(span, within=True)}"
    for phrase in (_amount_phrase(b, facts), _query_phrase(b, facts)):
        if phrase:
            text += " " + phrase
    novelty = _novelty_phrase(b, facts)
    if novelty:
        text += (", " if text.endswith(")") else " ") + novelty
    shared = _shared_phrase(b, facts)
    if shared:
        text += ", " + shared
    return text


def _shared_phrase(b: Burst, facts: _Facts) -> str:
    """'on a device shared with 7 other accounts (3 of them confirmed fraud)' (the most telling one
    or two entities of the burst; values as known at the burst's events)."""
    found = []
    for prefix, (users, fraud) in facts.shared.items():
        u = np.nanmax(users[list(b.members)]) if np.isfinite(users[list(b.members)]).any() else 0.0
        f = np.nanmax(fraud[list(b.members)]) if np.isfinite(fraud[list(b.members)]).any() else 0.0
        if u > _MAX_SHARED:
            continue
        if prefix == "item" and f < _MIN_ITEM_FRAUD:
            continue
        if f >= 1 or u >= _MIN_SHARED:
            found.append((f, u, prefix))
    found.sort(reverse=True)
    parts = []
    for f, u, prefix in found[:2]:
        noun = _ENTITY_NOUN.get(prefix, prefix.replace("_", " "))
        article = "an" if noun[:1].lower() in "aeiou" else "a"
        text = f"{article} {noun} shared with {int(u)} other account{'s' if int(u) != 1 else ''}"
        if f >= 1:
            text += f" ({int(f)} of them confirmed fraud)"
        parts.append(text)
    return "on " + _join(parts) if parts else ""


def _amount_phrase(b: Burst, facts: _Facts) -> str:
    """'of 950.00 USD (12x this user's median)' or '(1.00-4.50 USD, far below ...)'."""
    a = facts.amounts(b.members)
    if a.size == 0:
        return ""
    currency = next((facts.currency[i] for i in b.members if facts.currency[i]), "")
    unit = f" {currency}" if currency else ""
    notes: list[str] = []
    prior = facts.amounts(range(b.first))
    prior = prior[prior > 0]
    if prior.size >= 3:
        median = float(np.median(prior))
        if a.max() >= 3 * median:
            notes.append(f"{a.max() / median:.0f}x this user's median")
        elif a.max() <= 0.2 * median:
            notes.append("far below this user's usual amounts")
    if a.size == 1 or np.isclose(a.min(), a.max()):
        text = f"of {_money(a.max())}{unit}" + (" each" if a.size > 1 else "")
        return text + (f" ({notes[0]})" if notes else "")
    return "(" + ", ".join([f"{_money(a.min())}-{_money(a.max())}{unit}", *notes]) + ")"


def _query_phrase(b: Burst, facts: _Facts) -> str:
    queries = [facts.query[i] for i in b.members if facts.query[i]]
    if not queries:
        return ""
    top, count = pd.Series(queries).value_counts().index[0], pd.Series(queries).value_counts().iloc[0]
    top = top if len(top) <= 40 else top[:37] + "..."
    if len(b.members) == 1:
        return f'for "{top}"'
    if count >= 2:
        return f'({count}x "{top}")'
    return f'({len(set(queries))} different queries)'


def _novelty_phrase(b: Burst, facts: _Facts) -> str:
    """'from a new device and a new country (RU), with a new payment method'."""
    seen: dict[str, str] = {}
    for i in b.members:
        for noun, value in facts.new[i]:
            seen.setdefault(noun, value)
    origin = [f"a new {noun} ({v})" if noun == "country" else f"a new {noun}"
              for noun, v in seen.items() if noun in ("device", "IP address", "country")]
    means = [f"a new {noun}" for noun in seen if noun not in ("device", "IP address", "country")]
    parts = (["from " + _join(origin)] if origin else []) + (["with " + _join(means)] if means else [])
    return ", ".join(parts)


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _percent(p: float) -> str:
    return f"{100 * p:.1f}%" if p < 0.1 else f"{100 * p:.0f}%"


def _money(x: float) -> str:
    return f"{x:,.2f}"


def _duration(td: pd.Timedelta, within: bool = False) -> str:
    s = max(td.total_seconds(), 1.0 if within else 0.0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= 2 * size:
            v = round(s / size)
            return f"{v} {unit}{'s' if v != 1 else ''}"
    v = round(s)
    return f"{v} second{'s' if v != 1 else ''}"


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
