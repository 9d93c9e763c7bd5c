"""Triggers a function can have, as Nuclio trigger dicts (``spec.triggers.<name>``)."""
from __future__ import annotations

from typing import Any

from .errors import GraphpackError
from .runtime.cron import Interval, parse_schedule


def check_cron(schedule: str, where: str = "cron trigger") -> str:
    """A schedule Nuclio's cron trigger accepts (checked by the code the processor runs)."""
    try:
        parse_schedule(schedule)
    except ValueError as exc:
        raise GraphpackError(f"{where}: {exc}") from None
    return str(schedule).strip()


def check_interval(interval: str, where: str = "cron trigger") -> str:
    """An interval (a Go duration such as '30s'), checked by the code the processor runs."""
    try:
        Interval(interval)
    except ValueError as exc:
        raise GraphpackError(f"{where}: invalid interval {interval!r}: {exc}") from None
    return str(interval).strip()


class Trigger:
    """Base: ``kind``, ``attributes`` and extra top-level fields of a Nuclio trigger."""

    kind = ""

    def __init__(self, **attributes: Any) -> None:
        self.attributes = {k: v for k, v in attributes.items() if v is not None}
        self.extra: dict = {}

    def to_dict(self, name: str) -> dict:
        out: dict = {"kind": self.kind, "attributes": dict(self.attributes)}
        out.update(self.extra)
        return out


class CronTrigger(Trigger):
    """Fire on a ``schedule`` (cron) or every ``interval`` with ``body`` and ``headers``."""

    kind = "cron"

    def __init__(self, schedule: str | None = None, interval: str | None = None, body: Any = None,
                 headers: dict | None = None, **attributes: Any) -> None:
        if bool(schedule) == bool(interval):
            raise GraphpackError("cron trigger: set exactly one of schedule= or interval=")
        super().__init__(**attributes)
        if schedule:
            self.attributes["schedule"] = check_cron(schedule)
        else:
            self.attributes["interval"] = check_interval(interval)  # type: ignore[arg-type]
        if body is not None or headers:
            event: dict = {}
            if body is not None:
                event["body"] = body
            if headers:
                event["headers"] = dict(headers)
            self.attributes["event"] = event


class HttpTrigger(Trigger):
    """The HTTP trigger: ``workers``, ``port``, ``max_body_size`` and Nuclio attributes."""

    kind = "http"

    def __init__(self, workers: int | None = 8, port: int | None = None, host: str | None = None,
                 paths: list | None = None, max_body_size: int | None = None, **attributes: Any) -> None:
        super().__init__(**attributes)
        if workers is not None:
            if not isinstance(workers, int) or workers < 1:
                raise GraphpackError(f"http trigger: workers must be a positive integer, got {workers!r}")
            self.extra["numWorkers"] = workers
        if port is not None:
            self.attributes["port"] = int(port)
        if max_body_size is not None:
            self.attributes["maxRequestBodySize"] = int(max_body_size)
        if host:
            self.attributes["ingresses"] = {"0": {"host": host, "paths": list(paths or ["/"])}}


class V3IOStreamTrigger(Trigger):
    """Read a v3io stream: ``url`` or ``container`` + ``stream_path``, as consumer ``group``."""

    kind = "v3ioStream"

    def __init__(self, url: str | None = None, container: str | None = None, stream_path: str | None = None,
                 group: str = "serving", seek_to: str = "earliest", shards: int | None = None,
                 webapi: str | None = None, read_batch_size: int | None = None, **attributes: Any) -> None:
        super().__init__(**attributes)
        if url:
            from .queues.v3io import QueueError, parse_v3io_url

            try:
                endpoint, container, stream_path = parse_v3io_url(url)
            except QueueError as exc:
                raise GraphpackError(f"v3ioStream trigger: {exc}") from None
            webapi = webapi or endpoint
        if not container or not stream_path:
            raise GraphpackError("v3ioStream trigger: needs url='v3io:///<container>/<path>' (or "
                                 "'v3io://<host:port>/<container>/<path>') or container= and stream_path=")
        if seek_to not in ("earliest", "latest"):
            raise GraphpackError(f"v3ioStream trigger: seek_to must be 'earliest' or 'latest', got {seek_to!r}")
        self.attributes.update({"containerName": container, "streamPath": "/" + stream_path.strip("/"),
                                "consumerGroup": group, "seekTo": seek_to})
        if read_batch_size:
            self.attributes["readBatchSize"] = int(read_batch_size)
        if webapi:
            self.extra["url"] = webapi
        if shards:
            self.extra["numWorkers"] = int(shards)


