"""Scoring: every user by one model version, the scores stored, cases opened by an alert budget
or a mixed label queue (analyst/sampling.py), and the opened cases' explanations frozen.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from analyst.sampling import QueueMix, queue_draw
from analyst.service.explanations import Explanations
from analyst.service.records import ModelHandle, ProgressFn
from analyst.store import Store, utcnow

DEFAULT_ALERT_BUDGET = 50


def _check_queue_args(top_pct: float | None, mix: QueueMix | None) -> None:
    if top_pct is not None and not 0 < top_pct <= 100:
        raise ValueError(f"top_pct={top_pct}: expected a percentage in (0, 100]")
    if mix is not None and not isinstance(mix, QueueMix):
        raise ValueError(f"mix={mix!r}: expected an analyst.sampling.QueueMix")


def score_all(store: Store, explanations: Explanations, model: ModelHandle, *,
              budget: int | None = DEFAULT_ALERT_BUDGET, top_pct: float | None = None,
              explain_cases: bool = True, progress: bool = False,
              on_progress: ProgressFn | None = None, mix: QueueMix | None = None,
              scoring_view: bool = True) -> dict:
    """Score every user with `model`, store the scores and open cases by an alert budget.

    `scoring_view`: each user's last event reads the entity fraud counts as known now (every
    label decided so far; analyst/store/signals.py `attach`), as a new event would; False scores
    with the causal values of training. Measured by bench/scoring_view.py (README, Measured).

    Cases go to the riskiest users without a label yet: the top `budget` users, or the top
    `top_pct` percent when given. With `mix` (an `analyst.sampling.QueueMix`) the label queue
    mixes high-risk, uncertain and random-control cases instead (`why` says which); its
    `mix.budget` is the number of cases (`top_pct`, when given, replaces it; `budget` is then
    unused), users with a label or an undecided case are never drawn, and the draw (sizes,
    control weight, threshold) is kept in the audit trail as action "queue_draw".
    Explanations of opened cases are computed now and stored with the model version (frozen
    at alert time).
    """
    _check_queue_args(top_pct, mix)
    if on_progress:
        on_progress(0.05, "loading events")
    if model.reads_signals:
        store.refresh_signals()
    store.refresh_links()   # cases opened now can be read with their linked accounts
    known_at = utcnow() if scoring_view and model.reads_signals else None
    events = store.events(signals=model.reads_signals, known_at=known_at)
    if on_progress:
        on_progress(0.15, f"scoring {events['user_id'].nunique():,} users")
    scores = model.scorer.score_users(events, progress=progress)
    return store_and_open(store, explanations, model, scores, budget=budget, top_pct=top_pct,
                          explain_cases=explain_cases, on_progress=on_progress, mix=mix)


def store_and_open(store: Store, explanations: Explanations, model: ModelHandle, scores: pd.DataFrame, *,
                   budget: int | None = DEFAULT_ALERT_BUDGET, top_pct: float | None = None,
                   explain_cases: bool = True, on_progress: ProgressFn | None = None,
                   mix: QueueMix | None = None) -> dict:
    """Store `scores` (user_id, score, ...: `Scorer.score_users` by `model`, in this process or
    on Ray) and open cases as `score_all` describes; returns {"version", "scored", "opened"}."""
    _check_queue_args(top_pct, mix)
    store.add_scores(scores, model.version)
    labelled = store.labelled_user_ids()
    n_open = int(np.ceil(len(scores) * top_pct / 100)) if top_pct is not None else int(budget or 0)
    if mix is None:
        candidates = scores[~scores["user_id"].isin(labelled)].sort_values("score", ascending=False)
        chosen = candidates.head(n_open).assign(why="high_risk")
    else:
        if top_pct is not None:
            mix = replace(mix, budget=max(n_open, 1))
        supervised = getattr(model.scorer, "mode_", "supervised") != "surprise"
        chosen, record = queue_draw(scores, labelled | store.busy_user_ids(), mix, use_head=supervised)
        store.add_audit("system", "queue_draw", new=model.version, detail=record)
    reasons: dict[str, str] = {}
    if explain_cases:
        for i, user_id in enumerate(chosen["user_id"]):
            if on_progress:
                on_progress(0.5 + 0.5 * i / max(len(chosen), 1), f"explaining case {i + 1}/{len(chosen)}")
            exp = explanations.explanation(model, str(user_id))
            reasons[str(user_id)] = exp.reasons[0] if exp.reasons else ""
    opened = store.open_cases(
        pd.DataFrame({
            "user_id": chosen["user_id"].astype(str),
            "score": chosen["score"].astype(float),
            "why": chosen["why"].astype(str),
            "top_reason": [reasons.get(str(u), "") for u in chosen["user_id"]],
        }),
        model.version,
    )
    if on_progress:
        on_progress(1.0, f"scored {len(scores):,} users, opened {opened} cases")
    return {"version": model.version, "scored": int(len(scores)), "opened": int(opened)}


def score_on_ray(store: Store, explanations: Explanations, model: ModelHandle, model_path: str,
                 events_dir: str, out_dir: str, *, actors: int = 2, address: str | None = None,
                 device: str = "auto", **open_kwargs: Any) -> dict:
    """Score an export (`sleuth export --parquet`) with `model` on Ray Data into `out_dir`
    (analyst/service/ray_scoring.py), then store the scores and open cases as `score_all`.
    ValueError (one line) when the export holds users the store does not know, or misses
    some it does (export again after new events arrive)."""
    from analyst.service.export import read_manifest
    from analyst.service.ray_scoring import score_export

    if model.reads_signals and not read_manifest(events_dir)["signals"]:
        raise ValueError(f"model {model.version} reads the signal columns but the export {events_dir!r} "
                         "has none: export with signals (the default)")
    store.refresh_links()
    done, scores = score_export(events_dir, out_dir, model_path=model_path, version=model.version,
                                actors=actors, address=address, device=device)
    known = set(store.users()["user_id"].astype(str))
    unknown = sorted(set(scores["user_id"].astype(str)) - known)
    if unknown:
        raise ValueError(f"the export scores user {unknown[0]!r} ({len(unknown)} in all) that this store "
                         "does not hold: export from this store")
    if len(scores) < len(known):
        raise ValueError(f"the export holds {len(scores):,} of the store's {len(known):,} users: "
                         "export again (`sleuth export --parquet DIR`)")
    result = store_and_open(store, explanations, model, scores[["user_id", "score"]], **open_kwargs)
    return {**result, "engine": "ray", "actors": actors, "seconds": done["seconds"],
            "device": done["device"]}
