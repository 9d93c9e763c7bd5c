"""Router benchmark: V2 infer requests through the mock server to a trivial model.

The graph is the router topology with one model (a V2ModelServer whose ``predict`` returns
its inputs), called as ``server.test("/v2/models/m/infer", {"inputs": [[1, 2, 3, 4]]})``.
Measures, in one run:
  - a bare call: the model's ``predict`` on the request and the response dict, no server;
  - graphpack's mock server;
  - with ``--peer mlrun``: the identical code on MLRun (``import mlrun``) in bench/.venv-peers.
Each side runs in a worker process and the timed runs take turns (bench/_harness.py), so
load drifting on a shared machine hits both sides alike. It prints µs/event, events/s and the
ratio against the goal: graphpack >= 3x MLRun's events/s.

    python bench/router.py                 # graphpack + bare call
    python bench/router.py --peer mlrun    # ... and MLRun, with the ratio against it
    python bench/router.py --peer mlrun --clock cpu   # ratio on process CPU time (busy machine)
    python bench/router.py --events 200 --repeats 1   # a quick smoke run
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

# bench/ goes last on sys.path: its files (http.py, ...) must not shadow the standard library.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]

from _harness import Timing, Worker, interleave, peer_bench_parser, print_table, ratio_line, serve  # noqa: E402

PATH = "/v2/models/m/infer"
BODY = {"inputs": [[1.0, 2.0, 3.0, 4.0]]}
DEFAULT_EVENTS = {"bare": 200_000, "router": 20_000}
PEER_LABELS = {"mlrun": "MLRun"}
GOAL = 3.0


def model_class(api):
    """The trivial model, subclassing ``api.serving.V2ModelServer`` (mlrun or graphpack)."""

    class EchoModel(api.serving.V2ModelServer):
        def load(self):
            self.model = "identity"

        def predict(self, request):
            return request["inputs"]

    return EchoModel


def bare_call():
    """The model's own work with no server: predict on the request, wrapped in a response."""

    def predict(request):
        return request["inputs"]

    def call():
        return {"id": "x", "model_name": "m", "outputs": predict(BODY)}

    return call


def build_server(api):
    """The router graph, written exactly as in MLRun's docs; ``api`` is mlrun or graphpack."""
    fn = api.new_function("bench-router", kind="serving")
    fn.set_topology("router")
    fn.add_model("m", class_name="EchoModel", model_path="unused")
    return fn.to_mock_server(namespace={"EchoModel": model_class(api)})


def worker(module: str) -> None:
    """Child mode: build the mock server on ``module`` and serve timed runs (_harness.serve)."""
    api = importlib.import_module(module)
    importlib.import_module(f"{module}.serving")
    server = build_server(api)
    got = server.test(PATH, BODY)
    if not isinstance(got, dict) or got.get("outputs") != BODY["inputs"] or got.get("model_name") != "m":
        raise SystemExit(f"{module}: the router answered {got!r}")
    cases = {"router": lambda: server.test(PATH, BODY)}
    if module == "graphpack":
        cases["bare"] = bare_call()
    serve(cases, warmup=300)


def run_all(peer: str | None, events: dict[str, int], repeats: int) -> dict[str, Timing]:
    """Start the workers and time every case, graphpack and peer taking turns run by run."""
    script = str(Path(__file__).resolve())
    workers = [Worker("graphpack", [sys.executable, "-P", script, "--worker", "graphpack"])]
    try:
        if peer:
            from peers import start_worker

            workers.append(start_worker(peer, script, ["--worker", peer], label=PEER_LABELS[peer]))
        return interleave(workers, events, repeats)
    finally:
        for w in workers:
            w.close()


def main(argv: list[str] | None = None) -> int:
    args = peer_bench_parser(__doc__).parse_args(argv)
    events = {k: args.events or v for k, v in DEFAULT_EVENTS.items()}

    if args.worker:
        worker(args.worker)
        return 0

    print(f"router bench: POST {PATH} {json.dumps(BODY)} through the mock server, median of "
          f"{args.repeats} runs taken in turns, python {sys.version.split()[0]}", flush=True)
    timings = run_all(args.peer, events, args.repeats)
    bare = timings.pop("graphpack bare")
    bare.name = "bare predict call"
    gp = timings["graphpack router"]
    peer = timings[f"{PEER_LABELS[args.peer]} router"] if args.peer else None
    print_table([bare, gp, *([peer] if peer else [])])

    def us(t: Timing) -> float:
        return (t.cpu_us_per_event or t.us_per_event) if args.clock == "cpu" else t.us_per_event

    if args.clock == "cpu":
        print("ratios below use process CPU time (--clock cpu), not wall-clock time")
    print(ratio_line("graphpack router / bare predict (µs/event)", us(gp) / us(bare)))
    if peer is None:
        line = ratio_line("graphpack router vs MLRun router (events/s)", None,
                          f">= {GOAL:g}x; run with --peer mlrun to measure")
    else:
        value = us(peer) / us(gp)
        line = ratio_line("graphpack router vs MLRun router (events/s)", value, f">= {GOAL:g}x", value >= GOAL)
    print(line)
    if args.markdown:
        rows = ["| case | µs/event | events/s |", "| --- | ---: | ---: |"]
        cases = [("bare predict call", bare), ("graphpack router", gp)] + ([("MLRun router", peer)] if peer else [])
        rows += [f"| {label} | {t.us_per_event:.2f} | {t.events_per_s:,.0f} |" for label, t in cases]
        print("\n".join(rows))
    if args.json:
        data = {"bare": bare.to_dict(), "graphpack": gp.to_dict()}
        if peer:
            data[args.peer] = peer.to_dict()
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    if args.check and line.endswith("MISSED"):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
