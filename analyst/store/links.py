"""Linked accounts: which users share an entity value (device, ip, address, payment method,
item), kept in derived tables that `refresh` brings up to date incrementally and `entity_links`
reads for `Store.links`.

Tables (derived data, created here, not in the schema; rebuilt when the config changes):
- `sleuth.entity_values(vid, kind, value)`: one row per distinct value of an entity column,
  `kind` = `models.signals.entity_prefix(column)` (device, ip, address, payment_method, item);
- `sleuth.link_users(uid, user_id, risk)`: one row per user with an entity value; `risk` is the
  user's latest score by the current model (by any model while none is current), null if none;
- `sleuth.entity_users(vid, uid, n_events, first_ts, last_ts)`: who used a value, how often,
  first and last time, sorted by (vid, uid);
- `sleuth.user_entities(uid, vid, kind, value)`: the same pairs sorted by uid, to find a user's
  values (with their names: read here they are one contiguous run, not ~90 scattered rows);
- `sleuth.hub_top(vid, n_users, top)`: for each hub (a value with more than `HUB_MIN_USERS`
  users) its user count and its `HUB_TOP` riskiest users (uids, riskiest first), kept current
  with the risk and the pairs, so a lookup never ranks a hub's thousands of rows again.
`vid` and `uid` are dense integer ids: in (kind, value) / user_id order at a full build, later
ones after.

Why integer ids, two sort orders and a stored risk (measured on the 10.75M-event / 100k-user
bench store, 8.5M user-value pairs; a user has ~80 values with ~30k (p95 ~85k) user-value rows
on them, mostly items; 2 CPU cores shared with other jobs, bench/links.py): DuckDB prunes a semi-join `vid IN (SELECT vid ...)` on a sorted
integer column down to the wanted values' rows, but on a (kind, value) string key it reads 532
of 556 row groups (~45 ms a call); a constant IN list of strings still reads ~1.2M rows (~25 ms).
Ranking the ~31k rows by a risk joined from `sleuth.scores` (string user ids, 200k rows) took
p50 25 / p95 30-54 ms; by the integer-keyed stored risk 11 / 18 ms. `max_by(uid, key, n)` keeps the
top n per value at half the cost of a row_number() window. Most of those rows are on a few hubs
(shop-wide items, shared IPs): their stored ranking (`hub_top`) leaves ~2k rows to rank per call.

Risk is kept current inside the writes that change it (`update_risk`: `Store.add_scores`, and
a model becoming or ceasing to be current), and with it the rankings of the hubs those users are
on (all of them when more than `HUB_FULL_BELOW` users changed or the model did). Events are append-only, so a refresh adds the pairs
of events that arrived since the last one (event_id above the meta watermark): counts summed and
times widened on known pairs (UPDATE in place), new pairs appended as one sorted run. While the
tables are small, or once they hold more than `MAX_RUNS` runs, both pair tables are rewritten in
sorted order in the same transaction (the events table's policy, analyst/store/database.py).
A streamed batch's refresh (`append_only`) never rewrites them per batch: its pairs join an
unsorted tail until that holds more than `TAIL_MAX_PAIRS` (measured 2026-12-04, 346k pairs: the
rewrite was ~140 of a refresh's ~170 ms).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import duckdb

from analyst.store.schema import read_meta, write_meta
from models.contracts import ENTITY_COLUMNS
from models.signals import SignalConfig, entity_prefix

COMPACT_BELOW_ROWS = 2_000_000   # rewrite the pair tables on every refresh while this small
MAX_RUNS = 4                     # ... or when they would hold more sorted runs than this
TAIL_MAX_PAIRS = 65_536          # streamed pairs appended unsorted up to this many
_META_CONFIG, _META_EVENT, _META_RUNS = "links_config", "links_event_id", "links_runs"
_META_TAIL = "links_tail"
TABLES: tuple[str, ...] = ("entity_values", "link_users", "entity_users", "user_entities", "hub_top")
LAYOUT = 2   # bump when the tables change shape: files built by an older layout are rebuilt
MAX_LISTED = 1000   # the most users one value may list: a hub gives its count, never thousands of rows
HUB_MIN_USERS = 64   # a value with more users than this is a hub: its ranking is stored (hub_top)
HUB_TOP = 51         # ... its HUB_TOP riskiest users: serves max_users <= HUB_TOP - 1 (the center
                     # user is left out); a larger max_users ranks the hub's rows at the call
HUB_FULL_BELOW = 10_000   # a risk update of more users than this re-ranks every hub at once


@dataclass(frozen=True)
class LinkConfig:
    """Which event columns are entities (checked as `SignalConfig.entity_columns` are)."""

    entity_columns: tuple[str, ...] = ENTITY_COLUMNS

    def __post_init__(self) -> None:
        checked = SignalConfig(entity_columns=self.entity_columns).entity_columns
        if not checked:
            raise ValueError(f"LinkConfig.entity_columns is empty; expected some of {ENTITY_COLUMNS}")
        object.__setattr__(self, "entity_columns", checked)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(entity_prefix(c) for c in self.entity_columns)

    def as_dict(self) -> dict[str, Any]:
        return {"entity_columns": list(self.entity_columns)}


@dataclass(frozen=True)
class LinkedUser:
    """Another user on an entity value: latest risk (None: not scored), latest case (None: none)."""

    user_id: str
    risk: float | None
    case_id: int | None
    decision: str | None


@dataclass(frozen=True)
class EntityLinks:
    """One entity value, how many distinct users used it, and the riskiest of them (capped)."""

    kind: str
    value: str
    n_users: int
    users: tuple[LinkedUser, ...]


# ------------------------------------------------------------------------------ plumbing

def has_tables(cur: duckdb.DuckDBPyConnection) -> bool:
    """Whether the link tables exist (a refresh has run on this file)."""
    rows = cur.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'sleuth' "
                       "AND list_contains(?, table_name)", [list(TABLES)]).fetchall()
    return rows[0][0] == len(TABLES)


def _drop_temp(cur: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Drop scratch tables (in a `finally`: after a failed statement the transaction is aborted
    and they go with it, so an error here must not hide the first one)."""
    with suppress(duckdb.Error):
        for name in names:
            cur.execute("DROP TABLE IF EXISTS temp." + name)


