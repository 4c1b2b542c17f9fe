"""Explanations of one user's risk, always by one bound model version: the window the model
reads (with the history before it), the stored-or-computed explanation, what-if, and the
nearest labelled users in the model's embedding.
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np
import pandas as pd

from analyst.service.records import ModelHandle
from analyst.store import Store, utcnow


class Explanations:
    """Explanations and neighbours over one store; reference embeddings cached per version."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._refs: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def model_window(self, model: ModelHandle, user_id: str, until: Any = None,
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(window, history) up to `until` when given: the most recent events the model reads (its
        max_events) and the user's earlier ones. The history sets the first-time flags and the
        first gap (models.tokenizer), so the case page's risk is the one the queue scored."""
        # now: the scoring-time view the queue scored with; a past `until` reads the causal values
        known_at = utcnow() if model.reads_signals and until is None else None
        full = self.store.timeline(user_id, until=until, signals=model.reads_signals, known_at=known_at)
        if full.empty:
            when = f" at or before {until}" if until is not None else ""
            raise LookupError(f"user {user_id!r} has no events{when} in {self.store.path}")
        return split_window(model, full)

    def explanation(self, model: ModelHandle, user_id: str, *, fresh: bool = False, until: Any = None,
                    window: tuple[pd.DataFrame, pd.DataFrame] | None = None):
        """The stored explanation of a user's latest event (<= `until`) by `model`; computed and
        stored when missing or made by an older attribution method (explanations are kept with
        the model version that made them; a recomputed one is a new row, the newest wins).
        `window`: the (window, history) the caller already read for this model."""
        from models.explain import METHOD, Explanation, explain

        timeline, history = window if window is not None else self.model_window(model, user_id, until)
        at_ts = timeline["ts"].iloc[-1]
        if not fresh:
            payload = self.store.get_explanation(user_id, model.version, at_ts)
            if payload is not None:
                stored = Explanation.from_dict(payload)
                if stored.method == METHOD:
                    return stored
        exp = explain(model.scorer, timeline, user_id=user_id, model_version=model.version, history=history)
        self.store.save_explanation(user_id, model.version, at_ts, exp.to_dict())
        return exp

    def what_if(self, model: ModelHandle, user_id: str, remove: Sequence[int]) -> float:
        """Risk at the user's latest event with the given window rows (indexes) removed."""
        from models.explain import what_if

        timeline, history = self.model_window(model, user_id)
        bad = [i for i in remove if not 0 <= int(i) < len(timeline)]
        if bad:
            raise ValueError(f"event indexes {bad} out of range 0..{len(timeline) - 1}")
        return float(what_if(model.scorer, timeline, [int(i) for i in remove], history=history))

    def neighbours(self, model: ModelHandle, user_id: str, k: int = 5,
                   timeline: pd.DataFrame | None = None) -> pd.DataFrame:
        """The k labelled users closest to this one in sequence embedding, with their labels.
        `timeline`: the user's whole timeline when the caller has it (the references embed
        whole timelines too)."""
        from models.explain import nearest_cases

        ref_ids, ref_emb, ref_labels = self._reference_embeddings(model)
        if len(ref_ids) == 0:
            return pd.DataFrame(columns=["user_id", "label", "similarity"])
        full = timeline if timeline is not None else self.store.timeline(
            user_id, signals=model.reads_signals, known_at=utcnow() if model.reads_signals else None)
        _, query = model.scorer.embed(full)
        keep = np.array([u != user_id for u in ref_ids])
        return nearest_cases(query[0], ref_emb[keep], [u for u, m in zip(ref_ids, keep) if m],
                             ref_labels[keep], k=k)

    def _reference_embeddings(self, model: ModelHandle):
        with self._lock:
            cached = self._refs.get(model.version)
        if cached is not None:
            return cached
        labels = self.store.latest_labels()
        if labels.empty:
            return [], np.zeros((0, 1)), np.zeros(0, dtype=int)
        events = self.store.events(user_ids=list(labels["user_id"]), signals=model.reads_signals)
        ids, emb = model.scorer.embed(events)
        label_of = dict(zip(labels["user_id"], labels["label"].astype(int)))
        result = (list(ids), emb, np.array([label_of[u] for u in ids], dtype=int))
        with self._lock:
            self._refs[model.version] = result
        return result


def split_window(model: ModelHandle, full: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A whole timeline as (the latest max_events events, the earlier ones)."""
    cut = max(0, len(full) - model.max_events)
    return full.iloc[cut:].reset_index(drop=True), full.iloc[:cut].reset_index(drop=True)
