"""Which of a set of users share an entity value with another of them: the edges rings are made
of (analyst/service/rings.py groups them), read from the link tables of analyst/store/links.py.

Only small values count: a value used by more than `max_users` accounts in all (a public IP, a
popular item) links strangers, not a ring. Hub sizes come from `sleuth.entity_users`, so an
account outside the set still counts towards a value's size.
"""
from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pandas as pd

SHARED_COLUMNS = ["user_id", "kind", "value", "n_users"]

_SQL_SHARED = (
    "WITH members AS (SELECT uid, user_id FROM sleuth.link_users WHERE user_id = ANY($users)), "
    "used AS (SELECT e.uid, e.vid, e.kind, e.value FROM sleuth.user_entities e "
    "  WHERE e.uid IN (SELECT uid FROM members) AND list_contains($kinds, e.kind)), "
    "shared AS (SELECT vid FROM used GROUP BY vid HAVING count(*) >= 2), "
    "sizes AS (SELECT vid, count(*) AS n_users FROM sleuth.entity_users "
    "  WHERE vid IN (SELECT vid FROM shared) GROUP BY vid HAVING count(*) <= $max_users) "
    "SELECT m.user_id, u.kind, u.value, s.n_users FROM used u JOIN sizes s ON s.vid = u.vid "
    "JOIN members m ON m.uid = u.uid ORDER BY u.kind, u.value, m.user_id"
)


def shared_values(cur: duckdb.DuckDBPyConnection, user_ids: Sequence[str], *, kinds: Sequence[str],
                  max_users: int) -> pd.DataFrame:
    """One row (user_id, kind, value, n_users) per user of `user_ids` on a value of `kinds` that
    at least one other of them used too and at most `max_users` accounts used in all. Empty
    before the first links refresh."""
    if not user_ids or not kinds:
        return pd.DataFrame(columns=SHARED_COLUMNS)
    try:
        frame = cur.execute(_SQL_SHARED, {"users": [str(u) for u in user_ids], "kinds": list(kinds),
                                          "max_users": int(max_users)}).df()
    except duckdb.CatalogException:      # no link tables yet: nobody is linked
        return pd.DataFrame(columns=SHARED_COLUMNS)
    return frame[SHARED_COLUMNS]
