"""Per-event explanations of a Scorer's risk, as data (no plotting).

`explain(scorer, timeline, at)` explains the risk of one user as of event `at` (default the last):

- attribution: Captum `LayerIntegratedGradients` over the encoder's field embeddings (one layer
  per field), attributing the *pre-Platt* risk logit at `at`. Baseline = the same timeline with its
  content masked and its time kept: every content field id is replaced by its PAD/mask id while
  time-gap / hour / weekday (and positions) stay, so the attribution says what the events *were*,
  not when they happened. Gauss-Legendre steps, batched; the convergence delta
  (sum of attributions - (f(x) - f(baseline))) is reported and the steps are doubled while
  |delta| > `tolerance` * |f(x) - f(baseline)|.
- per-field attribution (field -> (T,)), summing to the per-event attribution.
- attention: rollout (Abnar & Zuidema 2020: heads averaged, identity added, rows renormalised,
  layers multiplied) and the last layer's per-head attention from the scored event, from an
  eager-attention forward pass. This is *attention, not explanation*: shown for inspection only.
- surprise (nats per event) and the risk as of every event, from `scorer.score_history`.
- what-if: the calibrated risk at `at` with each of the `top_k` most attributed events removed
  (one batch), and with all of them removed.
- reasons: 2-5 plain sentences from the data (models/reasons.py).

Thread safety: Captum registers forward hooks on the modules it explains, and any other thread
running the same modules at that moment would be hooked too. So each call explains a *private
copy* of the model (`copy.deepcopy`, a few ms for the demo size) and never touches the scorer's
own modules; hooks are removed in `finally` (by Captum) and the copy is dropped afterwards.

`nearest_cases(query, ref, ...)`: the k labelled users closest in sequence embedding (cosine).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.reasons import top_reasons

__all__ = [
    "WhatIf", "Explanation", "explain", "what_if", "nearest_cases", "attention_rollout",
]


@dataclass(frozen=True)
class WhatIf:
    """The risk at the scored event with some events removed."""

    removed: tuple[int, ...]     # event indexes removed (positions in the timeline frame)
    risk: float                  # calibrated risk at the scored event without them


@dataclass(frozen=True)
class Explanation:
    """Why the model gave `risk` to one user as of event `at`. Arrays are indexed by event position."""

    user_id: str
    model_version: str | None
    at: int                          # index of the scored event in the timeline (default last)
    risk: float                      # calibrated P(fraud) at `at`
    logit: float                     # f(x): the risk logit attributed
    baseline_logit: float            # f(baseline): content masked, time kept
    delta: float                     # Captum convergence delta
    n_steps: int                     # IG steps actually used
    event_attribution: np.ndarray    # (T,) signed, sums (with fields) to logit - baseline_logit
    field_attribution: dict[str, np.ndarray]   # field -> (T,)
    surprise: np.ndarray             # (T,) nats per event
    risk_history: np.ndarray         # (T,) risk as of each event
    attention_rollout: np.ndarray    # (T,) rollout to the scored event ("attention, not explanation")
    attention_last: np.ndarray       # (H, T) last-layer attention from the scored event
    what_if: tuple[WhatIf, ...]      # risk with each of the top events removed (+ all of them)
    reasons: tuple[str, ...]         # 2-5 plain sentences built from the data
    window_start: int = 0            # first event the model saw for `at` (earlier ones get 0)
    seconds: float = float("nan")    # wall time of the explanation

    @property
    def top_events(self) -> tuple[int, ...]:
        """Event indexes by attribution, highest first (positive attributions only)."""
        order = np.argsort(-self.event_attribution, kind="stable")
        return tuple(int(i) for i in order if self.event_attribution[i] > 0)

    def to_dict(self) -> dict:
        """JSON-safe dict (lists, floats, None for non-finite numbers); see `from_dict`."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = _list(v)
            elif f.name == "field_attribution":
                v = {k: _list(a) for k, a in v.items()}
            elif f.name == "what_if":
                v = [{"removed": list(w.removed), "risk": _num(w.risk)} for w in v]
            elif f.name == "reasons":
                v = list(v)
            elif isinstance(v, float):
                v = _num(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Explanation":
        """Inverse of `to_dict` (unknown keys are ignored, so older/newer records still load)."""
        names = {f.name for f in fields(cls)}
        missing = {f.name for f in fields(cls) if f.default is MISSING} - set(d)
        if missing:
            raise ValueError(f"explanation record lacks {sorted(missing)}")
        kw: dict[str, Any] = {k: v for k, v in d.items() if k in names}
        for k in ("event_attribution", "surprise", "risk_history", "attention_rollout",
                  "attention_last"):
            kw[k] = _array(kw[k])
        kw["field_attribution"] = {k: _array(v) for k, v in kw["field_attribution"].items()}
        kw["what_if"] = tuple(WhatIf(tuple(int(i) for i in w["removed"]), _float(w["risk"]))
                              for w in kw["what_if"])
        kw["reasons"] = tuple(str(r) for r in kw["reasons"])
        for k in ("risk", "logit", "baseline_logit", "delta", "seconds"):
            if k in kw:
                kw[k] = _float(kw[k])
        for k in ("at", "n_steps", "window_start"):
            if k in kw:
                kw[k] = int(kw[k])
        return cls(**kw)


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _float(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _list(a: np.ndarray) -> list:
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isfinite(a), a, np.nan).astype(object).tolist() if a.size else a.tolist()


def _array(v: Any) -> np.ndarray:
    return np.array(v, dtype=np.float64) if v is not None else np.zeros(0)


# ------------------------------------------------------------------------------------------------
# attention


def attention_rollout(attentions: Sequence[np.ndarray | torch.Tensor]) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) of one sequence: (T, T), row t = inputs flowing to t.

    `attentions`: per layer, first to last, an (H, T, T) (or (1, H, T, T)) array of attention
    probabilities. Heads are averaged, the residual stream is modelled by adding the identity
    (0.5 A + 0.5 I), rows are renormalised and the layers multiplied. Causal attention gives a
    lower-triangular result whose rows sum to 1.
    """
    if len(attentions) == 0:
        raise ValueError("attention_rollout needs at least one layer")
    rollout: np.ndarray | None = None
    for layer in attentions:
        a = layer.detach().float().cpu().numpy() if isinstance(layer, torch.Tensor) else np.asarray(layer)
        if a.ndim == 4:
            if a.shape[0] != 1:
                raise ValueError(f"attention of one sequence expected, got batch {a.shape[0]}")
            a = a[0]
        if a.ndim != 3 or a.shape[1] != a.shape[2]:
            raise ValueError(f"attention layer shape {a.shape}: expected (H, T, T)")
        a = a.astype(np.float64).mean(axis=0)                  # (T, T) heads averaged
        a = 0.5 * a + 0.5 * np.eye(a.shape[0])                  # residual connection
        a = a / a.sum(axis=-1, keepdims=True)                   # rows sum to 1
        rollout = a if rollout is None else a @ rollout         # (T, T) later layers on the left
    assert rollout is not None
    return rollout


# ------------------------------------------------------------------------------------------------
# nearest confirmed cases


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
