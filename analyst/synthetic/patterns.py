"""The planted fraud patterns: one generator function each, and `REGISTRY`, the one table of them.

`fraud_rate` of the users (rounded) are positives, split evenly over the config's `patterns`
(`plant`). Each pattern's generator injects events marked `attrs = {"planted": "<pattern>"}` at
a time inside the window after some normal history (promo abuse: fresh accounts by design).
Intensities vary per user (number of attempts, gaps, share declined, devices...). Account
takeover ends the owner's normal activity.

Everything about a pattern is derived from its `REGISTRY` entry: its code (the entry's
position, so append new ones at the end: the codes, the default pattern list and so the
generated data of every existing seed stay the same), `PATTERNS` (name -> description, which
sample_data/README.md quotes), the config's default and allowed `patterns`, the labels'
`pattern` column and the `planted` marks. Adding a pattern is one generator function plus one
`Pattern(...)` entry.

A generator is called as `plant(world, users, t0, code, pool)`: the world, its users (sorted
indices), the time the fraud starts for each (seconds into the window), its planted code, and
the pattern's shared target items when its entry names a `TargetPool` (None otherwise). It adds
events marked planted=code to `world.log` and may move `world.cutoff` (normal events at/after
it are dropped).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analyst.synthetic.draws import (
    _context, _items, _lognormal, _new_cards, _pick, _price, _purchase, _queries, _ragged_arange,
    _ragged_cumsum, _random_ip, _take, _uniform,
)
from analyst.synthetic.world import (
    ADJECTIVES, CATEGORIES, COUNTRIES, _CHEAP, _C_SHARE, _DAY, _DIGITAL, _E, _HIGH_VALUE, _HOT,
    _ITEM_BASE, _PM, _REFUNDABLE, _REVIEWED, _S, _World,
)


@dataclass(frozen=True)
class TargetPool:
    """Items shared by the users of one pattern: `size` of them from `categories`, popular
    (hot drops: the top 3 items of a category) or obscure (the long tail)."""

    categories: np.ndarray
    size: int
    popular: bool = False

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """The pool's item ids for one run."""
        cat = _pick(rng, self.categories, self.size).astype(np.int16)
        if self.popular:
            return (cat.astype(np.int64) + 1) * _ITEM_BASE + rng.integers(0, 3, self.size)
        return _items(rng, cat, popular=False)


@dataclass(frozen=True)
class Pattern:
    """One fraud pattern: its generator, what it looks like (documented in `PATTERNS` and
    sample_data/README.md) and the target items its users share, if any."""

    plant: Callable[..., None]  # (world, users, t0, code, pool) -> None, see the module docstring
    description: str
    pool: TargetPool | None = None


# ----------------------------------------------------------------------------- shared steps
def _login(w: _World, users, ts, ctx, code, status: str = "ok") -> None:
    w.log.add(user=users, ts=ts, etype=_E["login"], status=_S[status], planted=code, **ctx)


