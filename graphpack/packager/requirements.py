"""A function's runtime requirements, derived from what its part of the graph uses.

The processor needs PyYAML (function.yaml), uvloop (its event loop) and httptools (its HTTP
parser); the rest follows the
graph: ``s3://`` queues, error streams and model paths need boto3; ``kafka://`` queues (or a
topic with ``kafka_brokers=``) need confluent-kafka; ``v3io://`` queues,
``http(s)://`` model paths, RemoteStep and BatchHttpRequests need httpx; a cron ``schedule``
needs croniter; an ``OTEL_EXPORTER_OTLP_ENDPOINT`` in the function's env needs the
OpenTelemetry SDK and its OTLP/HTTP exporter (spans, the ``otel`` extra). Metrics need nothing:
graphpack serve renders them itself. The user's ``requirements=`` follow. Each requirement is pinned to the version
installed where the build runs (the version the tests ran against), else kept as a lower bound.
"""
from __future__ import annotations

import re
from importlib import metadata
from typing import Any, Iterator

# distribution -> the lower bound used when the building machine does not have it installed
KNOWN = {"PyYAML": "6", "uvloop": "0.19", "httptools": "0.6", "boto3": "1.34", "httpx": "0.27", "croniter": "2",
         "confluent-kafka": "2.3", "opentelemetry-sdk": "1.20", "opentelemetry-exporter-otlp-proto-http": "1.20"}
OTEL = ("opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http")
OTEL_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
PROCESSOR = ("PyYAML", "uvloop", "httptools")
HTTP_CLASSES = {"RemoteStep", "BatchHttpRequests", "$remote"}
_BARE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _steps(graph: Any, function: str = "") -> Iterator[tuple[dict, str]]:
    """Every step dict of a spec graph (routes included) with the function it runs in."""
    if not isinstance(graph, dict):
        return
    yield graph, function
    for key in ("steps", "routes"):
        for step in (graph.get(key) or {}).values():
            if isinstance(step, dict):
                yield from _steps(step, step.get("function") or function)


def _scheme(url: Any) -> str:
    return url.split("://", 1)[0].lower() if isinstance(url, str) and "://" in url else ""


def _url_need(url: str) -> str | None:
    return {"s3": "boto3", "v3io": "httpx", "v3ios": "httpx", "http": "httpx", "https": "httpx",
            "kafka": "confluent-kafka"}.get(_scheme(url))


def needs_of(spec: dict, triggers: dict, current_function: str = "", input_queue: str | None = None,
             env: dict | None = None) -> list[str]:
    """The packages the function running ``current_function``'s part of ``spec`` needs, in a stable order."""
    found: list[str | None] = list(PROCESSOR)
    if any((env or {}).get(name) for name in OTEL_ENVS):
        found += OTEL
    for step, function in _steps(spec.get("graph") or {}):
        if step.get("kind") == "queue":  # the producing side and the consuming side both open it
            found.append(_url_need(step.get("path") or ""))
            if (step.get("options") or {}).get("kafka_brokers"):  # a bare topic on Kafka brokers (MLRun's form)
                found.append("confluent-kafka")
            continue
        if function != current_function:
            continue
        class_name = str(step.get("class_name") or "")
        if class_name.rsplit(".", 1)[-1] in HTTP_CLASSES:
            found.append("httpx")
        model_path = (step.get("class_args") or {}).get("model_path")
        if model_path:
            found.append(_url_need(str(model_path)))
    if spec.get("error_stream"):
        found.append(_url_need(str(spec["error_stream"])))
    if input_queue:
        found.append(_url_need(input_queue))
    for trigger in (triggers or {}).values():
        schedule = str(((trigger or {}).get("attributes") or {}).get("schedule") or "")
        if (trigger or {}).get("kind") == "cron" and schedule and not schedule.lower().startswith("@every"):
            found.append("croniter")
    return list(dict.fromkeys(package for package in found if package))


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def pin(package: str) -> str:
    """``package==<installed version>``, else ``package>=<known lower bound>`` (or the bare name)."""
    version = installed_version(package)
    if version:
        return f"{package}=={version}"
    return f"{package}>={KNOWN[package]}" if package in KNOWN else package


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;@]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def processor_requirements() -> list[str]:
    """The pinned requirements of every function (the processor's own)."""
    return [pin(package) for package in PROCESSOR]


def requirement_lines(needs: list[str], user: tuple[str, ...] | list[str]) -> list[str]:
    """The lines of requirements.txt: derived needs, then the user's; a bare name is pinned, and a
    package the user names with a version or URL keeps the user's line."""
    users = {_name(str(r).strip()): str(r).strip() for r in user if str(r).strip()}
    lines: list[str] = []
    for package in list(needs) + list(users.values()):
        text = users.pop(_name(package), package)
        if _BARE_NAME.match(text) and (installed_version(text) or text in KNOWN):
            text = pin(text)
        if text not in lines:
            lines.append(text)
    return lines


__all__ = ["KNOWN", "needs_of", "pin", "processor_requirements", "requirement_lines"]
