"""Where streamed events come from (issue 16): a Kafka topic, or a drop folder without Kafka.

A source hands out micro-batches (`Batch`): events already validated by the ingest rules
(analyst/ingest.py), their rejects for quarantine, and the `StreamPosition` the store records in
the same transaction (analyst/store/stream.py). Nothing here writes to the store.

- `kafka://HOST:PORT[,HOST:PORT...]/TOPIC`: one JSON object per message (the event schema's
  field names; other keys go to `attrs`, as for a JSON-lines file), keyed by user_id so one
  user's events keep their order in one partition. The consumer is `confluent-kafka` (the Kafka
  protocol: Apache Kafka, Redpanda; the tests use a Tansu broker). It *assigns* itself every
  partition of the topic and seeks to the offsets stored in the store: the store, not the
  broker's group offsets, says what was read (decided 2026-12-04: one process owns a store, so
  one consumer per store; group rebalancing would add seconds and nothing to exactly-once).
  Partitions added to the topic later are read after a restart. Extra consumer settings
  (SASL, TLS) come from SLEUTH_KAFKA_CONFIG, a JSON object.
- Anything else is a drop folder: files (CSV, TSV, JSON lines, Parquet; as `sleuth ingest`
  reads them) are taken oldest first; names starting with "." or "~" or ending in ".tmp" /
  ".part" are being written and wait (write, then rename into the folder). A stored file moves
  to `processed/`; a file that is not a table at all moves to `rejected/` beside a `.why.txt`.
  Exactly-once comes from the ingest log's sha256, recorded in the events' transaction: a file
  stored before a kill is moved, not stored again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from analyst.ingest import IngestError, detect_format, normalise_events, read_messages, read_raw, validate_events
from analyst.store.stream import StreamPosition

KAFKA_PREFIX = "kafka://"
MAX_MESSAGES = 2_000            # a micro-batch holds at most this many messages
POLL_S = 0.2                    # how long a poll waits for the first message
_WAITING = re.compile(r"^[.~]|\.(tmp|part)$", re.IGNORECASE)


class StreamSourceError(ValueError):
    """A stream source that cannot be used (bad address, missing topic, missing folder)."""


@dataclass(frozen=True)
class Batch:
    """One micro-batch: validated `events`, `rejects` (quarantine rows), the position the store
    records with them, the file's sha256 (drop folder), the produce time of each event in ms
    since the epoch when the source knows it, and `done`, called once the batch is stored."""
    name: str
    events: pd.DataFrame
    rejects: pd.DataFrame
    position: StreamPosition
    sha256: str | None = None
    produced_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    done: Callable[[], None] = lambda: None


def parse_source(text: str) -> tuple[str, dict[str, str]]:
    """('kafka', {bootstrap, topic}) or ('folder', {path}); StreamSourceError names what is wrong."""
    text = str(text or "").strip()
    if not text:
        raise StreamSourceError("no stream source given: expected kafka://HOST:PORT/TOPIC or a folder")
    if text.lower().startswith(KAFKA_PREFIX):
        rest = text[len(KAFKA_PREFIX):]
        bootstrap, _, topic = rest.partition("/")
        if not bootstrap or not topic or "/" in topic:
            raise StreamSourceError(f"stream source {text!r}: expected kafka://HOST:PORT/TOPIC")
        return "kafka", {"bootstrap": bootstrap, "topic": topic}
    path = Path(text).expanduser()
    if not path.is_dir():
        raise StreamSourceError(f"stream source {text!r}: no such folder (or give kafka://HOST:PORT/TOPIC)")
    return "folder", {"path": str(path.resolve())}


def open_source(text: str, *, has_ingested: Callable[[str], bool],
                offsets: Callable[[str], Mapping[int, int]], max_messages: int = MAX_MESSAGES):
    """The source named by `text` (see `parse_source`), ready to poll. `has_ingested(sha256)`
    and `offsets(source name)` read the store (a folder's files, a topic's stored offsets)."""
    kind, spec = parse_source(text)
    if kind == "kafka":
        return KafkaSource(spec["bootstrap"], spec["topic"], offsets, max_messages=max_messages)
    return FolderSource(Path(spec["path"]), has_ingested)


class FolderSource:
    """A drop folder (see the module docstring)."""

    def __init__(self, path: Path, has_ingested: Callable[[str], bool]) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self._has_ingested = has_ingested
        self.failures: list[str] = []          # files that were not tables (moved to rejected/)

    def _ready(self) -> list[Path]:
        files = [p for p in self.path.iterdir()
                 if p.is_file() and not _WAITING.search(p.name) and _known_type(p.name)]
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))

    def _move(self, file: Path, folder: str) -> Path:
        target_dir = self.path / folder
        target_dir.mkdir(exist_ok=True)
        target = target_dir / file.name
        if target.exists():                    # the same name dropped twice: keep both
            target = target_dir / f"{file.stem}.{time.time_ns()}{file.suffix}"
        shutil.move(str(file), str(target))
        return target

    def poll(self, timeout: float = POLL_S) -> Batch | None:
        """The oldest waiting file as a batch, or None after `timeout` with nothing new."""
        for file in self._ready():
            data = file.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            if self._has_ingested(sha):        # stored before a kill, not yet moved
                self._move(file, "processed")
                continue
            name = str(file.resolve())
            try:
                events, rejects = validate_events(read_raw(file, data=data), None, name)
            except IngestError as exc:
                moved = self._move(file, "rejected")
                moved.with_name(moved.name + ".why.txt").write_text(str(exc) + "\n")
                self.failures.append(str(exc))
                continue
            return Batch(name, events, rejects, StreamPosition(self.name), sha256=sha,
                         done=lambda f=file: self._move(f, "processed"))
        time.sleep(timeout)
        return None

    def rewind(self) -> None:
        """Nothing to do: a file not stored is still in the folder."""

    def close(self) -> None:
        """Nothing held open."""


def _known_type(name: str) -> bool:
    """Whether ingest reads a file of this name (by its extension, `.gz` allowed)."""
    try:
        detect_format(name)
    except IngestError:
        return False
    return True


def kafka_config(bootstrap: str, extra: str | None = None) -> dict[str, Any]:
    """The consumer settings: offsets are the store's (no auto commit), plus SLEUTH_KAFKA_CONFIG."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "group.id": "sleuth",
                              "enable.auto.commit": False, "enable.auto.offset.store": False,
                              "enable.partition.eof": False, "auto.offset.reset": "earliest",
                              # a fresh event should not wait for a fuller fetch (librdkafka's 500 ms)
                              "fetch.wait.max.ms": 50}
    text = os.environ.get("SLEUTH_KAFKA_CONFIG") if extra is None else extra
    if text:
        try:
            more = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StreamSourceError(f"SLEUTH_KAFKA_CONFIG: not JSON ({exc.msg}); expected an object "
                                    'such as {"security.protocol": "SASL_SSL"}') from None
        if not isinstance(more, dict):
            raise StreamSourceError("SLEUTH_KAFKA_CONFIG: expected a JSON object of consumer settings")
        config.update(more)
    return config


