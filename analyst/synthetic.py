"""Seeded generator of realistic e-commerce behaviour with named, planted fraud patterns.

`generate(SyntheticConfig(...))` returns `(events, labels)`: an events frame with exactly the columns
of `analyst.schema.EVENT_COLUMNS`, sorted by (user_id, ts), and one label row per user
(`source="synthetic"`, `pattern` naming the fraud pattern of each positive). `write` stores both
as zstd Parquet. Same config (seed included) -> identical frames.

Everything is vectorised over users with numpy (one `Generator`, draws in a fixed order); strings
are made only at the end by pyarrow from integer codes. 100k users (~10.8M events) take well
under a minute on two cores (bench/generate.py).

Normal behaviour
----------------
Browsing follows the real Taobao sample (calibration below): per user a number of sessions and a
per-user session-length level (heavy users have more *and* longer sessions), sessions placed on a
few active days at hours drawn from Taobao's local hour-of-day profile (shifted by the user's time
zone), lognormal gaps inside a session, and a per-user view:cart:favourite:buy mix. Categories are
Zipf-like (users return to three favourites), items Zipf-like inside a category, cart and buy
often repeat the item just viewed. Around this sits what a real platform logs: signups (6% of
users are new accounts), logins (with typo failures), searches with query text, checkout +
payment (card_xxxx / wallet / paypal / ...; declines and retries), coupons, remove-from-cart,
reviews and refunds days later, password / email / address / payment-method changes, a second
device, a new phone, household devices shared between accounts, trips abroad, mobile IP churn.
So every field a fraud pattern touches also varies among normal users.

Fraud
-----
`fraud_rate` of the users (rounded) are positives, split evenly over `patterns`. Each pattern is a
function below (`_account_takeover`, ...) documented in `PATTERNS` and sample_data/README.md; it
injects events marked `attrs = {"planted": "<pattern>"}` at a time inside the window after some
normal history (promo abuse: fresh accounts by design). Intensities vary per user (number of
attempts, gaps, share declined, devices...). Account takeover ends the owner's normal activity.

Calibration (derived once from /work/shared/data/taobao_userbehavior_head/UserBehavior_head.csv:
84,287 complete events of 814 users, the truncated last user dropped; hard-coded below, nothing
here reads that file at run time)
- behaviour mix pv : cart : fav : buy = 89.80% : 5.33% : 2.79% : 2.08% (75,872 : 4,497 : 2,356 :
  1,750 in the full head). Per-user view share: mean 0.887, sd 0.103; 69% of users buy at least
  once, buys per buyer median 2, mean 3.1. Per-user shares = base share * lognormal factor
  (sd 1.2 cart, 1.2 fav, 0.7 buy; renormalised): simulated on Taobao's events-per-user this gives
  view share sd 0.08, 61% buyers, buys per buyer median 2, mean 3.6 (a Dirichlet fitted to the
  view-share sd instead leaves only ~31% buyers).
- events per user: median 78, mean 104, p10 19, p90 226 (log-mean 4.27, log-sd 0.92).
- sessions (a gap > 30 min starts a new one): per user median 15 (log-mean 2.68, log-sd 0.60);
  events per session median 3, mean 6.0, 31% single-event; corr(log events, log sessions) 0.79;
  per-user mean session length log-sd 0.58.  A Nelder-Mead fit of this model to those quantiles
  gives sessions = round(exp(2.74 + 0.50 z1)) and actions per session =
  ceil(exp(0.85 + 0.51 z2 + 1.06 e)) with corr(z1, z2) = 0.5. Taobao logs only pv/cart/fav/buy;
  we add logins, searches, payments, ... (~20% of events), so we use 2.60 for the first constant
  to match the *total* events per user (ours: median 75, mean ~105 vs Taobao's 78 / 104).
- gaps inside a session: p10 10 s, median 54 s, p90 337 s; log(gap + 1) mean 4.05, sd 1.34.
- users are active on 7 of 9 days (~2.1 sessions per active day).
- hour of day (local, UTC+8): `HOUR_PROFILE` (peak 21:00 8.9%, trough 03:00 0.45%).
- categories: 2,910 seen, counts ~ rank^-0.96; items: 55k seen, flat (74% seen once).
- 53% of buys and 16% of carts follow a view of the same item by the same user.
Counts are per observed window (Taobao: 9 days; here `days`, default 30), so a 30-day window
has the same events per user spread over more days: between-session gaps are longer than
Taobao's (median 5.9 h), everything inside a session is the same.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analyst.schema import EVENT_COLUMNS

PATTERNS: dict[str, str] = {
    "account_takeover": (
        "Someone else gets into an established account: a login from a device the user never used, "
        "usually from another country (30% from the home country through a local proxy), often "
        "after a run of failed logins (credential stuffing). Within minutes they change the "
        "password and/or email, add a shipping address and sometimes a card, glance at a few "
        "high-value items and buy 1-4 of them shipped to the new address. The owner's own activity "
        "stops there; half of the owners come back hours later and fail to log in on their usual "
        "device."
    ),
    "order_brushing": (
        "Fake orders placed to pump a seller's sales rank: 1-3 bursts of 3-15 quick purchases of "
        "the same few obscure items (shared with other brushing accounts), little or no browsing "
        "before each, 15 s - 7 min apart, paid mostly by wallet or gift card, followed 0.5-3 days "
        "later by a burst of reviews of those items."
    ),
    "card_testing": (
        "Stolen card numbers checked on the account: one session (often a new device, sometimes "
        "abroad) with 4-60 payment attempts seconds apart, each with a different card_xxxx, "
        "tiny amounts (one fixed amount or random cents-to-dollars), 55-95% declined, cards "
        "added through payment-method changes, usually after a cheap digital-goods checkout; "
        "half end with a larger purchase on a card that worked."
    ),
    "fake_reviews": (
        "Paid or incentivised reviews without a purchase: 1-2 bursts of 4-30 reviews, 10 s - 10 min "
        "apart, of a few target items (shared with other fake reviewers) the account never bought; "
        "a view before the review only sometimes; often a new device."
    ),
    "refund_abuse": (
        "Buying to get the money back: 3-10 purchases of mid/high-value items over a few days, "
        "then refund requests for 60-100% of them (and for some earlier purchases) hours to days "
        "after each, mostly granted."
    ),
    "scalper_bot": (
        "A bot on the account during limited drops: 1-4 sessions of 25-400 views, carts and "
        "remove-from-carts of a few hot items at machine-regular gaps (a fixed period of 0.7-6 s "
        "with <3% jitter), no searches, often a new device on a hosting IP, ending in 1-5 quick "
        "checkouts of the hot items."
    ),
    "promo_abuse": (
        "Rings of 2-6 fresh accounts made to farm the new-user coupon: each signs up (same device, "
        "often the same IP, shipping address and card as the rest of its ring, minutes to days "
        "apart), redeems the welcome coupon and buys one cheap item priced just above it; some come "
        "back to try the coupon again (mostly rejected). No history before the signup."
    ),
    "search_manipulation": (
        "Bursts of 12-200 searches of the same (or nearly the same) query seconds apart, each "
        "usually followed by a click on one target item, to push that item up the search ranking "
        "or trending queries; 1-3 bursts, no purchases."
    ),
}

EVENT_TYPES: tuple[str, ...] = (
    "signup", "login", "logout", "search", "view", "cart", "remove_cart", "favourite",
    "coupon_redeem", "checkout", "payment", "refund_request", "refund", "review",
    "password_change", "email_change", "address_change", "payment_method_change",
)
STATUSES: tuple[str, ...] = ("ok", "failed", "declined", "rejected")
PAYMENT_METHODS: tuple[str, ...] = ("wallet", "paypal", "bank_transfer", "gift_card")  # + card_xxxx
CURRENCY = "USD"

_E = {name: i for i, name in enumerate(EVENT_TYPES)}
_S = {name: i for i, name in enumerate(STATUSES)}
_PM = {name: i for i, name in enumerate(PAYMENT_METHODS)}
_CARD = 10_000  # payment-method code of card_xxxx is _CARD + xxxx
_DAY = 86_400.0

# ------------------------------------------------------------------------ calibration (see top)
ACTION_MIX = np.array([0.8980, 0.0533, 0.0279, 0.0208])  # view, cart, favourite, buy
ACTION_MIX_SD = np.array([0.0, 1.2, 1.2, 0.7])  # per-user lognormal factor on each share
SESSIONS_LOG_MEAN, SESSIONS_LOG_SD = 2.60, 0.50
SESSION_LEN_LOG_MEAN, SESSION_LEN_USER_SD, SESSION_LEN_SD = 0.85, 0.51, 1.06
SESSION_LEN_CORR = 0.5
GAP_LOG_MEAN, GAP_LOG_SD = 4.05, 1.34  # log(seconds + 1) between events of a session
SESSIONS_PER_ACTIVE_DAY = 2.1
HOUR_PROFILE = np.array([  # share of Taobao events per local hour 0..23
    0.0350, 0.0157, 0.0080, 0.0045, 0.0054, 0.0075, 0.0160, 0.0265, 0.0326, 0.0403, 0.0447, 0.0459,
    0.0405, 0.0509, 0.0499, 0.0553, 0.0539, 0.0460, 0.0494, 0.0652, 0.0784, 0.0885, 0.0793, 0.0609,
])
HOUR_PROFILE = HOUR_PROFILE / HOUR_PROFILE.sum()
CATEGORY_ZIPF = 0.75   # category weight ~ rank^-s (Taobao's -0.96 is over 2,910 categories)
ITEM_ZIPF = 0.8        # item rank inside a category
# P(cart/favourite/buy repeats the item of the previous action in the session): Taobao 16-53%
REPEAT_ITEM = np.array([0.08, 0.35, 0.40, 0.50])

# ------------------------------------------------------------------- platform behaviour (ours)
NEW_ACCOUNT_RATE = 0.06       # normal users who sign up inside the window
FAILED_LOGIN_RATE = 0.04      # typo before a successful login
DECLINE_RATE = 0.03           # normal payment declined (then retried 75% of the time)
COUPON_RATE, WELCOME_COUPON_RATE = 0.07, 0.6
REVIEW_RATE, REFUND_RATE = 0.12, 0.035
PASSWORD_CHANGE, EMAIL_CHANGE, ADDRESS_CHANGE, PAYMENT_CHANGE = 0.03, 0.01, 0.05, 0.06
SECOND_DEVICE, NEW_DEVICE, SHARED_DEVICE, TRAVEL, VPN = 0.40, 0.08, 0.03, 0.04, 0.03
IP_CHURN = 0.25               # share of sessions on a fresh (mobile) IP of the home country

# name, UTC offset (h), share of users, first octets of its IP ranges
COUNTRIES: tuple[tuple[str, int, float, tuple[int, ...]], ...] = (
    ("US", -5, 0.30, (23, 24, 50, 66, 67, 68, 73, 98)), ("GB", 0, 0.09, (2, 51, 81, 86)),
    ("DE", 1, 0.08, (5, 46, 79, 93)), ("FR", 1, 0.06, (37, 78, 90)), ("IN", 5, 0.08, (49, 106, 117)),
    ("BR", -3, 0.06, (177, 179, 189)), ("CA", -5, 0.05, (70, 142, 174)),
    ("JP", 9, 0.05, (60, 126, 153)),
    ("AU", 10, 0.04, (1, 101, 110)), ("MX", -6, 0.04, (187, 189, 201)), ("ES", 1, 0.04, (83, 88, 95)),
    ("IT", 1, 0.04, (79, 87, 151)), ("NL", 1, 0.02, (31, 62, 145)), ("PL", 1, 0.02, (31, 83, 178)),
    ("NG", 1, 0.015, (41, 102, 105)), ("ID", 7, 0.015, (36, 103, 114)),
)
HOSTING_OCTETS = (45, 104, 138, 159, 185, 192)  # data-centre ranges (VPNs, bots)
_C_NAME = tuple(c[0] for c in COUNTRIES)
_C_TZ = np.array([c[1] for c in COUNTRIES])
_C_SHARE = np.array([c[2] for c in COUNTRIES]) / sum(c[2] for c in COUNTRIES)

# Catalogue, most popular first: (category, median price in USD). Query text is made from these
# nouns, an optional adjective and an optional brand.
CATEGORIES: tuple[tuple[str, float], ...] = (
    ("t_shirt", 18), ("phone_case", 15), ("snacks", 6), ("dress", 50), ("sneakers", 95),
    ("face_cream", 30), ("earbuds", 60), ("jeans", 45), ("hoodie", 38), ("lipstick", 18),
    ("charger", 20), ("socks", 9), ("coffee_beans", 15), ("water_bottle", 16), ("handbag", 70),
    ("smartphone", 450), ("shampoo", 9), ("storage_box", 18), ("sweater", 40), ("headphones", 80),
    ("mug", 10), ("skirt", 30), ("vitamins", 20), ("jacket", 90), ("perfume", 65),
    ("novel", 14), ("backpack", 50), ("bed_sheets", 40), ("usb_cable", 9), ("chocolate", 8),
    ("running_shoes", 110), ("pet_food", 35), ("smartwatch", 220), ("power_bank", 30), ("towel", 15),
    ("sunglasses", 40), ("yoga_mat", 25), ("lamp", 40), ("video_game", 55), ("tea", 10),
    ("pillow", 25), ("nail_polish", 8), ("wallet", 35), ("frying_pan", 35), ("plush_toy", 16),
    ("keyboard", 45), ("mouse", 25), ("scarf", 20), ("hat", 18), ("sunscreen", 15),
    ("diapers", 28), ("boots", 120), ("speaker", 70), ("candle", 14), ("lego_set", 60),
    ("protein_powder", 40), ("tablet", 350), ("underwear", 15), ("belt", 25), ("laptop", 900),
    ("gift_card", 50), ("sandals", 35), ("blender", 55), ("coffee_maker", 90), ("earrings", 60),
    ("cat_litter", 18), ("makeup_brush", 14), ("notebook", 6), ("curtains", 35), ("dumbbells", 45),
    ("mobile_top_up", 20), ("monitor", 250), ("puzzle", 18), ("necklace", 120), ("air_fryer", 95),
    ("hair_dryer", 45), ("doll", 25), ("knife_set", 60), ("memory_card", 18), ("slippers", 15),
    ("olive_oil", 12), ("bracelet", 80), ("rug", 70), ("swimsuit", 30), ("app_credit", 15),
    ("fitness_tracker", 70), ("cookbook", 22), ("ebook", 9), ("dog_toy", 10), ("baby_bottle", 12),
    ("camera", 600), ("game_console", 480), ("watch", 250), ("ring", 150), ("vase", 22),
    ("lunch_box", 14), ("rc_car", 45), ("pen_set", 10), ("tv", 550), ("rice_cooker", 70),
    ("streaming_subscription", 12), ("wall_clock", 25), ("football", 20), ("car_phone_holder", 15),
    ("graphics_card", 650), ("dash_cam", 70), ("tent", 120), ("stroller", 250), ("textbook", 60),
    ("drill", 80), ("tool_set", 55), ("tire_inflator", 45), ("concert_ticket", 120),
    ("software_license", 60), ("bicycle", 400),
)
_CAT_NAME = tuple(c[0] for c in CATEGORIES)
_CAT_PRICE = np.array([c[1] for c in CATEGORIES], dtype=np.float64)
_CAT_W = np.arange(1, len(CATEGORIES) + 1, dtype=np.float64) ** -CATEGORY_ZIPF
_CAT_W /= _CAT_W.sum()
_CAT_ITEMS = (400 + 40_000 * _CAT_W / _CAT_W.max()).astype(np.int64)  # catalogue size per category
_ITEM_BASE = 100_000  # item id = (category + 1) * _ITEM_BASE + rank
_C = {name: i for i, name in enumerate(_CAT_NAME)}
_HIGH_VALUE = np.array([_C[c] for c in ("smartphone", "laptop", "tablet", "camera", "smartwatch",
                                         "gift_card", "game_console", "watch", "ring", "necklace",
                                         "headphones", "tv", "graphics_card")])
_DIGITAL = np.array([_C[c] for c in ("gift_card", "mobile_top_up", "app_credit", "ebook",
                                      "streaming_subscription", "software_license")])
_HOT = np.array([_C[c] for c in ("sneakers", "game_console", "graphics_card", "concert_ticket")])
_CHEAP = np.array([_C[c] for c in ("phone_case", "socks", "snacks", "mug", "usb_cable", "t_shirt",
                                    "nail_polish", "notebook", "charger", "towel", "candle")])
_REVIEWED = np.array([_C[c] for c in ("earbuds", "face_cream", "vitamins", "phone_case", "charger",
                                       "power_bank", "protein_powder", "perfume", "lipstick")])
_REFUNDABLE = np.array([_C[c] for c in ("dress", "jacket", "sneakers", "handbag", "headphones",
                                         "smartwatch", "boots", "perfume", "speaker", "earbuds",
                                         "running_shoes", "sunglasses", "tablet")])

ADJECTIVES: tuple[str, ...] = (
    "cheap", "wireless", "black", "white", "red", "kids", "women", "men", "mini", "portable",
    "organic", "leather", "vintage", "2026", "sale", "best", "large", "waterproof", "gift", "pro",
)
BRANDS: tuple[str, ...] = (
    "acme", "zenith", "nova", "lumo", "orbit", "kaito", "vela", "brio", "tundra", "pixel",
    "maple", "quartz",
)


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate: users, seed, share of fraud users, observed window, fraud patterns."""

    n_users: int = 2000
    seed: int = 7
    fraud_rate: float = 0.03
    start: str = "2026-09-01"      # first day of the observed window (UTC)
    days: int = 30
    patterns: tuple[str, ...] = tuple(PATTERNS)

    def __post_init__(self) -> None:
        if not isinstance(self.n_users, (int, np.integer)) or not 1 <= self.n_users <= 999_999:
            raise ValueError(f"n_users={self.n_users!r}: expected an integer in 1..999999")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r}: expected a non-negative integer")
        if not 0.0 <= float(self.fraud_rate) < 1.0:
            raise ValueError(f"fraud_rate={self.fraud_rate!r}: expected 0 <= fraud_rate < 1")
        if not isinstance(self.days, (int, np.integer)) or not 2 <= self.days <= 366:
            raise ValueError(f"days={self.days!r}: expected an integer in 2..366")
        try:
            ts = pd.Timestamp(self.start)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"start={self.start!r}: expected a date such as '2026-09-01'") from exc
        if ts is pd.NaT or ts.tzinfo is not None:
            raise ValueError(f"start={self.start!r}: expected a naive UTC date such as '2026-09-01'")
        unknown = [p for p in self.patterns if p not in PATTERNS]
        if unknown or len(set(self.patterns)) != len(self.patterns):
            raise ValueError(
                f"patterns={self.patterns!r}: expected distinct names from {list(PATTERNS)}")
        if self.fraud_rate > 0 and not self.patterns:
            raise ValueError(f"patterns={self.patterns!r}: fraud_rate > 0 needs at least one pattern")


