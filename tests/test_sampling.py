"""The mixed label queue: shares, exclusions, determinism, unbiased estimates, service wiring."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyst.sampling import QueueMix, default_threshold, estimate_rates, queue_draw, select_cases, wilson_interval


def population(n: int = 5000, seed: int = 0, base: float = -3.5) -> pd.DataFrame:
    """Users with a score that ranks fraud well but not perfectly, and a known fraud label."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    p = 1.0 / (1.0 + np.exp(-(base + 1.6 * z)))
    label = (rng.random(n) < p).astype(int)
    score = 1.0 / (1.0 + np.exp(-(-2.0 + 1.6 * z + rng.normal(scale=0.5, size=n))))
    return pd.DataFrame({
        "user_id": [f"u{i:05d}" for i in range(n)],
        "score": score,
        "head_logit": 1.6 * z + rng.normal(scale=1.0, size=n),
        "surprise": rng.gamma(2.0, 1.0, size=n),
        "label": label,
    })


def test_counts_follow_the_shares_and_sum_to_the_budget():
    assert QueueMix(budget=50).counts() == {"high_risk": 30, "uncertain": 10, "control": 10}
    assert QueueMix(budget=7).counts() == {"high_risk": 4, "uncertain": 2, "control": 1}
    assert QueueMix(budget=10, top_share=1.0, uncertain_share=0.0, control_share=0.0).counts() == {
        "high_risk": 10, "uncertain": 0, "control": 0}
    for budget in (1, 3, 11, 99):
        assert sum(QueueMix(budget=budget).counts().values()) == budget


def test_select_cases_respects_shares_without_duplicates_or_excluded_users():
    pop = population(2000)
    excluded = set(pop["user_id"].iloc[::7])
    out = select_cases(pop.drop(columns="label"), excluded, QueueMix(budget=50, seed=1))
    assert list(out.columns) == ["user_id", "score", "why", "sample_weight"]
    assert out["why"].value_counts().to_dict() == {"high_risk": 30, "uncertain": 10, "control": 10}
    assert not out["user_id"].duplicated().any()
    assert not set(out["user_id"]) & excluded
    candidates = pop[~pop["user_id"].isin(excluded)].sort_values("score", ascending=False)
    assert list(out.loc[out["why"] == "high_risk", "user_id"]) == list(candidates["user_id"].head(30))
    control = out[out["why"] == "control"]
    assert (control["score"] < out.loc[out["why"] == "high_risk", "score"].min()).all()
    # Horvitz-Thompson: weights of one draw add up to the candidates it was drawn from
    assert out["sample_weight"].sum() == pytest.approx(len(candidates))
    assert (out.loc[out["why"] != "control", "sample_weight"] == 1.0).all()


def test_select_cases_is_deterministic_by_seed():
    pop = population(3000).drop(columns="label")
    a = select_cases(pop, set(), QueueMix(budget=40, seed=5))
    b = select_cases(pop, set(), QueueMix(budget=40, seed=5))
    c = select_cases(pop, set(), QueueMix(budget=40, seed=6))
    pd.testing.assert_frame_equal(a, b)
    assert set(a.loc[a["why"] == "control", "user_id"]) != set(c.loc[c["why"] == "control", "user_id"])
    assert list(a.loc[a["why"] != "control", "user_id"]) == list(c.loc[c["why"] != "control", "user_id"])


def test_uncertain_picks_are_near_the_threshold_or_where_signals_disagree():
    pop = population(4000).drop(columns="label")
    mix = QueueMix(budget=60, seed=2)
    out = select_cases(pop, set(), mix)
    threshold = default_threshold(pop["score"], mix.budget)
    unc = out[out["why"] == "uncertain"]
    assert len(unc) == 12
    near, disagreeing = unc.iloc[:6], unc.iloc[6:]
    # nearer to the threshold than 95% of the users not chosen as high risk
    rest = pop[~pop["user_id"].isin(out.loc[out["why"] == "high_risk", "user_id"])]
    cutoff = np.quantile((rest["score"] - threshold).abs(), 0.05)
    assert ((near["score"] - threshold).abs() <= cutoff).all()
    gap = (pop["head_logit"].rank(pct=True) - pop["surprise"].rank(pct=True)).abs()
    gap = gap.set_axis(pop["user_id"])
    assert gap.loc[list(disagreeing["user_id"])].min() > gap.quantile(0.95)
    # a fixed operating point moves the near-threshold picks there
    fixed = select_cases(pop, set(), mix, threshold=0.5)
    near_fixed = fixed[fixed["why"] == "uncertain"].iloc[:6]
    assert (near_fixed["score"] - 0.5).abs().max() < (near["score"] - 0.5).abs().min()


