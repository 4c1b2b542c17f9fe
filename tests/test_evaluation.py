"""models.evaluation (the `evaluate` JSON contract, splits, leakage rules) and models.handbook.

Protocol tests run with the baselines (and a spy model that records what it was fitted on) so they
are fast; one test runs the real Scorer with tiny dimensions on a small generated set."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.baselines import GradientBoostingBaseline
from models.evaluation import EvaluateConfig, evaluate, run_protocol, split_labels
from models.metrics import METRIC_KEYS

SHARED = Path(__file__).resolve().parents[2] / "shared"
HANDBOOK = SHARED / "data" / "fraud_handbook_simulated"
CONTRACT_KEYS = {"n_train", "n_test", "positives_test", "model", "baselines"}


def toy_events(n_users: int = 160, fraud_rate: float = 0.2, seed: int = 0):
    """Users spread over 40 days; fraud users end with a burst of large payments from a new
    device abroad. Labels: one per user at its last event, with a pattern for positives."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    t0 = pd.Timestamp("2024-01-01")
    for i in range(n_users):
        uid, fraud = f"u{i:04d}", bool(rng.random() < fraud_rate)
        ts = t0 + pd.Timedelta(hours=float(rng.uniform(0, 24 * 40))) + pd.to_timedelta(
            np.cumsum(rng.exponential(6 * 3600, int(rng.integers(6, 20)))), unit="s")
        for t in ts:
            et = str(rng.choice(["login", "view", "payment"], p=[.3, .5, .2]))
            rows.append((uid, t, et, float(rng.lognormal(3, .5)) if et == "payment" else np.nan,
                         f"d{i}", "DE"))
        t = ts[-1]
        if fraud:
            for _ in range(int(rng.integers(3, 6))):
                t = t + pd.Timedelta(seconds=float(rng.uniform(5, 60)))
                rows.append((uid, t, "payment", float(rng.lognormal(5.5, .4)), f"x{i}", "NG"))
        labels.append((uid, int(fraud), t.floor("us"), "burst" if fraud else None))
    events = pd.DataFrame(rows, columns=["user_id", "ts", "event_type", "amount", "device_id",
                                         "country"])
    events["ts"] = events["ts"].dt.floor("us")
    return events, pd.DataFrame(labels, columns=["user_id", "label", "as_of", "pattern"])


class SpyModel:
    """Records what it is fitted on; risk = number of payments so far (a weak honest rule)."""

    fitted: list = []

    def fit(self, events, labels, progress=False):
        SpyModel.fitted.append((events.copy(), labels.copy()))
        return self

    def predict_proba(self, events, at=None):
        pay = events[events.event_type == "payment"]
        counts = at.reset_index(drop=True).apply(
            lambda r: int(((pay.user_id == r.user_id) & (pay.ts <= r.as_of)).sum()), axis=1)
        s = counts.to_numpy(dtype=float) / (1.0 + counts.max())
        return np.column_stack([1 - s, s])


@pytest.fixture(autouse=True)
def _reset_spy():
    SpyModel.fitted = []
    yield


def _check_contract(result: dict) -> None:
    assert CONTRACT_KEYS <= set(result)
    assert set(result["baselines"]) == {"isolation_forest", "gradient_boosting"}
    for m in (result["model"], *result["baselines"].values()):
        assert tuple(m) == METRIC_KEYS
        for key in ("auprc", "auroc", "f1", "precision", "recall", "precision_at_k"):
            assert m[key] is None or 0.0 <= m[key] <= 1.0
    json.dumps(result)  # serialisable as is


def test_contract_schema_with_baselines_and_split_bookkeeping():
    events, labels = toy_events()
    result = evaluate(events, labels, EvaluateConfig(), model_factory=GradientBoostingBaseline,
                      progress=False)
    _check_contract(result)
    assert result["n_train"] + result["n_test"] == len(labels)
    assert result["n_test"] == pytest.approx(0.3 * len(labels), abs=2)
    assert result["split"] == "time" and result["cutoff"] is not None
    test_users = labels.sort_values("as_of").tail(result["n_test"])
    assert result["positives_test"] == int(test_users.label.sum())
    assert result["model"]["auroc"] > 0.9                       # planted bursts are easy
    assert result["model"]["k"] == result["positives_test"]
    assert result["fitted"] == {"model": True, "isolation_forest": True, "gradient_boosting": True}
    assert set(result["recall_by_pattern"]["model"]) == {"burst"}
    assert result["model"]["threshold"] is not None and result["model"]["f1"] is not None