# ================================================================================ internals
_COLS: dict[str, tuple[type, float]] = {  # column -> (dtype, null code)
    "user": (np.int32, -1), "ts": (np.float64, np.nan), "etype": (np.int8, -1),
    "session": (np.int64, -1), "item": (np.int64, -1), "cat": (np.int16, -1),
    "amount": (np.float64, np.nan), "query": (np.int32, -1), "device": (np.int64, -1),
    "ip": (np.int64, -1), "country": (np.int8, -1), "status": (np.int8, -1), "pm": (np.int64, -1),
    "address": (np.int64, -1), "planted": (np.int8, -1),
}


class _Log:
    """Events as blocks of integer-coded numpy columns; `ts` in seconds from the window start."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, np.ndarray]] = []

    def add(self, **cols) -> None:
        n = len(cols["user"])
        if n == 0:
            return
        block = {}
        for name, value in cols.items():
            dtype, _ = _COLS[name]
            arr = np.asarray(value)
            if arr.ndim == 0:
                arr = np.broadcast_to(arr, (n,))
            block[name] = arr.astype(dtype, copy=False)
        self.blocks.append(block)

    def columns(self) -> dict[str, np.ndarray]:
        total = sum(len(b["user"]) for b in self.blocks)
        out = {}
        for name, (dtype, null) in _COLS.items():
            col = np.empty(total, dtype=dtype)
            i = 0
            for b in self.blocks:
                n = len(b["user"])
                col[i:i + n] = b[name] if name in b else null
                i += n
            out[name] = col
        return out


class _Ids:
    """Fresh ids for sessions, devices and addresses (one counter each)."""

    def __init__(self) -> None:
        self._next = {"session": 1, "device": 1, "address": 1}

    def new(self, kind: str, k: int) -> np.ndarray:
        start = self._next[kind]
        self._next[kind] = start + int(k)
        return np.arange(start, start + int(k), dtype=np.int64)

    def shuffled(self, kind: str, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Ids replaced through a random bijection, so their order tells nothing (nulls kept)."""
        table = np.append(rng.permutation(self._next[kind] - 1) + 1, -1)  # table[-1] maps null
        return table[np.where(values < 0, -1, values - 1)]