# ------------------------------------------------------------------------------ risk
# the latest score per user by the current model, or by any model while none is current
_SQL_RISK = (
    "SELECT user_id, arg_max(score, score_id) AS risk FROM sleuth.scores "
    "WHERE model_version = coalesce((SELECT max_by(version, created_at) FROM sleuth.models "
    "WHERE status = 'current'), model_version)"
)
_SQL_RISK_ALL = _SQL_RISK + " GROUP BY user_id"
_SQL_RISK_OF = _SQL_RISK + " AND user_id IN (SELECT user_id FROM temp._link_risk_ids) GROUP BY user_id"


def update_risk(cur: duckdb.DuckDBPyConnection, user_ids: Sequence[str] | None = None) -> None:
    """Recompute `link_users.risk` inside the caller's transaction: of `user_ids` (after their
    scores were added), or of every user (after the current model changed). No-op before the
    first refresh."""
    if not has_tables(cur):
        return
    if user_ids is None:              # in place (the uid order stays): null where no score counts
        cur.execute("UPDATE sleuth.link_users l SET risk = r.risk FROM (SELECT u.uid, s.risk FROM "
                    "sleuth.link_users u LEFT JOIN (" + _SQL_RISK_ALL + ") s USING (user_id)) r "
                    "WHERE l.uid = r.uid")
        _rank_hubs(cur)
        return
    names = sorted({str(u) for u in user_ids})
    cur.execute("CREATE TEMP TABLE _link_risk_ids AS SELECT CAST(unnest(CAST(? AS VARCHAR[])) "
                "AS VARCHAR) AS user_id", [names])
    try:
        cur.execute("UPDATE sleuth.link_users l SET risk = r.risk FROM (" + _SQL_RISK_OF + ") r "
                    "WHERE l.user_id = r.user_id")
        if len(names) > HUB_FULL_BELOW:
            _rank_hubs(cur)
        else:
            cur.execute(_SQL_HUBS_OF_USERS)
            _rank_hubs(cur, "temp._hub_vids")
    finally:
        _drop_temp(cur, "_link_risk_ids", "_hub_vids")


