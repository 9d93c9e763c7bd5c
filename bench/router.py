"""Router benchmark: V2 infer requests through the mock server to a trivial model.

The graph is the router topology with one model (a V2ModelServer whose ``predict`` returns
its inputs), called as ``server.test("/v2/models/m/infer", {"inputs": [[1, 2, 3, 4]]})``.
Measures, in one run:
  - a bare call: the model's ``predict`` on the request, no server around it;
  - graphpack's mock server;
  - with ``--peer mlrun``: the identical code on MLRun (``import mlrun``) in bench/.venv-peers.
It prints µs/event, events/s and the ratio against the goal: graphpack >= 3x MLRun's events/s.
graphpack and the peer are measured in turns (``--rounds``, default 2) and each side keeps its
best median, so load from other processes does not land on one side only.

    python bench/router.py                 # graphpack + bare call
    python bench/router.py --peer mlrun    # ... and MLRun, with the ratio against it
    python bench/router.py --events 200 --repeats 1   # a quick smoke run
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Timing, emit_result, measure, print_table, ratio_line  # noqa: E402

PATH = "/v2/models/m/infer"
BODY = {"inputs": [[1.0, 2.0, 3.0, 4.0]]}
DEFAULT_EVENTS = {"bare": 200_000, "router": 20_000}
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
    """The model's own work with no server: predict on the request body."""
    inputs = BODY["inputs"]

    def predict(request):
        return request["inputs"]

    def call():
        return {"id": "x", "model_name": "m", "outputs": predict({"inputs": inputs})}

    return call


def build_server(api):
    """The router graph, written exactly as in MLRun's docs; ``api`` is mlrun or graphpack."""
    fn = api.new_function("bench-router", kind="serving")
    fn.set_topology("router")
    fn.add_model("m", class_name="EchoModel", model_path="unused")
    return fn.to_mock_server(namespace={"EchoModel": model_class(api)})


def measure_api(module: str, events: int, repeats: int) -> Timing:
    """Time V2 infer requests through ``module``'s mock server."""
    api = importlib.import_module(module)
    importlib.import_module(f"{module}.serving")
    server = build_server(api)
    got = server.test(PATH, BODY)
    if not isinstance(got, dict) or got.get("outputs") != BODY["inputs"] or got.get("model_name") != "m":
        raise SystemExit(f"{module}: the router answered {got!r}")
    return measure(f"{module} router", lambda: server.test(PATH, BODY), events, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", choices=["mlrun"], help="also run the identical graph on this peer")
    parser.add_argument("--events", type=int, help="events per timed run for every case (default: per case)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case; the median is shown")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternate graphpack and the peer this many times; each keeps its best median")
    parser.add_argument("--json", metavar="FILE", help="write all timings to FILE as JSON")
    parser.add_argument("--markdown", action="store_true", help="also print a README table")
    parser.add_argument("--check", action="store_true", help="exit 1 when the measured goal is missed")
    parser.add_argument("--worker", metavar="MODULE", help=argparse.SUPPRESS)  # child mode: one API only
    args = parser.parse_args(argv)
    events = {k: args.events or v for k, v in DEFAULT_EVENTS.items()}

    if args.worker:
        emit_result(measure_api(args.worker, events["router"], args.repeats).to_dict())
        return 0

    print(f"router bench: POST {PATH} {json.dumps(BODY)} through the mock server, "
          f"median of {args.repeats} runs, best of {args.rounds} round(s), python {sys.version.split()[0]}",
          flush=True)
    bare = measure("bare predict call", bare_call(), events["bare"], args.repeats)
    print_table([bare])
    # graphpack and the peer take turns, round after round; each side keeps its best median,
    # so a burst of load on a shared machine penalises neither side more than the other
    gp: Timing | None = None
    peer: Timing | None = None
    for _ in range(args.rounds):
        t = measure_api("graphpack", events["router"], args.repeats)
        gp = t if gp is None or t.us_per_event < gp.us_per_event else gp
        if args.peer:
            from peers import run_script

            result = run_script(args.peer, Path(__file__).resolve(),
                                ["--worker", args.peer, "--repeats", str(args.repeats)]
                                + (["--events", str(args.events)] if args.events else []))
            p = Timing.from_dict(result)
            p.name = p.name.replace("mlrun", "MLRun")
            peer = p if peer is None or p.us_per_event < peer.us_per_event else peer
    assert gp is not None
    print_table([gp] + ([peer] if peer else []))

    overhead = gp.us_per_event / bare.us_per_event
    print(ratio_line("graphpack router / bare predict (µs/event)", overhead))
    if peer is None:
        line = ratio_line("graphpack router vs MLRun router (events/s)", None,
                          f">= {GOAL:g}x; run with --peer mlrun to measure")
    else:
        value = peer.us_per_event / gp.us_per_event
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
