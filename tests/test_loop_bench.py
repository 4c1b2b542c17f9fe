"""bench/loop.py (label feedback loop simulation) runs end to end and prints its JSON schema."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = {"d_model": 16, "max_events": 24, "pretrain_epochs": 1, "finetune_epochs": 1, "min_positives": 3}


def test_loop_bench_prints_the_json_schema() -> None:
    rounds, per_round = 2, 15
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "loop.py"), "--quick", "--users", "200", "--rounds", str(rounds),
         "--per-round", str(per_round), "--scorer-json", json.dumps(TINY)],
        capture_output=True, text=True, timeout=170, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[loop]" in proc.stderr, "progress goes to stderr"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["users"] == 200 and result["rounds"] == rounds and result["per_round"] == per_round
    assert result["scorer"]["d_model"] == 16 and result["scorer"]["n_layers"] == 1, "--quick, then --scorer-json"
    assert 0.0 <= result["auprc_start"] <= 1.0
    assert 0.0 <= result["holdout_precision_at_100_start"] <= 1.0
    assert result["holdout_positives"] >= 1
    for strategy in ("mix", "top_only"):
        run = result[strategy]
        for key in ("precision_at_100", "auprc", "holdout_precision_at_100", "precision_top", "frauds_found",
                    "base_rate_true"):
            assert len(run[key]) == rounds, (strategy, key)
        assert all(0.0 <= v <= 1.0 for v in run["precision_at_100"] + run["auprc"])
        assert run["frauds_found"] == sorted(run["frauds_found"])
    assert all(v is not None and 0.0 <= v <= 1.0 for v in result["mix"]["base_rate_est"])
    assert all(lo <= est <= hi for (lo, hi), est in zip(result["mix"]["base_rate_ci"], result["mix"]["base_rate_est"]))
    assert result["top_only"]["base_rate_est"] == [None] * rounds, "top-only has no control sample"
    assert result["top_only"]["precision_top"] == result["top_only"]["precision_at_100"]


def test_loop_bench_refuses_unknown_scorer_fields() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "loop.py"), "--quick", "--scorer-json", '{"colour": 1}'],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert proc.returncode != 0 and "colour" in proc.stderr
