"""The risk model reads the velocity / entity signals (issue 13): tokenizer, scorer, explanation,
reasons, evaluation (signals from train labels only) and the store / service path."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analyst.store import Store
from analyst.synthetic import SyntheticConfig, generate
from models.explain import explain
from models.reasons import top_reasons
from models.scorer import Scorer
from models.signals import USER_SIGNALS, SignalConfig, frame_signals, signal_columns, with_signals
from models.tokenizer import EventTokenizer
from tests.conftest import tiny_scorer_config


@pytest.fixture(scope="module")
def data():
    events, labels = generate(SyntheticConfig(n_users=80, seed=5, fraud_rate=0.25))
    signals = frame_signals(events, labels)
    return pd.concat([events.reset_index(drop=True), signals], axis=1), labels


@pytest.fixture(scope="module")
def scorer(data):
    events, labels = data
    return Scorer(tiny_scorer_config()).fit(events, labels, progress=False)


def test_tokenizer_reads_signal_columns_as_two_groups(data, tmp_path):
    events, _ = data
    tok = EventTokenizer().fit(events)
    groups = tok.signal_groups
    assert groups["velocity"] == list(USER_SIGNALS)
    assert groups["entity"] == [c for c in signal_columns() if c not in USER_SIGNALS]
    out = tok.transform(events)
    for g, cols in groups.items():
        values = out.signals[g]
        assert values.shape == (len(events), 2 * len(cols))
        null_flags = values[:, len(cols):]
        assert set(np.unique(null_flags)) <= {0.0, 1.0}
        # a null signal is a zero value with its flag set
        assert np.all(values[:, : len(cols)][null_flags == 1] == 0)
    # the first-ever fraud share is null (nothing known yet), so the flag is set somewhere
    assert out.signals["entity"][:, len(groups["entity"]):].max() == 1
    tok.save(tmp_path)
    again = EventTokenizer.load(tmp_path).transform(events)
    for g in groups:
        np.testing.assert_array_equal(again.signals[g], out.signals[g])


def test_missing_signal_columns_are_a_clear_error(scorer, data):
    events, _ = data
    plain = events.drop(columns=list(signal_columns()))
    with pytest.raises(ValueError, match=r"events lack signal column\(s\) \['user_events_1h'"):
        scorer.predict_proba(plain)


def test_tokenizer_without_signals_ignores_them(data):
    from models.tokenizer import TokenizerConfig

    events, _ = data
    tok = EventTokenizer(TokenizerConfig(use_signals=False)).fit(events)
    assert tok.signal_groups == {} and tok.transform(events).signals == {}


def test_scorer_uses_signals_and_explains_them(scorer, data):
    events, _ = data
    assert scorer.signal_columns == list(signal_columns())
    assert set(scorer.model_.embed.fields) >= {"velocity", "entity"}
    user = events["user_id"].iloc[0]
    tl = events[events["user_id"] == user].sort_values("ts", kind="stable").reset_index(drop=True)
    tl = tl.iloc[-scorer.max_events:].reset_index(drop=True)
    exp = explain(scorer, tl, user_id=user)
    assert {"velocity", "entity"} <= set(exp.field_attribution)
    # completeness: the fields' attributions sum to f(x) - f(baseline) up to the integration error
    total = sum(float(np.sum(v)) for v in exp.field_attribution.values())
    assert abs(total - (exp.logit - exp.baseline_logit)) <= 0.05 * abs(exp.logit - exp.baseline_logit) + 1e-3


def test_changing_a_signal_changes_the_risk(scorer, data):
    """The encoder really reads the entity signals: raising the fraud share of the last event's
    device changes the score."""
    events, _ = data
    user = events["user_id"].iloc[-1]
    tl = events[events["user_id"] == user].reset_index(drop=True)
    base = scorer.predict_proba(tl)[0, 1]
    bumped = tl.copy()
    bumped.loc[bumped.index[-5:], ["device_users", "device_fraud_users", "device_fraud_share"]] = [40, 30, 0.9]
    assert scorer.predict_proba(bumped)[0, 1] != pytest.approx(base, abs=1e-6)


def test_reasons_name_shared_entities():
    tl = pd.DataFrame({
        "user_id": "u", "ts": pd.date_range("2026-01-01", periods=4, freq="1min"),
        "event_type": ["login", "payment", "payment", "payment"], "status": ["ok"] + ["declined"] * 3,
        "device_users": [0, 7, 7, 7], "device_fraud_users": [0, 3, 3, 3],
        "ip_users": [0, 0, 0, 0], "ip_fraud_users": [0, 0, 0, 0],
    })
    reasons = top_reasons(tl, np.array([0.0, 1.0, 1.0, 1.0]))
    assert "on a device shared with 7 other accounts (3 of them confirmed fraud)" in reasons[0]
    assert "IP address" not in reasons[0]          # nobody else on it: not worth saying
    plain = top_reasons(tl.drop(columns=["device_users", "device_fraud_users"]), np.array([0, 1, 1, 1.0]))
    assert "shared" not in plain[0]
    # a hub (a generic value such as "wallet") and an item honest shoppers share are no reason
    hub = top_reasons(tl.assign(device_users=383, device_fraud_users=0, item_users=12, item_fraud_users=1),
                      np.array([0, 1, 1, 1.0]))
    assert "shared" not in hub[0]
    item = top_reasons(tl.assign(device_users=0, item_users=12, item_fraud_users=4), np.array([0, 1, 1, 1.0]))
    assert "an item shared with 12 other accounts (4 of them confirmed fraud)" in item[0]


def test_evaluation_signals_come_from_train_labels_only(data):
    events, labels = data
    plain = events.drop(columns=list(signal_columns()))
    train = labels.iloc[: len(labels) // 2]
    poisoned = plain.assign(device_fraud_share=123.0)   # a stale column, e.g. from a store export
    out = with_signals(poisoned, train, SignalConfig())
    expected = frame_signals(plain, train)
    pd.testing.assert_frame_equal(out[list(signal_columns())].reset_index(drop=True), expected)
    assert (out["device_fraud_share"] != 123.0).all()
    # more labels (the test part's) would change some fraud share: they are not used
    assert not frame_signals(plain, labels).equals(expected)
    assert set(with_signals(events, train, None).columns) == set(plain.columns)


def test_store_reads_events_with_their_signals(tmp_path, data):
    events, labels = data
    plain = events.drop(columns=list(signal_columns()))
    with Store(tmp_path / "s.duckdb") as store:
        store.add_events(plain)
        store.add_labels(labels)
        with pytest.raises(ValueError, match="refresh_signals"):
            store.events(signals=True)
        store.refresh_signals()
        got = store.events(signals=True)
        user = got["user_id"].iloc[0]
        one = store.timeline(user, signals=True)
        assert "event_id" not in got.columns and "event_id" not in one.columns
    expected = frame_signals(plain, labels)
    key = ["user_id", "ts", "event_type"]
    ref = pd.concat([plain.reset_index(drop=True), expected], axis=1).sort_values(key, kind="stable")
    for col in ("user_events_1d", "device_users", "device_fraud_users", "item_fraud_share"):
        np.testing.assert_allclose(got.sort_values(key, kind="stable")[col].to_numpy(dtype=float),
                                   ref[col].to_numpy(dtype=float), equal_nan=True)
    assert len(one) == int((plain["user_id"] == user).sum())
    np.testing.assert_allclose(one["user_events_7d"].to_numpy(dtype=float),
                               got[got["user_id"] == user]["user_events_7d"].to_numpy(dtype=float))


def test_service_trains_scores_and_explains_with_signals(home_copy):
    from analyst.service import Workbench

    wb = Workbench(home_copy)
    try:
        handle = wb.model()
        assert handle.reads_signals
        user = str(wb.queue()["user_id"].iloc[0])
        view = wb.case(user)
        assert {"velocity", "entity"} <= set(view.explanation.field_attribution)
        assert "device_fraud_users" in view.timeline.columns
    finally:
        wb.close()
