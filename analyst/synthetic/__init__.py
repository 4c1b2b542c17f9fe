"""Seeded generator of realistic e-commerce behaviour with named, planted fraud patterns.

`generate(SyntheticConfig(...))` returns `(events, labels)`: an events frame with exactly the
columns of `models.contracts.EVENT_COLUMNS` (in that order), sorted by (user_id, ts), and one
label row per user (`source="synthetic"`, `pattern` naming the fraud pattern of each positive).
`write` stores both as zstd Parquet. Same config (seed included) -> identical frames.

Everything is vectorised over users with numpy (one `Generator`, draws in a fixed order); strings
are made only at the end by pyarrow from integer codes. 100k users (~10.8M events) take well
under a minute on two cores (bench/generate.py).

Modules, each with one job (bottom to top):

- `world`: vocabularies (`EVENT_TYPES`, statuses, payment methods), the Taobao calibration and
  platform constants, countries and catalogue, and the integer-coded event log (`_Log`, `_COLS`)
  with the per-user `_World` the patterns build on;
- `draws`: ragged-array helpers and the random draws both sides share (items, prices, queries,
  ips, cards), plus a fraud session's context and a checkout + payment;
- `normal`: normal behaviour, calibrated on the real Taobao sample (its docstring says how);
- `patterns`: the fraud patterns and `REGISTRY`, the one table everything about them is derived
  from (`PATTERNS`, codes, the config's choices, labels); adding one is a function plus an entry;
- `config`: `SyntheticConfig`, checked on construction;
- `output`: the log to the events / labels frames, and `write`;
- `generator`: `generate`, the order of it all.
"""
from __future__ import annotations

from analyst.synthetic.config import SyntheticConfig
from analyst.synthetic.generator import generate
from analyst.synthetic.output import write
from analyst.synthetic.patterns import PATTERNS, REGISTRY, Pattern, TargetPool
from analyst.synthetic.world import EVENT_TYPES, PAYMENT_METHODS, STATUSES

__all__ = [
    "EVENT_TYPES", "PATTERNS", "PAYMENT_METHODS", "REGISTRY", "STATUSES", "Pattern", "SyntheticConfig",
    "TargetPool", "generate", "write",
]
