"""Batch scoring on Ray Data (issue 16): an export directory (analyst/service/export.py) in, a
scores directory out, one model version loaded once per actor. Ray is optional
(`pip install -e ".[ray]"`); nothing here imports it until a run starts.

The pipeline: `ray.data.from_items` over the export's files (one row, one block per file) ->
`map_batches(UserScorer, compute=ActorPoolStrategy(size=actors))` with one file per batch:
the actor reads the file and scores every user in it with `Scorer.score_users`, exactly as
the in-process path scores the frame `Store.events` returns -> `write_parquet(out_dir)`.

Why files and not `ray.data.read_parquet` rows: a user's events must reach one scorer whole, and
read_parquet's blocks (and map_batches' batches) are cut by size, not by user: measured before
this was built, 67 of 4,000 users were scored twice from halves. The export keeps a user inside
one file, so a file is the unit; use more partitions than actors to keep every actor busy.

Resources per actor: `num_gpus=1` when the cluster has GPUs (device "auto" or "cuda"), else a
fraction of a CPU (`cpus / (actors + 1)`, at most 1): Ray's own tasks (the write) must still find a
CPU - two actors holding both CPUs of a 2-CPU Ray hung for 17 minutes. Each actor runs torch on
`threads` threads (default: the machine's cores / actors).

`out_dir` gets the Ray-written `*.parquet` files (user_id, score, head_logit, surprise,
n_events, as_of, partition file) and `sleuth-scores.json` (version, model path, the export's
manifest, users, seconds); `read_scores` loads them back for the store.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from analyst.service.export import new_directory, read_manifest

SCORES_MANIFEST = "sleuth-scores.json"
SCORE_COLUMNS = ("user_id", "score", "head_logit", "surprise", "n_events", "as_of")


class UserScorer:
    """A Ray Data actor: loads one saved Scorer once, then scores whole export files."""

    def __init__(self, model_path: str, events_dir: str, device: str = "cpu", threads: int = 1) -> None:
        import torch

        from models.scorer import Scorer

        torch.set_num_threads(max(1, int(threads)))
        self.scorer = Scorer.from_pretrained(model_path, device=device)
        self.events_dir = Path(events_dir)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        frames = []
        for name in batch["file"]:
            events = pd.read_parquet(self.events_dir / str(name))
            scores = self.scorer.score_users(events)
            frames.append(scores[list(SCORE_COLUMNS)].assign(file=str(name)))
        return pd.concat(frames, ignore_index=True)


def score_export(events_dir: str | Path, out_dir: str | Path, *, model_path: str | Path, version: str,
                 actors: int = 2, address: str | None = None, device: str = "auto",
                 threads: int | None = None) -> tuple[dict, pd.DataFrame]:
    """Score every user of an export with Ray Data (see the module docstring); returns the
    scores manifest and the scores (as `read_scores`). `address`: an existing Ray cluster
    ("auto", "ray://host:10001"); without it a local Ray is started on this machine's CPUs and
    stopped at the end."""
    try:
        import ray
    except ImportError as exc:
        raise ValueError('engine "ray" needs Ray: pip install -e ".[ray]"') from exc
    if not isinstance(actors, int) or isinstance(actors, bool) or actors < 1:
        raise ValueError(f"actors={actors!r}: expected a positive integer")
    events_dir = Path(events_dir)
    manifest = read_manifest(events_dir)
    with new_directory(out_dir) as partial:      # a used out_dir fails before Ray starts
        started = not ray.is_initialized()
        if started:
            ray.init(address=address, num_cpus=None if address else os.cpu_count(), include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        t0 = time.perf_counter()
        try:
            resources = _actor_resources(ray.cluster_resources(), actors, device)
            device_used = resources.pop("device")
            kwargs = {"model_path": str(model_path), "events_dir": str(events_dir.resolve()),
                      "device": device_used, "threads": threads or max(1, (os.cpu_count() or 1) // actors)}
            ds = ray.data.from_items([{"file": f} for f in manifest["files"]],
                                     override_num_blocks=max(1, len(manifest["files"])))
            ds = ds.map_batches(UserScorer, fn_constructor_kwargs=kwargs, batch_size=1, batch_format="pandas",
                                compute=ray.data.ActorPoolStrategy(size=actors), **resources)
            ds.write_parquet(str(partial))
        finally:
            if started:
                ray.shutdown()
        scores = read_scores_files(partial)
        done = {"version": str(version), "model_path": str(model_path), "users": int(len(scores)),
                "actors": actors, "seconds": round(time.perf_counter() - t0, 2), "export": manifest,
                "address": address, "actor_resources": resources, "device": device_used}
        (partial / SCORES_MANIFEST).write_text(json.dumps(done, indent=1))
    return done, scores


def _actor_resources(cluster: dict[str, Any], actors: int, device: str) -> dict[str, Any]:
    """Ray resources per scorer actor, and the torch device it uses (see the module docstring)."""
    if device in ("auto", "cuda") and float(cluster.get("GPU", 0)) >= 1:
        return {"num_gpus": 1, "num_cpus": 1, "device": "cuda"}
    if device == "cuda":
        raise ValueError("device='cuda': the Ray cluster has no GPU")
    cpus = float(cluster.get("CPU", 1))
    share = min(1.0, cpus / (actors + 1))
    return {"num_cpus": max(0.01, round(share, 2)), "device": "cpu"}


def read_scores_files(scores_dir: str | Path) -> pd.DataFrame:
    """The scores a Ray run wrote, one row per user, sorted by user_id (ValueError if a user
    was scored twice: the export's files must not share users)."""
    files = sorted(Path(scores_dir).glob("*.parquet"))
    if not files:
        raise ValueError(f"{str(scores_dir)!r} holds no scores (*.parquet)")
    scores = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    twice = scores["user_id"][scores["user_id"].duplicated()]
    if len(twice):
        raise ValueError(f"user {twice.iloc[0]!r} was scored more than once ({len(twice)} users)")
    return scores.sort_values("user_id", ignore_index=True)


def read_scores(scores_dir: str | Path) -> tuple[dict, pd.DataFrame]:
    """(manifest, scores) of a finished scores directory (ValueError, one line, if it is not one)."""
    path = Path(scores_dir) / SCORES_MANIFEST
    if not path.is_file():
        raise ValueError(f"{str(scores_dir)!r} is not a sleuth scores directory (no {SCORES_MANIFEST})")
    return json.loads(path.read_text()), read_scores_files(scores_dir)
