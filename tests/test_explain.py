"""Per-event explanations (models/explain.py) on a tiny Scorer trained on synthetic fraud.

The model is trained once per module on a few hundred synthetic users whose fraud users carry
planted card-testing / account-takeover events (ground truth in `attrs`, which the model never
reads).
"""
from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError

from analyst.synthetic import SyntheticConfig, generate
from models.explain import (
    Explanation,
    WhatIf,
    _private_scorer,
    masked_risk,
    attention_rollout,
    explain,
    nearest_cases,
    what_if,
)
from models.scorer import Scorer, ScorerConfig

REPO = Path(__file__).resolve().parents[1]
TINY = dict(d_model=32, n_layers=2, n_heads=2, max_events=128, pretrain_epochs=5, finetune_epochs=8,
            batch_size=32, dropout=0.0, seed=0)
PATTERNS = ("card_testing", "account_takeover")


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate(SyntheticConfig(n_users=400, seed=3, fraud_rate=0.3, patterns=PATTERNS))


@pytest.fixture(scope="module")
def scorer(data) -> Scorer:
    events, labels = data
    return Scorer(ScorerConfig(**TINY)).fit(events, labels, progress=False)


def timeline(events: pd.DataFrame, user: str) -> pd.DataFrame:
    return events[events["user_id"] == user].reset_index(drop=True)


def planted(tl: pd.DataFrame) -> np.ndarray:
    return tl["attrs"].astype("string").str.contains("planted", na=False).to_numpy()


@pytest.fixture(scope="module")
def fraud_cases(data, scorer) -> list[tuple[pd.DataFrame, Explanation]]:
    """Fraud users the model flags (risk >= 0.5) whose planted events are in the scored window."""
    events, labels = data
    out = []
    for user in labels.loc[labels["label"] == 1, "user_id"]:
        tl = timeline(events, user)
        e = explain(scorer, tl, user_id=user, model_version="test")
        if e.risk >= 0.5 and planted(tl)[e.window_start:].any():
            out.append((tl, e))
        if len(out) == 8:
            break
    assert len(out) >= 4, "the tiny model should flag several fraud users"
    return out


# ------------------------------------------------------------------------------------------------
# integrated gradients


def test_attributions_sum_to_logit_minus_baseline_within_delta(fraud_cases) -> None:
    for tl, e in fraud_cases:
        total = e.event_attribution.sum()
        gap = e.logit - e.baseline_logit
        assert total - gap == pytest.approx(e.delta, abs=1e-6)
        assert abs(e.delta) <= max(0.02 * abs(gap), 1e-4) or e.n_steps >= 64
        fields = np.sum(list(e.field_attribution.values()), axis=0)
        np.testing.assert_allclose(fields, e.event_attribution, atol=1e-9)
        # content fields, plus the surprise part of the predicted time fields (gap, hour); the
        # weekday is kept and never predicted, so it has no attribution at all
        assert {"event_type", "query", "gap", "hour"} <= set(e.field_attribution)
        assert "weekday" not in e.field_attribution
        assert np.all(e.event_attribution[: e.window_start] == 0)
        assert e.event_attribution.shape == e.surprise.shape == e.risk_history.shape == (len(tl),)


def test_baseline_is_a_nothing_unusual_reference(scorer, fraud_cases) -> None:
    """Masking every event is the baseline itself (an average event everywhere, each as surprising
    as usual), and against it the planted fraud events of every flagged user push the risk up.
    (Where the baseline scores above the user, the normal events carry the negative part.)"""
    for tl, e in fraud_cases:
        everything = masked_risk(scorer, tl, range(len(tl)))
        assert everything == pytest.approx(float(scorer.calibrate(np.array([e.baseline_logit]))[0]), abs=1e-5)
        assert e.event_attribution[planted(tl)].sum() > 0, e.user_id


