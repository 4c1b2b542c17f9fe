"""Shared fixtures: a tiny real SLEUTH_HOME (DuckDB file, tiny trained model, scored cases)."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from analyst.config import Settings

SHARED = Path(__file__).resolve().parents[2] / "shared"


def tiny_scorer_config(**overrides):
    """A model small enough to train in seconds on 2 CPU cores."""
    from models.scorer import ScorerConfig

    base = dict(d_model=16, n_layers=1, n_heads=2, max_events=48, pretrain_epochs=1,
                finetune_epochs=2, batch_size=16, seed=0)
    return ScorerConfig(**{**base, **overrides})


def build_home(home: Path, n_users: int = 60, budget: int = 6, seed: int = 3) -> Settings:
    """A SLEUTH_HOME with events, half the labels, a tiny promoted model and `budget` open cases."""
    from analyst.service import Workbench
    from analyst.synthetic import SyntheticConfig, generate

    home.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env(env={"SLEUTH_HOME": str(home)})
    wb = Workbench(settings)
    try:
        events, labels = generate(SyntheticConfig(n_users=n_users, seed=seed, fraud_rate=0.25))
        wb.store.add_events(events)
        wb.store.add_labels(labels.sample(frac=0.5, random_state=0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wb.train(config=tiny_scorer_config(), progress=False)
            wb.score(budget=budget)
    finally:
        wb.close()
    return settings


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory) -> Settings:
    """Built once per test session; copy it (`home_copy`) before writing to it."""
    return build_home(tmp_path_factory.mktemp("tiny_home") / "home")


@pytest.fixture
def home_copy(tiny_home: Settings, tmp_path: Path) -> Settings:
    """A private, writable copy of the tiny home (model files are shared read-only)."""
    target = tmp_path / "home"
    shutil.copytree(tiny_home.home, target)
    return Settings.from_env(env={"SLEUTH_HOME": str(target)})
