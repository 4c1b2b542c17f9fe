"""The Fraud Detection Handbook's simulated card transactions as sleuth events + labels.

Data: `transactions_all.parquet` (Le Borgne et al., "Reproducible Machine Learning for Credit
Card Fraud Detection - Practical Handbook"; provenance in its SOURCE.txt). Mapping:

| handbook            | sleuth                                                               |
|---------------------|----------------------------------------------------------------------|
| CUSTOMER_ID         | `user_id` (one customer = one timeline)                              |
| TX_DATETIME         | `ts`; every transaction is an event of type `payment`                 |
| TX_AMOUNT           | `amount`                                                             |
| TERMINAL_ID         | `item_id` and `category` (as "T<id>"): the tokenizer embeds the      |
|                     | category (top-N + OOV), so a sequence model can see the terminal;    |
|                     | item_id keeps it for the novelty features of the baselines           |
| TRANSACTION_ID      | `attrs` ({"transaction_id": id}) and the labels' `transaction_id`     |
| TX_FRAUD            | one label row per transaction: `label`, `as_of` = TX_DATETIME        |
| TX_FRAUD_SCENARIO   | label `pattern` (amount_over_220 / compromised_terminal /            |
|                     | compromised_credentials; null for genuine transactions)              |

Protocol (`handbook_split`, `handbook_folds`): the handbook's `get_train_test_set` and
`prequentialSplit` (shared_functions, chapters 3 and 5) as used for its published test results:
a fold trains on 7 days, skips a 7-day delay (labels not yet known: its rows are neither train
nor test) and tests on the next 7 days. On each test day the customers already known to be
compromised are removed: those with a fraud in the training week or on a day up to the day
before (test day - delay). The published "test" numbers are means over 4 folds whose training
weeks start on 2018-08-15, 08-08, 08-01 and 07-25 (`start_date_training` 2018-07-25 shifted by
`(n_folds - 1) * 7` days, then stepped back a week per fold).

pandas / pyarrow only (no torch), as `models.metrics` and `models.evaluation`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from models.contracts import EVENT_COLUMNS  # the event schema's columns, in its order

SCENARIOS: dict[int, str | None] = {
    0: None, 1: "amount_over_220", 2: "compromised_terminal", 3: "compromised_credentials",
}
FILE_NAME = "transactions_all.parquet"
FIRST_DAY = pd.Timestamp("2018-04-01")           # TX_TIME_DAYS == 0
START_DATE_TRAINING = pd.Timestamp("2018-07-25")
N_FOLDS = 4
DELTA_DAYS = 7                                   # delta_train = delta_delay = delta_test

# Chapter 7 "Benchmark summary" (SOURCE.txt): test means over the handbook's prequential folds.
PUBLISHED: dict[str, dict[str, float]] = {
    "decision_tree": {"auc_roc": 0.797, "average_precision": 0.579, "card_precision_at_100": 0.284},
    "logistic_regression": {"auc_roc": 0.868, "average_precision": 0.623, "card_precision_at_100": 0.297},
    "random_forest": {"auc_roc": 0.870, "average_precision": 0.678, "card_precision_at_100": 0.299},
    "xgboost": {"auc_roc": 0.869, "average_precision": 0.687, "card_precision_at_100": 0.303},
    "feed_forward_nn": {"auc_roc": 0.876, "average_precision": 0.675, "card_precision_at_100": 0.303},
    "cnn_sequential": {"auc_roc": 0.872, "average_precision": 0.599, "card_precision_at_100": 0.288},
    "lstm_sequential": {"auc_roc": 0.876, "average_precision": 0.665, "card_precision_at_100": 0.297},
    "lstm_attention": {"auc_roc": 0.874, "average_precision": 0.667, "card_precision_at_100": 0.295},
}


def _resolve(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / FILE_NAME
    if not p.is_file():
        raise ValueError(f"handbook data not found at {str(path)!r} (expected {FILE_NAME})")
    return p


def load_handbook(
    path: str | os.PathLike,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the handbook parquet into (events, labels) (mapping in the module docstring).

    path: the parquet file or its directory. start / end: keep transactions with
    start <= TX_DATETIME < end (None = unbounded), e.g. to limit the history on 2 CPU cores.
    events: the event schema, sorted by (user_id, ts); labels: one row per transaction
    (user_id, label, as_of, source="import", pattern, transaction_id, day).
    """
    import pyarrow.dataset as ds

    dataset = ds.dataset(_resolve(path), format="parquet")
    cond = None
    for bound, op in ((start, "ge"), (end, "lt")):
        if bound is not None:
            ts = pd.Timestamp(bound).to_datetime64().astype("datetime64[ns]")
            expr = getattr(ds.field("TX_DATETIME"), f"__{op}__")(ts)
            cond = expr if cond is None else cond & expr
    cols = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT",
            "TX_FRAUD", "TX_FRAUD_SCENARIO"]
    df = dataset.to_table(columns=cols, filter=cond).to_pandas()
    if df.empty:
        raise ValueError(f"no handbook transactions between {start} and {end}")
    df = df.sort_values(["CUSTOMER_ID", "TX_DATETIME", "TRANSACTION_ID"], kind="stable")
    df = df.reset_index(drop=True)
    user = df["CUSTOMER_ID"].astype(str)
    ts = df["TX_DATETIME"].astype("datetime64[us]")
    terminal = "T" + df["TERMINAL_ID"].astype(str)
    n = len(df)
    null = pd.Series([None] * n, dtype=object)
    events = pd.DataFrame({c: null for c in EVENT_COLUMNS})
    events["user_id"] = user.to_numpy()
    events["ts"] = ts.to_numpy()
    events["event_type"] = "payment"
    events["attrs"] = ('{"transaction_id": ' + df["TRANSACTION_ID"].astype(str) + "}").to_numpy()
    events["item_id"] = terminal.to_numpy()
    events["category"] = terminal.to_numpy()
    events["amount"] = df["TX_AMOUNT"].astype("float64").to_numpy()
    # the store sorts by (user_id, ts) with user_id as text
    order = np.lexsort((df["TRANSACTION_ID"].to_numpy(), ts.to_numpy(), user.to_numpy()))
    events = events.iloc[order].reset_index(drop=True)
    labels = pd.DataFrame({
        "user_id": user.to_numpy(),
        "label": df["TX_FRAUD"].astype("int64").to_numpy(),
        "as_of": ts.to_numpy(),
        "source": "import",
        "pattern": df["TX_FRAUD_SCENARIO"].map(SCENARIOS).astype(object).to_numpy(),
        "transaction_id": df["TRANSACTION_ID"].astype("int64").to_numpy(),
        "day": ((ts.dt.normalize() - FIRST_DAY).dt.days).astype("int64").to_numpy(),
    }).iloc[order].reset_index(drop=True)
    return events, labels


