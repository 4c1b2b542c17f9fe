"""The shared world of the generator: its vocabularies, calibration constants, countries and
catalogue, and the integer-coded event log every other module writes into.

Nothing here draws random numbers. `_Log` holds events as blocks of integer-coded numpy columns
(`_COLS` names them, with their dtype and null code); strings are made only at the end, by
`analyst.synthetic.output`. `_World` is the per-user context (home country, ip, device, payment
method, ...) that normal behaviour builds and the fraud patterns build on.

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

from dataclasses import dataclass

import numpy as np

# ------------------------------------------------------------------ vocabularies and codes
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

# ------------------------------------------------------------ calibration (see the docstring)
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


# ========================================================================== the event log
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
