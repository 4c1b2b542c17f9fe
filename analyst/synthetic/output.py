"""From the coded event log to the events and labels frames, and `write` to Parquet.

`frames` keeps the events inside the window (and before a user's cutoff, planted ones always),
sorts them by (user, ts), replaces session / device / address ids through random bijections (so
their order tells nothing) and only then makes strings, with pyarrow, from the integer codes.

The events frame has exactly the columns of `models.contracts.EVENT_COLUMNS`, in that order,
built by name: a contract column the generator does not make is all null (so a field added to
the contract table needs no edit here), and a column the generator makes that the contract no
longer lists is left out. Labels: one row per user (`source="synthetic"`, `pattern` naming the
fraud pattern of each positive, `as_of` the user's last event).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analyst.synthetic.draws import _query_text
from analyst.synthetic.patterns import PATTERN_NAMES
from analyst.synthetic.world import (
    _C_NAME, _CARD, _CAT_NAME, CURRENCY, EVENT_TYPES, PAYMENT_METHODS, STATUSES, _World,
)
from models.contracts import EVENT_COLUMNS, FIELDS_BY_NAME

# the Arrow type of an all-null column, per contract dtype
_NULL_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(), "json": pa.string(), "float": pa.float64(), "timestamp": pa.timestamp("us"),
}


# --------------------------------------------------------------------- the final coded columns
def _final_columns(world: _World) -> dict[str, np.ndarray]:
    """The log's kept events, sorted by (user, ts), `ts` as `ts_us` (µs from the window start)."""
    rng, n = world.rng, len(world.cutoff)
    cols = world.log.columns()
    ts = cols["ts"]
    in_window = (ts >= 0) & (ts < world.window)
    keep = in_window & ((cols["planted"] >= 0) | (ts < world.cutoff[cols["user"]]))
    cols = {key: value[keep] for key, value in cols.items()}
    cols["ts_us"] = np.floor(cols.pop("ts") * 1e6).astype(np.int64)
    span = int(world.window * 1e6) + 1
    if n * span < 2 ** 62:  # one int64 key (user, ts): a stable argsort keeps generation order on ties
        order = np.argsort(cols["user"].astype(np.int64) * span + cols["ts_us"], kind="stable")
    else:
        order = np.lexsort((cols["ts_us"], cols["user"]))
    cols = {key: value[order] for key, value in cols.items()}
    for kind in ("session", "device", "address"):
        cols[kind] = world.ids.shuffled(kind, cols[kind], rng)
    return cols


# ------------------------------------------------------------------------- codes to strings
def _take_strings(codes: np.ndarray, table: list[str] | tuple[str, ...]) -> pa.Array:
    """Strings table[code], null where code < 0."""
    mask = codes < 0
    idx = pa.array(np.where(mask, 0, codes).astype(np.int32), mask=mask)
    return pc.take(pa.array(list(table), pa.string()), idx)


def _render(values: np.ndarray, text: Callable[[np.ndarray], pa.Array]) -> pa.Array:
    """Strings of a coded column: `text` renders each distinct value once (values < 0: null)."""
    codes, uniques = pd.factorize(values)
    return pc.take(text(uniques), pa.array(codes.astype(np.int32)))


def _python_text(fmt: Callable[[int], str]) -> Callable[[np.ndarray], pa.Array]:
    """A `text` for `_render` from a per-value Python formatter (for columns with few values)."""
    return lambda uniques: pa.array([fmt(int(v)) if v >= 0 else None for v in uniques], pa.string())


def _prefixed(values: np.ndarray, prefix: str, width: int = 0) -> pa.Array:
    """'<prefix><number>' (zero padded to width), null where value < 0."""
    text = pc.cast(pa.array(values, mask=values < 0), pa.string())
    if width:
        text = pc.utf8_lpad(text, width=width, padding="0")
    return pc.binary_join_element_wise(prefix, text, "")


def _dotted(ip: np.ndarray) -> pa.Array:
    """IPv4 numbers as dotted text, null where ip < 0."""
    mask = ip < 0
    parts = [pc.cast(pa.array((ip >> shift) & 255, mask=mask), pa.string())
             for shift in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*parts, ".")


def _pm_text(code: int) -> str:
    return f"card_{code - _CARD:04d}" if code >= _CARD else PAYMENT_METHODS[code]


CHARGEBACK_DELAY = np.timedelta64(7, "D")   # first planted event -> the label is known