def handbook_split(
    labels: pd.DataFrame,
    train_start: str | pd.Timestamp,
    delta_train: int = DELTA_DAYS,
    delta_delay: int = DELTA_DAYS,
    delta_test: int = DELTA_DAYS,
) -> pd.DataFrame:
    """One handbook fold: the labels of its train and test days with a `split` column.

    Train: as_of in [train_start, +delta_train days). Test: the delta_test days after the
    delay, minus, on each test day, the customers already known to be compromised (a fraud in
    the train days or on any later day up to test day - delta_delay - 1, as in the handbook's
    `get_train_test_set`). Delay-period rows and all other rows are left out.
    """
    for name, v in (("delta_train", delta_train), ("delta_delay", delta_delay),
                    ("delta_test", delta_test)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    if "day" not in labels.columns:
        raise ValueError("labels lack the day column (use load_handbook)")
    start = pd.Timestamp(train_start).normalize()
    d0 = int((start - FIRST_DAY).days)
    day = labels["day"].to_numpy()
    is_train = (day >= d0) & (day < d0 + delta_train)
    if not is_train.any():
        raise ValueError(f"no labels in the training days starting {start.date()}")
    fraud = labels["label"].to_numpy() == 1
    known = set(labels.loc[is_train & fraud, "user_id"])
    keep_test = np.zeros(len(labels), dtype=bool)
    user = labels["user_id"].to_numpy()
    for i in range(delta_test):
        # frauds of day d0 + delta_train + i - 1 become known before test day i (handbook rule)
        newly = (day == d0 + delta_train + i - 1) & fraud
        known |= set(user[newly])
        on_day = day == d0 + delta_train + delta_delay + i
        keep_test |= on_day & ~pd.Series(user).isin(known).to_numpy()
    if not keep_test.any():
        raise ValueError(f"no test labels for the fold starting {start.date()}")
    out = labels[is_train | keep_test].copy()
    out["split"] = np.where(is_train[is_train | keep_test], "train", "test")
    return out.reset_index(drop=True)


def handbook_folds(n_folds: int = N_FOLDS,
                   start_date_training: str | pd.Timestamp = START_DATE_TRAINING,
                   delta: int = DELTA_DAYS) -> list[pd.Timestamp]:
    """Training start dates of the handbook's test folds, latest first (as prequentialSplit)."""
    if not 1 <= n_folds <= 12:
        raise ValueError(f"n_folds={n_folds!r} must be in [1, 12]")
    first = pd.Timestamp(start_date_training) + pd.Timedelta(days=(N_FOLDS - 1) * delta)
    return [first - pd.Timedelta(days=i * delta) for i in range(n_folds)]
