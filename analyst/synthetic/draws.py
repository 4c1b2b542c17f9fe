"""Vectorised building blocks shared by normal behaviour and the fraud patterns.

Ragged-array helpers (one row per event of a variable number of events per user or session),
random draws from the world's distributions (items, prices, queries, ips, cards, payment
methods), and the two event builders both sides use: a fraud session's context and a
checkout + payment. Every function takes the one `np.random.Generator` and draws in a fixed
order, so callers keep the output reproducible by calling them in a fixed order.
"""
from __future__ import annotations

import numpy as np

from analyst.synthetic.world import (
    _CARD, _CAT_ITEMS, _CAT_NAME, _CAT_PRICE, _CAT_W, _E, _ITEM_BASE, _PM, ADJECTIVES, BRANDS,
    CATEGORIES, COUNTRIES, HOSTING_OCTETS, ITEM_ZIPF, _Log, _World,
)


# ------------------------------------------------------------------------- ragged arrays
def _starts(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


def _ragged_arange(counts: np.ndarray) -> np.ndarray:
    """[0..c0-1, 0..c1-1, ...] for counts c."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.arange(counts.sum()) - np.repeat(_starts(counts), counts)


def _ragged_cumsum(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sum of x restarted at every group of `counts` (inclusive)."""
    cs = np.cumsum(x)
    first = np.repeat(_starts(counts), counts)
    return cs - cs[first] + x[first]


# --------------------------------------------------------------------------- random draws
def _lognormal(rng: np.random.Generator, median: float, sd: float, n: int,
               lo: float = 0.0, hi: float = np.inf) -> np.ndarray:
    return np.clip(median * np.exp(sd * rng.standard_normal(n)), lo, hi)


def _uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return lo + (hi - lo) * rng.random(n)


def _pick(rng: np.random.Generator, options: np.ndarray, n: int) -> np.ndarray:
    return np.asarray(options)[rng.integers(0, len(options), n)]


def _zipf_rank(rng: np.random.Generator, k: np.ndarray | int, s: float, n: int) -> np.ndarray:
    """0-based ranks in [0, k) with P(rank) ~ (rank + 1)^-s (continuous inverse CDF, s != 1)."""
    top = (np.asarray(k, dtype=np.float64) + 1.0) ** (1.0 - s) - 1.0
    x = (1.0 + rng.random(n) * top) ** (1.0 / (1.0 - s))
    return np.minimum(x.astype(np.int64) - 1, np.asarray(k) - 1)


# -------------------------------------------------------------- catalogue: items, prices, queries
def _categories(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(len(CATEGORIES), size=n, p=_CAT_W).astype(np.int16)


def _items(rng: np.random.Generator, cat: np.ndarray, popular: bool = True) -> np.ndarray:
    """Item ids of categories `cat`: Zipf ranks, or uniform over the long tail when not popular."""
    k = _CAT_ITEMS[cat]
    if popular:
        rank = _zipf_rank(rng, k, ITEM_ZIPF, len(cat))
    else:
        rank = (k // 4 + (rng.random(len(cat)) * (k - k // 4))).astype(np.int64)
    return (cat.astype(np.int64) + 1) * _ITEM_BASE + rank


def _price(item: np.ndarray) -> np.ndarray:
    """Deterministic price of an item: its category's median times a per-item lognormal factor."""
    h = (item.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(0xBF58476D1CE4E5B9)
    u1 = ((h >> np.uint64(11)) & np.uint64(0xFFFFF)).astype(np.float64) / 0xFFFFF
    u2 = ((h >> np.uint64(37)) & np.uint64(0xFFFFF)).astype(np.float64) / 0xFFFFF
    z = (u1 + u2 - 1.0) * 2.45  # ~ sd 1, triangular
    price = _CAT_PRICE[item // _ITEM_BASE - 1] * np.exp(0.45 * z)
    return np.where(price > 5, np.floor(price) + 0.99, np.round(price, 2))


def _queries(rng: np.random.Generator, cat: np.ndarray, brand_p: float = 0.1) -> np.ndarray:
    """Query codes: (brand, adjective, category noun), each of brand/adjective optional (0)."""
    n = len(cat)
    adj = np.where(rng.random(n) < 0.45, rng.integers(1, len(ADJECTIVES) + 1, n), 0)
    brand = np.where(rng.random(n) < brand_p, rng.integers(1, len(BRANDS) + 1, n), 0)
    return ((brand * (len(ADJECTIVES) + 1) + adj) * len(CATEGORIES) + cat).astype(np.int32)


def _query_text(code: int) -> str:
    rest, cat = divmod(int(code), len(CATEGORIES))
    brand, adj = divmod(rest, len(ADJECTIVES) + 1)
    words = ([BRANDS[brand - 1]] if brand else []) + ([ADJECTIVES[adj - 1]] if adj else [])
    return " ".join(words + [_CAT_NAME[cat].replace("_", " ")])


# ------------------------------------------------------------ places and payment methods
def _random_ip(rng: np.random.Generator, country: np.ndarray,
               hosting: np.ndarray | None = None) -> np.ndarray:
    """Random addresses in each country's ranges (or in data-centre ranges where `hosting`)."""
    n = len(country)
    octet = np.empty(n, dtype=np.int64)
    for c, (_, _, _, octets) in enumerate(COUNTRIES):
        m = country == c
        octet[m] = _pick(rng, np.array(octets), int(m.sum()))
    if hosting is not None:
        octet = np.where(hosting, _pick(rng, np.array(HOSTING_OCTETS), n), octet)
    return (octet << 24) | rng.integers(1 << 8, 1 << 24, n)


def _other_country(rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
    shift = rng.integers(1, len(COUNTRIES), len(country))
    return ((country.astype(np.int64) + shift) % len(COUNTRIES)).astype(np.int8)


def _new_cards(rng: np.random.Generator, n: int) -> np.ndarray:
    return _CARD + rng.integers(0, 10_000, n)


def _usual_pm(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.choice(5, size=n, p=[0.58, 0.23, 0.11, 0.05, 0.03])  # card, wallet, paypal, ...
    other = np.array([0, _PM["wallet"], _PM["paypal"], _PM["bank_transfer"], _PM["gift_card"]])
    return np.where(kind == 0, _new_cards(rng, n), other[kind])


# ------------------------------------------------------------------------ event builders
def _context(w: _World, users: np.ndarray, new_device: np.ndarray, abroad: np.ndarray,
             hosting: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Session, device, ip and country for one fraud session per entry of `users`."""
    rng, k = w.rng, len(users)
    device = np.where(new_device, w.ids.new("device", k), w.device[users])
    country = np.where(abroad, _other_country(rng, w.country[users]), w.country[users]).astype(np.int8)
    fresh_ip = new_device | abroad | (rng.random(k) < 0.5)
    if hosting is not None:
        fresh_ip |= hosting
    ip = np.where(fresh_ip, _random_ip(rng, country, hosting), w.home_ip[users])
    return {"session": w.ids.new("session", k), "device": device, "ip": ip, "country": country}


def _take(ctx: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[idx] for key, value in ctx.items()}


def _purchase(log: _Log, rng: np.random.Generator, user, ts, ctx, item, amount, pm, status,
              planted, address, pay_gap=None) -> np.ndarray:
    """A checkout and its payment a few seconds later; returns the payment times."""
    n = len(user)
    cat = (item // _ITEM_BASE - 1).astype(np.int16)
    log.add(user=user, ts=ts, etype=_E["checkout"], item=item, cat=cat, amount=amount,
            address=address, planted=planted, **ctx)
    pay_ts = ts + (_lognormal(rng, 8, 0.5, n, 2, 60) if pay_gap is None else pay_gap)
    log.add(user=user, ts=pay_ts, etype=_E["payment"], item=item, cat=cat, amount=amount, pm=pm,
            status=status, planted=planted, **ctx)
    return pay_ts