def test_without_usable_head_logit_all_uncertain_picks_are_near_the_threshold():
    pop = population(1000).drop(columns="label")
    chosen, record = queue_draw(pop, set(), QueueMix(budget=20), use_head=False)
    unc = chosen[chosen["why"] == "uncertain"]
    distance = (unc["score"] - record["threshold"]).abs()
    rest = pop[~pop["user_id"].isin(chosen.loc[chosen["why"] == "high_risk", "user_id"])]
    assert distance.max() <= np.sort((rest["score"] - record["threshold"]).abs())[len(unc) - 1] + 1e-12
    assert record["disagreement"] is False
    assert record["n_population"] == 1000 and record["cases"] == {"high_risk": 12, "uncertain": 4, "control": 4}
    json.dumps(record)


def test_small_populations_fill_high_risk_first_and_never_repeat():
    pop = population(8).drop(columns="label")
    out = select_cases(pop, {"u00000"}, QueueMix(budget=20))
    assert len(out) == 7 and not out["user_id"].duplicated().any()
    assert out["why"].value_counts().to_dict() == {"high_risk": 7}
    assert select_cases(pop, set(pop["user_id"]), QueueMix(budget=5)).empty


def test_control_weights_give_an_unbiased_base_rate():
    """Over many daily draws the estimate centres on the true rate (within 4 standard errors of the
    mean, about 0.002 here); the naive fraud share of the served cases and the control rate alone
    (which forgets the frauds counted among flagged users) are both far off."""
    pop = population(5000, seed=11)
    truth = pop["label"].mean()
    label = pop.set_index("user_id")["label"]
    mix = QueueMix(budget=1000, top_share=0.3, uncertain_share=0.2, control_share=0.5)
    estimates, naive, control_only, covered = [], [], [], 0
    for seed in range(200):
        out = select_cases(pop.drop(columns="label"), set(), mix, rng=np.random.default_rng(seed))
        decided = out.assign(label=label.loc[out["user_id"]].to_numpy())
        est = estimate_rates(decided, n_population=len(pop))
        estimates.append(est.base_rate)
        naive.append(est.naive_rate)
        control_only.append(est.control_rate)
        covered += est.base_rate_ci[0] <= truth <= est.base_rate_ci[1]
    standard_error = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates) - truth) < 4 * standard_error, (np.mean(estimates), truth, standard_error)
    assert abs(np.mean(naive) - truth) > 20 * standard_error, "served cases are enriched in fraud"
    assert abs(np.mean(control_only) - truth) > 20 * standard_error, "flagged frauds must be counted"
    assert 0.88 <= covered / len(estimates) <= 1.0, covered


def test_estimate_rates_counts_precision_and_missed_frauds():
    decided = pd.DataFrame({
        "why": ["high_risk"] * 10 + ["uncertain"] * 4 + ["control"] * 20 + ["control"],
        "label": [1] * 6 + [0] * 4 + [1, 0, 0, 0] + [1, 1] + [0] * 18 + [None],
        "sample_weight": [1.0] * 14 + [49.3] * 21,
    })
    est = estimate_rates(decided, n_population=1000)
    assert est.n_top == 10 and est.n_uncertain == 4 and est.n_control == 20 and est.n_flagged == 14
    assert est.precision_top == pytest.approx(0.6)
    assert est.precision_top_ci[0] < 0.6 < est.precision_top_ci[1]
    assert est.control_rate == pytest.approx(0.1)
    assert est.missed_frauds == pytest.approx(0.1 * 986)
    assert est.base_rate == pytest.approx((7 + 98.6) / 1000)
    assert est.base_rate_ci[0] < est.base_rate < est.base_rate_ci[1]
    assert est.control_rate_ci == pytest.approx(wilson_interval(0.1, 20))
    json.dumps(est.to_dict())
    for p, n in ((0.0, 3), (1.0, 3), (0.0, 250.0), (0.37, 11)):
        lo, hi = wilson_interval(p, n)
        assert 0.0 <= lo <= p <= hi <= 1.0
    no_control = estimate_rates(decided[decided["why"] != "control"], n_population=1000)
    assert no_control.base_rate is None and no_control.missed_frauds is None and no_control.precision_top == 0.6


