"""Events as partitioned Parquet for engines outside this process (issue 16): `sleuth export
--parquet DIR` writes what `sleuth score` would read, so Ray workers (or any Parquet reader)
score the same frames as the in-process path.

Layout of DIR:
- `part-00000.parquet` ... one file per partition `hash(user_id) % partitions` (DuckDB's hash,
  stable within one export); a user never spans files; rows sorted by (user_id, ts);
  empty partitions write no file;
- `sleuth-export.json`: the manifest (format, partitions, files, events, users, signals,
  known_at, created_at). With `signals` (the default) the files carry the store's velocity and
  entity signal columns as a score run reads them (`known_at`: the scoring-time view of each
  user's last event, see analyst/store/signals.py), computed at export time.
The directory is written under a temporary name and renamed when complete: a killed export
leaves no half-written DIR.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from analyst.store import Store, utcnow

MANIFEST = "sleuth-export.json"
FORMAT = 1
DEFAULT_PARTITIONS = 16


def part_name(partition: int) -> str:
    return f"part-{partition:05d}.parquet"


@contextmanager
def new_directory(out_dir: str | Path) -> Iterator[Path]:
    """A hidden sibling of `out_dir` to write into: renamed to `out_dir` when the block ends,
    removed on any error, so `out_dir` appears whole or not at all. ValueError (one line) when
    `out_dir` already exists and is not an empty directory."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"{str(out_dir)!r} already exists and is not an empty directory; give a new one")
    partial = out_dir.with_name("." + out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        if out_dir.exists():
            out_dir.rmdir()
        partial.rename(out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def export_events(store: Store, out_dir: str | Path, *, partitions: int = DEFAULT_PARTITIONS,
                  signals: bool = True, known_at: Any = None) -> dict:
    """Write every user's events into `out_dir` (new or empty) as described in the module
    docstring; returns the manifest. ValueError (one line) for a bad partition count or a
    directory that already holds files."""
    if not isinstance(partitions, int) or isinstance(partitions, bool) or not 1 <= partitions <= 4096:
        raise ValueError(f"partitions={partitions!r}: expected an integer from 1 to 4096")
    with new_directory(out_dir) as partial:      # a used out_dir fails before any work
        if signals:
            store.refresh_signals()
        known_at = (known_at or utcnow()) if signals else None
        buckets = store.user_partitions(partitions)
        files, n_events = [], 0
        for partition, users in buckets.groupby("partition", sort=True):
            frame = store.events(user_ids=users["user_id"].tolist(), signals=signals, known_at=known_at)
            frame.to_parquet(partial / part_name(int(partition)), index=False)
            files.append(part_name(int(partition)))
            n_events += len(frame)
        manifest = {"format": FORMAT, "partitions": partitions, "files": files, "events": n_events,
                    "users": int(len(buckets)), "signals": bool(signals),
                    "known_at": None if known_at is None else str(known_at),
                    "created_at": str(utcnow()), "sorted_by": ["user_id", "ts"],
                    "partition_by": "hash(user_id) % partitions"}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def read_manifest(events_dir: str | Path) -> dict:
    """The manifest of an export directory (ValueError, one line, when it is not one)."""
    path = Path(events_dir) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{str(events_dir)!r} is not a sleuth export (no {MANIFEST}); "
                         "write one with `sleuth export --parquet DIR`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r}: format {manifest.get('format')!r}, expected {FORMAT}")
    return manifest
