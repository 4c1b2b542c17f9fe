"""Normal behaviour: what every user does, fraudster or not, before any pattern is planted.

Browsing follows the real Taobao sample (calibration in `analyst.synthetic.world`): per user a
number of sessions and a per-user session-length level (heavy users have more *and* longer
sessions), sessions placed on a few active days at hours drawn from Taobao's local hour-of-day
profile (shifted by the user's time zone), lognormal gaps inside a session, and a per-user
view:cart:favourite:buy mix. Categories are Zipf-like (users return to three favourites), items
Zipf-like inside a category, cart and buy often repeat the item just viewed. Around this sits
what a real platform logs: signups (6% of users are new accounts), logins (with typo failures),
searches with query text, checkout + payment (card_xxxx / wallet / paypal / ...; declines and
retries), coupons, remove-from-cart, reviews and refunds days later, password / email / address
/ payment-method changes, a second device, a new phone, household devices shared between
accounts, trips abroad, mobile IP churn. So every field a fraud pattern touches also varies
among normal users.
"""
from __future__ import annotations

import math

import numpy as np

from analyst.synthetic.draws import (
    _categories, _items, _lognormal, _other_country, _pick, _price, _purchase, _queries,
    _ragged_arange, _ragged_cumsum, _random_ip, _starts, _take, _uniform, _usual_pm,
)
from analyst.synthetic.world import (
    ACTION_MIX, ACTION_MIX_SD, ADDRESS_CHANGE, COUNTRIES, COUPON_RATE, DECLINE_RATE, EMAIL_CHANGE,
    FAILED_LOGIN_RATE, GAP_LOG_MEAN, GAP_LOG_SD, HOUR_PROFILE, IP_CHURN, NEW_ACCOUNT_RATE,
    NEW_DEVICE, PASSWORD_CHANGE, PAYMENT_CHANGE, REFUND_RATE, REPEAT_ITEM, REVIEW_RATE,
    SECOND_DEVICE, SESSIONS_LOG_MEAN, SESSIONS_LOG_SD, SESSIONS_PER_ACTIVE_DAY, SESSION_LEN_CORR,
    SESSION_LEN_LOG_MEAN, SESSION_LEN_SD, SESSION_LEN_USER_SD, SHARED_DEVICE, TRAVEL, VPN,
    WELCOME_COUPON_RATE, _C_SHARE, _C_TZ, _DAY, _E, _Ids, _Log, _S, _World,
)


