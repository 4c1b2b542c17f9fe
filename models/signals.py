"""Per-event velocity and entity signals, computed by DuckDB, never from the future.

For every event (user u, time t) two groups of numbers, each using only what was known at t:

User velocity (what the per-user aggregate baseline knows, but at every event):
  user_events_{1h,1d,7d}      u's events in the window ending at t (t included)
  user_same_type_{1h,1d,7d}   u's events of this event's type in that window
  user_amount_{1d,7d}         sum of u's amounts in the window
  user_failed_{1h,1d,7d}      u's events with a failure status (anything but OK_STATUSES)
  user_devices_7d, user_payments_7d   distinct devices / payment methods of u in 7 days
  user_since_same_type        seconds since u's previous event of this type (null: the first)

Entity signal, for each entity column c of `SignalConfig.entity_columns` (prefix p = c without
"_id": device, ip, payment_method, address, item):
  p_users                     OTHER users seen on this value of c up to t
  p_events_{1h,1d,7d}         events of anyone on this value in the window
  p_fraud_users, p_fraud_share  of the other users on it whose label was known before t: how
                              many are fraud, and that share (null while none is known)

When a label is known (decided here, 2026-12-02): `label_delay` (default 7 days, the
handbook's feedback delay) after the time it is about (`as_of`), or when it was decided
(`decided_at`: an analyst's decision, a chargeback), whichever comes first; a label with neither
is never known here. Synthetic fraud labels carry `decided_at` = the fraud's first event + 7
days (when a chargeback or report would arrive). A later label of the same user changes the
counts only from its own known time on. A user's own label never counts in its own entity
signal (that would be its target).

Windows include events at the same timestamp as t (they are peers in time). Everything is one
SELECT over an events table and a labels table, so the store runs it on its file
(analyst/store/signals.py keeps `sleuth.event_signals`) and `frame_signals` on plain frames
(evaluation, benchmarks) with the same numbers. It lives with the models because the scorer reads
these columns as event fields (models/tokenizer.py) and the evaluation computes them per split. Incremental: `since` computes only
events at or after it, reading back 7 days for the windows and the whole history for first-seen
users and labels, so a refresh after an ingest costs the new days, not the whole store.

Identifiers in the SQL come only from the field table (checked in `SignalConfig`); values (times,
the delay) travel as parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from models.contracts import ENTITY_COLUMNS, FIELDS_BY_NAME, OK_STATUSES

WINDOWS: tuple[tuple[str, str], ...] = (("1h", "1 HOUR"), ("1d", "1 DAY"), ("7d", "7 DAYS"))
LOOKBACK = pd.Timedelta(days=7)   # the longest window: an incremental run reads this far back
_ok_list = ", ".join("'" + s + "'" for s in sorted(OK_STATUSES))   # constants of contracts
_FAILED = "status IS NOT NULL AND lower(status) NOT IN (" + _ok_list + ")"


@dataclass(frozen=True)
class SignalConfig:
    """Which columns are entities, and how long a label takes to become known (days)."""

    entity_columns: tuple[str, ...] = ENTITY_COLUMNS
    label_delay_days: float = 7.0

    def __post_init__(self) -> None:
        cols = tuple(self.entity_columns)
        object.__setattr__(self, "entity_columns", cols)
        for c in cols:
            field = FIELDS_BY_NAME.get(c)
            if field is None or field.dtype != "string" or field.role in ("key", "extra", "text"):
                raise ValueError(f"SignalConfig.entity_columns: {c!r} is not a string event field that "
                                 f"values can be shared on; expected some of {ENTITY_COLUMNS}")
        if len(set(cols)) != len(cols):
            raise ValueError(f"SignalConfig.entity_columns={cols}: a column is listed twice")
        if not np.isfinite(self.label_delay_days) or self.label_delay_days < 0:
            raise ValueError(f"SignalConfig.label_delay_days={self.label_delay_days!r}: expected a number >= 0")

    def as_dict(self) -> dict[str, Any]:
        return {"entity_columns": list(self.entity_columns), "label_delay_days": float(self.label_delay_days)}


def entity_prefix(column: str) -> str:
    return column.removesuffix("_id")


USER_SIGNALS: tuple[str, ...] = (
    tuple("user_events_" + w for w, _ in WINDOWS) + tuple("user_same_type_" + w for w, _ in WINDOWS)
    + ("user_amount_1d", "user_amount_7d") + tuple("user_failed_" + w for w, _ in WINDOWS)
    + ("user_devices_7d", "user_payments_7d", "user_since_same_type")
)


def entity_signals(column: str) -> tuple[str, ...]:
    p = entity_prefix(column)
    return ((p + "_users",) + tuple(p + "_events_" + w for w, _ in WINDOWS)
            + (p + "_fraud_users", p + "_fraud_share"))


def signal_columns(config: SignalConfig = SignalConfig()) -> tuple[str, ...]:
    """The signal columns, in output order (after `event_id`)."""
    return USER_SIGNALS + tuple(s for c in config.entity_columns for s in entity_signals(c))


def _window(partition: str, width: str) -> str:
    return ("OVER (PARTITION BY " + partition + " ORDER BY ts RANGE BETWEEN INTERVAL " + width
            + " PRECEDING AND CURRENT ROW)")


def _user_select() -> str:
    parts = []
    for w, width in WINDOWS:
        parts.append("count(*) " + _window("user_id", width) + " AS user_events_" + w)
    for w, width in WINDOWS:
        parts.append("count(*) " + _window("user_id, event_type", width) + " AS user_same_type_" + w)
    for w, width in WINDOWS[1:]:
        parts.append("coalesce(sum(amount) " + _window("user_id", width) + ", 0) AS user_amount_" + w)
    for w, width in WINDOWS:
        parts.append("count(*) FILTER (WHERE " + _FAILED + ") " + _window("user_id", width)
                     + " AS user_failed_" + w)
    parts.append("count(DISTINCT device_id) " + _window("user_id", "7 DAYS") + " AS user_devices_7d")
    parts.append("count(DISTINCT payment_method) " + _window("user_id", "7 DAYS") + " AS user_payments_7d")
    return ", ".join(parts)


def _entity_ctes(c: str, incremental: bool = False) -> str:
    """CTEs for one entity column: window counts, first-seen users, the label stream on it.
    `incremental`: only the values the target events carry (every CTE is partitioned by value,
    so theirs come out the same; the other values' rows are never read by the target)."""
    p = entity_prefix(c)
    win = ", ".join("count(*) " + _window(c, width) + " AS " + p + "_events_" + w for w, width in WINDOWS)
    only = (" AND " + c + " IN (SELECT " + c + " FROM target WHERE " + c + " IS NOT NULL)") if incremental else ""
    return (
        p + "_win AS (SELECT event_id, " + win + " FROM base WHERE " + c + " IS NOT NULL" + only + "), "
        # each user's first event on each value of c, over the whole history
        + p + "_pairs AS (SELECT " + c + " AS v, user_id, min(ts) AS first_ts FROM ev WHERE "
        + c + " IS NOT NULL" + only + " GROUP BY ALL), "
        # distinct users on a value by time: cumulative count over first-seen times
        + p + "_seen AS (SELECT v, first_ts, sum(count(*)) OVER (PARTITION BY v ORDER BY first_ts) AS n "
        "FROM " + p + "_pairs GROUP BY v, first_ts), "
        # a user's label changes reach a value once both the user was on it and the label known
        + p + "_inc AS (SELECT pr.v, greatest(pr.first_ts, d.known_at) AS at_ts, sum(d.d_known) AS dk, "
        "sum(d.d_fraud) AS df FROM " + p + "_pairs pr JOIN lab_d d USING (user_id) GROUP BY ALL), "
        + p + "_cum AS (SELECT v, at_ts, sum(dk) OVER (PARTITION BY v ORDER BY at_ts) AS known, "
        "sum(df) OVER (PARTITION BY v ORDER BY at_ts) AS fraud FROM " + p + "_inc)"
    )


def _entity_columns_sql(c: str) -> tuple[str, str]:
    """(select list, joins) adding one entity column's signals to the target events `t`."""
    p = entity_prefix(c)
    own = ("CASE WHEN " + p + "_me.first_ts < t.ts THEN coalesce(me.known, 0) ELSE 0 END")
    own_fraud = ("CASE WHEN " + p + "_me.first_ts < t.ts THEN coalesce(me.fraud, 0) ELSE 0 END")
    known = "(coalesce(" + p + "_c.known, 0) - " + own + ")"
    fraud = "(coalesce(" + p + "_c.fraud, 0) - " + own_fraud + ")"
    select = (
        "CASE WHEN t." + c + " IS NULL THEN NULL ELSE " + p + "_s.n - 1 END AS " + p + "_users, "
        + ", ".join(p + "_w." + p + "_events_" + w for w, _ in WINDOWS) + ", "
        "CASE WHEN t." + c + " IS NULL THEN NULL ELSE " + fraud + " END AS " + p + "_fraud_users, "
        "CASE WHEN t." + c + " IS NULL OR " + known + " <= 0 THEN NULL ELSE " + fraud + " / " + known
        + " END AS " + p + "_fraud_share"
    )
    joins = (
        " LEFT JOIN " + p + "_win " + p + "_w ON " + p + "_w.event_id = t.event_id"
        " ASOF LEFT JOIN " + p + "_seen " + p + "_s ON t." + c + " = " + p + "_s.v AND t.ts >= "
        + p + "_s.first_ts"
        " ASOF LEFT JOIN " + p + "_cum " + p + "_c ON t." + c + " = " + p + "_c.v AND t.ts > " + p + "_c.at_ts"
        " LEFT JOIN " + p + "_pairs " + p + "_me ON " + p + "_me.v = t." + c + " AND " + p
        + "_me.user_id = t.user_id"
    )
    return select, joins


def signals_sql(config: SignalConfig, events: str, labels: str, incremental: bool = False) -> str:
    """One SELECT giving event_id, user_id, ts + `signal_columns(config)` for the events with ts >= ? (param 1,
    a timestamp), reading `events` (event_id, user_id, ts, event_type, status, amount, device_id,
    payment_method and the entity columns) and `labels` (user_id, label, as_of, decided_at,
    label_id). Parameters: since, since - LOOKBACK, label delay in seconds.

    `incremental` (a refresh of recent events): every history CTE reads only the users and
    entity values of the target events. Each is partitioned by user or by value, so the target's
    numbers are the same (tests/test_signals.py compares with a full recompute); a streamed batch
    then costs what its users and values hold, not the whole store (measured 2026-12-04, 4k users:
    460 -> see README, Streaming)."""
    cols = ("event_id", "user_id", "ts", "event_type", "status", "amount", "device_id", "payment_method")
    cols = cols + tuple(c for c in config.entity_columns if c not in cols)
    mine = " WHERE user_id IN (SELECT user_id FROM target)" if incremental else ""
    if incremental:
        # only the rows of the target's users or entity values: one scan, a small `ev` (DuckDB
        # materialises a CTE read 26 times; all events were 90 of 234 ms at 2.2M events)
        keys = ("user_id",) + tuple(config.entity_columns)
        ev = ("tgt AS (SELECT " + ", ".join(keys) + " FROM " + events + " WHERE ts >= CAST($1 AS TIMESTAMP)), "
              "ev AS (SELECT " + ", ".join(cols) + " FROM " + events + " WHERE "
              + " OR ".join(k + " IN (SELECT " + k + " FROM tgt WHERE " + k + " IS NOT NULL)" for k in keys) + ")")
    else:
        ev = "ev AS (SELECT " + ", ".join(cols) + " FROM " + events + ")"
    ctes = [
        ev,
        "base AS (SELECT * FROM ev WHERE ts >= CAST($2 AS TIMESTAMP))",
        "target AS (SELECT * FROM ev WHERE ts >= CAST($1 AS TIMESTAMP))",
        "user_win AS (SELECT event_id, " + _user_select() + " FROM base"
        + (" WHERE user_id IN (SELECT user_id FROM target)" if incremental else "") + ")",
        # previous event of the same type, over the whole history
        "prev AS (SELECT t.event_id, epoch(t.ts) - epoch(p.ts) AS since FROM target t "
        "ASOF JOIN (SELECT * FROM ev" + mine + ") p ON t.user_id = p.user_id AND t.event_type = p.event_type "
        "AND t.ts > p.ts)",
        # labels as changes at the time they became known
        "lab_t AS (SELECT user_id, CAST(label AS DOUBLE) AS label, label_id, "
        "least(as_of + to_seconds(CAST($3 AS DOUBLE)), decided_at) AS known_at FROM " + labels + ")",
        "lab_d AS (SELECT user_id, known_at, label - coalesce(lag(label) OVER w, 0) AS d_fraud, "
        "CASE WHEN lag(label) OVER w IS NULL THEN 1 ELSE 0 END AS d_known FROM lab_t "
        "WHERE known_at IS NOT NULL WINDOW w AS (PARTITION BY user_id ORDER BY known_at, label_id))",
        "lab_u AS (SELECT user_id, known_at, sum(sum(d_known)) OVER (PARTITION BY user_id ORDER BY known_at) "
        "AS known, sum(sum(d_fraud)) OVER (PARTITION BY user_id ORDER BY known_at) AS fraud "
        "FROM lab_d GROUP BY user_id, known_at)",
    ]
    ctes += [_entity_ctes(c, incremental) for c in config.entity_columns]
    selects = ["t.event_id", "t.user_id", "t.ts"] + ["uw." + s for s in USER_SIGNALS if s != "user_since_same_type"]
    selects.append("pv.since AS user_since_same_type")
    joins = (" LEFT JOIN user_win uw ON uw.event_id = t.event_id"
             " LEFT JOIN prev pv ON pv.event_id = t.event_id"
             " ASOF LEFT JOIN lab_u me ON t.user_id = me.user_id AND t.ts > me.known_at")
    for c in config.entity_columns:
        select, join = _entity_columns_sql(c)
        selects.append(select)
        joins += join
    return ("WITH " + ", ".join(ctes) + " SELECT " + ", ".join(selects) + " FROM target t" + joins
            + " ORDER BY t.event_id")


def compute(cur: duckdb.DuckDBPyConnection, config: SignalConfig, events: str, labels: str,
            since: Any = None) -> pd.DataFrame:
    """Signals of the events at or after `since` (all when None), as a frame sorted by event_id."""
    start = pd.Timestamp("1677-09-22") if since is None else pd.Timestamp(since)
    lookback = start if since is None else start - LOOKBACK
    params = [start.to_pydatetime(), lookback.to_pydatetime(), config.label_delay_days * 86400.0]
    frame = cur.execute(signals_sql(config, events, labels, incremental=since is not None), params).df()
    for c in signal_columns(config):
        frame[c] = frame[c].astype("float64")
    return frame


def frame_signals(events: pd.DataFrame, labels: pd.DataFrame | None = None,
                  config: SignalConfig = SignalConfig()) -> pd.DataFrame:
    """Signals for a plain events frame (row order kept; the index is reset), with the labels that
    are known, the same numbers the store computes. Columns: `signal_columns(config)`."""
    need = {"user_id", "ts", "event_type"}
    missing = sorted(need - set(events.columns))
    if missing:
        raise ValueError(f"events frame lacks column(s) {missing} for signals")
    ev = pd.DataFrame({"event_id": np.arange(len(events), dtype=np.int64),
                       "user_id": events["user_id"].astype(str).to_numpy(),
                       "ts": pd.to_datetime(events["ts"]).to_numpy()})
    for c in ("event_type", "status", "device_id", "payment_method") + config.entity_columns:
        ev[c] = events[c].to_numpy() if c in events.columns else pd.Series(None, index=ev.index, dtype="str")
    ev["amount"] = (pd.to_numeric(events["amount"], errors="coerce").to_numpy()
                    if "amount" in events.columns else np.nan)
    lab = pd.DataFrame({"user_id": pd.Series(dtype="str"), "label": pd.Series(dtype="float64"),
                        "as_of": pd.Series(dtype="datetime64[us]"),
                        "decided_at": pd.Series(dtype="datetime64[us]"), "label_id": pd.Series(dtype="int64")})
    if labels is not None and len(labels):
        lab = pd.DataFrame({
            "user_id": labels["user_id"].astype(str).to_numpy(),
            "label": pd.to_numeric(labels["label"]).astype("float64").to_numpy(),
            "as_of": (pd.to_datetime(labels["as_of"]).to_numpy() if "as_of" in labels.columns
                      else np.full(len(labels), np.datetime64("NaT", "us"))),
            "decided_at": (pd.to_datetime(labels["decided_at"]).to_numpy() if "decided_at" in labels.columns
                           else np.full(len(labels), np.datetime64("NaT", "us"))),
            "label_id": np.arange(len(labels), dtype=np.int64)})
    con = duckdb.connect()
    try:
        con.register("ev_frame", ev)
        con.register("lab_frame", lab)
        out = compute(con, config, "ev_frame", "lab_frame")
    finally:
        con.close()
    return out.set_index("event_id").reindex(np.arange(len(events)))[list(signal_columns(config))] \
        .reset_index(drop=True)


def known_signal_columns() -> tuple[str, ...]:
    """Every signal column name any `SignalConfig` can produce (user signals first, then each
    string field that can be an entity, in field-table order): how the tokenizer recognises them."""
    from models.contracts import EVENT_FIELDS

    entities = [f.name for f in EVENT_FIELDS
                if f.dtype == "string" and f.role not in ("key", "extra", "text")]
    return USER_SIGNALS + tuple(s for c in entities for s in entity_signals(c))


def with_signals(events: pd.DataFrame, labels: pd.DataFrame | None,
                 config: SignalConfig | None = SignalConfig()) -> pd.DataFrame:
    """`events` with its signal columns (re)computed from `labels` (row order and index kept).
    Signal columns the frame already carries are dropped first (they may have been computed with
    other labels); `config=None` only drops them."""
    known = set(known_signal_columns())
    own = [c for c in events.columns if c in known]
    out = events.drop(columns=own)
    if config is None:
        return out
    signals = frame_signals(out, labels, config)
    signals.index = out.index
    return pd.concat([out, signals], axis=1)
