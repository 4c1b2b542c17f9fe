"""`sleuth.event_signals`: the per-event velocity and entity signals of models/signals.py kept in
the store, refreshed incrementally (`refresh`) and read back (`read`) by `Store`.

The table is derived data: one row per event (event_id, user_id, ts, signals), its columns set by
the config, so it is created here (not in the schema) and rebuilt whenever the config changes.
Meta keys record the config and how far events / labels were read.
"""
from __future__ import annotations

import json
from typing import Any

import duckdb
import pandas as pd

from analyst.store.schema import read_meta, write_meta
from models.signals import (  # noqa: F401  (re-exported for the store's callers)
    LOOKBACK, USER_SIGNALS, SignalConfig, compute, entity_signals, frame_signals, signal_columns,
)

_META_CONFIG, _META_EVENT, _META_LABEL = "signals_config", "signals_event_id", "signals_label_id"



def _has_table(cur: duckdb.DuckDBPyConnection) -> bool:
    return bool(cur.execute("SELECT 1 FROM duckdb_tables() WHERE database_name = 'sleuth' "
                            "AND table_name = 'event_signals'").fetchall())


def refresh(cur: duckdb.DuckDBPyConnection, config: SignalConfig) -> int:
    """Bring `sleuth.event_signals` up to date inside the caller's transaction; returns how many
    events were (re)computed. Events that arrived since the last refresh, and labels that did,
    mark the earliest time that can change (an event's ts; a label's as_of, else decided_at);
    every event from there on is recomputed, nothing before it is touched (a label is never
    known before either of its times)."""
    max_event = cur.execute("SELECT coalesce(max(event_id), 0) FROM sleuth.events").fetchall()[0][0]
    max_label = cur.execute("SELECT coalesce(max(label_id), 0) FROM sleuth.labels").fetchall()[0][0]
    wanted = json.dumps(config.as_dict(), sort_keys=True)
    exists = _has_table(cur)
    full = not exists or read_meta(cur, _META_CONFIG) != wanted
    since = None
    if not full:
        seen_event = int(read_meta(cur, _META_EVENT) or 0)
        seen_label = int(read_meta(cur, _META_LABEL) or 0)
        since = cur.execute(
            "SELECT least((SELECT min(ts) FROM sleuth.events WHERE event_id > ?), "
            "(SELECT min(least(as_of, decided_at)) FROM sleuth.labels WHERE label_id > ?))",
            [seen_event, seen_label]).fetchall()[0][0]
    if full or since is not None:
        frame = compute(cur, config, "sleuth.events", "sleuth.labels", since=since)
        cur.register("_signals", frame)
        try:
            if full:
                cur.execute("DROP TABLE IF EXISTS sleuth.event_signals")
                cur.execute("CREATE TABLE sleuth.event_signals AS SELECT * FROM _signals")
            else:
                cur.execute("DELETE FROM sleuth.event_signals WHERE ts >= ?", [since])
                cur.execute("INSERT INTO sleuth.event_signals SELECT * FROM _signals")
        finally:
            cur.unregister("_signals")
    write_meta(cur, _META_CONFIG, wanted)
    write_meta(cur, _META_EVENT, str(max_event))
    write_meta(cur, _META_LABEL, str(max_label))
    return len(frame) if full or since is not None else 0


def read(cur: duckdb.DuckDBPyConnection, user_ids: Any = None) -> pd.DataFrame:
    """Stored signals (event_id, user_id, ts, signals), in (user_id, ts, event_id) order; an empty
    frame before the first refresh."""
    exists = _has_table(cur)
    if not exists:
        return pd.DataFrame(columns=["event_id", "user_id", "ts"])
    sql = "SELECT * FROM sleuth.event_signals"
    if user_ids is not None:
        cur.register("_sig_ids", pd.DataFrame({"user_id": pd.Series(list(user_ids), dtype="str")}))
        sql += " WHERE user_id IN (SELECT user_id FROM _sig_ids)"
    return cur.execute(sql + " ORDER BY user_id, ts, event_id").df()


def attach(cur: duckdb.DuckDBPyConnection, frame: pd.DataFrame, user_ids: Any = None) -> pd.DataFrame:
    """`frame` (events with an `event_id` column, any order) with the stored signal columns added
    by event_id and `event_id` dropped; row order kept. Before the first refresh there are none:
    ValueError (call Store.refresh_signals first)."""
    if not _has_table(cur):
        raise ValueError("the store has no signals yet: run Store.refresh_signals() (sleuth train / "
                         "score do) before reading events with signals")
    values = read(cur, user_ids).drop(columns=["user_id", "ts"]).set_index("event_id")
    out = frame.drop(columns=["event_id"]).reset_index(drop=True)
    joined = values.reindex(frame["event_id"].to_numpy())
    for col in values.columns:
        out[col] = joined[col].to_numpy(dtype="float64")
    return out
