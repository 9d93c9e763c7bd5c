"""``kafka://host:port[,host:port]/topic``: a queue on an Apache Kafka topic (confluent-kafka).

Chosen as MLRun chooses it: a ``kafka://`` path, or a bare topic plus ``kafka_brokers=`` on the
queue step (``kafka_producer_options=`` are passed to the producer, ``kafka_consumer_options=`` to
the consumers, both as librdkafka settings; credentials come from ``GRAPHPACK_KAFKA_<OPTION>``
variables or the function's secret files, e.g. ``GRAPHPACK_KAFKA_SASL_PASSWORD``, never from the
spec: see :func:`credentials`). Shards are the topic's partitions: the topic is created with
``shards`` partitions when missing (an existing topic must have that many). A record's key picks
its partition with the same hash as the other backends' shards.

Durability (DESIGN §4.9): a batch from the group commit is produced with ``acks=all`` and
idempotence on, then flushed; its ticket is done only when the broker acknowledged every record
of it; a delivery error (or ``message.timeout.ms``, 30 s by default here, passing) fails the
ticket, so the event is answered 503 rather than acknowledged.

Consuming: a group reads a partition through a consumer of Kafka group ``group`` assigned to that
partition alone, starting after the group's committed offset; ``commit`` stores the offset in
Kafka's group offsets (``offset + 1``, Kafka's "next to read"), so any Kafka tool sees the
group's progress. Offsets are Kafka's own.

Membership and leases (several graphpack consumers of one group splitting partitions) are kept
in a coordination topic ``<topic>.graphpack-coordination`` (one partition): every heartbeat,
claim, release and leave is a record, and every client replays the log in the same order, so a
claim wins when, at its place in the log, the partition was free, expired or already its
owner's. Claims carry wall-clock expiry times (clocks of the consumers must roughly agree, as
for S3 leases). The coordination topic keeps 6 hours of records, far more than a lease lives.
``cleanup`` does nothing: Kafka's retention deletes old records.

Offsets are committed synchronously, once per batch (a read waits up to ``read_linger`` for its
batch to fill): a commit left in flight when the child is killed would redeliver more than the
batch being handled (asynchronous, coalesced commits were measured faster for small batches and
rejected for that).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..runtime.deps import require
from .base import LeaseLost, Queue, QueueError, QueueItem, StorageError

logger = logging.getLogger("graphpack.queues.kafka")  # librdkafka's log lines go here
ENV_PREFIX = "GRAPHPACK_KAFKA_"
SECURITY_SETTINGS = ("security.", "sasl.", "ssl.")  # librdkafka settings every client of a queue shares
COORDINATION_SUFFIX = ".graphpack-coordination"
COORDINATION_RETENTION_MS = 6 * 3600 * 1000
# how long the broker holds a fetch that finds nothing new (new records answer it at once): an idle
# consumer's polls cost the broker ~0.5 ms of CPU each, so they are few
FETCH_WAIT_MS = 500
READ_LINGER = 0.02  # seconds a read waits for its batch to fill once it has a record
FLUSH_TIMEOUT = 120.0  # seconds a batch may wait for acknowledgements (message.timeout.ms fails it first)
RETRIABLE = ("NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE", "_TIMED_OUT",
             "_TRANSPORT", "REQUEST_TIMED_OUT", "UNKNOWN_TOPIC_OR_PART", "LEADER_NOT_AVAILABLE")


def _kafka() -> Any:
    return require("confluent_kafka", "confluent-kafka", "a kafka:// queue")


def _kafka_admin() -> Any:
    return require("confluent_kafka.admin", "confluent-kafka", "a kafka:// queue")


def parse_url(url: str, brokers: str | list[str] | None = None) -> tuple[str, str]:
    """``(brokers, topic)`` of a queue path: ``kafka://b1:9092,b2:9092/topic``, or ``kafka:///topic``
    or a bare ``topic`` with ``brokers`` (``kafka_brokers=``, a comma-separated string or a list)."""
    if isinstance(brokers, (list, tuple)):
        brokers = ",".join(str(b) for b in brokers)
    if url.lower().startswith("kafka://"):
        netloc, _, topic = url[len("kafka://"):].partition("/")
        netloc = netloc or (brokers or "")
    else:
        netloc, topic = brokers or "", url
    topic = topic.strip("/")
    if not netloc:
        raise QueueError(f"queue {url!r}: no Kafka brokers: write kafka://host:port/topic or give kafka_brokers=")
    if not topic or "/" in topic:
        raise QueueError(f"queue {url!r}: a Kafka queue needs one topic name, e.g. kafka://host:9092/topic")
    return netloc, topic


class KafkaQueue(Queue):
    """Partitions of one Kafka topic as shards; group offsets in Kafka; leases in a log topic."""

    scheme = "kafka"
    LINGER = 0.002

    def __init__(
        self,
        url: str,
        kafka_brokers: str | list[str] | None = None,
        kafka_producer_options: dict | None = None,
        kafka_consumer_options: dict | None = None,
        poll_interval: float = 0.05,
        read_linger: float = READ_LINGER,
        **options: Any,
    ) -> None:
        self.brokers, self.topic = parse_url(url, kafka_brokers)
        super().__init__(url, **options)
        self.producer_options = dict(kafka_producer_options or {})
        self.consumer_options = dict(kafka_consumer_options or {})
        self.poll_interval = float(poll_interval)
        self.read_linger = float(read_linger)
        self._producer: Any = None
        self._readers: dict[tuple[str, int], Any] = {}  # (group, shard) -> consumer assigned to it
        self._groups: dict[str, Any] = {}  # group -> consumer used for commits and committed()
        self._topic_ready = False
        self._coord = _Coordination(self)

    # -- clients -----------------------------------------------------------------------------------
    def _common(self) -> dict:
        """Settings of every client: the brokers, the log, the security settings of either options
        (``security.protocol``, ``sasl.mechanism``, ...) and the credentials (see :func:`credentials`)."""
        config = {"bootstrap.servers": self.brokers, "client.id": f"graphpack-{self.topic}", "logger": logger}
        for options in (self.consumer_options, self.producer_options):
            config.update({k: v for k, v in options.items() if k.startswith(SECURITY_SETTINGS)})
        for name, value in credentials().items():
            config[name[len(ENV_PREFIX):].lower().replace("_", ".")] = value
        return config

    def producer(self) -> Any:
        """The queue's data producer (created on first use, so forked workers each get their own).

        It reports failed records only (``delivery.report.only.error``): a batch is durable once
        ``flush`` finds nothing outstanding and none of its records failed. A Python report per
        stored record cost a GIL hand-over per record between the polling and the serving threads."""
        with self._lock:
            if self._producer is None:
                self._ensure_topic()
                self._producer = self._new_producer(errors_only=True)
            return self._producer

    def _new_producer(self, errors_only: bool, idempotent: bool = True) -> Any:
        config = {**self._common(), "acks": "all", "enable.idempotence": idempotent, "linger.ms": 1,
                  "message.timeout.ms": 30000,
                  "message.max.bytes": max(self.max_record_size + 4096, 1_000_000)}
        config.update(self.producer_options)
        config["delivery.report.only.error"] = errors_only
        return self._client(_kafka().Producer, config)

    def _consumer(self, group: str) -> Any:
        config = {**self._common(), "group.id": group, "enable.auto.commit": False,
                  "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
                  "fetch.wait.max.ms": FETCH_WAIT_MS, "fetch.queue.backoff.ms": 0,
                  "fetch.error.backoff.ms": 50, "topic.metadata.refresh.fast.interval.ms": 20,
                  "fetch.message.max.bytes": max(self.max_record_size + 4096, 1_048_576)}
        config.update(self.consumer_options)
        return self._client(_kafka().Consumer, config)

    def _group_client(self, group: str) -> Any:
        with self._read_lock:
            client = self._groups.get(group)
            if client is None:
                self._ensure_topic()
                client = self._groups[group] = self._consumer(group)
            return client

    def _admin(self, errors: list | None = None) -> Any:
        """An admin client; ``errors`` collects what librdkafka reports (a refused login, ...)."""
        config = self._common()
        if errors is not None:
            config["error_cb"] = errors.append
        return self._client(_kafka_admin().AdminClient, config)

    def _client(self, kind: Callable[[dict], Any], config: dict) -> Any:
        """A client of ``kind``; settings librdkafka refuses (a CA that is no PEM, ...) are a QueueError."""
        try:
            return kind(config)
        except _kafka().KafkaException as exc:
            err: Any = exc.args[0] if exc.args else exc
            raise QueueError(f"queue {self.url!r}: bad Kafka client settings: "
                             f"{err.str() if hasattr(err, 'str') else err}") from None

    def _ensure_topic(self) -> None:
        if self._topic_ready:
            return
        partitions = _create_topic(self, self.topic, self.shards, {
            "max.message.bytes": str(max(self.max_record_size + 4096, 1_048_588))})
        if partitions != self.shards:
            raise QueueError(f"queue {self.url!r}: topic {self.topic!r} has {partitions} partition(s), "
                             f"the queue step says shards={self.shards}")
        self._topic_ready = True

    # -- producing ---------------------------------------------------------------------------------
    def _append(self, by_shard: dict[int, list[bytes]]) -> None:
        """Produce the batch and wait (``flush``, which sends at once) until the broker acknowledged
        every record of it; the group committer fills the next batch meanwhile."""
        producer = self.producer()
        failures: list = []

        def failed(err: Any, msg: Any) -> None:
            failures.append(err)

        for shard, datas in by_shard.items():
            for data in datas:
                while True:
                    try:
                        producer.produce(self.topic, data, partition=shard, on_delivery=failed)
                        break
                    except BufferError:  # the local queue is full: let librdkafka send first
                        producer.poll(0.05)
        left = producer.flush(FLUSH_TIMEOUT)  # message.timeout.ms fails records well before
        if failures:
            if any(err.fatal() for err in failures):  # the producer cannot go on: the next batch gets a new one
                with self._lock:
                    self._producer = None
            raise StorageError(f"queue {self.url!r}: Kafka did not store the records: {failures[0]}")
        if left:
            raise StorageError(f"queue {self.url!r}: the broker did not acknowledge {left} record(s)")
        return None

    # -- consuming ---------------------------------------------------------------------------------
    def read(self, shard: int, group: str, max_records: int = 100, timeout: float = 0.0) -> list[QueueItem]:
        """Up to ``max_records`` items; once one is there, up to ``read_linger`` seconds more for the
        batch to fill: a batch is one offset commit, which costs the broker far more than a record."""
        self._check_shard(shard)
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._read_lock:
            reader = self._reader(shard, group)
            items: list[QueueItem] = []
            while True:
                wait = max(min(deadline - time.monotonic(), self.poll_interval), 0.0)
                self._take(_fetch(reader, max_records - len(items), wait), shard, items)
                if items or time.monotonic() >= deadline or self.closed:
                    break
            if items and len(items) < max_records and self.read_linger > 0:
                self._take(reader.consume(max_records - len(items), self.read_linger), shard, items)
            if items:
                self._cursors[(group, shard)] = items[-1].offset + 1
        return items

    def _take(self, messages: list, shard: int, items: list[QueueItem]) -> None:
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise StorageError(f"queue {self.url!r}: consumer failed: {err}")
                continue  # transient (broker restarting): librdkafka retries by itself
            items.append(QueueItem(shard, msg.offset(), msg.value() or b""))

    def _reader(self, shard: int, group: str) -> Any:
        """The consumer of ``(group, shard)``, (re)assigned to start after the cursor or the checkpoint."""
        kafka = _kafka()
        reader = self._readers.get((group, shard))
        if reader is None:
            self._ensure_topic()
            reader = self._readers[(group, shard)] = self._consumer(group)
        if (group, shard) not in self._cursors:
            done = self.committed(shard, group)
            start = 0 if done is None else done + 1  # 0 (auto.offset.reset: earliest) saves a round trip
            reader.assign([kafka.TopicPartition(self.topic, shard, start)])
            self._cursors[(group, shard)] = start
        return reader

    def _read(self, shard: int, group: str, max_records: int) -> list[QueueItem]:
        return self.read(shard, group, max_records)  # read() is overridden: consume() waits itself

    def _commit(self, shard: int, group: str, offset: int) -> None:
        holder = self._coord.held.get((group, shard))
        if holder is not None and self._coord.holder(group, shard) not in (None, holder):
            raise LeaseLost(f"queue {self.url!r}: shard {shard} of group {group!r} was taken over")
        kafka = _kafka()
        client = self._group_client(group)
        part = kafka.TopicPartition(self.topic, shard, offset + 1)
        _retry(self, "commit", lambda: client.commit(offsets=[part], asynchronous=False))

    def end_offset(self, shard: int) -> int | None:
        """The partition's high watermark as this process's reader of it last fetched it (no round
        trip: the consumer's lag gauge asks once a second); None before a reader fetched."""
        kafka = _kafka()
        for (_, reader_shard), reader in list(self._readers.items()):
            if reader_shard == shard:
                try:
                    _, high = reader.get_watermark_offsets(kafka.TopicPartition(self.topic, shard), cached=True)
                except kafka.KafkaException:
                    return None
                return high if high >= 0 else None
        return None

    def committed(self, shard: int, group: str) -> int | None:
        kafka = _kafka()
        client = self._group_client(group)
        [part] = _retry(self, "read the committed offset",
                        lambda: client.committed([kafka.TopicPartition(self.topic, shard)], timeout=10))
        if part.error is not None:
            raise StorageError(f"queue {self.url!r}: committed offset of group {group!r}: {part.error}")
        return None if part.offset < 0 else part.offset - 1

    # -- membership and leases (the coordination log) ---------------------------------------------
    def members(self, group: str, owner: str, ttl: float) -> list[str]:
        return self._coord.members(group, owner, ttl)

    def leave(self, group: str, owner: str) -> None:
        self._coord.append({"op": "leave", "group": group, "owner": owner})

    def acquire(self, shard: int, group: str, owner: str, ttl: float) -> bool:
        return self._coord.acquire(group, shard, owner, ttl)

    def release(self, shard: int, group: str, owner: str) -> None:
        self._coord.held.pop((group, shard), None)
        self._coord.append({"op": "release", "group": group, "shard": shard, "owner": owner})

    # -- lifecycle ---------------------------------------------------------------------------------
    def check(self) -> None:
        self._ensure_topic()

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
            if self._producer is not None:
                self._producer.flush(30)
        finally:
            for client in [*self._readers.values(), *self._groups.values()]:
                client.close()
            self._readers.clear()
            self._groups.clear()
            self._coord.close()

    def _dead_letter_default(self) -> str:
        return f"kafka://{self.brokers}/{self.topic}-dead-letter"

    def _dead_letter_options(self) -> dict:
        return {"kafka_producer_options": self.producer_options, "kafka_consumer_options": self.consumer_options}


def credentials() -> dict[str, str]:
    """``GRAPHPACK_KAFKA_<OPTION>`` settings (``GRAPHPACK_KAFKA_SASL_PASSWORD`` -> ``sasl.password``),
    how credentials reach the queue from a secret without being written into the function's spec:
    the environment (``with_secrets("env", [...])``, a Kubernetes secret's keys as variables) wins
    over the function's secret files (``with_secrets("file", path)``, e.g. a mounted secret)."""
    from ..errors import GraphpackError
    from ..runtime.secrets import read_secret_file
    from ..runtime.server import get_serving_spec

    found: dict[str, str] = {}
    try:
        sources = get_serving_spec().get("secret_sources") or []
    except (GraphpackError, OSError, ValueError):  # not inside a function (a script, a benchmark)
        sources = []
    for source in sources:
        if source.get("kind") == "file":
            try:
                values = read_secret_file(str(source.get("source")))
            except OSError:
                continue
            found.update({k: str(v) for k, v in values.items() if k.startswith(ENV_PREFIX) and len(k) > len(ENV_PREFIX)})
    found.update({k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX) and len(k) > len(ENV_PREFIX)})
    return found


