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

from analyst.store.schema import read_meta, user_filter, write_meta
from models.signals import (  # noqa: F401  (re-exported for the store's callers)
    LOOKBACK, USER_SIGNALS, SignalConfig, compute, entity_prefix, entity_signals, frame_signals, signal_columns,
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
    sql, params = "SELECT * FROM sleuth.event_signals", []
    if user_ids is not None:
        cond, params = user_filter(cur, user_ids, "_sig_ids")
        sql += " WHERE " + cond
    return cur.sql(sql + " ORDER BY user_id, ts, event_id", params=params).to_arrow_table().to_pandas()


def attach(cur: duckdb.DuckDBPyConnection, frame: pd.DataFrame, user_ids: Any = None, *,
           known_at: Any = None) -> pd.DataFrame:
    """`frame` (events with an `event_id` column, any order) with the stored signal columns added
    by event_id and `event_id` dropped; row order kept. Before the first refresh there are none:
    ValueError (call Store.refresh_signals first).

    `known_at` (a UTC timestamp): the scoring-time view. Each user's LAST event then gets its
    entity fraud counts as known at `known_at` instead of at the event (`known_now`): a risk
    scored now reads every label known now, as a new event would, so an analyst's decision
    reaches the accounts that share its devices and cards at their next scoring. Every earlier
    event keeps the causal value it was trained with."""
    if not _has_table(cur):
        raise ValueError("the store has no signals yet: run Store.refresh_signals() (sleuth train / "
                         "score do) before reading events with signals")
    values = read(cur, user_ids).drop(columns=["user_id", "ts"]).set_index("event_id")
    out = frame.drop(columns=["event_id"]).reset_index(drop=True)
    joined = values.reindex(frame["event_id"].to_numpy())
    for col in values.columns:
        out[col] = joined[col].to_numpy(dtype="float64")
    if known_at is not None and len(frame):
        config = SignalConfig(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in json.loads(read_meta(cur, _META_CONFIG) or "{}").items()})
        last = (frame.reset_index(drop=True).assign(_row=range(len(frame)))
                .sort_values(["user_id", "ts", "event_id"], kind="stable").groupby("user_id").tail(1))
        now = known_now(cur, config, last["event_id"].tolist(), known_at)
        if not now.empty:
            rows = last.set_index("event_id").loc[now.index, "_row"].to_numpy()
            for col in now.columns:
                if col in out.columns:
                    out.loc[rows, col] = now[col].to_numpy(dtype="float64")
    return out


# per value: its users with a known label; only the values the events `t` carry (`tvids`, built
# per entity column in `known_now`), not all of them (measured 2026-12-04, 20k users: 130 ms ->
# see README, Streaming)
_SQL_KNOWN_LABELS = (
    "WITH t AS (SELECT * FROM sleuth.events WHERE event_id = ANY($ids)), "
    "lab AS (SELECT user_id, arg_max(label, (known_at, label_id)) AS label FROM ("
    "  SELECT user_id, CAST(label AS DOUBLE) AS label, label_id, "
    "  least(as_of + to_seconds(CAST($delay AS DOUBLE)), decided_at) AS known_at FROM sleuth.labels) "
    "  WHERE known_at <= CAST($now AS TIMESTAMP) GROUP BY user_id), "
    "{tvids}, "
    "per_value AS (SELECT e.vid, count(*) AS known, sum(l.label) AS fraud FROM sleuth.entity_users e "
    "  JOIN sleuth.link_users u ON u.uid = e.uid JOIN lab l ON l.user_id = u.user_id "
    "  WHERE e.vid IN (SELECT vid FROM tvids) GROUP BY e.vid) "
    "SELECT t.event_id, own.label AS own_label"
)


def known_now(cur: duckdb.DuckDBPyConnection, config: SignalConfig, event_ids: list[int],
              known_at: Any) -> pd.DataFrame:
    """Entity fraud signals of `event_ids` with the labels known at `known_at`: per entity
    column p, `p_fraud_users` (other users on the value labelled fraud) and `p_fraud_share`
    (their share of the other users on it with a known label; null while none), indexed by
    event_id. Who used a value comes from the link tables (analyst/store/links.py): an empty
    frame before their first refresh. Same rules as models/signals.py: a label is known
    `label_delay_days` after its as_of or at decided_at, whichever first; the latest known label
    of a user counts; the user's own label never counts."""
    from analyst.store.links import has_tables
    if not event_ids or not config.entity_columns or not has_tables(cur):
        return pd.DataFrame()
    prefixes = [entity_prefix(c) for c in config.entity_columns]
    selects, joins = [], []
    for i, (c, p) in enumerate(zip(config.entity_columns, prefixes)):   # names from the checked config
        selects.append(f"t.{c} IS NOT NULL AS has_{i}, coalesce(pv{i}.known, 0) AS known_{i}, "
                       f"coalesce(pv{i}.fraud, 0) AS fraud_{i}")
        joins.append(f" LEFT JOIN sleuth.entity_values v{i} ON v{i}.kind = '{p}' AND v{i}.value = t.{c}"
                     f" LEFT JOIN per_value pv{i} ON pv{i}.vid = v{i}.vid")
    # the values the events carry (kinds bound as parameters; columns from the checked config)
    tvids = ("tvids AS (SELECT vid FROM sleuth.entity_values WHERE "
             + " OR ".join("(kind = $kind_" + str(i) + " AND value IN (SELECT " + c + " FROM t WHERE "
                           + c + " IS NOT NULL))" for i, c in enumerate(config.entity_columns)) + ")")
    sql = (_SQL_KNOWN_LABELS.replace("{tvids}", tvids) + ", " + ", ".join(selects)
           + " FROM t LEFT JOIN lab own ON own.user_id = t.user_id" + "".join(joins))
    params = {"ids": [int(e) for e in event_ids], "now": pd.Timestamp(known_at).to_pydatetime(),
              "delay": config.label_delay_days * 86400.0, **{f"kind_{i}": p for i, p in enumerate(prefixes)}}
    raw = cur.execute(sql, params).df().set_index("event_id")
    own = raw["own_label"].astype("float64")
    out = pd.DataFrame(index=raw.index)
    for i, p in enumerate(prefixes):
        has = raw[f"has_{i}"].astype(bool)
        # clipped: while the links lag the events, a user's own pair may not be counted yet
        known = (raw[f"known_{i}"].astype("float64") - own.notna().astype("float64")).clip(lower=0.0)
        fraud = (raw[f"fraud_{i}"].astype("float64") - own.fillna(0.0)).clip(lower=0.0)
        out[p + "_fraud_users"] = fraud.where(has)
        out[p + "_fraud_share"] = (fraud / known).where(has & (known > 0))
    return out
