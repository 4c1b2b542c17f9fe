"""models.baselines: as-of aggregate features (checked against a brute-force loop) and the two
baselines' sklearn behaviour and ranking quality on a small planted-fraud set."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from models.baselines import (
    GradientBoostingBaseline, IsolationForestBaseline, binary_labels, user_aggregates,
)


def toy_events(n_users: int = 200, fraud_rate: float = 0.15, seed: int = 0):
    """Normal users browse and pay from one device; fraud users end with a burst of large,
    often declined payments from new devices abroad. Returns (events, labels)."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    t0 = pd.Timestamp("2024-01-01")
    for i in range(n_users):
        uid, fraud = f"u{i:04d}", bool(rng.random() < fraud_rate)
        ts = t0 + pd.Timedelta(hours=float(rng.uniform(0, 24 * 40))) + pd.to_timedelta(
            np.cumsum(rng.exponential(6 * 3600, int(rng.integers(8, 30)))), unit="s")
        country = str(rng.choice(["DE", "FR", "NL"]))
        for t in ts:
            et = str(rng.choice(["login", "view", "cart", "payment"], p=[.2, .5, .15, .15]))
            amt = float(rng.lognormal(3, .5)) if et == "payment" else np.nan
            rows.append((uid, t, et, amt, f"d{i}", country, "ok"))
        t = ts[-1]
        if fraud:
            for j in range(int(rng.integers(3, 7))):
                t = t + pd.Timedelta(seconds=float(rng.uniform(5, 60)))
                rows.append((uid, t, "payment", float(rng.lognormal(5.5, .4)), f"x{i}{j % 2}",
                             "NG", str(rng.choice(["declined", "ok"]))))
        labels.append((uid, int(fraud), t.floor("us"), "card_testing" if fraud else None))
    events = pd.DataFrame(rows, columns=["user_id", "ts", "event_type", "amount", "device_id",
                                         "country", "status"])
    events["ts"] = events["ts"].dt.floor("us")  # the event schema's resolution
    return events, pd.DataFrame(labels, columns=["user_id", "label", "as_of", "pattern"])


def _brute_force(events: pd.DataFrame, user: str, as_of: pd.Timestamp) -> dict:
    h = events[(events.user_id == user) & (events.ts <= as_of)].sort_values("ts")
    if h.empty:
        return {"n_events": 0.0}
    amounts = h.amount.dropna()
    gaps = h.ts.diff().dt.total_seconds().dropna()
    prev = amounts.iloc[:-1] if not np.isnan(h.amount.iloc[-1]) else amounts
    return {
        "n_events": float(len(h)),
        "n_type_payment": float((h.event_type == "payment").sum()),
        "n_type_other": float((~h.event_type.isin(["view", "login", "payment", "cart"])).sum()),
        "rate_failed": float((h.status == "declined").mean()),
        "amount_mean": amounts.mean() if len(amounts) else np.nan,
        "amount_max": amounts.max() if len(amounts) else np.nan,
        "last_amount_ratio": (h.amount.iloc[-1] / prev.mean()
                              if not np.isnan(h.amount.iloc[-1]) and len(prev) else np.nan),
        "gap_log_min": float(np.log1p(gaps).min()) if len(gaps) else np.nan,
        "distinct_device_id": float(h.device_id.nunique()),
        "distinct_country": float(h.country.nunique()),
        "n_1d": float((h.ts > as_of - pd.Timedelta(days=1)).sum()),
        "amount_mean_7d": h[h.ts > as_of - pd.Timedelta(days=7)].amount.mean(),
        "n_new_1h": float(sum(
            ((h.ts > as_of - pd.Timedelta(hours=1)) & ~h[c].duplicated()).sum()
            for c in ("device_id", "country"))),
        "account_age_h": (as_of - h.ts.iloc[0]).total_seconds() / 3600,
        "since_last_h": (as_of - h.ts.iloc[-1]).total_seconds() / 3600,
    }


def test_user_aggregates_match_brute_force():
    events, labels = toy_events(40, fraud_rate=0.3, seed=1)
    rng = np.random.default_rng(2)
    # queries at label times, at random times, before any event, and for an unknown user
    rand_t = events.ts.min() + pd.to_timedelta(
        rng.uniform(0, (events.ts.max() - events.ts.min()).total_seconds(), 40), unit="s")
    at = pd.concat([
        labels[["user_id", "as_of"]],
        pd.DataFrame({"user_id": rng.choice(labels.user_id, 40), "as_of": rand_t}),
        pd.DataFrame({"user_id": ["u0000", "nobody"], "as_of": [pd.Timestamp("2000-01-01")] * 2}),
    ], ignore_index=True)
    feats = user_aggregates(events.sample(frac=1.0, random_state=0), at,
                            event_types=("view", "login", "payment", "cart"))
    assert len(feats) == len(at)
    assert (feats.user_id.to_numpy() == at.user_id.to_numpy()).all()
    for i, row in at.iterrows():
        expected = _brute_force(events, row.user_id, row.as_of)
        for key, value in expected.items():
            got = feats.loc[i, key]
            if np.isnan(value):
                assert np.isnan(got), (i, key)
            else:
                assert got == pytest.approx(value, rel=1e-9, abs=1e-9), (i, key, got, value)


