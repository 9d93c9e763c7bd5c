"""pytest plugin: the session's real Kafka broker (tests/plugins/kafka_broker.py).

- ``kafka_broker`` (session): a :class:`~tests.plugins.kafka_broker.Broker` started once on a free
  loopback port (``broker.bootstrap``), stopped at the end; skips naming the exact failure when
  the jars, Java or confluent-kafka cannot be had here.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.plugins.kafka_broker import Broker, Unavailable, run_broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """The session's broker; skips (naming the failure) when it cannot run here."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"Kafka tests need confluent-kafka (pip install confluent-kafka): {exc}")
    try:
        with run_broker() as broker:
            yield broker
    except Unavailable as exc:
        pytest.skip(f"no Kafka broker: {exc}")
