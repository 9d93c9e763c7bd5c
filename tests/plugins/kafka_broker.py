"""A real Apache Kafka broker (KRaft, single node) on 127.0.0.1, from Maven Central jars.

The broker's jars come from Maven Central: ``mvn dependency:copy-dependencies`` on
``tests/plugins/kafka-pom.xml`` (``kafka_2.13`` plus an SLF4J binding for log4j 2), cached under
``$GRAPHPACK_CACHE/kafka/<version>/libs``. scripts/test.sh resolves them as a setup step
(``python -m tests.plugins.kafka_broker``: exit 0 with the path, exit 3 with the reason when they cannot
be had); without them the Kafka tests skip, naming the exact failure.

:func:`run_broker` formats storage in a temporary directory, starts the broker on a free port,
waits until it serves metadata and yields a :class:`Broker` (``broker.bootstrap`` is
``127.0.0.1:<port>``; ``broker.sasl_bootstrap`` a second listener taking SASL/PLAIN logins of
``broker.sasl_user`` / ``broker.sasl_password``; ``broker.tls_bootstrap`` a TLS listener and
``broker.mtls_bootstrap`` one that requires a client certificate, both serving a certificate for
127.0.0.1/localhost from a CA made by openssl at start, see :class:`PKI`); it is stopped (SIGTERM)
on the way out. The pytest fixture is in tests/plugins/kafka.py; benchmarks and crash tests use
this module directly.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tests.plugins.net import free_port

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).with_name("kafka-pom.xml")
CACHE = Path(os.environ.get("GRAPHPACK_CACHE", Path.home() / ".cache" / "graphpack"))
HOME = CACHE / "kafka" / KAFKA_VERSION
LIBS = HOME / "libs"
STAMP = HOME / ".resolved"
READY_TIMEOUT = 120.0  # seconds; a busy 2-core machine starts the JVM slowly (5-10 s when idle)
LOG4J = """\
status = error
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.kafka.name = org.apache.kafka
logger.kafka.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.server.name = kafka.server.KafkaServer
logger.server.level = INFO
"""


class Unavailable(RuntimeError):
    """The broker's jars or Java cannot be had here (the message names the failure)."""


def resolved() -> bool:
    return STAMP.exists() and STAMP.read_text().strip() == POM.read_text().strip()


def resolve() -> Path:
    """The directory of the broker's jars, resolved from Maven Central when not cached yet."""
    if resolved():
        return LIBS
    for tool in ("java", "mvn"):
        if not any((Path(d) / tool).exists() for d in os.environ.get("PATH", "").split(os.pathsep)):
            raise Unavailable(f"{tool} is not installed (needed to run the Kafka broker)")
    HOME.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="libs-", dir=HOME))
    cmd = ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={work}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln] or ["?"]
        raise Unavailable(f"{' '.join(cmd)} failed: {lines[0].strip()[:300]}")
    shutil.rmtree(LIBS, ignore_errors=True)
    work.rename(LIBS)
    STAMP.write_text(POM.read_text())
    return LIBS


