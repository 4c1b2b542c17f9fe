"""Demo mode's reveal: the synthetic ground truth that planted events carry in `attrs`."""
from __future__ import annotations

import json

import pandas as pd


def ground_truth(timeline: pd.DataFrame) -> dict:
    """Synthetic ground truth carried in `attrs` ({"planted": pattern}) of the window's events:
    label (1 when any event was planted), the patterns, and the planted events' row positions."""
    planted: list[int] = []
    patterns: set[str] = set()
    for i, raw in enumerate(timeline["attrs"]):
        if not isinstance(raw, str) or not raw:
            continue
        pattern = json.loads(raw).get("planted")
        if pattern:
            planted.append(i)
            patterns.add(str(pattern))
    return {"label": int(bool(planted)), "patterns": sorted(patterns), "planted_events": planted}
