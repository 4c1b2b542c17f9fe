"""What to generate: `SyntheticConfig`, checked on construction (ValueError naming the field)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyst.synthetic.patterns import PATTERNS


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate: users, seed, share of fraud users, observed window, fraud patterns."""

    n_users: int = 2000
    seed: int = 7
    fraud_rate: float = 0.03
    start: str = "2026-09-01"      # first day of the observed window (UTC)
    days: int = 30
    patterns: tuple[str, ...] = tuple(PATTERNS)

    def __post_init__(self) -> None:
        if not isinstance(self.n_users, (int, np.integer)) or not 1 <= self.n_users <= 999_999:
            raise ValueError(f"n_users={self.n_users!r}: expected an integer in 1..999999")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r}: expected a non-negative integer")
        if not 0.0 <= float(self.fraud_rate) < 1.0:
            raise ValueError(f"fraud_rate={self.fraud_rate!r}: expected 0 <= fraud_rate < 1")
        if not isinstance(self.days, (int, np.integer)) or not 2 <= self.days <= 366:
            raise ValueError(f"days={self.days!r}: expected an integer in 2..366")
        try:
            ts = pd.Timestamp(self.start)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"start={self.start!r}: expected a date such as '2026-09-01'") from exc
        if ts is pd.NaT or ts.tzinfo is not None:
            raise ValueError(f"start={self.start!r}: expected a naive UTC date such as '2026-09-01'")
        unknown = [p for p in self.patterns if p not in PATTERNS]
        if unknown or len(set(self.patterns)) != len(self.patterns):
            raise ValueError(
                f"patterns={self.patterns!r}: expected distinct names from {list(PATTERNS)}")
        if self.fraud_rate > 0 and not self.patterns:
            raise ValueError(f"patterns={self.patterns!r}: fraud_rate > 0 needs at least one pattern")
