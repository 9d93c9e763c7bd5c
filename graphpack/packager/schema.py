"""The JSON schema of the function.yaml fields graphpack emits, and a small validator for it.

The validator covers the draft-07 keywords the schema uses (type, const, enum, properties,
required, additionalProperties, propertyNames, items, pattern, min/max, minLength/maxLength,
$ref, allOf, oneOf, if/then), so building needs no jsonschema package; the tests also check the
emitted configs with jsonschema itself.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import GraphpackError

SCHEMA_PATH = Path(__file__).with_name("function_schema.json")
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


@lru_cache(maxsize=1)
def function_schema() -> dict:
    """The checked-in schema (graphpack/packager/function_schema.json)."""
    return json.loads(SCHEMA_PATH.read_text())


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def errors(value: Any, schema: dict, root: dict | None = None, path: str = "") -> list[str]:
    """Every violation of ``schema`` by ``value``, as ``"<path>: <problem>"``."""
    root = root if root is not None else schema
    where = path or "(root)"
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return errors(value, target, root, path)
    found: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_type_ok(value, k) for k in kinds):
            return [f"{where}: expected {' or '.join(kinds)}, got {type(value).__name__}"]
    if "const" in schema and value != schema["const"]:
        found.append(f"{where}: must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            found.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            found.append(f"{where}: longer than {schema['maxLength']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{where}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{where}: above {schema['maximum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                found.append(f"{where}: {key!r} is required")
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if "propertyNames" in schema:
                found += errors(key, schema["propertyNames"], root, f"{sub} (name)")
            if key in props:
                found += errors(item, props[key], root, sub)
            elif schema.get("additionalProperties") is False:
                found.append(f"{sub}: unknown field")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += errors(item, schema["additionalProperties"], root, sub)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += errors(item, schema["items"], root, f"{path}[{index}]")
    for sub_schema in schema.get("allOf", []):
        found += errors(value, sub_schema, root, path)
    if "oneOf" in schema:
        matches = sum(not errors(value, s, root, path) for s in schema["oneOf"])
        if matches != 1:
            found.append(f"{where}: must match exactly one of {len(schema['oneOf'])} alternatives, matched {matches}")
    if "if" in schema and not errors(value, schema["if"], root, path) and "then" in schema:
        found += errors(value, schema["then"], root, path)
    return found


def validate(config: dict, where: str = "function.yaml") -> dict:
    """Raise GraphpackError naming the first field of ``config`` the schema rejects."""
    problems = errors(config, function_schema())
    if problems:
        raise GraphpackError(f"{where}: invalid function config: {problems[0]}")
    return config