def _fetch(consumer: Any, count: int, wait: float) -> list:
    """Up to ``count`` messages: what is fetched already, else the first to arrive within ``wait``
    seconds and what came with it (``consume(n, wait)`` alone waits for all ``n``)."""
    messages = consumer.consume(count, 0)
    if messages or wait <= 0:
        return messages
    first = consumer.poll(wait)
    if first is None:
        return []
    return [first, *consumer.consume(count - 1, 0)] if count > 1 else [first]


def _retry(queue: KafkaQueue, what: str, call: Callable[[], Any], attempts: int = 20) -> Any:
    """``call()``, retried while the group coordinator is loading or moving (after a broker restart)."""
    kafka = _kafka()
    for attempt in range(attempts):
        try:
            return call()
        except kafka.KafkaException as exc:
            err: Any = exc.args[0] if exc.args else None
            name = err.name() if hasattr(err, "name") else str(exc)
            retriable = any(code in name for code in RETRIABLE) or (hasattr(err, "retriable") and err.retriable())
            if not retriable or attempt == attempts - 1:
                raise StorageError(f"queue {queue.url!r}: could not {what}: {exc}") from None
            time.sleep(min(0.1 * 2 ** attempt, 2.0))
    raise AssertionError("unreachable")


def _raise_refused(queue: KafkaQueue, reported: list) -> None:
    """A QueueError when librdkafka reported a refused login or a failed TLS handshake."""
    kafka = _kafka()
    refused = [err for err in reported if err.code() == kafka.KafkaError._AUTHENTICATION]
    if refused:
        raise QueueError(f"queue {queue.url!r}: Kafka brokers {queue.brokers} refused the login: {refused[-1].str()}")
    tls = [err for err in reported if err.code() == kafka.KafkaError._SSL or "certificate" in err.str()]
    if tls:  # the CA does not trust the broker's certificate, or the broker refused the client's
        raise QueueError(f"queue {queue.url!r}: TLS with Kafka brokers {queue.brokers} failed: {tls[-1].str()}")


