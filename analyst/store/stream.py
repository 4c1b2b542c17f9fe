"""Streaming bookkeeping in the store: how far each source was read, and who awaits a rescore.

Exactly-once into the store (issue 16): a micro-batch's events, its quarantined rows, the next
offset of every partition it read and its users' "pending rescore" rows are written in ONE
transaction (`Store.record_ingest(..., position=...)`). A process killed before the commit
leaves nothing, and its restart reads the batch again from the stored offsets; one killed
after it never reads the batch again. A batch whose start offsets are not where the store
says that source stands (another consumer got there first, or a source replayed) is refused
whole: `StreamPositionError`, nothing written.

A drop folder's files are kept exactly once by the ingest log's sha256 (as `sleuth ingest`
is); only Kafka-like sources need offsets.

Pending rescores: the users of a stored batch are listed in `stream_pending` in the same
transaction; the streamer clears them after their new scores are stored. A restart rescores
whoever is still listed, so a kill between the two steps never leaves a stale risk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import duckdb
import pandas as pd


class StreamPositionError(RuntimeError):
    """A batch does not start where the store says its source stands: nothing was written."""


@dataclass(frozen=True)
class StreamPosition:
    """What one micro-batch read: `source` (e.g. "kafka://host:9092/events"), and per
    partition the first offset read (`starts`) and the next offset to read (`ends`)."""
    source: str
    starts: Mapping[int, int] = field(default_factory=dict)
    ends: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.starts) != set(self.ends):
            raise ValueError(f"stream position of {self.source}: partitions {sorted(self.starts)} "
                             f"start but {sorted(self.ends)} end")
        for part, start in self.starts.items():
            if not 0 <= int(start) <= int(self.ends[part]):
                raise ValueError(f"stream position of {self.source} partition {part}: start {start} "
                                 f"after end {self.ends[part]}")


def offsets(cur: duckdb.DuckDBPyConnection, source: str) -> dict[int, int]:
    """{partition: next offset to read} as stored for `source` (empty: never read)."""
    rows = cur.execute("SELECT part, next_offset FROM sleuth.stream_offsets WHERE source = ?",
                       [str(source)]).fetchall()
    return {int(p): int(o) for p, o in rows}


def record_position(cur: duckdb.DuckDBPyConnection, position: StreamPosition, user_ids: list[str],
                    at: Any) -> None:
    """Inside the caller's (events) transaction: check that `position` starts where the store
    stands, move the stored offsets to its ends and mark `user_ids` pending a rescore."""
    stored = offsets(cur, position.source)
    for part, start in sorted(position.starts.items()):
        expected = stored.get(int(part), None)
        if expected is not None and int(start) != expected:
            raise StreamPositionError(
                f"{position.source} partition {part}: the batch starts at offset {start} but the "
                f"store stands at {expected} (another consumer writes this store, or the source "
                "was replayed): nothing written")
    for part, end in sorted(position.ends.items()):
        cur.execute("INSERT INTO sleuth.stream_offsets VALUES (?, ?, ?, ?) ON CONFLICT (source, part) "
                    "DO UPDATE SET next_offset = excluded.next_offset, updated_at = excluded.updated_at",
                    [position.source, int(part), int(end), at])
    mark_pending(cur, user_ids, position.source, at)


def mark_pending(cur: duckdb.DuckDBPyConnection, user_ids: list[str], source: str, at: Any) -> None:
    """List `user_ids` as awaiting a rescore, marked `at` (a user listed already gets the later mark)."""
    if not user_ids:
        return
    cur.register("_pending", pd.DataFrame({"user_id": pd.Series(sorted(set(user_ids)), dtype="str")}))
    try:
        cur.execute("INSERT INTO sleuth.stream_pending SELECT user_id, ?, ? FROM _pending "
                    "ON CONFLICT (user_id) DO UPDATE SET source = excluded.source, since = excluded.since",
                    [str(source), at])
    finally:
        cur.unregister("_pending")


def pending(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Users awaiting a rescore: user_id, source, since; oldest first."""
    return cur.sql("SELECT user_id, source, since FROM sleuth.stream_pending "
                   "ORDER BY since, user_id").to_arrow_table().to_pandas()


def clear_pending(cur: duckdb.DuckDBPyConnection, user_ids: list[str], marked_before: Any) -> int:
    """Remove `user_ids` from the pending list if they were marked at or before
    `marked_before` (a user marked again by a later batch stays listed). Returns rows removed."""
    if not user_ids:
        return 0
    cur.register("_done", pd.DataFrame({"user_id": pd.Series(sorted(set(user_ids)), dtype="str")}))
    try:
        rows = cur.execute("DELETE FROM sleuth.stream_pending WHERE user_id IN (SELECT user_id FROM _done) "
                           "AND since <= ?", [marked_before]).fetchall()
    finally:
        cur.unregister("_done")
    return int(rows[0][0]) if rows else 0
