"""Scorer: the contract others build on (fit/predict_proba/decision_function/score_users/...),
score direction, causality, padding and batch invariance, long timelines, save/load, determinism.

Uses a tiny model and a small hand-made data set with a planted, learnable fraud pattern (a login
from a new device in another country, a password change and large night-time purchases).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from models.scorer import FEATURES, Scorer, ScorerConfig
from models.tokenizer import HEAD_FIELDS

# probabilities from differently composed batches agree to float32 noise (atol 1e-5)
TINY = dict(
    d_model=16, n_layers=1, n_heads=2, max_events=24, pretrain_epochs=3, finetune_epochs=6,
    batch_size=16, lr=3e-3, patience=3, dropout=0.0, device="cpu", min_positives=2,
)


def make_events(n_users: int = 80, n_fraud: int = 10, seed: int = 0, max_len: int = 30) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = []
    fraud = set(range(n_users - n_fraud, n_users))
    for u in range(n_users):
        uid = f"u{u:03d}"
        t = pd.Timestamp("2024-03-01") + pd.Timedelta(hours=int(rng.integers(0, 48)))
        n = int(rng.integers(8, max_len))
        for i in range(n):
            t += pd.Timedelta(minutes=float(rng.exponential(90)))
            kind = rng.choice(["login", "view", "search", "cart", "purchase"], p=[0.1, 0.5, 0.2, 0.1, 0.1])
            amount = float(np.round(rng.lognormal(3, 0.4), 2)) if kind == "purchase" else None
            rows.append((uid, t, kind, f"c{rng.integers(0, 6)}", amount, "red shoes" if kind == "search" else None,
                         f"d{u}", "US", "ok"))
        if u in fraud:
            t = t.normalize() + pd.Timedelta(days=1, hours=3)
            rows.append((uid, t, "login", None, None, None, f"x{u}", "RU", "ok"))
            rows.append((uid, t + pd.Timedelta(seconds=40), "password_change", None, None, None, f"x{u}", "RU", "ok"))
            for k in range(3):
                amount = float(np.round(rng.uniform(900, 2000), 2))
                rows.append((uid, t + pd.Timedelta(minutes=2 + k), "purchase", "c9", amount, None, f"x{u}", "RU",
                             "ok" if k else "declined"))
    cols = ["user_id", "ts", "event_type", "category", "amount", "query", "device_id", "country", "status"]
    events = pd.DataFrame(rows, columns=cols)
    labels = pd.DataFrame({
        "user_id": [f"u{u:03d}" for u in range(n_users)],
        "label": [int(u in fraud) for u in range(n_users)],
    })
    return events, labels


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_events()


@pytest.fixture(scope="module")
def scorer(data) -> Scorer:
    events, labels = data
    return Scorer(ScorerConfig(**TINY)).fit(events, labels, progress=False)


@pytest.fixture(scope="module")
def zero_label_scorer(data) -> Scorer:
    events, _ = data
    return Scorer(ScorerConfig(**TINY)).fit(events, progress=False)


def test_not_fitted_raises(data):
    events, _ = data
    s = Scorer(ScorerConfig(**TINY))
    for call in (lambda: s.predict_proba(events), lambda: s.decision_function(events),
                 lambda: s.score_users(events), lambda: s.embed(events), lambda: s.save_pretrained("/tmp/x")):
        with pytest.raises(NotFittedError):
            call()


def test_max_events_is_the_configs_and_the_encoders(scorer):
    assert Scorer(ScorerConfig(**TINY)).max_events == TINY["max_events"]  # known before fit
    assert scorer.max_events == scorer.config.max_events == scorer.model_.config.max_events
    with pytest.raises(AttributeError):
        scorer.max_events = 3  # read only


def test_predict_proba_shape_order_and_direction(scorer, data):
    events, labels = data
    assert scorer.mode_ == "supervised" and scorer.n_labels_ == len(labels)
    proba = scorer.predict_proba(events)
    assert proba.shape == (80, 2)
    assert np.allclose(proba.sum(1), 1.0) and (proba >= 0).all() and (proba <= 1).all()
    # rows follow sorted(unique user_id); the planted fraud users must rank higher
    y = labels.set_index("user_id").loc[sorted(events["user_id"].unique()), "label"].to_numpy()
    assert roc_auc_score(y, proba[:, 1]) > 0.9
    assert proba[y == 1, 1].mean() > proba[y == 0, 1].mean() + 0.3
    z = scorer.decision_function(events)
    order = np.argsort(z)
    assert (np.diff(proba[order, 1]) >= -1e-12).all()  # monotone with predict_proba
    info = scorer.fit_info_
    assert info["pretrain"]["epochs"] >= 1 and info["finetune"]["epochs"] >= 1 and info["seconds"] > 0


def test_zero_labels_surprise_ranks(zero_label_scorer, data):
    events, labels = data
    s = zero_label_scorer
    assert s.mode_ == "surprise" and s.n_labels_ == 0
    users = s.score_users(events)
    y = labels.set_index("user_id").loc[users["user_id"], "label"].to_numpy()
    # the zero-label score is typicality (per-field surprise profile vs the population): on this
    # toy set it ranks the 10 planted users well above chance (0.79 at the time of writing)
    assert roc_auc_score(y, users["score"]) > 0.7
    assert users["score"].between(0, 1).all()
    order = np.argsort(s.decision_function(events))
    assert (np.diff(users["score"].to_numpy()[order]) >= 0).all()  # the ECDF is monotone in the logit
    # one-class labels also fall back to surprise
    one_class = Scorer(ScorerConfig(**{**TINY, "pretrain_epochs": 1})).fit(
        events, labels[labels.label == 0], progress=False)
    assert one_class.mode_ == "surprise" and one_class.n_labels_ == 70


def test_few_positives_rank_by_surprise_and_calibrate_with_labels(zero_label_scorer, data):
    events, labels = data
    few = Scorer(ScorerConfig(**{**TINY, "min_positives": 20})).fit(events, labels, progress=False)
    assert few.mode_ == "surprise" and few.calibrator_["kind"] == "platt"  # 10 positives < 20
    # same seed, same pretraining: the ranking is the zero-label one, now as a probability
    assert np.allclose(few.risk_logits(few.encode(events[events.user_id == "u075"])).detach().numpy(),
                       zero_label_scorer.risk_logits(zero_label_scorer.encode(events[events.user_id == "u075"])).detach().numpy(),
                       atol=1e-5)
    z = few.decision_function(events)
    proba = few.predict_proba(events)[:, 1]
    assert (np.diff(proba[np.argsort(z)]) >= 0).all()
    y = labels.set_index("user_id").loc[sorted(events["user_id"].unique()), "label"].to_numpy()
    assert abs(proba.mean() - y.mean()) < 0.1  # calibrated to the label rate, not a rank


def test_score_users_columns(scorer, data):
    events, _ = data
    users = scorer.score_users(events)
    assert list(users.columns) == ["user_id", "score", "head_logit", "surprise", "n_events", "as_of"]
    assert list(users["user_id"]) == sorted(events["user_id"].unique())
    assert np.allclose(users["score"], scorer.predict_proba(events)[:, 1])
    counts = events.groupby("user_id").size()
    assert (users.set_index("user_id")["n_events"] == counts).all()
    assert (users.set_index("user_id")["as_of"] == events.groupby("user_id")["ts"].max()).all()
    assert (users["surprise"] > 0).all()


def test_batch_composition_does_not_change_a_score(scorer, data):
    events, _ = data
    everyone = scorer.decision_function(events)
    users = sorted(events["user_id"].unique())
    alone = scorer.decision_function(events[events.user_id == users[70]])
    pair = scorer.decision_function(events[events.user_id.isin([users[3], users[70]])])
    assert np.allclose(alone[0], everyone[70], atol=1e-5)
    assert np.allclose(pair, everyone[[3, 70]], atol=1e-5)
    shuffled = events.sample(frac=1.0, random_state=1)
    assert np.allclose(scorer.decision_function(shuffled), everyone, atol=1e-5)


def test_causal_later_events_never_change_earlier_risk(scorer, data):
    events, _ = data
    one = events[events.user_id == "u075"].sort_values("ts")
    cut = one["ts"].iloc[len(one) // 2]
    at = pd.DataFrame({"user_id": ["u075"], "as_of": [cut]})
    full = scorer.decision_function(events, at)
    truncated = scorer.decision_function(events[(events.user_id != "u075") | (events.ts <= cut)], at)
    assert np.allclose(full, truncated, atol=1e-5)
    history = scorer.score_history(one)
    assert np.isclose(history["risk"].iloc[len(one) // 2], scorer.predict_proba(events, at)[0, 1], atol=1e-5)


def test_at_queries_many_per_user_and_errors(scorer, data):
    events, _ = data
    one = events[events.user_id == "u010"].sort_values("ts").reset_index(drop=True)
    at = pd.DataFrame({"user_id": ["u010"] * len(one) + ["u011"], "as_of": list(one["ts"]) + [pd.NaT]})
    proba = scorer.predict_proba(events, at)[:, 1]
    history = scorer.score_history(one)
    assert np.allclose(proba[:-1], history["risk"], atol=1e-5)
    assert np.isclose(proba[-1], scorer.predict_proba(events)[11, 1], atol=1e-5)  # NaT = last event
    # as_of between events -> the last event at or before it
    mid = pd.DataFrame({"user_id": ["u010"], "as_of": [one["ts"].iloc[3] + pd.Timedelta(seconds=1)]})
    assert np.isclose(scorer.predict_proba(events, mid)[0, 1], history["risk"].iloc[3], atol=1e-5)
    with pytest.raises(ValueError, match="u010"):
        scorer.predict_proba(events, pd.DataFrame({"user_id": ["u010"], "as_of": [one["ts"].iloc[0] - pd.Timedelta(days=1)]}))
    with pytest.raises(ValueError, match="nobody"):
        scorer.predict_proba(events, pd.DataFrame({"user_id": ["nobody"]}))


def test_score_history_columns(scorer, data):
    events, _ = data
    one = events[events.user_id == "u079"].sort_values("ts")
    history = scorer.score_history(one)
    assert list(history.index) == list(one.index)
    assert history["risk"].between(0, 1).all()
    parts = history[[f"surprise_{f}" for f in HEAD_FIELDS]].sum(axis=1)
    assert np.allclose(parts, history["surprise"], atol=1e-4)
    assert (history["surprise"] >= 0).all() and history["surprise"].iloc[0] > 0
    # the planted takeover (login from a new device abroad) is surprising
    takeover = history[(history.device_id == "x79") & (history.event_type == "login")].index[0]
    assert history.loc[takeover, "surprise_new_device"] > history["surprise_new_device"].median()
    with pytest.raises(ValueError, match="one user"):
        scorer.score_history(events)


def test_long_timelines_use_context_windows(data):
    events, labels = make_events(n_users=12, n_fraud=4, seed=3, max_len=70)
    s = Scorer(ScorerConfig(**{**TINY, "max_events": 16, "pretrain_epochs": 1, "finetune_epochs": 1})).fit(
        events, labels, progress=False)
    one = events[events.user_id == "u011"].sort_values("ts").reset_index(drop=True)
    assert len(one) > 40
    history = s.score_history(one)
    at = pd.DataFrame({"user_id": "u011", "as_of": one["ts"]})
    assert np.allclose(s.predict_proba(events, at)[:, 1], history["risk"], atol=1e-5)
    # encode + risk_logits (the explanation path) reproduce the score as of the last event
    inputs = s.encode(one)
    assert inputs["event_type"].shape[1] == 16  # the last event sees the max_events events ending at it
    last = s.risk_logits(inputs)[0, -1].item()
    assert np.isclose(s.calibrate(np.array([last]))[0], history["risk"].iloc[-1], atol=1e-4)  # float32 noise

    # the latest max_events events with the rest as history (what the case page reads) score as
    # the whole timeline does, at every event; alone, the window's first events look new
    window, earlier = one.iloc[-16:], one.iloc[:-16]
    scored = s.score_history(window, earlier)
    assert list(scored.index) == list(window.index)
    assert np.allclose(scored["risk"], history["risk"].iloc[-16:], atol=1e-5)
    assert np.allclose(scored["surprise"], history["surprise"].iloc[-16:], atol=1e-4)
    last = s.risk_logits(s.encode(window, earlier))[0, -1].item()
    assert np.isclose(s.calibrate(np.array([last]))[0], history["risk"].iloc[-1], atol=1e-4)
    alone = s.risk_logits(s.encode(window))[0, -1].item()
    assert not np.isclose(alone, last, atol=1e-4)  # the novelty flags and first gap did change the input
    with pytest.raises(ValueError, match="expected history to end before the events start"):
        s.score_history(earlier, window)


def test_risk_logits_is_differentiable(scorer, data):
    events, _ = data
    inputs = scorer.encode(events[events.user_id == "u078"])
    emb = scorer.model_.embed.fields["event_type"]
    grads = {}
    handle = emb.register_forward_hook(lambda m, a, out: out.register_hook(lambda g: grads.setdefault("g", g)) and None)
    try:
        logits = scorer.risk_logits(inputs)
        logits[0, -1].backward()
    finally:
        handle.remove()
    T = inputs["event_type"].shape[1]
    assert logits.shape == (1, T)
    assert grads["g"].shape == (1, T, 16) and grads["g"].abs().sum() > 0
    z = scorer.decision_function(events[events.user_id == "u078"])
    calibrated = scorer.calibrator_["slope"] * logits[0, -1].item() + scorer.calibrator_["intercept"]
    assert np.isclose(calibrated, z[0], atol=1e-5)


def test_embed(scorer, data):
    events, _ = data
    ids, vectors = scorer.embed(events)
    assert ids == sorted(events["user_id"].unique()) and vectors.shape == (80, 16)
    assert np.isfinite(vectors).all()


def test_save_load_gives_identical_scores(scorer, data, tmp_path):
    events, _ = data
    scorer.save_pretrained(tmp_path / "v1")
    assert {"config.json", "model.safetensors", "tokenizer.json", "scorer.json"} <= {p.name for p in (tmp_path / "v1").iterdir()}
    loaded = Scorer.from_pretrained(tmp_path / "v1")
    assert np.allclose(loaded.predict_proba(events), scorer.predict_proba(events), atol=1e-6, rtol=0)
    assert loaded.fit_info_["mode"] == "supervised" and loaded.n_labels_ == scorer.n_labels_
    with pytest.raises(ValueError, match="scorer.json"):
        Scorer.from_pretrained(tmp_path / "missing")


def test_same_seed_same_model(data):
    events, labels = make_events(n_users=30, n_fraud=8, seed=5)
    cfg = ScorerConfig(**{**TINY, "pretrain_epochs": 1, "finetune_epochs": 1})
    a = Scorer(cfg).fit(events, labels, progress=False)
    b = Scorer(cfg).fit(events, labels, progress=False)
    assert np.array_equal(a.decision_function(events), b.decision_function(events))
    for (n, p), (_, q) in zip(a.model_.state_dict().items(), b.model_.state_dict().items()):
        assert torch.equal(p, q), n


def test_bad_inputs(scorer, data):
    events, labels = data
    with pytest.raises(ValueError, match=r"labels\.label has value\(s\) \[2\]: expected 1/0/true/false/fraud/legit"):
        Scorer(ScorerConfig(**TINY)).fit(events, labels.assign(label=2), progress=False)
    with pytest.raises(ValueError, match="ghost"):
        Scorer(ScorerConfig(**TINY)).fit(events, pd.DataFrame({"user_id": ["ghost"], "label": [1]}), progress=False)
    with pytest.raises(ValueError, match="user_id"):
        scorer.predict_proba(events.drop(columns="user_id"))
    with pytest.raises(ValueError, match="ScorerConfig.device='tpu': expected one of auto, cpu, cuda"):
        ScorerConfig(device="tpu")
    with pytest.raises(ValueError, match="n_heads"):
        ScorerConfig(d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="risk_pooling"):
        ScorerConfig(risk_pooling="mean")
    assert len(FEATURES) == 6


def test_calibrators_and_the_stack_state_round_trip(scorer, zero_label_scorer):
    """models/calibration.py: what scorer.json stores for the stacker loads back unchanged, and the
    calibrators map logits the way predict_proba reports them."""
    from models.calibration import RiskStack, calibrated_logit, calibrated_proba, ecdf_calibrator, platt_calibrator

    state = scorer.stack_.to_dict()
    assert state["features"] == list(FEATURES) and state["fields"] == scorer.stack_.fields
    again = RiskStack.from_dict(state)
    for name in ("weight", "bias", "field_mean", "field_std"):
        assert torch.equal(getattr(again, name), getattr(scorer.stack_, name).cpu()), name
    z = np.array([-2.0, 0.0, 3.0])
    platt = platt_calibrator(2.0, -1.0)
    assert np.allclose(calibrated_logit(platt, z), 2.0 * z - 1.0)
    assert np.allclose(calibrated_proba(platt, z), 1.0 / (1.0 + np.exp(-(2.0 * z - 1.0))))
    ecdf = ecdf_calibrator(np.arange(11.0))
    assert ecdf["kind"] == "ecdf" and np.allclose(calibrated_proba(ecdf, np.array([0.0, 5.0, 10.0, 99.0])),
                                                  [0.0, 0.5, 1.0, 1.0])
    assert np.array_equal(calibrated_logit(ecdf, z), z)
    assert np.allclose(zero_label_scorer.calibrate(z), calibrated_proba(zero_label_scorer.calibrator_, z))
