"""SASL and TLS of a Kafka queue's trigger, by secret reference only.

The queue's clients (graphpack's producer and consumers) read credentials from ``GRAPHPACK_KAFKA_*``
variables or the function's secret files (:mod:`graphpack.queues.kafka`). The child's trigger
takes the same credentials by reference:

- ``function.yaml`` (Nuclio's ``kafka-cluster``): ``sasl.user``, ``sasl.password``, ``caCert``,
  ``accessCertificate``, ``accessKey`` hold Nuclio's ``$ref:<field path>`` placeholders; the Nuclio
  target resolves them from the deploying environment into the request to the dashboard only,
  which keeps them in the function's Nuclio secret (never in a file graphpack writes).
- Knative's ``KafkaSource``: ``spec.net`` with ``secretKeyRef``s into the project's secret, keyed
  by the variable names.

Whether SASL and TLS are on comes from the queue's non-secret options: ``security.protocol``
(``SASL_PLAINTEXT``, ``SASL_SSL``, ``SSL``) and ``sasl.mechanism`` in ``kafka_consumer_options``
or ``kafka_producer_options``. The CA and the client certificate are referenced when the function
declares their variables with ``with_secrets("env", [...])``.
"""
from __future__ import annotations

import copy
import os
from typing import Any

from ..errors import GraphpackError

USER, PASSWORD = "GRAPHPACK_KAFKA_SASL_USERNAME", "GRAPHPACK_KAFKA_SASL_PASSWORD"
MECHANISM = "GRAPHPACK_KAFKA_SASL_MECHANISM"
CA, CERT, KEY = "GRAPHPACK_KAFKA_SSL_CA_PEM", "GRAPHPACK_KAFKA_SSL_CERTIFICATE_PEM", "GRAPHPACK_KAFKA_SSL_KEY_PEM"
# trigger attribute path (Nuclio) -> variable (secret key) -> KafkaSource spec.net path
REFERENCES = (
    (("sasl", "user"), USER, ("sasl", "user")),
    (("sasl", "password"), PASSWORD, ("sasl", "password")),
    (("caCert",), CA, ("tls", "caCert")),
    (("accessCertificate",), CERT, ("tls", "cert")),
    (("accessKey",), KEY, ("tls", "key")),
)
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
REF_PREFIX = "$ref:"


def _setting(options: dict, name: str) -> str:
    for field in ("kafka_consumer_options", "kafka_producer_options"):
        value = (options.get(field) or {}).get(name)
        if value:
            return str(value)
    return ""


def env_secret_names(secret_sources: Any) -> set[str]:
    """Variables the function reads from its secret (``with_secrets("env", ...)``)."""
    names: set[str] = set()
    for source in secret_sources or ():
        if source.get("kind") == "env":
            value = source.get("source")
            names.update(value.values() if isinstance(value, dict) else value or [])
    return names


def _ref(trigger_name: str, path: tuple[str, ...]) -> str:
    """Nuclio's placeholder for a scrubbed field (its scrubber's lower-case field path)."""
    return REF_PREFIX + "/" + "/".join(("spec", "triggers", trigger_name, "attributes", *path)).lower()


def trigger_auth(where: str, queue_name: str, options: dict, secret_sources: Any, trigger_name: str) -> dict:
    """The ``sasl``/``tls``/certificate attributes of the queue's ``kafka-cluster`` trigger, with
    ``$ref:`` placeholders for every credential; {} for a plaintext queue. One-line errors name
    what is missing."""
    protocol = _setting(options, "security.protocol").upper()
    if protocol in ("", "PLAINTEXT"):
        return {}
    if protocol not in ("SASL_PLAINTEXT", "SASL_SSL", "SSL"):
        raise GraphpackError(f"{where}: queue {queue_name!r}: security.protocol {protocol!r} is not one of "
                             "PLAINTEXT, SASL_PLAINTEXT, SASL_SSL, SSL")
    declared = env_secret_names(secret_sources)
    attributes: dict = {}
    wanted: list[str] = []
    if protocol.startswith("SASL"):
        mechanism = (_setting(options, "sasl.mechanism") or _setting(options, "sasl.mechanisms") or "PLAIN").upper()
        if mechanism not in MECHANISMS:
            raise GraphpackError(f"{where}: queue {queue_name!r}: sasl.mechanism {mechanism!r} is not one of "
                                 f"{', '.join(MECHANISMS)}")
        attributes["sasl"] = {"enable": True, "handshake": True, "mechanism": mechanism}
        wanted += [USER, PASSWORD]
    if protocol.endswith("SSL"):
        attributes["tls"] = {"enable": True}
        wanted += [name for name in (CA, CERT, KEY) if name in declared]
        if (CERT in declared) != (KEY in declared):
            raise GraphpackError(f"{where}: queue {queue_name!r}: a client certificate needs both {CERT} and "
                                 f"{KEY} in with_secrets('env', [...])")
    missing = [name for name in wanted if name not in declared]
    if missing:
        raise GraphpackError(f"{where}: queue {queue_name!r} uses {protocol}: declare its credentials as secrets, "
                             f"fn.with_secrets('env', {missing!r}) (values come from the function's secret, "
                             "never from the spec)")
    for path, name, _ in REFERENCES:
        if name in wanted:
            target = attributes
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = _ref(trigger_name, path)
    return attributes


def knative_net(trigger_name: str, attributes: dict, secret: str) -> dict:
    """``KafkaSource.spec.net`` for a trigger's attributes: ``secretKeyRef``s into ``secret``."""
    net: dict = {}
    sasl = attributes.get("sasl") or {}
    if sasl.get("enable"):
        net["sasl"] = {"enable": True}
        if str(sasl.get("mechanism") or "PLAIN").upper() != "PLAIN":  # Knative reads the type from a secret too
            net["sasl"]["type"] = {"secretKeyRef": {"name": secret, "key": MECHANISM}}
    if (attributes.get("tls") or {}).get("enable"):
        net["tls"] = {"enable": True}
    for path, name, net_path in REFERENCES:
        value: Any = attributes
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value == _ref(trigger_name, path):
            net.setdefault(net_path[0], {})[net_path[1]] = {"secretKeyRef": {"name": secret, "key": name}}
    return net


def resolve_refs(where: str, config: dict, environ: Any = os.environ) -> dict:
    """A copy of a function config whose Kafka trigger placeholders hold the values of their
    variables from ``environ`` (for the Nuclio dashboard's request, which Nuclio scrubs into the
    function's secret). A missing variable is a one-line error naming it."""
    out = copy.deepcopy(config)
    for trigger_name, trigger in (out.get("spec", {}).get("triggers") or {}).items():
        if trigger.get("kind") != "kafka-cluster":
            continue
        for path, name, _ in REFERENCES:
            holder = trigger.get("attributes") or {}
            for part in path[:-1]:
                holder = holder.get(part) or {}
            if holder.get(path[-1]) == _ref(trigger_name, path):
                if name not in environ:
                    raise GraphpackError(f"{where}: trigger {trigger_name!r} needs {name} in the environment "
                                         "(the Kafka credential Nuclio keeps in the function's secret)")
                holder[path[-1]] = environ[name]
    return out