def _create_topic(queue: KafkaQueue, topic: str, partitions: int, config: dict[str, str]) -> int:
    """Create ``topic`` when missing; returns its partition count. QueueError when the brokers fail."""
    kafka = _kafka()
    reported: list = []
    admin = queue._admin(reported)
    deadline = time.monotonic() + 5
    while True:  # 1 s tries: a refused login or certificate is told at once, not after 5 s
        try:
            meta = admin.list_topics(timeout=1)  # all topics: asking for one would auto-create it
            break
        except kafka.KafkaException as exc:
            admin.poll(0)  # serves the errors librdkafka reported meanwhile
            _raise_refused(queue, reported)
            if time.monotonic() >= deadline:
                raise QueueError(f"queue {queue.url!r}: Kafka brokers {queue.brokers} unreachable: {exc}") from None
    found = meta.topics.get(topic)
    if found is not None and found.error is None:
        return len(found.partitions)
    new = _kafka_admin().NewTopic(topic, num_partitions=partitions, replication_factor=-1, config=config)
    future = admin.create_topics([new], operation_timeout=30)[topic]
    try:
        future.result(timeout=60)
    except kafka.KafkaException as exc:
        err: Any = exc.args[0] if exc.args else None
        if not (hasattr(err, "code") and err.code() == kafka.KafkaError.TOPIC_ALREADY_EXISTS):
            raise QueueError(f"queue {queue.url!r}: could not create topic {topic!r}: {exc}") from None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # metadata of a new topic reaches the brokers shortly after
        found = admin.list_topics(timeout=15).topics.get(topic)
        if (found is not None and found.error is None and found.partitions
                and all(part.leader >= 0 for part in found.partitions.values())):
            return len(found.partitions)
        time.sleep(0.1)
    raise QueueError(f"queue {queue.url!r}: topic {topic!r} was created but has no partitions yet")


