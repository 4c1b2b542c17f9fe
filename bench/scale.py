"""Scale-out and streaming (issue 16): batch users/s in-process vs Ray Data with 1 and 2 actors,
and streaming latency from produce to updated score through a real Kafka-protocol broker.

The store: `--users` synthetic users (seed `--seed`) with the default model size (ScorerConfig(),
d_model 128, 2 layers, 256 events), trained for `--epochs` epochs of each phase only (speed does
not depend on how well it is trained). Store and model are cached in bench/.cache/scale-*.

- `inprocess_users_per_s`: `Store.events` (with signals, scoring-time view) + `Scorer.score_users`
  over every user, torch on all cores: what `sleuth score` does before storing.
- `ray_<n>_users_per_s`: `score_export` over `sleuth export --parquet` files (16 partitions) on a
  local Ray with n actors, from the pipeline's start (actors load the model) to the scores
  written; `ray_<n>_per_actor_users_per_s` = that / n. Ray's own start (`ray.init`) is reported
  apart (`ray_init_s`): a long-lived cluster pays it once.
- `per_core_ratio_2_actors`: (Ray 2 actors per CPU core) / (in-process per core), both on this
  machine's cores; the goal is >= 0.8 (within 20%).
- Streaming: a Tansu broker (tests/kafka_broker.py), a topic of 2 partitions, `StreamWorker` in a
  thread (cases opened with explanations, as the app would). A producer sends `--rate` events/s
  for `--seconds` s to random users (each event stamped when produced), then a burst of
  `--burst` events at once. `stream_p50_ms` / `stream_p95_ms`: produce -> that user's new score
  stored, steady part; `burst_p50_ms` / `burst_p95_ms` / `burst_drain_s` for the burst. Goal:
  stream p95 <= 2 s on 2 cores.

Prints one JSON line last. Usage: python bench/scale.py [--users 4000] [--seed 11] [--rate 200]
[--seconds 30] [--burst 1000] [--skip-ray] [--skip-stream]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analyst.config import Settings  # noqa: E402
from analyst.service import Workbench  # noqa: E402
from analyst.store import utcnow  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"


def build(home: Path, users: int, seed: int, epochs: int) -> None:
    """A store of `users` synthetic users, their labels and a default-size model (cached)."""
    from analyst.synthetic import SyntheticConfig, generate
    from models.scorer import ScorerConfig

    if (home / "done").exists():
        return
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    with Workbench(Settings.from_env(env={"SLEUTH_HOME": str(home)})) as wb:
        events, labels = generate(SyntheticConfig(n_users=users, seed=seed))
        wb.store.add_events(events)
        wb.store.add_labels(labels)
        wb.train(config=ScorerConfig(pretrain_epochs=epochs, finetune_epochs=epochs), progress=True)
        wb.score(budget=50, explain_cases=False)
    (home / "done").write_text("ok\n")


def in_process(wb: Workbench) -> dict:
    model = wb.model()
    wb.store.refresh_signals()
    t0 = time.perf_counter()
    events = wb.store.events(signals=model.reads_signals, known_at=utcnow())
    read_s = time.perf_counter() - t0
    scores = model.scorer.score_users(events, progress=False)
    seconds = time.perf_counter() - t0
    return {"users": int(len(scores)), "inprocess_s": round(seconds, 2), "inprocess_read_s": round(read_s, 2),
            "inprocess_users_per_s": round(len(scores) / seconds, 1)}


def on_ray(wb: Workbench, work: Path, actors_list: list[int]) -> dict:
    import ray

    from analyst.service.ray_scoring import score_export

    export = work / "export"
    wb.export_events(export, partitions=16)
    model = wb.model()
    path = wb.store.model(model.version)["path"]
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    out = {"ray_init_s": round(time.perf_counter() - t0, 2)}
    try:
        for n in actors_list:
            done, scores = score_export(export, work / f"scores-{n}", model_path=path, version=model.version,
                                        actors=n, device="cpu")
            out[f"ray_{n}_s"] = done["seconds"]
            out[f"ray_{n}_users_per_s"] = round(len(scores) / done["seconds"], 1)
            out[f"ray_{n}_per_actor_users_per_s"] = round(len(scores) / done["seconds"] / n, 1)
    finally:
        ray.shutdown()
    return out


def streaming(wb: Workbench, rate: float, seconds: float, burst: int) -> dict:
    from tests import kafka_broker

    from confluent_kafka import Producer

    users = wb.store.users()["user_id"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    results, lock = [], threading.Lock()

    def keep(result) -> None:
        with lock:
            results.append(result)

    with kafka_broker.broker("bench-events", partitions=2) as bootstrap:
        worker = wb.stream_worker(f"kafka://{bootstrap}/bench-events", on_batch=keep)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        start = pd.Timestamp.utcnow().tz_localize(None)

        def send(i: int) -> None:
            user = str(rng.choice(users))
            kind = ["view", "search", "cart", "payment", "login"][i % 5]
            event = {"user_id": user, "ts": (start + pd.Timedelta(milliseconds=i)).isoformat(),
                     "event_type": kind, "amount": 20.0 + i % 50 if kind == "payment" else None,
                     "device_id": f"bench_dev_{i % 97}"}
            producer.produce("bench-events", key=user, value=json.dumps(event))
            producer.poll(0)

        t0 = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):                                  # a steady rate
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            send(i)
        producer.flush(30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(len(r.latency_ms) for r in list(results)) < n:
            time.sleep(0.05)
        with lock:
            steady_until = len(results)             # batches up to here are the steady part
        tb = time.perf_counter()
        for i in range(n, n + burst):                       # everything at once
            send(i)
        producer.flush(30)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(len(r.latency_ms) for r in list(results)) < n + burst:
            time.sleep(0.05)
        drain = time.perf_counter() - tb
        worker.request_stop()
        thread.join(60)
        worker.source.close()
    steady = np.concatenate([r.latency_ms for r in results[:steady_until]] or [np.empty(0)])
    burst_lat = np.concatenate([r.latency_ms for r in results[steady_until:]] or [np.empty(0)])
    batches = results[:steady_until]
    return {
        "stream_rate_per_s": rate, "stream_events": int(len(steady)),
        "stream_p50_ms": round(float(np.percentile(steady, 50)), 1) if len(steady) else None,
        "stream_p95_ms": round(float(np.percentile(steady, 95)), 1) if len(steady) else None,
        "stream_batches": len(batches),
        "stream_mean_batch_events": round(float(np.mean([r.events for r in batches])), 1) if batches else None,
        "stream_store_p50_ms": round(1000 * float(np.median([r.stored_s for r in batches])), 1) if batches else None,
        "stream_rescore_p50_ms": round(1000 * float(np.median([r.scored_s for r in batches])), 1) if batches else None,
        "burst_events": int(len(burst_lat)),
        "burst_p50_ms": round(float(np.percentile(burst_lat, 50)), 1) if len(burst_lat) else None,
        "burst_p95_ms": round(float(np.percentile(burst_lat, 95)), 1) if len(burst_lat) else None,
        "burst_drain_s": round(drain, 2),
        "cases_opened": int(sum(len(r.opened) for r in results)),
        "risk_changed_marks": int(sum(len(r.changed) for r in results)),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-stream", action="store_true")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    cached = CACHE / f"scale-{args.users}-{args.seed}"
    build(cached, args.users, args.seed, args.epochs)
    work = Path(tempfile.mkdtemp(prefix="sleuth-scale-"))
    try:
        home = work / "home"
        shutil.copytree(cached, home)
        out: dict = {"users": args.users, "seed": args.seed, "cores": os.cpu_count(),
                     "load_1m": round(os.getloadavg()[0], 2)}
        with Workbench(Settings.from_env(env={"SLEUTH_HOME": str(home)})) as wb:
            out.update(in_process(wb))
            if not args.skip_ray:
                out.update(on_ray(wb, work, [1, 2]))
                cores = os.cpu_count() or 1
                per_core_local = out["inprocess_users_per_s"] / cores
                out["per_core_ratio_2_actors"] = round(out["ray_2_users_per_s"] / cores / per_core_local, 3)
            if not args.skip_stream:
                out.update(streaming(wb, args.rate, args.seconds, args.burst))
        print(json.dumps(out))
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
