"""Product-path check of the scoring-time view (analyst/store/signals.py `attach(known_at=...)`).

For each seed and size: a generated store as the demo builds it (events ingested, the ground
truth of a seeded 40% of users loaded as past outcomes), the default model trained, then every
user scored twice by the service's `score_all`: with each user's last event reading the entity
fraud counts as known at its time (causal, what the model was trained on) and as known now (the
scoring-time view the product serves). AUPRC / AUROC against the ground truth of the 60% of
users the model never saw labelled. One JSON line on stdout:

    {"runs": [{"seed", "n_users", "causal": {"auprc", "auroc"}, "known_now": {...}}], "meta": {...}}

Usage: python bench/scoring_view.py [--seeds 11,23,37] [--n-users 4000]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from analyst.cli import DEMO_HISTORY_FRACTION, DEMO_HISTORY_SEED  # noqa: E402
from analyst.config import Settings  # noqa: E402
from analyst.service import Workbench  # noqa: E402
from analyst.service.scoring import score_all  # noqa: E402
from analyst.synthetic import SyntheticConfig, generate, write  # noqa: E402


def _metrics(store, version: str, truth: pd.DataFrame) -> dict:
    scores = store.latest_scores(version)[["user_id", "score"]]
    joined = truth.merge(scores, on="user_id")
    return {"auprc": round(float(average_precision_score(joined["label"], joined["score"])), 4),
            "auroc": round(float(roc_auc_score(joined["label"], joined["score"])), 4),
            "users": int(len(joined)), "frauds": int(joined["label"].sum())}


def run(seed: int, n_users: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        write(*generate(SyntheticConfig(n_users=n_users, seed=seed)), home / "data")
        truth = pd.read_parquet(home / "data" / "labels.parquet")[["user_id", "label"]]
        history = truth.sample(frac=DEMO_HISTORY_FRACTION, random_state=DEMO_HISTORY_SEED)
        history.to_parquet(home / "history.parquet", index=False)
        unseen = truth[~truth["user_id"].isin(history["user_id"])]
        wb = Workbench(Settings.from_env(env={"SLEUTH_HOME": str(home / "home")}))
        try:
            wb.ingest_events([home / "data" / "events.parquet"])
            wb.ingest_labels(home / "history.parquet")
            t0 = time.perf_counter()
            version = wb.train(progress=False)
            fit_s = time.perf_counter() - t0
            model = wb.model(version)
            out = {"seed": seed, "n_users": n_users, "fit_s": round(fit_s, 1)}
            for name, view in (("causal", False), ("known_now", True)):
                score_all(wb.store, wb.explanations, model, budget=0, explain_cases=False, scoring_view=view)
                out[name] = _metrics(wb.store, version, unseen)
            return out
        finally:
            wb.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="11,23,37")
    p.add_argument("--n-users", type=int, default=4000)
    args = p.parse_args()
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        runs.append(run(seed, args.n_users))
        print(json.dumps(runs[-1]), file=sys.stderr)
    print(json.dumps({"runs": runs, "meta": {"n_users": args.n_users, "history_share": DEMO_HISTORY_FRACTION}}))


if __name__ == "__main__":
    main()
