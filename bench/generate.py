"""Time the synthetic generator: `python bench/generate.py [--users N] [--seed S]`.

Prints progress lines, then one JSON line last:
{"users": N, "events": E, "seconds": s, "cpu_seconds": c, "events_per_user": E/N, "fraud_users": F}
(seconds: wall clock; cpu_seconds: this process's CPU time, a steadier figure on a busy machine).
Goal (issue section 4): 100,000 users in under 60 s on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyst.synthetic import SyntheticConfig, generate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    config = SyntheticConfig(n_users=args.users, seed=args.seed)
    print(f"generating {args.users:,} users (seed {args.seed}) ...", file=sys.stderr)
    t0, c0 = time.perf_counter(), time.process_time()
    events, labels = generate(config)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"users": args.users, "events": len(events), "seconds": round(seconds, 2),
                      "cpu_seconds": round(cpu, 2),
                      "events_per_user": round(len(events) / args.users, 1),
                      "fraud_users": int(labels["label"].sum())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
