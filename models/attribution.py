"""Integrated-Gradients machinery behind `models.explain`: the attributed function, its baseline,
the Captum call, attention rollout and the counterfactual risks (events masked or removed).

- `integrated_gradients(private, inputs, ...)`: Captum `IntegratedGradients` of the *pre-Platt*
  risk logit at the window's last position over each content field's embedding output and each
  event's per-field surprise (`AttributedFunction`). Baseline (`AttributedFunction.baseline`): an
  average event at every real position (each content field's expected embedding under the
  training frequencies of its values; no query), the time fields (TIME_FIELDS) and positions
  kept, and every event exactly as surprising as the training users are on average per field.
  Gauss-Legendre steps in one batch; the steps are doubled while the convergence delta is large.
- `attention_rollout(attentions)`: Abnar & Zuidema 2020 ("attention, not explanation").
- `masked_risk(scorer, timeline, masked)`: the risk with some events replaced by the baseline
  (the deletion that matches the attributions' own counterfactual).
- `what_if(scorer, timeline, remove)` / `what_if_batch`: the risk with events removed and the rest
  re-tokenized (gaps and first-time flags change as they would in the data), variants in one batch.
  Signal columns (models/signals.py) stay as the store computed them: they also count other
  users' events and labels, which a removal here cannot recompute, so the remaining events still
  carry counts that include the removed ones (the removed events' own signals go with them).
- `private_scorer(scorer)`: a shallow copy of the scorer with its own deep copy of the encoder.
  Captum registers forward hooks on the modules it explains and any other thread running them
  would be hooked too, so hooks only ever go on such a private copy.
- `check_timeline`, `check_at`, `place`: the argument checks and the window -> timeline placement
  `models.explain.explain` shares with the functions here.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients
from sklearn.exceptions import NotFittedError

from models.train import collate, context_start

__all__ = [
    "TIME_FIELDS", "IGResult", "AttributedFunction", "integrated_gradients", "attention_rollout",
    "what_if", "what_if_batch", "masked_risk", "private_scorer", "fitted_scorer", "check_timeline",
    "check_at", "place",
]

# Fields the baseline keeps ("time kept"): their embeddings are the same in input and baseline, so
# they get no attribution. Positions are not a field and are kept as well. Restated from
# models/tokenizer.py (the gap / hour / weekday ids).
TIME_FIELDS: tuple[str, ...] = ("gap", "hour", "weekday")


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


def what_if(scorer: Any, timeline: pd.DataFrame, remove: Sequence[int], at: int | None = None,
            history: pd.DataFrame | None = None) -> float:
    """The calibrated risk as of event `at` (default the last) with the events `remove` deleted.

    Removed events after `at` change nothing (the model is causal). When `at` itself is removed,
    the risk is taken as of the last remaining event before it. ValueError when nothing remains.
    history: the user's earlier events, kept (first-time flags, first gap; see
    `models.explain.explain`).
    """
    tl = check_timeline(timeline)
    n = len(tl)
    at = n - 1 if at is None else check_at(at, n)
    removed = tuple(sorted({int(i) for i in remove}))
    bad = [i for i in removed if not 0 <= i < n]
    if bad:
        raise ValueError(f"event indexes {bad} out of range 0..{n - 1}")
    # inference only, no hooks: the scorer's own model is safe to share between threads here
    return what_if_batch(fitted_scorer(scorer), tl, at, [removed], history)[0]


def masked_risk(scorer: Any, timeline: pd.DataFrame, masked: Sequence[int], at: int | None = None,
                history: pd.DataFrame | None = None) -> float:
    """The calibrated risk as of event `at` (default the last) with the events `masked` replaced by
    the attribution baseline: their content embeddings set to an average event's and their
    surprise to the training users' typical surprise (what the event was and how unexpected it was are hidden;
    that an event happened and when stay). This is the deletion that matches the attributions'
    own counterfactual (bench/explain.py's faithfulness test); `what_if` instead removes events
    and re-tokenizes the rest. Masked events after `at` change nothing. history: as in
    `models.explain.explain`.
    Thread-safe (hooks go on a private model copy).
    """
    tl = check_timeline(timeline)
    n = len(tl)
    at = n - 1 if at is None else check_at(at, n)
    positions = sorted({int(i) for i in masked})
    bad = [i for i in positions if not 0 <= i < n]
    if bad:
        raise ValueError(f"event indexes {bad} out of range 0..{n - 1}")
    private = private_scorer(scorer)
    inputs = scorer.encode(tl.iloc[: at + 1], history)
    start = at + 1 - int(inputs["event_type"].shape[1])
    window = torch.as_tensor([i - start for i in positions if start <= i <= at], dtype=torch.long)
    fn = AttributedFunction(private, inputs, TIME_FIELDS)
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
class IGResult:
    """What `integrated_gradients` returns (window positions; `explain` places them in the timeline)."""

    field_attribution: dict[str, np.ndarray]   # field -> (T_win,)
    logit: float
    baseline_logit: float
    delta: float
    n_steps: int
    window_logits: np.ndarray                  # (T_win,) f at every window position


class AttributedFunction:
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
        query, as for most events; a signal group at its training mean); pads stay zero. Zero embeddings (PAD ids) instead are inputs
        the risk head never saw, and on them it can score higher than on the real events.
        """
        mask = self.real[..., None].float()                                          # (1, T, 1)
        embeds = []
        for name, module, e in zip(self.content, self.modules, x[:-1]):
            signal_mean = getattr(self.model, f"signal_mean_{name}", None)
            if signal_mean is not None:              # signal group: the projection of its mean
                mean = module(signal_mean.float().to(e.dtype))                        # (D,)
                embeds.append((mean.view(1, 1, -1) * mask).expand_as(e).contiguous())
                continue
            prior = getattr(self.model, f"prior_logp_{name}", None)
            if prior is None:                        # no prior (query; weekday with mask_time): zero
                embeds.append(torch.zeros_like(e))
                continue
            table = module.bins.weight if name == "amount" else module.weight       # (V, D)
            mean = prior.exp().float() @ table.float()                               # (D,)
            embeds.append((mean.view(1, 1, -1) * mask).expand_as(e).contiguous())
        ref = self.stack.field_mean.float().view(1, 1, -1) * mask                    # (1, T, F)
        return tuple(embeds) + (ref.expand_as(x[-1]).contiguous(),)


def integrated_gradients(private: Any, inputs: dict[str, torch.Tensor], n_steps: int,
                          tolerance: float, max_steps: int,
                          kept: Sequence[str] = TIME_FIELDS) -> IGResult:
    """IG of the final logit at the window's last position over the content field embeddings and
    the per-event, per-field surprise (`AttributedFunction`), with Captum's IntegratedGradients.

    Baseline (`AttributedFunction.baseline`): every real event's content embeddings at their
    expected value (an average event, no query), the time fields (gap, hour, weekday) and
    positions unchanged, and every event's surprise at the training users' mean for its field.
    A field's attribution at an event is the part from its content plus the part from how
    surprising its value was (time fields: surprise only), so completeness (sum of attributions
    = f(x) - f(baseline)) holds up to the integration error.
    """
    fn = AttributedFunction(private, inputs, kept)
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
    return IGResult(per_field, fx, fb, delta, steps, logits_x)


def what_if_batch(scorer: Any, tl: pd.DataFrame, at: int, variants: Sequence[tuple[int, ...]],
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
    starts = tok.offsets[:-1] + context_start(np.asarray(ends), scorer.max_events)
    batch = collate(tok, starts, stops, scorer.device_)           # right padded: no mask needed
    with torch.inference_mode():
        logits = scorer.risk_logits(batch)                         # (B, T)
    last = torch.as_tensor(stops - starts - 1, device=logits.device)
    z = logits[torch.arange(len(variants), device=logits.device), last].float().cpu().numpy()
    return [float(r) for r in scorer.calibrate(z)]


def fitted_scorer(scorer: Any) -> Any:
    """`scorer` itself; NotFittedError when it has no model yet."""
    if not hasattr(scorer, "model_"):
        raise NotFittedError("this Scorer is not fitted yet: fit it or load it before explaining")
    return scorer


def private_scorer(scorer: Any) -> Any:
    """A shallow copy of the scorer with its own deep copy of the encoder (in eval mode, no
    parameter gradients): Captum hooks that copy only, never a model another thread may be using.
    Tokenizer, stacker and calibrator stay shared (read only)."""
    private = copy.copy(fitted_scorer(scorer))
    model = copy.deepcopy(scorer.model_)
    model.eval()
    model.requires_grad_(False)   # IG needs gradients w.r.t. the hooked layer outputs only
    private.model_ = model
    return private


def check_timeline(timeline: pd.DataFrame) -> pd.DataFrame:
    """One user's events sorted by ts, with a fresh 0..n-1 index (positions index the events);
    ValueError naming what is wrong otherwise."""
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


def check_at(at: int, n: int) -> int:
    """`at` as an int when it indexes one of `n` events; ValueError otherwise."""
    at = int(at)
    if not 0 <= at < n:
        raise ValueError(f"at={at} outside the timeline (0..{n - 1})")
    return at


def place(values: np.ndarray, start: int, n: int) -> np.ndarray:
    """Window values (T_win,) into a (n,) array of the whole timeline, zeros elsewhere."""
    out = np.zeros(n, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    out[start: start + len(values)] = values
    return out
