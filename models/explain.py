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
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients
from sklearn.exceptions import NotFittedError

from models.reasons import top_reasons
from models.train import collate, context_start


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
    inputs = scorer.encode(tl.iloc[: at + 1], history)         # window scoring `at`, batch of 1
    T_win = int(inputs["event_type"].shape[1])
    start = at + 1 - T_win                                     # timeline index of window position 0

    # ---- attribution: IG over the content field embeddings and the per-field surprise
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
    # With a history, this window's risk as of its earlier events sees only the window before
    # them (one forward pass instead of one per event); the risk as of the scored event is exact.
    if start == 0 and at == n - 1 and int(context_start(np.array([at]), scorer.config.max_events)[0]) == 0:
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
    risks = _what_if_batch(private, tl, at, variants, history)
    what_ifs = tuple(WhatIf(v, r) for v, r in zip(variants, risks))

    reasons = top_reasons(tl, event_attr, at, risk=risk)
    return Explanation(
        user_id=user_id, model_version=model_version, at=at, risk=risk, logit=ig.logit,
        baseline_logit=ig.baseline_logit, delta=ig.delta, n_steps=ig.n_steps,
        event_attribution=event_attr, field_attribution=field_attr, surprise=surprise,
        risk_history=risk_history, attention_rollout=_place(rollout, start, n),
        attention_last=attention_last, what_if=what_ifs, reasons=reasons, window_start=start,
        seconds=time.perf_counter() - t_start, method=METHOD,
    )


def what_if(scorer: Any, timeline: pd.DataFrame, remove: Sequence[int], at: int | None = None,
            history: pd.DataFrame | None = None) -> float:
    """The calibrated risk as of event `at` (default the last) with the events `remove` deleted.

    Removed events after `at` change nothing (the model is causal). When `at` itself is removed,
    the risk is taken as of the last remaining event before it. ValueError when nothing remains.
    history: the user's earlier events, kept (first-time flags, first gap; see `explain`).
    """
    tl = _check_timeline(timeline)
    n = len(tl)
    at = n - 1 if at is None else _check_at(at, n)
    removed = tuple(sorted({int(i) for i in remove}))
    bad = [i for i in removed if not 0 <= i < n]
    if bad:
        raise ValueError(f"event indexes {bad} out of range 0..{n - 1}")
    # inference only, no hooks: the scorer's own model is safe to share between threads here
    return _what_if_batch(_fitted(scorer), tl, at, [removed], history)[0]