# ------------------------------------------------------------------------------ hubs
_SQL_HUB_ROWS = (
    "SELECT e.vid, count(*) AS n_users, max_by(e.uid, (coalesce(u.risk, -1.0), -e.uid), $hub_top) "
    "AS top FROM sleuth.entity_users e LEFT JOIN sleuth.link_users u ON u.uid = e.uid "
)
_SQL_HUB_GROUP = " GROUP BY e.vid HAVING count(*) > $hub_min ORDER BY e.vid"
_SQL_HUBS_OF_USERS = (      # the hubs whose ranking the users in temp._link_risk_ids may change
    "CREATE TEMP TABLE _hub_vids AS SELECT DISTINCT ue.vid FROM sleuth.user_entities ue "
    "JOIN sleuth.link_users l ON l.uid = ue.uid JOIN temp._link_risk_ids r ON r.user_id = l.user_id "
    "SEMI JOIN sleuth.hub_top h ON h.vid = ue.vid"
)


def _rank_hubs(cur: duckdb.DuckDBPyConnection, vids_table: str | None = None) -> None:
    """Recompute `hub_top` inside the caller's transaction: every hub, or only the values listed
    in `vids_table` (a temp table of vids; those that are, or have become, hubs)."""
    params = {"hub_top": HUB_TOP, "hub_min": HUB_MIN_USERS}
    if vids_table is None:
        cur.execute("DROP TABLE IF EXISTS sleuth.hub_top")
        cur.execute("CREATE TABLE sleuth.hub_top AS " + _SQL_HUB_ROWS + _SQL_HUB_GROUP, params)
        return
    cur.execute("DELETE FROM sleuth.hub_top WHERE vid IN (SELECT vid FROM " + vids_table + ")")
    cur.execute("INSERT INTO sleuth.hub_top " + _SQL_HUB_ROWS + "WHERE e.vid IN (SELECT vid FROM "
                + vids_table + ")" + _SQL_HUB_GROUP, params)


# ------------------------------------------------------------------------------ refresh
def _pairs_sql(config: LinkConfig) -> str:
    """(kind, value, user_id, n_events, first_ts, last_ts) of the events with event_id > ? (the
    parameter repeated once per entity column). Identifiers come from the checked config only."""
    parts = [
        "SELECT '" + entity_prefix(c) + "' AS kind, " + c + " AS value, user_id, "
        "CAST(count(*) AS BIGINT) AS n_events, min(ts) AS first_ts, max(ts) AS last_ts "
        "FROM sleuth.events WHERE event_id > ? AND " + c + " IS NOT NULL GROUP BY ALL"
        for c in config.entity_columns
    ]
    return " UNION ALL ".join(parts)


_SQL_NEW_VALUES = (
    "INSERT INTO sleuth.entity_values SELECT "
    "(SELECT coalesce(max(vid), 0) FROM sleuth.entity_values) + row_number() OVER (ORDER BY kind, value), "
    "kind, value FROM (SELECT DISTINCT d.kind, d.value FROM temp._link_pairs d "
    "ANTI JOIN sleuth.entity_values v ON v.kind = d.kind AND v.value = d.value) ORDER BY 1"
)
_SQL_NEW_USERS = (
    "INSERT INTO sleuth.link_users SELECT "
    "(SELECT coalesce(max(uid), 0) FROM sleuth.link_users) + row_number() OVER (ORDER BY n.user_id), "
    "n.user_id, r.risk FROM (SELECT DISTINCT d.user_id FROM temp._link_pairs d "
    "ANTI JOIN sleuth.link_users l ON l.user_id = d.user_id) n "
    "LEFT JOIN (" + _SQL_RISK_ALL + ") r USING (user_id) ORDER BY 1"
)
_SQL_PAIR_IDS = (
    "CREATE TEMP TABLE _link_ids AS SELECT v.vid, u.uid, d.n_events, d.first_ts, d.last_ts "
    "FROM temp._link_pairs d JOIN sleuth.entity_values v ON v.kind = d.kind AND v.value = d.value "
    "JOIN sleuth.link_users u ON u.user_id = d.user_id"
)
_SQL_NEW_PAIRS = (
    "CREATE TEMP TABLE _link_new AS SELECT d.* FROM temp._link_ids d "
    "ANTI JOIN sleuth.entity_users e ON e.vid = d.vid AND e.uid = d.uid"
)
_SQL_UPDATE_PAIRS = (
    "UPDATE sleuth.entity_users e SET n_events = e.n_events + d.n_events, "
    "first_ts = least(e.first_ts, d.first_ts), last_ts = greatest(e.last_ts, d.last_ts) "
    "FROM temp._link_ids d WHERE e.vid = d.vid AND e.uid = d.uid"
)


