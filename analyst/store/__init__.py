"""The DuckDB store: the one owner of the database file (DESIGN.md section 6).

- `database.py`: `Store`, its connection, typed queries and transactional writes;
- `schema.py`: the DDL (events columns derived from `models.contracts.EVENT_FIELDS`), the schema
  version and the migration of existing files;
- `checks.py`: validation of frames before they are written, timestamps as naive UTC, JSON;
- `signals.py`, `links.py`: derived tables refreshed incrementally (per-event signals; who
  shares an entity value, for linked accounts).
"""
from analyst.store.checks import QUARANTINE_COLUMNS, to_utc, utcnow
from analyst.store.database import (
    COMPACT_BELOW_ROWS, MAX_RUNS, ROW_GROUP_SIZE, Store, StoreBusyError,
)
from analyst.store.schema import CATALOG, SCHEMA_VERSION, TABLES, StoreVersionError

__all__ = [
    "CATALOG", "COMPACT_BELOW_ROWS", "MAX_RUNS", "QUARANTINE_COLUMNS", "ROW_GROUP_SIZE",
    "SCHEMA_VERSION", "TABLES", "Store", "StoreBusyError", "StoreVersionError", "to_utc", "utcnow",
]
