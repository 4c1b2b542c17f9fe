"""Time `Store.timeline()` for random users of a >= 10M-event / 100k-user store.

    python bench/timeline.py [--users 100000] [--queries 300] [--data auto|synthetic|numpy]
                             [--appends K [--append-rows R]] [--rebuild] [--cache DIR]

The store is built once under bench/.cache/ (git-ignored) and reused. Data: `analyst.synthetic`
when it imports (`--data auto`), else a fast numpy builder with the same shape (ids like
"u000123", ~105 events per user, a dozen event types, item / category / device / ip columns).
After 20 warm-up lookups, `--queries` random users are timed, each a full `timeline(user)` call
(cursor, query, Arrow -> pandas), in wall and in CPU time (the machine may be shared: the
JSON also carries the 1-minute load average). `--appends K` first appends K batches of
`--append-rows` new events over random users to a copy of the store, to time the layout with
several sorted runs (the store merges them once there are more than MAX_RUNS).

Progress goes to stderr; the last line on stdout is one JSON object:
{"events": N, "users": U, "p50_ms": x, "p95_ms": y, ...}. Goal on 2 CPU cores: p50 <= 5 ms,
p95 <= 15 ms.
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

from analyst.store import ROW_GROUP_SIZE, Store  # noqa: E402

EVENT_TYPES = np.array(["login", "logout", "search", "view", "cart", "favourite", "checkout",
                        "payment", "refund", "review", "password_change", "address_change"])
EVENT_P = np.array([.07, .04, .12, .50, .07, .04, .04, .04, .01, .02, .02, .03])


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _strings(prefix: str, codes: np.ndarray, n_values: int, null: np.ndarray | None = None) -> pd.Categorical:
    """Strings "<prefix><code>" as a Categorical: no 10M Python strings are built."""
    codes = codes.astype(np.int32)
    if null is not None:
        codes = np.where(null, -1, codes)
    return pd.Categorical.from_codes(codes, categories=[f"{prefix}{i}" for i in range(n_values)])


def numpy_events(n_users: int, seed: int = 1, mean_events: float = 105.0) -> pd.DataFrame:
    """A quick events frame in the schema with the synthetic generator's shape."""
    rng = np.random.default_rng(seed)
    sizes = np.clip(rng.lognormal(np.log(mean_events) - 0.18, 0.6, n_users), 3, 2000).astype(np.int64)
    n = int(sizes.sum())
    user = np.repeat(np.arange(n_users), sizes)
    starts = np.cumsum(sizes) - sizes
    gaps = rng.exponential(3600.0, n)
    csum = np.cumsum(gaps)
    within = csum - np.repeat(csum[starts] - gaps[starts], sizes)
    t0 = rng.uniform(1.75e9, 1.76e9, n_users)
    ts = pd.to_datetime(np.repeat(t0, sizes) + within, unit="s").astype("datetime64[us]")
    etype = rng.choice(len(EVENT_TYPES), n, p=EVENT_P)
    paid = np.isin(EVENT_TYPES[etype], ["checkout", "payment", "refund"])
    ids = [f"u{i:06d}" for i in range(n_users)]
    frame = pd.DataFrame({
        "user_id": pd.Categorical.from_codes(user.astype(np.int32), categories=pd.Index(ids)),
        "ts": ts,
        "event_type": pd.Categorical.from_codes(etype.astype(np.int8), categories=pd.Index(EVENT_TYPES)),
        "session_id": _strings("s", user * 40 + np.minimum(within // 86400, 39).astype(np.int64), 40 * n_users),
        "item_id": _strings("i", rng.zipf(1.3, n) % 200_000, 200_000),
        "category": _strings("c", rng.zipf(1.5, n) % 3000, 3000),
        "amount": np.where(paid, np.round(rng.lognormal(3.5, 1.0, n), 2), np.nan),
        "currency": pd.Categorical(np.where(paid, "EUR", None)),
        "query": _strings("q", rng.integers(0, 5000, n), 5000, EVENT_TYPES[etype] != "search"),
        "device_id": _strings("d", user * 2 + rng.integers(0, 2, n), 2 * n_users),
        "ip": _strings("10.0.0.", rng.integers(0, 250, n), 250),
        "country": _strings("C", rng.integers(0, 30, n), 30),
        "status": pd.Categorical(np.where(paid, "ok", None)),
        "payment_method": _strings("card_", rng.integers(0, 50, n), 50, ~paid),
        "address_id": _strings("a", user, n_users, ~paid),
        "attrs": pd.Series(None, index=range(n), dtype="str"),
    })
    return frame


def make_events(source: str, n_users: int) -> pd.DataFrame:
    if source == "synthetic":
        from analyst.synthetic import SyntheticConfig, generate
        events, _ = generate(SyntheticConfig(n_users=n_users, seed=1))
        return events
    return numpy_events(n_users)


def build(path: Path, source: str, n_users: int) -> None:
    t0 = time.perf_counter()
    events = make_events(source, n_users)
    log(f"generated {len(events):,} events ({source}) in {time.perf_counter() - t0:.1f} s")
    tmp = path.with_name(path.name + ".building")
    tmp.unlink(missing_ok=True)
    t1 = time.perf_counter()
    with Store(tmp) as store:
        store.add_events(events, source=f"bench:{source}")
    tmp.rename(path)
    log(f"stored in {time.perf_counter() - t1:.1f} s -> {path}")


def append_batches(store: Store, users: np.ndarray, k: int, rows: int, rng: np.random.Generator) -> None:
    for i in range(k):
        batch = pd.DataFrame({
            "user_id": rng.choice(users, rows),
            "ts": pd.Timestamp("2026-12-01") + pd.to_timedelta(rng.integers(0, 86400, rows), unit="s"),
            "event_type": rng.choice(EVENT_TYPES, rows),
        })
        t0 = time.perf_counter()
        store.add_events(batch)
        log(f"append {i + 1}/{k}: {time.perf_counter() - t0:.2f} s")


def measure(store: Store, users: np.ndarray, queries: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Wall and CPU (process, all threads) milliseconds per `timeline()` call."""
    for u in rng.choice(users, 20):
        store.timeline(u)
    wall, cpu, rows = [], [], 0
    for u in rng.choice(users, queries):
        t0, c0 = time.perf_counter(), time.process_time()
        rows += len(store.timeline(u))
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    log(f"{queries} lookups, {rows / queries:.0f} events per timeline on average")
    return np.asarray(wall), np.asarray(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--data", choices=["auto", "synthetic", "numpy"], default="auto")
    parser.add_argument("--appends", type=int, default=0)
    parser.add_argument("--append-rows", type=int, default=1000)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached store")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    source = args.data
    if source == "auto":
        try:
            import analyst.synthetic  # noqa: F401
            source = "synthetic"
        except ImportError as exc:
            log(f"analyst.synthetic not importable ({exc}); using the numpy builder")
            source = "numpy"
    path = args.cache / f"timeline-{source}-{args.users}.duckdb"
    if args.rebuild or not path.exists():
        build(path, source, args.users)
    else:
        log(f"reusing {path}")

    rng = np.random.default_rng(0)
    workdir = None
    if args.appends:
        workdir = Path(tempfile.mkdtemp(prefix="sleuth-bench-"))
        shutil.copy(path, workdir / path.name)
        path = workdir / path.name
    try:
        with Store(path, read_only=not args.appends) as store:
            counts = store.counts()
            users = store.users()["user_id"].to_numpy()
            if args.appends:
                append_batches(store, users, args.appends, args.append_rows, rng)
                counts = store.counts()
            ms, cpu = measure(store, users, args.queries, rng)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({
        "events": int(counts["events"]), "users": int(counts["users"]),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 2),
        "cpu_p95_ms": round(float(np.percentile(cpu, 95)), 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "queries": int(args.queries), "data": source, "appends": int(args.appends),
        "append_rows": int(args.append_rows) if args.appends else 0,
        "row_group_size": ROW_GROUP_SIZE,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
