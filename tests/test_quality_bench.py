"""bench/quality.py's protocol and JSON, smoke-tested with the gradient-boosting stand-in model
(`--model gradient_boosting`) on a small generated set; the encoder's figures come from full runs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bench" / "quality.py"), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def test_few_and_zero_label_parts_print_evaluate_json(tmp_path) -> None:
    out = tmp_path / "q.json"
    proc = run("--quick", "--model", "gradient_boosting", "--n-users", "1500", "--only", "few_labels,zero_labels",
               "--few-labels", "300", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == result
    assert set(result) == {"few_labels", "zero_labels", "meta"}
    few, zero = result["few_labels"], result["zero_labels"]
    assert few["sampling"].startswith("300 train users")
    assert few["n_train"] == 300 and few["positives_train"] >= 5
    assert "label-budget point (300 labels)" in few["targets"]["note"]   # the 0.75 target is for 200
    assert 0.0 <= few["model"]["auprc"] <= 1.0 and few["model"]["auprc"] > few["positives_test"] / few["n_test"]
    assert set(zero["targets"]) == {"model_auroc_min", "pass"} and zero["model"]["auroc"] > 0.5


def test_an_unknown_part_is_refused() -> None:
    proc = run("--only", "synthetic,colour")
    assert proc.returncode == 2 and "unknown part(s) ['colour']" in proc.stderr