class PKI:
    """A CA and certificates made by openssl (EC P-256, valid 2 days; 0.03-0.1 s): ``ca`` (PEM), the
    broker's ``server_keystore`` (key and certificate for IP 127.0.0.1 and localhost), a client
    certificate and key of the same CA, and ``other_ca``, a CA that signed none of them."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True)
        self.ca, self.other_ca = directory / "ca.pem", directory / "other-ca.pem"
        self.client_cert, self.client_key = directory / "client.pem", directory / "client.key"
        self._openssl(directory / "ca.key", self.ca, "graphpack-test-ca")
        self._openssl(directory / "other-ca.key", self.other_ca, "graphpack-other-ca")
        self._openssl(directory / "server.key", directory / "server.pem", "localhost", directory / "ca.key",
                      "subjectAltName=IP:127.0.0.1,DNS:localhost")
        self._openssl(self.client_key, self.client_cert, "graphpack-client", directory / "ca.key")
        self.server_keystore = directory / "server-keystore.pem"
        self.server_keystore.write_text((directory / "server.key").read_text() + (directory / "server.pem").read_text())

    def _openssl(self, key: Path, cert: Path, name: str, ca_key: Path | None = None, *extensions: str) -> None:
        """A new key and certificate: self-signed (a CA), or signed by ``ca`` with its ``ca_key``."""
        cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
               "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"]
        if ca_key is not None:
            cmd += ["-CA", str(self.ca), "-CAkey", str(ca_key), "-addext", "basicConstraints=critical,CA:FALSE"]
        for extension in extensions:
            cmd += ["-addext", extension]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            raise Unavailable("openssl is not installed (needed for the Kafka broker's TLS listeners)") from None
        if proc.returncode != 0:
            raise Unavailable(f"openssl could not make the certificate of {name}: {proc.stderr.strip()[-300:]}")


class Broker:
    """A broker process on 127.0.0.1; ``stop``/``kill``/``start`` keep its port and storage."""

    def __init__(self, libs: Path, workdir: Path) -> None:
        self.libs = libs
        self.workdir = workdir
        self.port = free_port()
        self.controller_port = free_port()
        self.sasl_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        # a second listener that takes SASL/PLAIN logins (user graphpack, a random password)
        self.sasl_bootstrap = f"127.0.0.1:{self.sasl_port}"
        self.sasl_user, self.sasl_password = "graphpack", "pw-" + uuid.uuid4().hex
        # TLS listeners: server authentication only, and mutual (a client certificate of the CA required)
        self.pki = PKI(workdir / "pki")
        self.tls_port, self.mtls_port = free_port(), free_port()
        self.tls_bootstrap = f"127.0.0.1:{self.tls_port}"
        self.mtls_bootstrap = f"127.0.0.1:{self.mtls_port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "broker.log"
        self.config = workdir / "server.properties"
        self.config.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port},"
            f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},SSL://127.0.0.1:{self.tls_port},"
            f"MTLS://127.0.0.1:{self.mtls_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port},SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},"
            f"SSL://127.0.0.1:{self.tls_port},MTLS://127.0.0.1:{self.mtls_port}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,"
            "SSL:SSL,MTLS:SSL",
            # PEM files as Kafka reads them: the key (unencrypted PKCS#8) and chain in one file, the CA
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self.pki.server_keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.pki.ca}",
            "listener.name.mtls.ssl.client.auth=required",
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain."
            f'PlainLoginModule required user_{self.sasl_user}="{self.sasl_password}";',
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={workdir / 'data'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "broker.session.timeout.ms=6000",
            "broker.heartbeat.interval.ms=1000",
            "auto.create.topics.enable=true",
            "",
        ]))
        (workdir / "log4j2.properties").write_text(LOG4J)
        self._java(["kafka.tools.StorageTool", "format", "-t", self._uuid(), "-c", str(self.config),
                    "--standalone"], "format storage")

    def _java(self, args: list[str], what: str) -> str:
        proc = subprocess.run(["java", "-Xmx256m", "-cp", f"{self.libs}/*", *args], capture_output=True,
                              text=True, timeout=READY_TIMEOUT)
        if proc.returncode != 0:
            raise Unavailable(f"Kafka {what} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
        return proc.stdout.strip()

    def _uuid(self) -> str:
        return self._java(["kafka.tools.StorageTool", "random-uuid"], "random-uuid").splitlines()[-1]

    def start(self, timeout: float = READY_TIMEOUT) -> float:
        """Start the broker and wait until it serves metadata; returns the seconds it took."""
        t0 = time.monotonic()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["java", "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
             "-cp", f"{self.libs}/*", "kafka.Kafka", str(self.config)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"Kafka broker exited with status {self.proc.returncode}: {self.tail()}")
            if self._serves_metadata():
                self._warm_up(deadline)
                return time.monotonic() - t0
            time.sleep(0.25)
        raise Unavailable(f"Kafka broker did not serve metadata on {self.bootstrap} within {timeout:.0f} s: "
                          f"{self.tail()}")

    def _serves_metadata(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        from confluent_kafka.admin import AdminClient

        try:
            md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
        except Exception:  # noqa: BLE001 - not ready yet
            return False
        return bool(md.brokers)

    def _warm_up(self, deadline: float) -> None:
        """Produce idempotently and commit a group offset once: the broker creates and loads
        ``__consumer_offsets`` and its producer-id coordinator now, not in the first test (~1 s)."""
        from confluent_kafka import Consumer, Producer, TopicPartition

        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "acks": "all"})
        producer.produce("graphpack-ready", b"ready")
        left = producer.flush(max(deadline - time.monotonic(), 1))
        if left:
            raise Unavailable(f"Kafka broker on {self.bootstrap} did not acknowledge a record: {self.tail()}")
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "graphpack-ready"})
        try:
            while True:
                try:
                    consumer.commit(offsets=[TopicPartition("graphpack-ready", 0, 1)], asynchronous=False)
                    return
                except Exception as exc:  # noqa: BLE001 - the coordinator is still loading
                    if time.monotonic() > deadline:
                        raise Unavailable(f"Kafka broker on {self.bootstrap}: no group coordinator: {exc}") from None
                    time.sleep(0.2)
        finally:
            consumer.close()

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])[-1000:]

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after 30 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def run_broker() -> Iterator[Broker]:
    """Resolve the jars, format storage in a temporary directory, run a broker, stop it at the end."""
    libs = resolve()
    with tempfile.TemporaryDirectory(prefix="kafka-") as tmp:
        broker = Broker(libs, Path(tmp))
        try:
            broker.start()
            yield broker
        finally:
            broker.stop()


if __name__ == "__main__":
    start = time.monotonic()
    was = resolved()
    try:
        path = resolve()
    except Unavailable as exc:
        print(f"Kafka {KAFKA_VERSION} jars unavailable: {exc}")
        sys.exit(3)
    print(f"Kafka {KAFKA_VERSION} jars {'cached' if was else 'resolved from Maven Central'} in "
          f"{time.monotonic() - start:.0f}s: {path}")
