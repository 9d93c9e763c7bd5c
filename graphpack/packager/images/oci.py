"""Image values: layers, config and manifest (OCI media types throughout), and a local
content-addressed blob store. Values are read-only; ``append`` returns a new image."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from .tarball import Entry, write_layer

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_TYPES = (MANIFEST_TYPE, DOCKER_MANIFEST_TYPE, INDEX_TYPE, DOCKER_LIST_TYPE)
EPOCH = "1970-01-01T00:00:00Z"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj: Any) -> bytes:
    """The JSON bytes graphpack writes (sorted keys, no spaces): same value, same digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def created() -> str:
    """The image's creation time: SOURCE_DATE_EPOCH when set, else the Unix epoch."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return EPOCH
    import datetime

    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class BlobStore:
    """Blobs by digest under ``root/sha256/<hex>``; writes are atomic renames."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        algo, _, hexdigest = digest.partition(":")
        return self.root / algo / hexdigest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, data: bytes) -> str:
        digest = sha256(data)
        if not self.has(digest):
            self._write(digest, data)
        return digest

    def _write(self, digest: str, data: bytes) -> None:
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)

    def write_layer(self, entries: Iterable[Entry], comment: str = "") -> "Layer":
        """Write a layer of ``entries`` into the store; returns it (data read from the store)."""
        self.root.joinpath("sha256").mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root / "sha256", prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                blob = write_layer(entries, handle)
            os.replace(tmp, self.path(blob.digest))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Layer(blob.digest, blob.size, blob.diff_id, path=str(self.path(blob.digest)), comment=comment)


@dataclass(frozen=True)
class Layer:
    """One layer: gzip digest and size, diff_id, and where its bytes are (a local file, memory,
    or only in a registry repository ``origin`` = "host/repo")."""

    digest: str
    size: int
    diff_id: str
    media_type: str = LAYER_TYPE
    path: str | None = field(default=None, compare=False)
    data: bytes | None = field(default=None, compare=False, repr=False)
    origin: str | None = field(default=None, compare=False)
    comment: str = field(default="", compare=False)

    @property
    def local(self) -> bool:
        return self.data is not None or (self.path is not None and os.path.exists(self.path))

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.path is None:
            raise FileNotFoundError(f"layer {self.digest} is only in {self.origin}")
        return Path(self.path).read_bytes()

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Image:
    """An image value: config (the JSON object, without rootfs) and its layers."""

    config: dict
    layers: tuple[Layer, ...] = ()
    history: tuple[dict, ...] = ()

    def config_blob(self) -> bytes:
        body = dict(self.config)
        body["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in self.layers]}
        body["history"] = list(self.history)
        return canonical(body)

    @property
    def config_digest(self) -> str:
        return sha256(self.config_blob())

    def manifest(self) -> dict:
        config = self.config_blob()
        return {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": sha256(config), "size": len(config)},
            "layers": [layer.descriptor() for layer in self.layers],
        }

    def manifest_blob(self) -> bytes:
        return canonical(self.manifest())

    @property
    def digest(self) -> str:
        """The manifest digest: what ``name@digest`` pulls."""
        return sha256(self.manifest_blob())

    @property
    def container_config(self) -> dict:
        return dict(self.config.get("config") or {})


def new_config(container: dict, architecture: str = "amd64") -> dict:
    return {"architecture": architecture, "os": "linux", "created": created(), "config": container}


def append(image: Image, layer: Layer, created_by: str) -> Image:
    """A new image with ``layer`` on top (go-containerregistry's mutate.Append)."""
    entry = {"created": created(), "created_by": created_by}
    return Image(dict(image.config), image.layers + (layer,), image.history + (entry,))


def with_container_config(image: Image, **changes: Any) -> Image:
    """A new image whose container config has ``changes`` (None removes a key)."""
    container = dict(image.container_config)
    for key, value in changes.items():
        if value is None:
            container.pop(key, None)
        else:
            container[key] = value
    config = dict(image.config)
    config["config"] = container
    config["created"] = created()
    return replace(image, config=config)


def image_from_config(config_blob: bytes, manifest: dict, origin: str | None = None,
                      store: BlobStore | None = None) -> Image:
    """An image value for a manifest + config read from a registry or a layout."""
    config = json.loads(config_blob)
    diff_ids = (config.pop("rootfs", None) or {}).get("diff_ids", [])
    history = tuple(h for h in config.pop("history", None) or [])
    layers = []
    for descriptor, diff_id in zip(manifest["layers"], diff_ids):
        path = str(store.path(descriptor["digest"])) if store and store.has(descriptor["digest"]) else None
        layers.append(Layer(descriptor["digest"], descriptor["size"], diff_id, descriptor["mediaType"],
                            path=path, origin=origin))
    return Image(config, tuple(layers), history)


def save(image: Image, store: BlobStore) -> Path:
    """Keep ``image`` in ``store`` (config, manifest and its local layers); returns the manifest path."""
    store.put(image.config_blob())
    for layer in image.layers:
        if layer.data is not None:
            store.put(layer.data)
    store.put(image.manifest_blob())
    return store.path(image.digest)


def load(store: BlobStore, digest: str) -> Image:
    """The image saved in ``store`` under manifest ``digest``."""
    manifest = json.loads(store.path(digest).read_bytes())
    config = store.path(manifest["config"]["digest"]).read_bytes()
    return image_from_config(config, manifest, store=store)


def write_layout(image: Image, directory: str | Path, ref_name: str = "latest") -> Path:
    """Write ``image`` as an OCI image layout (``skopeo inspect oci:DIR``); layers must be local."""
    directory = Path(directory)
    store = BlobStore(directory / "blobs")
    for layer in image.layers:
        if not store.has(layer.digest):
            store._write(layer.digest, layer.read())
    store.put(image.config_blob())
    manifest = image.manifest_blob()
    store.put(manifest)
    (directory / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [
        {"mediaType": MANIFEST_TYPE, "digest": image.digest, "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": ref_name}}]}
    (directory / "index.json").write_bytes(canonical(index))
    return directory


__all__ = [
    "BlobStore", "CONFIG_TYPE", "Image", "LAYER_TYPE", "Layer", "MANIFEST_TYPE", "append", "canonical",
    "image_from_config", "load", "new_config", "save", "sha256", "with_container_config", "write_layout",
]
