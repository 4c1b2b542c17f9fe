"""Per-event explanations of a Scorer's risk, as data (no plotting).

`explain(scorer, timeline, at)` explains the risk of one user as of event `at` (default the last):

- attribution: Captum `LayerIntegratedGradients` over the encoder's field embeddings (one layer
  per content field: event type, category, status, currency, amount, novelty flags, query),
  attributing the *pre-Platt* risk logit at `at`. Baseline = the same window with its content
  masked and its time kept: every content id PAD (zero embedding), amount value 0, no query,
  while time gap / hour / weekday and positions stay, so the attribution says what the events
  *were*, not when they happened. Along the IG path only the content embeddings move: which
  events happened (the surprise targets, the real-event mask) is always the real window, so the
  baseline means "the model sees when things happened but not what". Gauss-Legendre steps in
  one batch; the convergence delta, sum(attributions) - (f(x) - f(baseline)), is reported and
  the steps are doubled while |delta| > `tolerance` * |f(x) - f(baseline)|.
- per-field attribution (field -> (T,)), summing to the per-event attribution.
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

Thread safety: Captum registers forward hooks on the modules it explains, and any other thread
running the same modules at that moment would be hooked too. So each call explains a *private
copy* of the encoder (`copy.deepcopy`, a few ms at the demo size; bench/explain.py reports it)
inside a shallow copy of the scorer, and never hooks the scorer's own modules; Captum removes its
hooks in `finally`, and so do we. Concurrent calls run in parallel and give the serial results.

`nearest_cases(query, ref, ...)`: the k labelled users closest in sequence embedding (cosine).
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
from captum.attr import LayerIntegratedGradients
from sklearn.exceptions import NotFittedError

from models.reasons import top_reasons
from models.train import collate, context_start

# Captum warns whenever several layers are given; ours are independent field embeddings (summed).
warnings.filterwarnings("ignore", message="Multiple layers provided", category=UserWarning)

__all__ = [
    "WhatIf", "Explanation", "explain", "what_if", "masked_risk", "nearest_cases", "attention_rollout",
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
    """Array -> nested lists of floats, None where not finite (strict JSON has no NaN)."""
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isfinite(a), a, None).tolist()


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
# explain


# Fields the baseline keeps ("time kept"): their embeddings are the same in input and baseline, so
# they get no attribution. Positions are not a field and are kept as well. Restated from
# models/tokenizer.py (the gap / hour / weekday ids).
TIME_FIELDS: tuple[str, ...] = ("gap", "hour", "weekday")


def explain(scorer: Any, timeline: pd.DataFrame, at: int | None = None, *, user_id: str | None = None,
            model_version: str | None = None, n_steps: int = 24, top_k: int = 5,
            tolerance: float = 0.02, max_steps: int = 128, mask_time: bool = False) -> Explanation:
    """Explain `scorer`'s risk for one user's `timeline` (sorted by ts) as of event `at` (default last).

    n_steps: Gauss-Legendre IG steps to start with (16-32 recommended); doubled up to `max_steps`
    while |delta| > tolerance * |logit - baseline_logit|. top_k: events whose removal is tried
    (what-if). mask_time: also mask the time fields in the baseline (then gap / hour / weekday get
    attribution too: timing-driven patterns such as machine-regular bots show up; not the default,
    which follows DESIGN.md "content masked, time kept"). See the module docstring for what each
    field means. Thread-safe (private model copy).
    """
    t_start = time.perf_counter()
    tl = _check_timeline(timeline)
    n = len(tl)
    at = n - 1 if at is None else _check_at(at, n)
    if n_steps < 2 or max_steps < n_steps:
        raise ValueError(f"n_steps={n_steps}, max_steps={max_steps}: need 2 <= n_steps <= max_steps")
    if top_k < 0:
        raise ValueError(f"top_k={top_k}: must be >= 0")
    user_id = str(tl["user_id"].iloc[0]) if user_id is None else str(user_id)

    private = _private_scorer(scorer)                          # its own model copy: hooks go there
    model = private.model_
    inputs = scorer.encode(tl.iloc[: at + 1])                  # window scoring `at`, batch of 1
    T_win = int(inputs["event_type"].shape[1])
    start = at + 1 - T_win                                     # timeline index of window position 0

    # ---- attribution: LayerIntegratedGradients over the content field embeddings
    ig = _integrated_gradients(private, inputs, n_steps, tolerance, max_steps,
                               kept=() if mask_time else TIME_FIELDS)
    field_attr = {name: _place(a, start, n) for name, a in ig.field_attribution.items()}
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
    if start == 0 and at == n - 1 and int(context_start(np.array([at]), scorer.config.max_events)[0]) == 0:
        surprise = surprise_win[0].double().cpu().numpy()
        risk_history = np.asarray(scorer.calibrate(ig.window_logits), dtype=np.float64)
    else:
        history = scorer.score_history(tl)
        surprise = history["surprise"].to_numpy(dtype=np.float64)
        risk_history = history["risk"].to_numpy(dtype=np.float64)
    risk = float(scorer.calibrate(np.array([ig.logit]))[0])

    # ---- what-if: each top event removed, then all of them
    top = [int(i) for i in np.argsort(-event_attr[: at + 1], kind="stable")[:top_k]
           if event_attr[i] > 0]
    variants = [(i,) for i in top] + ([tuple(sorted(top))] if len(top) > 1 else [])
    variants = [v for v in variants if len(v) < at + 1]      # something must remain
    risks = _what_if_batch(private, tl, at, variants)
    what_ifs = tuple(WhatIf(v, r) for v, r in zip(variants, risks))

    reasons = top_reasons(tl, event_attr, at, risk=risk)
    return Explanation(
        user_id=user_id, model_version=model_version, at=at, risk=risk, logit=ig.logit,
        baseline_logit=ig.baseline_logit, delta=ig.delta, n_steps=ig.n_steps,
        event_attribution=event_attr, field_attribution=field_attr, surprise=surprise,
        risk_history=risk_history, attention_rollout=_place(rollout, start, n),
        attention_last=attention_last, what_if=what_ifs, reasons=reasons, window_start=start,
        seconds=time.perf_counter() - t_start,
    )


def what_if(scorer: Any, timeline: pd.DataFrame, remove: Sequence[int], at: int | None = None) -> float:
    """The calibrated risk as of event `at` (default the last) with the events `remove` deleted.

    Removed events after `at` change nothing (the model is causal). When `at` itself is removed,
    the risk is taken as of the last remaining event before it. ValueError when nothing remains.
    """
    tl = _check_timeline(timeline)
    n = len(tl)
    at = n - 1 if at is None else _check_at(at, n)
    removed = tuple(sorted({int(i) for i in remove}))
    bad = [i for i in removed if not 0 <= i < n]
    if bad:
        raise ValueError(f"event indexes {bad} out of range 0..{n - 1}")
    # inference only, no hooks: the scorer's own model is safe to share between threads here
    return _what_if_batch(_fitted(scorer), tl, at, [removed])[0]


def masked_risk(scorer: Any, timeline: pd.DataFrame, masked: Sequence[int], at: int | None = None) -> float:
    """The calibrated risk as of event `at` (default the last) with the *content* of the events
    `masked` replaced by the attribution baseline (content field embeddings zeroed: what the
    event was is hidden, that an event happened and when stays). This is the deletion that matches
    the attributions' own counterfactual (bench/explain.py's faithfulness test); `what_if`
    instead removes events and re-tokenizes the rest. Masked events after `at` change nothing.
    Thread-safe (hooks go on a private model copy).
    """
    tl = _check_timeline(timeline)
    n = len(tl)
    at = n - 1 if at is None else _check_at(at, n)
    positions = sorted({int(i) for i in masked})
    bad = [i for i in positions if not 0 <= i < n]
    if bad:
        raise ValueError(f"event indexes {bad} out of range 0..{n - 1}")
    private = _private_scorer(scorer)
    inputs = scorer.encode(tl.iloc[: at + 1])
    start = at + 1 - int(inputs["event_type"].shape[1])
    window = torch.as_tensor([i - start for i in positions if start <= i <= at], dtype=torch.long)

    def zero_masked(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output[:, window] = 0.0          # PAD ids, amount value 0 and no query embed to exactly 0
        return output

    hooks = [m.register_forward_hook(zero_masked) for name, m in private.model_.embed.fields.items()
             if name not in TIME_FIELDS]
    try:
        with torch.inference_mode():
            z = float(private.risk_logits(inputs)[0, -1])
    finally:
        for h in hooks:
            h.remove()
    return float(scorer.calibrate(np.array([z]))[0])


@dataclass(frozen=True)
class _IGResult:
    field_attribution: dict[str, np.ndarray]   # field -> (T_win,)
    logit: float
    baseline_logit: float
    delta: float
    n_steps: int
    window_logits: np.ndarray                  # (T_win,) f at every window position



def _integrated_gradients(private: Any, inputs: dict[str, torch.Tensor], n_steps: int,
                          tolerance: float, max_steps: int,
                          kept: Sequence[str] = TIME_FIELDS) -> _IGResult:
    """LIG of the final logit at the window's last position, over the content field embeddings.

    `private`: a scorer whose model only this call uses. Baseline: every content id PAD, amount
    value 0, no query (the content embeddings of the baseline); time fields (gap, hour, weekday)
    and positions unchanged. Captum runs the model on the *original* window with the content
    embedding outputs replaced along the path, so the events' identities (the surprise targets and
    the real-event mask) always come from the real window: the baseline is "the model sees when
    things happened but not what", judged by how surprising the actual events are under that view.
    f(baseline) is computed the same way (`_baseline_logit`), so completeness
    (sum of attributions = f(x) - f(baseline)) holds up to the integration error `delta`.
    """
    model = private.model_
    keys = list(inputs)
    content = [f for f in model.embed.fields if f not in kept]
    modules = [model.embed.fields[f] for f in content]
    x = tuple(inputs[k] for k in keys)
    baseline = tuple(v if k in kept else torch.zeros_like(v) for k, v in zip(keys, x))
    T = int(inputs["event_type"].shape[1])

    def forward(*tensors: torch.Tensor) -> torch.Tensor:
        return private.risk_logits(dict(zip(keys, tensors)))[:, T - 1]   # (B,)

    logits_x, fb = _baseline_logit(private, inputs, dict(zip(keys, baseline)), modules, T - 1)
    fx = float(logits_x[T - 1])
    lig = LayerIntegratedGradients(forward, modules)
    steps = n_steps
    while True:
        attributions = lig.attribute(x, baselines=baseline, n_steps=steps, method="gausslegendre",
                                     internal_batch_size=steps)
        per_field = {f: a[0].detach().double().sum(-1).cpu().numpy()   # (T,) summed over D
                     for f, a in zip(content, attributions)}
        total = float(sum(a.sum() for a in per_field.values()))
        delta = total - (fx - fb)
        if abs(delta) <= max(tolerance * abs(fx - fb), 1e-4) or steps * 2 > max_steps:
            break
        steps *= 2
    return _IGResult(per_field, fx, fb, delta, steps, logits_x)


def _baseline_logit(private: Any, inputs: dict[str, torch.Tensor], baseline: dict[str, torch.Tensor],
                    modules: Sequence[torch.nn.Module], t: int) -> tuple[np.ndarray, float]:
    """(f(x) at every position (T,), f(baseline) at position t): the baseline's content embedding
    outputs (captured from a forward of the baseline ids) swapped into a forward of the real
    window, as IG's path does."""
    captured: dict[int, torch.Tensor] = {}

    def capture(i: int):
        return lambda module, args, output: captured.__setitem__(i, output[1:2])

    def replace(i: int):
        return lambda module, args, output: captured[i]

    with torch.no_grad():
        hooks = [m.register_forward_hook(capture(i)) for i, m in enumerate(modules)]
        try:  # one batch: [x, baseline]; row 0 is f(x), row 1's activations are the baseline's
            fx = private.risk_logits({k: torch.cat([inputs[k], baseline[k]]) for k in inputs})[0]
        finally:
            for h in hooks:
                h.remove()
        hooks = [m.register_forward_hook(replace(i)) for i, m in enumerate(modules)]
        try:
            fb = float(private.risk_logits(inputs)[0, t])
        finally:
            for h in hooks:
                h.remove()
    return fx.double().cpu().numpy(), fb