@pytest.mark.parametrize("kwargs, field", [
    (dict(budget=0), "budget"),
    (dict(budget=2.5), "budget"),
    (dict(top_share=-0.1, uncertain_share=0.6, control_share=0.5), "top_share"),
    (dict(uncertain_share=1.5), "uncertain_share"),
    (dict(control_share=0.5), "control_share"),
    (dict(seed=-1), "seed"),
])
def test_queue_mix_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"QueueMix.{field}"):
        QueueMix(**kwargs)


def test_bad_inputs_are_refused_with_the_field_named():
    pop = population(50).drop(columns="label")
    with pytest.raises(ValueError, match="user_id"):
        select_cases(pop.drop(columns="user_id"), set(), QueueMix())
    with pytest.raises(ValueError, match="more than once"):
        select_cases(pd.concat([pop, pop.head(1)]), set(), QueueMix())
    with pytest.raises(ValueError, match="scores.score"):
        select_cases(pop.assign(score=np.nan), set(), QueueMix())
    with pytest.raises(ValueError, match="threshold"):
        select_cases(pop, set(), QueueMix(), threshold=float("nan"))
    with pytest.raises(ValueError, match="control_share"):
        QueueMix.from_shares(10, uncertain_share=0.7, control_share=0.5)
    decided = pd.DataFrame({"why": ["control"], "label": [1], "sample_weight": [3.0]})
    with pytest.raises(ValueError, match="n_population"):
        estimate_rates(decided, n_population=0)
    with pytest.raises(ValueError, match="decided.why"):
        estimate_rates(decided.assign(why="random"), n_population=10)
    with pytest.raises(ValueError, match="decided.label"):
        estimate_rates(decided.assign(label=2), n_population=10)


# ------------------------------------------------------------------------------ service and CLI
def test_score_with_a_mix_opens_cases_of_all_three_kinds(home_copy):
    from analyst.service import Workbench

    wb = Workbench(home_copy)
    try:
        labelled = set(wb.store.latest_labels()["user_id"])
        before = set(wb.store.cases()["case_id"])
        result = wb.score(mix=QueueMix(budget=10, top_share=0.4, uncertain_share=0.3, control_share=0.3, seed=3),
                          explain_cases=False)
        cases = wb.store.cases()
        new = cases[~cases["case_id"].isin(before)]
        assert result["opened"] == len(new) == 10
        assert new["why"].value_counts().to_dict() == {"high_risk": 4, "uncertain": 3, "control": 3}
        assert not set(new["user_id"]) & labelled
        open_before = set(cases.loc[cases["case_id"].isin(before), "user_id"])
        assert not set(new["user_id"]) & open_before, "users with an undecided case are not drawn again"
        assert set(wb.queue()["why"]) == {"high_risk", "uncertain", "control"}
        draw = wb.audit()
        draw = draw[draw["action"] == "queue_draw"]
        assert len(draw) == 1
        detail = json.loads(draw.iloc[0]["detail"])
        assert detail["cases"] == {"high_risk": 4, "uncertain": 3, "control": 3}
        assert detail["control_weight"] == pytest.approx((detail["n_population"] - 7) / 3)
    finally:
        wb.close()


def test_cli_score_mix_flags(home_copy, capsys):
    from analyst.cli import main

    db = str(home_copy.db_path)
    assert main(["score", "--db", db, "--budget", "5", "--control-share", "0.4", "--uncertain-share", "0",
                 "--mix-seed", "1", "--no-explain"]) == 0
    assert "40% random control" in capsys.readouterr().out
    assert main(["score", "--db", db, "--budget", "5", "--control-share", "0.7", "--uncertain-share", "0.5"]) == 2
    assert "control_share" in capsys.readouterr().err


def test_queue_page_names_why_each_case_was_queued(home_copy, monkeypatch):
    pytest.importorskip("streamlit.testing.v1")
    from streamlit.testing.v1 import AppTest

    from analyst import resources
    from analyst.service import Workbench

    wb = Workbench(home_copy)
    try:
        wb.score(mix=QueueMix(budget=9, top_share=1 / 3, uncertain_share=1 / 3, control_share=1 / 3),
                 explain_cases=False)
    finally:
        wb.close()
    monkeypatch.setenv("SLEUTH_HOME", str(home_copy.home))
    for key in ("SLEUTH_DB", "SLEUTH_MODELS", "SLEUTH_ANALYST"):
        monkeypatch.delenv(key, raising=False)
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120).run()
        assert not at.exception and not at.error
        shown = set(at.dataframe[0].value["why"])
        assert shown == {"High risk", "Uncertain", "Random control"}
        assert any("Random control" in c.value and "selection bias" in c.value for c in at.caption)
    finally:
        resources._workbench.clear()
