"""``python -m graphpack.serve FUNCTION_DIR``: the processor's command inside an image.

The image carries graphpack's runtime without the CLI and its dependencies (click), so this is
its command; ``graphpack serve`` on a developer's machine runs the same code. A GraphpackError
is one line on stderr and exit code 1.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from .errors import GraphpackError
from .runtime.deps import missing_in

if TYPE_CHECKING:
    import argparse


def parser() -> "argparse.ArgumentParser":
    import argparse

    out = argparse.ArgumentParser(prog="python -m graphpack.serve",
                                  description="Run a built function with graphpack's own processor.")
    out.add_argument("function_dir", help="the function's directory (function.yaml, entry module, spec)")
    out.add_argument("--port", type=int, help="port of the http trigger (default: $PORT, function.yaml, 8080)")
    out.add_argument("--workers", type=int, help="worker processes (default: the http trigger's numWorkers)")
    out.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    out.add_argument("--workdir", help="directory to run in (relative paths in the graph resolve there)")
    out.add_argument("--metrics", action=argparse.BooleanOptionalAction, default=None,
                     help="Prometheus metrics at GET /metrics (default: on, unless $GRAPHPACK_METRICS=0)")
    return out


def run(function_dir: str, port: int | None = None, workers: int | None = None, host: str = "127.0.0.1",
        workdir: str | None = None, metrics: bool | None = None) -> int:
    """Serve ``function_dir`` until SIGTERM; a GraphpackError is one line and exit code 1.
    ``metrics`` True/False overrides ``$GRAPHPACK_METRICS`` (metrics are on by default)."""
    from .runtime import metrics as recording
    from .runtime.processor import serve

    if metrics is not None:
        os.environ[recording.ENV] = "1" if metrics else "0"

    function_dir = os.path.abspath(function_dir)
    if workdir:
        try:
            os.chdir(workdir)
        except OSError as exc:
            print(f"error: {exc.strerror or exc}: {workdir}", file=sys.stderr, flush=True)
            return 1
    try:
        return serve(function_dir, port=port, workers=workers, host=host)
    except Exception as exc:
        if missing_in(exc) is not None:  # already logged, once, naming the package and the feature
            return 1
        if not isinstance(exc, GraphpackError):
            raise
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1


#: option -> (argument name, type) of the command lines ``_plain_args`` reads
_OPTIONS = {"--port": ("port", int), "--workers": ("workers", int), "--host": ("host", str), "--workdir": ("workdir", str)}


def _plain_args(argv: list[str]) -> dict | None:
    """``FUNCTION_DIR [--port N] [--workers N] [--host H] [--workdir D] [--[no-]metrics]`` read
    without argparse (a few ms of a cold start); None for anything else (help, errors, ...), which
    argparse reads."""
    args: dict = {"function_dir": None, "port": None, "workers": None, "host": "127.0.0.1", "workdir": None,
                  "metrics": None}
    words = list(argv)
    while words:
        word = words.pop(0)
        name, sep, value = word.partition("=")
        if word in ("--metrics", "--no-metrics"):
            args["metrics"] = word == "--metrics"
        elif name in _OPTIONS:
            if not sep:
                if not words:
                    return None
                value = words.pop(0)
            key, kind = _OPTIONS[name]
            if not value or value.startswith("-") or (kind is int and not value.isdecimal()):
                return None
            args[key] = kind(value)
        elif word.startswith("-") or args["function_dir"] is not None:
            return None
        else:
            args["function_dir"] = word
    return args if args["function_dir"] is not None else None


def main(argv: list[str] | None = None) -> int:
    args = _plain_args(sys.argv[1:] if argv is None else argv)
    if args is None:
        args = vars(parser().parse_args(argv))
    return run(args["function_dir"], args["port"], args["workers"], args["host"], args["workdir"], args["metrics"])


if __name__ == "__main__":
    sys.exit(main())