def _what_if_batch(scorer: Any, tl: pd.DataFrame, at: int,
                   variants: Sequence[tuple[int, ...]]) -> list[float]:
    """Calibrated risk at `at` for each set of removed events, all variants in one forward pass."""
    if not variants:
        return []
    frames, ends = [], []
    for k, removed in enumerate(variants):
        keep = np.setdiff1d(np.arange(at + 1), np.asarray(removed, dtype=np.int64))
        if keep.size == 0:
            raise ValueError(f"removing {list(removed)} leaves no event at or before at={at}")
        frames.append(tl.iloc[keep].assign(user_id=f"v{k:06d}"))
        ends.append(keep.size - 1)
    tok = scorer.tokenizer_.transform(pd.concat(frames, ignore_index=True))
    stops = tok.offsets[1:]
    starts = tok.offsets[:-1] + context_start(np.asarray(ends), scorer.config.max_events)
    batch = collate(tok, starts, stops, scorer.device_)           # right padded: no mask needed
    with torch.inference_mode():
        logits = scorer.risk_logits(batch)                         # (B, T)
    last = torch.as_tensor(stops - starts - 1, device=logits.device)
    z = logits[torch.arange(len(variants), device=logits.device), last].float().cpu().numpy()
    return [float(r) for r in scorer.calibrate(z)]


