"""App latency in a real browser: `python bench/app_latency.py [--runs N] [--users N]`.

Serves app.py with `streamlit run` over a store of synthetic users scored by the default-size
model (d_model 128, 2 layers, 256-event window; trained briefly: latency does not depend on how
well it learned), then drives Debian Chromium (Playwright) and times, from `page.goto` to visible:

- case_stored: `case?user=ID` of a user with a full 256-event window whose explanation is stored,
  until the title and ALL 256 timeline markers of the Plotly chart are drawn;
- case_fresh: the same for users never explained before (the page computes the explanation);
- queue: the landing page until its title and case table are drawn;
- case_next (in the same tab, the analyst's usual path): from a click on "Skip to next case" until
  the next case's title and all its timeline markers are drawn. The bench alternates between the
  two riskiest cases (each skip claims the next one), their explanations stored after the first
  visits. Reported beside the goals, which are about opening a case page, not instead of them.

Every sample is a new tab (a new Streamlit session) of one browser (one analyst's browser); the
server is warmed by one case load first (the model loads once per process). `--profile persistent`
(default) gives that browser a profile directory, like an analyst's own browser: HTTP cache and V8
code cache on disk, so a new tab does not compile Streamlit's and Plotly's JavaScript again.
`--profile incognito` is a fresh in-memory context (what Playwright's new_context() gives; no code
cache): the pessimistic case of a first visit in a private window. The pristine store is built once in
bench/.cache/ (git-ignored) and copied for each run, so "fresh" users are fresh every time. Its name
carries a digest of the explanation method and the scorer defaults: explanations stored by an older
method are recomputed on read, so a stale cache would time "stored" cases as fresh ones.
Progress goes to stderr; one JSON line last on stdout:
{"case_stored_p95_s", "case_fresh_p95_s", "queue_p95_s", "case_next_p95_s", ...p50s, counts, machine}.
Goals (issue): case stored <= 2 s p95, case fresh <= 3 s p95, queue <= 2 s p95.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyst.cli import streamlit_command  # noqa: E402
from analyst.config import Settings  # noqa: E402
from analyst.service import Workbench  # noqa: E402

CACHE = ROOT / "bench" / ".cache" / "app_latency"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WINDOW = 256


def cache_tag() -> str:
    """A short digest of what a stored explanation depends on (method, scorer defaults)."""
    import dataclasses
    import hashlib

    from models.explain import METHOD
    from models.scorer import ScorerConfig

    text = json.dumps([METHOD, dataclasses.asdict(ScorerConfig())], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_home(home: Path, n_users: int, seed: int, n_stored: int) -> dict:
    """Events + half the labels, a default-size model, 30 scored cases, `n_stored` explained users."""
    from analyst.synthetic import SyntheticConfig, generate
    from models.scorer import ScorerConfig

    home.mkdir(parents=True, exist_ok=True)
    wb = Workbench(Settings.from_env(env={"SLEUTH_HOME": str(home)}))
    try:
        log(f"building the bench store in {home}: {n_users} users (seed {seed})")
        events, labels = generate(SyntheticConfig(n_users=n_users, seed=seed))
        wb.store.add_events(events)
        wb.store.add_labels(labels.sample(frac=0.5, random_state=seed))
        config = ScorerConfig(pretrain_epochs=1, finetune_epochs=2, seed=seed)  # default architecture
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            log("training (default architecture, short schedule)")
            wb.train(config=config, progress=False)
            log("scoring and opening 30 cases")
            wb.score(budget=30)
            counts = events.groupby("user_id").size()
            full = sorted(counts[counts >= WINDOW].index)
            if len(full) < n_stored + 4:
                raise SystemExit(f"only {len(full)} users have {WINDOW}+ events: raise --users")
            stored, fresh = full[:n_stored], full[n_stored:]
            for i, user in enumerate(stored):
                log(f"storing explanation {i + 1}/{len(stored)}")
                wb.explanation(user)
    finally:
        wb.close()
    meta = {"stored": stored, "fresh": fresh, "n_users": n_users, "seed": seed}
    (home / "bench_users.json").write_text(json.dumps(meta))
    return meta


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(home: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "SLEUTH_HOME": str(home), "SLEUTH_ANALYST": "bench"}
    env.pop("SLEUTH_DB", None)
    env.pop("SLEUTH_MODELS", None)
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            streamlit_command(port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"streamlit exited {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise SystemExit(f"streamlit not ready in 90 s:\n{log_path.read_text()}")
        time.sleep(0.2)


def time_case(context, url: str, user: str, n_events: int) -> float:
    from playwright.sync_api import expect

    page = context.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(f"{url}/case?user={user}")
        expect(page.get_by_role("heading", name=f"Case: user {user}")).to_be_visible(timeout=120_000)
        points = page.locator(".js-plotly-plot").first.locator("g.cartesianlayer g.trace.scatter path.point")
        expect(points).to_have_count(n_events, timeout=120_000)
        expect(points.first).to_be_visible()
        return time.perf_counter() - t0
    finally:
        page.close()


def event_counts(home: Path) -> dict[str, int]:
    """Events per user in a bench store (read before its server opens it)."""
    wb = Workbench(Settings.from_env(env={"SLEUTH_HOME": str(home)}))
    try:
        return {str(u): int(n) for u, n in wb.store.events().groupby("user_id").size().items()}
    finally:
        wb.close()


def time_next_cases(context, url: str, counts: dict[str, int], n: int, warmup: int = 2) -> list[float]:
    """In one tab: seconds from a click on "Skip to next case" to the next case drawn, n times."""
    import re

    from playwright.sync_api import expect

    page = context.new_page()
    title = page.get_by_role("heading", name=re.compile(r"^Case: user "))
    try:
        page.goto(f"{url}/case?user={next(iter(sorted(counts)))}")
        expect(title).to_be_visible(timeout=120_000)
        times = []
        for i in range(warmup + n):
            before = title.inner_text()
            t0 = time.perf_counter()
            page.get_by_role("button", name="Skip to next case").click()
            expect(title).not_to_have_text(before, timeout=120_000)
            user = title.inner_text().split("user", 1)[1].split()[0]
            points = page.locator(f".st-key-timeline_{user} .js-plotly-plot g.trace.scatter path.point")
            expect(points).to_have_count(min(counts[user], WINDOW), timeout=120_000)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        return times
    finally:
        page.close()


def time_queue(context, url: str) -> float:
    from playwright.sync_api import expect

    page = context.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(url)
        expect(page.get_by_role("heading", name="Case queue")).to_be_visible(timeout=120_000)
        expect(page.get_by_test_id("stDataFrame")).to_be_visible(timeout=120_000)
        return time.perf_counter() - t0
    finally:
        page.close()


def summary(samples: list[float]) -> dict:
    arr = np.asarray(samples, dtype=float)
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p95": round(float(np.percentile(arr, 95)), 3),
            "max": round(float(arr.max()), 3), "n": int(arr.size)}


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the server
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="samples per measure")
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached store")
    parser.add_argument("--profile", choices=("persistent", "incognito"), default="persistent",
                        help="the browser profile (see the module docstring)")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    pristine = CACHE / f"users{args.users}-seed{args.seed}-{cache_tag()}"
    if args.rebuild and pristine.exists():
        shutil.rmtree(pristine)
    if not (pristine / "bench_users.json").exists():
        shutil.rmtree(pristine, ignore_errors=True)
        build_home(pristine, args.users, args.seed, n_stored=4)
    meta = json.loads((pristine / "bench_users.json").read_text())
    counts = event_counts(pristine)
    if len(meta["fresh"]) < args.runs + 1:
        raise SystemExit(f"only {len(meta['fresh'])} fresh users for --runs {args.runs}: raise --users")
    with tempfile.TemporaryDirectory(prefix="sleuth-bench-") as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(pristine, home)  # model paths in the store point at the pristine copy (read only)
        proc, url = serve(home, Path(tmp) / "streamlit.log")
        try:
            with sync_playwright() as pw:
                # one context = one analyst's browser; each page = a new tab (a new Streamlit session)
                viewport = {"width": 1280, "height": 1000}
                if args.profile == "persistent":
                    context = pw.chromium.launch_persistent_context(
                        str(Path(tmp) / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                        viewport=viewport)
                else:
                    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    context = browser.new_context(viewport=viewport)
                warm_user = meta["fresh"][-1]
                log("warming the server (first case load reads the model)")
                warm = time_case(context, url, warm_user, WINDOW)
                stored, fresh, queue = [], [], []
                for i in range(args.runs):
                    stored.append(time_case(context, url, meta["stored"][i % len(meta["stored"])], WINDOW))
                    fresh.append(time_case(context, url, meta["fresh"][i], WINDOW))
                    queue.append(time_queue(context, url))
                    log(f"run {i + 1}/{args.runs}: stored {stored[-1]:.2f}s fresh {fresh[-1]:.2f}s "
                        f"queue {queue[-1]:.2f}s")
                log(f"in one tab: {args.runs} x 'Skip to next case'")
                nxt = time_next_cases(context, url, counts, args.runs)
                context.close()  # a persistent context is its browser; an incognito one closes with it below
                if args.profile == "incognito":
                    browser.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    s, f, q, n = summary(stored), summary(fresh), summary(queue), summary(nxt)
    print(json.dumps({
        "case_stored_p95_s": s["p95"], "case_fresh_p95_s": f["p95"], "queue_p95_s": q["p95"],
        "case_stored": s, "case_fresh": f, "queue": q, "warmup_s": round(warm, 2),
        "case_next_p95_s": n["p95"], "case_next": n,
        "events_per_case": WINDOW, "users": args.users, "cpus": os.cpu_count(), "profile": args.profile,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "goals": {"case_stored_p95_s": 2.0, "case_fresh_p95_s": 3.0, "queue_p95_s": 2.0},
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