@dataclass
class _World:
    """Per-user context the pattern generators build on (arrays indexed by user)."""

    rng: np.random.Generator
    log: _Log
    ids: _Ids
    window: float              # seconds
    country: np.ndarray
    home_ip: np.ndarray
    device: np.ndarray         # primary device
    pm: np.ndarray             # usual payment method code
    address: np.ndarray
    first_seen: np.ndarray     # end of the user's first session (s)
    cutoff: np.ndarray         # normal events at/after this time are dropped (takeover, promo)
    purchases: dict[str, np.ndarray]  # normal paid checkouts: user, ts, item, cat, amount, pm


# ----------------------------------------------------------------------------- small helpers
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


# ============================================================================ normal behaviour
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


# ============================================================================= fraud patterns
# Each generator gets the world, its users (sorted indices), the time the fraud starts for each
# (seconds into the window) and its planted code; it adds events marked planted=code.
def _login(w: _World, users, ts, ctx, code, status: str = "ok") -> None:
    w.log.add(user=users, ts=ts, etype=_E["login"], status=_S[status], planted=code, **ctx)


def _user_targets(rng: np.random.Generator, pool: np.ndarray, k: int, most: int) -> np.ndarray:
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


def _account_takeover(w: _World, users: np.ndarray, t0: np.ndarray, code: int) -> None:
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