_SQL_USER_ENTITIES = (
    "CREATE TABLE sleuth.user_entities AS SELECT e.uid, e.vid, v.kind, v.value FROM sleuth.entity_users e "
    "JOIN sleuth.entity_values v ON v.vid = e.vid ORDER BY e.uid, e.vid"
)


def _sort_pairs(cur: duckdb.DuckDBPyConnection) -> None:
    """Rewrite both pair tables in their sort orders (inside the caller's transaction)."""
    cur.execute("CREATE TABLE sleuth.entity_users_sorted AS SELECT * FROM sleuth.entity_users ORDER BY vid, uid")
    cur.execute("DROP TABLE sleuth.entity_users")
    cur.execute("ALTER TABLE sleuth.entity_users_sorted RENAME TO entity_users")
    cur.execute("DROP TABLE sleuth.user_entities")
    cur.execute(_SQL_USER_ENTITIES)


def _build(cur: duckdb.DuckDBPyConnection) -> None:
    """Every table from the pairs in `temp._link_pairs` (all events)."""
    for table in TABLES:
        cur.execute("DROP TABLE IF EXISTS sleuth." + table)
    cur.execute("CREATE TABLE sleuth.entity_values AS SELECT CAST(row_number() OVER (ORDER BY kind, value) "
                "AS BIGINT) AS vid, kind, value FROM (SELECT DISTINCT kind, value FROM temp._link_pairs) "
                "ORDER BY vid")
    cur.execute("CREATE TABLE sleuth.link_users AS SELECT CAST(row_number() OVER (ORDER BY n.user_id) AS BIGINT) "
                "AS uid, n.user_id, r.risk FROM (SELECT DISTINCT user_id FROM temp._link_pairs) n "
                "LEFT JOIN (" + _SQL_RISK_ALL + ") r USING (user_id) ORDER BY uid")
    cur.execute(_SQL_PAIR_IDS)
    cur.execute("CREATE TABLE sleuth.entity_users AS SELECT * FROM temp._link_ids ORDER BY vid, uid")
    cur.execute(_SQL_USER_ENTITIES)
    _rank_hubs(cur)
    write_meta(cur, _META_RUNS, "1")
    write_meta(cur, _META_TAIL, "0")


