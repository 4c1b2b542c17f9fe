"""Velocity and entity signals (analyst/store/signals.py): every number against a plain-Python
reference on random data, no value from the future (a later event or label changes no earlier
value), the store's incremental refresh equal to a full recompute, and clear errors."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analyst.store import Store
from models.signals import (
    SignalConfig, entity_prefix, frame_signals, signal_columns,
)
from models.contracts import OK_STATUSES

DELAY = pd.Timedelta(days=2)
CONFIG = SignalConfig(entity_columns=("device_id", "payment_method", "item_id"), label_delay_days=2.0)


def random_world(seed: int, n_events: int = 400, n_users: int = 25):
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-03-01")
    # minutes apart, many ties and bursts: timestamps on a 10-minute grid over 12 days
    ts = start + pd.to_timedelta(rng.integers(0, 12 * 24 * 6, n_events) * 10, unit="m")
    events = pd.DataFrame({
        "user_id": rng.choice([f"u{i:02d}" for i in range(n_users)], n_events),
        "ts": ts,
        "event_type": rng.choice(["login", "view", "payment"], n_events),
        "status": rng.choice(["ok", "failed", "declined", None], n_events),
        "amount": np.where(rng.random(n_events) < 0.5, rng.gamma(2.0, 20.0, n_events), np.nan),
        "device_id": rng.choice(["d1", "d2", "d3", "d4", None], n_events),
        "payment_method": rng.choice(["card_1", "card_2", "wallet", None], n_events),
        "item_id": rng.choice(["i1", "i2", None], n_events),
    }).sort_values(["ts", "user_id"], kind="stable").reset_index(drop=True)
    users = sorted(events["user_id"].unique())
    labelled = rng.choice(users, 15, replace=False)
    labels = pd.DataFrame({
        "user_id": labelled,
        "label": rng.integers(0, 2, len(labelled)),
        "as_of": start + pd.to_timedelta(rng.integers(0, 10 * 24, len(labelled)), unit="h"),
    })
    # two users change their label later (as_of later), one label without as_of (decided_at),
    # one decided before its as_of + delay
    changes = pd.DataFrame({"user_id": labelled[:2], "label": 1 - labels["label"].to_numpy()[:2],
                            "as_of": labels["as_of"].to_numpy()[:2] + np.timedelta64(3, "D")})
    decided = pd.DataFrame({"user_id": [labelled[2]], "label": [1], "as_of": [pd.NaT],
                            "decided_at": [start + pd.Timedelta(days=6)]})
    return events, pd.concat([labels, changes, decided], ignore_index=True)


def _known_at(labels: pd.DataFrame) -> pd.Series:
    decided = labels["decided_at"] if "decided_at" in labels.columns else pd.Series(pd.NaT, index=labels.index)
    by_delay = pd.to_datetime(labels["as_of"]).add(DELAY)
    return pd.concat([by_delay, pd.to_datetime(decided)], axis=1).min(axis=1)


def reference(events: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The definitions of the module docstring, event by event in plain Python."""
    labels = labels.assign(known_at=_known_at(labels), order=np.arange(len(labels)))
    labels = labels[labels["known_at"].notna()].sort_values(["known_at", "order"])

    def state(user: str, t: pd.Timestamp):
        rows = labels[(labels["user_id"] == user) & (labels["known_at"] < t)]
        return None if rows.empty else float(rows["label"].iloc[-1])

    out = []
    for _, e in events.iterrows():
        t, u = e["ts"], e["user_id"]
        mine = events[events["user_id"] == u]
        row: dict[str, float | None] = {}
        for w, width in (("1h", "1h"), ("1d", "1D"), ("7d", "7D")):
            lo = t - pd.Timedelta(width)
            win = mine[(mine["ts"] >= lo) & (mine["ts"] <= t)]
            row["user_events_" + w] = len(win)
            row["user_same_type_" + w] = int((win["event_type"] == e["event_type"]).sum())
            failed = win["status"].notna() & ~win["status"].astype(str).str.lower().isin(OK_STATUSES)
            row["user_failed_" + w] = int(failed.sum())
            if w != "1h":
                row["user_amount_" + w] = float(win["amount"].fillna(0).sum())
            if w == "7d":
                row["user_devices_7d"] = win["device_id"].dropna().nunique()
                row["user_payments_7d"] = win["payment_method"].dropna().nunique()
        before = mine[(mine["event_type"] == e["event_type"]) & (mine["ts"] < t)]
        row["user_since_same_type"] = (t - before["ts"].max()).total_seconds() if len(before) else None
        for c in CONFIG.entity_columns:
            p = entity_prefix(c)
            v = e[c]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                row.update({p + "_users": None, p + "_fraud_users": None, p + "_fraud_share": None,
                            **{p + "_events_" + w: None for w in ("1h", "1d", "7d")}})
                continue
            on = events[events[c] == v]
            first = on.groupby("user_id")["ts"].min()
            row[p + "_users"] = int((first <= t).sum()) - 1
            for w, width in (("1h", "1h"), ("1d", "1D"), ("7d", "7D")):
                row[p + "_events_" + w] = int(((on["ts"] >= t - pd.Timedelta(width)) & (on["ts"] <= t)).sum())
            states = [state(other, t) for other, f in first.items() if other != u and f < t]
            known = [s for s in states if s is not None]
            row[p + "_fraud_users"] = float(sum(known))
            row[p + "_fraud_share"] = sum(known) / len(known) if known else None
        out.append(row)
    return pd.DataFrame(out)[list(signal_columns(CONFIG))].astype("float64")


