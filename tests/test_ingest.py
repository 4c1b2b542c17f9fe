"""Ingest: each format, timestamps, the Taobao reference, quarantine of each class of bad row,
garbage files that change nothing, idempotent re-ingest, labels."""
from __future__ import annotations

import gzip
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyst.ingest import (
    IngestError, IngestReport, TAOBAO_EVENT_TYPES, ingest_events, ingest_labels, normalise_events,
    normalise_labels, parse_mapping, parse_timestamps, read_events, read_labels, read_raw,
    read_table, read_taobao,
)
from models.contracts import EVENT_COLUMNS
from analyst.store import Store

SHARED = Path(__file__).resolve().parents[2] / "shared"
TAOBAO = SHARED / "data" / "taobao_userbehavior_head" / "UserBehavior_head.csv"

GOOD_CSV = """user_id,ts,event_type,amount,country,channel
u1,2024-01-01T10:00:00Z,login,,NA,web
u1,1704103260,view,,DE,
u2,1704103200000,payment,19.99,FR,app
u2,2024-01-01 12:00:00+02:00,refund,5,FR,
"""


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        yield s


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def all_counts(store: Store) -> dict:
    return store.counts()


# ------------------------------------------------------------------------------------ formats
def schema_frame() -> pd.DataFrame:
    """Every schema column, already sorted by (user_id, ts) as the store returns it."""
    return pd.DataFrame({
        "user_id": ["u1", "u1", "u2"],
        "ts": pd.to_datetime(["2024-03-01 08:00:00.250", "2024-03-02 09:00", "2024-03-01 10:00"], format="ISO8601").astype("datetime64[us]"),
        "event_type": ["login", "payment", "search"],
        "session_id": ["s1", "s2", "s3"], "item_id": [None, "i9", None], "category": [None, "c1", None],
        "amount": [np.nan, 12.5, np.nan], "currency": [None, "EUR", None],
        "query": [None, None, 'red "shoes", size 42'], "device_id": ["d1", "d2", "d1"],
        "ip": ["1.2.3.4", "5.6.7.8", "1.2.3.4"], "country": ["NA", "DE", "NA"],
        "status": [None, "ok", None], "payment_method": [None, "card_1234", None],
        "address_id": [None, "a1", None], "attrs": [None, '{"coupon": "X1"}', None],
    })


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_schema_round_trip_through_each_format(tmp_path, store, suffix):
    want = schema_frame()
    path = tmp_path / ("ev" + suffix)
    if suffix == ".csv":
        want.to_csv(path, index=False)
    elif suffix == ".parquet":
        want.to_parquet(path, index=False)
    else:
        want.assign(ts=want["ts"].astype(str)).to_json(path, orient="records", lines=True)
    (rep,) = ingest_events(store, [path])
    assert (rep.accepted, rep.rejected) == (3, 0)
    got = store.events()
    assert got["ts"].tolist() == want["ts"].tolist()
    assert got["amount"].tolist() == pytest.approx(want["amount"].tolist(), nan_ok=True)
    for c in EVENT_COLUMNS:
        if c not in ("ts", "amount", "attrs"):
            assert [None if pd.isna(v) else v for v in got[c]] == [None if pd.isna(v) else v for v in want[c]], c
    assert [None if pd.isna(v) else json.loads(v) for v in got["attrs"]] == [None, {"coupon": "X1"}, None]


def test_csv_all_parsed(tmp_path, store):
    path = write(tmp_path / "ev.csv", GOOD_CSV)
    (rep,) = ingest_events(store, [path])
    assert rep == IngestReport(str(path), 4, 0, (), False)
    ev = store.events()
    assert ev["ts"].tolist() == [pd.Timestamp("2024-01-01 10:00"), pd.Timestamp("2024-01-01 10:01"),
                                 pd.Timestamp("2024-01-01 10:00"), pd.Timestamp("2024-01-01 10:00")]
    assert ev["country"].tolist() == ["NA", "DE", "FR", "FR"]            # "NA" is not null
    assert ev["amount"].tolist()[2:] == [19.99, 5.0]
    assert json.loads(ev["attrs"].iloc[0]) == {"channel": "web"} and pd.isna(ev["attrs"].iloc[1])
    assert store.quarantine().empty