# -------------------------------------------------------------------------------- the frames
def _event_arrays(cols: dict[str, np.ndarray], start: pd.Timestamp) -> dict[str, pa.Array]:
    """Every event column the generator makes, by contract name (str columns, ts in us)."""
    ts = (start.value // 1000 + cols["ts_us"]).astype("datetime64[us]")
    return {
        "user_id": _render(cols["user"].astype(np.int64) + 1, lambda v: _prefixed(v, "u", 6)),
        "ts": pa.array(ts),
        "event_type": _take_strings(cols["etype"], EVENT_TYPES),
        "session_id": _render(cols["session"], lambda v: _prefixed(v, "s")),
        "item_id": _render(cols["item"], lambda v: _prefixed(v, "i")),
        "category": _take_strings(cols["cat"], _CAT_NAME),
        "amount": pa.array(cols["amount"], from_pandas=True),
        "currency": _take_strings(np.where(np.isnan(cols["amount"]), -1, 0), (CURRENCY,)),
        "query": _render(cols["query"], _python_text(_query_text)),
        "device_id": _render(cols["device"], lambda v: _prefixed(v, "d", 7)),
        "ip": _render(cols["ip"], _dotted),
        "country": _take_strings(cols["country"], _C_NAME),
        "status": _take_strings(cols["status"], STATUSES),
        "payment_method": _render(cols["pm"], _python_text(_pm_text)),
        "address_id": _render(cols["address"], lambda v: _prefixed(v, "a")),
        "attrs": _render(cols["planted"],
                         _python_text(lambda c: json.dumps({"planted": PATTERN_NAMES[c]}))),
    }


def _events_frame(cols: dict[str, np.ndarray], start: pd.Timestamp) -> pd.DataFrame:
    """The events frame of the contract: its columns in its order, nulls where we make none."""
    arrays = _event_arrays(cols, start)
    n = len(cols["user"])
    table = pa.table({
        name: arrays[name] if name in arrays else pa.nulls(n, _NULL_TYPES[FIELDS_BY_NAME[name].dtype])
        for name in EVENT_COLUMNS
    })
    return table.to_pandas()


def _labels_frame(pattern: np.ndarray, user: np.ndarray, ts: np.ndarray,
                  planted: np.ndarray) -> pd.DataFrame:
    """One label row per user from its pattern code (-1: normal) and the sorted events' user / ts /
    planted code. A positive's `decided_at` is its first planted event + CHARGEBACK_DELAY (when
    a chargeback or report would arrive; signals treat the label as known from then); normal
    users have none (their label is known `label_delay` after `as_of`)."""
    n = len(pattern)
    last = np.flatnonzero(np.append(user[1:] != user[:-1], True))
    if len(last) != n:  # every generator leaves each user at least one event
        raise RuntimeError(f"{n - len(last)} users ended with no events")
    first_planted = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    marked = np.flatnonzero(planted >= 0)[::-1]           # reversed: the earliest write wins
    first_planted[user[marked]] = ts[marked]
    return pd.DataFrame({
        "user_id": pd.array([f"u{i:06d}" for i in range(1, n + 1)], dtype="str"),
        "label": (pattern >= 0).astype(np.int64),
        "as_of": ts[last],
        "source": "synthetic",
        "pattern": pd.array([PATTERN_NAMES[c] if c >= 0 else None for c in pattern], dtype="str"),
        "decided_at": first_planted + CHARGEBACK_DELAY,
    })


def frames(world: _World, pattern: np.ndarray,
           start: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events, labels) of a generated world whose window begins at `start` (naive UTC);
    `pattern` is each user's pattern code (-1: normal user)."""
    cols = _final_columns(world)
    events = _events_frame(cols, start)
    return events, _labels_frame(pattern, cols["user"], events["ts"].to_numpy(), cols["planted"])


# ----------------------------------------------------------------------------------- writing
def write(events: pd.DataFrame, labels: pd.DataFrame, out_dir: str | Path) -> tuple[Path, Path]:
    """Write events.parquet and labels.parquet (zstd) into out_dir; returns their paths."""
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"events is missing columns {missing}")
    if not {"user_id", "label"} <= set(labels.columns):
        raise ValueError(f"labels columns {list(labels.columns)}: expected at least user_id, label")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir={str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "events.parquet", out / "labels.parquet"
    table = pa.Table.from_pandas(events[list(EVENT_COLUMNS)], preserve_index=False)
    pq.write_table(table, paths[0], compression="zstd", row_group_size=256_000,
                   use_dictionary=[c for c in EVENT_COLUMNS if c != "ts"],
                   column_encoding={"ts": "DELTA_BINARY_PACKED"})  # sorted per user: ~30% smaller
    pq.write_table(pa.Table.from_pandas(labels, preserve_index=False), paths[1], compression="zstd")
    return paths
