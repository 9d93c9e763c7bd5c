"""The Nuclio function config (function.yaml) of a function plan, as a dict.

Secrets appear only as references (env from a Kubernetes secret, a mounted secret volume);
the spec file is named by ``GRAPHPACK_SPEC_FILE``; a child's input queue is a ``v3ioStream``
trigger (``v3io://``), a ``kafka-cluster`` trigger (``kafka://``) or, since Nuclio has no S3 trigger, graphpack's own consumer announced by
``GRAPHPACK_QUEUE_CONSUMER`` / ``GRAPHPACK_CONSUMER_GROUP`` env entries.
"""
from __future__ import annotations

import copy
import json
import re
import shlex
from typing import Any

from ..errors import GraphpackError
from ..triggers import KafkaTrigger, V3IOStreamTrigger, check_cron, check_interval
from .kafka_auth import trigger_auth
from .plan import FunctionPlan, QueueInput, nuclio_name
from .requirements import needs_of, requirement_lines

API_VERSION = "nuclio.io/v1"
KIND = "NuclioFunction"
RUNTIME = "python:3.11"
ENTRY_MODULE = "graphpack_entry"
FUNCTION_DIR = "/opt/graphpack/function"
SPEC_FILE = "spec.json"
DEFAULT_MAX_BODY = 32 * 1024 * 1024
PROJECT_LABEL = "nuclio.io/project-name"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

# Trigger fields Nuclio reads (pkg/functionconfig/types.go Trigger, json tags).
TRIGGER_FIELDS = {
    "class", "kind", "name", "disabled", "numWorkers", "url", "paths", "username", "password", "secret",
    "partitions", "annotations", "workerTerminationTimeout", "workerAvailabilityTimeoutMilliseconds",
    "workerAllocatorName", "explicitAckMode", "waitExplicitAckDuringRebalanceTimeout", "batch",
    "attributes", "maxWorkers",
}
# Attributes per trigger kind (matched case-insensitively, as Nuclio's mapstructure does).
TRIGGER_ATTRIBUTES = {
    "http": {"port", "ingresses", "readBufferSize", "maxRequestBodySize", "reduceMemoryUsage", "cors",
             "serviceType", "disablePortPublishing", "mode"},
    "cron": {"schedule", "interval", "event", "concurrencyPolicy", "jobBackoffLimit"},
    "v3ioStream": {"containerName", "streamPath", "consumerGroup", "seekTo", "readBatchSize",
                   "numTransportWorkers", "workerAllocationMode", "sessionTimeout", "heartbeatInterval",
                   "sequenceNumberCommitInterval", "sequenceNumberShardWaitInterval", "recordBatchSizeChan",
                   "ackWindowSize", "logLevel", "pollingIntervalMs"},
    "kafka-cluster": {"brokers", "topics", "consumerGroup", "initialOffset", "balanceStrategy", "sasl", "tls",
                      "caCert", "accessKey", "accessCertificate", "secretPath", "sessionTimeout",
                      "heartbeatInterval", "maxProcessingTime", "rebalanceTimeout", "rebalanceRetryBackoff",
                      "retryBackoff", "maxWaitTime", "maxWaitHandlerDuringRebalance", "workerAllocationMode",
                      "rebalanceRetryMax", "fetchMin", "fetchDefault", "fetchMax", "channelBufferSize",
                      "ackWindowSize", "logLevel", "version"},
    "rabbit-mq": {"exchangeName", "queueName", "topics", "reconnectDuration", "reconnectInterval",
                  "prefetchCount", "durableExchange", "durableQueue"},
    "nats": {"topic", "queueName"},
    "mqtt": {"subscriptions", "clientID", "protocolVersion"},
    "kinesis": {"accessKeyID", "secretAccessKey", "regionName", "streamName", "shards", "iteratorType",
                "pollingPeriod"},
}
KIND_ALIASES = {"kafka": "kafka-cluster", "rabbitMq": "rabbit-mq"}
OTHER_KINDS = {"iotCoreMqtt", "eventhub", "pubsub", "v3ioItemPoller", "kickstart"}
_CRON_EVENT = {"body", "headers", "path", "method"}


