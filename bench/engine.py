"""Engine benchmark: a 5-step chain through the mock server, sync and async engines.

Measures, in one run:
  - a bare Python chain: the five step classes' ``do()`` called one after the other;
  - graphpack's mock server, ``engine="sync"`` and ``engine="async"``;
  - graphpack's mock server on the same chain with a graph error handler (``sync-handler``,
    ``async-handler``): the engines' general graph walk rather than the plain-chain fast path;
  - with ``--peer mlrun``: the identical graph code on MLRun (``import mlrun``) in
    bench/.venv-peers, created on demand with mlrun + storey.
It prints µs/event, events/s and the ratios against the goals:
  graphpack sync >= 4.5x MLRun's events/s and <= 2.5x the bare chain's µs/event;
  graphpack async >= 20x MLRun async's events/s.

    python bench/engine.py                 # graphpack + bare chain
    python bench/engine.py --peer mlrun    # ... and MLRun, with the ratios against it
    python bench/engine.py --events 200 --repeats 1   # a quick smoke run
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

BODY = {"v": 1}
EXPECTED = {"v": 6}
DEFAULT_EVENTS = {"bare": 200_000, "sync": 20_000, "async": 3_000, "sync-handler": 20_000, "async-handler": 20_000}
PEER_LABELS = {"mlrun": "MLRun"}
GOALS = {"sync_vs_bare": 2.5, "sync_vs_mlrun": 4.5, "async_vs_mlrun": 20.0}


# The five steps of the chain: each takes the body and returns a new small dict.
class Step1:
    def do(self, x):
        return {"v": x["v"] + 1}


class Step2:
    def do(self, x):
        return {"v": x["v"] + 1}


class Step3:
    def do(self, x):
        return {"v": x["v"] + 1}


class Step4:
    def do(self, x):
        return {"v": x["v"] + 1}


class Step5:
    def do(self, x):
        return {"v": x["v"] + 1}


class Catch:
    def do_event(self, event):
        return event


def bare_chain():
    """The same work as the graph with no engine: the five steps' do() in a plain loop."""
    steps = [Step1(), Step2(), Step3(), Step4(), Step5()]

    def call():
        body = BODY
        for step in steps:
            body = step.do(body)
        return body

    return call


def build_server(api, engine: str, error_handler: bool = False):
    """The graph, written exactly as in MLRun's docs; ``api`` is mlrun or graphpack."""
    fn = api.new_function("bench-chain", kind="serving")
    graph = fn.set_topology("flow", engine=engine)
    graph.to(class_name="Step1", name="s1").to(class_name="Step2", name="s2").to(
        class_name="Step3", name="s3"
    ).to(class_name="Step4", name="s4").to(class_name="Step5", name="s5").respond()
    if error_handler:
        graph.error_handler(name="catch", class_name="Catch")
    return fn.to_mock_server(namespace=globals())


def worker(module: str) -> None:
    """Child mode: build both mock servers on ``module`` and serve timed runs (_harness.serve)."""
    api = importlib.import_module(module)
    servers = {engine: build_server(api, engine) for engine in ("sync", "async")}
    if module == "graphpack":
        servers.update({f"{engine}-handler": build_server(api, engine, error_handler=True)
                        for engine in ("sync", "async")})
    for engine, server in servers.items():
        got = server.test("/", BODY)
        if got != EXPECTED:
            raise SystemExit(f"{module} {engine}: the chain returned {got!r}, expected {EXPECTED!r}")
    cases = {engine: (lambda server=server: server.test("/", BODY)) for engine, server in servers.items()}
    if module == "graphpack":
        cases["bare"] = bare_chain()

    def done() -> None:
        for server in servers.values():
            server.wait_for_completion()

    serve(cases, warmup=300, done=done)


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


def _ratios(bare: Timing, gp: dict[str, Timing], peer: dict[str, Timing] | None, clock: str = "wall") -> list[str]:
    def us(t: Timing) -> float:
        return (t.cpu_us_per_event or t.us_per_event) if clock == "cpu" else t.us_per_event

    sync_vs_bare = us(gp["sync"]) / us(bare)
    lines = [ratio_line("graphpack sync / bare chain (µs/event)", sync_vs_bare,
                        f"<= {GOALS['sync_vs_bare']:g}x", sync_vs_bare <= GOALS["sync_vs_bare"])]
    if peer is None:
        for engine, goal in (("sync", GOALS["sync_vs_mlrun"]), ("async", GOALS["async_vs_mlrun"])):
            lines.append(ratio_line(f"graphpack {engine} vs MLRun {engine} (events/s)", None,
                                    f">= {goal:g}x; run with --peer mlrun to measure"))
        return lines
    for engine, goal in (("sync", GOALS["sync_vs_mlrun"]), ("async", GOALS["async_vs_mlrun"])):
        value = us(peer[engine]) / us(gp[engine])
        lines.append(ratio_line(f"graphpack {engine} vs MLRun {engine} (events/s)", value,
                                f">= {goal:g}x", value >= goal))
    return lines


def _markdown(bare: Timing, gp: dict[str, Timing], peer: dict[str, Timing] | None) -> str:
    rows = ["| case | µs/event | events/s |", "| --- | ---: | ---: |"]
    cases = [("bare Python 5-call chain", bare), ("graphpack sync", gp["sync"]),
             ("graphpack async", gp["async"])]
    if peer:
        cases += [("MLRun sync", peer["sync"]), ("MLRun async", peer["async"])]
    for label, t in cases:
        rows.append(f"| {label} | {t.us_per_event:.2f} | {t.events_per_s:,.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = peer_bench_parser(__doc__).parse_args(argv)
    events = {k: args.events or v for k, v in DEFAULT_EVENTS.items()}

    if args.worker:
        worker(args.worker)
        return 0

    print(f"engine bench: 5-step chain through the mock server, body {json.dumps(BODY)}, median of "
          f"{args.repeats} runs taken in turns, python {sys.version.split()[0]}", flush=True)
    timings = run_all(args.peer, events, args.repeats)
    bare = timings.pop("graphpack bare")
    bare.name = "bare Python chain"
    gp = {engine: timings[f"graphpack {engine}"] for engine in ("sync", "async")}
    walk = {engine: timings[f"graphpack {engine}"] for engine in ("sync-handler", "async-handler")}
    peer = None
    if args.peer:
        peer = {engine: timings[f"{PEER_LABELS[args.peer]} {engine}"] for engine in ("sync", "async")}
    print_table([bare, *gp.values(), *walk.values(), *(peer or {}).values()])
    if args.clock == "cpu":
        print("ratios below use process CPU time (--clock cpu), not wall-clock time")
    lines = _ratios(bare, gp, peer, args.clock)
    for line in lines:
        print(line)
    if args.markdown:
        print(_markdown(bare, gp, peer))
    if args.json:
        data = {"bare": bare.to_dict(), "graphpack": {k: t.to_dict() for k, t in {**gp, **walk}.items()}}
        if peer:
            data[args.peer] = {k: t.to_dict() for k, t in peer.items()}
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    if args.check and any(line.endswith("MISSED") for line in lines):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
