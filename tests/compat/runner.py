"""Run differential cases under one API (``mlrun`` or ``graphpack``) and print the results as JSON.

    python runner.py mlrun < cases.json      # in the MLRun venv
    python runner.py graphpack < cases.json  # with graphpack importable

Each case is ``{"name", "code", "requests"}``. ``code`` runs with ``api`` bound to the imported
package (``api.new_function(...)``); it either leaves a ``server`` (a mock server the requests
are sent to, with ``test(..., silent=True)``) or an ``output`` (any value, recorded as is). An
exception while building is recorded too. Only the standard library is used here, so the
same file runs in both interpreters.
"""
from __future__ import annotations

import importlib
import io
import json
import os
import signal
import sys
import traceback
from contextlib import redirect_stdout
from typing import Any


def normalise(value: Any) -> Any:
    """A JSON-able view of a result that both packages can be compared on."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return {"bytes": bytes(value).decode()}
        except UnicodeDecodeError:
            return {"bytes": repr(bytes(value))}
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if hasattr(value, "status_code") and hasattr(value, "body"):  # a Response
        status = int(value.status_code)
        if status >= 300:
            return {"failed": status, "message": _text(value.body)}
        return {"response": status, "body": normalise(value.body)}
    if hasattr(value, "body") and hasattr(value, "id"):  # an Event
        return {"event": normalise(value.body)}
    if hasattr(value, "tolist"):
        return normalise(value.tolist())
    return {"object": type(value).__name__}


def _text(body: Any) -> str:
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode(errors="replace")
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return body if isinstance(body, str) else json.dumps(body, default=repr)


def run_case(api: Any, case: dict) -> dict:
    namespace: dict = {"api": api, "__name__": "case_" + case["name"].replace("-", "_")}
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            exec(compile(case["code"], f"<case {case['name']}>", "exec"), namespace)  # noqa: S102
    except Exception as exc:  # noqa: BLE001 - a build error is a result
        return {"build_error": type(exc).__name__, "message": str(exc).splitlines()[0] if str(exc) else "",
                "error_classes": [c.__name__ for c in type(exc).__mro__]}
    result: dict = {}
    if "output" in namespace:
        result["output"] = normalise(namespace["output"])
    server = namespace.get("server")
    if server is not None:
        answers = []
        for request in case.get("requests", []):
            body = request.get("body")
            if isinstance(body, dict) and list(body) == ["$bytes"]:
                request = {**request, "body": body["$bytes"].encode()}
            try:
                with redirect_stdout(out):
                    answers.append(normalise(server.test(silent=True, **request)))
            except Exception as exc:  # noqa: BLE001
                answers.append({"raised": type(exc).__name__, "message": str(exc).splitlines()[0] if str(exc) else ""})
        result["answers"] = answers
        try:
            with redirect_stdout(out):
                server.wait_for_completion()
        except Exception as exc:  # noqa: BLE001
            result["completion_error"] = f"{type(exc).__name__}: {exc}"
    after = namespace.get("after")  # evaluated once the server finished (e.g. what a step saw)
    if callable(after):
        try:
            result["after"] = normalise(after())
        except Exception as exc:  # noqa: BLE001
            result["after"] = {"raised": type(exc).__name__, "message": str(exc)}
    if out.getvalue():
        result["stdout"] = out.getvalue()
    return result


CASE_TIMEOUT = 30  # seconds; a case that hangs (e.g. a responder that never answers) fails alone


def _timeout(signum: int, frame: Any) -> None:
    raise TimeoutError(f"the case did not finish within {CASE_TIMEOUT}s")


def main() -> None:
    signal.signal(signal.SIGALRM, _timeout)
    api = importlib.import_module(sys.argv[1])
    cases = json.load(sys.stdin)
    results = {}
    for case in cases:
        signal.alarm(CASE_TIMEOUT)
        try:
            results[case["name"]] = run_case(api, case)
        except BaseException:  # noqa: BLE001 - one broken case must not hide the others
            results[case["name"]] = {"crashed": traceback.format_exc()[-2000:]}
        finally:
            signal.alarm(0)
    sys.stdout.write("@@RESULTS@@" + json.dumps(results, default=repr) + "\n")
    sys.stdout.flush()
    os._exit(0)  # a thread a case left behind (e.g. a storey flow that never finished) must not hang the exit


if __name__ == "__main__":
    main()
