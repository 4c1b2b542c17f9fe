"""A train killed with SIGKILL (issue 15): the current model never changes, nothing half-registered,
and the directory it left is removed by the next train of the same store - but never a running
train's, another store's, or one without an owner file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from analyst.service import Workbench
from analyst.service.model_files import OWNER_FILE, partial_dir, sweep_orphans
from tests.conftest import tiny_scorer_config

ROOT = Path(__file__).resolve().parents[1]

# Trains in a child process and SIGKILLs itself at one step: while the files are written, or when
# the finished directory is moved into place inside the registering transaction.
CHILD = textwrap.dedent("""
    import os, signal, sys, warnings, pathlib
    from analyst.config import Settings
    from analyst.service import Workbench
    from models.scorer import Scorer
    from tests.conftest import tiny_scorer_config

    step = sys.argv[2]
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    if step == "save":
        real_save = Scorer.save_pretrained
        def save_then_die(self, path):
            real_save(self, path)
            die()
        Scorer.save_pretrained = save_then_die
    else:
        pathlib.Path.rename = die
    wb = Workbench(Settings.from_env(env={"SLEUTH_HOME": sys.argv[1]}))
    warnings.simplefilter("ignore")
    wb.train(config=tiny_scorer_config(), progress=False)
""")


def train_and_kill(home: Path, step: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", CHILD, str(home), step], cwd=ROOT, env=env,
                          timeout=300).returncode


def listing(model_dir: Path) -> set[str]:
    return {p.name for p in model_dir.iterdir()}


@pytest.mark.parametrize("step", ["save", "register"])
def test_a_killed_train_changes_nothing_and_the_next_train_sweeps_what_it_left(home_copy, step):
    with Workbench(home_copy) as wb:
        before_models = wb.store.models()[["version", "status"]].to_dict("records")
    before_files = listing(home_copy.model_dir)

    assert train_and_kill(home_copy.home, step) == -signal.SIGKILL

    left = listing(home_copy.model_dir) - before_files
    assert len(left) == 1 and next(iter(left)).endswith(".partial")   # never a bare version dir
    with Workbench(home_copy) as wb:
        assert wb.store.models()[["version", "status"]].to_dict("records") == before_models
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            new = wb.train(config=tiny_scorer_config(), progress=False)
        assert listing(home_copy.model_dir) == before_files | {new}     # swept, and the new one
        assert wb.store.model(new)["path"] == str(home_copy.model_dir / new)


def test_the_sweep_spares_running_trains_other_stores_and_unowned_directories(tmp_path):
    model_dir, db = tmp_path / "models", tmp_path / "a.duckdb"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    killed = partial_dir(model_dir, "v1", db)                       # its owner process has exited
    owner = json.loads((killed / OWNER_FILE).read_text())
    (killed / OWNER_FILE).write_text(json.dumps({**owner, "pid": int(dead)}))
    running = partial_dir(model_dir, "v2", db)                      # owned by this live process
    other_store = partial_dir(model_dir, "v3", tmp_path / "b.duckdb")
    o = json.loads((other_store / OWNER_FILE).read_text())
    (other_store / OWNER_FILE).write_text(json.dumps({**o, "pid": int(dead)}))
    unowned = model_dir / "v4"
    unowned.mkdir()
    registered = model_dir / "v5"
    registered.mkdir()
    (registered / OWNER_FILE).write_text(json.dumps({**owner, "pid": int(dead), "version": "v5"}))

    removed = sweep_orphans(model_dir, db, registered={"v5"})
    assert removed == [killed]
    assert listing(model_dir) == {running.name, other_store.name, "v4", "v5"}
