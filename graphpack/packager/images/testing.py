"""Test helpers: a real distribution registry (Debian's ``docker-registry``) on a free
loopback port, with or without an htpasswd file. Used by graphpack's tests and benchmarks
and by users who test their own image pipelines."""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ...errors import GraphpackError

REGISTRY_BINARY = "docker-registry"


@dataclass(frozen=True)
class RunningRegistry:
    host: str                       # 127.0.0.1:PORT
    username: str | None = None
    password: str | None = None
    root: str = ""                  # storage directory

    def client(self, **overrides: object):  # -> Registry
        from .registry import Registry

        options = {"username": self.username, "password": self.password, **overrides}
        return Registry(self.host, **options)  # type: ignore[arg-type]


def registry_available() -> str | None:
    """The registry binary's path, or None."""
    return shutil.which(REGISTRY_BINARY)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _htpasswd(username: str, password: str) -> str:
    if shutil.which("htpasswd"):
        return subprocess.run(["htpasswd", "-Bbn", username, password], capture_output=True, text=True,
                              check=True).stdout.strip() + "\n"
    raise GraphpackError("htpasswd (Debian apache2-utils) is needed for a registry with basic auth")


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@contextmanager
def _token_server(workdir: Path, username: str, password: str, service: str, issuer: str) -> Iterator[str]:
    """A token server as the distribution token-auth spec describes: basic credentials in,
    an RS256 JWT (x5c = a self-signed certificate the registry trusts) out. Yields its realm."""
    import base64
    import datetime
    import json
    import threading
    import uuid
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (workdir / "token-ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    chain = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            query = parse_qs(urlsplit(self.path).query)
            access = []
            for scope in query.get("scope", []):
                kind, _, rest = scope.partition(":")
                repo, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": repo, "actions": actions.split(",")})
            stamp = int(time.time())
            header = {"alg": "RS256", "typ": "JWT", "x5c": chain}
            claims = {"iss": issuer, "sub": username, "aud": query.get("service", [service])[0], "exp": stamp + 300,
                      "nbf": stamp - 10, "iat": stamp, "jti": uuid.uuid4().hex, "access": access}
            signing = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
            signature = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
            body = json.dumps({"token": signing + "." + _b64url(signature), "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def run_registry(username: str | None = None, password: str | None = None,
                 root: str | Path | None = None, token: bool = False) -> Iterator[RunningRegistry]:
    """Start ``docker-registry`` on 127.0.0.1:<free port>: basic auth (htpasswd) when
    ``username`` is given, bearer tokens from a local token server when ``token`` is also set.
    Stops it and removes its storage (unless ``root`` was given) on exit."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="graphpack-registry-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        auth = ""
        if username and token:
            realm = stack.enter_context(_token_server(workdir, username, password or "", "graphpack-registry",
                                                      "graphpack-test"))
            auth = (f"auth:\n  token:\n    realm: {realm}\n    service: graphpack-registry\n"
                    f"    issuer: graphpack-test\n    rootcertbundle: {workdir / 'token-ca.pem'}\n")
        elif username:
            (workdir / "htpasswd").write_text(_htpasswd(username, password or ""))
            auth = f"auth:\n  htpasswd:\n    realm: graphpack\n    path: {workdir / 'htpasswd'}\n"
        yield stack.enter_context(_registry_process(workdir, auth, username, password, root))


@contextmanager
def _registry_process(workdir: Path, auth: str, username: str | None, password: str | None,
                      root: str | Path | None) -> Iterator[RunningRegistry]:
    binary = registry_available()
    if not binary:
        raise GraphpackError("docker-registry is not installed (Debian package docker-registry)")
    own = root is None
    storage = Path(root) if root else workdir / "data"
    storage.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth)
    log = open(workdir / "registry.log", "wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise GraphpackError("docker-registry did not start: "
                                         + (workdir / "registry.log").read_text()[-500:]) from None
                time.sleep(0.05)
        yield RunningRegistry(f"127.0.0.1:{port}", username, password, str(storage))
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        if own:
            shutil.rmtree(storage, ignore_errors=True)


__all__ = ["RunningRegistry", "registry_available", "run_registry"]