def masked_risk(scorer: Any, timeline: pd.DataFrame, masked: Sequence[int], at: int | None = None,
                history: pd.DataFrame | None = None) -> float:
    """The calibrated risk as of event `at` (default the last) with the events `masked` replaced by
    the attribution baseline: their content embeddings set to an average event's and their
    surprise to the training users' typical surprise (what the event was and how unexpected it was are hidden;
    that an event happened and when stay). This is the deletion that matches the attributions'
    own counterfactual (bench/explain.py's faithfulness test); `what_if` instead removes events
    and re-tokenizes the rest. Masked events after `at` change nothing. history: as in `explain`.
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
    inputs = scorer.encode(tl.iloc[: at + 1], history)
    start = at + 1 - int(inputs["event_type"].shape[1])
    window = torch.as_tensor([i - start for i in positions if start <= i <= at], dtype=torch.long)
    fn = _AttributedFunction(private, inputs, TIME_FIELDS)
    with torch.inference_mode():
        x = fn.actual()
        b = fn.baseline(x)
        mixed = []
        for xi, bi in zip(x, b):
            xi = xi.clone()
            xi[:, window] = bi[:, window]
            mixed.append(xi)
        z = float(fn(*mixed)[0, -1])
    return float(scorer.calibrate(np.array([z]))[0])


@dataclass(frozen=True)
class _IGResult:
    field_attribution: dict[str, np.ndarray]   # field -> (T_win,)
    logit: float
    baseline_logit: float
    delta: float
    n_steps: int
    window_logits: np.ndarray                  # (T_win,) f at every window position


class _AttributedFunction:
    """The risk logit of one window as a function of what IG moves: (B, T) = f(*embeddings, surprise).

    Inputs, in order: the output (n, T, D) of each content field embedding (`self.content`), then
    the per-field surprise (n, T, F) of the stacker's fields. The model runs on the real window's
    ids with each content embedding's output swapped for the given tensor (forward hooks); its
    head logit and the given surprise go through the stacker. Treating the surprise as an input of
    its own (instead of recomputing it from the moved embeddings) gives it a baseline of its own,
    the training users' mean surprise per field: a content-masked window makes every real event
    look wildly unexpected, which is no "nothing suspicious" reference for a model that scores
    surprise (the old all-PAD baseline scored ~+500 against ~+30 for the riskiest demo users, so
    every fraud event came out "lowering the risk"; this one scores about -10 for them).
    """

    def __init__(self, private: Any, inputs: dict[str, torch.Tensor], kept: Sequence[str]) -> None:
        self.model, self.stack, self.inputs = private.model_, private.stack_, inputs
        self.content = [f for f in self.model.embed.fields if f not in kept]
        self.modules = [self.model.embed.fields[f] for f in self.content]
        self.real = inputs["event_type"] != 0                          # (1, T)

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        *embeds, surprise = tensors
        n = surprise.shape[0]
        batch = {k: v.expand(n, *v.shape[1:]) for k, v in self.inputs.items()}
        hooks = [m.register_forward_hook(lambda module, args, output, e=e: e)
                 for m, e in zip(self.modules, embeds)]
        try:
            out = self.model(batch)
        finally:
            for h in hooks:
                h.remove()
        per_field = {f: surprise[..., j] for j, f in enumerate(self.stack.fields)}
        return self.stack(out.risk_logits.float(), per_field, self.real.expand(n, -1))   # (n, T)

    def actual(self) -> tuple[torch.Tensor, ...]:
        """The real window's content embedding outputs and per-field surprise."""
        captured: dict[int, torch.Tensor] = {}
        hooks = [m.register_forward_hook(lambda module, args, output, i=i: captured.__setitem__(i, output.detach()))
                 for i, m in enumerate(self.modules)]
        try:
            with torch.no_grad():
                out = self.model(self.inputs)
                surprise = self.model.field_surprise(self.inputs, out)
        finally:
            for h in hooks:
                h.remove()
        stacked = torch.stack([surprise[f].float() for f in self.stack.fields], dim=-1)     # (1, T, F)
        return tuple(captured[i] for i in range(len(self.modules))) + (stacked,)

    def baseline(self, x: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """An average event at every real position and the reference surprise (shaped like `x`,
        the `actual()` inputs).

        A content field's baseline embedding is its expected embedding under the training
        frequencies of its values (the model's priors; amount value 0 = the mean log amount; no
        query, as for most events); pads stay zero. Zero embeddings (PAD ids) instead are inputs
        the risk head never saw, and on them it can score higher than on the real events.
        """
        mask = self.real[..., None].float()                                          # (1, T, 1)
        embeds = []
        for name, module, e in zip(self.content, self.modules, x[:-1]):
            prior = getattr(self.model, f"prior_logp_{name}", None)
            if prior is None:                        # no prior (query; weekday with mask_time): zero
                embeds.append(torch.zeros_like(e))
                continue
            table = module.bins.weight if name == "amount" else module.weight       # (V, D)
            mean = prior.exp().float() @ table.float()                               # (D,)
            embeds.append((mean.view(1, 1, -1) * mask).expand_as(e).contiguous())
        ref = self.stack.field_mean.float().view(1, 1, -1) * mask                    # (1, T, F)
        return tuple(embeds) + (ref.expand_as(x[-1]).contiguous(),)


def _integrated_gradients(private: Any, inputs: dict[str, torch.Tensor], n_steps: int,
                          tolerance: float, max_steps: int,
                          kept: Sequence[str] = TIME_FIELDS) -> _IGResult:
    """IG of the final logit at the window's last position over the content field embeddings and
    the per-event, per-field surprise (`_AttributedFunction`), with Captum's IntegratedGradients.

    Baseline (`_AttributedFunction.baseline`): every real event's content embeddings at their
    expected value (an average event, no query), the time fields (gap, hour, weekday) and
    positions unchanged, and every event's surprise at the training users' mean for its field.
    A field's attribution at an event is the part from its content plus the part from how
    surprising its value was (time fields: surprise only), so completeness (sum of attributions
    = f(x) - f(baseline)) holds up to the integration error.
    """
    fn = _AttributedFunction(private, inputs, kept)
    x = fn.actual()
    baseline = fn.baseline(x)
    T = int(inputs["event_type"].shape[1])
    with torch.no_grad():
        logits_x = fn(*x)[0].double().cpu().numpy()                   # (T,)
        fb = float(fn(*baseline)[0, T - 1])
    fx = float(logits_x[T - 1])
    ig = IntegratedGradients(lambda *t: fn(*t)[:, T - 1])
    steps = n_steps
    while True:
        attributions = ig.attribute(x, baselines=baseline, n_steps=steps, method="gausslegendre",
                                    internal_batch_size=steps)
        per_field = {f: a[0].detach().double().sum(-1).cpu().numpy()   # (T,) summed over D
                     for f, a in zip(fn.content, attributions[:-1])}
        surprise_attr = attributions[-1][0].detach().double().cpu().numpy()    # (T, F)
        for j, f in enumerate(fn.stack.fields):
            per_field[f] = per_field.get(f, 0.0) + surprise_attr[:, j]
        total = float(sum(a.sum() for a in per_field.values()))
        delta = total - (fx - fb)
        if abs(delta) <= max(tolerance * abs(fx - fb), 1e-4) or steps * 2 > max_steps:
            break
        steps *= 2
    return _IGResult(per_field, fx, fb, delta, steps, logits_x)


def _what_if_batch(scorer: Any, tl: pd.DataFrame, at: int, variants: Sequence[tuple[int, ...]],
                   history: pd.DataFrame | None = None) -> list[float]:
    """Calibrated risk at `at` for each set of removed events, all variants in one forward pass
    (each variant a pseudo-user with the same `history`)."""
    if not variants:
        return []
    frames, earlier, ends = [], [], []
    for k, removed in enumerate(variants):
        keep = np.setdiff1d(np.arange(at + 1), np.asarray(removed, dtype=np.int64))
        if keep.size == 0:
            raise ValueError(f"removing {list(removed)} leaves no event at or before at={at}")
        frames.append(tl.iloc[keep].assign(user_id=f"v{k:06d}"))
        if history is not None and not history.empty:
            earlier.append(history.assign(user_id=f"v{k:06d}"))
        ends.append(keep.size - 1)
    tok = scorer.tokenizer_.transform(pd.concat(frames, ignore_index=True),
                                      pd.concat(earlier, ignore_index=True) if earlier else None)
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