def dns_label(text: str, where: str, field: str = "metadata.name") -> str:
    if len(text) > 63 or not _DNS_LABEL.match(text):
        raise GraphpackError(
            f"{where}: field {field}: {text!r} is not a valid DNS-1123 label (lower-case letters, digits "
            "and '-', starting and ending with a letter or digit, at most 63 characters); rename the "
            "project or function")
    return text


def _label_value(value: Any, where: str, key: str) -> str:
    text = str(value)
    if len(text) > 63 or not _LABEL_VALUE.match(text):
        raise GraphpackError(f"{where}: field metadata.labels.{key}: {text!r} is not a valid label value")
    return text


def function_name(plan: FunctionPlan) -> str:
    """``<project>-<function>`` for the root, ``<project>-<root>-<child>`` for a child."""
    parts = [plan.root] if plan.is_root else [plan.root, plan.current_function]
    return dns_label(nuclio_name(plan.project, *parts), plan.where)


# -- triggers ------------------------------------------------------------------------------------
def _check_attributes(kind: str, attributes: dict, where: str) -> None:
    known = TRIGGER_ATTRIBUTES.get(kind)
    if known is None:
        return
    lowered = {k.lower() for k in known}
    for key in attributes:
        if str(key).lower() not in lowered:
            raise GraphpackError(f"{where}: field attributes.{key}: unsupported {kind} trigger attribute "
                                 f"(known: {', '.join(sorted(known))})")


def normalize_trigger(name: str, trigger: dict, where: str) -> dict:
    """A validated copy of one Nuclio trigger dict (errors name the trigger and the field)."""
    where = f"{where}: trigger {name!r}"
    if not isinstance(trigger, dict):
        raise GraphpackError(f"{where}: expected a dict, got {type(trigger).__name__}")
    out = copy.deepcopy(trigger)
    kind = KIND_ALIASES.get(out.get("kind", ""), out.get("kind", ""))
    if kind not in TRIGGER_ATTRIBUTES and kind not in OTHER_KINDS:
        known = sorted(set(TRIGGER_ATTRIBUTES) | OTHER_KINDS)
        raise GraphpackError(f"{where}: field kind: unsupported trigger kind {out.get('kind')!r} "
                             f"(Nuclio kinds: {', '.join(known)})")
    out["kind"] = kind
    for key in out:
        if key not in TRIGGER_FIELDS:
            raise GraphpackError(f"{where}: field {key}: unsupported trigger field "
                                 f"(known: {', '.join(sorted(TRIGGER_FIELDS))})")
    if "maxWorkers" in out:  # deprecated in Nuclio 1.14 ("removed in 1.15"): numWorkers
        workers = out.pop("maxWorkers")
        out.setdefault("numWorkers", workers)
    if "numWorkers" in out and (not isinstance(out["numWorkers"], int) or out["numWorkers"] < 1):
        raise GraphpackError(f"{where}: field numWorkers: must be a positive integer, got {out['numWorkers']!r}")
    attributes = out.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise GraphpackError(f"{where}: field attributes: expected a mapping")
    _check_attributes(kind, attributes, where)
    if kind == "cron":
        attributes = _cron_attributes(attributes, where)
    if attributes:
        out["attributes"] = attributes
    else:
        out.pop("attributes", None)
    out.pop("name", None)
    return out


def _cron_attributes(attributes: dict, where: str) -> dict:
    attributes = dict(attributes)
    schedule, interval = attributes.get("schedule"), attributes.get("interval")
    if bool(schedule) == bool(interval):
        raise GraphpackError(f"{where}: field attributes.schedule: set exactly one of schedule or interval")
    if schedule:
        attributes["schedule"] = check_cron(str(schedule), f"{where}: field attributes.schedule")
    else:
        attributes["interval"] = check_interval(str(interval), f"{where}: field attributes.interval")
    event = attributes.get("event")
    if event is not None:
        if not isinstance(event, dict):
            raise GraphpackError(f"{where}: field attributes.event: expected a mapping with body/headers")
        for key in event:
            if key not in _CRON_EVENT:
                raise GraphpackError(f"{where}: field attributes.event.{key}: unsupported cron event field "
                                     f"(known: {', '.join(sorted(_CRON_EVENT))})")
        event = dict(event)
        headers = {str(k): str(v) for k, v in (event.get("headers") or {}).items()}
        body = event.get("body")
        if body is not None and not isinstance(body, str):  # Nuclio's cron body is a string
            body = json.dumps(body, sort_keys=True, separators=(",", ":"))
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
        if body is not None:
            event["body"] = body
        if headers:
            event["headers"] = headers
        else:
            event.pop("headers", None)
        attributes["event"] = event
    return attributes