class KafkaTrigger(Trigger):
    """Read Kafka ``topics`` from ``brokers`` as consumer ``group`` (Nuclio's ``kafka-cluster``).

    Credentials never go inline: a ``sasl`` mapping with a ``password`` (or ``tls`` key material) is
    refused, since function.yaml is a file graphpack writes; give Nuclio a mounted secret through
    ``secretPath`` instead."""

    kind = "kafka-cluster"

    def __init__(self, brokers: str | list[str], topics: str | list[str], group: str = "serving",
                 initial_offset: str = "earliest", worker_allocation_mode: str | None = None,
                 **attributes: Any) -> None:
        top = {key: attributes.pop(key) for key in list(attributes) if _camel(key) in TOP_LEVEL}
        super().__init__(**{_camel(k): v for k, v in attributes.items()})
        self.extra.update({_camel(k): v for k, v in top.items() if v is not None})
        broker_list = [b.strip() for b in brokers.split(",")] if isinstance(brokers, str) else list(brokers)
        topic_list = [topics] if isinstance(topics, str) else list(topics)
        if not all(broker_list) or not broker_list:
            raise GraphpackError(f"kafka-cluster trigger: brokers must be host:port entries, got {brokers!r}")
        if not all(topic_list) or not topic_list:
            raise GraphpackError(f"kafka-cluster trigger: topics must name at least one topic, got {topics!r}")
        if initial_offset not in ("earliest", "latest"):
            raise GraphpackError(f"kafka-cluster trigger: initial_offset must be 'earliest' or 'latest', "
                                 f"got {initial_offset!r}")
        check_no_inline_secrets(self.attributes, "kafka-cluster trigger")
        self.attributes.update({"brokers": broker_list, "topics": topic_list, "consumerGroup": group,
                                "initialOffset": initial_offset})
        if worker_allocation_mode:
            self.attributes["workerAllocationMode"] = worker_allocation_mode


TOP_LEVEL = {"maxWorkers", "numWorkers", "partitions", "workerAllocatorName", "explicitAckMode",
             "workerTerminationTimeout", "waitExplicitAckDuringRebalanceTimeout"}


def _camel(name: str) -> str:
    """MLRun's snake_case trigger arguments as Nuclio's names (session_timeout -> sessionTimeout)."""
    head, *rest = str(name).split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


SECRET_FIELDS = ("password", "clientsecret", "accesskey", "accesscertificate", "cacert")


def check_no_inline_secrets(attributes: Any, where: str, path: str = "") -> None:
    """Refuse credentials written into a trigger's attributes (they would land in function.yaml)."""
    if not isinstance(attributes, dict):
        return
    for key, value in attributes.items():
        field = f"{path}.{key}" if path else str(key)
        if isinstance(value, dict):
            check_no_inline_secrets(value, where, field)
        elif (str(key).replace("_", "").replace(".", "").lower() in SECRET_FIELDS and value
              and not str(value).startswith("$ref:")):  # Nuclio's reference to the function's secret
            raise GraphpackError(f"{where}: attribute {field!r} holds a credential inline; secrets never go into "
                                 "function.yaml: mount a Kubernetes secret and point 'secretPath' at it")


def trigger_to_dict(name: str, spec: Any) -> dict:
    """A Nuclio trigger dict from a Trigger object or a dict in Nuclio's form."""
    if not name:
        raise GraphpackError("add_trigger: the trigger needs a name")
    if isinstance(spec, Trigger):
        return spec.to_dict(name)
    if hasattr(spec, "to_dict") and callable(spec.to_dict):  # nuclio-jupyter trigger objects
        data = spec.to_dict()
        return data.get(name, data) if isinstance(data, dict) else data
    if isinstance(spec, dict) and spec.get("kind"):
        return dict(spec)
    raise GraphpackError(f"trigger {name!r}: expected a CronTrigger/HttpTrigger/V3IOStreamTrigger/KafkaTrigger or "
                         "a dict with 'kind'")
