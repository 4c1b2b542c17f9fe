"""Explanation latency and faithfulness on 256-event timelines of trained synthetic users.

1. Trains the default demo Scorer (ScorerConfig()) on `--users` synthetic users (cached under
   bench/.cache/ by its settings; `--model DIR` uses a saved Scorer instead).
2. Takes `--timelines` users with at least `--seq-len` events (their most recent ones; fraud users
   first, then others) and times `models.explain.explain` on each (after one warm-up call).
3. Faithfulness by deletion: for each timeline, the calibrated risk drop at the scored (last) event
   when the k = `--top-k` most (positively) attributed earlier events are deleted, against the
   mean drop when k random earlier events of the model's window are deleted (`--random-draws`
   draws). The scored event itself is never deleted (the risk is asked as of it). Reported over
   the timelines whose risk is at least `--min-risk` (a drop needs a risk).
   "Deleted" as in the deletion metric of the attribution literature (Petsiuk et al. 2018; Samek
   et al. 2017): the events' content is replaced by the attribution baseline (models.explain.
   masked_risk: an average event in their place, time kept, typical surprise) -> deletion_top_k_drop / deletion_random_drop.
   For transparency the same test with the events *removed* from the timeline and the rest
   re-tokenized (models.explain.what_if: gaps and "first time" flags of later events change, a
   different counterfactual that moves the risk even for random events) -> removal_top_k_drop /
   removal_random_drop.

Prints one JSON line last:
{"p50_ms", "p95_ms", "mean_abs_delta", "deletion_top_k_drop", "deletion_random_drop", ...}
Goals: p50 <= 500 ms on 2 CPU cores; deletion_top_k_drop >= 2 x deletion_random_drop.
Usage: python bench/explain.py [--users 3000] [--timelines 40] [--model DIR] [--tiny]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from analyst.synthetic import SyntheticConfig, generate  # noqa: E402
from models.signals import with_signals  # noqa: E402
from models.explain import _private_scorer, explain, masked_risk, what_if  # noqa: E402
from models.scorer import Scorer, ScorerConfig  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
TINY = dict(d_model=32, n_layers=2, n_heads=2, max_events=256, pretrain_epochs=2, finetune_epochs=3)


def trained_scorer(args: argparse.Namespace, events: pd.DataFrame, labels: pd.DataFrame) -> Scorer:
    """The Scorer to explain: --model, else a cached one trained on the benchmark users."""
    if args.model:
        return Scorer.from_pretrained(args.model)
    config = ScorerConfig(**TINY) if args.tiny else ScorerConfig()
    key = hashlib.sha1(json.dumps([args.users, args.seed, repr(config), "signals"]).encode()).hexdigest()[:10]
    path = CACHE / f"explain-model-{key}"
    if (path / "scorer.json").is_file():
        return Scorer.from_pretrained(path)
    scorer = Scorer(config).fit(events, labels, progress=not args.quiet)
    scorer.save_pretrained(path)
    return scorer


def long_timelines(events: pd.DataFrame, labels: pd.DataFrame, n: int, seq_len: int) -> list[pd.DataFrame]:
    """Up to n timelines of exactly seq_len events (most recent), fraud users first."""
    sizes = events.groupby("user_id").size()
    long = set(sizes[sizes >= seq_len].index)
    order = labels[labels["user_id"].isin(long)].sort_values(["label", "user_id"], ascending=[False, True])
    out = []
    for user in order["user_id"].iloc[:n]:
        tl = events[events["user_id"] == user].tail(seq_len).reset_index(drop=True)
        out.append(tl)
    return out


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    events, labels = generate(SyntheticConfig(n_users=args.users, seed=args.seed))
    events = with_signals(events, labels)   # the velocity / entity signal columns the model reads
    scorer = trained_scorer(args, events, labels)
    tls = long_timelines(events, labels, args.timelines, args.seq_len)
    if not tls:
        raise SystemExit(f"no synthetic user has {args.seq_len} events: raise --users")
    explain(scorer, tls[0], n_steps=args.steps, top_k=args.top_k)  # warm-up

    rng = np.random.default_rng(args.seed)
    ms, deltas, rel, steps, top_drop, rand_drop, ratios_n = [], [], [], [], [], [], 0
    rm_top, rm_rand = [], []
    for tl in tls:
        t0 = time.perf_counter()
        e = explain(scorer, tl, n_steps=args.steps, top_k=args.top_k, mask_time=args.mask_time)
        ms.append(1000 * (time.perf_counter() - t0))
        deltas.append(abs(e.delta))
        rel.append(abs(e.delta) / max(abs(e.logit - e.baseline_logit), 1e-12))
        steps.append(e.n_steps)
        if e.risk < args.min_risk:
            continue
        # the scored event stays (the risk is asked as of it); delete earlier events only
        top = [i for i in e.top_events if i != e.at][: args.top_k]
        pool = np.arange(e.window_start, e.at)
        if not top or len(pool) < len(top):
            continue
        k = len(top)
        draws = [rng.choice(pool, size=k, replace=False) for _ in range(args.random_draws)]
        top_drop.append(e.risk - masked_risk(scorer, tl, top, at=e.at))
        rand_drop.append(np.mean([e.risk - masked_risk(scorer, tl, d, at=e.at) for d in draws]))
        rm_top.append(e.risk - what_if(scorer, tl, top, at=e.at))
        rm_rand.append(np.mean([e.risk - what_if(scorer, tl, d, at=e.at) for d in draws]))
        ratios_n += 1

    copy_ms = []
    for _ in range(5):
        t0 = time.perf_counter()
        _private_scorer(scorer)
        copy_ms.append(1000 * (time.perf_counter() - t0))
    def mean(values: list) -> float:
        return float(np.mean(values)) if values else float("nan")

    top_mean, rand_mean = mean(top_drop), mean(rand_drop)
    rm_top_mean, rm_rand_mean = mean(rm_top), mean(rm_rand)
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_abs_delta": float(np.mean(deltas)),
        "deletion_top_k_drop": top_mean,
        "deletion_random_drop": rand_mean,
        "deletion_ratio": top_mean / rand_mean if rand_mean > 0 else None,
        "removal_top_k_drop": rm_top_mean,
        "removal_random_drop": rm_rand_mean,
        "removal_ratio": rm_top_mean / rm_rand_mean if rm_rand_mean > 0 else None,
        "mean_rel_delta": float(np.mean(rel)),
        "mean_n_steps": float(np.mean(steps)),
        "private_copy_ms": float(np.median(copy_ms)),
        "n_timelines": len(tls),
        "n_deletion": ratios_n,
        "seq_len": args.seq_len,
        "top_k": args.top_k,
        "n_steps": args.steps,
        "mask_time": args.mask_time,
        "model": {"d_model": scorer.config.d_model, "n_layers": scorer.config.n_layers,
                  "max_events": scorer.max_events, "mode": getattr(scorer, "mode_", None)},
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=3000, help="synthetic users to train on and draw from")
    p.add_argument("--timelines", type=int, default=40, help="timelines to explain")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=24, help="IG steps to start with")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--random-draws", type=int, default=5)
    p.add_argument("--min-risk", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--model", help="a saved Scorer directory (default: train one, cached)")
    p.add_argument("--tiny", action="store_true", help="tiny model and settings (a smoke run)")
    p.add_argument("--mask-time", action="store_true",
                   help="baseline masks the time fields too (default: content masked, time kept)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    result = run(args)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