def _user_targets(rng: np.random.Generator, pool: np.ndarray, k: int,
                  most: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of k users, one target item drawn per event from their own 1..most items of pool."""
    own = pool[rng.integers(0, len(pool), (k, most))]
    return own, rng.integers(1, most + 1, k)


def _choose(rng: np.random.Generator, own: np.ndarray, n_own: np.ndarray,
            rows: np.ndarray) -> np.ndarray:
    """One of its own targets for the user of each row."""
    return own[rows, (rng.random(len(rows)) * n_own[rows]).astype(np.int64)]


def _refunds(w: _World, users, paid_ts, item, amount, pm, code, delay_median: float) -> None:
    """Refund requests `delay_median` after payment, each granted (85%) or rejected days later."""
    rng, n = w.rng, len(users)
    ctx = _context(w, users, np.zeros(n, bool), np.zeros(n, bool))
    cat = (item // _ITEM_BASE - 1).astype(np.int16)
    req = paid_ts + _lognormal(rng, delay_median, 0.6, n, 1800, 6 * _DAY)
    w.log.add(user=users, ts=req, etype=_E["refund_request"], item=item, cat=cat, amount=amount,
              planted=code, **ctx)
    status = np.where(rng.random(n) < 0.85, _S["ok"], _S["rejected"])
    w.log.add(user=users, ts=req + _lognormal(rng, 1.2 * _DAY, 0.5, n, 3600), etype=_E["refund"],
              item=item, cat=cat, amount=amount, pm=pm, status=status, planted=code, **ctx)


# ------------------------------------------------------------------------------ generators
def _account_takeover(w: _World, users: np.ndarray, t0: np.ndarray, code: int,
                      pool: None = None) -> None:
    rng, k = w.rng, len(users)
    ctx = _context(w, users, np.ones(k, bool), rng.random(k) < 0.7, rng.random(k) < 0.25)
    n_fail = np.where(rng.random(k) < 0.45, 0, rng.integers(1, 7, k))  # credential stuffing
    f = np.repeat(np.arange(k), n_fail)
    _login(w, users[f], t0[f] - _ragged_cumsum(_lognormal(rng, 12, 0.6, len(f), 2, 90), n_fail),
           _take(ctx, f), code, "failed")
    _login(w, users, t0, ctx, code)
    new_addr = np.where(rng.random(k) < 0.65, w.ids.new("address", k), -1)
    new_card = np.where(rng.random(k) < 0.35, _new_cards(rng, k), -1)
    for etype, mask, extra in (("password_change", rng.random(k) < 0.65, {}),
                               ("email_change", rng.random(k) < 0.4, {}),
                               ("address_change", new_addr >= 0, {"address": new_addr}),
                               ("payment_method_change", new_card >= 0, {"pm": new_card})):
        m = np.flatnonzero(mask)
        w.log.add(user=users[m], ts=t0[m] + _uniform(rng, 20, 600, len(m)), etype=_E[etype],
                  status=_S["ok"], planted=code, **{key: v[m] for key, v in extra.items()},
                  **_take(ctx, m))
    n_view = rng.integers(0, 9, k)
    v = np.repeat(np.arange(k), n_view)
    cat = _pick(rng, _HIGH_VALUE, len(v)).astype(np.int16)
    vts = t0[v] + 60 + _ragged_cumsum(_lognormal(rng, 20, 0.7, len(v), 3, 200), n_view)
    w.log.add(user=users[v], ts=vts, etype=_E["view"], item=_items(rng, cat), cat=cat, planted=code,
              **_take(ctx, v))
    n_buy = 1 + rng.binomial(3, 0.35, k)
    b = np.repeat(np.arange(k), n_buy)
    bts = t0[b] + 700 + _ragged_cumsum(_lognormal(rng, 90, 0.6, len(b), 20, 600), n_buy)
    item = _items(rng, _pick(rng, _HIGH_VALUE, len(b)).astype(np.int16))
    ub = users[b]
    address = np.where(new_addr[b] >= 0, new_addr[b], w.address[ub])
    pm = np.where(new_card[b] >= 0, new_card[b], w.pm[ub])
    status = np.where(rng.random(len(b)) < 0.15, _S["declined"], _S["ok"])
    pay = _purchase(w.log, rng, ub, bts, _take(ctx, b), item, _price(item), pm, status, code, address)
    w.cutoff[users] = t0  # the owner is locked out from here on ...
    last = np.full(k, -np.inf)
    np.maximum.at(last, b, pay)
    back = np.flatnonzero(rng.random(k) < 0.5)  # ... and fails to log in on the usual device
    n_back = rng.integers(1, 4, len(back))
    o = np.repeat(back, n_back)
    owner = {"session": np.repeat(w.ids.new("session", len(back)), n_back),
             "device": w.device[users[o]], "ip": w.home_ip[users[o]], "country": w.country[users[o]]}
    t_back = np.repeat(_lognormal(rng, 8 * 3600, 0.8, len(back), 1800, 2 * _DAY), n_back)
    _login(w, users[o], last[o] + t_back + _ragged_cumsum(_uniform(rng, 5, 60, len(o)), n_back),
           owner, code, "failed")


def _order_brushing(w: _World, users: np.ndarray, t0: np.ndarray, code: int,
                    pool: np.ndarray) -> None:
    rng, k = w.rng, len(users)
    n_burst = rng.integers(1, 4, k)
    b = np.repeat(np.arange(k), n_burst)
    ub, nb = users[b], len(b)
    bt = t0[b] + _ragged_arange(n_burst) * _uniform(rng, 1, 3, nb) * _DAY
    ctx = _context(w, ub, rng.random(nb) < 0.3, np.zeros(nb, bool))
    m = np.flatnonzero(rng.random(nb) < 0.7)
    _login(w, ub[m], bt[m] - _uniform(rng, 10, 60, len(m)), _take(ctx, m), code)
    own, n_own = _user_targets(rng, pool, k, 3)
    n_ord = rng.integers(3, 16, nb)
    o = np.repeat(np.arange(nb), n_ord)
    uo = ub[o]
    ots = bt[o] + _ragged_cumsum(_lognormal(rng, 60, 0.6, len(o), 15, 400), n_ord)
    item = _choose(rng, own, n_own, b[o])
    cat = (item // _ITEM_BASE - 1).astype(np.int16)
    v = np.flatnonzero(rng.random(len(o)) < 0.25)
    w.log.add(user=uo[v], ts=ots[v] - _uniform(rng, 3, 15, len(v)), etype=_E["view"], item=item[v],
              cat=cat[v], planted=code, **_take(ctx, o[v]))
    kind = rng.random(len(o))
    pm = np.where(kind < 0.5, _PM["wallet"], np.where(kind < 0.7, _PM["gift_card"], w.pm[uo]))
    _purchase(w.log, rng, uo, ots, _take(ctx, o), item, _price(item), pm, _S["ok"], code,
              w.address[uo], pay_gap=_uniform(rng, 3, 12, len(o)))
    rate = _uniform(rng, 0.6, 1.0, k)
    r = np.flatnonzero(rng.random(len(o)) < rate[b[o]])
    per_burst = np.bincount(o[r], minlength=nb)
    rctx = _context(w, ub, rng.random(nb) < 0.5, np.zeros(nb, bool))
    rstart = bt + _uniform(rng, 0.5, 3, nb) * _DAY
    w.log.add(user=uo[r], ts=rstart[o[r]] + _ragged_cumsum(_uniform(rng, 10, 120, len(r)), per_burst),
              etype=_E["review"], item=item[r], cat=cat[r], planted=code, **_take(rctx, o[r]))


def _card_testing(w: _World, users: np.ndarray, t0: np.ndarray, code: int,
                  pool: None = None) -> None:
    rng, k = w.rng, len(users)
    ctx = _context(w, users, rng.random(k) < 0.6, rng.random(k) < 0.4, rng.random(k) < 0.3)
    f = np.flatnonzero(rng.random(k) < 0.2)
    _login(w, users[f], t0[f] - _uniform(rng, 10, 60, len(f)), _take(ctx, f), code, "failed")
    _login(w, users, t0, ctx, code)
    item = _items(rng, _pick(rng, _DIGITAL, k).astype(np.int16))
    cat = (item // _ITEM_BASE - 1).astype(np.int16)
    c = np.flatnonzero(rng.random(k) < 0.7)
    w.log.add(user=users[c], ts=t0[c] + _uniform(rng, 30, 200, len(c)), etype=_E["checkout"],
              item=item[c], cat=cat[c], amount=_price(item[c]), address=w.address[users[c]],
              planted=code, **_take(ctx, c))
    n_try = np.clip(np.round(_lognormal(rng, 12, 0.6, k)), 4, 60).astype(np.int64)
    a = np.repeat(np.arange(k), n_try)
    na = len(a)
    ats = t0[a] + 240 + _ragged_cumsum(_lognormal(rng, 12, 0.7, na, 2, 120), n_try)
    cards = _new_cards(rng, na)
    fixed = rng.random(k) < 0.5
    base = _pick(rng, np.array([0.5, 1.0, 1.5, 2.0, 5.0]), k)
    amount = np.where(fixed[a], base[a], np.round(_uniform(rng, 0.3, 10, na), 2))
    declined = _uniform(rng, 0.55, 0.95, k)
    r = rng.random(na)
    status = np.where(r < declined[a], _S["declined"],
                      np.where(r < declined[a] + 0.04, _S["failed"], _S["ok"]))
    m = np.flatnonzero(rng.random(na) < 0.3)
    w.log.add(user=users[a[m]], ts=ats[m] - _uniform(rng, 2, 8, len(m)),
              etype=_E["payment_method_change"], pm=cards[m], status=_S["ok"], planted=code,
              **_take(ctx, a[m]))
    w.log.add(user=users[a], ts=ats, etype=_E["payment"], item=item[a], cat=cat[a], amount=amount,
              pm=cards, status=status, planted=code, **_take(ctx, a))
    ok = np.flatnonzero(status == _S["ok"])[::-1]
    holders, first = np.unique(a[ok], return_index=True)
    big = holders[rng.random(len(holders)) < 0.5]
    card = np.full(k, -1, dtype=np.int64)
    card[holders] = cards[ok[first]]
    last = np.full(k, -np.inf)
    np.maximum.at(last, a, ats)
    item = _items(rng, _pick(rng, _HIGH_VALUE, len(big)).astype(np.int16))
    _purchase(w.log, rng, users[big], last[big] + _uniform(rng, 60, 1200, len(big)), _take(ctx, big),
              item, _price(item), card[big], _S["ok"], code, w.address[users[big]])


def _fake_reviews(w: _World, users: np.ndarray, t0: np.ndarray, code: int,
                  pool: np.ndarray) -> None:
    rng, k = w.rng, len(users)
    n_burst = rng.integers(1, 3, k)
    b = np.repeat(np.arange(k), n_burst)
    ub, nb = users[b], len(b)
    bt = t0[b] + _ragged_arange(n_burst) * _uniform(rng, 0.5, 4, nb) * _DAY
    ctx = _context(w, ub, rng.random(nb) < 0.5, rng.random(nb) < 0.1)
    m = np.flatnonzero(rng.random(nb) < 0.6)
    _login(w, ub[m], bt[m] - _uniform(rng, 10, 60, len(m)), _take(ctx, m), code)
    own, n_own = _user_targets(rng, pool, k, 5)
    n_rev = rng.integers(4, 31, nb)
    r = np.repeat(np.arange(nb), n_rev)
    rts = bt[r] + _ragged_cumsum(_lognormal(rng, 60, 0.8, len(r), 10, 600), n_rev)
    item = _choose(rng, own, n_own, b[r])
    cat = (item // _ITEM_BASE - 1).astype(np.int16)
    v = np.flatnonzero(rng.random(len(r)) < 0.3)
    w.log.add(user=ub[r[v]], ts=rts[v] - _uniform(rng, 5, 40, len(v)), etype=_E["view"], item=item[v],
              cat=cat[v], planted=code, **_take(ctx, r[v]))
    w.log.add(user=ub[r], ts=rts, etype=_E["review"], item=item, cat=cat, planted=code, **_take(ctx, r))


def _refund_abuse(w: _World, users: np.ndarray, t0: np.ndarray, code: int,
                  pool: None = None) -> None:
    rng, k = w.rng, len(users)
    n_buy = rng.integers(3, 11, k)
    p = np.repeat(np.arange(k), n_buy)
    up, n = users[p], len(p)
    span = np.minimum(_uniform(rng, 3, 10, k) * _DAY, np.maximum(w.window - 1.5 * _DAY - t0, 3600))
    slot = span[p] / n_buy[p]
    pts = t0[p] + (_ragged_arange(n_buy) + rng.random(n)) * slot
    ctx = _context(w, up, np.zeros(n, bool), np.zeros(n, bool))
    cat = _pick(rng, _REFUNDABLE, n).astype(np.int16)
    item = _items(rng, cat)
    n_view = rng.integers(0, 4, n)
    v = np.repeat(np.arange(n), n_view)
    w.log.add(user=up[v], ts=pts[v] - _ragged_cumsum(_lognormal(rng, 40, 0.6, len(v), 5, 300), n_view),
              etype=_E["view"], item=item[v], cat=cat[v], planted=code, **_take(ctx, v))
    amount = _price(item)
    pay = _purchase(w.log, rng, up, pts, ctx, item, amount, w.pm[up], _S["ok"], code, w.address[up])
    share = _uniform(rng, 0.6, 1.0, k)
    req = np.flatnonzero((rng.random(n) < share[p]) | (_ragged_arange(n_buy) < 2))
    _refunds(w, up[req], pay[req], item[req], amount[req], w.pm[up[req]], code, 0.8 * _DAY)
    # and some of their earlier, ordinary purchases
    bought = w.purchases
    pos = np.searchsorted(users, bought["user"]).clip(0, k - 1)
    mine = (users[pos] == bought["user"]) & (bought["ts"] < t0[pos])
    e = np.flatnonzero(mine & (rng.random(len(pos)) < share[pos] / 2))
    _refunds(w, bought["user"][e], t0[pos[e]] + _uniform(rng, 0, 3, len(e)) * _DAY,
             bought["item"][e], bought["amount"][e], bought["pm"][e], code, 3600)


def _scalper_bot(w: _World, users: np.ndarray, t0: np.ndarray, code: int,
                 pool: np.ndarray) -> None:
    rng, k = w.rng, len(users)
    n_sess = rng.integers(1, 5, k)
    s = np.repeat(np.arange(k), n_sess)
    us, ns = users[s], len(s)
    st = t0[s] + _ragged_arange(n_sess) * _uniform(rng, 0.5, 3, ns) * _DAY
    hosting = (rng.random(k) < 0.6)[s]
    ctx = _context(w, us, (rng.random(k) < 0.7)[s], hosting & (rng.random(ns) < 0.5), hosting)
    m = np.flatnonzero(rng.random(ns) < 0.4)
    _login(w, us[m], st[m] - _uniform(rng, 3, 20, len(m)), _take(ctx, m), code)
    period = _uniform(rng, 0.7, 6.0, k)
    jitter = _uniform(rng, 0.005, 0.03, k) * period
    own, n_own = _user_targets(rng, pool, k, 3)
    n_ev = np.clip(np.round(_lognormal(rng, 80, 0.7, ns)), 25, 400).astype(np.int64)
    n_buy = rng.integers(1, 6, ns)
    steps = n_ev + n_buy  # browse steps, then checkouts, all at the bot's period
    e = np.repeat(np.arange(ns), steps)
    gap = np.maximum(rng.normal(period[s[e]], jitter[s[e]]), 0.2)
    gap[_ragged_arange(steps) == 0] = 0.0
    ets = st[e] + _ragged_cumsum(gap, steps)
    item = _choose(rng, own, n_own, s[e])
    cat = (item // _ITEM_BASE - 1).astype(np.int16)
    browse = _ragged_arange(steps) < n_ev[e]
    kind = rng.choice(3, size=len(e), p=[0.70, 0.25, 0.05])
    etype = np.array([_E["view"], _E["cart"], _E["remove_cart"]])[kind]
    i = np.flatnonzero(browse)
    w.log.add(user=us[e[i]], ts=ets[i], etype=etype[i], item=item[i], cat=cat[i], planted=code,
              **_take(ctx, e[i]))
    i = np.flatnonzero(~browse)
    ui = us[e[i]]
    pm = np.where(rng.random(len(i)) < 0.3, _new_cards(rng, len(i)), w.pm[ui])
    status = np.where(rng.random(len(i)) < 0.15, _S["declined"], _S["ok"])
    _purchase(w.log, rng, ui, ets[i], _take(ctx, e[i]), item[i], _price(item[i]), pm, status, code,
              w.address[ui], pay_gap=period[s[e[i]]] * 0.5)


def _promo_abuse(w: _World, users: np.ndarray, t0: np.ndarray, code: int,
                 pool: None = None) -> None:
    rng, k = w.rng, len(users)
    sizes = rng.integers(2, 7, k)
    n_rings = int(np.searchsorted(np.cumsum(sizes), k)) + 1
    ring = np.repeat(np.arange(n_rings), sizes[:n_rings])[:k]
    member = _ragged_arange(sizes[:n_rings])[:k]
    members = np.bincount(ring, minlength=n_rings)
    r_country = rng.choice(len(COUNTRIES), size=n_rings, p=_C_SHARE).astype(np.int8)
    r_dev = w.ids.new("device", n_rings)
    r_dev2 = np.where(rng.random(n_rings) < 0.3, w.ids.new("device", n_rings), r_dev)
    r_ip = _random_ip(rng, r_country)
    r_addr = w.ids.new("address", n_rings)
    r_card = _new_cards(rng, n_rings)
    r_coupon = _pick(rng, np.array([5.0, 10.0, 15.0, 20.0]), n_rings)
    shared_ip, shared_addr, shared_card = (rng.random((3, n_rings)) < [[0.7], [0.6], [0.5]])
    country = r_country[ring]
    ctx = {"session": w.ids.new("session", k),
           "device": np.where(member % 2 == 1, r_dev2[ring], r_dev[ring]),
           "ip": np.where(shared_ip[ring], r_ip[ring], _random_ip(rng, country)), "country": country}
    address = np.where(shared_addr[ring], r_addr[ring], w.ids.new("address", k))
    pm = np.where(shared_card[ring], r_card[ring],
                  np.where(rng.random(k) < 0.5, _PM["wallet"], _new_cards(rng, k)))
    r_start = _uniform(rng, 0.05, 0.8, n_rings) * w.window
    t_sign = r_start[ring] + _ragged_cumsum(_lognormal(rng, 2 * 3600, 1.2, k, 300, 2 * _DAY), members)
    w.log.add(user=users, ts=t_sign, etype=_E["signup"], status=_S["ok"], planted=code, **ctx)
    n_view = rng.integers(0, 4, k)
    v = np.repeat(np.arange(k), n_view)
    vts = t_sign[v] + 30 + _ragged_cumsum(_lognormal(rng, 25, 0.7, len(v), 3, 200), n_view)
    cat = _pick(rng, _CHEAP, k).astype(np.int16)
    item = _items(rng, cat)
    w.log.add(user=users[v], ts=vts, etype=_E["view"], item=item[v], cat=cat[v], planted=code,
              **_take(ctx, v))
    t_end = t_sign.copy()
    np.maximum.at(t_end, v, vts)
    t_coupon = t_end + _uniform(rng, 30, 120, k)
    coupon = r_coupon[ring]
    w.log.add(user=users, ts=t_coupon, etype=_E["coupon_redeem"], amount=coupon, planted=code,
              status=np.where(rng.random(k) < 0.1, _S["rejected"], _S["ok"]), **ctx)
    net = np.round(_uniform(rng, 1, 15, k), 2)
    _purchase(w.log, rng, users, t_coupon + _uniform(rng, 5, 30, k), ctx, item, net, pm, _S["ok"],
              code, address)
    again = np.flatnonzero(rng.random(k) < 0.3)  # back for a second go at the coupon
    actx = {**_take(ctx, again), "session": w.ids.new("session", len(again))}
    t_again = t_coupon[again] + _uniform(rng, 1, 5, len(again)) * _DAY
    _login(w, users[again], t_again, actx, code)
    w.log.add(user=users[again], ts=t_again + _uniform(rng, 20, 200, len(again)),
              etype=_E["coupon_redeem"], amount=coupon[again], planted=code,
              status=np.where(rng.random(len(again)) < 0.8, _S["rejected"], _S["ok"]), **actx)
    w.cutoff[users] = -np.inf  # fresh accounts: nothing before the signup


def _search_manipulation(w: _World, users: np.ndarray, t0: np.ndarray, code: int,
                         pool: np.ndarray) -> None:
    rng, k = w.rng, len(users)
    n_burst = rng.integers(1, 4, k)
    b = np.repeat(np.arange(k), n_burst)
    ub, nb = users[b], len(b)
    bt = t0[b] + _ragged_arange(n_burst) * _uniform(rng, 0.3, 2, nb) * _DAY
    ctx = _context(w, ub, rng.random(nb) < 0.5, rng.random(nb) < 0.15, rng.random(nb) < 0.2)
    m = np.flatnonzero(rng.random(nb) < 0.4)
    _login(w, ub[m], bt[m] - _uniform(rng, 5, 30, len(m)), _take(ctx, m), code)
    target = pool[rng.integers(0, len(pool), k)]
    tcat = (target // _ITEM_BASE - 1).astype(np.int16)
    query = _queries(rng, tcat, brand_p=0.8)
    n_q = np.clip(np.round(_lognormal(rng, 40, 0.6, nb)), 12, 200).astype(np.int64)
    q = np.repeat(np.arange(nb), n_q)
    uq = b[q]
    qts = bt[q] + _ragged_cumsum(_lognormal(rng, 8, 0.6, len(q), 2, 60), n_q)
    n_cat, n_adj = len(CATEGORIES), len(ADJECTIVES) + 1  # near-duplicates: another adjective
    brand = query[uq] // n_cat // n_adj
    variant = (brand * n_adj + rng.integers(0, n_adj, len(q))) * n_cat + tcat[uq]
    text = np.where(rng.random(len(q)) < 0.2, variant, query[uq])
    w.log.add(user=ub[q], ts=qts, etype=_E["search"], query=text, planted=code, **_take(ctx, q))
    click = _uniform(rng, 0.3, 0.95, k)
    c = np.flatnonzero(rng.random(len(q)) < click[uq])
    w.log.add(user=ub[q[c]], ts=qts[c] + _uniform(rng, 1.5, 6, len(c)), etype=_E["view"],
              item=target[uq[c]], cat=tcat[uq[c]], planted=code, **_take(ctx, q[c]))

def _fraud_ring(w: _World, users: np.ndarray, t0: np.ndarray, code: int,
                pool: None = None) -> None:
    """Established accounts working together; each member alone looks mild."""
    rng, k = w.rng, len(users)
    sizes = rng.integers(3, 9, k)
    n_rings = int(np.searchsorted(np.cumsum(sizes), k)) + 1
    ring = np.repeat(np.arange(n_rings), sizes[:n_rings])[:k]
    r_dev = w.ids.new("device", n_rings)
    r_dev2 = np.where(rng.random(n_rings) < 0.5, w.ids.new("device", n_rings), r_dev)
    r_addr = w.ids.new("address", n_rings)
    r_card = _new_cards(rng, n_rings)
    r_card2 = np.where(rng.random(n_rings) < 0.5, _new_cards(rng, n_rings), r_card)
    # members start within a few days of each other, from the ring's first member's start
    r_start = np.full(n_rings, np.inf)
    np.minimum.at(r_start, ring, t0)
    start = np.minimum(r_start[ring] + _uniform(rng, 0, 4, k) * _DAY, w.window - 3600)
    second = rng.random(k) < 0.5
    ctx = _context(w, users, np.zeros(k, bool), rng.random(k) < 0.15)
    ctx["device"] = np.where(second, r_dev2[ring], r_dev[ring])
    _login(w, users, start, ctx, code)
    moved = np.flatnonzero(rng.random(k) < 0.4)   # some point their account at the drop address
    w.log.add(user=users[moved], ts=start[moved] + _uniform(rng, 20, 300, len(moved)),
              etype=_E["address_change"], address=r_addr[ring[moved]], status=_S["ok"], planted=code,
              **_take(ctx, moved))
    wanted = np.concatenate([_HIGH_VALUE, _DIGITAL])
    n_view = rng.integers(0, 4, k)
    v = np.repeat(np.arange(k), n_view)
    cat = _pick(rng, wanted, len(v)).astype(np.int16)
    vts = start[v] + 60 + _ragged_cumsum(_lognormal(rng, 30, 0.7, len(v), 3, 300), n_view)
    w.log.add(user=users[v], ts=vts, etype=_E["view"], item=_items(rng, cat), cat=cat, planted=code,
              **_take(ctx, v))
    n_buy = 1 + (rng.random(k) < 0.4).astype(np.int64)
    b = np.repeat(np.arange(k), n_buy)
    bts = start[b] + 400 + _ragged_cumsum(_lognormal(rng, 300, 0.8, len(b), 30, 3600), n_buy)
    item = _items(rng, _pick(rng, wanted, len(b)).astype(np.int16))
    ring_card = np.where(second[b], r_card2[ring[b]], r_card[ring[b]])
    pm = np.where(rng.random(len(b)) < 0.6, ring_card, w.pm[users[b]])
    address = np.where(rng.random(len(b)) < 0.7, r_addr[ring[b]], w.address[users[b]])
    status = np.where(rng.random(len(b)) < 0.1, _S["declined"], _S["ok"])
    _purchase(w.log, rng, users[b], bts, _take(ctx, b), item, _price(item), pm, status, code, address)


def _compromised_item(w: _World, users: np.ndarray, t0: np.ndarray, code: int,
                      pool: np.ndarray) -> None:
    """Ordinary-looking purchases of one of a few cash-out listings; the item is the signal."""
    rng, k = w.rng, len(users)
    ctx = _context(w, users, rng.random(k) < 0.2, np.zeros(k, bool))
    item = pool[rng.integers(0, len(pool), k)]
    cat = (item // _ITEM_BASE - 1).astype(np.int16)
    _login(w, users, t0, ctx, code)
    v = np.flatnonzero(rng.random(k) < 0.7)
    w.log.add(user=users[v], ts=t0[v] + _uniform(rng, 30, 300, len(v)), etype=_E["view"], item=item[v],
              cat=cat[v], planted=code, **_take(ctx, v))
    n_buy = 1 + rng.binomial(2, 0.3, k)
    b = np.repeat(np.arange(k), n_buy)
    bts = t0[b] + 400 + _ragged_cumsum(_lognormal(rng, 600, 1.0, len(b), 30, 2 * _DAY), n_buy)
    pm = np.where(rng.random(len(b)) < 0.4, _new_cards(rng, len(b)), w.pm[users[b]])
    _purchase(w.log, rng, users[b], bts, _take(ctx, b), item[b], _price(item[b]), pm, _S["ok"], code,
              w.address[users[b]])


# ------------------------------------------------------------------------------ the registry
REGISTRY: dict[str, Pattern] = {  # order = planted codes: append new patterns at the end
    "account_takeover": Pattern(_account_takeover, (
        "Someone else gets into an established account: a login from a device the user never used, "
        "usually from another country (30% from the home country through a local proxy), often "
        "after a run of failed logins (credential stuffing). Within minutes they change the "
        "password and/or email, add a shipping address and sometimes a card, glance at a few "
        "high-value items and buy 1-4 of them shipped to the new address. The owner's own activity "
        "stops there; half of the owners come back hours later and fail to log in on their usual "
        "device."
    )),
    "order_brushing": Pattern(_order_brushing, (
        "Fake orders placed to pump a seller's sales rank: 1-3 bursts of 3-15 quick purchases of "
        "the same few obscure items (shared with other brushing accounts), little or no browsing "
        "before each, 15 s - 7 min apart, paid mostly by wallet or gift card, followed 0.5-3 days "
        "later by a burst of reviews of those items."
    ), TargetPool(_CHEAP, 30)),
    "card_testing": Pattern(_card_testing, (
        "Stolen card numbers checked on the account: one session (often a new device, sometimes "
        "abroad) with 4-60 payment attempts seconds apart, each with a different card_xxxx, "
        "tiny amounts (one fixed amount or random cents-to-dollars), 55-95% declined, cards "
        "added through payment-method changes, usually after a cheap digital-goods checkout; "
        "half end with a larger purchase on a card that worked."
    )),
    "fake_reviews": Pattern(_fake_reviews, (
        "Paid or incentivised reviews without a purchase: 1-2 bursts of 4-30 reviews, 10 s - 10 min "
        "apart, of a few target items (shared with other fake reviewers) the account never bought; "
        "a view before the review only sometimes; often a new device."
    ), TargetPool(_REVIEWED, 40)),
    "refund_abuse": Pattern(_refund_abuse, (
        "Buying to get the money back: 3-10 purchases of mid/high-value items over a few days, "
        "then refund requests for 60-100% of them (and for some earlier purchases) hours to days "
        "after each, mostly granted."
    )),
    "scalper_bot": Pattern(_scalper_bot, (
        "A bot on the account during limited drops: 1-4 sessions of 25-400 views, carts and "
        "remove-from-carts of a few hot items at machine-regular gaps (a fixed period of 0.7-6 s "
        "with <3% jitter), no searches, often a new device on a hosting IP, ending in 1-5 quick "
        "checkouts of the hot items."
    ), TargetPool(_HOT, 10, popular=True)),
    "promo_abuse": Pattern(_promo_abuse, (
        "Rings of 2-6 fresh accounts made to farm the new-user coupon: each signs up (same device, "
        "often the same IP, shipping address and card as the rest of its ring, minutes to days "
        "apart), redeems the welcome coupon and buys one cheap item priced just above it; some come "
        "back to try the coupon again (mostly rejected). No history before the signup."
    )),
    "search_manipulation": Pattern(_search_manipulation, (
        "Bursts of 12-200 searches of the same (or nearly the same) query seconds apart, each "
        "usually followed by a click on one target item, to push that item up the search ranking "
        "or trending queries; 1-3 bursts, no purchases."
    ), TargetPool(np.arange(40), 30)),
    "fraud_ring": Pattern(_fraud_ring, (
        "Rings of 3-8 established accounts (normal history before and after) that work together: "
        "within a few days of each other each logs in once from one of the ring's 1-2 devices, "
        "sometimes points its address at the ring's drop address, glances at a few high-value or "
        "gift-card items and buys 1-2 of them, shipped to the drop address (70%) and paid with one "
        "of the ring's 1-2 cards (60%). Each member alone looks mild (one new device, one "
        "purchase); the shared device, address and card are the signal."
    )),
    "compromised_item": Pattern(_compromised_item, (
        "A hijacked or colluding seller's listing used to cash out stolen payment methods (the "
        "handbook's compromised terminal, for a shop): the pattern's users buy one of 2 obscure "
        "digital-goods / electronics items 1-3 times, after a login (20% from a new device) and "
        "mostly a view, paid with their usual method or a new card (40%). Every purchase looks "
        "ordinary; what gives it away is that the item's other buyers are fraud."
    ), TargetPool(np.concatenate([_DIGITAL, _HIGH_VALUE]), 2)),
}
PATTERNS: dict[str, str] = {name: p.description for name, p in REGISTRY.items()}
PATTERN_NAMES: tuple[str, ...] = tuple(REGISTRY)  # index = planted code


# ------------------------------------------------------------------------------- planting
def _fraud_start(rng: np.random.Generator, w: _World, users: np.ndarray) -> np.ndarray:
    """When the fraud begins: after the user's first session, leaving room for it in the window."""
    lo = 0.3 * w.window
    hi = w.window - 2 * _DAY if w.window >= 5 * _DAY else 0.75 * w.window
    t = lo + rng.random(len(users)) * (hi - lo)
    return np.minimum(np.maximum(t, w.first_seen[users] + 3600), hi)


def plant(world: _World, fraud_rate: float, patterns: tuple[str, ...]) -> np.ndarray:
    """Plant the fraud: round(fraud_rate * users) positives drawn at random, split evenly over
    `patterns` (names of `REGISTRY`); returns each user's pattern code (-1: normal user)."""
    rng, n = world.rng, len(world.cutoff)
    n_fraud = int(round(fraud_rate * n))
    pattern = np.full(n, -1, dtype=np.int64)
    if not n_fraud:
        return pattern
    chosen = rng.permutation(n)[:n_fraud]
    per = np.full(len(patterns), n_fraud // len(patterns))
    per[: n_fraud % len(patterns)] += 1
    for name, users in zip(patterns, np.split(chosen, np.cumsum(per)[:-1])):
        if len(users) == 0:
            continue
        users = np.sort(users)
        code = PATTERN_NAMES.index(name)
        pattern[users] = code
        t0 = _fraud_start(rng, world, users)
        entry = REGISTRY[name]
        pool = entry.pool.draw(rng) if entry.pool is not None else None
        entry.plant(world, users, t0, code, pool)
    return pattern