def test_time_split_fits_on_train_labels_and_events_before_cutoff_only():
    events, labels = toy_events(seed=1)
    res = run_protocol(events, labels, EvaluateConfig(test_frac=0.25), model_factory=SpyModel,
                       progress=False)
    (fit_events, fit_labels), = SpyModel.fitted
    cutoff = res.split.cutoff
    assert fit_events.ts.max() < cutoff
    assert len(fit_events) == int((events.ts < cutoff).sum())   # every user's pre-cutoff events
    assert fit_labels.as_of.max() < cutoff <= res.split.test.as_of.min()
    assert set(fit_labels.user_id).isdisjoint(res.split.test.user_id)
    assert len(res.split.test) == pytest.approx(0.25 * len(labels), abs=2)


def test_random_split_is_by_user_and_hides_test_users_events():
    events, labels = toy_events(seed=2)
    cfg = EvaluateConfig(split="random", seed=3)
    res = run_protocol(events, labels, cfg, model_factory=SpyModel, progress=False)
    (fit_events, _), = SpyModel.fitted
    assert res.split.kind == "random" and res.split.cutoff is None
    assert set(fit_events.user_id).isdisjoint(res.split.test.user_id)
    again = split_labels(labels, events, cfg)
    other = split_labels(labels, events, EvaluateConfig(split="random", seed=4))
    assert list(again.test.user_id) == list(res.split.test.user_id)
    assert list(other.test.user_id) != list(res.split.test.user_id)
    # stratified: both parts hold positives
    assert res.split.train.label.sum() > 0 and res.split.test.label.sum() > 0


def test_split_column_is_honoured_and_null_rows_are_unused():
    events, labels = toy_events(seed=3)
    labels = labels.copy()
    labels["split"] = np.where(np.arange(len(labels)) % 3 == 0, "test", "train")
    labels.loc[labels.index[:5], "split"] = None
    res = run_protocol(events, labels, EvaluateConfig(split="random"), model_factory=SpyModel,
                       progress=False)
    assert res.split.kind == "column" and res.split.n_unused == 5
    expected_test = set(labels.user_id[labels.split == "test"])
    assert set(res.split.test.user_id) == expected_test
    (fit_events, fit_labels), = SpyModel.fitted
    assert set(fit_labels.user_id) == set(labels.user_id[labels.split == "train"])
    assert set(fit_events.user_id).isdisjoint(expected_test)   # interleaved times: by user
    bad = labels.assign(split="validation")
    with pytest.raises(ValueError, match="train/test"):
        split_labels(bad, events)


def test_one_class_train_gives_null_supervised_baseline_but_a_model():
    events, labels = toy_events(seed=4)
    labels = labels.sort_values("as_of").reset_index(drop=True)
    labels["split"] = np.where(np.arange(len(labels)) < 100, "train", "test")
    labels.loc[labels.split == "train", "label"] = 0
    result = evaluate(events, labels, EvaluateConfig(), model_factory=SpyModel, progress=False)
    _check_contract(result)
    assert result["fitted"]["gradient_boosting"] is False
    gb = result["baselines"]["gradient_boosting"]
    assert all(gb[k] is None for k in METRIC_KEYS if k != "k")
    assert result["model"]["auroc"] is not None
    assert result["model"]["threshold"] is None      # no train positive rate to set it with
    assert result["baselines"]["isolation_forest"]["auroc"] is not None


def test_zero_labels_all_test():
    events, labels = toy_events(seed=5)
    test = labels.sort_values("as_of").tail(60).assign(split="test")
    result = evaluate(events, test, EvaluateConfig(), model_factory=SpyModel, progress=False)
    _check_contract(result)
    assert result["n_train"] == 0 and result["n_test"] == 60
    (fit_events, fit_labels), = SpyModel.fitted
    assert fit_labels.empty and fit_events.ts.max() < test.as_of.min()
    assert result["baselines"]["gradient_boosting"]["auprc"] is None
    assert result["baselines"]["isolation_forest"]["auroc"] > 0.7   # unsupervised still ranks
    assert set(result["recall_by_pattern"]["isolation_forest"]) == {"burst"}


def test_labels_are_normalised_and_unscorable_ones_dropped():
    events, labels = toy_events(seed=6)
    labels = labels.copy()
    labels["label"] = labels.label.map({1: "fraud", 0: "legit"})
    labels.loc[labels.index[:10], "as_of"] = pd.NaT               # -> user's last event
    ghost = pd.DataFrame({"user_id": ["ghost"], "label": ["fraud"], "as_of": [pd.NaT]})
    early = pd.DataFrame({"user_id": ["u0001"], "label": ["legit"],
                          "as_of": [pd.Timestamp("1999-01-01")]})
    split = split_labels(pd.concat([labels, ghost, early], ignore_index=True), events)
    assert split.n_dropped == 2
    assert len(split.train) + len(split.test) == len(labels)
    assert set(pd.concat([split.train, split.test]).label) == {0, 1}
    last = events.groupby("user_id").ts.max()
    both = pd.concat([split.train, split.test])
    filled = both[both.user_id.isin(labels.user_id[:10])]
    assert (filled.as_of.to_numpy() == filled.user_id.map(last).to_numpy()).all()
    # an all-empty as_of column (read from CSV as float NaN) means "last event" too
    empty = split_labels(labels.assign(as_of=np.nan), events)
    assert pd.concat([empty.train, empty.test]).as_of.max() == events.ts.max()
    with pytest.raises(ValueError, match="numbers"):
        split_labels(labels.assign(as_of=1.7e9), events)