def test_tsv_and_gzip(tmp_path, store):
    tsv = write(tmp_path / "ev.tsv", GOOD_CSV.replace(",", "\t"))
    gz = tmp_path / "ev2.csv.gz"
    gz.write_bytes(gzip.compress(GOOD_CSV.replace("u1", "u3").replace("u2", "u4").encode()))
    reps = ingest_events(store, [tsv, gz])
    assert [r.accepted for r in reps] == [4, 4]
    assert store.users()["user_id"].tolist() == ["u1", "u2", "u3", "u4"]


def test_parquet_typed_columns_and_mapping(tmp_path, store):
    df = pd.DataFrame({
        "customer": [101, 102],
        "when": pd.to_datetime(["2024-01-01T08:00:00+08:00", "2024-01-02T00:00:00+00:00"], utc=True),
        "event_type": ["login", "payment"],
        "amount": [np.nan, 3.5],
        "item_id": [5, 6],
        "score_hint": [1, 2],
    })
    path = tmp_path / "ev.parquet"
    df.to_parquet(path)
    (rep,) = ingest_events(store, [path], mapping={"customer": "user_id", "when": "ts"})
    assert rep.accepted == 2
    ev = store.events()
    assert ev["user_id"].tolist() == ["101", "102"] and ev["item_id"].tolist() == ["5", "6"]
    assert ev["ts"].tolist() == [pd.Timestamp("2024-01-01 00:00"), pd.Timestamp("2024-01-02 00:00")]
    assert [json.loads(a) for a in ev["attrs"]] == [{"score_hint": 1}, {"score_hint": 2}]
    with pytest.raises(IngestError, match="mapping names column"):
        normalise_events(read_table(path), {"nope": "user_id"}, file="ev.parquet")


def test_jsonl_nested_attrs_blank_lines_and_json_array(tmp_path, store):
    lines = [
        {"user_id": "u1", "ts": 1704103200, "event_type": "login", "attrs": {"planted": "ato"}, "x": 5},
        {"user_id": 7, "ts": "2024-01-01T00:00:00Z", "event_type": "view"},
        {"user_id": "u2", "ts": 1704103200000, "event_type": "view", "amount": "3.5",
         "attrs": '{"k": "v"}'},
    ]
    text = json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1]) + "\n" + json.dumps(lines[2]) + "\n"
    path = write(tmp_path / "ev.jsonl", text)
    assert read_table(path).index.tolist() == [1, 3, 4]                   # line numbers
    (rep,) = ingest_events(store, [path])
    assert rep.accepted == 3
    ev = store.events().set_index("user_id")
    assert json.loads(ev.loc["u1", "attrs"]) == {"planted": "ato", "x": 5}
    assert json.loads(ev.loc["u2", "attrs"]) == {"k": "v"} and ev.loc["u2", "amount"] == 3.5
    assert ev.loc["7", "ts"] == pd.Timestamp("2024-01-01")
    arr = write(tmp_path / "arr.json", json.dumps(lines[:2]))
    assert read_table(arr)["event_type"].tolist() == ["login", "view"]


def test_timestamp_forms():
    s = pd.Series(["2024-01-01T10:00:00Z", "2024-01-01T12:00:00+02:00", "2024-01-01 10:00:00",
                   "1704103200", "1704103200000", "1704103200.5", None, "yesterday", "99999999999999999"],
                  dtype="str")
    ts, reasons = parse_timestamps(s)
    ten = pd.Timestamp("2024-01-01 10:00")
    assert ts[:5].tolist() == [ten] * 5 and ts[5] == ten + pd.Timedelta(milliseconds=500)
    assert pd.isna(ts[6]) and reasons[6] is None                          # missing: no reason here
    assert reasons[7] == "ts: 'yesterday' is not a timestamp (ISO text, unix s or ms)"
    assert "out of range" in reasons[8]
    num, r2 = parse_timestamps(pd.Series([1704103200, 1704103200000, -5]))
    assert num[:2].tolist() == [ten, ten] and "out of range" in r2[2]


