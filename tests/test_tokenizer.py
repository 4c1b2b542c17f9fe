"""EventTokenizer: learned open vocabularies, OOV/null ids, novelty flags, gaps, bins, persistence."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from models.tokenizer import ID_FIELDS, NEW, NULL, OOV, PAD, SEEN, EventTokenizer, TokenizerConfig


def frame(rows: list[tuple]) -> pd.DataFrame:
    cols = ["user_id", "ts", "event_type", "amount", "device_id", "query", "category"]
    df = pd.DataFrame(rows, columns=cols)
    df["ts"] = pd.to_datetime(df["ts"])
    return df


@pytest.fixture()
def events() -> pd.DataFrame:
    return frame([
        ("b", "2024-01-01 10:00:00", "login", None, "d1", None, None),
        ("a", "2024-01-01 09:00:00", "login", None, "d1", None, None),
        ("a", "2024-01-01 09:00:05", "search", None, "d1", "red shoes", "c1"),
        ("b", "2024-01-02 10:00:00", "purchase", 100.0, "d2", None, "c2"),
        ("a", "2024-01-03 09:00:00", "purchase", 5.0, "d3", None, "c1"),
        ("a", "2024-01-03 10:00:01", "view", None, "d1", None, "c1"),
    ])


def col(name: str) -> int:
    return ID_FIELDS.index(name)


def test_sorted_by_user_and_time_with_row_map(events):
    tok = EventTokenizer().fit(events).transform(events)
    assert list(tok.user_ids) == ["a", "b"]
    assert list(tok.offsets) == [0, 4, 6]
    # row maps each token back to its input row: user a's rows in time order, then b's
    assert list(tok.row) == [1, 2, 4, 5, 0, 3]
    assert (np.diff(tok.ts[:4].astype(np.int64)) > 0).all()


def test_open_vocabulary_oov_and_null(events):
    tokenizer = EventTokenizer(TokenizerConfig(max_event_types=2)).fit(events)
    # top-2 by frequency: login (2), purchase (2); ties broken by value
    assert tokenizer.vocab_["event_type"] == ["login", "purchase"]
    other = events.assign(event_type=["E17", "login", "login", "purchase", "purchase", "E17"])
    tok = tokenizer.transform(other)
    et = tok.ids[:, col("event_type")]
    assert et[0] == 3 and et[3] == OOV  # a's first login; E17 never seen in fit
    cat = tok.ids[:, col("category")]
    assert cat[0] == NULL and cat[1] >= 3  # login has no category


def test_log_template_ids_are_just_tokens():
    df = frame([("u", f"2024-01-01 00:00:{i:02d}", f"T{i % 3}", None, None, None, None) for i in range(9)])
    tokenizer = EventTokenizer().fit(df)
    assert sorted(tokenizer.vocab_["event_type"]) == ["T0", "T1", "T2"]
    ids = tokenizer.transform(df).ids[:, col("event_type")]
    assert len(set(ids[:3])) == 3 and (ids[:3] == ids[3:6]).all()


def test_first_time_flags_are_per_user(events):
    tok = EventTokenizer().fit(events).transform(events)
    dev = tok.ids[:, col("new_device")]
    # a: d1 new, d1 seen, d3 new, d1 seen; b: d1 new (new for b even if a used it), d2 new
    assert list(dev) == [NEW, SEEN, NEW, SEEN, NEW, NEW]
    assert (tok.ids[:, col("new_ip")] == NULL).all()  # column missing -> null everywhere


def test_gap_buckets_hour_weekday(events):
    tok = EventTokenizer().fit(events).transform(events)
    gap = tok.ids[:, col("gap")]
    assert gap[0] == 1 and gap[4] == 1  # first event of each user
    assert gap[1] == 2 + int(np.log2(1 + 5))  # 5 seconds later
    assert gap[3] == 2 + int(np.log2(1 + 3601))  # 1 h 1 s later
    assert tok.ids[0, col("hour")] == 1 + 9
    assert tok.ids[0, col("weekday")] == 1 + 0  # 2024-01-01 is a Monday


def test_amount_bins_are_monotone_and_null_is_separate():
    amounts = [None, 1.0, 10.0, 100.0, 1000.0, 10000.0]
    df = frame([("u", f"2024-01-01 00:00:0{i}", "pay", a, None, None, None) for i, a in enumerate(amounts)])
    tokenizer = EventTokenizer(TokenizerConfig(n_amount_bins=4)).fit(df)
    tok = tokenizer.transform(df)
    bins = tok.ids[:, col("amount")]
    assert bins[0] == NULL and tok.amount_value[0] == 0.0
    assert (np.diff(bins[1:]) >= 0).all() and bins[-1] > bins[1]
    assert (np.diff(tok.amount_value[1:]) > 0).all()
    assert tokenizer.vocab_sizes["amount"] > bins.max()


def test_query_hashing_is_deterministic(events):
    tokenizer = EventTokenizer(TokenizerConfig(n_query_buckets=64, query_slots=4)).fit(events)
    q = tokenizer.transform(events).query
    assert q.shape == (6, 4)
    assert (q[1][:3] > 0).all() and q[1][3] == PAD  # "red", "shoes", "red shoes"
    assert (q[0] == PAD).all()
    again = tokenizer.transform(events.assign(query=[None, None, "RED shoes", None, None, None])).query
    assert (again[1] == q[1]).all()  # lower-cased, same hash in a new call


def test_card_style_frame_with_few_columns():
    df = pd.DataFrame({
        "user_id": [1, 1, 2], "ts": pd.to_datetime(["2018-04-01", "2018-04-02", "2018-04-01"]),
        "event_type": ["tx", "tx", "tx"], "amount": [10.0, 250.0, 3.0], "item_id": ["t1", "t1", "t9"],
    })
    tok = EventTokenizer().fit(df).transform(df)
    assert list(tok.ids[:, col("new_item")]) == [NEW, SEEN, NEW]
    assert (tok.ids[:, col("category")] == NULL).all()


def test_save_load_round_trip(events, tmp_path):
    tokenizer = EventTokenizer().fit(events)
    tokenizer.save(tmp_path)
    loaded = EventTokenizer.load(tmp_path)
    a, b = tokenizer.transform(events), loaded.transform(events)
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.query, b.query)
    assert np.array_equal(a.amount_value, b.amount_value)
    assert loaded.vocab_sizes == tokenizer.vocab_sizes


def test_gather_pads_with_zero(events):
    tok = EventTokenizer().fit(events).transform(events)
    g = tok.gather(np.array([[0, 1, -1]]))
    assert g["event_type"].shape == (1, 3) and g["event_type"][0, 2] == PAD
    assert g["query"].shape == (1, 3, 8) and (g["query"][0, 2] == PAD).all()


def test_errors(events):
    with pytest.raises(NotFittedError):
        EventTokenizer().transform(events)
    with pytest.raises(ValueError, match="event_type"):
        EventTokenizer().fit(events.drop(columns="event_type"))
    with pytest.raises(ValueError, match="datetime64"):
        EventTokenizer().fit(events.assign(ts=events["ts"].astype(str)))
    with pytest.raises(ValueError, match="max_categories"):
        TokenizerConfig(max_categories=0)
    with pytest.raises(ValueError, match="tokenizer.json"):
        EventTokenizer.load("/nonexistent/dir")


def test_history_sets_first_time_flags_and_the_first_gap(events):
    """A user's latest events tokenized with the earlier ones as history equal the end of the whole
    timeline's tokens (the case page reads the latest max_events events; the queue the whole)."""
    tok = EventTokenizer().fit(events)
    ordered = events.sort_values(["user_id", "ts"], kind="stable")
    latest = ordered.groupby("user_id").tail(1)            # a: the view on d1; b: the purchase on d2
    earlier = ordered.drop(latest.index)
    whole = tok.transform(events)
    last_of_each = whole.offsets[1:] - 1
    with_history = tok.transform(latest, history=earlier)
    assert (with_history.ids == whole.ids[last_of_each]).all()
    assert (with_history.row == [0, 1]).all() and list(with_history.user_ids) == ["a", "b"]
    alone = tok.transform(latest)                            # without history: every device is new
    assert alone.ids[0, col("new_device")] == NEW and with_history.ids[0, col("new_device")] == SEEN
    assert alone.ids[0, col("gap")] == 1 and with_history.ids[0, col("gap")] > 1
    # history of other users is ignored; history after the events start is refused, naming the user
    assert (tok.transform(latest, history=earlier.assign(user_id="zz")).ids == alone.ids).all()
    with pytest.raises(ValueError, match="history of user 'a' .* after that user's first event"):
        tok.transform(earlier, history=latest)


def test_field_lists_come_from_the_contracts():
    """The tokenizer's field lists are derived from models/contracts.py; names and order are the
    ones saved models were trained with (the ids columns follow them)."""
    from models import contracts
    from models.tokenizer import CATEGORICAL_FIELDS, NOVELTY_FIELDS, REQUIRED_COLUMNS

    assert list(NOVELTY_FIELDS.items()) == [
        ("new_device", "device_id"), ("new_ip", "ip"), ("new_country", "country"),
        ("new_address", "address_id"), ("new_payment", "payment_method"),
        ("new_session", "session_id"), ("new_item", "item_id"),
    ] == list(contracts.NOVELTY_COLUMNS.items())
    assert REQUIRED_COLUMNS == contracts.EVENT_REQUIRED == ("user_id", "ts", "event_type")
    assert CATEGORICAL_FIELDS == ("event_type", "category", "status", "currency")
    assert all(contracts.FIELDS_BY_NAME[f].role == "categorical" for f in CATEGORICAL_FIELDS)
    assert ID_FIELDS == CATEGORICAL_FIELDS + ("amount", "gap", "hour", "weekday") + tuple(NOVELTY_FIELDS)
