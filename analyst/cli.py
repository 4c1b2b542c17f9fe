"""The `sleuth` command: one verb per use case, each a thin call into ingest / synthetic / service.

Every verb takes `--db PATH` (default: $SLEUTH_DB, else $SLEUTH_HOME/sleuth.duckdb). Long work shows
a progress bar; bad input ends with one line on stderr (`sleuth: error: ...`) and exit status 2.
Heavy imports (torch, streamlit) happen inside the verbs so `sleuth --help` stays instant.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from analyst.config import REPO_ROOT, Settings

DEMO_HISTORY_FRACTION = 0.4   # share of sample users whose ground truth the demo loads as past outcomes
DEMO_HISTORY_SEED = 2026
DEFAULT_UNCERTAIN_SHARE = 0.2  # `sleuth score --mix`: share of the budget near the alert cut / disagreeing
DEFAULT_CONTROL_SHARE = 0.2    # `sleuth score --mix`: share drawn uniformly from the unflagged users


class CliError(Exception):
    """A user-facing failure: printed as one line."""


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(db=getattr(args, "db", None))


def _workbench(args: argparse.Namespace):
    from analyst.service import Workbench

    settings = _settings(args)
    try:
        return Workbench(settings)
    except Exception as exc:
        if "lock" in str(exc).lower():
            raise CliError(f"the store {settings.db_path} is open in another process (is `sleuth app` "
                           "running?): stop it, or work on a copy with --db") from exc
        raise


# ---------------------------------------------------------------------------------------- verbs
def cmd_generate(args: argparse.Namespace) -> int:
    from analyst.synthetic import SyntheticConfig, generate, write

    config = SyntheticConfig(n_users=args.users, seed=args.seed, fraud_rate=args.fraud_rate)
    events, labels = generate(config)
    ev_path, lab_path = write(events, labels, args.out)
    print(f"wrote {len(events):,} events of {labels['user_id'].nunique():,} users "
          f"({int(labels['label'].sum())} fraud) to {ev_path} and {lab_path}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    mapping = _parse_mapping(args.map)
    wb = _workbench(args)
    try:
        reports = wb.ingest_events(args.files, fmt=args.format, mapping=mapping) if args.files else []
        if args.labels:
            reports.append(wb.ingest_labels(args.labels))
    finally:
        wb.close()
    for rep in reports:
        if rep.skipped:
            print(f"{rep.file}: already ingested, nothing added")
            continue
        print(f"{rep.file}: {rep.accepted:,} accepted, {rep.rejected:,} rejected (see the quarantine table)")
        for reason in rep.reasons[:5]:
            print(f"  rejected {reason}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    wb = _workbench(args)
    try:
        version = wb.train(config=_scorer_config(args), analyst=wb.settings.analyst, progress=True)
        current = wb.current_version()
    finally:
        wb.close()
    state = "current" if current == version else "candidate (promote it from the Model page)"
    print(f"trained model {version}: {state}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    mix = _queue_mix(args)
    if args.engine == "ray" and not (args.events and args.out):
        raise CliError("--engine ray needs --events DIR (from `sleuth export --parquet DIR`) and --out DIR")
    if args.engine == "local" and (args.events or args.out or args.address):
        raise CliError("--events / --out / --address go with --engine ray")
    wb = _workbench(args)
    try:
        if args.engine == "ray":
            result = wb.score_on_ray(args.events, args.out, actors=args.actors, address=args.address,
                                     budget=args.budget, top_pct=args.top_pct,
                                     explain_cases=not args.no_explain, mix=mix)
            print(f"Ray: {result['actors']} actors ({result['device']}) scored in {result['seconds']:.1f} s; "
                  f"scores in {args.out}")
        else:
            result = wb.score(budget=args.budget, top_pct=args.top_pct, explain_cases=not args.no_explain,
                              progress=True, mix=mix)
    finally:
        wb.close()
    kind = "" if mix is None else (f" (label queue: {mix.top_share:.0%} high risk, {mix.uncertain_share:.0%} "
                                   f"uncertain, {mix.control_share:.0%} random control; seed {mix.seed})")
    print(f"scored {result['scored']:,} users with {result['version']}; opened {result['opened']} cases{kind}")
    return 0


def _queue_mix(args: argparse.Namespace):
    """The QueueMix asked for by --mix / --uncertain-share / --control-share / --mix-seed, or None."""
    from analyst.sampling import QueueMix, daily_seed

    wanted = args.mix or any(v is not None for v in (args.uncertain_share, args.control_share, args.mix_seed))
    if not wanted:
        return None
    if args.budget is None or args.budget < 1:
        raise CliError(f"--budget {args.budget}: a mixed queue needs a budget >= 1")
    seed = args.mix_seed if args.mix_seed is not None else daily_seed()
    return QueueMix.from_shares(
        args.budget,
        uncertain_share=DEFAULT_UNCERTAIN_SHARE if args.uncertain_share is None else args.uncertain_share,
        control_share=DEFAULT_CONTROL_SHARE if args.control_share is None else args.control_share,
        seed=seed,
    )


def cmd_explain(args: argparse.Namespace) -> int:
    import pandas as pd

    wb = _workbench(args)
    try:
        until = pd.Timestamp(args.at) if args.at else None
        model = wb.model()   # one version for the explanation, its window and the neighbours
        exp = wb.explanation(args.user, until=until, model=model)
        timeline, _ = wb.model_window(args.user, until=until, model=model)
        neighbours = wb.neighbours(args.user, model=model)
    finally:
        wb.close()
    payload = explanation_json(exp, timeline, neighbours)
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
        return 0
    print(f"user {payload['user_id']}  risk {payload['score']:.3f}  model {payload['model_version']}  "
          f"(IG delta {payload['delta']:.2g})")
    for reason in payload["reasons"]:
        print(f"  - {reason}")
    top = sorted(payload["events"], key=lambda e: -abs(e["attribution"]))[:8]
    print("most influential events:")
    for ev in sorted(top, key=lambda e: e["ts"]):
        print(f"  {ev['ts']}  {ev['event_type']:<22} attribution {ev['attribution']:+.3f}  surprise {ev['surprise']:.2f}")
    return 0


def explanation_json(exp, timeline, neighbours) -> dict:
    """The `sleuth explain --json` document (keys fixed by the explanations issue)."""
    fields = sorted(exp.field_attribution)
    events = []
    for i, row in enumerate(timeline.itertuples(index=False)):
        events.append({
            "ts": str(row.ts),
            "event_type": row.event_type,
            "attribution": float(exp.event_attribution[i]),
            "surprise": float(exp.surprise[i]),
            "attention": float(exp.attention_rollout[i]),
            "fields": {f: float(exp.field_attribution[f][i]) for f in fields},
        })
    return {
        "user_id": exp.user_id,
        "model_version": exp.model_version,
        "score": float(exp.risk),
        "delta": float(exp.delta),
        "events": events,
        "reasons": list(exp.reasons),
        "what_if": [{"removed": list(w.removed), "risk": float(w.risk)} for w in exp.what_if],
        "neighbours": [
            {"user_id": str(r.user_id), "label": int(r.label), "similarity": float(r.similarity)}
            for r in neighbours.itertuples(index=False)
        ],
    }


def cmd_links(args: argparse.Namespace) -> int:
    wb = _workbench(args)
    try:
        wb.refresh_links()   # a no-op when up to date; builds the tables of an older store once
        doc = wb.links(args.user, depth=args.depth, max_users=args.max_users)
    finally:
        wb.close()
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"user {doc['user_id']}: {len(doc['entities'])} entity values (depth {args.depth})")
    for entity in doc["entities"]:
        shown = f", top {len(entity['users'])} shown" if entity["n_users"] > len(entity["users"]) + 1 else ""
        print(f"\n{entity['kind']} {entity['value']}  ({entity['n_users']:,} users{shown})")
        for u in entity["users"]:
            risk = "-" if u["risk"] is None else f"{u['risk']:.3f}"
            case = "" if u["case_id"] is None else f"case {u['case_id']} {u['decision'] or 'undecided'}"
            print(f"  {u['user_id']:<24} risk {risk:>6}  {case}".rstrip())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from analyst.ingest import read_events, read_labels
    from models.evaluation import EvaluateConfig, evaluate
    from models.signals import SignalConfig

    events = read_events(args.events)
    labels = read_labels(args.labels)
    config = EvaluateConfig(split=args.split, test_frac=args.test_frac, seed=args.seed,
                            scorer_config=_scorer_config(args),
                            signals=None if args.no_signals else SignalConfig())
    result = evaluate(events, labels, config, progress=True)
    text = json.dumps(result, indent=2, default=float)
    if args.json:
        Path(args.json).write_text(text + "\n")
        print(f"wrote {args.json}")
    else:
        print(text)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    wb = _workbench(args)
    try:
        manifest = wb.export_events(args.parquet, partitions=args.partitions, signals=not args.no_signals)
    finally:
        wb.close()
    print(f"wrote {manifest['events']:,} events of {manifest['users']:,} users to {args.parquet} "
          f"({len(manifest['files'])} files)")
    return 0


def cmd_export_labels(args: argparse.Namespace) -> int:
    wb = _workbench(args)
    try:
        path = wb.export_labels(args.out, args.format)
        n = len(wb.label_history())
    finally:
        wb.close()
    print(f"wrote {n:,} label rows to {path}")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    settings = _settings(args)
    check_serving_address(args.address)
    if args.stream:
        from analyst.service.stream_sources import parse_source
        parse_source(args.stream)          # a bad source fails here, not inside the server
        settings = replace(settings, stream=args.stream)
    return _serve(settings, args.port, args.address)


def cmd_stream(args: argparse.Namespace) -> int:
    import numpy as np

    from analyst.service.streaming import BatchResult

    def report(r: BatchResult) -> None:
        late = (f", p95 {float(np.percentile(r.latency_ms, 95)):.0f} ms from produce"
                if len(r.latency_ms) else "")
        opened = f", opened {len(r.opened)} case(s)" if r.opened else ""
        changed = f", risk changed on {len(r.changed)} open case(s)" if r.changed else ""
        print(f"{r.events:,} events ({r.rejected:,} rejected) of {r.users:,} users; rescored {r.rescored:,}"
              f"{opened}{changed} in {r.stored_s + r.scored_s:.2f} s{late}", flush=True)

    wb = _workbench(args)
    try:
        worker = wb.stream_worker(args.source, open_at=args.open_at, explain_cases=not args.no_explain,
                                  on_batch=report)
        print(f"streaming {worker.source.name} into {wb.settings.db_path} (Ctrl+C to stop)", flush=True)
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: worker.request_stop())
        try:
            status = worker.run(idle_exit_s=args.idle_exit, max_batches=args.max_batches)
        finally:
            signal.signal(signal.SIGTERM, previous)
            worker.source.close()
    finally:
        wb.close()
    tail = f"; last error: {status['last_error']}" if status["last_error"] else ""
    print(f"stored {status['events']:,} events in {status['batches']:,} batches ({status['rejected']:,} "
          f"rejected), rescored {status['rescored']:,}, opened {status['opened']} cases{tail}")
    return 0


def _loopback(address: str) -> bool:
    import ipaddress
    text = address.strip().strip("[]")
    try:
        return text.lower() == "localhost" or ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def auth_secrets_configured(cwd: Path | None = None) -> bool:
    """Whether a secrets.toml Streamlit reads (./.streamlit, ~/.streamlit) has an [auth] section."""
    import tomllib
    for path in ((cwd or Path.cwd()) / ".streamlit" / "secrets.toml", Path.home() / ".streamlit" / "secrets.toml"):
        try:
            if tomllib.loads(path.read_text()).get("auth"):
                return True
        except (OSError, tomllib.TOMLDecodeError):
            continue
    return False


def check_serving_address(address: str) -> None:
    """CliError unless `address` is loopback or sign-in is configured (analyst/views/identity.py
    refuses the same in the app, however it is started)."""
    if not _loopback(address) and not auth_secrets_configured():
        raise CliError(f"--address {address}: serving beyond this machine needs sign-in; configure [auth] in "
                       ".streamlit/secrets.toml (README, Sign-in) or serve on 127.0.0.1")


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings(args)
    prepare_demo(settings)
    if args.no_app:
        return 0
    return _serve(settings, args.port)


def prepare_demo(settings: Settings) -> None:
    """Build the demo store from the committed sample: ingest, past outcomes, model, scores, cases.

    Each step runs only when its result is missing, so a second `sleuth demo` starts the app at once.
    Past outcomes: the ground truth of a seeded 40% of sample users is loaded as labels
    (source=synthetic), as if earlier investigations had closed them; the other users are unknown
    to the model and the queue is built from them.
    """
    import pandas as pd

    sample = settings.sample_dir
    events_path, labels_path = sample / "events.parquet", sample / "labels.parquet"
    if not events_path.exists():
        from analyst.synthetic import SyntheticConfig, generate, write

        print(f"no sample data in {sample}: generating it (3,000 users, seed 7)")
        write(*generate(SyntheticConfig(n_users=3000, seed=7)), sample)
    from analyst.service import Workbench

    wb = Workbench(settings)
    try:
        if wb.counts().get("events", 0) == 0:
            for rep in wb.ingest_events([events_path]):
                print(f"ingested {rep.accepted:,} events from {rep.file}")
            truth = pd.read_parquet(labels_path)
            history = truth.sample(frac=DEMO_HISTORY_FRACTION, random_state=DEMO_HISTORY_SEED)
            history_path = settings.home / "demo_history_labels.parquet"
            history_path.parent.mkdir(parents=True, exist_ok=True)
            history.to_parquet(history_path, index=False)
            rep = wb.ingest_labels(history_path)
            print(f"loaded {rep.accepted:,} past outcomes as labels ({int(history['label'].sum())} fraud)")
        if wb.current_version() is None:
            print("training the default model (about 2 minutes on 2 CPU cores)")
            wb.train(progress=True)
        if wb.counts().get("cases", 0) == 0:
            from analyst.sampling import QueueMix

            # the demo queue shows all three reasons a case is queued (high risk / uncertain /
            # random control), with the default shares 0.6 / 0.2 / 0.2 and a fixed control draw
            result = wb.score(progress=True, mix=QueueMix(budget=50, seed=DEMO_HISTORY_SEED))
            print(f"scored {result['scored']:,} users, opened {result['opened']} cases")
    finally:
        wb.close()


def streamlit_command(port: int, address: str = "127.0.0.1") -> list[str]:
    """The `streamlit run app.py` command line `sleuth app` serves with (tests and benches reuse it).

    fileWatcherType none: a product server, not a dev server. A watcher over the project (its
    .venv included) costs CPU, overflowed inotify in `make demo`, and offers "Rerun" to every open
    tab when files change under it (a git pull, a model being saved). enableStaticServing: static/
    holds the small plotly.js bundle the charts are drawn with (analyst/views/chart.py).
    """
    return [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "app.py"),
            "--server.headless", "true", "--server.address", address, "--server.port", str(port),
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
            "--server.fileWatcherType", "none", "--server.enableStaticServing", "true"]


def _serve(settings: Settings, port: int, address: str = "127.0.0.1") -> int:
    env = {**os.environ, "SLEUTH_DB": str(settings.db_path.resolve()),
           "SLEUTH_HOME": str(settings.home.resolve()), "SLEUTH_MODELS": str(settings.model_dir.resolve())}
    if settings.stream:
        env["SLEUTH_STREAM"] = settings.stream
    cmd = streamlit_command(port, address)
    print(f"sleuth is serving on http://{address}:{port}  (Ctrl+C to stop)", flush=True)
    proc = subprocess.Popen(cmd, env=env)
    # a SIGTERM to this process (a service manager, `kill PID`) stops the server too: an orphaned
    # server would keep the DuckDB file locked for every later `sleuth` command
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl+C reaches the server too (same process group): let it finish
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


# ---------------------------------------------------------------------------------------- parser
def _parse_mapping(pairs: Sequence[str] | None) -> dict[str, str] | None:
    """--map values through the ingest's one parser; its error is said as an error of --map."""
    from analyst.ingest import parse_mapping

    try:
        return parse_mapping(pairs) or None
    except ValueError as exc:
        raise CliError(f"--map: {exc}") from exc