@pytest.mark.parametrize("seed", [1, 2])
def test_every_signal_matches_the_plain_python_definition(seed):
    events, labels = random_world(seed)
    got = frame_signals(events, labels, CONFIG)
    want = reference(events, labels)
    assert list(got.columns) == list(signal_columns(CONFIG))
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-6)
    # the data exercises what it should: shared entities, known fraud on them, failures
    assert got["device_users"].max() >= 3 and got["device_fraud_users"].max() >= 1
    assert got["user_failed_1d"].max() >= 1 and got["device_fraud_share"].notna().any()


def test_a_later_event_or_label_changes_no_earlier_value():
    events, labels = random_world(3)
    before = frame_signals(events, labels, CONFIG)
    last = events["ts"].max()
    later = events.iloc[[0, 5, 9]].assign(ts=last + pd.Timedelta(minutes=5), device_id="d1", item_id="i1")
    with_event = frame_signals(pd.concat([events, later], ignore_index=True), labels, CONFIG)
    pd.testing.assert_frame_equal(with_event.iloc[: len(events)], before)

    # a label on a user who shares devices, as of day 5: known on day 7, so events before day 7
    # keep their values and some after it change
    user = events.loc[events["device_id"] == "d1", "user_id"].iloc[0]
    as_of = pd.Timestamp("2024-03-06")
    new_label = pd.DataFrame({"user_id": [user], "label": [1], "as_of": [as_of]})
    with_label = frame_signals(events, pd.concat([labels, new_label], ignore_index=True), CONFIG)
    early = (events["ts"] <= as_of + DELAY).to_numpy()
    pd.testing.assert_frame_equal(with_label[early], before[early])
    assert not with_label[~early].equals(before[~early])


def _stored(store: Store) -> pd.DataFrame:
    got = store.event_signals()
    return got.drop(columns=["event_id", "user_id"]).reset_index(drop=True)


def test_store_refresh_is_incremental_and_equals_a_full_recompute(tmp_path):
    events, labels = random_world(4)
    cut = events["ts"].quantile(0.6)
    old, new = events[events["ts"] <= cut], events[events["ts"] > cut]
    with Store(tmp_path / "s.duckdb") as store:
        store.add_events(old)
        store.add_labels(labels.iloc[:10])
        assert store.refresh_signals(CONFIG) == len(old)        # first run: everything
        assert store.refresh_signals(CONFIG) == 0               # nothing new: nothing recomputed
        store.add_events(new)
        store.add_labels(labels.iloc[10:])
        recomputed = store.refresh_signals(CONFIG)
        assert 0 < recomputed < len(events)                     # the new days, not the whole store
        stored = store.event_signals()
        timeline = store.events()
    # the stored rows are the store's events in (user_id, ts) order; recompute them from scratch
    want = frame_signals(timeline, labels, CONFIG)
    got = stored.drop(columns=["event_id", "user_id", "ts"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-6)


def test_a_new_entity_setting_recomputes_everything(tmp_path):
    events, labels = random_world(5, n_events=120)
    with Store(tmp_path / "s.duckdb") as store:
        store.add_events(events)
        store.refresh_signals(CONFIG)
        other = SignalConfig(entity_columns=("ip",), label_delay_days=7.0)
        assert store.refresh_signals(other) == len(events)
        assert "ip_users" in store.event_signals().columns
        assert "device_users" not in store.event_signals().columns


def test_bad_settings_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="entity_columns.*'amount'"):
        SignalConfig(entity_columns=("amount",))
    with pytest.raises(ValueError, match="entity_columns.*'user_id'"):
        SignalConfig(entity_columns=("user_id",))
    with pytest.raises(ValueError, match="label_delay_days"):
        SignalConfig(label_delay_days=-1)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['event_type'\]"):
        frame_signals(pd.DataFrame({"user_id": ["u"], "ts": [pd.Timestamp("2024-01-01")]}))
