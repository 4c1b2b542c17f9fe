"""Plain-sentence reasons (models/reasons.py): built from the data the attribution points at."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.reasons import top_reasons

T0 = pd.Timestamp("2026-09-01 10:00")


def _takeover_timeline() -> pd.DataFrame:
    """5 normal days, then a login from a new device/country, a password change and card testing."""
    rows = []
    for d in range(5):
        day = T0 + pd.Timedelta(days=d)
        rows.append(dict(ts=day, event_type="login", status="ok", device_id="d1", ip="1.1.1.1",
                         country="DE"))
        rows.append(dict(ts=day + pd.Timedelta(minutes=3), event_type="search", query="red shoes"))
        rows.append(dict(ts=day + pd.Timedelta(minutes=5), event_type="payment", status="ok",
                         amount=40.0 + d, currency="EUR", payment_method="card_1"))
    t = T0 + pd.Timedelta(days=6)
    rows.append(dict(ts=t, event_type="login", status="ok", device_id="d9", ip="9.9.9.9", country="RU"))
    rows.append(dict(ts=t + pd.Timedelta(minutes=1), event_type="password_change", device_id="d9"))
    for k in range(3):  # positions 17, 18, 19
        rows.append(dict(ts=t + pd.Timedelta(minutes=10, seconds=40 * k), event_type="payment",
                         status="declined", amount=1.0 + k, currency="EUR", payment_method="card_9"))
    rows.append(dict(ts=t + pd.Timedelta(minutes=20), event_type="payment", status="ok",
                     amount=900.0, currency="EUR", payment_method="card_9"))  # position 20
    tl = pd.DataFrame(rows)
    tl.insert(0, "user_id", "u000001")
    return tl


def test_card_testing_sentence_quotes_count_window_amounts_and_context() -> None:
    tl = _takeover_timeline()
    attr = np.zeros(len(tl))
    attr[17:20] = [0.5, 0.6, 0.7]  # the declined payments
    attr[16] = 0.4                 # the password change
    reasons = top_reasons(tl, attr)
    first = reasons[0]
    assert first.startswith("3 declined payments within 80 seconds")
    assert "1.00-3.00 EUR" in first
    assert "with a new payment method" in first
    assert "after a password change (9 minutes earlier)" in first
    # the password change was merged as context: not repeated as its own sentence
    assert not any(r.lower().startswith("password change") for r in reasons)
    assert 2 <= len(reasons) <= 5
    assert all(r.endswith(".") and (r[0].isupper() or r[0].isdigit()) for r in reasons)


def test_new_device_and_country_and_amount_ratio() -> None:
    tl = _takeover_timeline()
    attr = np.zeros(len(tl))
    attr[15] = 1.0   # the login from the new device
    attr[20] = 0.8   # the big payment
    reasons = top_reasons(tl, attr)
    assert reasons[0] == "Login from a new device, a new IP address and a new country (RU)."
    assert reasons[1] == "Payment of 900.00 EUR (22x this user's median)."


def test_events_after_at_are_ignored() -> None:
    tl = _takeover_timeline()
    attr = np.zeros(len(tl))
    attr[20] = 5.0   # after `at`
    attr[2] = 0.3    # the first payment
    reasons = top_reasons(tl, attr, at=10)
    assert "900.00" not in " ".join(reasons)
    assert reasons[0] == "Payment of 40.00 EUR."


def test_weak_bursts_dropped_but_min_reasons_kept() -> None:
    tl = _takeover_timeline()
    attr = np.zeros(len(tl))
    attr[20] = 1.0
    attr[15] = 0.01  # below min_share of the top burst
    one = top_reasons(tl, attr, min_reasons=1)
    assert len(one) == 1 and "900.00" in one[0]
    two = top_reasons(tl, attr, min_reasons=2)
    assert len(two) == 2 and two[1].startswith("Login from a new device")
    capped = top_reasons(tl, np.linspace(0.5, 1.0, len(tl)), max_reasons=3)
    assert len(capped) == 3


def test_only_one_raising_event_adds_account_fact() -> None:
    tl = _takeover_timeline()
    attr = -np.ones(len(tl))
    attr[20] = 2.0
    reasons = top_reasons(tl, attr)
    assert len(reasons) == 2
    assert reasons[1] == "Account history: 21 events over 6 days, first seen 2026-09-01."


def test_nothing_raises_the_risk_says_what_lowers_it() -> None:
    tl = _takeover_timeline()
    attr = np.zeros(len(tl))
    attr[20] = -1.0
    attr[15] = -0.5
    reasons = top_reasons(tl, attr)
    assert reasons[0].startswith("Lowers the risk: payment of 900.00 EUR")
    assert reasons[1].startswith("Lowers the risk: login from a new device")


def test_sparse_schema_and_open_vocabulary() -> None:
    """A card dataset: only user_id, ts, event_type, amount; and system-log style event types."""
    ts = [T0 + pd.Timedelta(seconds=20 * i) for i in range(6)]
    tl = pd.DataFrame({"user_id": "c1", "ts": ts,
                       "event_type": ["tx", "tx", "tx", "E17", "E17", "E17"],
                       "amount": [5.0, 6.0, 7.0, np.nan, np.nan, np.nan]})
    attr = np.array([0.1, 0.1, 0.1, 1.0, 1.0, 1.0])
    reasons = top_reasons(tl, attr)
    assert reasons == ("3 E17 events within 40 seconds, after 3 tx events within 40 seconds "
                       "(5.00-7.00) (20 seconds earlier).",
                       "Account history: 6 events over 100 seconds, first seen 2026-09-01.")


def test_bad_inputs_raise_value_error_naming_the_value() -> None:
    tl = _takeover_timeline()
    with pytest.raises(ValueError, match="shape"):
        top_reasons(tl, np.zeros(3))
    with pytest.raises(ValueError, match="at=99"):
        top_reasons(tl, np.zeros(len(tl)), at=99)
    with pytest.raises(ValueError, match="min_reasons"):
        top_reasons(tl, np.zeros(len(tl)), min_reasons=4, max_reasons=2)
    with pytest.raises(ValueError, match="empty"):
        top_reasons(tl.iloc[:0], np.zeros(0))


def test_single_event_timeline() -> None:
    tl = _takeover_timeline().iloc[:1]
    assert top_reasons(tl, np.ones(1)) == ("Login.", "Only one event so far (login on 2026-09-01).")


def test_low_risk_is_said_first() -> None:
    tl = _takeover_timeline()
    attr = np.zeros(len(tl))
    attr[20] = 0.3
    reasons = top_reasons(tl, attr, risk=0.008)
    assert reasons[0] == "Low risk (0.8%): the events below raise it only a little."
    assert reasons[1].startswith("Payment of 900.00 EUR")
    assert len(reasons) == 2
    assert top_reasons(tl, attr, risk=0.9)[0].startswith("Payment of 900.00 EUR")
    assert len(top_reasons(tl, np.linspace(0.5, 1, len(tl)), risk=0.01, max_reasons=3)) == 3


def test_positive_event_inside_a_net_negative_burst_is_still_named() -> None:
    tl = _takeover_timeline()
    attr = np.zeros(len(tl))
    attr[17:20] = [-0.5, 0.4, -0.5]  # the declined payments: net negative, one pushes up
    reasons = top_reasons(tl, attr)
    # card_9 was new at the first declined payment, not at this one
    assert reasons[0] == "Declined payment of 2.00 EUR (far below this user's usual amounts)."
    assert reasons[1].startswith("Account history")


def test_high_risk_with_nothing_above_the_baseline_names_what_weighs_most() -> None:
    tl = _takeover_timeline()
    attr = np.full(len(tl), -0.5)
    attr[17:20] = [-0.05, -0.04, -0.03]  # the declined payments weigh most against the others
    reasons = top_reasons(tl, attr, risk=0.95)
    assert not any(r.startswith("Lowers the risk") for r in reasons), reasons
    assert "declined" in reasons[0] and "3 " in reasons[0], reasons
    assert reasons[-1].startswith("High risk (95%) from the pattern as a whole"), reasons
    low = top_reasons(tl, attr, risk=0.3)  # not a high risk: said as it is
    assert any(r.startswith("Lowers the risk") for r in low), low
