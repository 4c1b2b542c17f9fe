"""Training the event encoder: next-event pretraining, then risk fine-tuning at label positions.

A plain loop (AdamW, warm-up then cosine learning rate, gradient clipping, seeded shuffles, tqdm), with
- windows: a window is a slice [start, stop) of one user's tokens. Pretraining takes each user's
  most recent `max_events` events. Risk targets (and all scoring) use `context_start`: the event at
  position p is seen in the window of the `max_events` events ending at it, [max(0, p - max_events
  + 1), p], so it always has min(p, max_events - 1) events of context; every position below
  `max_events` shares the user's first window. (A window aligned to a stride of max_events // 2
  served more positions at once but left the last event only 128-256 events of context: frauds
  150-250 events back were out of sight, the six worst-ranked test frauds of bench/quality.py);
- length-bucketed batches (windows of similar length together, right padded, batch order shuffled);
- a validation split and early stopping (best weights restored), an optional time budget;
- CUDA with bf16 autocast when present, else CPU with all cores.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm.auto import tqdm

from models.device import autocast
from models.encoder import EventEncoder
from models.tokenizer import TokenizedEvents


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of one training phase."""

    epochs: int
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    patience: int = 2
    seed: int = 0
    time_budget_s: float | None = None  # stop the phase after this many seconds (None: no limit)
    aux_weight: float = 1.0  # fine-tuning: weight of the next-event loss kept alongside the risk loss
    warmup_steps: int = 20
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs={self.epochs}: expected >= 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: expected >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr}: expected > 0")


@dataclass(frozen=True)
class Windows:
    """Token ranges [start, stop) in a TokenizedEvents, with risk targets at window offsets."""

    start: np.ndarray  # (M,) global token index
    stop: np.ndarray  # (M,)
    target_offset: tuple[np.ndarray, ...] = field(default=())  # per window: (k,) offsets in window
    target_label: tuple[np.ndarray, ...] = field(default=())  # per window: (k,) 0/1
    target_index: tuple[np.ndarray, ...] = field(default=())  # per window: (k,) rows of the request

    def __len__(self) -> int:
        return len(self.start)

    def subset(self, index: np.ndarray) -> "Windows":
        index = np.asarray(index, dtype=np.int64)
        return Windows(
            start=self.start[index],
            stop=self.stop[index],
            target_offset=tuple(self.target_offset[i] for i in index) if self.target_offset else (),
            target_label=tuple(self.target_label[i] for i in index) if self.target_label else (),
            target_index=tuple(self.target_index[i] for i in index) if self.target_index else (),
        )


def context_start(position: np.ndarray, max_events: int) -> np.ndarray:
    """Local index where the scoring window of the event at local `position` starts: the
    `max_events` events ending at it (all of them from the first event while there are fewer)."""
    return np.maximum(0, np.asarray(position) - max_events + 1)


def recent_windows(tok: TokenizedEvents, users: np.ndarray, max_events: int) -> Windows:
    """Each user's most recent `max_events` events."""
    stop = tok.offsets[np.asarray(users) + 1]
    start = np.maximum(tok.offsets[np.asarray(users)], stop - max_events)
    return Windows(start=start, stop=stop)


def target_windows(
    tok: TokenizedEvents, users: np.ndarray, positions: np.ndarray, max_events: int, labels: np.ndarray | None = None
) -> Windows:
    """Group targets (user index, local event position[, 0/1 label]) into scoring windows.

    target_index maps each window's targets back to their row in the given arrays.
    """
    users = np.asarray(users, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    labels = np.zeros(len(users), dtype=np.float32) if labels is None else np.asarray(labels, dtype=np.float32)
    local_start = context_start(positions, max_events)
    key = np.stack([users, local_start], axis=1)
    keys, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(keys) + 1))
    starts, stops, offs, labs, rows = [], [], [], [], []
    for w, (u, s) in enumerate(keys):
        idx = order[bounds[w] : bounds[w + 1]]
        base = tok.offsets[u] + s
        starts.append(base)
        stops.append(base + positions[idx].max() - s + 1)  # causal: later events are not needed
        offs.append(positions[idx] - s)
        labs.append(labels[idx])
        rows.append(idx)
    return Windows(
        start=np.asarray(starts, dtype=np.int64),
        stop=np.asarray(stops, dtype=np.int64),
        target_offset=tuple(offs),
        target_label=tuple(labs),
        target_index=tuple(rows),
    )