def _order_brushing(w: _World, users: np.ndarray, t0: np.ndarray, code: int, pool: np.ndarray) -> None:
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


def _card_testing(w: _World, users: np.ndarray, t0: np.ndarray, code: int) -> None:
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


def _fake_reviews(w: _World, users: np.ndarray, t0: np.ndarray, code: int, pool: np.ndarray) -> None:
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


def _refund_abuse(w: _World, users: np.ndarray, t0: np.ndarray, code: int) -> None:
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


def _scalper_bot(w: _World, users: np.ndarray, t0: np.ndarray, code: int, pool: np.ndarray) -> None:
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


def _promo_abuse(w: _World, users: np.ndarray, t0: np.ndarray, code: int) -> None:
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


def _pool(rng: np.random.Generator, cats: np.ndarray, size: int, popular: bool) -> np.ndarray:
    """Target items shared by the users of one pattern (hot drops are popular, the rest obscure)."""
    cat = _pick(rng, cats, size).astype(np.int16)
    if popular:
        return (cat.astype(np.int64) + 1) * _ITEM_BASE + rng.integers(0, 3, size)
    return _items(rng, cat, popular=False)


_POOLS = {  # pattern -> (categories, size, popular)
    "order_brushing": (_CHEAP, 30, False),
    "fake_reviews": (_REVIEWED, 40, False),
    "scalper_bot": (_HOT, 10, True),
    "search_manipulation": (np.arange(40), 30, False),
}
_GENERATORS = {
    "account_takeover": _account_takeover, "order_brushing": _order_brushing,
    "card_testing": _card_testing, "fake_reviews": _fake_reviews, "refund_abuse": _refund_abuse,
    "scalper_bot": _scalper_bot, "promo_abuse": _promo_abuse,
    "search_manipulation": _search_manipulation,
}