def _webapi(url: str) -> str:
    """The v3io web API a stream trigger reads from: the URL's host, else MLRun's default (the
    build does not depend on the developer's environment)."""
    from ..queues.v3io import DEFAULT_WEBAPI, parse_v3io_url

    return parse_v3io_url(url)[0] or DEFAULT_WEBAPI


def triggers_for(plan: FunctionPlan, http_workers: int, max_body_size: int) -> dict:
    """The function's triggers: its own, an http trigger, and a child's queue trigger."""
    triggers = {name: normalize_trigger(name, t, plan.where) for name, t in sorted(plan.triggers.items())}
    if not any(t["kind"] == "http" for t in triggers.values()):
        triggers["http"] = {"kind": "http", "numWorkers": http_workers,
                            "attributes": {"maxRequestBodySize": max_body_size}}
    else:
        for trigger in triggers.values():
            if trigger["kind"] == "http":
                trigger.setdefault("attributes", {}).setdefault("maxRequestBodySize", max_body_size)
    queue = plan.input_queue
    if queue is not None and queue.scheme == "v3io":
        options = queue.options
        stream = V3IOStreamTrigger(url=queue.url, group=queue.group, seek_to=options.get("seek_to", "earliest"),
                                   shards=queue.shards, webapi=options.get("webapi") or _webapi(queue.url or ""),
                                   read_batch_size=options.get("read_batch_size"))
        triggers["stream"] = normalize_trigger("stream", stream.to_dict("stream"), plan.where)
    elif queue is not None and queue.scheme == "kafka" and queue.url is not None:
        triggers["kafka"] = normalize_trigger("kafka", kafka_trigger(queue, plan), plan.where)
    return triggers


def kafka_trigger(queue: QueueInput, plan: FunctionPlan) -> dict:
    """The ``kafka-cluster`` trigger of a child reading a Kafka queue (as MLRun names it: "kafka"),
    with SASL/TLS credentials as references (:mod:`graphpack.packager.kafka_auth`)."""
    from ..queues.kafka import parse_url

    brokers, topic = parse_url(queue.url or "", queue.options.get("kafka_brokers"))
    args = dict(queue.trigger_args)
    trigger = KafkaTrigger(brokers, [topic], group=queue.group,
                           initial_offset=args.pop("initial_offset", args.pop("initialOffset", "earliest")), **args)
    out = trigger.to_dict("kafka")
    out["attributes"].update(trigger_auth(plan.where, queue.step, queue.options, plan.secret_sources, "kafka"))
    return out


# -- env, secrets, resources ----------------------------------------------------------------------
def secret_name(project: str, where: str) -> str:
    return dns_label(f"{project}-secrets".replace("_", "-").lower(), where, "spec.secret_sources")