def _append(cur: duckdb.DuckDBPyConnection, append_only: bool = False) -> None:
    """Add the pairs in `temp._link_pairs` (events since the last refresh) to the tables
    (`append_only`: to the unsorted tail, see the module docstring)."""
    cur.execute(_SQL_NEW_VALUES)
    cur.execute(_SQL_NEW_USERS)
    cur.execute(_SQL_PAIR_IDS)
    cur.execute(_SQL_NEW_PAIRS)
    cur.execute(_SQL_UPDATE_PAIRS)
    if not cur.execute("SELECT count(*) FROM temp._link_new").fetchall()[0][0]:
        return
    cur.execute("INSERT INTO sleuth.entity_users SELECT * FROM temp._link_new ORDER BY vid, uid")
    cur.execute("INSERT INTO sleuth.user_entities SELECT n.uid, n.vid, v.kind, v.value FROM temp._link_new n "
                "JOIN sleuth.entity_values v ON v.vid = n.vid ORDER BY n.uid, n.vid")
    cur.execute("CREATE TEMP TABLE _hub_vids AS SELECT DISTINCT vid FROM temp._link_new")
    _rank_hubs(cur, "temp._hub_vids")   # new users on a value: its count and maybe its top
    if append_only:
        added = cur.execute("SELECT count(*) FROM temp._link_new").fetchall()[0][0]
        tail = int(read_meta(cur, _META_TAIL) or 0) + int(added)
        if tail > TAIL_MAX_PAIRS:
            _sort_pairs(cur)
            tail = 0
        write_meta(cur, _META_TAIL, str(tail))
        return
    runs = int(read_meta(cur, _META_RUNS) or 1) + 1
    total = cur.execute("SELECT count(*) FROM sleuth.entity_users").fetchall()[0][0]
    if total < COMPACT_BELOW_ROWS or runs > MAX_RUNS:
        _sort_pairs(cur)
        runs = 1
    write_meta(cur, _META_RUNS, str(runs))


def refresh(cur: duckdb.DuckDBPyConnection, config: LinkConfig, append_only: bool = False) -> int:
    """Bring the link tables up to date inside the caller's transaction; returns how many
    (value, user) pairs the new events touched (added or updated; a rebuild: all of them; 0:
    nothing new). A missing table or another config than last time rebuilds everything.
    `append_only` (a streamed batch): new pairs join the unsorted tail (module docstring)."""
    max_event = int(cur.execute("SELECT coalesce(max(event_id), 0) FROM sleuth.events").fetchall()[0][0])
    wanted = json.dumps({**config.as_dict(), "layout": LAYOUT}, sort_keys=True)
    full = not has_tables(cur) or read_meta(cur, _META_CONFIG) != wanted
    seen = 0 if full else int(read_meta(cur, _META_EVENT) or 0)
    if not full and max_event <= seen:
        return 0                      # up to date: nothing is written
    cur.execute("CREATE TEMP TABLE _link_pairs AS " + _pairs_sql(config), [seen] * len(config.entity_columns))
    try:
        n = int(cur.execute("SELECT count(*) FROM temp._link_pairs").fetchall()[0][0])
        if full:
            _build(cur)
        elif n:
            _append(cur, append_only)
    finally:
        _drop_temp(cur, "_link_pairs", "_link_ids", "_link_new", "_hub_vids")
    write_meta(cur, _META_CONFIG, wanted)
    write_meta(cur, _META_EVENT, str(max_event))
    return n


# ------------------------------------------------------------------------------ read
# The values wanted: those of the center user, or (second hop) those of the `via` users that the
# center did not use; per value, every user on it (the count) and the top `max_users` others by
# (risk desc, unscored last, then uid): a hub's from its stored ranking (`hub_top`, the center
# filtered out) while max_users < HUB_TOP, the other values' ranked at the call. Then the listed users (~1,200 a call on the bench store)
# are named by `uid = ANY(list)` (~4 ms; joined inside the first query, DuckDB hashed all 100k
# names: ~10 ms) and their latest cases found.
_SQL_WANTED_CENTER = "wanted AS (SELECT vid, kind, value FROM sleuth.user_entities WHERE uid = $center)"
_SQL_WANTED_VIA = (
    "wanted AS (SELECT DISTINCT vid, kind, value FROM sleuth.user_entities WHERE uid = ANY($via) "
    "  AND vid NOT IN (SELECT vid FROM sleuth.user_entities WHERE uid = $center))"
)
_SQL_PER_VALUE = (
    ", hubs AS (SELECT h.vid, h.n_users, list_filter(h.top, lambda x: x <> $center)[1:$max_users] AS top "
    "  FROM sleuth.hub_top h WHERE $max_users < $hub_top AND h.vid IN (SELECT vid FROM wanted)) "
    ", per_value AS (SELECT e.vid, count(*) AS n_users, "
    "  max_by(e.uid, (coalesce(u.risk, -1.0), -e.uid), $max_users) FILTER (WHERE e.uid <> $center) AS top "
    "  FROM sleuth.entity_users e LEFT JOIN sleuth.link_users u ON u.uid = e.uid "
    "  WHERE e.vid IN (SELECT vid FROM wanted WHERE vid NOT IN (SELECT vid FROM hubs)) GROUP BY e.vid) "
    "SELECT w.kind, w.value, p.n_users, p.top FROM (SELECT * FROM per_value UNION ALL SELECT * FROM hubs) p "
    "JOIN wanted w ON w.vid = p.vid"
)
_SQL_LINKS_CENTER = "WITH " + _SQL_WANTED_CENTER + _SQL_PER_VALUE
_SQL_LINKS_VIA = "WITH " + _SQL_WANTED_VIA + _SQL_PER_VALUE
_SQL_UID = "SELECT uid FROM sleuth.link_users WHERE user_id = ?"   # prunes: uids follow user_id order
_SQL_UIDS = "SELECT uid FROM sleuth.link_users WHERE user_id = ANY(?)"
_SQL_LISTED = "SELECT uid, user_id, risk FROM sleuth.link_users WHERE uid = ANY(?)"
_SQL_LAST_CASES = (
    "SELECT user_id, case_id, decision FROM sleuth.cases WHERE user_id = ANY(?) "
    "QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY opened_at DESC, case_id DESC) = 1"
)