class _Coordination:
    """Members and shard leases of the queue's groups, as a replayed log (see the module docstring)."""

    def __init__(self, queue: KafkaQueue) -> None:
        self.queue = queue
        self.topic = queue.topic + COORDINATION_SUFFIX
        self.lock = threading.Lock()
        self.reader: Any = None
        self.producer: Any = None  # its own: records are acknowledged one by one, with their offsets
        self.position = 0  # next offset of the log to apply
        self.leases: dict[tuple[str, int], tuple[str, float]] = {}
        self.live: dict[str, dict[str, float]] = {}
        self.held: dict[tuple[str, int], str] = {}  # leases this queue object won: (group, shard) -> owner

    def append(self, entry: dict) -> int:
        """Write ``entry`` (stamped with the time) and return its offset once the broker has it."""
        self._ensure()
        producer = self.producer
        entry = {**entry, "at": time.time()}
        box: dict[str, Any] = {}
        done = threading.Event()

        def report(err: Any, msg: Any) -> None:
            box["err"], box["offset"] = err, (msg.offset() if err is None else None)
            done.set()

        producer.produce(self.topic, json.dumps(entry).encode(), partition=0, on_delivery=report)
        producer.flush(60)  # sends now and serves the report
        if not done.wait(5):
            raise StorageError(f"queue {self.queue.url!r}: coordination record not acknowledged")
        if box["err"] is not None:
            raise StorageError(f"queue {self.queue.url!r}: coordination record not stored: {box['err']}")
        return int(box["offset"])

    def _ensure(self) -> None:
        with self.lock:
            if self.reader is not None:
                return
            _create_topic(self.queue, self.topic, 1, {"retention.ms": str(COORDINATION_RETENTION_MS),
                                                      "segment.ms": str(COORDINATION_RETENTION_MS // 6)})
            kafka = _kafka()
            reader = kafka.Consumer({**self.queue._common(), "group.id": f"graphpack-coord-{uuid.uuid4().hex}",
                                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                     "fetch.wait.max.ms": FETCH_WAIT_MS, "fetch.queue.backoff.ms": 0,
                                     "topic.metadata.refresh.fast.interval.ms": 20})
            reader.assign([kafka.TopicPartition(self.topic, 0, 0)])  # 0, not OFFSET_BEGINNING: no ListOffsets round
            # acknowledged one by one with their offsets; a duplicated entry changes nothing, so no
            # idempotence (whose producer id would delay the first entry)
            self.producer = self.queue._new_producer(errors_only=False, idempotent=False)
            self.reader = reader

    def replay(self, until: int | None = None) -> None:
        """Apply the log up to and including offset ``until`` (or whatever is there now)."""
        self._ensure()
        with self.lock:
            if until is None:
                kafka = _kafka()
                _, high = self.reader.get_watermark_offsets(kafka.TopicPartition(self.topic, 0), timeout=10)
                until = high - 1
            deadline = time.monotonic() + 30
            while self.position <= until:
                if time.monotonic() > deadline:
                    raise StorageError(f"queue {self.queue.url!r}: could not read the coordination log")
                for msg in _fetch(self.reader, 1000, 0.05):
                    if msg.error() is not None:
                        continue
                    self._apply(json.loads(msg.value()))
                    self.position = msg.offset() + 1

    def _apply(self, entry: dict) -> None:
        op, group, owner, at = entry.get("op"), entry.get("group", ""), entry.get("owner", ""), entry.get("at", 0.0)
        if op == "heartbeat":
            self.live.setdefault(group, {})[owner] = entry["expires"]
        elif op == "leave":
            self.live.get(group, {}).pop(owner, None)
        elif op == "claim":
            key = (group, int(entry["shard"]))
            holder = self.leases.get(key)
            if holder is None or holder[0] == owner or holder[1] < at:
                self.leases[key] = (owner, entry["expires"])
        elif op == "release":
            key = (group, int(entry["shard"]))
            holder = self.leases.get(key)
            if holder is not None and holder[0] == owner:
                del self.leases[key]

    def members(self, group: str, owner: str, ttl: float) -> list[str]:
        offset = self.append({"op": "heartbeat", "group": group, "owner": owner, "expires": time.time() + ttl})
        self.replay(offset)
        now = time.time()
        return sorted(name for name, expires in self.live.get(group, {}).items() if expires >= now)

    def acquire(self, group: str, shard: int, owner: str, ttl: float) -> bool:
        expires = time.time() + ttl
        offset = self.append({"op": "claim", "group": group, "shard": shard, "owner": owner, "expires": expires})
        self.replay(offset)
        won = self.leases.get((group, shard)) == (owner, expires)
        if won:
            self.held[(group, shard)] = owner
        else:
            self.held.pop((group, shard), None)
        return won

    def holder(self, group: str, shard: int) -> str | None:
        """The live holder of the lease as the log read so far says (None when free or expired).
        No round trip: the reader fetches the log ahead, and a claim by another member only wins
        once this member's lease expired, which this check sees by the clock."""
        if self.reader is None:
            return None
        with self.lock:
            for msg in self.reader.consume(1000, 0):
                if msg.error() is None:
                    self._apply(json.loads(msg.value()))
                    self.position = msg.offset() + 1
        lease = self.leases.get((group, shard))
        return lease[0] if lease is not None and lease[1] >= time.time() else None

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(30)
            self.producer = None
        if self.reader is not None:
            self.reader.close()
            self.reader = None
