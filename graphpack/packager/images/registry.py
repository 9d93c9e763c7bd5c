"""A client for any distribution-spec registry (the HTTP API docker pull/push use), with
basic and bearer (token) auth. Every failure is a GraphpackError naming the registry and
what to do; HTTP is used for loopback registries, HTTPS elsewhere unless ``insecure``."""
from __future__ import annotations

import base64
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

from ...errors import GraphpackError
from .oci import MANIFEST_TYPES, Image, Layer, image_from_config, sha256

CHUNK = 1024 * 1024
_REF = re.compile(r"^(?:(?P<host>[^/]+\.[^/]+|[^/]+:\d+|localhost)/)?(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
                  r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


@dataclass(frozen=True)
class Reference:
    """``host/repo[:tag][@digest]``."""

    host: str
    repo: str
    tag: str = "latest"
    digest: str = ""

    @classmethod
    def parse(cls, text: str, default_host: str = "") -> "Reference":
        match = _REF.match(text.strip())
        if not match:
            raise GraphpackError(f"{text!r} is not an image reference (host/name[:tag][@sha256:...])")
        host = match["host"] or default_host
        if not host:
            raise GraphpackError(f"image {text!r} names no registry host (e.g. 127.0.0.1:5000/{text})")
        return cls(host, match["repo"], match["tag"] or "latest", match["digest"] or "")

    @property
    def ref(self) -> str:
        """What a manifest is fetched by: the digest when there is one, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        text = f"{self.host}/{self.repo}:{self.tag}"
        return f"{text}@{self.digest}" if self.digest else text

    def with_digest(self, digest: str) -> str:
        return f"{self.host}/{self.repo}@{digest}"


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0][1:]
    return name in ("localhost", "::1") or name.startswith("127.")


def docker_config_auth(host: str) -> tuple[str, str] | None:
    """Credentials for ``host`` from ~/.docker/config.json ("auths"), if any."""
    path = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        auths = json.loads(path.read_text()).get("auths", {})
    except (OSError, ValueError):
        return None
    for key in (host, f"http://{host}", f"https://{host}"):
        entry = auths.get(key)
        if entry and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
    return None


class Registry:
    """One registry host. ``username``/``password`` default to $GRAPHPACK_REGISTRY_USERNAME /
    $GRAPHPACK_REGISTRY_PASSWORD, then ~/.docker/config.json."""

    def __init__(self, host: str, username: str | None = None, password: str | None = None,
                 insecure: bool | None = None, timeout: float = 60.0) -> None:
        import httpx

        self.host = host
        self.scheme = "http" if (insecure if insecure is not None else _loopback(host)) else "https"
        if username is None:
            username = os.environ.get("GRAPHPACK_REGISTRY_USERNAME")
            password = os.environ.get("GRAPHPACK_REGISTRY_PASSWORD", password)
        if username is None:
            found = docker_config_auth(host)
            if found:
                username, password = found
        self.username, self.password = username, password
        # TCP_NODELAY: headers and body go out as separate writes; without it each small
        # request waits for a delayed ACK (tens of ms on loopback)
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self._client = httpx.Client(timeout=timeout, follow_redirects=True, transport=transport)
        self._present: set[tuple[str, str]] = set()   # (repo, digest) known to be in the registry
        self._auth: dict[str, str] = {}   # scope -> Authorization header value
        self._basic = False
        self.uploads = 0                  # blobs really uploaded (for tests and progress)
        self.mounts = 0

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- transport ----------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"

    def _send(self, method: str, url: str, scope: str, **kwargs: Any) -> Any:
        import httpx

        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in range(2):
            auth = self._auth.get(scope) or (self._auth.get("*") if self._basic else None)
            if auth:
                headers["Authorization"] = auth
            try:
                response = self._client.request(method, url, headers=headers, **kwargs)
            except httpx.ConnectError as exc:
                raise GraphpackError(f"registry {self.host} is unreachable ({self.scheme}): {exc}") from None
            except httpx.TimeoutException:
                raise GraphpackError(f"registry {self.host} did not answer {method} {url} in time") from None
            except httpx.HTTPError as exc:
                raise GraphpackError(f"registry {self.host}: {method} {url}: {exc}") from None
            if response.status_code != 401 or attempt:
                break
            self._authenticate(response, scope)
            content = kwargs.get("content")
            if content is not None and not isinstance(content, (bytes, bytearray, str)):
                raise GraphpackError(f"registry {self.host} asked for credentials in the middle of an upload")
        if response.status_code == 401:
            who = f"user {self.username!r}" if self.username else "no credentials"
            raise GraphpackError(f"registry {self.host} refused access with {who}"
                                 + ("" if self.username else
                                    " (set GRAPHPACK_REGISTRY_USERNAME/PASSWORD or `docker login`)"))
        if response.status_code == 403:
            raise GraphpackError(f"registry {self.host} denied {method} {url} for user {self.username!r}")
        return response

    def _authenticate(self, response: Any, scope: str) -> None:
        challenge = response.headers.get("www-authenticate", "")
        kind, _, params = challenge.partition(" ")
        if not self.username:
            raise GraphpackError(f"registry {self.host} needs credentials "
                                 "(set GRAPHPACK_REGISTRY_USERNAME/PASSWORD or `docker login`)")
        basic = "Basic " + base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
        if kind.lower() == "basic":
            self._basic = True
            self._auth["*"] = basic
            return
        if kind.lower() != "bearer":
            raise GraphpackError(f"registry {self.host} asks for unsupported auth {challenge!r}")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query = {"service": fields.get("service", "")}
        if fields.get("scope") or scope != "*":
            query["scope"] = fields.get("scope") or scope
        try:
            token = self._client.get(fields["realm"] + "?" + urlencode(query), headers={"Authorization": basic})
        except Exception as exc:  # noqa: BLE001 - any transport error is the token server's
            raise GraphpackError(f"registry {self.host}: token server {fields.get('realm')} failed: {exc}") from None
        if token.status_code in (401, 403):
            raise GraphpackError(f"registry {self.host} refused access with user {self.username!r}")
        body = token.json()
        self._auth[scope] = "Bearer " + (body.get("token") or body.get("access_token") or "")

    @staticmethod
    def _scope(repo: str, push: bool) -> str:
        return f"repository:{repo}:{'pull,push' if push else 'pull'}"

    def _check(self, response: Any, what: str) -> Any:
        if response.status_code >= 400:
            try:
                errors = response.json().get("errors") or []
                detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
            except ValueError:
                detail = response.text[:200]
            raise GraphpackError(f"registry {self.host}: {what} failed ({response.status_code}): {detail}")
        return response

    # -- API ------------------------------------------------------------------------------------
    def ping(self) -> None:
        """Check the registry answers the v2 API (and the credentials, if it asks for them)."""
        self._check(self._send("GET", self.url("/v2/"), "*"), "GET /v2/")

    def has_blob(self, repo: str, digest: str) -> bool:
        if (repo, digest) in self._present:   # pushed or seen by this client: blobs are immutable
            return True
        response = self._send("HEAD", self.url(f"/v2/{repo}/blobs/{digest}"), self._scope(repo, True))
        if response.status_code == 404:
            return False
        self._check(response, f"HEAD blob {digest[:19]}")
        self._present.add((repo, digest))
        return True

    def get_blob(self, repo: str, digest: str) -> bytes:
        response = self._send("GET", self.url(f"/v2/{repo}/blobs/{digest}"), self._scope(repo, False))
        data = self._check(response, f"GET blob {digest[:19]} of {repo}").content
        if sha256(data) != digest:
            raise GraphpackError(f"registry {self.host}: blob {digest} of {repo} has the wrong digest")
        return data

    def push_blob(self, repo: str, digest: str, layer: Layer | None = None, data: bytes | None = None,
                  mount_from: str | None = None) -> bool:
        """Make ``digest`` present in ``repo``: skipped when there, mounted from ``mount_from``
        (another repo of this registry) when possible, else uploaded. True when uploaded."""
        scope = self._scope(repo, True)
        if self.has_blob(repo, digest):
            return False
        url = self.url(f"/v2/{repo}/blobs/uploads/")
        if mount_from and mount_from != repo:
            response = self._send("POST", url + "?" + urlencode({"mount": digest, "from": mount_from}), scope)
            if response.status_code == 201:
                self.mounts += 1
                self._present.add((repo, digest))
                return False
        else:
            response = self._send("POST", url, scope)
        self._check(response, f"start upload to {repo}")
        location = response.headers["location"]
        if location.startswith("/"):
            location = self.url(location)
        location += ("&" if "?" in location else "?") + urlencode({"digest": digest})
        if data is None and layer is not None and layer.data is not None:
            data = layer.data
        if data is not None:
            body: Any = data
            length = len(data)
        elif layer is not None and layer.path:
            body, length = _file_chunks(layer.path), layer.size
        else:
            raise GraphpackError(f"blob {digest} is not in {self.host}/{repo} and no local copy exists")
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        response = self._send("PUT", location, scope, content=body, headers=headers)
        self._check(response, f"upload {digest[:19]} to {repo}")
        self._present.add((repo, digest))
        self.uploads += 1
        return True

    def put_manifest(self, repo: str, ref: str, manifest: bytes, media_type: str) -> str:
        response = self._send("PUT", self.url(f"/v2/{repo}/manifests/{ref}"), self._scope(repo, True),
                              content=manifest, headers={"Content-Type": media_type})
        self._check(response, f"PUT manifest {repo}:{ref}")
        return response.headers.get("docker-content-digest") or sha256(manifest)

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str]:
        """The manifest bytes and media type (a platform index resolves to its linux/amd64 entry)."""
        response = self._send("GET", self.url(f"/v2/{repo}/manifests/{ref}"), self._scope(repo, False),
                              headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            raise GraphpackError(f"image {self.host}/{repo}:{ref} does not exist")
        self._check(response, f"GET manifest {repo}:{ref}")
        media_type = response.headers.get("content-type", "").split(";")[0]
        data = response.content
        body = json.loads(data)
        media_type = body.get("mediaType", media_type)
        if "manifests" in body:
            for entry in body["manifests"]:
                platform = entry.get("platform") or {}
                if platform.get("os", "linux") == "linux" and platform.get("architecture", "amd64") == "amd64":
                    return self.get_manifest(repo, entry["digest"])
            raise GraphpackError(f"image {self.host}/{repo}:{ref} has no linux/amd64 manifest")
        return data, media_type

    def pull_image(self, repo: str, ref: str) -> Image:
        """The image value of ``repo:ref`` (config read; layers stay in the registry, by digest)."""
        data, _ = self.get_manifest(repo, ref)
        manifest = json.loads(data)
        config = self.get_blob(repo, manifest["config"]["digest"])
        return image_from_config(config, manifest, origin=f"{self.host}/{repo}")

    def push_image(self, image: Image, repo: str, tag: str, progress: Any = None) -> str:
        """Push layers (skipping those present, mounting those in another repo here), the config
        and the manifest; returns the manifest digest. ``progress`` gets a line per layer."""
        count = len(image.layers)
        for index, layer in enumerate(image.layers, 1):
            mount = None
            if layer.origin and layer.origin.startswith(self.host + "/"):
                mount = layer.origin[len(self.host) + 1:]
            mounts = self.mounts
            sent = self.push_blob(repo, layer.digest, layer=layer if layer.local else None, mount_from=mount)
            if progress is not None:
                how = "uploaded" if sent else "mounted" if self.mounts > mounts else "already there"
                progress(f"push {self.host}/{repo}:{tag}: layer {index}/{count} {layer.digest[7:19]} "
                         f"({layer.size / 1e6:.1f} MB) {how}")
        config = image.config_blob()
        self.push_blob(repo, sha256(config), data=config)
        manifest = image.manifest_blob()
        digest = self.put_manifest(repo, tag, manifest, image.manifest()["mediaType"])
        if digest != image.digest:
            raise GraphpackError(f"registry {self.host} stored {repo}:{tag} as {digest}, expected {image.digest}")
        return digest


def _file_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                return
            yield chunk


__all__ = ["Reference", "Registry", "docker_config_auth"]