def _normal_behaviour(rng: np.random.Generator, n: int, days: int, log: _Log, ids: _Ids) -> _World:
    """Browsing sessions calibrated on Taobao plus the account events a platform logs."""
    window = days * _DAY
    u_all = np.arange(n)

    # --- who the users are
    country = rng.choice(len(COUNTRIES), size=n, p=_C_SHARE).astype(np.int8)
    tz = _C_TZ[country]
    home_ip = _random_ip(rng, country)
    dev1 = ids.new("device", n)
    has_dev2 = rng.random(n) < SECOND_DEVICE
    dev2 = np.where(has_dev2, ids.new("device", n), -1)
    dev2_ip = home_ip.copy()
    shared = rng.random(n) < SHARED_DEVICE          # a household device of another account
    other = (u_all + rng.integers(1, n, n)) % n if n > 1 else u_all
    dev2 = np.where(shared, dev1[other], dev2)
    dev2_ip = np.where(shared, home_ip[other], dev2_ip)
    p_dev2 = np.where(shared, 0.3, np.where(has_dev2, 0.25, 0.0))
    pm1 = _usual_pm(rng, n)
    pm2 = np.where(rng.random(n) < 0.3, _usual_pm(rng, n), pm1)
    addr1 = ids.new("address", n)
    p_login = _uniform(rng, 0.05, 0.5, n)            # many stay logged in on their phone
    p_search = _uniform(rng, 0.15, 0.75, n)
    g = ACTION_MIX * np.exp(ACTION_MIX_SD * rng.standard_normal((n, 4)) - ACTION_MIX_SD ** 2 / 2)
    mix_cum = np.cumsum(g / g.sum(axis=1, keepdims=True), axis=1)
    fav_cats = _categories(rng, 3 * n).reshape(n, 3)

    # --- how much they do: sessions and session-length level (correlated)
    z1 = rng.standard_normal(n)
    z2 = SESSION_LEN_CORR * z1 + math.sqrt(1 - SESSION_LEN_CORR ** 2) * rng.standard_normal(n)
    n_sess = np.exp(SESSIONS_LOG_MEAN + SESSIONS_LOG_SD * z1)
    n_sess = np.clip(np.round(n_sess), 1, 400).astype(np.int64)
    len_loc = SESSION_LEN_LOG_MEAN + SESSION_LEN_USER_SD * z2
    is_new = rng.random(n) < NEW_ACCOUNT_RATE
    first_day = np.where(is_new, (rng.random(n) * days * 0.85).astype(np.int64), 0)
    avail = days - first_day
    n_sess = np.maximum(1, np.round(n_sess * avail / days)).astype(np.int64)
    n_days = np.clip(np.ceil(n_sess / SESSIONS_PER_ACTIVE_DAY), 1, avail).astype(np.int64)
    day_pool = np.repeat(first_day, n_days) + (
        rng.random(n_days.sum()) * np.repeat(avail, n_days)).astype(np.int64)

    # --- sessions: day, local hour -> UTC, sorted per user
    su = np.repeat(u_all, n_sess)
    S = len(su)
    day = day_pool[np.repeat(_starts(n_days), n_sess) + (rng.random(S) * n_days[su]).astype(np.int64)]
    hour = (rng.choice(24, size=S, p=HOUR_PROFILE) - tz[su]) % 24
    start = np.maximum(day * _DAY + hour * 3600.0 + rng.random(S) * 3600.0, 900.0)
    order = np.lexsort((start, su))
    start = start[order]
    s_first = _starts(n_sess)
    s_last = s_first + n_sess - 1
    sess_id = ids.new("session", S)

    # --- session context: device, ip, country
    newdev_t = np.where(rng.random(n) < NEW_DEVICE, _uniform(rng, 0.1, 0.9, n) * window, np.inf)
    dev_new = ids.new("device", n)
    use2 = rng.random(S) < p_dev2[su]
    device = np.where(use2, dev2[su], np.where(start >= newdev_t[su], dev_new[su], dev1[su]))
    ip = np.where(use2, dev2_ip[su], home_ip[su])
    sess_country = country[su].copy()
    travel = rng.random(n) < TRAVEL
    tr_start = _uniform(rng, 0.05, 0.85, n) * window
    tr_end = tr_start + _uniform(rng, 2, 10, n) * _DAY
    tr_country = _other_country(rng, country)
    away = travel[su] & (start >= tr_start[su]) & (start < tr_end[su])
    sess_country[away] = tr_country[su][away]
    churn = away | (rng.random(S) < IP_CHURN)
    ip = np.where(churn, _random_ip(rng, sess_country), ip)
    vpn = (rng.random(n) < VPN)[su] & (rng.random(S) < 0.5)  # exit node in a data centre anywhere
    exit_country = rng.choice(len(COUNTRIES), size=S, p=_C_SHARE)
    sess_country = np.where(vpn, exit_country, sess_country).astype(np.int8)
    ip = np.where(vpn, _random_ip(rng, sess_country, np.ones(S, dtype=bool)), ip)

    # --- actions inside sessions
    L = np.ceil(np.exp(len_loc[su] + SESSION_LEN_SD * rng.standard_normal(S)))
    L = np.minimum(L, 300).astype(np.int64)
    A = int(L.sum())
    asess = np.repeat(np.arange(S), L)
    apos = _ragged_arange(L)
    au = su[asess]
    atype = (rng.random(A)[:, None] > mix_cum[au]).sum(axis=1).astype(np.int8)  # 0 view .. 3 buy
    atype = np.minimum(atype, 3)
    scat = np.where(rng.random(S) < 0.6, fav_cats[su, rng.integers(0, 3, S)], _categories(rng, S))
    acat = np.where(rng.random(A) < 0.55, scat[asess], _categories(rng, A)).astype(np.int16)
    aitem = _items(rng, acat)
    rep = (apos > 0) & (rng.random(A) < REPEAT_ITEM[atype])
    idx = np.flatnonzero(rep)
    aitem[idx], acat[idx] = aitem[idx - 1], acat[idx - 1]
    gaps = np.clip(np.exp(GAP_LOG_MEAN + GAP_LOG_SD * rng.standard_normal(A)) - 1.0, 1.0, 1700.0)
    gaps[apos == 0] = 0.0
    offs = _ragged_cumsum(gaps, L)
    dur = offs[_starts(L) + L - 1]
    nxt = np.append(start[1:], window)
    nxt[s_last] = window
    limit = np.maximum(0.8 * (nxt - start), 1.0)
    limit = np.minimum(limit, window - start - 1.0)
    scale = np.where(dur > limit, limit / np.maximum(dur, 1e-9), 1.0)
    ats = start[asess] + offs * scale[asess]
    sctx = {"session": sess_id, "device": device, "ip": ip, "country": sess_country}
    actx = _take(sctx, asess)

    names = np.array([_E["view"], _E["cart"], _E["favourite"], _E["checkout"]], dtype=np.int8)
    browse = atype < 3
    log.add(user=au[browse], ts=ats[browse], etype=names[atype[browse]], item=aitem[browse],
            cat=acat[browse], **_take(actx, np.flatnonzero(browse)))

    # --- session heads: signup, failed logins, login, search; logout at the end
    first_sess = np.zeros(S, dtype=bool)
    first_sess[s_first] = True
    signup = first_sess & is_new[su]
    dorder = np.lexsort((start, device, su))  # first session of each (user, device)
    dfirst = np.ones(S, dtype=bool)
    dfirst[1:] = (su[dorder][1:] != su[dorder][:-1]) | (device[dorder][1:] != device[dorder][:-1])
    first_on_device = np.empty(S, dtype=bool)
    first_on_device[dorder] = dfirst
    login = ~signup & ((rng.random(S) < p_login[su]) | first_on_device | away)
    search = rng.random(S) < p_search[su]
    t_search = start - _uniform(rng, 3, 25, S)
    t_login = np.where(search, t_search, start) - _uniform(rng, 5, 40, S)
    first_action = _starts(L)
    q = _queries(rng, acat[first_action])
    m = np.flatnonzero(search)
    log.add(user=su[m], ts=t_search[m], etype=_E["search"], query=q[m], **_take(sctx, m))
    rep_q = m[rng.random(len(m)) < 0.08]  # re-typed or refined the same query
    k = rng.integers(1, 4, len(rep_q))
    rq = np.repeat(rep_q, k)
    log.add(user=su[rq], ts=t_search[rq] + _ragged_cumsum(_uniform(rng, 4, 40, len(rq)), k) * 0.5,
            etype=_E["search"], query=q[rq], **_take(sctx, rq))
    m = np.flatnonzero(login)
    log.add(user=su[m], ts=t_login[m], etype=_E["login"], status=_S["ok"], **_take(sctx, m))
    fails = np.where(rng.random(len(m)) < FAILED_LOGIN_RATE, 1 + (rng.random(len(m)) < 0.2), 0)
    fm = np.repeat(m, fails)
    t_fail = t_login[fm] - _ragged_cumsum(_uniform(rng, 8, 45, len(fm)), fails)
    log.add(user=su[fm], ts=t_fail, etype=_E["login"], status=_S["failed"], **_take(sctx, fm))
    m = np.flatnonzero(signup)
    log.add(user=su[m], ts=t_login[m] - _uniform(rng, 30, 300, len(m)), etype=_E["signup"],
            status=_S["ok"], **_take(sctx, m))
    m = np.flatnonzero(rng.random(S) < 0.05)
    log.add(user=su[m], ts=ats[first_action + L - 1][m] + _uniform(rng, 5, 60, len(m)),
            etype=_E["logout"], **_take(sctx, m))
    mid = np.flatnonzero((apos > 0) & (atype == 0) & (rng.random(A) < 0.05))
    log.add(user=au[mid], ts=ats[mid] - _uniform(rng, 2, 10, len(mid)), etype=_E["search"],
            query=_queries(rng, acat[mid]), **_take(actx, mid))
    rc = np.flatnonzero((atype == 1) & (rng.random(A) < 0.12))
    log.add(user=au[rc], ts=ats[rc] + _uniform(rng, 20, 600, len(rc)), etype=_E["remove_cart"],
            item=aitem[rc], cat=acat[rc], **_take(actx, rc))

    # --- account changes, each inside one of the user's sessions
    addr_t, addr2 = np.full(n, np.inf), addr1.copy()
    pm_t, pm_new = np.full(n, np.inf), pm1.copy()
    for etype, p in (("password_change", PASSWORD_CHANGE), ("email_change", EMAIL_CHANGE),
                     ("address_change", ADDRESS_CHANGE), ("payment_method_change", PAYMENT_CHANGE)):
        who = np.flatnonzero(rng.random(n) < p)
        s = s_first[who] + (rng.random(len(who)) * n_sess[who]).astype(np.int64)
        t = start[s] + _uniform(rng, 10, 120, len(who))
        extra = {}
        if etype == "address_change":
            addr2[who] = extra["address"] = ids.new("address", len(who))
            addr_t[who] = t
        elif etype == "payment_method_change":
            pm_new[who] = extra["pm"] = _usual_pm(rng, len(who))
            pm_t[who] = t
        log.add(user=who, ts=t, etype=_E[etype], status=_S["ok"], **extra, **_take(sctx, s))
        if etype == "password_change":  # forgot it: failed attempts first
            f = np.flatnonzero(rng.random(len(who)) < 0.4)
            log.add(user=who[f], ts=t[f] - _uniform(rng, 30, 150, len(f)), etype=_E["login"],
                    status=_S["failed"], **_take(sctx, s[f]))

    # --- purchases: coupon, checkout, payment (declines, retries)
    bi = np.flatnonzero(atype == 3)
    bu, bts = au[bi], ats[bi]
    bitem, bcat = aitem[bi], acat[bi]
    price = _price(bitem)
    first_buy = np.zeros(len(bi), dtype=bool)
    first_buy[np.unique(bu, return_index=True)[1]] = True
    coupon = rng.random(len(bi)) < np.where(first_buy & is_new[bu], WELCOME_COUPON_RATE, COUPON_RATE)
    discount = _pick(rng, np.array([5.0, 10.0, 15.0, 20.0]), len(bi))
    discount = np.minimum(discount, np.round(price * 0.5, 2))
    amount = np.where(coupon, np.round(price - discount, 2), price)
    bctx = _take(actx, bi)
    c = np.flatnonzero(coupon)
    log.add(user=bu[c], ts=bts[c] - _uniform(rng, 5, 40, len(c)), etype=_E["coupon_redeem"],
            amount=discount[c], status=np.where(rng.random(len(c)) < 0.03, _S["rejected"], _S["ok"]),
            **_take(bctx, c))
    address = np.where(bts >= addr_t[bu], addr2[bu], addr1[bu])
    pm = np.where(bts >= pm_t[bu], pm_new[bu], np.where(rng.random(len(bi)) < 0.2, pm2[bu], pm1[bu]))
    declined = rng.random(len(bi)) < DECLINE_RATE
    error = rng.random(len(bi)) < 0.004
    status = np.where(declined, _S["declined"], np.where(error, _S["failed"], _S["ok"]))
    pay_ts = _purchase(log, rng, bu, bts, bctx, bitem, amount, pm, status, -1, address)
    retry = np.flatnonzero(declined & (rng.random(len(bi)) < 0.75))
    rts = pay_ts[retry] + _lognormal(rng, 90, 0.7, len(retry), 20, 900)
    log.add(user=bu[retry], ts=rts, etype=_E["payment"], item=bitem[retry], cat=bcat[retry],
            amount=amount[retry], pm=np.where(rng.random(len(retry)) < 0.5, pm2[bu[retry]], pm[retry]),
            status=_S["ok"], **_take(bctx, retry))
    paid = (status == _S["ok"]) | np.isin(np.arange(len(bi)), retry)
    pi = np.flatnonzero(paid)
    purchases = {"user": bu[pi], "ts": pay_ts[pi], "item": bitem[pi], "cat": bcat[pi],
                 "amount": amount[pi], "pm": pm[pi]}

    # --- after the purchase: reviews and refunds days later, in short sessions of their own
    home = {"device": dev1, "ip": home_ip, "country": country}

    def aftercare(rows: np.ndarray, ts: np.ndarray, etype: str, **extra) -> None:
        u = bu[rows]
        log.add(user=u, ts=ts, etype=_E[etype], item=bitem[rows], cat=bcat[rows],
                session=ids.new("session", len(rows)),
                **{key: value[u] for key, value in home.items()}, **extra)

    r = pi[rng.random(len(pi)) < REVIEW_RATE]
    aftercare(r, pay_ts[r] + _lognormal(rng, 3 * _DAY, 0.7, len(r), 3600), "review")
    r = pi[rng.random(len(pi)) < REFUND_RATE]
    req_ts = pay_ts[r] + _lognormal(rng, 4 * _DAY, 0.8, len(r), 3600)
    aftercare(r, req_ts, "refund_request", amount=amount[r])
    ok = rng.random(len(r)) < 0.85
    aftercare(r, req_ts + _lognormal(rng, 1.5 * _DAY, 0.5, len(r), 3600), "refund", amount=amount[r],
              pm=pm[r], status=np.where(ok, _S["ok"], _S["rejected"]))
    # reviews and refund requests of items bought before the window
    for etype, p in (("review", 0.03), ("refund_request", 0.01)):
        who = np.flatnonzero(rng.random(n) < p)
        cat = _categories(rng, len(who))
        item = _items(rng, cat)
        extra = {"amount": _price(item)} if etype == "refund_request" else {}
        log.add(user=who, ts=_uniform(rng, 0.02, 0.98, len(who)) * window, etype=_E[etype],
                item=item, cat=cat, session=ids.new("session", len(who)),
                **{key: value[who] for key, value in home.items()}, **extra)

    first_seen = ats[first_action[s_first] + L[s_first] - 1]
    return _World(rng=rng, log=log, ids=ids, window=window, country=country, home_ip=home_ip,
                  device=dev1, pm=pm1, address=addr1, first_seen=first_seen,
                  cutoff=np.full(n, np.inf), purchases=purchases)