def collate(tok: TokenizedEvents, start: np.ndarray, stop: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded (B, T) input tensors for windows [start, stop)."""
    lengths = stop - start
    T = int(lengths.max())
    t = np.arange(T)
    index = np.where(t[None, :] < lengths[:, None], start[:, None] + t[None, :], -1)  # (B, T)
    arrays = tok.gather(index)
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in arrays.items()}


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Batches of windows of similar length; shuffled within length and in order when rng is given."""
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    noise = rng.permutation(n)
    order = np.lexsort((noise, lengths))  # by length, random among equal lengths
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _targets(windows: Windows, batch: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = np.concatenate([np.full(len(windows.target_offset[w]), r) for r, w in enumerate(batch)])
    cols = np.concatenate([windows.target_offset[w] for w in batch])
    y = np.concatenate([windows.target_label[w] for w in batch])
    return (
        torch.from_numpy(rows).to(device),
        torch.from_numpy(cols).to(device),
        torch.from_numpy(y.astype(np.float32)).to(device),
    )


class _Phase:
    """Shared loop: optimiser, warmup, clipping, validation, early stopping, time budget."""

    def __init__(self, model: EventEncoder, cfg: TrainConfig, device: torch.device, desc: str) -> None:
        self.model, self.cfg, self.device, self.desc = model, cfg, device, desc
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
        no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
        )
        self.rng = np.random.default_rng(cfg.seed)

    def _schedule(self, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
        """Linear warm-up, then cosine decay to 10% of the learning rate at the last planned step."""
        warmup = max(1, min(self.cfg.warmup_steps, total_steps // 10))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(self.opt, factor)

    def run(self, train: Windows, val: Windows, train_loss, val_metrics) -> dict:
        cfg, model = self.cfg, self.model
        t0 = time.perf_counter()
        history: dict = {"train_loss": [], "val_loss": [], "epochs": 0, "stopped": "epochs"}
        best, best_state, bad = float("inf"), None, 0
        lengths = train.stop - train.start
        n_batches = (len(train) + cfg.batch_size - 1) // cfg.batch_size
        self.sched = self._schedule(cfg.epochs * n_batches)
        bar = tqdm(total=cfg.epochs * n_batches, desc=self.desc, disable=not cfg.progress, leave=False)
        try:
            for epoch in range(cfg.epochs):
                model.train()
                total, count, out_of_time = 0.0, 0, False
                for batch in length_batches(lengths, cfg.batch_size, self.rng):
                    with autocast(self.device):
                        loss = train_loss(train, batch)
                    self.opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    self.opt.step()
                    self.sched.step()
                    total += loss.item() * len(batch)
                    count += len(batch)
                    bar.update(1)
                    bar.set_postfix(loss=f"{total / count:.3f}")
                    if cfg.time_budget_s is not None and time.perf_counter() - t0 > cfg.time_budget_s:
                        out_of_time = True
                        break
                history["train_loss"].append(total / max(count, 1))
                history["epochs"] = epoch + 1
                metrics = val_metrics(val) if len(val) else {"loss": history["train_loss"][-1]}
                history["val_loss"].append(metrics["loss"])
                for k, v in metrics.items():
                    if k != "loss":
                        history.setdefault(f"val_{k}", []).append(v)
                if metrics["loss"] < best - 1e-4:
                    best, bad = metrics["loss"], 0
                    best_state = copy.deepcopy(model.state_dict())
                    history["best_epoch"] = epoch + 1
                else:
                    bad += 1
                if out_of_time:
                    history["stopped"] = "time_budget"
                    break
                if bad >= cfg.patience:
                    history["stopped"] = "early_stopping"
                    break
        finally:
            bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        history["best_val_loss"] = best if best_state is not None else None
        history["seconds"] = time.perf_counter() - t0
        return history


def pretrain(
    model: EventEncoder, tok: TokenizedEvents, train: Windows, val: Windows, cfg: TrainConfig, device: torch.device
) -> dict:
    """Self-supervised next-event prediction on whole windows. Returns the loss history."""

    def train_loss(windows: Windows, batch: np.ndarray) -> torch.Tensor:
        inputs = collate(tok, windows.start[batch], windows.stop[batch], device)
        return model.next_event_loss(inputs, model(inputs))

    @torch.no_grad()
    def val_metrics(windows: Windows) -> dict:
        model.eval()
        total, n = 0.0, 0
        for batch in length_batches(windows.stop - windows.start, 64, None):
            inputs = collate(tok, windows.start[batch], windows.stop[batch], device)
            with autocast(device):
                out = model(inputs)
            k = int((inputs["event_type"][:, 1:] != 0).sum())
            total += float(model.next_event_loss(inputs, out)) * k
            n += k
        return {"loss": total / max(n, 1)}

    return _Phase(model, cfg, device, "pretrain").run(train, val, train_loss, val_metrics)


def finetune(
    model: EventEncoder,
    tok: TokenizedEvents,
    train: Windows,
    val: Windows,
    cfg: TrainConfig,
    device: torch.device,
    pos_weight: float = 1.0,
) -> dict:
    """Risk head (and encoder) on label targets, keeping the next-event loss as an auxiliary."""
    weight = torch.tensor(pos_weight, device=device)

    def train_loss(windows: Windows, batch: np.ndarray) -> torch.Tensor:
        inputs = collate(tok, windows.start[batch], windows.stop[batch], device)
        out = model(inputs)
        rows, cols, y = _targets(windows, batch, device)
        risk = F.binary_cross_entropy_with_logits(out.risk_logits[rows, cols].float(), y, pos_weight=weight)
        return risk + cfg.aux_weight * model.next_event_loss(inputs, out)

    @torch.no_grad()
    def val_metrics(windows: Windows) -> dict:
        model.eval()
        logits, labels = [], []
        for batch in length_batches(windows.stop - windows.start, 64, None):
            inputs = collate(tok, windows.start[batch], windows.stop[batch], device)
            with autocast(device):
                out = model(inputs)
            rows, cols, y = _targets(windows, batch, device)
            logits.append(out.risk_logits[rows, cols].float().cpu())
            labels.append(y.cpu())
        z, y = torch.cat(logits), torch.cat(labels)
        loss = float(F.binary_cross_entropy_with_logits(z, y))
        metrics = {"loss": loss}
        if 0 < float(y.sum()) < len(y):
            metrics["auprc"] = float(average_precision_score(y.numpy(), z.numpy()))
            metrics["auroc"] = float(roc_auc_score(y.numpy(), z.numpy()))
        return metrics

    return _Phase(model, cfg, device, "fine-tune").run(train, val, train_loss, val_metrics)


def field_counts(tok: TokenizedEvents, sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    """Id counts of the given fields (field -> number of ids) over all tokens, for the priors."""
    col = {name: j for j, name in enumerate(tok.field_names)}
    return {f: torch.from_numpy(np.bincount(tok.ids[:, col[f]], minlength=n)) for f, n in sizes.items()}
