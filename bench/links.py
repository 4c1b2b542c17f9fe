"""Time the linked-accounts use case (`analyst.service.links.links`) on a >= 10M-event store.

    python bench/links.py [--users 100000] [--queries 200] [--data auto|synthetic|numpy]
                          [--max-users 20] [--append-rows R] [--rebuild] [--cache DIR]

The events are bench/timeline.py's cached store (built by its `build` when absent). A copy,
bench/.cache/links-<data>-<users>.duckdb, gets what links read besides events: two model
versions of scores for every user (a retired one and the current one, seeded random risks), 2,000
cases (100 decided) and the link tables (`Store.refresh_links`, timed when built). After 20
warm-up calls, `--queries` random users are timed at depth 1 and at depth 2, each a full
`links()` call (user check, query, records, dict), in wall and CPU ms. `--append-rows R` also
times, on a temporary copy of the store, an incremental refresh after R new events, a no-op
refresh, `add_scores` for every user and a promotion (both keep the links' stored risk current).

Progress goes to stderr; the last line on stdout is one JSON object:
{"events": N, "users": U, "p50_ms": x, "p95_ms": y, "depth2_p50_ms": ..., ...}.
Goal on 2 CPU cores: depth 1 p95 <= 50 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyst.service.links import links  # noqa: E402
from analyst.store import Store  # noqa: E402
from bench.timeline import EVENT_TYPES, build, log  # noqa: E402

N_CASES, N_DECIDED = 2000, 100


def data_source(wanted: str) -> str:
    """bench/timeline.py's choice: the synthetic generator when it imports, else numpy."""
    if wanted != "auto":
        return wanted
    try:
        import analyst.synthetic  # noqa: F401
        return "synthetic"
    except ImportError:
        return "numpy"


def prepare(path: Path, events_path: Path) -> float:
    """Copy the events store and add scores, cases and links; returns the link build seconds."""
    tmp = path.with_name(path.name + ".building")
    shutil.copy(events_path, tmp)
    rng = np.random.default_rng(7)
    with Store(tmp) as store:
        users = store.users()["user_id"].to_numpy()
        for version, status in (("bench-old", "retired"), ("bench-current", "current")):
            store.add_scores(pd.DataFrame({"user_id": users, "score": rng.random(len(users))}), version)
            store.register_model(version, "none", status=status)
        picked = rng.choice(users, N_CASES, replace=False)
        store.open_cases(pd.DataFrame({"user_id": picked, "score": 0.9, "why": "high_risk"}), "bench-current")
        cases = store.cases()
        for case_id in cases["case_id"].head(N_DECIDED):
            store.update_case(int(case_id), status="decided", decision="fraud")
        t0 = time.perf_counter()
        pairs = store.refresh_links()
        seconds = time.perf_counter() - t0
        log(f"link tables: {pairs:,} (value, user) pairs in {seconds:.1f} s")
    tmp.rename(path)
    return seconds


def time_append(path: Path, rows: int, rng: np.random.Generator) -> dict:
    """Seconds of `refresh_links` after `rows` new events of known users (on a copy)."""
    workdir = Path(tempfile.mkdtemp(prefix="sleuth-links-"))
    try:
        copy = workdir / path.name
        shutil.copy(path, copy)
        with Store(copy) as store:
            users = store.users()["user_id"].to_numpy()
            old = store.events(user_ids=list(rng.choice(users, 50)))
            batch = pd.DataFrame({
                "user_id": rng.choice(users, rows),
                "ts": pd.Timestamp("2026-12-01") + pd.to_timedelta(rng.integers(0, 86400, rows), unit="s"),
                "event_type": rng.choice(EVENT_TYPES, rows),
                "device_id": rng.choice(old["device_id"].dropna().to_numpy(), rows),
                "ip": [f"203.0.113.{i % 250}" for i in range(rows)],
            })
            store.add_events(batch)
            t0 = time.perf_counter()
            pairs = store.refresh_links()
            seconds = time.perf_counter() - t0
            t1 = time.perf_counter()
            store.refresh_links()
            noop = time.perf_counter() - t1
            t2 = time.perf_counter()       # what the stored risk adds to a scoring run's write
            store.add_scores(pd.DataFrame({"user_id": users, "score": rng.random(len(users))}), "bench-current")
            scores_s = time.perf_counter() - t2
            t3 = time.perf_counter()       # ... and to a promotion (every user's risk recomputed)
            store.set_model_status("bench-old", "current")
            promote_s = time.perf_counter() - t3
        return {"append_rows": rows, "append_pairs": int(pairs), "append_refresh_s": round(seconds, 2),
                "noop_refresh_ms": round(noop * 1000, 1), "add_scores_all_users_s": round(scores_s, 2),
                "promote_s": round(promote_s, 2)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def measure(store: Store, users: np.ndarray, depth: int, max_users: int, queries: int,
            rng: np.random.Generator) -> dict:
    for u in rng.choice(users, 20):
        links(store, str(u), depth=depth, max_users=max_users)
    wall, cpu, n_entities, n_users = [], [], 0, 0
    for u in rng.choice(users, queries):
        t0, c0 = time.perf_counter(), time.process_time()
        doc = links(store, str(u), depth=depth, max_users=max_users)
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        n_entities += len(doc["entities"])
        n_users += sum(len(e["users"]) for e in doc["entities"])
    log(f"depth {depth}: {queries} calls, {n_entities / queries:.0f} entities and "
        f"{n_users / queries:.0f} listed users per call on average")
    p = "" if depth == 1 else "depth2_"
    return {p + "p50_ms": round(float(np.percentile(wall, 50)), 2),
            p + "p95_ms": round(float(np.percentile(wall, 95)), 2),
            p + "p99_ms": round(float(np.percentile(wall, 99)), 2),
            p + "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 2),
            p + "cpu_p95_ms": round(float(np.percentile(cpu, 95)), 2),
            p + "entities_per_call": round(n_entities / queries, 1),
            p + "listed_users_per_call": round(n_users / queries, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--data", choices=["auto", "synthetic", "numpy"], default="auto")
    parser.add_argument("--max-users", type=int, default=20)
    parser.add_argument("--append-rows", type=int, default=0)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the links store (not the events)")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    source = data_source(args.data)
    events_path = args.cache / f"timeline-{source}-{args.users}.duckdb"
    if not events_path.exists():
        build(events_path, source, args.users)
    path = args.cache / f"links-{source}-{args.users}.duckdb"
    build_s = None
    if args.rebuild or not path.exists():
        build_s = prepare(path, events_path)
    else:
        log(f"reusing {path}")

    extra = time_append(path, args.append_rows, np.random.default_rng(1)) if args.append_rows else {}
    rng = np.random.default_rng(0)   # the same users whether or not --append-rows ran
    with Store(path, read_only=True) as store:
        counts = store.counts()
        users = store.users()["user_id"].to_numpy()
        result = measure(store, users, 1, args.max_users, args.queries, rng)
        result |= measure(store, users, 2, args.max_users, args.queries, rng)
    print(json.dumps({
        "events": int(counts["events"]), "users": int(counts["users"]), **result,
        "queries": int(args.queries), "max_users": int(args.max_users), "data": source,
        "link_build_s": None if build_s is None else round(build_s, 1), **extra,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