def _scorer_config(args: argparse.Namespace):
    from models.scorer import ScorerConfig

    overrides = {k: v for k, v in {
        "seed": getattr(args, "seed", None),
        "d_model": getattr(args, "d_model", None),
        "n_layers": getattr(args, "layers", None),
        "max_events": getattr(args, "max_events", None),
        "pretrain_epochs": getattr(args, "pretrain_epochs", None),
        "finetune_epochs": getattr(args, "finetune_epochs", None),
    }.items() if v is not None}
    return ScorerConfig(**overrides)


def _add_model_options(p: argparse.ArgumentParser, seed_default: int | None = None) -> None:
    p.add_argument("--seed", type=int, default=seed_default, help="random seed (default: the model's)")
    p.add_argument("--d-model", type=int, help="hidden size (default 128)")
    p.add_argument("--layers", type=int, help="Transformer layers (default 2)")
    p.add_argument("--max-events", type=int, help="most recent events read per user (default 256)")
    p.add_argument("--pretrain-epochs", type=int, help="next-event pretraining epochs (default 6)")
    p.add_argument("--finetune-epochs", type=int, help="risk fine-tuning epochs (default 8)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sleuth", description="Fraud investigation workbench.")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, func, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--db", help="DuckDB file (default: $SLEUTH_DB or $SLEUTH_HOME/sleuth.duckdb)")
        p.set_defaults(func=func)
        return p

    p = verb("demo", cmd_demo, "build the demo store from sample_data (if missing), train, score, open the app")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--no-app", action="store_true", help="prepare everything but do not serve")

    p = verb("generate", cmd_generate, "write synthetic events.parquet + labels.parquet")
    p.add_argument("--users", type=int, default=3000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--fraud-rate", type=float, default=0.03)
    p.add_argument("--out", required=True, help="output directory")

    p = verb("ingest", cmd_ingest, "load event files (CSV / Parquet / JSONL / Taobao) and label files")
    p.add_argument("files", nargs="*", help="event files")
    p.add_argument("--labels", help="a labels file (user_id, label, optional as_of, split, source...), e.g. "
                   "delayed ground truth (chargebacks, refund outcomes); rows without a source are stored "
                   "as source=import, which model metrics count as reviewed outcomes and case pages show")
    p.add_argument("--format", choices=["csv", "parquet", "jsonl", "taobao"], help="default: by extension")
    p.add_argument("--map", action="append", metavar="SRC=DST",
                   help="rename a column to a schema column (repeatable), e.g. --map customer=user_id")

    p = verb("train", cmd_train, "train a new model version on all events and the latest labels")
    _add_model_options(p)

    p = verb("score", cmd_score, "score every user with the current model and open cases")
    p.add_argument("--budget", type=int, default=50,
                   help="cases to open (default 50): the top K unlabelled users, or the size of the --mix queue")
    p.add_argument("--top-pct", type=float, help="open cases for the top P percent instead")
    p.add_argument("--no-explain", action="store_true", help="do not precompute explanations of cases")
    p.add_argument("--mix", action="store_true",
                   help="open a label-collection queue of --budget cases that mixes high-risk, uncertain "
                        "(near the alert cut, or risk head and surprise disagree) and random-control "
                        f"cases; default shares {1 - DEFAULT_UNCERTAIN_SHARE - DEFAULT_CONTROL_SHARE:.1f} / "
                        f"{DEFAULT_UNCERTAIN_SHARE:.1f} / {DEFAULT_CONTROL_SHARE:.1f} (without it: high risk only)")
    p.add_argument("--uncertain-share", type=float,
                   help=f"share of the budget for uncertain cases (implies --mix; default {DEFAULT_UNCERTAIN_SHARE})")
    p.add_argument("--control-share", type=float,
                   help="share of the budget for a uniform random control sample of unflagged users, which "
                        "gives unbiased base-rate and missed-fraud estimates (implies --mix; default "
                        f"{DEFAULT_CONTROL_SHARE})")
    p.add_argument("--mix-seed", type=int,
                   help="seed of the control draw (implies --mix; default: today's date as YYYYMMDD)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: in this process (default); ray: Ray Data over an export (--events), "
                        "scores written to --out and loaded into the store")
    p.add_argument("--events", metavar="DIR", help="with --engine ray: a `sleuth export --parquet` directory")
    p.add_argument("--out", metavar="DIR", help="with --engine ray: a new directory for the scores Parquet")
    p.add_argument("--actors", type=int, default=2, help="with --engine ray: scorer actors (default 2)")
    p.add_argument("--address", help="with --engine ray: an existing Ray cluster (e.g. auto or "
                                     "ray://head:10001); default: a local Ray on this machine")

    p = verb("export", cmd_export, "write every user's events as partitioned Parquet (for --engine ray)")
    p.add_argument("--parquet", metavar="DIR", required=True, help="a new or empty directory")
    p.add_argument("--partitions", type=int, default=16,
                   help="files, by hash of user_id (default 16; a user never spans files)")
    p.add_argument("--no-signals", action="store_true",
                   help="leave out the velocity / entity signal columns (models that read them need them)")

    p = verb("explain", cmd_explain, "explain one user's risk: attributions, surprise, reasons")
    p.add_argument("user")
    p.add_argument("--at", help="explain as of this time (ISO); default: the user's last event")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")

    p = verb("links", cmd_links, "list the users who share a device, IP, address, payment method or item with a user")
    p.add_argument("user")
    p.add_argument("--depth", type=int, choices=[1, 2], default=1,
                   help="2: also the values of the riskiest linked users (default 1)")
    p.add_argument("--max-users", type=int, default=20, help="users listed per value, riskiest first (default 20)")
    p.add_argument("--json", action="store_true", help="print the links as JSON")

    p = verb("evaluate", cmd_evaluate, "train on the train part, score the test part, write metrics JSON")
    p.add_argument("--events", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--split", choices=["time", "random"], default="time")
    p.add_argument("--test-frac", type=float, default=0.3)
    p.add_argument("--json", help="write the result here (default: print it)")
    p.add_argument("--no-signals", action="store_true",
                   help="leave out the velocity / entity signals (the model reads each timeline alone)")
    _add_model_options(p, seed_default=0)

    p = verb("export-labels", cmd_export_labels, "write the label history as CSV or Parquet")
    p.add_argument("--out", required=True)
    p.add_argument("--format", choices=["csv", "parquet"])

    p = verb("app", cmd_app, "serve the workbench (127.0.0.1 unless sign-in is configured)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1",
                   help="interface to serve on; anything but loopback needs [auth] in .streamlit/secrets.toml")
    p.add_argument("--stream", metavar="SOURCE",
                   help="also stream new events into the store while serving: kafka://HOST:PORT/TOPIC or a "
                        "drop folder (as `sleuth stream`; default: $SLEUTH_STREAM)")

    p = verb("stream", cmd_stream, "store new events from Kafka or a drop folder as they come, exactly once; "
                                   "rescore their users and open or mark their cases")
    p.add_argument("source", help="kafka://HOST:PORT/TOPIC (JSON events keyed by user_id) or a folder where "
                                  "event files are dropped (write, then rename into it)")
    p.add_argument("--open-at", type=float,
                   help="open a case when a user's risk reaches this (default: the risk of the least risky "
                        "open high-risk case, else 0.5)")
    p.add_argument("--no-explain", action="store_true", help="do not freeze explanations of cases opened")
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="stop after this many seconds with nothing new (default: run until stopped)")
    p.add_argument("--max-batches", type=int, help="stop after this many batches")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (CliError, ValueError, LookupError, FileNotFoundError, PermissionError, RuntimeError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"sleuth: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
