"""Nearest labelled cases in the Scorer's sequence-embedding space (`Scorer.embed`).

`nearest_cases(query, ref, ids, labels, k)`: the k labelled users closest to one user's embedding
by cosine similarity, for the case page's "similar confirmed cases". numpy / pandas only: the
embeddings come from `models.scorer.Scorer.embed` (mean final hidden state over the window of the
user's last event).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["nearest_cases"]


def nearest_cases(query: np.ndarray, ref: np.ndarray, ref_user_ids: Sequence[str],
                  ref_labels: Sequence[int], k: int = 5, *,
                  exclude: Sequence[str] = ()) -> pd.DataFrame:
    """The `k` reference users most similar (cosine) to `query`: columns user_id, label, similarity.

    `query`: (d,) sequence embedding; `ref`: (n, d) embeddings of labelled users with their ids and
    labels (0/1). Users in `exclude` (e.g. the query user) are skipped. Sorted by similarity desc.
    """
    if k < 1:
        raise ValueError(f"k={k}: must be >= 1")
    q = np.asarray(query, dtype=np.float64).reshape(-1)
    r = np.asarray(ref, dtype=np.float64)
    if r.ndim != 2 or (r.shape[0] and r.shape[1] != q.shape[0]):
        raise ValueError(f"ref shape {r.shape} does not match query dimension {q.shape[0]}")
    ids = np.asarray([str(u) for u in ref_user_ids], dtype=object)
    labels = np.asarray(ref_labels)
    if not len(ids) == len(labels) == r.shape[0]:
        raise ValueError(f"{r.shape[0]} embeddings, {len(ids)} user ids, {len(labels)} labels")
    keep = ~np.isin(ids, np.asarray([str(u) for u in exclude], dtype=object))
    r, ids, labels = r[keep], ids[keep], labels[keep]
    if r.shape[0] == 0:
        return pd.DataFrame({"user_id": pd.Series(dtype=object), "label": pd.Series(dtype=np.int64),
                             "similarity": pd.Series(dtype=np.float64)})
    norms = np.linalg.norm(r, axis=1) * max(np.linalg.norm(q), 1e-12)
    sim = (r @ q) / np.maximum(norms, 1e-12)                    # (n,)
    top = np.argsort(-sim, kind="stable")[:k]
    return pd.DataFrame({"user_id": ids[top], "label": labels[top].astype(np.int64),
                         "similarity": sim[top]}).reset_index(drop=True)
