"""Label feedback loop: a mixed label queue against a top-risk-only queue, from zero labels.

Simulation on `--users` synthetic users (analyst.synthetic, ground truth known):

1. A fixed held-out set (`--holdout-frac` of the fraud and of the other users, seeded) is never served; AUPRC is measured
   on it (sklearn average_precision_score of the model's score against the ground truth).
2. Round 0 has no labels: one Scorer is fitted on all events without labels (it ranks by
   surprise); both strategies start from it (its AUPRC is `auprc_start`).
3. Each of `--rounds` rounds: the current model scores every user; the queue serves `--per-round`
   users nobody has labelled yet (holdout excluded); a simulated analyst answers each with the
   ground truth; then a new Scorer is fitted on all events and all labels so far (retraining from
   scratch, as `sleuth train` does).
   - mix: analyst.sampling.select_cases with QueueMix(per_round, 0.6 / 0.2 / 0.2 by default,
     seed = --seed + round); the head-vs-surprise disagreement is used once the model is supervised.
   - top_only: the `per_round` riskiest candidates.

Per strategy, per round: precision_at_100 = share of fraud among the cases served that round (the
key keeps its name whatever --per-round is), precision_top = the same among its high-risk cases,
auprc = AUPRC on the holdout of the model retrained after that round, holdout_precision_at_100 =
its precision among the 100 riskiest holdout users (a fixed population: the served queue's
precision also falls as the frauds get found and used up), base_rate_est = the
control-sample estimate of the candidates' fraud rate from that round's cases alone, with its
95% interval base_rate_ci (analyst.sampling.estimate_rates; mix only; with 20 control labels a
round the interval is wide, and says so; `base_rate_true` is the truth), frauds_found =
cumulative frauds labelled.

Progress goes to stderr; one JSON line last on stdout:
{"mix": {...}, "top_only": {...}, "auprc_start", "users", "rounds", "per_round", "holdout_users",
 "holdout_positives", "seed", "scorer", "seconds", ...}
Usage: python bench/loop.py [--users 10000] [--rounds 5] [--per-round 100] [--quick]
       [--scorer-json '{"d_model": 64}' | --scorer-json cfg.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402

from analyst.sampling import QueueMix, estimate_rates, select_cases  # noqa: E402
from analyst.synthetic import SyntheticConfig, generate  # noqa: E402
from models.scorer import Scorer, ScorerConfig  # noqa: E402

QUICK = dict(users=2000, rounds=3, per_round=50)
QUICK_SCORER = dict(d_model=32, n_layers=1, n_heads=2, max_events=64, pretrain_epochs=1, finetune_epochs=2,
                    min_positives=5)
STRATEGIES = ("mix", "top_only")


def log(message: str) -> None:
    print(f"[loop] {message}", file=sys.stderr, flush=True)


def fit(config: ScorerConfig, events: pd.DataFrame, labels: pd.DataFrame | None) -> Scorer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Scorer(config).fit(events, labels if labels is not None and len(labels) else None, progress=False)


def auprc(scores: pd.DataFrame, truth: pd.Series, holdout: np.ndarray) -> float:
    s = scores.set_index("user_id")["score"].loc[holdout].to_numpy()
    return float(average_precision_score(truth.loc[holdout].to_numpy(), s))


def holdout_precision_at(scores: pd.DataFrame, truth: pd.Series, holdout: np.ndarray, k: int = 100) -> float:
    """Share of fraud among the k riskiest holdout users: precision@k of the model on a fixed
    population nobody labels (the served queue's precision also falls as frauds get used up)."""
    s = scores.set_index("user_id")["score"].loc[holdout]
    top = s.sort_values(ascending=False, kind="stable").index[: min(k, len(s))]
    return float(truth.loc[top].mean())


def serve(strategy: str, scores: pd.DataFrame, exclude: set, per_round: int, mix: QueueMix,
          supervised: bool) -> pd.DataFrame:
    """The cases one round serves (user_id, score, why, sample_weight)."""
    frame = scores if supervised else scores.drop(columns=["head_logit"])
    if strategy == "top_only":
        mix = QueueMix(budget=per_round, top_share=1.0, uncertain_share=0.0, control_share=0.0, seed=mix.seed)
    return select_cases(frame, exclude, mix)


def run(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    config = scorer_config(args)
    events, truth_frame = generate(SyntheticConfig(n_users=args.users, seed=args.seed))
    truth = truth_frame.set_index("user_id")["label"].astype(int)
    users = np.array(sorted(truth.index))
    rng = np.random.default_rng(args.seed)
    holdout = np.sort(np.concatenate([   # stratified: the same fraud share as the population
        rng.choice(group, size=max(1, int(round(args.holdout_frac * len(group)))), replace=False)
        for group in (users[truth.loc[users].to_numpy() == 1], users[truth.loc[users].to_numpy() == 0])
        if len(group)
    ]))
    if truth.loc[holdout].nunique() < 2:
        raise SystemExit("the holdout holds one class only: raise --users (no fraud user was generated)")
    log(f"{len(users):,} users ({int(truth.sum())} fraud), {len(events):,} events; holdout {len(holdout)} "
        f"users ({int(truth.loc[holdout].sum())} fraud); scorer {config}")

    log("round 0: fitting the zero-label model (ranks by surprise)")
    start = fit(config, events, None)
    start_scores = start.score_users(events)
    out: dict = {"auprc_start": auprc(start_scores, truth, holdout),
                 "holdout_precision_at_100_start": holdout_precision_at(start_scores, truth, holdout)}
    log(f"round 0: holdout AUPRC {out['auprc_start']:.4f}")

    for strategy in STRATEGIES:
        scorer, scores = start, start_scores
        labelled: list[pd.DataFrame] = []
        result: dict[str, list] = {k: [] for k in ("precision_at_100", "precision_top", "auprc",
                                                   "holdout_precision_at_100", "frauds_found",
                                                   "base_rate_est", "base_rate_ci", "base_rate_true", "mode")}
        for r in range(1, args.rounds + 1):
            done = set(pd.concat(labelled)["user_id"]) if labelled else set()
            exclude = done | set(holdout)
            mix = QueueMix.from_shares(args.per_round, uncertain_share=args.uncertain_share,
                                       control_share=args.control_share, seed=args.seed + r)
            supervised = getattr(scorer, "mode_", "surprise") != "surprise"
            served = serve(strategy, scores, exclude, args.per_round, mix, supervised)
            y = truth.loc[served["user_id"]].to_numpy()
            decided = served.assign(label=y)
            labelled.append(decided[["user_id", "label"]])
            top = decided[decided["why"] == "high_risk"]
            candidates = [u for u in users if u not in exclude]
            est = estimate_rates(decided, n_population=len(candidates)) if strategy == "mix" else None
            result["precision_at_100"].append(float(y.mean()) if len(y) else None)
            result["precision_top"].append(float(top["label"].mean()) if len(top) else None)
            result["frauds_found"].append(int(sum(int(f["label"].sum()) for f in labelled)))
            result["base_rate_est"].append(est.base_rate if est is not None else None)
            result["base_rate_ci"].append(list(est.base_rate_ci) if est is not None and est.base_rate_ci else None)
            result["base_rate_true"].append(float(truth.loc[candidates].mean()))
            log(f"{strategy} round {r}: served {len(served)} ({served['why'].value_counts().to_dict()}), "
                f"{int(y.sum())} fraud; retraining on {sum(len(f) for f in labelled)} labels")
            scorer = fit(config, events, pd.concat(labelled, ignore_index=True))
            scores = scorer.score_users(events)
            result["auprc"].append(auprc(scores, truth, holdout))
            result["holdout_precision_at_100"].append(holdout_precision_at(scores, truth, holdout))
            result["mode"].append(str(getattr(scorer, "mode_", "")))
            log(f"{strategy} round {r}: precision {result['precision_at_100'][-1]:.3f}, "
                f"holdout AUPRC {result['auprc'][-1]:.4f}, holdout precision@100 "
                f"{result['holdout_precision_at_100'][-1]:.2f} ({result['mode'][-1]})")
        out[strategy] = result

    out.update(
        users=int(len(users)), rounds=int(args.rounds), per_round=int(args.per_round),
        mix_shares={"high_risk": round(1 - args.uncertain_share - args.control_share, 6),
                    "uncertain": args.uncertain_share, "control": args.control_share},
        holdout_users=int(len(holdout)), holdout_positives=int(truth.loc[holdout].sum()),
        fraud_users=int(truth.sum()), seed=int(args.seed), quick=bool(args.quick),
        scorer=_jsonable(dataclasses.asdict(config)), seconds=round(time.perf_counter() - t0, 1),
        python=platform.python_version(), machine=platform.machine(),
    )
    return {k: out[k] for k in ("mix", "top_only", *[k for k in out if k not in STRATEGIES])}


def scorer_config(args: argparse.Namespace) -> ScorerConfig:
    """QUICK_SCORER under --quick, then the fields of --scorer-json (a JSON object or a file of one)."""
    fields = dict(QUICK_SCORER) if args.quick else {}
    if args.scorer_json:
        text = args.scorer_json.strip()
        try:
            extra = json.loads(text if text.startswith("{") else Path(text).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"--scorer-json {args.scorer_json!r}: expected a JSON object or a file of one ({exc})")
        if not isinstance(extra, dict):
            raise SystemExit(f"--scorer-json {args.scorer_json!r}: expected a JSON object of ScorerConfig fields")
        known = {f.name for f in dataclasses.fields(ScorerConfig)}
        unknown = sorted(set(extra) - known)
        if unknown:
            raise SystemExit(f"--scorer-json: unknown ScorerConfig field(s) {unknown}")
        fields.update(extra)
    return ScorerConfig(**fields)


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, help="synthetic users (default 10000; --quick: 2000)")
    p.add_argument("--rounds", type=int, help="label rounds (default 5; --quick: 3)")
    p.add_argument("--per-round", type=int, help="decisions per round (default 100; --quick: 50)")
    p.add_argument("--seed", type=int, default=7, help="data, holdout and control-draw seed (default 7)")
    p.add_argument("--holdout-frac", type=float, default=0.2, help="share of users never served (default 0.2)")
    p.add_argument("--uncertain-share", type=float, default=0.2, help="mix: uncertain share (default 0.2)")
    p.add_argument("--control-share", type=float, default=0.2, help="mix: random control share (default 0.2)")
    p.add_argument("--scorer-json", help="ScorerConfig fields as a JSON object, or a file holding one")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2000 users, 3 rounds of 50, tiny model (d_model 32, 1 layer, 64 events, "
                        "1 + 2 epochs, min_positives 5); explicit options still win")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else dict(users=10000, rounds=5, per_round=100)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.users < 50 or args.rounds < 1 or args.per_round < 1:
        p.error("--users >= 50, --rounds >= 1 and --per-round >= 1 are required")
    if not 0.0 < args.holdout_frac < 0.9:
        p.error(f"--holdout-frac {args.holdout_frac}: expected in (0, 0.9)")
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
