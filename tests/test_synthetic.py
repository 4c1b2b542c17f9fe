"""Tests of the synthetic generator: determinism, contract, prevalence, one signature per fraud
pattern, overlap with normal users, and calibration against the real Taobao sample."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from analyst.synthetic import EVENT_TYPES, PATTERNS, SyntheticConfig, generate, write
from models.contracts import EVENT_COLUMNS

SHARED = Path(__file__).resolve().parents[2] / "shared"
TAOBAO = SHARED / "data" / "taobao_userbehavior_head" / "UserBehavior_head.csv"
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
MONEY = {"checkout", "payment", "refund_request", "refund", "coupon_redeem"}


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    # 10% fraud so every pattern has ~50 users to check
    return generate(SyntheticConfig(n_users=4000, seed=11, fraud_rate=0.10))


@pytest.fixture(scope="module")
def planted(data) -> pd.DataFrame:
    events, _ = data
    marks = events["attrs"].dropna().map(lambda text: json.loads(text)["planted"])
    return events.loc[marks.index].assign(pattern=marks)


def _users(labels: pd.DataFrame, pattern: str) -> set[str]:
    return set(labels.loc[labels["pattern"] == pattern, "user_id"])


def _normal(data) -> pd.DataFrame:
    events, labels = data
    return events[events["user_id"].isin(set(labels.loc[labels["label"] == 0, "user_id"]))]


# ----------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_frames_and_other_seed_differs():
    config = SyntheticConfig(n_users=300, seed=3)
    ev1, lab1 = generate(config)
    ev2, lab2 = generate(config)
    pd.testing.assert_frame_equal(ev1, ev2)
    pd.testing.assert_frame_equal(lab1, lab2)
    ev3, lab3 = generate(SyntheticConfig(n_users=300, seed=4))
    assert len(ev3) != len(ev1) or not ev3["ts"].equals(ev1["ts"])
    assert not lab3["label"].equals(lab1["label"])


# -------------------------------------------------------------------------------- contract
def test_events_follow_the_schema(data):
    events, labels = data
    assert tuple(events.columns) == EVENT_COLUMNS
    assert events["ts"].dtype == np.dtype("datetime64[us]")
    assert events["amount"].dtype == np.float64
    for col in set(EVENT_COLUMNS) - {"ts", "amount"}:
        assert pd.api.types.is_string_dtype(events[col]), col
    assert events["user_id"].str.fullmatch(r"u\d{6}").all()
    assert events["user_id"].str.len().max() <= 8
    assert set(events["event_type"]) <= set(EVENT_TYPES)
    users = events["user_id"].to_numpy()
    assert (users[1:] >= users[:-1]).all()
    same_user = users[1:] == users[:-1]
    assert (np.diff(events["ts"].to_numpy())[same_user] >= np.timedelta64(0)).all()
    start = pd.Timestamp("2026-09-01")
    assert events["ts"].min() >= start and events["ts"].max() < start + pd.Timedelta(days=30)
    money = events["event_type"].isin(MONEY)
    assert events.loc[money, "amount"].notna().all() and (events.loc[money, "amount"] > 0).all()
    assert events.loc[~money, "amount"].isna().all()
    assert (events["currency"].notna() == money).all()
    assert events.loc[events["event_type"] == "search", "query"].notna().all()
    pm = events["payment_method"].dropna()
    assert pm.str.fullmatch(r"card_\d{4}|wallet|paypal|bank_transfer|gift_card").all()
    assert events.loc[events["event_type"].isin({"login", "payment"}), "status"].notna().all()
    assert set(events["status"].dropna()) <= {"ok", "failed", "declined", "rejected"}
    for text in events["attrs"].dropna().unique():
        assert json.loads(text)["planted"] in PATTERNS


def test_labels_one_row_per_user_with_truth(data, planted):
    events, labels = data
    assert list(labels.columns) == ["user_id", "label", "as_of", "source", "pattern", "decided_at"]
    assert labels["user_id"].is_unique and len(labels) == 4000
    assert set(labels["user_id"]) == set(events["user_id"])
    assert set(labels["label"]) == {0, 1} and labels["label"].dtype == np.int64
    assert (labels["source"] == "synthetic").all()
    assert (labels["pattern"].notna() == (labels["label"] == 1)).all()
    last = events.groupby("user_id")["ts"].max()
    assert (labels.set_index("user_id")["as_of"] == last.reindex(labels["user_id"]).to_numpy()).all()
    # planted events belong to positives of the same pattern, and every positive has some
    truth = labels.set_index("user_id")["pattern"]
    assert (truth.reindex(planted["user_id"]).to_numpy() == planted["pattern"].to_numpy()).all()
    assert set(planted["user_id"]) == set(labels.loc[labels["label"] == 1, "user_id"])
    # a positive's label is known (decided_at) 7 days after its first planted event; normals: none
    first = planted.groupby("user_id")["ts"].min()
    decided = labels.set_index("user_id")["decided_at"]
    assert (decided.reindex(first.index) == first + pd.Timedelta(days=7)).all()
    assert decided[labels.set_index("user_id")["label"] == 0].isna().all()


def test_fraud_lies_in_the_window_after_normal_history(data, planted):
    events, labels = data
    first_fraud = planted.groupby("user_id")["ts"].min()
    last_event = events.groupby("user_id")["ts"].max()
    assert (last_event.reindex(first_fraud.index) >= first_fraud).all()
    unplanted = events[events["attrs"].isna()]
    first_normal = unplanted.groupby("user_id")["ts"].min()
    for pattern in PATTERNS:
        users = sorted(_users(labels, pattern))
        had_history = first_normal.reindex(users) < first_fraud.reindex(users)
        if pattern == "promo_abuse":  # fresh accounts
            assert not had_history.any()
        else:
            assert had_history.mean() > 0.95, pattern


def test_prevalence_and_pattern_split():
    _, labels = generate(SyntheticConfig(n_users=1000, seed=5))
    assert labels["label"].sum() == 30                          # default 3%
    counts = labels["pattern"].value_counts()
    assert set(counts.index) == set(PATTERNS) and counts.max() - counts.min() <= 1
    _, labels = generate(SyntheticConfig(n_users=500, seed=5, fraud_rate=0.2,
                                         patterns=("card_testing", "promo_abuse")))
    assert labels["label"].sum() == 100
    assert set(labels["pattern"].dropna()) == {"card_testing", "promo_abuse"}
    events, labels = generate(SyntheticConfig(n_users=200, seed=5, fraud_rate=0.0))
    assert labels["label"].sum() == 0 and events["attrs"].isna().all()


@pytest.mark.parametrize("kwargs", [
    {"n_users": 0}, {"n_users": 1_000_000}, {"fraud_rate": 1.0}, {"fraud_rate": -0.1},
    {"patterns": ("bogus",)}, {"patterns": ()}, {"start": "not a date"}, {"days": 1}, {"seed": -1},
])
def test_bad_config_raises_value_error_naming_the_value(kwargs):
    with pytest.raises(ValueError, match=re.escape(next(iter(kwargs)))):
        SyntheticConfig(**kwargs)


# --------------------------------------------------------------------- pattern signatures
def test_account_takeover_signature(data, planted):
    events, labels = data
    users = _users(labels, "account_takeover")
    changed, foreign = 0, 0
    for user in users:
        tl = events[events["user_id"] == user]
        fraud = planted[planted["user_id"] == user]
        login = fraud[(fraud["event_type"] == "login") & (fraud["status"] == "ok")].iloc[0]
        before = tl[tl["ts"] < login["ts"]]
        before = before[before["attrs"].isna()]
        assert login["device_id"] not in set(before["device_id"])        # a device never used
        assert (fraud["event_type"] == "checkout").sum() >= 1
        after = tl[(tl["ts"] > login["ts"]) & tl["attrs"].isna()]
        assert after.empty                                               # owner locked out
        kinds = set(fraud["event_type"])
        changed += bool(kinds & {"password_change", "email_change", "address_change",
                                 "payment_method_change"})
        foreign += login["country"] != before["country"].mode().iloc[0]
        assert fraud["ts"].max() - login["ts"] < pd.Timedelta(days=3)
    assert changed / len(users) > 0.8 and 0.4 < foreign / len(users) < 0.95


def test_order_brushing_signature(data, planted):
    _, labels = data
    fraud = planted[planted["pattern"] == "order_brushing"]
    checkouts = fraud[fraud["event_type"] == "checkout"]
    assert checkouts.groupby("user_id").size().min() >= 3
    gaps = checkouts.groupby("session_id")["ts"].diff().dropna()
    assert gaps.median() < pd.Timedelta(minutes=3) and gaps.max() < pd.Timedelta(minutes=8)
    views = fraud[fraud["event_type"] == "view"]
    assert len(views) < 0.5 * len(checkouts)                             # little browsing
    reviews = fraud[fraud["event_type"] == "review"]
    assert len(reviews) > 0.5 * len(checkouts)
    bought = set(zip(checkouts["user_id"], checkouts["item_id"]))
    assert all(pair in bought for pair in zip(reviews["user_id"], reviews["item_id"]))
    # the same few items, shared across brushing accounts
    assert checkouts["item_id"].nunique() <= 30
    per_item = checkouts.groupby("item_id")["user_id"].nunique()
    assert per_item.max() >= 3
    assert len(set(checkouts["user_id"])) == len(_users(labels, "order_brushing"))


def test_card_testing_signature(data, planted):
    fraud = planted[planted["pattern"] == "card_testing"]
    payments = fraud[fraud["event_type"] == "payment"]
    assert (payments.loc[payments["amount"] <= 10, "status"] != "ok").mean() > 0.6
    for _, tries in payments.groupby("user_id"):
        small = tries[tries["amount"] <= 10]
        assert len(small) >= 4 and (small["status"] == "declined").any()
        assert small["payment_method"].nunique() >= 0.7 * len(small)     # a new card each time
        assert small["ts"].max() - small["ts"].min() < pd.Timedelta(hours=3)
    normal = _normal(data)
    declined = normal[(normal["event_type"] == "payment") & (normal["status"] == "declined")]
    assert declined.groupby("user_id").size().max() < 4


def test_fake_reviews_signature(data, planted):
    events, labels = data
    fraud = planted[planted["pattern"] == "fake_reviews"]
    reviews = fraud[fraud["event_type"] == "review"]
    assert reviews.groupby("user_id").size().min() >= 4
    checkouts = events[events["event_type"] == "checkout"]
    bought = set(zip(checkouts["user_id"], checkouts["item_id"]))
    assert not any(pair in bought for pair in zip(reviews["user_id"], reviews["item_id"]))
    # normal reviews mostly follow a purchase of the item inside the window
    normal = _normal(data)
    normal_reviews = normal[normal["event_type"] == "review"]
    pairs = zip(normal_reviews["user_id"], normal_reviews["item_id"])
    with_purchase = [pair in bought for pair in pairs]
    assert 0.5 < np.mean(with_purchase) < 1.0


def test_refund_abuse_signature(data, planted):
    events, _ = data
    fraud = planted[planted["pattern"] == "refund_abuse"]
    requests = fraud[fraud["event_type"] == "refund_request"]
    assert requests.groupby("user_id").size().min() >= 2
    checkouts = events[events["event_type"] == "checkout"]
    bought = set(zip(checkouts["user_id"], checkouts["item_id"]))
    assert all(pair in bought for pair in zip(requests["user_id"], requests["item_id"]))

    def refund_rate(ev: pd.DataFrame) -> pd.Series:
        counts = pd.crosstab(ev["user_id"], ev["event_type"])
        return counts["refund_request"] / counts["checkout"].clip(lower=1)

    abusers = events[events["user_id"].isin(set(requests["user_id"]))]
    assert refund_rate(abusers).median() > 0.4
    assert refund_rate(_normal(data)).mean() < 0.1


def test_scalper_bot_signature(data, planted):
    fraud = planted[planted["pattern"] == "scalper_bot"]
    assert not (fraud["event_type"] == "search").any()
    browse = fraud[fraud["event_type"].isin({"view", "cart", "remove_cart"})]
    for _, session in browse.groupby("session_id"):
        gaps = session["ts"].diff().dropna().dt.total_seconds()
        assert len(session) >= 25
        assert gaps.std() / gaps.mean() < 0.06                            # machine-regular
        assert session["item_id"].nunique() <= 3
    assert (fraud.groupby("user_id")["event_type"].apply(lambda s: (s == "checkout").any())).all()
    # long normal sessions are not regular
    normal = _normal(data)
    views = normal[normal["event_type"] == "view"]
    gaps = views.groupby("session_id")["ts"].diff().dt.total_seconds()
    stats = gaps.groupby(views["session_id"]).agg(["count", "mean", "std"])
    long = stats[stats["count"] >= 24]
    assert len(long) > 20 and (long["std"] / long["mean"]).median() > 0.5


def test_promo_abuse_signature(data, planted):
    events, labels = data
    users = _users(labels, "promo_abuse")
    abuse = events[events["user_id"].isin(users)]
    assert abuse["attrs"].notna().all()                                   # fresh accounts only
    first = abuse.groupby("user_id")["event_type"].first()
    assert (first == "signup").all()
    kinds = abuse.groupby("user_id")["event_type"].agg(set)
    assert kinds.map(lambda k: {"coupon_redeem", "checkout", "payment"} <= k).all()
    devices = abuse.groupby("device_id")["user_id"].nunique()
    shared = set(abuse.loc[abuse["device_id"].isin(devices[devices > 1].index), "user_id"])
    assert len(shared) >= 0.8 * len(users)                                # rings share devices
    # normal new accounts redeem welcome coupons too, alone
    normal = _normal(data)
    newcomers = set(normal.loc[normal["event_type"] == "signup", "user_id"])
    assert len(newcomers) > 50
    welcomed = normal["user_id"].isin(newcomers) & (normal["event_type"] == "coupon_redeem")
    assert normal.loc[welcomed, "user_id"].nunique() > 5


def test_search_manipulation_signature(data, planted):
    fraud = planted[planted["pattern"] == "search_manipulation"]
    assert not fraud["event_type"].isin({"checkout", "payment"}).any()
    for _, ev in fraud.groupby("user_id"):
        searches = ev[ev["event_type"] == "search"]
        assert len(searches) >= 12
        assert searches["query"].value_counts().iloc[0] >= 0.6 * len(searches)
        assert ev.loc[ev["event_type"] == "view", "item_id"].nunique() <= 1
        assert searches["ts"].diff().dt.total_seconds().median() < 30


# ------------------------------------------------------------------------------- overlap
def test_normal_users_overlap_with_every_fraud_signal(data, planted):
    normal = _normal(data)
    n_users = normal["user_id"].nunique()

    def share(mask: pd.Series) -> float:
        return normal.loc[mask, "user_id"].nunique() / n_users

    ev, st = normal["event_type"], normal["status"]
    assert share((ev == "login") & (st == "failed")) > 0.02
    assert share((ev == "payment") & (st == "declined")) > 0.01
    assert share(ev == "refund_request") > 0.02
    assert share(ev == "password_change") > 0.01 and share(ev == "address_change") > 0.02
    assert share(ev == "payment_method_change") > 0.02 and share(ev == "coupon_redeem") > 0.02
    devices = normal.groupby("user_id")["device_id"].nunique()
    countries = normal.groupby("user_id")["country"].nunique()
    assert (devices > 1).mean() > 0.2 and (countries > 1).mean() > 0.02
    # no single value gives a pattern away: what fraud uses, normal users use too
    def octets(ips: pd.Series) -> set[str]:
        return {ip.split(".")[0] for ip in ips.dropna().unique()}

    assert octets(planted["ip"]) <= octets(normal["ip"])
    for col in ("event_type", "status", "category", "country", "currency"):
        assert set(planted[col].dropna()) <= set(normal[col].dropna()), col
    methods = set(normal["payment_method"].dropna().str[:5])
    assert set(planted["payment_method"].dropna().str[:5]) <= methods
    def kinds(ev: pd.DataFrame) -> set[tuple[str, str]]:
        pairs = ev[["event_type", "status"]].fillna("").drop_duplicates()
        return set(pairs.itertuples(index=False, name=None))

    assert kinds(planted) <= kinds(normal)


# ----------------------------------------------------------------------------- writing
def test_write_round_trips_as_zstd_parquet(tmp_path):
    events, labels = generate(SyntheticConfig(n_users=200, seed=9))
    ev_path, lab_path = write(events, labels, tmp_path / "out")
    assert ev_path.name == "events.parquet" and lab_path.name == "labels.parquet"
    assert pq.ParquetFile(ev_path).metadata.row_group(0).column(0).compression == "ZSTD"
    pd.testing.assert_frame_equal(pd.read_parquet(ev_path), events)
    pd.testing.assert_frame_equal(pd.read_parquet(lab_path), labels)
    with pytest.raises(ValueError, match="missing columns"):
        write(events.drop(columns=["ts"]), labels, tmp_path / "bad")


def test_committed_sample_is_reproducible():
    if not (SAMPLE / "events.parquet").exists():
        pytest.skip("no committed sample_data")
    events, labels = generate(SyntheticConfig(n_users=3000, seed=7))
    committed = pd.read_parquet(SAMPLE / "events.parquet")
    assert set(committed.columns) == set(events.columns)
    # same values per column; the committed file may predate the contract's column order
    pd.testing.assert_frame_equal(committed[list(events.columns)], events)
    pd.testing.assert_frame_equal(pd.read_parquet(SAMPLE / "labels.parquet"), labels)


# ------------------------------------------------------------------------- calibration
@pytest.fixture(scope="module")
def taobao() -> pd.DataFrame:
    if not TAOBAO.exists():
        pytest.skip(f"reference data {TAOBAO} is absent")
    df = pd.read_csv(TAOBAO, header=None, names=["user", "item", "cat", "behavior", "ts"])
    df = df.dropna(subset=["ts"])
    return df[df["user"] != df["user"].iloc[-1]]  # the last user is cut off


def test_behaviour_mix_matches_taobao(data, taobao):
    real = taobao["behavior"].value_counts(normalize=True)
    normal = _normal(data)
    ours = normal["event_type"].value_counts()
    ours = ours[["view", "cart", "favourite", "checkout"]]
    ours = ours / ours.sum()
    for theirs, mine in (("pv", "view"), ("cart", "cart"), ("fav", "favourite"), ("buy", "checkout")):
        assert abs(ours[mine] - real[theirs]) / real[theirs] < 0.2, (mine, ours[mine], real[theirs])


def test_activity_matches_taobao(data, taobao):
    real = taobao.groupby("user").size()
    normal = _normal(data)
    ours = normal.groupby("user_id").size()
    assert abs(ours.median() / real.median() - 1) < 0.2
    assert abs(ours.mean() / real.mean() - 1) < 0.2
    assert 0.5 < np.log(ours).std() / np.log(real).std() < 1.5
    # gaps inside a session (< 30 min) and the local hour-of-day profile
    real_gaps = taobao.sort_values(["user", "ts"]).groupby("user")["ts"].diff().dropna()
    real_gaps = real_gaps[real_gaps <= 1800]
    browse = normal[normal["event_type"].isin({"view", "cart", "favourite", "checkout"})]
    gaps = browse.groupby("user_id")["ts"].diff().dropna().dt.total_seconds()
    gaps = gaps[gaps <= 1800]
    assert abs(np.log(gaps.median() / real_gaps.median())) < np.log(1.5)
    real_hours = np.bincount(((taobao["ts"].astype("int64") // 3600 + 8) % 24), minlength=24)
    uk = browse[browse["country"] == "GB"]                                # UTC+0 users
    hours = np.bincount(uk["ts"].dt.hour, minlength=24)
    assert np.corrcoef(real_hours, hours)[0, 1] > 0.85


def test_sample_readme_documents_columns_and_patterns():
    readme = (SAMPLE / "README.md").read_text()
    for column in EVENT_COLUMNS:
        assert f"| `{column}` |" in readme, column
    for name, description in PATTERNS.items():
        assert f"### `{name}`" in readme and description in readme, name
    for event_type in EVENT_TYPES:
        assert f"`{event_type}`" in readme, event_type
