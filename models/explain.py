"""Per-event explanations of a Scorer's risk, as data (no plotting).

`explain(scorer, timeline, at)` explains the risk of one user as of event `at` (default the last):

- attribution: Captum `IntegratedGradients` of the *pre-Platt* risk logit at `at` over two kinds
  of input of the encoder's window: each content field's embedding output (event type,
  category, status, currency, amount, novelty flags, query) and each event's per-field surprise
  (what the stacker reads). Baseline = the same window with every event's content replaced by
  an average event (each content field's expected embedding under the training frequencies of
  its values; no query) and its time kept (gap / hour / weekday and positions stay), and every
  event exactly as surprising as the training users are on average per field. So an event's
  attribution says what it *was* and how unexpected that was, not when it happened, against a
  "nothing unusual" reference. Which events happened (the surprise
  targets, the real-event mask) always comes from the real window. Gauss-Legendre steps in one
  batch; the convergence delta, sum(attributions) - (f(x) - f(baseline)), is reported and the
  steps are doubled while |delta| > `tolerance` * |f(x) - f(baseline)|.
- per-field attribution (field -> (T,): its content part plus its surprise part; the time
  fields gap and hour have a surprise part only), summing to the per-event attribution.
- attention: rollout (Abnar & Zuidema 2020: heads averaged, identity added, rows renormalised,
  layers multiplied) and the last layer's per-head attention from the scored event, from an
  eager-attention forward pass. This is *attention, not explanation*: shown for inspection only.
- surprise (nats per event) and the risk as of every event (the same numbers as
  `scorer.score_history`; taken from the explanation's own forward pass when one window scores
  every event).
- what-if: the calibrated risk at `at` with each of the `top_k` most (positively) attributed
  events removed, and with all of them removed; re-tokenized (gaps and "first time" flags of the
  remaining events change as they would in the data), one batch.
- reasons: 2-5 plain sentences from the data (models/reasons.py).

The machinery (the attributed function and its baseline, the Captum call, attention rollout, the
masked / removed-event risks) is in models/attribution.py; this module holds the record
(`Explanation`, `WhatIf`, `METHOD`) and the entry point. `what_if`, `masked_risk`,
`attention_rollout` (models/attribution.py) and `nearest_cases` (models/neighbours.py) are
re-exported here, so `from models.explain import ...` keeps working for every caller.

Thread safety: Captum registers forward hooks on the modules it explains, and any other thread
running the same modules at that moment would be hooked too. So each call explains a *private
copy* of the encoder (`copy.deepcopy`, a few ms at the demo size; bench/explain.py reports it)
inside a shallow copy of the scorer, and never hooks the scorer's own modules; Captum removes its
hooks in `finally`, and so do we. Concurrent calls run in parallel and give the serial results.

`nearest_cases(query, ref, ...)`: the k labelled users closest in sequence embedding (cosine;
models/neighbours.py).
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.attribution import (
    TIME_FIELDS,
    attention_rollout,
    check_at,
    check_timeline,
    integrated_gradients,
    masked_risk,
    place,
    private_scorer,
    what_if,
    what_if_batch,
)
from models.neighbours import nearest_cases
from models.reasons import top_reasons
from models.train import context_start

# the old private name (bench/explain.py, tests/test_explain.py import it from here)
_private_scorer = private_scorer

# What made an attribution: stored with every explanation, so a record made by an older method
# (records without the key predate it: the all-PAD baseline) is recomputed, not shown.
# "+history": the window's first-time flags and first gap come from the user's earlier events
# (older records tokenized a long user's window alone: its risk differed from the queue's).
METHOD = "ig/average-event+typical-surprise+history"
OLD_METHOD = "ig/pad-baseline"

__all__ = [
    "METHOD", "WhatIf", "Explanation", "explain", "what_if", "masked_risk", "nearest_cases", "attention_rollout",
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
    baseline_logit: float            # f(baseline): average events, time kept, typical surprise
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
    method: str = OLD_METHOD         # attribution method (METHOD for every new explanation)

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
    """Array -> nested lists of floats, None where not finite (strict JSON has no NaN)."""
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isfinite(a), a, None).tolist()


def _array(v: Any) -> np.ndarray:
    return np.array(v, dtype=np.float64) if v is not None else np.zeros(0)


# ------------------------------------------------------------------------------------------------
# explain


def explain(scorer: Any, timeline: pd.DataFrame, at: int | None = None, *, user_id: str | None = None,
            model_version: str | None = None, n_steps: int = 24, top_k: int = 5,
            tolerance: float = 0.02, max_steps: int = 128, mask_time: bool = False,
            history: pd.DataFrame | None = None) -> Explanation:
    """Explain `scorer`'s risk for one user's `timeline` (sorted by ts) as of event `at` (default last).

    n_steps: Gauss-Legendre IG steps to start with (16-32 recommended); doubled up to `max_steps`
    while |delta| > tolerance * |logit - baseline_logit|. top_k: events whose removal is tried
    (what-if). mask_time: also mask the time fields in the baseline (then gap / hour / weekday get
    attribution too: timing-driven patterns such as machine-regular bots show up; not the default,
    which follows DESIGN.md "content masked, time kept"). history: the user's events before the
    timeline (e.g. all but the latest max_events): not explained, but they set the first-time
    flags and the first gap (EventTokenizer.transform), so the risk is the one the queue shows.
    See the module docstring for what each field means. Thread-safe (private model copy).
    """
    t_start = time.perf_counter()
    tl = check_timeline(timeline)
    n = len(tl)
    at = n - 1 if at is None else check_at(at, n)
    if n_steps < 2 or max_steps < n_steps:
        raise ValueError(f"n_steps={n_steps}, max_steps={max_steps}: need 2 <= n_steps <= max_steps")
    if top_k < 0:
        raise ValueError(f"top_k={top_k}: must be >= 0")
    user_id = str(tl["user_id"].iloc[0]) if user_id is None else str(user_id)

    private = private_scorer(scorer)                          # its own model copy: hooks go there
    model = private.model_
    inputs = scorer.encode(tl.iloc[: at + 1], history)         # window scoring `at`, batch of 1
    T_win = int(inputs["event_type"].shape[1])
    start = at + 1 - T_win                                     # timeline index of window position 0

    # ---- attribution: IG over the content field embeddings and the per-field surprise
    ig = integrated_gradients(private, inputs, n_steps, tolerance, max_steps,
                               kept=() if mask_time else TIME_FIELDS)
    field_attr = {name: place(a, start, n) for name, a in ig.field_attribution.items()}
    event_attr = np.sum(list(field_attr.values()), axis=0) if field_attr else np.zeros(n)

    # ---- eager forward: attention (rollout + last layer) and surprise in the window
    with torch.inference_mode():
        out = model(inputs, output_attentions=True)
        surprise_win = torch.stack(list(model.field_surprise(inputs, out).values())).sum(0)  # (1, T_win)
    rollout = attention_rollout([a[0] for a in out.attentions])[T_win - 1]      # (T_win,)
    last = out.attentions[-1][0, :, T_win - 1, :].float().cpu().numpy()          # (H, T_win)
    attention_last = np.zeros((last.shape[0], n))
    attention_last[:, start: at + 1] = last

    # ---- surprise and risk as of every event. When the window scores every event (the scored
    # event is the last and the timeline fits one window) it is the forward above; otherwise the
    # scorer's score_history (each event in its own context window).
    # With a history, this window's risk as of its earlier events sees only the window before
    # them (one forward pass instead of one per event); the risk as of the scored event is exact.
    if start == 0 and at == n - 1 and int(context_start(np.array([at]), scorer.max_events)[0]) == 0:
        surprise = surprise_win[0].double().cpu().numpy()
        risk_history = np.asarray(scorer.calibrate(ig.window_logits), dtype=np.float64)
    else:
        scored = scorer.score_history(tl, history)
        surprise = scored["surprise"].to_numpy(dtype=np.float64)
        risk_history = scored["risk"].to_numpy(dtype=np.float64)
    risk = float(scorer.calibrate(np.array([ig.logit]))[0])

    # ---- what-if: each top event removed, then all of them
    top = [int(i) for i in np.argsort(-event_attr[: at + 1], kind="stable")[:top_k]
           if event_attr[i] > 0]
    variants = [(i,) for i in top] + ([tuple(sorted(top))] if len(top) > 1 else [])
    variants = [v for v in variants if len(v) < at + 1]      # something must remain
    risks = what_if_batch(private, tl, at, variants, history)
    what_ifs = tuple(WhatIf(v, r) for v, r in zip(variants, risks))

    reasons = top_reasons(tl, event_attr, at, risk=risk)
    return Explanation(
        user_id=user_id, model_version=model_version, at=at, risk=risk, logit=ig.logit,
        baseline_logit=ig.baseline_logit, delta=ig.delta, n_steps=ig.n_steps,
        event_attribution=event_attr, field_attribution=field_attr, surprise=surprise,
        risk_history=risk_history, attention_rollout=place(rollout, start, n),
        attention_last=attention_last, what_if=what_ifs, reasons=reasons, window_start=start,
        seconds=time.perf_counter() - t_start, method=METHOD,
    )
