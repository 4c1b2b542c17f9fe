"""The store's schema version and migration: a file written by schema version 1 (hand-typed
DDL, old column order) opens, is upgraded in place and reads the same; a field the table gained
is added to an existing file; a file from a newer sleuth is refused without being changed."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from analyst.store import SCHEMA_VERSION, Store, StoreVersionError
from models.contracts import EVENT_COLUMNS

# schema version 1's events table exactly as it was written (column order included)
V1_EVENTS_DDL = """CREATE TABLE sleuth.events (
    event_id BIGINT NOT NULL, user_id VARCHAR NOT NULL, ts TIMESTAMP NOT NULL,
    event_type VARCHAR NOT NULL, session_id VARCHAR, item_id VARCHAR, category VARCHAR,
    amount DOUBLE, currency VARCHAR, query VARCHAR, device_id VARCHAR, ip VARCHAR,
    country VARCHAR, status VARCHAR, payment_method VARCHAR, address_id VARCHAR, attrs JSON,
    ingest_id INTEGER)"""


def _v1_file(path) -> None:
    con = duckdb.connect()
    con.execute("ATTACH ? AS sleuth", [str(path)])
    con.execute("CREATE TABLE sleuth.meta (key VARCHAR NOT NULL, value VARCHAR)")
    con.execute("INSERT INTO sleuth.meta VALUES ('schema_version', '1'), ('events_runs', '1')")
    con.execute(V1_EVENTS_DDL)
    con.execute("INSERT INTO sleuth.events VALUES "
                "(1, 'u1', TIMESTAMP '2024-01-01 10:00', 'login', 's1', NULL, NULL, NULL, NULL, NULL,"
                " 'd1', '1.2.3.4', 'DE', 'ok', NULL, NULL, NULL, NULL),"
                "(2, 'u1', TIMESTAMP '2024-01-01 10:05', 'payment', 's1', 'i1', 'c1', 12.5, 'EUR', NULL,"
                " 'd1', '1.2.3.4', 'DE', 'ok', 'card_1', 'a1', NULL, NULL)")
    con.close()


def _meta_version(path) -> str:
    con = duckdb.connect()
    con.execute("ATTACH ? AS sleuth (READ_ONLY)", [str(path)])
    value = con.execute("SELECT value FROM sleuth.meta WHERE key = 'schema_version'").fetchall()[0][0]
    con.close()
    return value


def test_version_1_file_is_migrated_and_reads_the_same(tmp_path):
    path = tmp_path / "old.duckdb"
    _v1_file(path)
    with Store(path) as store:
        got = store.timeline("u1")
        assert list(got.columns) == list(EVENT_COLUMNS)
        assert got["event_type"].tolist() == ["login", "payment"]
        assert got["amount"].iloc[1] == 12.5 and got["payment_method"].iloc[1] == "card_1"
        assert got["address_id"].iloc[1] == "a1" and got["device_id"].tolist() == ["d1", "d1"]
        # inserts and the sorted rebuild name their columns: the old column order does not matter
        new = got.iloc[[1]].assign(user_id="u0", ts=pd.Timestamp("2024-01-02 08:00"))
        store.add_events(new)
        store.compact()
        u0 = store.timeline("u0")
        assert u0["payment_method"].tolist() == ["card_1"] and u0["amount"].tolist() == [12.5]
        assert store.timeline("u1")["item_id"].tolist()[1] == "i1"
        assert store.counts()["labels"] == 0          # tables v1 files lacked are created
    assert _meta_version(path) == str(SCHEMA_VERSION)


def test_a_field_the_table_gained_is_added_to_an_existing_file(tmp_path):
    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        store.add_events(pd.DataFrame({"user_id": ["u1"], "ts": pd.to_datetime(["2024-01-01"]),
                                       "event_type": ["login"], "device_id": ["d1"]}))
    con = duckdb.connect()
    con.execute("ATTACH ? AS sleuth", [str(path)])
    con.execute("ALTER TABLE sleuth.events DROP COLUMN item_id")   # as a file from before the field
    con.close()
    with Store(path) as store:
        got = store.timeline("u1")
        assert list(got.columns) == list(EVENT_COLUMNS)
        assert got["device_id"].tolist() == ["d1"] and got["item_id"].isna().all()


def test_a_newer_file_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "new.duckdb"
    with Store(path) as store:
        store.add_events(pd.DataFrame({"user_id": ["u1"], "ts": pd.to_datetime(["2024-01-01"]),
                                       "event_type": ["login"]}))
    con = duckdb.connect()
    con.execute("ATTACH ? AS sleuth", [str(path)])
    con.execute("UPDATE sleuth.meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    con.close()
    before = path.read_bytes()
    for read_only in (False, True):
        with pytest.raises(StoreVersionError, match="upgrade sleuth"):
            Store(path, read_only=read_only)
    assert path.read_bytes() == before


def test_read_only_open_of_an_old_file_says_how_to_migrate(tmp_path):
    path = tmp_path / "old.duckdb"
    _v1_file(path)
    with pytest.raises(StoreVersionError, match="read-write once"):
        Store(path, read_only=True)
    assert _meta_version(path) == "1"