def test_read_taobao_inline(tmp_path):
    path = write(tmp_path / "tb.csv", "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,buy,1511561733\n"
                                      "2,7,8,fav,1511572885\n2,7,8,cart")
    raw = read_raw(path, "taobao")
    assert list(raw.frame.columns) == ["user_id", "item_id", "category", "event_type", "ts"]
    assert raw.frame["event_type"].tolist() == ["view", "purchase", "favourite"]
    assert raw.rejects["row_number"].tolist() == [4]
    assert raw.rejects["reason"].tolist() == ["expected 5 fields, found 4"]
    ev, rej = normalise_events(read_taobao(path))
    assert ev["ts"].iloc[0] == pd.Timestamp("2017-11-24 17:21:10") and rej.empty
    assert set(TAOBAO_EVENT_TYPES) == {"pv", "cart", "fav", "buy"}


@pytest.mark.skipif(not SHARED.exists(), reason="../shared (reference data) is absent")
def test_taobao_reference_sample(store):
    (rep,) = ingest_events(store, [TAOBAO], fmt="taobao")
    # SOURCE.txt: 84,475 events, 815 users; the last line is cut before its timestamp
    assert (rep.accepted, rep.rejected) == (84_475, 1)
    assert rep.reasons == ("row 84476: expected 5 fields, found 4",)
    counts = store.counts()
    assert counts["events"] == 84_475 and counts["users"] == 815
    by_type = store.events()["event_type"].value_counts().to_dict()
    assert by_type == {"view": 75_872, "cart": 4_497, "favourite": 2_356, "purchase": 1_750}
    first = store.timeline("1").iloc[0]
    assert first["ts"] == pd.Timestamp("2017-11-24 17:21:10") and first["item_id"] == "2268318"
    q = store.quarantine()
    assert q["row_number"].tolist() == [84_476] and json.loads(q["raw"].iloc[0])["line"].startswith("100370,")


# ------------------------------------------------------------------------------- bad rows
BAD_ROWS = [
    ("missing user_id", ",2024-01-01,view,", "user_id: missing"),
    ("missing ts", "u9,,view,", "ts: missing"),
    ("missing event_type", "u9,2024-01-01,,", "event_type: missing"),
    ("unparseable ts", "u9,abc,view,", "ts: 'abc' is not a timestamp (ISO text, unix s or ms)"),
    ("ts out of range", "u9,1850-01-01,view,", "ts: '1850-01-01' is out of range (1970-01-01 .. 2100-01-01)"),
    ("negative amount", "u9,2024-01-01,payment,-5", "amount: '-5' is negative"),
    ("non-numeric amount", "u9,2024-01-01,payment,12 EUR", "amount: '12 EUR' is not a number"),
    ("infinite amount", "u9,2024-01-01,payment,inf", "amount: 'inf' is not finite"),
    ("too many fields", "u9,2024-01-01,view,1,2", "expected 4 fields, found 5"),
    ("two problems", ",abc,view,", "user_id: missing; ts: 'abc' is not a timestamp"),
]


