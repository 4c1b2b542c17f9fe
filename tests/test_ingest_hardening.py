"""Ingest edges (issue 15) on a real DuckDB file: idempotent per event (duplicates within and
across files counted and skipped), the same NUL / size / id rules for CSV, JSONL and Parquet, a
directory's own message, and no analyst decision forged by a labels import."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from analyst.ingest import MAX_ID_CHARS, IngestError, ingest_events, ingest_labels
from analyst.store import Store


def events(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"u{i % 2}" for i in range(n)],
                         "ts": [f"2026-03-01T10:0{i}:00" for i in range(n)],
                         "event_type": "payment", "amount": [1.5 + i for i in range(n)],
                         "device_id": "d1", "query": "shoes"})


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "ingest.duckdb") as s:
        yield s


def write(frame: pd.DataFrame, path, fmt: str, **kwargs):
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")) + "\n")
    else:
        frame.to_parquet(path, index=False, **kwargs)
    return path


def test_the_same_rows_in_another_file_are_counted_and_not_stored_again(store, tmp_path):
    first = write(events(), tmp_path / "a.csv", "csv")
    assert ingest_events(store, first)[0].accepted == 5
    second = tmp_path / "b.csv"
    second.write_text(first.read_text() + "\n")                     # one blank line more: other bytes
    report = ingest_events(store, second)[0]
    assert (report.accepted, report.duplicates) == (0, 5) and "5 duplicate events skipped" in report.summary()
    assert store.counts()["events"] == 5


def test_parquet_rewritten_with_another_compression_adds_nothing(store, tmp_path):
    ingest_events(store, write(events(), tmp_path / "a.parquet", "parquet", compression="snappy"))
    report = ingest_events(store, write(events(), tmp_path / "b.parquet", "parquet", compression="gzip"))[0]
    assert (report.accepted, report.duplicates) == (0, 5) and store.counts()["events"] == 5
    more = events(7)                                                # two new events among five known ones
    report = ingest_events(store, write(more, tmp_path / "c.parquet", "parquet"))[0]
    assert (report.accepted, report.duplicates) == (2, 5) and store.counts()["events"] == 7


def test_a_row_repeated_in_one_file_is_stored_once(store, tmp_path):
    frame = pd.concat([events(2)] + [events(1)] * 2, ignore_index=True)   # row 0 three times
    report = ingest_events(store, write(frame, tmp_path / "r.jsonl", "jsonl"))[0]
    assert (report.accepted, report.duplicates) == (2, 2) and store.counts()["events"] == 2


def test_an_event_differing_in_one_field_is_not_a_duplicate(store, tmp_path):
    ingest_events(store, write(events(1), tmp_path / "a.csv", "csv"))
    other = events(1).assign(amount=99.0)
    assert ingest_events(store, write(other, tmp_path / "b.csv", "csv"))[0].accepted == 1


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_nul_bytes_long_fields_and_long_ids_are_rejected_alike(store, tmp_path, fmt):
    frame = events(4)
    frame.loc[0, "user_id"] = "u\x00x"
    frame.loc[1, "query"] = "q" * 10_000_001
    frame.loc[2, "user_id"] = "u" * 5000
    if fmt == "csv":   # NUL after the first 64 KiB (a NUL there is "binary data" for the whole file)
        frame = pd.concat([events(1).assign(query="x" * 70_000, user_id="pad"), frame], ignore_index=True)
    report = ingest_events(store, write(frame, tmp_path / f"bad.{fmt}", fmt))[0]
    quarantine = store.quarantine(limit=None)
    reasons = " | ".join(quarantine["reason"])
    assert "user_id: contains a NUL byte" in reasons
    assert "query: 10,000,001 characters; at most 10,000 expected" in reasons
    assert f"user_id: 5,000 characters; at most {MAX_ID_CHARS:,} expected" in reasons
    stored = set(store.users()["user_id"])
    assert not any("\x00" in u or len(u) > MAX_ID_CHARS for u in stored)
    assert report.rejected == (4 if fmt == "csv" else 3)    # the 70k-char padding query is too long too


def test_a_directory_gets_its_own_message(store, tmp_path):
    with pytest.raises(IngestError, match="is a directory; expected a file"):
        ingest_events(store, tmp_path)
    assert store.counts()["events"] == 0


def test_a_labels_import_cannot_forge_an_analyst_decision(store, tmp_path):
    ingest_events(store, write(events(), tmp_path / "e.csv", "csv"))
    labels = pd.DataFrame({"user_id": ["u0", "u1"], "label": [1, 0], "source": ["analyst", "import"],
                           "analyst": ["alice", None]})
    report = ingest_labels(store, write(labels, tmp_path / "l.csv", "csv"))
    assert (report.accepted, report.rejected) == (1, 1)
    assert "source: 'analyst' labels come from decisions in the app" in report.reasons[0]
    history = store.label_history()
    assert list(history["user_id"]) == ["u1"] and (history["source"] != "analyst").all()


def nonfinite_file(tmp_path, fmt: str):
    """Four payments: amount 2.5, missing, NaN, infinite, written the way each format writes them."""
    users, amounts = ["u0", "u1", "u2", "u3"], [2.5, None, float("nan"), float("inf")]
    ts = [f"2026-03-01T10:0{i}:00" for i in range(4)]
    path = tmp_path / f"nan.{fmt}"
    if fmt == "csv":
        cells = ["2.5", "", "NaN", "inf"]
        path.write_text("user_id,ts,event_type,amount\n"
                        + "".join(f"{u},{t},payment,{c}\n" for u, t, c in zip(users, ts, cells)))
    elif fmt == "jsonl":   # json.dumps writes the bare tokens NaN and Infinity
        path.write_text("".join(json.dumps({"user_id": u, "ts": t, "event_type": "payment",
                                            "amount": a}) + "\n" for u, t, a in zip(users, ts, amounts)))
    else:                  # a real NaN, not a null: pyarrow keeps them apart
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.table({"user_id": users, "ts": ts, "event_type": ["payment"] * 4,
                                 "amount": pa.array(amounts, type=pa.float64(), from_pandas=False)}), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_nan_and_infinite_amounts_are_rejected_alike_and_missing_ones_kept(store, tmp_path, fmt):
    report = ingest_events(store, nonfinite_file(tmp_path, fmt))[0]
    assert (report.accepted, report.rejected) == (2, 2)
    reasons = " | ".join(store.quarantine(limit=None)["reason"])
    assert "amount: 'NaN' is not a number" in reasons
    assert "is not finite" in reasons
    users = set(store.users()["user_id"])
    assert users == {"u0", "u1"}     # the missing amount is allowed (an event without one)


def test_a_nan_inside_a_json_string_is_only_text(store, tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"user_id": "u0", "ts": "2026-03-01T10:00:00", "event_type": "search",
                                "query": "a:NaN, [Infinity"}) + "\n")
    assert ingest_events(store, path)[0].accepted == 1
