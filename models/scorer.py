"""`Scorer`: the calibrated risk model analysts see (scikit-learn style; higher = riskier).

fit(events, labels):
  1. tokenizer learns the vocabularies; the encoder is pretrained on every timeline to predict the
     next event (self-supervised, no labels needed);
  2. with labels of both classes (at least `min_positives` positive users, default 10, and 2
     negative ones): the risk head is fine-tuned at each label's `as_of` position, on a
     stratified part of the labelled users; on the held-out part a stacker (logistic regression
     over [head logit, surprise stats]) is fitted and then Platt-calibrated on its
     cross-validated outputs. `predict_proba` is a probability;
  3. otherwise the surprise alone ranks. The risk logit is the standardised typicality (below).
     With zero or one-class labels `predict_proba` maps it through its empirical CDF over the
     training users: a rank in [0, 1] (share of training users more typical), NOT a probability.
     With a few labels of both classes (fewer positives than min_positives: a head and a stacker
     fitted on a handful of positives rank worse than the surprise, as measured) the labels
     Platt-calibrate the typicality logit, so `predict_proba` is a probability again.

Risk "as of" an event uses only events up to it (causal). Surprise of an event = -log p(event |
earlier events) summed over the predicted fields (nats). Stacker features at event t (all causal,
within the event's context window, see models.train.context_start):
  head_logit; typicality: mean over fields of the squared z-score of the user's per-field mean
  surprise so far against the training users (atypical = surprising in unusual fields, or too
  predictable, like a bot); surprise_mean (mean over events <= t), surprise_max, surprise_recent
  (mean of the last 16 events), surprise_last (event t itself).
The whole chain from field ids to the final (pre-Platt) logit is torch (`risk_logits`), so it can
be differentiated end to end for explanations. The stacker (`RiskStack`) and the calibrators
(Platt, empirical CDF) live in models/calibration.py; this module decides what they are fitted on.

A fitted Scorer is one directory (`save_pretrained`): config.json + model.safetensors (encoder),
tokenizer.json (vocabularies), scorer.json (config, stacker, calibrator, fit info).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import NotFittedError
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm.auto import tqdm

from models.calibration import (  # noqa: F401  (FEATURES ... PRIOR_EVENTS, RiskStack: re-exported)
    FEATURES,
    PRIOR_EVENTS,
    RECENT,
    STD_FLOOR,
    ZERO_LABEL_FEATURE,
    RiskStack,
    calibrated_logit,
    calibrated_proba,
    cross_validated_platt,
    ecdf_calibrator,
    fit_platt,
    fit_stacker,
    platt_calibrator,
    typicality_weights,
)
from models.contracts import check_device, label_values
from models.device import autocast, resolve_device, use_all_cores
from models.encoder import RISK_POOLING, EventEncoder, EventEncoderConfig
from models.tokenizer import (
    HEAD_FIELDS,
    EventTokenizer,
    TokenizedEvents,
    TokenizerConfig,
    check_events,
    checked_history,
    naive_utc_ns,
)
from models.train import (
    TrainConfig,
    Windows,
    collate,
    context_start,
    field_counts,
    finetune,
    length_batches,
    pretrain,
    recent_windows,
    target_windows,
)

@dataclass(frozen=True)
class ScorerConfig:
    """Defaults = the demo model (trains on ~3000 users x ~100 events in under 2 minutes on 2 cores).

    label_val_frac: share of labelled users held out for early stopping, the stacker and Platt.
    min_positives: fewest positive labelled users for fine-tuning the risk head; below it (and
      with both classes labelled) the surprise ranks and the labels only Platt-calibrate it.
    risk_pooling: what the risk head reads ("last_max": the event's state and a running max over
      the window; bench/quality.py synthetic AUPRC 0.981 vs 0.972 with "last", one seed).
    time_budget_s: optional cap on each training phase (makes results depend on machine speed).
    """

    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    max_events: int = 256
    mlp_ratio: int = 2
    dropout: float = 0.1
    pretrain_epochs: int = 5
    finetune_epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    val_frac: float = 0.1
    label_val_frac: float = 0.25
    patience: int = 2
    seed: int = 0
    device: str = "auto"
    aux_weight: float = 1.0
    time_budget_s: float | None = None
    score_batch_size: int = 32
    min_positives: int = 10   # was 20 until 2026-12-02 (see the README's label-budget curve)
    risk_pooling: str = "last_max"  # see models/encoder.py; "last" reproduces models made before 2026-12-01
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)

    def __post_init__(self) -> None:
        if isinstance(self.tokenizer, dict):  # from JSON
            object.__setattr__(self, "tokenizer", TokenizerConfig(**self.tokenizer))
        for name in ("d_model", "n_layers", "n_heads", "max_events", "mlp_ratio", "batch_size", "score_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ScorerConfig.{name}={getattr(self, name)!r}: expected >= 1")
        if self.max_events < 2:
            raise ValueError(f"ScorerConfig.max_events={self.max_events}: expected >= 2")
        if self.d_model % self.n_heads:
            raise ValueError(f"ScorerConfig.d_model={self.d_model} is not a multiple of n_heads={self.n_heads}")
        for name in ("val_frac", "label_val_frac"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"ScorerConfig.{name}={getattr(self, name)!r}: expected in [0, 1)")
        if self.risk_pooling not in RISK_POOLING:
            raise ValueError(f"ScorerConfig.risk_pooling={self.risk_pooling!r}: expected one of {RISK_POOLING}")
        check_device(self.device, "ScorerConfig.device")

    def train_config(self, epochs: int, progress: bool) -> TrainConfig:
        return TrainConfig(
            epochs=epochs, batch_size=self.batch_size, lr=self.lr, patience=self.patience, seed=self.seed,
            time_budget_s=self.time_budget_s, aux_weight=self.aux_weight, progress=progress,
        )


@dataclass(frozen=True)
class _Batch:
    """One scored batch of windows (what the scoring loop hands to its callers)."""

    windows: np.ndarray  # (B,) window ids
    inputs: dict[str, torch.Tensor]
    hidden: torch.Tensor  # (B, T, D)
    head_logit: torch.Tensor  # (B, T)
    surprise: dict[str, torch.Tensor]  # field -> (B, T)
    features: torch.Tensor  # (B, T, F)
    logit: torch.Tensor  # (B, T) final pre-Platt logit


def _stratified_holdout(per_user: pd.Series, frac: float, seed: int) -> np.ndarray:
    """Users held out per class: round(frac * n_class), but at least 1 and never the whole class."""
    rng = np.random.default_rng(seed)
    held = []
    for cls in (0, 1):
        members = np.sort(per_user.index[per_user.to_numpy() == cls].to_numpy())
        k = int(np.clip(round(frac * len(members)), 1, len(members) - 1))
        held.append(rng.permutation(members)[:k])
    return np.concatenate(held)


class Scorer:
    """Calibrated, causal risk scores from the event encoder. See the module docstring.

    Learned attributes: tokenizer_, model_, stack_ (RiskStack), calibrator_ (dict: Platt slope /
    intercept, or the empirical-CDF quantiles in zero-label mode), mode_ ("supervised" or
    "surprise"), n_labels_, fit_info_, classes_, device_.
    """

    def __init__(self, config: ScorerConfig | None = None) -> None:
        if config is not None and not isinstance(config, ScorerConfig):
            raise ValueError(f"config must be a ScorerConfig, got {type(config).__name__}")
        self.config = config or ScorerConfig()

    @property
    def max_events(self) -> int:
        """The window length: the most events the model reads to score one event (its context
        window, models.train.context_start). The one place callers read it. It is the config's
        `max_events`, known before fitting; the encoder built by `fit` gets the same value (its
        position table has that many rows)."""
        return self.config.max_events

    @property
    def signal_columns(self) -> list[str]:
        """The signal columns (models/signals.py) the fitted model reads; [] when none."""
        self._check_fitted()
        return list(getattr(self.tokenizer_, "signal_columns_", []))

    # ================================================================== fitting
    def fit(self, events: pd.DataFrame, labels: pd.DataFrame | None = None, *, progress: bool = True) -> "Scorer":
        """Pretrain on every timeline; with labels of both classes fine-tune, stack and calibrate."""
        cfg = self.config
        t0 = time.perf_counter()
        check_events(events)
        device = resolve_device(cfg.device)
        use_all_cores(device)
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)

        tokenizer = EventTokenizer(cfg.tokenizer).fit(events)
        tok = tokenizer.transform(events)
        targets = self._label_targets(tok, labels) if labels is not None and len(labels) else None  # checked early
        enc_cfg = EventEncoderConfig(
            field_vocab_sizes=tokenizer.vocab_sizes, head_fields=list(HEAD_FIELDS),
            query_buckets=cfg.tokenizer.n_query_buckets, query_slots=cfg.tokenizer.query_slots,
            signal_widths={g: 2 * len(cols) for g, cols in tokenizer.signal_groups.items()},
            d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads, mlp_ratio=cfg.mlp_ratio,
            max_events=cfg.max_events, dropout=cfg.dropout, risk_pooling=cfg.risk_pooling,
        )
        model = EventEncoder(enc_cfg).to(device)
        model.set_priors(field_counts(tok, {f: enc_cfg.field_vocab_sizes[f] for f in HEAD_FIELDS}))
        with torch.no_grad():
            for group, values in tok.signals.items():   # the attribution baseline's average event
                getattr(model, f"signal_mean_{group}").copy_(torch.from_numpy(values.mean(0)))
        self.tokenizer_, self.model_, self.device_ = tokenizer, model, device
        self.stack_ = RiskStack(model.head_fields).to(device)
        self.classes_ = np.array([0, 1])

        # ---- 1. self-supervised pretraining on every user's most recent events
        users = rng.permutation(tok.n_users)
        n_val = int(round(cfg.val_frac * tok.n_users)) if tok.n_users >= 10 else 0
        val_users, train_users = np.sort(users[:n_val]), np.sort(users[n_val:])
        info: dict = {"n_users": int(tok.n_users), "n_events": int(len(tok.ts)), "device": str(device)}
        info["pretrain"] = pretrain(
            model, tok,
            recent_windows(tok, train_users, self.max_events), recent_windows(tok, val_users, self.max_events),
            cfg.train_config(cfg.pretrain_epochs, progress), device,
        )

        # ---- 2. labels: fine-tune + stack + Platt, or surprise alone
        self.n_labels_ = 0 if targets is None else int(len(targets[0]))
        per_user = None
        if targets is not None:
            per_user = pd.Series(targets[2]).groupby(targets[0]).max()
        n_pos = 0 if per_user is None else int((per_user == 1).sum())
        n_neg = 0 if per_user is None else int((per_user == 0).sum())
        if n_pos >= max(2, cfg.min_positives) and n_neg >= 2:
            self._fit_supervised(tok, targets, per_user, info, progress)
        else:
            self._fit_surprise(tok, info, targets if n_pos and n_neg else None)
        info["seconds"] = time.perf_counter() - t0
        self.fit_info_ = info
        return self

    def _label_targets(self, tok: TokenizedEvents, labels: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user index, local position, label) per label row; latest row wins per (user, position)."""
        if not isinstance(labels, pd.DataFrame):
            raise ValueError(f"labels must be a pandas DataFrame, got {type(labels).__name__}")
        missing = [c for c in ("user_id", "label") if c not in labels.columns]
        if missing:
            raise ValueError(f"labels frame lacks required column(s) {missing}")
        y = label_values(labels["label"], "labels.label")
        users, positions = self._positions(tok, labels)
        frame = pd.DataFrame({"u": users, "p": positions, "y": y}).drop_duplicates(["u", "p"], keep="last")
        return frame["u"].to_numpy(), frame["p"].to_numpy(), frame["y"].to_numpy()

    def _fit_supervised(self, tok, targets, per_user: pd.Series, info: dict, progress: bool) -> None:
        cfg, model, device = self.config, self.model_, self.device_
        users, positions, y = targets
        val_u = _stratified_holdout(per_user, cfg.label_val_frac, cfg.seed)
        in_val = np.isin(users, val_u)
        train_w = target_windows(tok, users[~in_val], positions[~in_val], self.max_events, y[~in_val])
        val_w = target_windows(tok, users[in_val], positions[in_val], self.max_events, y[in_val])
        n_pos = float(y[~in_val].sum())
        pos_weight = float(np.clip((len(y[~in_val]) - n_pos) / max(n_pos, 1.0), 1.0, 10.0))
        with torch.no_grad():  # start the head at the base rate
            model.risk_head.bias.fill_(math.log(max(n_pos, 1.0) / max(len(y[~in_val]) - n_pos, 1.0)))
        info["finetune"] = finetune(
            model, tok, train_w, val_w, cfg.train_config(cfg.finetune_epochs, progress), device, pos_weight
        )

        # stacker on held-out features, then Platt on its cross-validated outputs
        info["reference"] = self._fit_reference(tok)
        X, yv = self._window_features(tok, val_w)
        w, b = fit_stacker(X, yv)
        self.stack_.set_linear(w, b)
        self.mode_ = "supervised"
        self.calibrator_, platt = cross_validated_platt(X, yv, cfg.seed)
        info.update(
            mode="supervised", n_labels=self.n_labels_, n_train_targets=int((~in_val).sum()),
            n_val_targets=int(in_val.sum()), pos_weight=pos_weight, platt=platt,
            stacker_weights=dict(zip(FEATURES, map(float, w))),
        )
        z_val = X @ w + b
        if 0 < yv.sum() < len(yv):
            info["val_stacked_auprc"] = float(average_precision_score(yv, z_val))
            info["val_stacked_auroc"] = float(roc_auc_score(yv, z_val))

    def _fit_reference(self, tok: TokenizedEvents) -> dict:
        """Typicality reference: mean / std over users (as of their last event) of per-field mean surprise."""
        windows = target_windows(tok, np.arange(tok.n_users), tok.lengths - 1, self.max_events)
        rows, counts = [], []
        for b in self._run(tok, windows):
            real = b.inputs["event_type"] != 0
            means = self.stack_.field_means(b.surprise, real, prior_events=0.0)  # (B, T, F) raw means
            for r, w in enumerate(b.windows):
                rows.append(means[r, windows.target_offset[w]])
                counts.append(windows.target_offset[w] + 1.0)
        raw = torch.cat(rows).double()  # (n_users, F)
        n = torch.from_numpy(np.concatenate(counts)).double()[:, None]  # (n_users, 1) events in window
        self.stack_.set_reference(raw, n)
        return {"n_users": int(len(means)), "field_mean": dict(zip(self.stack_.fields, self.stack_.field_mean.tolist()))}

    def _fit_surprise(self, tok: TokenizedEvents, info: dict, targets=None) -> None:
        """Surprise mode: risk logit = standardised typicality; proba = its empirical CDF over the
        users, or, with a few labels of both classes (`targets`), a Platt fit on them."""
        info["reference"] = self._fit_reference(tok)
        last = np.arange(tok.n_users)
        windows = target_windows(tok, last, tok.lengths - 1, self.max_events)
        X, _ = self._window_features(tok, windows)
        stat = X[:, FEATURES.index(ZERO_LABEL_FEATURE)]
        w, mu, sd = typicality_weights(stat)
        self.stack_.set_linear(w, -mu / sd)
        self.mode_ = "surprise"
        self.calibrator_ = ecdf_calibrator((stat - mu) / sd)
        info.update(mode="surprise", n_labels=self.n_labels_, zero_label_feature=ZERO_LABEL_FEATURE, calibration="ecdf")
        if targets is not None:  # too few positives to fine-tune on: calibrate the ranking instead
            users, positions, y = targets
            X, y = self._window_features(tok, target_windows(tok, users, positions, self.max_events, y))
            z = X @ w - mu / sd
            fitted = fit_platt(z, y)
            if fitted is not None:
                self.calibrator_ = platt_calibrator(*fitted)
                info.update(calibration="platt on the labels", label_auroc=float(roc_auc_score(y, z)))

    # ================================================================== scoring internals
    def _check_fitted(self) -> None:
        if not hasattr(self, "fit_info_"):  # set last by fit (and by from_pretrained)
            raise NotFittedError("this Scorer is not fitted yet: call fit(events, labels) or Scorer.from_pretrained(path)")

    def _run(self, tok: TokenizedEvents, windows: Windows, progress: bool = False):
        """Score windows in length-bucketed batches; yields _Batch (no gradients)."""
        model, device = self.model_, self.device_
        model.eval()
        batches = length_batches(windows.stop - windows.start, self.config.score_batch_size, None)
        for batch in tqdm(batches, desc="scoring", disable=not progress, leave=False):
            inputs = collate(tok, windows.start[batch], windows.stop[batch], device)
            with torch.inference_mode():
                with autocast(device):
                    out = model(inputs)
                surprise = model.field_surprise(inputs, out)  # float32 from here on
                head = out.risk_logits.float()
                feats = self.stack_.features(head, surprise, inputs["event_type"] != 0)
                logit = feats @ self.stack_.weight + self.stack_.bias
            yield _Batch(batch, inputs, out.last_hidden_state, head, surprise, feats, logit)

    def _window_features(self, tok: TokenizedEvents, windows: Windows) -> tuple[np.ndarray, np.ndarray]:
        """Stacker features (n_targets, F) and labels at every target of the windows."""
        X, y = [], []
        for b in self._run(tok, windows):
            for r, w in enumerate(b.windows):
                X.append(b.features[r, windows.target_offset[w]].float().cpu().numpy())
                y.append(windows.target_label[w])
        return np.concatenate(X).astype(np.float64), np.concatenate(y).astype(np.int64)

    def _positions(self, tok: TokenizedEvents, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(user index, local position of the last event with ts <= as_of) per row of `rows`."""
        users = pd.Index(tok.user_ids).get_indexer(rows["user_id"])
        if (users < 0).any():
            unknown = rows["user_id"][users < 0].unique()[:5].tolist()
            raise ValueError(f"user_id(s) {unknown} have no events in the events frame")
        positions = tok.lengths[users] - 1
        if "as_of" in rows.columns:
            as_of = pd.to_datetime(rows["as_of"])
            given = as_of.notna().to_numpy()
            if given.any():
                ts = naive_utc_ns(as_of[given]).astype(np.int64)
                u = users[given]
                pos = np.empty(len(u), dtype=np.int64)
                all_ts = tok.ts.astype(np.int64)
                order = np.argsort(u, kind="stable")
                bounds = np.searchsorted(u[order], np.arange(tok.n_users + 1))
                for uid in np.unique(u):
                    idx = order[bounds[uid] : bounds[uid + 1]]
                    lo, hi = tok.offsets[uid], tok.offsets[uid + 1]
                    pos[idx] = np.searchsorted(all_ts[lo:hi], ts[idx], side="right") - 1
                if (pos < 0).any():
                    bad = rows.loc[given].iloc[np.flatnonzero(pos < 0)[:5]]
                    raise ValueError(
                        f"no event at or before as_of for user_id(s) {bad['user_id'].tolist()} "
                        f"(as_of {bad['as_of'].astype(str).tolist()})"
                    )
                positions = positions.copy()
                positions[given] = pos
        return users, positions

    def _logits_at(self, events: pd.DataFrame, at: pd.DataFrame | None) -> np.ndarray:
        """Final pre-Platt logit per query row (or per user, sorted, when at is None)."""
        self._check_fitted()
        tok = self.tokenizer_.transform(events)
        if at is None:
            users, positions = np.arange(tok.n_users), tok.lengths - 1
        else:
            if not isinstance(at, pd.DataFrame) or "user_id" not in at.columns:
                raise ValueError("at must be a DataFrame with a user_id column (and optionally as_of)")
            users, positions = self._positions(tok, at)
        return self._logits_for(tok, users, positions)

    def _logits_for(self, tok: TokenizedEvents, users: np.ndarray, positions: np.ndarray, progress: bool = False) -> np.ndarray:
        windows = target_windows(tok, users, positions, self.max_events)
        out = np.empty(len(users), dtype=np.float64)
        for b in self._run(tok, windows, progress):
            logit = b.logit.float().cpu().numpy()
            for r, w in enumerate(b.windows):
                out[windows.target_index[w]] = logit[r, windows.target_offset[w]]
        return out

    def _calibrated_logit(self, z: np.ndarray) -> np.ndarray:
        return calibrated_logit(self.calibrator_, z)

    def _proba(self, z: np.ndarray) -> np.ndarray:
        return calibrated_proba(self.calibrator_, z)

    # ================================================================== public scoring API
    def predict_proba(self, events: pd.DataFrame, at: pd.DataFrame | None = None) -> np.ndarray:
        """(n, 2): column 1 = P(fraud) as of each `at` row (user_id, as_of) or each user's last event.

        at=None: one row per user in sorted(unique user_id) order. as_of NaT or no as_of column:
        the user's last event. ValueError for a user without events (at or before as_of).
        """
        p = self._proba(self._logits_at(events, at))
        return np.stack([1.0 - p, p], axis=1)

    def decision_function(self, events: pd.DataFrame, at: pd.DataFrame | None = None) -> np.ndarray:
        """(n,) calibrated risk logit (zero-label mode: standardised surprise); monotone with proba."""
        return self._calibrated_logit(self._logits_at(events, at))

    def score_users(self, events: pd.DataFrame, *, progress: bool = False) -> pd.DataFrame:
        """One row per user (sorted): user_id, score, head_logit, surprise, n_events, as_of (last ts).

        surprise = mean per-event surprise (nats) over the context window of the last event.
        """
        self._check_fitted()
        tok = self.tokenizer_.transform(events)
        users, positions = np.arange(tok.n_users), tok.lengths - 1
        windows = target_windows(tok, users, positions, self.max_events)
        logit = np.empty(tok.n_users)
        head = np.empty(tok.n_users)
        surprise = np.empty(tok.n_users)
        j = FEATURES.index("surprise_mean")
        for b in self._run(tok, windows, progress):
            for r, w in enumerate(b.windows):
                u, off = windows.target_index[w], windows.target_offset[w]
                logit[u] = b.logit[r, off].float().cpu().numpy()
                head[u] = b.head_logit[r, off].float().cpu().numpy()
                surprise[u] = b.features[r, off, j].float().cpu().numpy()
        return pd.DataFrame({
            "user_id": tok.user_ids,
            "score": self._proba(logit),
            "head_logit": head,
            "surprise": surprise,
            "n_events": tok.lengths.astype(np.int64),
            "as_of": tok.ts[tok.offsets[1:] - 1],
        })

    def score_history(self, timeline: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame:
        """ONE user's events + risk (as of each event, in [0, 1]), surprise and surprise_<field>.

        Rows come back in the input order with the input index. surprise (nats) of an event is
        -log p(event | earlier events in its context window); the first event is scored under the
        training frequencies of its field values.
        history: the user's earlier events (see EventTokenizer.transform). They set the first-time
        flags and give every event its full context window, so each risk equals what
        predict_proba / score_users give as of that event on the whole timeline.
        """
        self._check_fitted()
        check_events(timeline)
        if timeline["user_id"].nunique() != 1:
            raise ValueError(f"score_history takes one user's events, got {timeline['user_id'].nunique()} users")
        n = len(timeline)
        history = checked_history(timeline, history)
        n_hist = len(history)
        tok = self.tokenizer_.transform(pd.concat([history, timeline], ignore_index=True) if n_hist else timeline)
        positions = np.arange(n_hist, n_hist + n)  # history sorts first (ties included)
        windows = target_windows(tok, np.zeros(n, dtype=np.int64), positions, self.max_events)
        logit = np.empty(n)
        head_fields = self.model_.head_fields  # a model saved before a field existed predicts fewer
        fields = {f: np.empty(n) for f in head_fields}
        for b in self._run(tok, windows):
            for r, w in enumerate(b.windows):
                p, off = windows.target_index[w], windows.target_offset[w]
                logit[p] = b.logit[r, off].float().cpu().numpy()
                for f in head_fields:
                    fields[f][p] = b.surprise[f][r, off].float().cpu().numpy()
        rows = tok.row[n_hist:] - n_hist

        def in_input_order(values: np.ndarray) -> np.ndarray:  # token n_hist + i is timeline row rows[i]
            out = np.empty(n)
            out[rows] = values
            return out

        out = timeline.copy()
        out["risk"] = in_input_order(self._proba(logit))
        out["surprise"] = in_input_order(np.sum([fields[f] for f in head_fields], axis=0))
        for f in head_fields:
            out[f"surprise_{f}"] = in_input_order(fields[f])
        return out

    def embed(self, events: pd.DataFrame) -> tuple[list[str], np.ndarray]:
        """Per-user embedding (n_users, d_model): mean final hidden state over the last event's window."""
        self._check_fitted()
        tok = self.tokenizer_.transform(events)
        users = np.arange(tok.n_users)
        windows = target_windows(tok, users, tok.lengths - 1, self.max_events)
        out = np.empty((tok.n_users, self.config.d_model), dtype=np.float32)
        for b in self._run(tok, windows):
            real = (b.inputs["event_type"] != 0).float()  # (B, T)
            mean = (b.hidden.float() * real[..., None]).sum(1) / real.sum(1, keepdim=True).clamp(min=1)
            out[np.concatenate([windows.target_index[w] for w in b.windows])] = mean.cpu().numpy()
        return [str(u) for u in tok.user_ids], out

    # ================================================================== explanation hooks
    def encode(self, timeline: pd.DataFrame, history: pd.DataFrame | None = None) -> dict[str, torch.Tensor]:
        """One user's timeline -> model inputs (batch of 1) on the model's device.

        The window is the one that scores the last event (its context window, at most max_events
        events, all from `timeline`), so `risk_logits(encode(t))[0, -1]` is that user's pre-Platt
        logit as of the last event. history: the user's earlier events, for the first-time flags
        and the first gap (see EventTokenizer.transform); with the latest max_events events as
        the timeline and the rest as history, the logit equals the whole timeline's.
        Keys: each id field (1, T), "amount_value" (1, T) float, "query" (1, T, K).
        """
        self._check_fitted()
        check_events(timeline)
        if timeline["user_id"].nunique() != 1:
            raise ValueError(f"encode takes one user's events, got {timeline['user_id'].nunique()} users")
        tok = self.tokenizer_.transform(timeline, history)
        n = len(tok.ts)
        start = int(context_start(np.array([n - 1]), self.max_events)[0])
        return collate(tok, np.array([start]), np.array([n]), self.device_)

    def risk_logits(self, inputs: dict[str, torch.Tensor], attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) final pre-Platt risk logit at every position; differentiable end to end.

        Right-padded inputs need no mask; left-padded ones need attention_mask (1 = real event).
        """
        self._check_fitted()
        out = self.model_(inputs, attention_mask=attention_mask)
        real = inputs["event_type"] != 0
        if attention_mask is not None:
            real = real & attention_mask.bool()
        return self.stack_(out.risk_logits.float(), self.model_.field_surprise(inputs, out), real)

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        """Map pre-Platt logits (from risk_logits) to the scores predict_proba reports."""
        self._check_fitted()
        return self._proba(np.asarray(logits, dtype=np.float64))

    # ================================================================== persistence
    def save_pretrained(self, path: str | Path) -> None:
        """One directory per model version: config.json, model.safetensors, tokenizer.json, scorer.json."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model_.save_pretrained(path)
        self.tokenizer_.save(path)
        state = {
            "config": asdict(self.config),
            "mode": self.mode_,
            "stack": self.stack_.to_dict(),
            "calibrator": self.calibrator_,
            "n_labels": self.n_labels_,
            "fit_info": self.fit_info_,
        }
        (path / "scorer.json").write_text(json.dumps(state, indent=1, default=float))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None) -> "Scorer":
        """Load a directory written by save_pretrained (device: override the saved config's)."""
        path = Path(path)
        file = path / "scorer.json"
        if not file.is_file():
            raise ValueError(f"{str(path)!r} is not a saved Scorer (no scorer.json)")
        state = json.loads(file.read_text())
        config = ScorerConfig(**state["config"])
        scorer = cls(config)
        scorer.device_ = resolve_device(device or config.device)
        scorer.tokenizer_ = EventTokenizer.load(path)
        scorer.model_ = EventEncoder.from_pretrained(path).to(scorer.device_).eval()
        scorer.stack_ = RiskStack.from_dict(state["stack"]).to(scorer.device_)
        scorer.mode_ = state["mode"]
        scorer.calibrator_ = state["calibrator"]
        scorer.n_labels_ = state["n_labels"]
        scorer.fit_info_ = state["fit_info"]
        scorer.classes_ = np.array([0, 1])
        return scorer