class KafkaSource:
    """A Kafka topic read from the offsets the store holds (see the module docstring)."""

    def __init__(self, bootstrap: str, topic: str, offsets: Callable[[str], Mapping[int, int]], *,
                 max_messages: int = MAX_MESSAGES, connect_timeout_s: float = 10.0) -> None:
        try:
            from confluent_kafka import Consumer
        except ImportError as exc:
            raise StreamSourceError("a Kafka source needs confluent-kafka: pip install 'sleuth[stream]'") from exc
        self.name = f"{KAFKA_PREFIX}{bootstrap}/{topic}"
        self.topic = topic
        self.max_messages = int(max_messages)
        self._offsets = offsets
        self._consumer = Consumer(kafka_config(bootstrap))
        try:
            meta = self._consumer.list_topics(topic, timeout=connect_timeout_s)
        except Exception as exc:   # KafkaException: broker unreachable
            self._consumer.close()
            raise StreamSourceError(f"{self.name}: cannot reach the broker ({exc})") from None
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            self._consumer.close()
            raise StreamSourceError(f"{self.name}: no such topic (create it, keyed by user_id)")
        self.partitions = sorted(info.partitions)
        self._next: dict[int, int] = {}
        self.rewind()

    def rewind(self) -> None:
        """Seek every partition to the offset the store holds (the beginning if none): after
        a failed batch, nothing read but not stored is lost."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        stored = dict(self._offsets(self.name))
        self._next = {p: int(stored[p]) for p in self.partitions if p in stored}
        self._consumer.assign([TopicPartition(self.topic, p, stored.get(p, OFFSET_BEGINNING))
                               for p in self.partitions])

    def poll(self, timeout: float = POLL_S) -> Batch | None:
        """Up to `max_messages` messages as one batch, or None after `timeout` with none."""
        from confluent_kafka import KafkaError, KafkaException

        first = self._consumer.poll(timeout)           # returns as soon as one message is there
        if first is None:
            return None
        # then what is already fetched, without waiting (consume(n, t) would wait t for n)
        messages = [first] + self._consumer.consume(self.max_messages - 1, timeout=0) if self.max_messages > 1 \
            else [first]
        by_part: dict[int, list] = defaultdict(list)
        for m in messages:
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(m.error())
            if m.offset() < self._next.get(m.partition(), -1):
                continue                       # read again after a rewind, stored already
            by_part[m.partition()].append(m)
        if not by_part:
            return None
        events, rejects, produced, starts, ends = [], [], [], {}, {}
        for part, msgs in sorted(by_part.items()):
            starts[part] = self._next.get(part, msgs[0].offset())
            ends[part] = msgs[-1].offset() + 1
            file = f"{self.name}/{part}"
            raw = read_messages([m.value() for m in msgs], [m.offset() for m in msgs], file)
            good, bad = validate_events(raw, None, file) if len(raw.frame) else (None, raw.rejects)
            if good is not None:
                events.append(good)
                kept = set(raw.frame.index.to_numpy()) - set(bad["row_number"].to_numpy())
                produced.extend(m.timestamp()[1] for m in msgs if m.offset() in kept)
            rejects.append(bad)
        events_frame = (pd.concat(events, ignore_index=True) if events
                        else normalise_events(pd.DataFrame({"user_id": [], "ts": [], "event_type": []}))[0])
        reject_frame = pd.concat(rejects, ignore_index=True)   # one frame per partition read
        position = StreamPosition(self.name, starts, ends)
        return Batch(self.name, events_frame, reject_frame, position,
                     produced_ms=np.asarray(produced, dtype=np.float64),
                     done=lambda e=dict(ends): self._next.update(e))

    def close(self) -> None:
        self._consumer.close()