def test_logit_and_risk_are_the_scorers(scorer, fraud_cases) -> None:
    tl, e = fraud_cases[0]
    with torch.no_grad():
        logit = float(scorer.risk_logits(scorer.encode(tl))[0, -1])
    assert e.logit == pytest.approx(logit, abs=1e-5)
    assert e.risk == pytest.approx(float(scorer.predict_proba(tl)[0, 1]), abs=1e-5)
    history = scorer.score_history(tl)
    np.testing.assert_allclose(e.risk_history, history["risk"].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(e.surprise, history["surprise"].to_numpy(), atol=1e-4)


def test_a_window_with_its_history_explains_the_whole_timelines_risk(scorer, data) -> None:
    """The case page explains a long user's latest max_events events with the earlier ones as
    history: the explained risk is the queue's (whole-timeline) risk, the arrays cover the window."""
    events, _ = data
    n = scorer.max_events
    counts = events.groupby("user_id").size()
    user = counts[counts > n + 20].index[0]
    tl = timeline(events, user)
    window, earlier = tl.iloc[-n:].reset_index(drop=True), tl.iloc[:-n]
    e = explain(scorer, window, user_id=user, history=earlier, n_steps=8, max_steps=8, top_k=2)
    assert e.risk == pytest.approx(float(scorer.predict_proba(tl)[0, 1]), abs=1e-5)
    assert len(e.event_attribution) == len(e.risk_history) == n
    assert e.risk_history[-1] == pytest.approx(e.risk, abs=1e-5)
    for w in e.what_if:  # what-ifs keep the history too
        assert what_if(scorer, window, w.removed, history=earlier) == pytest.approx(w.risk, abs=1e-5)


def test_private_scorer_has_its_own_model(scorer, fraud_cases) -> None:
    tl, _ = fraud_cases[0]
    private = _private_scorer(scorer)
    assert private.model_ is not scorer.model_ and private.tokenizer_ is scorer.tokenizer_
    assert not private.model_.training
    x = scorer.encode(tl)
    with torch.no_grad():
        np.testing.assert_allclose(private.risk_logits(x).numpy(), scorer.risk_logits(x).numpy(), atol=1e-6)


def test_steps_are_raised_until_delta_is_small(scorer, fraud_cases) -> None:
    for tl, _ in fraud_cases:  # a case whose 2-step integral misses the tolerance
        two = explain(scorer, tl, n_steps=2, max_steps=2, tolerance=0.0)
        assert two.n_steps == 2  # capped
        bound = 1e-4  # tolerance 0: only the absolute floor of the stopping rule is left
        if abs(two.delta) > bound:
            raised = explain(scorer, tl, n_steps=2, max_steps=128, tolerance=0.0)
            assert raised.n_steps in (4, 8, 16, 32, 64, 128)
            assert abs(raised.delta) <= bound or raised.n_steps == 128
            assert abs(raised.delta) < abs(two.delta)
            break
    else:
        pytest.fail("every case met the tolerance with 2 steps: the test needs a harder one")


def test_planted_pattern_carries_most_of_the_attribution(fraud_cases) -> None:
    shares = []
    for tl, e in fraud_cases:
        positive = np.clip(e.event_attribution, 0, None)
        shares.append(positive[planted(tl)].sum() / positive.sum())
    # planted events are a minority of each timeline but carry most of what raises the risk
    assert np.median(shares) > 0.5, shares


def test_removing_the_planted_events_lowers_the_risk(scorer, fraud_cases) -> None:
    lowered = [what_if(scorer, tl, np.flatnonzero(planted(tl))) < e.risk for tl, e in fraud_cases]
    assert np.mean(lowered) >= 0.75, lowered


def test_masking_the_top_attributed_events_lowers_the_risk_more_than_random_ones(scorer, fraud_cases) -> None:
    rng = np.random.default_rng(0)
    for tl, e in fraud_cases:
        assert masked_risk(scorer, tl, []) == pytest.approx(e.risk, abs=1e-5), "masking nothing changes nothing"
        assert masked_risk(scorer, tl, [len(tl) - 1], at=0) == pytest.approx(e.risk_history[0], abs=1e-5), \
            "masking a later event cannot change an earlier risk (causal)"
    top_drops, random_drops = [], []
    for tl, e in fraud_cases:
        top = [i for i in e.top_events if i != e.at][:3]
        pool = np.setdiff1d(np.arange(e.at), top)
        top_drops.append(e.risk - masked_risk(scorer, tl, top))
        random_drops.append(np.mean([e.risk - masked_risk(scorer, tl, rng.choice(pool, len(top), replace=False))
                                     for _ in range(3)]))
    assert np.mean(top_drops) > 2 * max(np.mean(random_drops), 0.0) and np.mean(top_drops) > 0, (top_drops, random_drops)
    with pytest.raises(ValueError, match="out of range"):
        masked_risk(scorer, fraud_cases[0][0], [10_000])


def test_explanation_at_an_earlier_event(scorer, fraud_cases) -> None:
    tl, full = fraud_cases[0]
    at = len(tl) // 2
    e = explain(scorer, tl, at=at)
    assert e.at == at
    assert np.all(e.event_attribution[at + 1:] == 0) and np.all(e.attention_rollout[at + 1:] == 0)
    assert e.risk == pytest.approx(full.risk_history[at], abs=1e-5)
    np.testing.assert_allclose(e.risk_history, full.risk_history, atol=1e-5)
    assert all(max(w.removed) <= at for w in e.what_if)


# ------------------------------------------------------------------------------------------------
# attention, what-if, reasons


def test_attention_rollout_is_causal_and_normalised() -> None:
    rng = np.random.default_rng(0)
    T, H = 6, 3
    layers = []
    for _ in range(2):
        a = np.tril(rng.random((H, T, T)))
        layers.append(a / a.sum(-1, keepdims=True))
    r = attention_rollout(layers)
    np.testing.assert_allclose(r.sum(-1), 1.0)
    assert np.allclose(np.triu(r, 1), 0)
    # one layer, one head of pure self-attention: the identity stays the identity
    assert np.allclose(attention_rollout([np.eye(T)[None]]), np.eye(T))
    with pytest.raises(ValueError, match="shape"):
        attention_rollout([np.ones((2, 3, 4))])


def test_explanation_attention_fields(fraud_cases) -> None:
    tl, e = fraud_cases[0]
    assert e.attention_rollout.sum() == pytest.approx(1.0, abs=1e-5)
    assert e.attention_last.shape[1] == len(tl)
    np.testing.assert_allclose(e.attention_last.sum(1), 1.0, atol=1e-5)


def test_what_if_entries(scorer, fraud_cases) -> None:
    tl, e = fraud_cases[0]
    top = e.top_events[:5]
    assert [w.removed for w in e.what_if[: len(top)]] == [(i,) for i in top]
    assert e.what_if[-1].removed == tuple(sorted(top))
    for w in e.what_if:  # the batched what-if equals the one-at-a-time public function
        assert w.risk == pytest.approx(what_if(scorer, tl, w.removed), abs=1e-5)
    # removing events after `at` changes nothing (causal); nothing left is an error
    at = len(tl) - 5
    assert what_if(scorer, tl, [len(tl) - 1], at=at) == pytest.approx(e.risk_history[at], abs=1e-5)
    with pytest.raises(ValueError, match="leaves no event"):
        what_if(scorer, tl, range(3), at=2)
    with pytest.raises(ValueError, match="out of range"):
        what_if(scorer, tl, [len(tl)])


def test_reasons_are_plain_sentences_from_the_data(fraud_cases) -> None:
    for _, e in fraud_cases:
        assert 2 <= len(e.reasons) <= 5
        assert all(isinstance(r, str) and r.endswith(".") for r in e.reasons)


# ------------------------------------------------------------------------------------------------
# records, threads, errors


def test_to_dict_is_json_and_round_trips(fraud_cases) -> None:
    _, e = fraud_cases[0]
    d = json.loads(json.dumps(e.to_dict()))
    assert {"user_id", "model_version", "at", "risk", "logit", "baseline_logit", "delta", "n_steps",
            "event_attribution", "field_attribution", "surprise", "risk_history", "attention_rollout",
            "attention_last", "what_if", "reasons"} <= set(d)
    back = Explanation.from_dict(d)
    assert back.user_id == e.user_id and back.model_version == "test" and back.at == e.at
    assert back.reasons == e.reasons and back.what_if == e.what_if and back.n_steps == e.n_steps
    for name in ("event_attribution", "surprise", "risk_history", "attention_rollout", "attention_last"):
        np.testing.assert_array_equal(getattr(back, name), getattr(e, name))
    for f, a in e.field_attribution.items():
        np.testing.assert_array_equal(back.field_attribution[f], a)
    with pytest.raises(ValueError, match="lacks"):
        Explanation.from_dict({"user_id": "u"})


def test_non_finite_numbers_become_null() -> None:
    e = Explanation(user_id="u", model_version=None, at=0, risk=float("nan"), logit=0.0,
                    baseline_logit=0.0, delta=0.0, n_steps=2, event_attribution=np.array([np.nan]),
                    field_attribution={}, surprise=np.array([1.0]), risk_history=np.array([0.5]),
                    attention_rollout=np.array([1.0]), attention_last=np.ones((1, 1)),
                    what_if=(WhatIf((0,), 0.1),), reasons=("a.",))
    d = e.to_dict()
    assert d["risk"] is None and d["event_attribution"] == [None]
    json.dumps(d, allow_nan=False)
    assert np.isnan(Explanation.from_dict(d).event_attribution[0])


def test_concurrent_explanations_equal_serial_ones(scorer, fraud_cases) -> None:
    cases = [tl for tl, _ in fraud_cases[:3]]
    serial = [explain(scorer, tl) for tl in cases]
    with ThreadPoolExecutor(max_workers=5) as pool:
        # the scorer keeps scoring from another thread while the explanations run
        scoring = pool.submit(lambda: [scorer.score_history(tl)["risk"].to_numpy() for tl in cases * 2])
        futures = [pool.submit(explain, scorer, tl) for tl in cases * 2]
        concurrent = [f.result() for f in futures]
        scored = scoring.result()
    for s, c in zip(serial * 2, concurrent):
        np.testing.assert_allclose(c.event_attribution, s.event_attribution, atol=1e-6)
        assert c.risk == pytest.approx(s.risk, abs=1e-7) and c.what_if == s.what_if
    for s, risk in zip(serial * 2, scored):
        np.testing.assert_allclose(risk, s.risk_history, atol=1e-5)
    hooked = [m for m in scorer.model_.modules() if m._forward_hooks or m._forward_pre_hooks]
    assert not hooked, "explain must never hook the scorer's own model"


def test_bad_inputs(scorer, data, fraud_cases) -> None:
    events, _ = data
    tl, _ = fraud_cases[0]
    with pytest.raises(ValueError, match="at=999"):
        explain(scorer, tl, at=999)
    with pytest.raises(ValueError, match="sorted"):
        explain(scorer, tl.iloc[::-1])
    with pytest.raises(ValueError, match="one user"):
        explain(scorer, events.iloc[:500])
    with pytest.raises(ValueError, match="empty"):
        explain(scorer, tl.iloc[:0])
    with pytest.raises(NotFittedError):
        explain(Scorer(ScorerConfig(**TINY)), tl)


# ------------------------------------------------------------------------------------------------
# nearest confirmed cases


def test_nearest_cases_cosine_order_labels_and_exclusion() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    out = nearest_cases(np.array([2.0, 0.1]), ref, ["a", "b", "c", "d"], [1, 0, 1, 0], k=3)
    assert list(out.columns) == ["user_id", "label", "similarity"]
    assert list(out["user_id"]) == ["a", "c", "b"] and list(out["label"]) == [1, 1, 0]
    assert out["similarity"].is_monotonic_decreasing and out["similarity"].iloc[0] <= 1.0
    assert list(nearest_cases(np.array([1.0, 0.0]), ref, list("abcd"), [1, 0, 1, 0], k=1,
                              exclude=["a"])["user_id"]) == ["c"]
    assert nearest_cases(np.ones(2), ref[:0], [], [], k=2).empty
    with pytest.raises(ValueError, match="k=0"):
        nearest_cases(np.ones(2), ref, list("abcd"), [1, 0, 1, 0], k=0)
    with pytest.raises(ValueError, match="dimension"):
        nearest_cases(np.ones(3), ref, list("abcd"), [1, 0, 1, 0])


def test_nearest_cases_on_sequence_embeddings(scorer, data) -> None:
    """A fraud user's nearest labelled neighbours are mostly fraud users (same planted patterns)."""
    events, labels = data
    users = set(labels["user_id"].iloc[:160])
    ids, emb = scorer.embed(events[events["user_id"].isin(users)])
    label_of = dict(zip(labels["user_id"], labels["label"]))
    y = np.array([label_of[u] for u in ids])
    hits = []
    for i in np.flatnonzero(y == 1)[:20]:
        out = nearest_cases(emb[i], emb, ids, y, k=5, exclude=[ids[i]])
        assert ids[i] not in set(out["user_id"])
        hits.append(out["label"].mean())
    assert np.mean(hits) > y.mean()   # better than the base rate


# ------------------------------------------------------------------------------------------------
# the benchmark's JSON line


@pytest.mark.slow
def test_bench_prints_the_json_schema(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "explain.py"), "--tiny", "--quiet", "--users", "300",
         "--timelines", "3", "--random-draws", "1", "--min-risk", "0", "--seq-len", "128"],
        capture_output=True, text=True, timeout=170, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("p50_ms", "p95_ms", "mean_abs_delta", "deletion_top_k_drop", "deletion_random_drop"):
        assert isinstance(result[key], float), key
    assert result["p95_ms"] >= result["p50_ms"] > 0


def test_the_split_modules_are_re_exported_by_models_explain() -> None:
    """analyst/ and bench/ import these names from models.explain; they live in attribution.py
    and neighbours.py."""
    import models.attribution as attribution
    import models.explain as explain_module
    import models.neighbours as neighbours

    assert explain_module.what_if is attribution.what_if
    assert explain_module.masked_risk is attribution.masked_risk
    assert explain_module.attention_rollout is attribution.attention_rollout
    assert explain_module._private_scorer is attribution.private_scorer
    assert explain_module.nearest_cases is neighbours.nearest_cases
    for name in explain_module.__all__:
        assert hasattr(explain_module, name), name