def _fraud_start(rng: np.random.Generator, w: _World, users: np.ndarray) -> np.ndarray:
    """When the fraud begins: after the user's first session, leaving room for it in the window."""
    lo = 0.3 * w.window
    hi = w.window - 2 * _DAY if w.window >= 5 * _DAY else 0.75 * w.window
    t = lo + rng.random(len(users)) * (hi - lo)
    return np.minimum(np.maximum(t, w.first_seen[users] + 3600), hi)


# ================================================================================ assembling
def _take_strings(codes: np.ndarray, table: list[str] | tuple[str, ...]) -> pa.Array:
    """Strings table[code], null where code < 0."""
    mask = codes < 0
    idx = pa.array(np.where(mask, 0, codes).astype(np.int32), mask=mask)
    return pc.take(pa.array(list(table), pa.string()), idx)


def _render(values: np.ndarray, text) -> pa.Array:
    """Strings of a coded column: `text` renders each distinct value once (values < 0: null)."""
    codes, uniques = pd.factorize(values)
    return pc.take(text(uniques), pa.array(codes.astype(np.int32)))


def _python_text(fmt):
    """A `text` for `_render` from a per-value Python formatter (for columns with few values)."""
    return lambda uniques: pa.array([fmt(int(v)) if v >= 0 else None for v in uniques], pa.string())


