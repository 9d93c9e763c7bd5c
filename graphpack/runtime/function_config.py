"""A function's config as the processor reads it: ``function.yaml``, or the JSON copy of it a
build writes beside it (``CONFIG_JSON``) so that a start need not import PyYAML.

The JSON copy holds the config and the function.yaml text it was written with; it is used only
while that text is function.yaml's, so an edited or hand-written function.yaml is read as YAML.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import GraphpackError

CONFIG_JSON = "function.yaml.json"


def config_json(config: dict, yaml_text: str) -> str:
    """The ``CONFIG_JSON`` file a build writes next to function.yaml (whose text is ``yaml_text``)."""
    return json.dumps({"function.yaml": yaml_text, "config": config}, sort_keys=True, indent=1) + "\n"


def load_config(function_dir: str | Path) -> dict:
    """The function's config (function.yaml) with the fields the processor needs checked."""
    path = Path(function_dir) / "function.yaml"
    try:
        text = path.read_text()
    except OSError as exc:
        raise GraphpackError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    config = _from_json(path.parent / CONFIG_JSON, text)
    if config is None:
        import yaml  # here: about a tenth of a cold start, needed only without a current JSON copy

        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise GraphpackError(f"{str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("spec"), dict):
        raise GraphpackError(f"{str(path)!r}: not a function config (no spec)")
    handler = config["spec"].get("handler", "")
    if ":" not in handler:
        raise GraphpackError(f"{str(path)!r}: spec.handler must be 'module:function', got {handler!r}")
    return config


def _from_json(path: Path, yaml_text: str) -> dict | None:
    """The config in ``path`` if it was written with ``yaml_text``, else None."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("function.yaml") != yaml_text:
        return None
    config = data.get("config")
    return config if isinstance(config, dict) else None
