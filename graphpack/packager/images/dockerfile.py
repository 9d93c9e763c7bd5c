"""A reader for the Dockerfile subset graphpack renders (templates/Dockerfile.j2), so the
daemonless builder makes the same image config as ``docker build`` of the same file."""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

from ...errors import GraphpackError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


@dataclass(frozen=True)
class Instruction:
    keyword: str   # upper case
    args: str      # the rest of the (joined) line
    line: int


@dataclass
class Recipe:
    """What the Dockerfile asks for, in the terms the daemonless builder uses."""

    base: str = ""
    env: list[tuple[str, str]] = field(default_factory=list)
    copies: list[tuple[list[str], str]] = field(default_factory=list)   # (sources, destination)
    runs: list[Instruction] = field(default_factory=list)
    user: str = ""
    workdir: str = ""
    exposed: list[str] = field(default_factory=list)
    healthcheck: dict | None = None
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)


def instructions(text: str) -> list[Instruction]:
    """Logical lines (continuations joined, comments dropped) as instructions."""
    out: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1].rstrip() + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    if buffer:
        keyword, _, args = buffer.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    return out


def _substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], ""), text)


def _pairs(args: str) -> list[tuple[str, str]]:
    words = shlex.split(args)
    if len(words) == 2 and "=" not in words[0]:
        return [(words[0], words[1])]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise GraphpackError(f"cannot read {args!r} (expected KEY=VALUE)")
        pairs.append((key, value))
    return pairs


def _command(args: str) -> list[str] | str:
    """Exec form (a JSON list) or shell form (a string)."""
    if args.startswith("["):
        try:
            value = json.loads(args)
        except ValueError:
            raise GraphpackError(f"cannot read command {args!r}") from None
        return [str(v) for v in value]
    return args


def duration(text: str) -> int:
    """A Docker duration ("10s", "1m30s") in nanoseconds."""
    total = 0
    for amount, unit in _DURATION.findall(text):
        total += int(float(amount) * _UNITS[unit])
    return total


def parse(text: str, build_args: dict[str, str] | None = None) -> Recipe:
    """Read a Dockerfile into a Recipe (single stage; unknown instructions are errors)."""
    recipe = Recipe()
    args = dict(build_args or {})
    env: dict[str, str] = {}
    stage = 0
    for ins in instructions(text):
        kw, raw = ins.keyword, ins.args
        values = {**args, **env}
        if kw == "ARG":
            name, sep, default = raw.partition("=")
            args.setdefault(name.strip(), default.strip() if sep else "")
            recipe.args[name.strip()] = args[name.strip()]
        elif kw == "FROM":
            stage += 1
            if stage > 1:
                raise GraphpackError(f"Dockerfile line {ins.line}: multi-stage builds need --builder docker")
            recipe.base = _substitute(raw.split()[0], args)
        elif kw == "ENV":
            for key, value in _pairs(_substitute(raw, values)):
                env[key] = value
                recipe.env = [(k, v) for k, v in recipe.env if k != key] + [(key, value)]
        elif kw in ("COPY", "ADD"):
            words = shlex.split(_substitute(raw, values))
            if any(w.startswith("--") for w in words) or kw == "ADD" or len(words) < 2:
                raise GraphpackError(f"Dockerfile line {ins.line}: only plain COPY is supported without Docker")
            recipe.copies.append((words[:-1], words[-1]))
        elif kw == "RUN":
            recipe.runs.append(ins)
        elif kw == "USER":
            recipe.user = _substitute(raw, values)
        elif kw == "WORKDIR":
            recipe.workdir = _substitute(raw, values)
        elif kw == "EXPOSE":
            recipe.exposed += [p if "/" in p else f"{p}/tcp" for p in raw.split()]
        elif kw == "LABEL":
            recipe.labels.update(_pairs(raw))
        elif kw == "CMD":
            cmd = _command(raw)
            recipe.cmd = cmd if isinstance(cmd, list) else ["/bin/sh", "-c", cmd]
        elif kw == "ENTRYPOINT":
            entry = _command(raw)
            recipe.entrypoint = entry if isinstance(entry, list) else ["/bin/sh", "-c", entry]
        elif kw == "HEALTHCHECK":
            recipe.healthcheck = _healthcheck(raw, ins.line)
        else:
            raise GraphpackError(f"Dockerfile line {ins.line}: {kw} is not supported without Docker")
    if not recipe.base:
        raise GraphpackError("the Dockerfile has no FROM")
    return recipe


def _healthcheck(raw: str, line: int) -> dict:
    words = raw.split(" ")
    check: dict = {}
    names = {"--interval": "Interval", "--timeout": "Timeout", "--start-period": "StartPeriod",
             "--retries": "Retries"}
    while words and words[0].startswith("--"):
        option, _, value = words.pop(0).partition("=")
        if option not in names:
            raise GraphpackError(f"Dockerfile line {line}: unknown HEALTHCHECK option {option}")
        check[names[option]] = int(value) if option == "--retries" else duration(value)
    rest = " ".join(words).strip()
    if rest.upper() == "NONE":
        return {"Test": ["NONE"]}
    if not rest.upper().startswith("CMD"):
        raise GraphpackError(f"Dockerfile line {line}: HEALTHCHECK needs CMD")
    command = _command(rest[3:].strip())
    check["Test"] = ["CMD", *command] if isinstance(command, list) else ["CMD-SHELL", command]
    return check


__all__ = ["Instruction", "Recipe", "duration", "instructions", "parse"]