def env_and_volumes(plan: FunctionPlan, secret: str, target: str) -> tuple[list, list]:
    """``spec.env`` (plain values, secret references, graphpack's own) and secret volumes."""
    env: list = []
    seen: set[str] = set()

    def add(entry: dict) -> None:
        if entry["name"] in seen:
            raise GraphpackError(f"{plan.where}: field spec.env: {entry['name']!r} is set twice")
        if not _ENV_NAME.match(entry["name"]):
            raise GraphpackError(f"{plan.where}: field spec.env: {entry['name']!r} is not a valid variable name")
        seen.add(entry["name"])
        env.append(entry)

    for name in sorted(plan.env):
        add({"name": name, "value": plan.env[name]})
    volumes: list = []
    for index, source in enumerate(plan.secret_sources):
        kind, value = source.get("kind"), source.get("source")
        if kind == "env":
            names = sorted(set(value.values() if isinstance(value, dict) else value))
            for name in names:
                if name not in seen:
                    add({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": name}}})
        elif kind == "file":
            path = str(value)
            if not path.startswith("/") and target != "local":
                raise GraphpackError(f"{plan.where}: field spec.secret_sources: the secrets file {path!r} must be "
                                     "an absolute path: it is where the secret is mounted in the function")
            volume = f"graphpack-secrets-{index}"
            volumes.append({"volume": {"name": volume, "secret": {"secretName": secret}},
                            "volumeMount": {"name": volume, "mountPath": path, "readOnly": True}})
    add({"name": "GRAPHPACK_SPEC_FILE", "value": f"{FUNCTION_DIR}/{SPEC_FILE}"})
    queue = plan.input_queue
    if queue is not None and queue.scheme not in ("v3io", "kafka"):  # Nuclio has triggers for those
        if queue.url is not None:
            add({"name": "GRAPHPACK_QUEUE_CONSUMER", "value": queue.url})
        add({"name": "GRAPHPACK_CONSUMER_GROUP", "value": queue.group})
    return env, volumes


def _resources(plan: FunctionPlan) -> dict:
    resources = plan.resources or {}
    if not isinstance(resources, dict) or not set(resources) <= {"requests", "limits"}:
        raise GraphpackError(f"{plan.where}: field spec.resources: expected {{'requests': {{...}}, "
                             f"'limits': {{...}}}}, got {resources!r}")
    out = {}
    for key, values in sorted(resources.items()):
        if not isinstance(values, dict):
            raise GraphpackError(f"{plan.where}: field spec.resources.{key}: expected a mapping like {{'cpu': '1'}}")
        out[key] = {str(k): str(v) for k, v in values.items()}
    return out


def _replicas(plan: FunctionPlan, spec: dict) -> None:
    low, high = plan.min_replicas, plan.max_replicas
    for field, value in (("min_replicas", low), ("max_replicas", high)):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise GraphpackError(f"{plan.where}: field spec.{field}: must be a non-negative integer, got {value!r}")
    if plan.input_queue is not None and plan.input_queue.scheme == "v3io":
        # Nuclio rejects autoscaling with a v3ioStream trigger: one replica per shard
        shards = plan.input_queue.shards or 1
        if (low is not None and high is not None and low != high):
            raise GraphpackError(f"{plan.where}: field spec.min_replicas: a v3io stream consumer needs "
                                 f"min_replicas == max_replicas (got {low} and {high})")
        low = high = low if low is not None else (high if high is not None else shards)
    if low is not None and high is not None and low > high:
        raise GraphpackError(f"{plan.where}: field spec.min_replicas: {low} is above max_replicas {high}")
    if low is not None:
        spec["minReplicas"] = low
    if high is not None:
        spec["maxReplicas"] = high


def requirements_of(plan: FunctionPlan) -> list[str]:
    """What the function's part of the graph needs (pinned), then the user's own requirements."""
    queue = plan.input_queue.url if plan.input_queue is not None else None
    return requirement_lines(needs_of(plan.spec, plan.triggers, plan.current_function, queue, plan.env),
                             plan.requirements)


def function_config(plan: FunctionPlan, target: str = "nuclio", http_workers: int = 1,
                    max_body_size: int = DEFAULT_MAX_BODY, secret: str | None = None) -> dict:
    """The function.yaml dict of ``plan`` (validate with :func:`graphpack.packager.schema.validate`)."""
    name = function_name(plan)
    labels = {PROJECT_LABEL: plan.project, "graphpack.io/function": plan.root}
    if not plan.is_root:
        labels["graphpack.io/child"] = plan.current_function
    for key, value in plan.labels.items():
        labels.setdefault(str(key), value)
    labels = {k: _label_value(v, plan.where, k) for k, v in sorted(labels.items())}
    env, volumes = env_and_volumes(plan, secret or secret_name(plan.project, plan.where), target)
    commands = list(plan.build_commands)
    requirements = requirements_of(plan)
    commands.append("pip install " + " ".join(shlex.quote(r) for r in requirements))
    spec: dict = {
        "runtime": RUNTIME,
        "handler": f"{ENTRY_MODULE}:handler",
        "env": env,
        "triggers": triggers_for(plan, http_workers, max_body_size),
        "build": {"baseImage": plan.image, "commands": commands},
    }
    if volumes:
        spec["volumes"] = volumes
    resources = _resources(plan)
    if resources:
        spec["resources"] = resources
    _replicas(plan, spec)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }
