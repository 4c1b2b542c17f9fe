"""`generate`: one seeded run, in a fixed order of random draws (normal behaviour, the planted
fraud, then the id shuffles of `output.frames`), so the same config gives identical frames."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analyst.synthetic.config import SyntheticConfig
from analyst.synthetic.normal import _normal_behaviour
from analyst.synthetic.output import frames
from analyst.synthetic.patterns import plant
from analyst.synthetic.world import _Ids, _Log


def generate(config: SyntheticConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthetic (events, labels) for `config`; the same config gives identical frames."""
    if not isinstance(config, SyntheticConfig):
        raise ValueError(f"config={config!r}: expected a SyntheticConfig")
    rng = np.random.default_rng(config.seed)
    world = _normal_behaviour(rng, int(config.n_users), int(config.days), _Log(), _Ids())
    pattern = plant(world, config.fraud_rate, config.patterns)
    return frames(world, pattern, pd.Timestamp(config.start))