def test_user_aggregates_default_one_row_per_user_and_open_vocabulary():
    events, _ = toy_events(30, seed=3)
    feats = user_aggregates(events, max_types=2)
    assert list(feats.user_id) == sorted(events.user_id.unique())
    last = events.groupby("user_id").ts.max()
    assert (feats.set_index("user_id").as_of == last).all()
    assert (feats.since_last_h == 0).all()
    # 2 kept types + the rest in "other" add up to all events
    type_cols = [c for c in feats.columns if c.startswith("n_type_")]
    assert len(type_cols) == 3 and "n_type_other" in type_cols
    assert (feats[type_cols].sum(axis=1) == feats.n_events).all()


def test_user_aggregates_rejects_bad_input():
    events, _ = toy_events(5)
    with pytest.raises(ValueError, match="event_type"):
        user_aggregates(events.drop(columns="event_type"))
    with pytest.raises(ValueError, match="as_of"):
        user_aggregates(events, pd.DataFrame({"user_id": ["u0000"]}))
    with pytest.raises(ValueError, match="empty"):
        user_aggregates(events.iloc[:0])


def test_binary_labels_accepts_words_and_rejects_others():
    assert binary_labels(pd.DataFrame({"label": ["fraud", "legit", "1", "0"]})).tolist() == [1, 0, 1, 0]
    assert binary_labels(pd.DataFrame({"label": [True, False]})).tolist() == [1, 0]
    with pytest.raises(ValueError, match="maybe"):
        binary_labels(pd.DataFrame({"label": ["fraud", "maybe"]}))
    # the one parser of models/contracts.py: the message names the column and what is expected
    with pytest.raises(ValueError, match=r"labels\.label has value\(s\) \[2\]: expected 1/0/true/false/fraud/legit"):
        binary_labels(pd.DataFrame({"label": [1, 2]}))
    with pytest.raises(ValueError, match="label column"):
        binary_labels(pd.DataFrame({"y": [1]}))
    assert binary_labels(pd.DataFrame({"label": [" Fraud", "LEGIT", "1.0", "false"]})).tolist() == [1, 0, 1, 0]


def _split(labels: pd.DataFrame):
    return labels.iloc[: len(labels) // 2], labels.iloc[len(labels) // 2:]


@pytest.mark.parametrize("cls", [IsolationForestBaseline, GradientBoostingBaseline])
def test_unfitted_baselines_raise(cls):
    events, _ = toy_events(5)
    with pytest.raises(NotFittedError):
        cls().predict_proba(events)
    with pytest.raises(NotFittedError):
        cls().decision_function(events)


def test_isolation_forest_ranks_planted_fraud_without_labels():
    events, labels = toy_events(300, seed=4)
    train, test = _split(labels)
    model = IsolationForestBaseline(n_estimators=100, random_state=0)
    assert model.fit(events, None) is model
    proba = model.predict_proba(events, test[["user_id", "as_of"]])
    assert proba.shape == (len(test), 2)
    assert np.allclose(proba.sum(axis=1), 1.0) and ((proba >= 0) & (proba <= 1)).all()
    assert np.allclose(proba[:, 1], model.decision_function(events, test[["user_id", "as_of"]]))
    assert roc_auc_score(test.label, proba[:, 1]) > 0.9
    # label values are ignored: only the query points matter
    flipped = train.assign(label=1 - train.label)
    a = IsolationForestBaseline(n_estimators=50).fit(events, train).decision_function(events)
    b = IsolationForestBaseline(n_estimators=50).fit(events, flipped).decision_function(events)
    assert np.allclose(a, b)


def test_gradient_boosting_learns_and_refuses_one_class():
    events, labels = toy_events(300, seed=5)
    train, test = _split(labels)
    model = GradientBoostingBaseline(random_state=0)
    assert model.fit(events, train) is model
    assert set(model.feature_names_) and all(f in model.feature_names_ for f in ("n_events",))
    proba = model.predict_proba(events, test[["user_id", "as_of"]])
    assert proba.shape == (len(test), 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert roc_auc_score(test.label, proba[:, 1]) > 0.95
    dec = model.decision_function(events, test[["user_id", "as_of"]])
    assert roc_auc_score(test.label, dec) == pytest.approx(roc_auc_score(test.label, proba[:, 1]))
    legit = train[train.label == 0]
    assert GradientBoostingBaseline.can_fit(train) and not GradientBoostingBaseline.can_fit(legit)
    with pytest.raises(ValueError, match="one class"):
        GradientBoostingBaseline().fit(events, legit)


def test_gradient_boosting_scores_as_of_not_the_future():
    """Scored before the fraud burst, a fraud user looks like everyone else."""
    events, labels = toy_events(300, seed=6)
    model = GradientBoostingBaseline(random_state=0).fit(events, labels)
    fraud = labels[labels.label == 1]
    first = events.groupby("user_id").ts.min()
    early = pd.DataFrame({"user_id": fraud.user_id,
                          "as_of": fraud.user_id.map(first) + pd.Timedelta(seconds=1)})
    late = model.predict_proba(events, fraud[["user_id", "as_of"]])[:, 1]
    before = model.predict_proba(events, early)[:, 1]
    assert late.mean() > 0.9 and before.mean() < 0.3