def test_decision_history_latest_wins():
    events, labels = toy_events(seed=7)
    labels = labels.assign(decided_at=pd.Timestamp("2024-03-01"))
    flip = labels.iloc[:3].assign(label=1 - labels.label.iloc[:3],
                                  decided_at=pd.Timestamp("2024-03-02"))
    split = split_labels(pd.concat([flip, labels], ignore_index=True), events)
    both = pd.concat([split.train, split.test]).set_index("user_id")
    assert len(both) == len(labels)
    for uid, y in zip(flip.user_id, flip.label):
        assert both.loc[uid, "label"] == y


@pytest.mark.parametrize("kwargs", [{"split": "kfold"}, {"test_frac": 1.0}, {"test_frac": 0},
                                    {"k": 0}])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        EvaluateConfig(**kwargs)


def test_bad_model_output_is_reported():
    class Broken(SpyModel):
        def predict_proba(self, events, at=None):
            return np.zeros((len(at), 3))

    events, labels = toy_events(seed=8)
    with pytest.raises(ValueError, match="shape"):
        evaluate(events, labels, model_factory=Broken, progress=False)
    with pytest.raises(ValueError, match="user_id"):
        evaluate(events, labels.drop(columns="user_id"), model_factory=Broken, progress=False)


@pytest.mark.slow
def test_scorer_on_a_small_generated_set_beats_chance():
    from analyst.synthetic import SyntheticConfig, generate
    from models.scorer import ScorerConfig

    events, labels = generate(SyntheticConfig(n_users=400, seed=5, fraud_rate=0.15, days=7))
    cfg = ScorerConfig(d_model=32, n_layers=1, n_heads=2, max_events=48, pretrain_epochs=1,
                       finetune_epochs=2, seed=0)
    result = evaluate(events, labels, EvaluateConfig(scorer_config=cfg), progress=False)
    _check_contract(result)
    assert result["positives_test"] >= 10
    assert result["model"]["auroc"] > 0.65            # chance is 0.5
    assert result["model"]["auprc"] > 2 * result["positives_test"] / result["n_test"]
    assert set(result["recall_by_pattern"]["model"]) <= set(labels.pattern.dropna())


# ------------------------------------------------------------------------------ handbook data

@pytest.fixture(scope="module")
def handbook_slice():
    if not HANDBOOK.is_dir():
        pytest.skip("../shared (handbook data) is absent")
    from models.handbook import load_handbook

    return load_handbook(HANDBOOK, start="2018-07-25", end="2018-08-15")


def test_handbook_loader_follows_the_event_schema(handbook_slice):
    from models.contracts import EVENT_COLUMNS
    from models.handbook import EVENT_COLUMNS as HB_COLUMNS

    events, labels = handbook_slice
    assert tuple(events.columns) == EVENT_COLUMNS == HB_COLUMNS
    assert len(events) == len(labels)
    assert events.ts.between(pd.Timestamp("2018-07-25"), pd.Timestamp("2018-08-15")).all()
    assert (events.event_type == "payment").all() and events.item_id.str.startswith("T").all()
    key = list(zip(events.user_id, events.ts))
    assert key == sorted(key)
    assert set(labels.pattern.dropna()) <= {"amount_over_220", "compromised_terminal",
                                            "compromised_credentials"}
    assert (labels.pattern.notna() == (labels.label == 1)).all()


def test_handbook_split_reproduces_the_handbooks_train_and_test_sets(handbook_slice):
    """Chapter 3's baseline fold (training from 2018-07-25): 67,240 train transactions (598
    frauds) and 58,264 test transactions (385 frauds) after removing known compromised cards."""
    from models.handbook import handbook_folds, handbook_split

    _, labels = handbook_slice
    fold = handbook_split(labels, "2018-07-25")
    train, test = fold[fold.split == "train"], fold[fold.split == "test"]
    assert (len(train), int(train.label.sum())) == (67_240, 598)
    assert (len(test), int(test.label.sum())) == (58_264, 385)
    assert test.day.min() == train.day.min() + 14
    assert [d.strftime("%m-%d") for d in handbook_folds()] == ["08-15", "08-08", "08-01", "07-25"]
