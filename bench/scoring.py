"""Batch scoring throughput: our event encoder vs the "events as text + BERT" approach.

Both score timelines of `--seq-len` (default 256) events taken from the synthetic generator
(users with at least that many events, their most recent ones).

- ours: `Scorer.decision_function(events)` end to end (tokenize, windows, forward pass with SDPA,
  per-field surprise, stacker), on events that already carry the velocity / entity signal columns
  (the store computes those at ingest; `signals_events_per_s` is their DuckDB computation alone) at the default model size (ScorerConfig()), one token per event.
  Weights come from one quick pretraining epoch on the benchmark users (speed does not depend
  on them). `ours_model_seq_per_s` is the encoder forward + surprise alone, for reference.
- text BERT, as the literature describes it: every event rendered as text
  ("view session s12 item i3 category tea device d7 ip 1.2.3.4 country US ..."), events joined
  with [SEP], a WordPiece tokenizer trained here on those texts (`tokenizers`), a BERT-base sized
  BertConfig (12 layers, 768 hidden, 12 heads, random weights), SDPA attention. A timeline of 256
  events is several thousand word pieces, far over BERT's 512: we raise max_position_embeddings
  so the WHOLE timeline fits (truncating to 512 would score only the last few dozen events, not
  the same task). For transparency `text_bert_512_seq_per_s` also reports the truncated variant.

Prints one JSON line last: {"seq_len", "ours_seq_per_s", "text_bert_seq_per_s", "ratio", "device", ...}.
Usage: python bench/scoring.py [--users 256] [--bert-seqs 2] [--seq-len 256]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from analyst.synthetic import SyntheticConfig, generate  # noqa: E402
from models.device import resolve_device, use_all_cores  # noqa: E402
from models.scorer import Scorer, ScorerConfig  # noqa: E402
from models.signals import with_signals  # noqa: E402
from models.train import collate, recent_windows  # noqa: E402

TEXT_COLUMNS = ("session_id", "item_id", "category", "amount", "currency", "query", "device_id", "ip",
                "country", "status", "payment_method", "address_id")


def timelines(n_users: int, seq_len: int, seed: int = 0) -> pd.DataFrame:
    """n_users timelines of exactly seq_len events (the most recent ones of long synthetic users)."""
    found: list[pd.DataFrame] = []
    have, batch = 0, 0
    while have < n_users:
        events, _ = generate(SyntheticConfig(n_users=4000, seed=seed + batch, fraud_rate=0.03))
        events["user_id"] = f"b{batch}_" + events["user_id"].astype(str)
        sizes = events.groupby("user_id")["ts"].transform("size")
        long = events[sizes >= seq_len].groupby("user_id", sort=False).tail(seq_len)
        found.append(long)
        have += long["user_id"].nunique()
        batch += 1
    events = pd.concat(found, ignore_index=True)
    keep = events["user_id"].drop_duplicates().iloc[:n_users]
    return events[events["user_id"].isin(set(keep))].reset_index(drop=True)


def best_rate(fn, n_items: int, repeats: int) -> float:
    """Items per second of the fastest of `repeats` runs (after one warm-up run)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_items / best


def render(events: pd.DataFrame) -> list[str]:
    """One text per user: each event as 'type key value ...' (nulls left out), joined by [SEP]."""
    parts = events["event_type"].astype(str)
    for col in TEXT_COLUMNS:
        values = events[col]
        text = values.map(lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)) if col == "amount" else values.astype(str)
        parts = parts + np.where(values.isna(), "", f" {col.replace('_id', '')} " + text)
    per_event = pd.DataFrame({"user_id": events["user_id"], "text": parts})
    return per_event.groupby("user_id", sort=True)["text"].agg(" [SEP] ".join).tolist()


def text_bert(texts: list[str], n_seqs: int, repeats: int) -> dict:
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel

    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(texts, vocab_size=30522, min_frequency=2, show_progress=False)
    lengths = [len(e.ids) for e in wp.encode_batch(texts)]
    n_pos = int(max(lengths))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=wp.get_vocab_size(), max_position_embeddings=max(n_pos, 512),
                     attn_implementation="sdpa")  # BERT-base: 12 layers, 768 hidden, 12 heads
    model = BertModel(cfg).eval()

    def score(seqs: list[str], max_len: int | None) -> None:
        with torch.inference_mode():
            for text in seqs:  # one timeline per forward pass: no padding waste at these lengths
                ids = wp.encode(text).ids
                ids = ids[-max_len:] if max_len else ids
                model(input_ids=torch.tensor([ids]))

    sample = texts[:n_seqs]
    return {
        "text_bert_seq_per_s": best_rate(lambda: score(sample, None), len(sample), repeats),
        "text_bert_512_seq_per_s": best_rate(lambda: score(texts[: 4 * n_seqs], 512), 4 * n_seqs, repeats),
        "text_bert_tokens_per_seq": float(np.mean(lengths)),
        "text_bert_vocab": int(wp.get_vocab_size()),
        "text_bert_params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=256, help="timelines scored per run (ours)")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--bert-seqs", type=int, default=2, help="timelines per text-BERT run (slow)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    events = timelines(args.users, args.seq_len)
    t0 = time.perf_counter()
    events = with_signals(events, None)   # the signal columns the default model reads (no labels here)
    signal_s = time.perf_counter() - t0
    n = events["user_id"].nunique()
    config = ScorerConfig(max_events=args.seq_len, pretrain_epochs=1, finetune_epochs=0)
    scorer = Scorer(config).fit(events, progress=False)
    device = resolve_device(config.device)
    use_all_cores(device)

    ours = best_rate(lambda: scorer.decision_function(events), n, args.repeats)

    tok = scorer.tokenizer_.transform(events)
    windows = recent_windows(tok, np.arange(tok.n_users), args.seq_len)
    model = scorer.model_

    def model_only() -> None:
        with torch.inference_mode():
            for i in range(0, n, config.score_batch_size):
                inputs = collate(tok, windows.start[i : i + config.score_batch_size],
                                 windows.stop[i : i + config.score_batch_size], device)
                model.field_surprise(inputs, model(inputs))

    model_rate = best_rate(model_only, n, args.repeats)
    bert = text_bert(render(events), args.bert_seqs, max(1, args.repeats - 1))

    result = {
        "seq_len": args.seq_len,
        "ours_seq_per_s": round(ours, 1),
        "text_bert_seq_per_s": round(bert["text_bert_seq_per_s"], 4),
        "ratio": round(ours / bert["text_bert_seq_per_s"], 1),
        "device": f"{device.type}: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                  f"{os.cpu_count()} cores",
        "ours_model_seq_per_s": round(model_rate, 1),
        "ours_params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "n_users": n,
        "signal_columns": len(scorer.signal_columns),
        "signals_events_per_s": round(len(events) / signal_s, 1),   # DuckDB, not in ours_seq_per_s
        "load_avg_1m": round(os.getloadavg()[0], 2),
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in bert.items() if k != "text_bert_seq_per_s"},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