def entity_links(cur: duckdb.DuckDBPyConnection, center: str, *, max_users: int,
                 via: Sequence[str] | None = None, kinds: Sequence[str] = ()) -> list[EntityLinks]:
    """The entity values `center` used (with `via`: those the `via` users used and `center` did
    not), each with its distinct users (`n_users`, center included) and up to `max_users` others
    (never `center`) by latest risk, highest first, unscored last, ties in uid order. Ordered by
    kind (`kinds` order, others after), then n_users descending, then value. A user the tables
    do not know has none. ValueError before the first refresh. Run it in one transaction (a
    snapshot): it reads in four or five queries."""
    try:
        found = cur.execute(_SQL_UID, [str(center)]).fetchall()
    except duckdb.CatalogException as exc:     # cheaper than asking the catalog on every call
        raise ValueError("the store has no links yet: run Store.refresh_links() (sleuth ingest / "
                         "train / score do)") from exc
    if not found:
        return []
    params: dict[str, Any] = {"center": found[0][0], "max_users": int(max_users), "hub_top": HUB_TOP}
    if via is None:
        sql = _SQL_LINKS_CENTER
    else:
        sql = _SQL_LINKS_VIA
        params["via"] = [r[0] for r in cur.execute(_SQL_UIDS, [[str(u) for u in via]]).fetchall()]
    values = cur.execute(sql, params).fetchall()
    listed = sorted({uid for *_, top in values for uid in top or ()})
    users = {uid: (user_id, risk) for uid, user_id, risk in cur.execute(_SQL_LISTED, [listed]).fetchall()}
    cases = {user_id: (case_id, decision) for user_id, case_id, decision in
             cur.execute(_SQL_LAST_CASES, [[name for name, _ in users.values()]]).fetchall()}
    out = []
    for kind, value, n_users, top in values:
        linked = []
        for uid in top or ():
            user_id, risk = users[uid]
            case_id, decision = cases.get(user_id, (None, None))
            linked.append(LinkedUser(str(user_id), None if risk is None else float(risk),
                                     None if case_id is None else int(case_id), decision))
        out.append(EntityLinks(str(kind), str(value), int(n_users), tuple(linked)))
    order = {k: i for i, k in enumerate(kinds)}
    return sorted(out, key=lambda e: (order.get(e.kind, len(order)), e.kind, -e.n_users, e.value))


_SQL_VALUE = "SELECT vid FROM sleuth.entity_values WHERE kind = ? AND value = ?"
_SQL_VALUE_TOTALS = ("SELECT count(*), sum(n_events), min(first_ts), max(last_ts) "
                     "FROM sleuth.entity_users WHERE vid = ?")
