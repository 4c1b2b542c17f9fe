"""From encoder outputs to the score analysts see: the stacker (`RiskStack`) and the calibrators.

Stacker. The final (pre-Platt) risk logit at event t is a linear map of causal features of the
encoder's output at t (FEATURES; all within the event's context window):
  head_logit; typicality: mean over fields of the squared z-score of the user's per-field mean
  surprise so far against the training users (atypical = surprising in unusual fields, or too
  predictable, like a bot); surprise_mean (mean over events <= t), surprise_max, surprise_recent
  (mean of the last RECENT events), surprise_last (event t itself).
`RiskStack` computes them in torch (so explanations can differentiate through it); its weights
come from `fit_stacker` (logistic regression on held-out labels) or `typicality_weights` (no
usable labels: the standardised typicality alone), and its typicality reference (per-field mean
and spread of the training users' mean surprise) from `RiskStack.set_reference`.

Calibrators: JSON-safe dicts, saved as they are in scorer.json.
  {"kind": "platt", "slope": a, "intercept": b}: P(fraud) = expit(a * z + b) (`fit_platt`,
    `cross_validated_platt`);
  {"kind": "ecdf", "quantiles": [...]}: the empirical CDF of the training users' logits, a rank
    in [0, 1], NOT a probability (`ecdf_calibrator`).
`calibrated_logit` / `calibrated_proba` apply one.

The fitting code that runs the encoder (which windows, which users) stays in models/scorer.py.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURES: tuple[str, ...] = (
    "head_logit", "typicality", "surprise_mean", "surprise_max", "surprise_recent", "surprise_last",
)
RECENT = 16  # events in the surprise_recent window
ZERO_LABEL_FEATURE = "typicality"
STD_FLOOR = 0.05  # nats: smallest per-field spread the typicality z-scores divide by
PRIOR_EVENTS = 8.0  # pseudo-events of reference behaviour in each user's per-field mean surprise
MAX_QUANTILES = 1001  # points of the empirical CDF kept in an "ecdf" calibrator

__all__ = [
    "FEATURES", "RECENT", "ZERO_LABEL_FEATURE", "STD_FLOOR", "PRIOR_EVENTS", "RiskStack",
    "fit_stacker", "typicality_weights", "fit_platt", "cross_validated_platt", "platt_calibrator",
    "ecdf_calibrator", "calibrated_logit", "calibrated_proba",
]


class RiskStack(nn.Module):
    """Final risk logit = a linear map of causal features (FEATURES) of the encoder's output, in torch.

    typicality: how far the user's per-field mean surprise so far lies from that of the training
    users (mean over fields of squared z-scores, `field_mean` / `field_std` are fitted). A fraud
    run is often not more surprising on the whole but surprising in other fields than usual, or
    too predictable (bots): both are atypical. The other features use the summed surprise.
    """

    def __init__(self, fields: list[str]) -> None:
        super().__init__()
        self.fields = list(fields)
        self.register_buffer("weight", torch.zeros(len(FEATURES)))
        self.register_buffer("bias", torch.zeros(()))
        self.register_buffer("field_mean", torch.zeros(len(self.fields)))
        self.register_buffer("field_std", torch.ones(len(self.fields)))

    def field_means(
        self, surprise: dict[str, torch.Tensor], real: torch.Tensor, prior_events: float = PRIOR_EVENTS
    ) -> torch.Tensor:
        """Per-field mean surprise over the events so far, shrunk towards the reference mean by
        `prior_events` pseudo-events (a short history is not atypical by chance alone): (B, T, F)."""
        s = torch.stack([surprise[f] for f in self.fields], dim=-1) * real[..., None]  # (B, T, F)
        count = real.float().cumsum(1)[..., None]  # (B, T, 1)
        return (s.cumsum(1) + prior_events * self.field_mean) / (count + prior_events).clamp(min=1)

    def features(self, head_logit: torch.Tensor, surprise: dict[str, torch.Tensor], real: torch.Tensor) -> torch.Tensor:
        """(B, T) head logit, field -> (B, T) surprise, (B, T) real-event mask -> (B, T, len(FEATURES))."""
        z = (self.field_means(surprise, real) - self.field_mean) / self.field_std  # (B, T, F)
        typicality = (z * z).mean(-1)  # (B, T)
        s = torch.stack([surprise[f] for f in self.fields]).sum(0) * real  # (B, T) total nats
        count = real.float().cumsum(1)  # events so far
        total = s.cumsum(1)
        mean = total / count.clamp(min=1)
        peak = s.cummax(1).values
        lag_total = F.pad(total, (RECENT, 0))[:, : total.size(1)]  # total RECENT events earlier
        lag_count = F.pad(count, (RECENT, 0))[:, : count.size(1)]
        recent = (total - lag_total) / (count - lag_count).clamp(min=1)
        return torch.stack([head_logit, typicality, mean, peak, recent, s], dim=-1)

    def forward(self, head_logit: torch.Tensor, surprise: dict[str, torch.Tensor], real: torch.Tensor) -> torch.Tensor:
        """The final pre-Platt logit (B, T) from the head logit and the per-field surprise."""
        return self.features(head_logit, surprise, real) @ self.weight + self.bias

    # ------------------------------------------------------------------ fitted state
    def set_linear(self, weight: np.ndarray, bias: float) -> None:
        """Set the linear map over FEATURES (weights on the raw, unscaled features)."""
        with torch.no_grad():
            self.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.bias.fill_(float(bias))

    def set_reference(self, raw: torch.Tensor, n_events: torch.Tensor) -> None:
        """Fit the typicality reference from the training users' raw per-field mean surprise.

        raw: (n_users, F) each user's unshrunk per-field mean surprise over its window (as of its
        last event); n_events: (n_users, 1) events in that window. field_mean = the mean over
        users; field_std = the spread of the shrunk means (what `field_means` gives), floored at
        STD_FLOOR: a field that is (nearly) always predicted right must not blow up on tiny noise.
        """
        raw, n = raw.double(), n_events.double()
        mean = raw.mean(0)
        shrunk = (raw * n + PRIOR_EVENTS * mean) / (n + PRIOR_EVENTS)  # what field_means gives
        with torch.no_grad():
            self.field_mean.copy_(mean.float())
            self.field_std.copy_(shrunk.std(0, correction=0).clamp(min=STD_FLOOR).float())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state (the "stack" entry of scorer.json)."""
        return {
            "features": list(FEATURES), "weight": self.weight.tolist(), "bias": float(self.bias),
            "fields": self.fields, "field_mean": self.field_mean.tolist(),
            "field_std": self.field_std.tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "RiskStack":
        """Inverse of `to_dict`."""
        stack = cls(state["fields"])
        with torch.no_grad():
            for name in ("weight", "field_mean", "field_std"):
                getattr(stack, name).copy_(torch.tensor(state[name]))
            stack.bias.fill_(state["bias"])
        return stack


# ------------------------------------------------------------------------------------ stacker


def fit_stacker(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Logistic regression of y on the standardised features X (n, len(FEATURES)), folded back
    into (weight, bias) on the raw features, for `RiskStack.set_linear`."""
    stacker = _stacker().fit(X, y)
    scaler, lr = stacker[0], stacker[1]
    w = lr.coef_[0] / scaler.scale_
    b = lr.intercept_[0] - float(np.dot(w, scaler.mean_))
    return w, b


def _stacker() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))


def typicality_weights(stat: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Zero-label stacker: the standardised ZERO_LABEL_FEATURE alone.

    stat: that feature for each training user. Returns (weight over FEATURES, mean, std), the
    bias being -mean / std; std 0 counts as 1.
    """
    mu, sd = float(stat.mean()), float(stat.std()) or 1.0
    w = np.zeros(len(FEATURES))
    w[FEATURES.index(ZERO_LABEL_FEATURE)] = 1.0 / sd
    return w, mu, sd


# ---------------------------------------------------------------------------------- calibrators


def fit_platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Platt scaling of logits z on labels y: (slope, intercept), None when the slope is not
    positive (the logits rank the wrong way round: no calibration of them is a probability)."""
    p = LogisticRegression(C=1e4, max_iter=1000).fit(np.asarray(z)[:, None], y)
    if p.coef_[0, 0] > 0:
        return float(p.coef_[0, 0]), float(p.intercept_[0])
    return None


def cross_validated_platt(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[dict[str, Any], str]:
    """Platt calibrator of the stacker (`fit_stacker`) from its cross-validated decision values on
    (X, y), and what happened ("fitted" or why it was skipped: slope 1, intercept 0 then)."""
    slope, intercept, status = 1.0, 0.0, "skipped: too few held-out labels of a class"
    folds = int(min(5, y.sum(), len(y) - y.sum()))
    if folds >= 2:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        z = cross_val_predict(_stacker(), X, y, cv=cv, method="decision_function")
        fitted = fit_platt(z, y)
        if fitted is not None:
            (slope, intercept), status = fitted, "fitted"
        else:
            status = "skipped: non-positive slope"
    return platt_calibrator(slope, intercept), status


def platt_calibrator(slope: float, intercept: float) -> dict[str, Any]:
    """A Platt calibrator: P(fraud) = expit(slope * z + intercept)."""
    return {"kind": "platt", "slope": slope, "intercept": intercept}


def ecdf_calibrator(z: np.ndarray) -> dict[str, Any]:
    """The empirical CDF of the logits z (at most MAX_QUANTILES quantiles): a rank, not a probability."""
    z = np.sort(z)
    quantiles = np.quantile(z, np.linspace(0, 1, min(len(z), MAX_QUANTILES)))
    return {"kind": "ecdf", "quantiles": [float(q) for q in quantiles]}


def calibrated_logit(calibrator: dict[str, Any], z: np.ndarray) -> np.ndarray:
    """The calibrated risk logit (Platt: slope * z + intercept; ecdf: z itself, monotone with proba)."""
    if calibrator["kind"] == "platt":
        return calibrator["slope"] * z + calibrator["intercept"]
    return z


def calibrated_proba(calibrator: dict[str, Any], z: np.ndarray) -> np.ndarray:
    """The score in [0, 1]: Platt probability, or the ecdf rank (linear between quantiles)."""
    if calibrator["kind"] == "platt":
        return expit(calibrated_logit(calibrator, z))
    q = np.asarray(calibrator["quantiles"])
    return np.interp(z, q, np.linspace(0.0, 1.0, len(q)))