def _fitted(scorer: Any) -> Any:
    if not hasattr(scorer, "model_"):
        raise NotFittedError("this Scorer is not fitted yet: fit it or load it before explaining")
    return scorer


def _private_scorer(scorer: Any) -> Any:
    """A shallow copy of the scorer with its own deep copy of the encoder (in eval mode, no
    parameter gradients): Captum hooks that copy only, never a model another thread may be using.
    Tokenizer, stacker and calibrator stay shared (read only)."""
    private = copy.copy(_fitted(scorer))
    model = copy.deepcopy(scorer.model_)
    model.eval()
    model.requires_grad_(False)   # IG needs gradients w.r.t. the hooked layer outputs only
    private.model_ = model
    return private


def _check_timeline(timeline: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(timeline, pd.DataFrame):
        raise ValueError(f"timeline must be a pandas DataFrame, got {type(timeline).__name__}")
    if len(timeline) == 0:
        raise ValueError("timeline is empty")
    for col in ("user_id", "ts", "event_type"):
        if col not in timeline.columns:
            raise ValueError(f"timeline lacks column {col!r}")
    if timeline["user_id"].nunique() != 1:
        raise ValueError(f"timeline must hold one user's events, got {timeline['user_id'].nunique()} users")
    ts = pd.to_datetime(timeline["ts"])
    if not ts.is_monotonic_increasing:
        raise ValueError("timeline must be sorted by ts (positions index the events in time order)")
    return timeline.reset_index(drop=True)


def _check_at(at: int, n: int) -> int:
    at = int(at)
    if not 0 <= at < n:
        raise ValueError(f"at={at} outside the timeline (0..{n - 1})")
    return at


def _place(values: np.ndarray, start: int, n: int) -> np.ndarray:
    """Window values (T_win,) into a (n,) array of the whole timeline, zeros elsewhere."""
    out = np.zeros(n, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    out[start: start + len(values)] = values
    return out


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