@pytest.mark.parametrize("case,line,reason", BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_bad_row_goes_to_quarantine(tmp_path, store, case, line, reason):
    text = "user_id,ts,event_type,amount\nu1,2024-01-01,login,\n" + line + "\nu2,2024-01-02,view,3\n"
    path = write(tmp_path / "ev.csv", text)
    (rep,) = ingest_events(store, [path])
    assert (rep.accepted, rep.rejected) == (2, 1)
    assert rep.reasons[0].startswith(f"row 3: {reason}")
    q = store.quarantine()
    assert len(q) == 1 and q["row_number"].iloc[0] == 3 and q["reason"].iloc[0].startswith(reason)
    assert q["file"].iloc[0] == str(path.resolve())
    assert store.events()["user_id"].tolist() == ["u1", "u2"]           # nothing else changed
    assert store.counts()["events"] == 2 and store.counts()["labels"] == 0


def test_bad_jsonl_lines_and_attrs(tmp_path, store):
    def good(ts: int) -> str:   # three distinct good events (equal ones are one event, stored once)
        return json.dumps({"user_id": "u1", "ts": ts, "event_type": "view"})
    lines = [good(1704103200), "{broken", json.dumps([1, 2]), good(1704103260),
             json.dumps({"user_id": "u2", "ts": 1704103200, "event_type": "view", "attrs": "[1]"}), good(1704103320)]
    path = write(tmp_path / "ev.jsonl", "\n".join(lines) + "\n")
    (rep,) = ingest_events(store, [path])
    assert (rep.accepted, rep.rejected) == (3, 3)
    q = store.quarantine().sort_values("row_number")
    assert q["row_number"].tolist() == [2, 3, 5]
    assert q["reason"].str.split(" \\(").str[0].tolist() == [
        "not valid JSON", "not a JSON object", "attrs: not a JSON object"]


def test_blank_lines_keep_csv_line_numbers(tmp_path):
    path = write(tmp_path / "ev.csv", "user_id,ts,event_type\n\nu1,2024-01-01,view\n\nu2,bad,view\n")
    ev, rej = normalise_events(read_table(path))
    assert len(ev) == 1 and rej["row_number"].tolist() == [5]


def test_all_rows_bad_records_quarantine_only(tmp_path, store):
    path = write(tmp_path / "ev.csv", "user_id,ts,event_type\nu1,x,view\nu2,y,view\n")
    (rep,) = ingest_events(store, [path])
    assert (rep.accepted, rep.rejected) == (0, 2)
    assert store.counts()["events"] == 0 and len(store.quarantine()) == 2
    assert ingest_events(store, [path])[0].skipped and len(store.quarantine()) == 2


# ------------------------------------------------------------------------- garbage files
def garbage_files(tmp_path: Path) -> list[tuple[Path, str | None, str]]:
    rnd = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    files = []
    for name in ("g.csv", "g.parquet", "g.jsonl"):
        (tmp_path / name).write_bytes(rnd)
        files.append((tmp_path / name, None, "binary data|not a readable Parquet"))
    (tmp_path / "latin1.csv").write_bytes("user_id,ts,event_type\nJosé,2024-01-01,view\n".encode("latin-1"))
    files.append((tmp_path / "latin1.csv", None, "not UTF-8"))
    files.append((write(tmp_path / "readme.csv", "# Title\nSome prose, with commas, here\n"), None,
                  "do not have 1 fields"))
    files.append((write(tmp_path / "other.csv", "name,age\nann,31\nbob,42\n"), None,
                  r"missing required event column\(s\) \['user_id', 'ts', 'event_type'\]"))
    files.append((write(tmp_path / "prose.jsonl", "hello\nworld\n{\"a\": 1}\n"), None, "not JSON objects"))
    files.append((write(tmp_path / "empty.csv", ""), None, "empty"))
    files.append((write(tmp_path / "events.jsonl", GOOD_CSV), None, "not JSON objects"))
    files.append((write(tmp_path / "ev.csv", GOOD_CSV), "taobao", "do not have 5 fields"))
    files.append((write(tmp_path / "notes.txt", GOOD_CSV), None, "unknown file type"))
    files.append((tmp_path / "missing.csv", None, "no such file"))
    return files


def test_garbage_files_change_nothing(tmp_path, store):
    before = all_counts(store)
    for path, fmt, message in garbage_files(tmp_path):
        with pytest.raises(IngestError, match=message) as info:
            ingest_events(store, [path], fmt=fmt)
        assert "\n" not in str(info.value) and path.name in str(info.value)
        assert all_counts(store) == before, path.name


def test_garbage_among_good_files_writes_nothing(tmp_path, store):
    good = write(tmp_path / "good.csv", GOOD_CSV)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(IngestError, match="bad.parquet"):
        ingest_events(store, [good, bad])
    assert all_counts(store)["events"] == 0 and all_counts(store)["ingests"] == 0
    assert ingest_events(store, [good])[0].accepted == 4                 # good file still new


# --------------------------------------------------------------------------- idempotency
def test_reingest_adds_nothing(tmp_path, store):
    path = write(tmp_path / "ev.csv", GOOD_CSV.replace("u2,abc", "") + "u3,nope,view,,,\n")
    first = ingest_events(store, [path])[0]
    counts = all_counts(store)
    again = ingest_events(store, [path])[0]
    assert again == IngestReport(str(path), 0, 0, (), True)
    copy = tmp_path / "copy.csv"
    shutil.copy(path, copy)
    assert ingest_events(store, [copy])[0].skipped
    assert all_counts(store) == counts and first.rejected == 1
    other = write(tmp_path / "other.csv", GOOD_CSV.replace("u1", "u7"))
    reps = ingest_events(store, [other, other])                          # same file twice in one call
    assert [r.skipped for r in reps] == [False, True]
    # rows not about u1 are the same events as before: counted as duplicates, not stored again
    added = all_counts(store)["events"] - counts["events"]
    assert added == reps[0].accepted >= 1 and reps[0].accepted + reps[0].duplicates == 4


# ---------------------------------------------------------------------------------- labels
def test_labels_values_and_rejects(tmp_path, store):
    text = ("user_id,label,as_of,split,source,note,extra\n"
            "u1,Fraud,2024-01-01,train,,n1,x\n"
            "u2,0,,TEST,Synthetic,,\n"
            "u3,TRUE,1704103200,,,,\n"
            "u4,legit,,,,,\n"
            "u5,maybe,,,,,\n"
            "u6,1,,dev,,,\n"
            "u7,1,,,robot,,\n"
            "u8,,,,,,\n")
    path = write(tmp_path / "labels.csv", text)
    rep = ingest_labels(store, path)
    assert (rep.accepted, rep.rejected) == (4, 4)
    assert rep.reasons == (
        "row 6: label: 'maybe' is not one of 1/0/true/false/fraud/legit",
        "row 7: split: 'dev' is not one of train/test",
        "row 8: source: 'robot' is not one of analyst/import/synthetic",
        "row 9: label: missing",
    )
    lab = store.latest_labels().set_index("user_id")
    assert lab["label"].to_dict() == {"u1": 1, "u2": 0, "u3": 1, "u4": 0}
    assert lab.loc["u1", "as_of"] == pd.Timestamp("2024-01-01") and lab.loc["u3", "as_of"] == pd.Timestamp("2024-01-01 10:00")
    assert lab.loc["u2", "split"] == "test" and lab.loc["u2", "source"] == "synthetic"
    assert lab.loc["u1", "source"] == "import" and lab.loc["u1", "note"] == "n1"
    assert ingest_labels(store, path).skipped
    with pytest.raises(IngestError, match="missing required label column"):
        ingest_labels(store, write(tmp_path / "l2.csv", "user_id,is_fraud\nu1,1\n"))


def test_labels_latest_wins_across_files(tmp_path, store):
    ingest_labels(store, write(tmp_path / "a.csv", "user_id,label\nu1,1\nu2,1\n"))
    ingest_labels(store, write(tmp_path / "b.csv", "user_id,label\nu1,0\n"))
    assert store.latest_labels().set_index("user_id")["label"].to_dict() == {"u1": 0, "u2": 1}
    assert len(store.label_history("u1")) == 2


# ------------------------------------------------------------------------- without a store
def test_read_events_warns_or_raises(tmp_path):
    path = write(tmp_path / "ev.csv", GOOD_CSV + "u9,bad,view,,,\n")
    with pytest.warns(UserWarning, match="1 of 5 rows rejected"):
        ev = read_events(path)
    assert list(ev.columns) == list(EVENT_COLUMNS) and len(ev) == 4
    with pytest.raises(IngestError, match="row 6: ts: 'bad'"):
        read_events(path, strict=True)
    clean = write(tmp_path / "clean.csv", GOOD_CSV)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_events(clean)) == 4
    lab = read_labels(write(tmp_path / "l.csv", "user_id,label\nu1,fraud\nu2,legit\n"))
    assert lab["label"].tolist() == [1, 0]


def test_normalise_labels_requires_columns():
    with pytest.raises(IngestError, match=r"\['label'\]"):
        normalise_labels(pd.DataFrame({"user_id": ["u1"]}), file="x")


def test_parse_mapping():
    assert parse_mapping(["customer=user_id", "time=ts,kind=event_type"]) == {
        "customer": "user_id", "time": "ts", "kind": "event_type"}
    assert parse_mapping(None) == {}
    with pytest.raises(ValueError, match="'customer'"):
        parse_mapping(["customer"])