_SQL_VALUE_LABELS = (
    "SELECT count(*) FILTER (WHERE label = 1), count(*) FILTER (WHERE label = 0) FROM ("
    "  SELECT arg_max(l.label, l.label_id) AS label FROM sleuth.labels l "
    "  JOIN sleuth.link_users u ON u.user_id = l.user_id JOIN sleuth.entity_users e ON e.uid = u.uid "
    "  WHERE e.vid = ? AND l.label IS NOT NULL GROUP BY l.user_id)"
)
_SQL_VALUE_USERS = (
    "SELECT u.user_id, u.risk, e.n_events, e.first_ts, e.last_ts, lab.label FROM sleuth.entity_users e "
    "JOIN sleuth.link_users u ON u.uid = e.uid "
    "LEFT JOIN (SELECT user_id, arg_max(label, label_id) AS label FROM sleuth.labels "
    "  WHERE label IS NOT NULL GROUP BY user_id) lab ON lab.user_id = u.user_id "
    "WHERE e.vid = ? ORDER BY u.risk DESC NULLS LAST, u.user_id LIMIT ?"
)


# per day: only the value's users' events are read (the events table is sorted by user_id)
_SQL_VALUE_DAILY = (
    "SELECT CAST(date_trunc('day', ts) AS DATE) AS day, count(*) AS events, count(DISTINCT user_id) AS users "
    "FROM sleuth.events WHERE user_id IN (SELECT u.user_id FROM sleuth.entity_users e "
    "JOIN sleuth.link_users u ON u.uid = e.uid WHERE e.vid = ?) AND "
)


def entity_column(cur: duckdb.DuckDBPyConnection, kind: str) -> str | None:
    """The event column whose values are entities of `kind` in the current link tables, or None."""
    config = json.loads(read_meta(cur, _META_CONFIG) or "{}")
    for column in config.get("entity_columns", ()):
        if entity_prefix(column) == kind:
            return column
    return None


def entity_detail(cur: duckdb.DuckDBPyConnection, kind: str, value: str, *, max_users: int) -> dict | None:
    """One entity value: distinct users and events on it, first / last use, how many of its users'
    latest labels say fraud / legit, its `max_users` riskiest users (user_id, risk, n_events,
    first_ts, last_ts, label, case_id, decision) and its events and users per day. None when the
    link tables do not know the value; ValueError before the first refresh. Run it in one
    transaction (a snapshot)."""
    if not has_tables(cur):
        raise ValueError("the store has no links yet: run Store.refresh_links() (sleuth ingest / "
                         "train / score do)")
    column = entity_column(cur, kind)
    found = cur.execute(_SQL_VALUE, [str(kind), str(value)]).fetchall() if column else []
    if not found:
        return None
    vid = found[0][0]
    n_users, n_events, first_ts, last_ts = cur.execute(_SQL_VALUE_TOTALS, [vid]).fetchall()[0]
    fraud, legit = cur.execute(_SQL_VALUE_LABELS, [vid]).fetchall()[0]
    users = cur.execute(_SQL_VALUE_USERS, [vid, int(max_users)]).df()
    cases = {u: (c, d) for u, c, d in cur.execute(_SQL_LAST_CASES, [users["user_id"].tolist()]).fetchall()}
    users["case_id"] = [cases.get(u, (None, None))[0] for u in users["user_id"]]
    users["decision"] = [cases.get(u, (None, None))[1] for u in users["user_id"]]
    # per day: only the value's users' events are read (the events table is sorted by user_id);
    # `column` is a name from the checked link config, never from the caller
    if column not in ENTITY_COLUMNS:     # a name from the checked link config, never from the caller
        raise ValueError(f"links config names {column!r}, not an entity column of {ENTITY_COLUMNS}")
    daily = cur.execute(_SQL_VALUE_DAILY + column + " = ? GROUP BY 1 ORDER BY 1", [vid, str(value)]).df()
    return {"kind": str(kind), "value": str(value), "column": column, "n_users": int(n_users),
            "n_events": int(n_events or 0), "first_ts": first_ts, "last_ts": last_ts,
            "fraud_users": int(fraud), "legit_users": int(legit), "users": users, "daily": daily}