def _prefixed(values: np.ndarray, prefix: str, width: int = 0) -> pa.Array:
    """'<prefix><number>' (zero padded to width), null where value < 0."""
    text = pc.cast(pa.array(values, mask=values < 0), pa.string())
    if width:
        text = pc.utf8_lpad(text, width=width, padding="0")
    return pc.binary_join_element_wise(prefix, text, "")


def _dotted(ip: np.ndarray) -> pa.Array:
    """IPv4 numbers as dotted text, null where ip < 0."""
    mask = ip < 0
    parts = [pc.cast(pa.array((ip >> shift) & 255, mask=mask), pa.string())
             for shift in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*parts, ".")


def _pm_text(code: int) -> str:
    return f"card_{code - _CARD:04d}" if code >= _CARD else PAYMENT_METHODS[code]


def _events_frame(cols: dict[str, np.ndarray], start: pd.Timestamp) -> pd.DataFrame:
    """The coded, sorted columns as the events frame of the contract (str columns, ts in us)."""
    ts = (start.value // 1000 + cols["ts_us"]).astype("datetime64[us]")
    names = list(PATTERNS)
    arrays = {
        "user_id": _render(cols["user"].astype(np.int64) + 1, lambda v: _prefixed(v, "u", 6)),
        "ts": pa.array(ts),
        "event_type": _take_strings(cols["etype"], EVENT_TYPES),
        "session_id": _render(cols["session"], lambda v: _prefixed(v, "s")),
        "item_id": _render(cols["item"], lambda v: _prefixed(v, "i")),
        "category": _take_strings(cols["cat"], _CAT_NAME),
        "amount": pa.array(cols["amount"], from_pandas=True),
        "currency": _take_strings(np.where(np.isnan(cols["amount"]), -1, 0), (CURRENCY,)),
        "query": _render(cols["query"], _python_text(_query_text)),
        "device_id": _render(cols["device"], lambda v: _prefixed(v, "d", 7)),
        "ip": _render(cols["ip"], _dotted),
        "country": _take_strings(cols["country"], _C_NAME),
        "status": _take_strings(cols["status"], STATUSES),
        "payment_method": _render(cols["pm"], _python_text(_pm_text)),
        "address_id": _render(cols["address"], lambda v: _prefixed(v, "a")),
        "attrs": _render(cols["planted"], _python_text(lambda c: json.dumps({"planted": names[c]}))),
    }
    assert tuple(arrays) == EVENT_COLUMNS
    return pa.table(arrays).to_pandas()


def generate(config: SyntheticConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthetic (events, labels) for `config`; the same config gives identical frames."""
    if not isinstance(config, SyntheticConfig):
        raise ValueError(f"config={config!r}: expected a SyntheticConfig")
    n = int(config.n_users)
    rng = np.random.default_rng(config.seed)
    log, ids = _Log(), _Ids()
    world = _normal_behaviour(rng, n, int(config.days), log, ids)

    n_fraud = int(round(config.fraud_rate * n))
    pattern = np.full(n, -1, dtype=np.int64)
    if n_fraud:
        chosen = rng.permutation(n)[:n_fraud]
        per = np.full(len(config.patterns), n_fraud // len(config.patterns))
        per[: n_fraud % len(config.patterns)] += 1
        for name, users in zip(config.patterns, np.split(chosen, np.cumsum(per)[:-1])):
            if len(users) == 0:
                continue
            users = np.sort(users)
            code = list(PATTERNS).index(name)
            pattern[users] = code
            t0 = _fraud_start(rng, world, users)
            extra = (_pool(rng, *_POOLS[name]),) if name in _POOLS else ()
            _GENERATORS[name](world, users, t0, code, *extra)

    cols = log.columns()
    ts = cols["ts"]
    in_window = (ts >= 0) & (ts < world.window)
    keep = in_window & ((cols["planted"] >= 0) | (ts < world.cutoff[cols["user"]]))
    cols = {key: value[keep] for key, value in cols.items()}
    cols["ts_us"] = np.floor(cols.pop("ts") * 1e6).astype(np.int64)
    span = int(world.window * 1e6) + 1
    if n * span < 2 ** 62:  # one int64 key (user, ts): a stable argsort keeps generation order on ties
        order = np.argsort(cols["user"].astype(np.int64) * span + cols["ts_us"], kind="stable")
    else:
        order = np.lexsort((cols["ts_us"], cols["user"]))
    cols = {key: value[order] for key, value in cols.items()}
    for kind in ("session", "device", "address"):
        cols[kind] = ids.shuffled(kind, cols[kind], rng)
    start = pd.Timestamp(config.start)
    events = _events_frame(cols, start)

    user = cols["user"]
    last = np.flatnonzero(np.append(user[1:] != user[:-1], True))
    if len(last) != n:  # every generator leaves each user at least one event
        raise RuntimeError(f"{n - len(last)} users ended with no events")
    labels = pd.DataFrame({
        "user_id": pd.array([f"u{i:06d}" for i in range(1, n + 1)], dtype="str"),
        "label": (pattern >= 0).astype(np.int64),
        "as_of": events["ts"].to_numpy()[last],
        "source": "synthetic",
        "pattern": pd.array([list(PATTERNS)[c] if c >= 0 else None for c in pattern], dtype="str"),
    })
    return events, labels


def write(events: pd.DataFrame, labels: pd.DataFrame, out_dir: str | Path) -> tuple[Path, Path]:
    """Write events.parquet and labels.parquet (zstd) into out_dir; returns their paths."""
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"events is missing columns {missing}")
    if not {"user_id", "label"} <= set(labels.columns):
        raise ValueError(f"labels columns {list(labels.columns)}: expected at least user_id, label")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir={str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "events.parquet", out / "labels.parquet"
    table = pa.Table.from_pandas(events[list(EVENT_COLUMNS)], preserve_index=False)
    pq.write_table(table, paths[0], compression="zstd", row_group_size=256_000,
                   use_dictionary=[c for c in EVENT_COLUMNS if c != "ts"],
                   column_encoding={"ts": "DELTA_BINARY_PACKED"})  # sorted per user: ~30% smaller
    pq.write_table(pa.Table.from_pandas(labels, preserve_index=False), paths[1], compression="zstd")
    return paths
