"""Secret sources resolved at run time: ``env`` (names of variables) and ``file`` (a JSON or
KEY=VALUE file, or a directory of one file per key as Kubernetes mounts secrets).

Secret *values* never enter a spec or a generated file; only these references do.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import GraphpackError

KINDS = ("env", "file", "inline")


def normalize_source(kind: str, source: Any) -> dict:
    """Validate one ``with_secrets(kind, source)`` call and return its stored form."""
    if kind not in KINDS:
        raise GraphpackError(f"secrets: unknown kind {kind!r}, use one of {', '.join(KINDS)}")
    if kind == "env":
        if isinstance(source, str):
            source = [name.strip() for name in source.split(",") if name.strip()]
        if isinstance(source, dict):  # {"SECRET_KEY": "ENV_VAR"}
            return {"kind": "env", "source": dict(source)}
        return {"kind": "env", "source": list(source or [])}
    if kind == "file":
        return {"kind": "file", "source": str(source)}
    if not isinstance(source, dict):
        raise GraphpackError("secrets: kind 'inline' needs a dict of key -> value")
    return {"kind": "inline", "source": dict(source)}


def read_secret_file(path: str) -> dict:
    """The keys and values of a secrets file (JSON or KEY=VALUE) or directory (one file per key)."""
    p = Path(path)
    if p.is_dir():
        return {f.name: f.read_text().rstrip("\n") for f in sorted(p.iterdir()) if f.is_file()}
    text = p.read_text()
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            return {str(k): v for k, v in data.items()}
    except ValueError:
        pass
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


class SecretsStore:
    """Looks keys up across the configured sources, first match wins."""

    def __init__(self, sources: list[dict] | None = None) -> None:
        self.sources = list(sources or [])
        self._files: dict[str, dict] = {}

    def get(self, key: str, default: Any = None) -> Any:
        for source in self.sources:
            kind = source.get("kind")
            value: Any = source.get("source")
            if kind == "env":
                if isinstance(value, dict):
                    if key in value and value[key] in os.environ:
                        return os.environ[value[key]]
                elif key in value and key in os.environ:
                    return os.environ[key]
            elif kind == "file":
                if value not in self._files:
                    try:
                        self._files[value] = read_secret_file(value)
                    except OSError:
                        self._files[value] = {}
                if key in self._files[value]:
                    return self._files[value][key]
            elif kind == "inline" and key in value:
                return value[key]
        return default

    def env_names(self) -> list[str]:
        """Environment variable names the env sources read (for deploy-time references)."""
        names: list[str] = []
        for source in self.sources:
            if source.get("kind") == "env":
                value = source["source"]
                names.extend(value.values() if isinstance(value, dict) else value)
        return names
