"""Queue benchmark: root -> child through a file queue and an S3 queue (moto server), durable
acknowledgement (group commit) side by side with the previous acknowledge-early mode, same run.

The root (this process) is a real root function's GraphServer (``tag`` responder -> queue ->
child step in another function) driven the way ``graphpack serve`` drives it: one worker thread
runs events back to back with ``run_deferred`` and at most ``--concurrency`` events unanswered
(as many HTTP connections). An event is acknowledged

- ``durable``: once its queue record is durable (fsync / completed PUT), the rule since issue 13;
- ``early``: as soon as the graph returned (the record may still be in memory), the old mode;
- ``fsync-each`` (file only): the old file queue, one blocking write + fsync per event.

The child (a subprocess) runs graphpack's Consumer on the queue and reports when the last event
arrived. Each case first runs 1,000 events unmeasured (connections, a Kafka producer's id). Printed
per case: acknowledged events/s at the root, delivered events/s root -> child, acknowledgement
latency p50/p99, for S3 the requests per event (root + child), and the CPU time per event of the
root, the child and (when this run started it, or --broker-pid names it) the Kafka broker: their
sum says how many events/s the machine's cores allow at most, whatever the load of the moment.
Goals (issue 13): file >= 10,000 acknowledged events/s; S3 >= 10,000 events/s at <= 0.01
requests/event.

    python bench/queues.py                              # both backends, starts its own moto server
    python bench/queues.py --backend file --events 40000
    python bench/queues.py --backend s3 --endpoint http://127.0.0.1:5000
    python bench/queues.py --backend kafka              # starts its own broker; file durable beside it
    python bench/queues.py --backend all --kafka 127.0.0.1:9092
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
# bench/ holds modules named like stdlib ones (http.py): keep it off sys.path, load _harness by path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))
_spec = importlib.util.spec_from_file_location("_harness", BENCH / "_harness.py")
_harness = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["_harness"] = _harness
_spec.loader.exec_module(_harness)  # type: ignore[union-attr]
emit_result, ratio_line, read_result = _harness.emit_result, _harness.ratio_line, _harness.read_result

GOAL_EVENTS_PER_S = 10_000
GOAL_REQUESTS_PER_EVENT = 0.01
WARM_UP = 1_000  # events each case runs before it is measured (the child gets them first)
GOAL_KAFKA_EVENTS_PER_S = 50_000  # issue 19, root -> child with at-least-once delivery


def child(args: argparse.Namespace) -> None:
    """Consume ``--events`` records; report when the last arrived and the S3 requests sent."""
    from graphpack.queues import open_queue
    from graphpack.queues.consumer import Consumer

    options = json.loads(args.options)
    queue = open_queue(args.url, **options)
    queue.check()
    received = [0, 0.0]
    done = threading.Event()

    def handler(record: dict, item: object) -> None:
        received[0] += 1
        if received[0] >= args.events:
            received[1] = time.time()
            done.set()

    commits = [0]
    commit = queue.commit

    def counted_commit(shard: int, group: str, offset: int) -> None:
        commits[0] += 1
        commit(shard, group, offset)

    queue.commit = counted_commit  # type: ignore[method-assign]
    consumer = Consumer(queue, "child", handler, batch_size=args.batch, poll_interval=args.poll,
                        max_poll_interval=args.poll)
    print("ready", flush=True)
    cpu = cpu_seconds()
    while not done.is_set():
        if consumer.run_once() == 0:
            time.sleep(args.poll)
    consumer.close()
    emit_result({"received": received[0], "last": received[1], "requests": getattr(queue, "requests", 0),
                 "cpu_s": cpu_seconds() - cpu, "commits": commits[0]})
    queue.close()


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, every thread) of this process, or of process ``pid`` (/proc)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def warm_broker(bootstrap: str, records: int = 100_000) -> None:
    """Produce and consume ``records`` through a fresh broker first: its JIT compiles the paths the
    cases use, so they measure a broker in its steady state, as a long-running one is."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for n in range(records):
        producer.produce("bench-warm-up", b'{"n":%d}' % n, partition=0)
        if n % 1000 == 999:
            producer.flush()
    producer.flush()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-warm-up", "enable.auto.commit": False})
    consumer.assign([TopicPartition("bench-warm-up", 0, 0)])
    seen = 0
    while seen < records:
        batch = consumer.consume(1000, 5)
        if not batch:
            break
        seen += len(batch)
        consumer.commit(message=batch[-1], asynchronous=False)
    consumer.close()


class Tag:
    def do(self, body: dict) -> dict:
        body["tag"] = 1
        return body


def root_server(url: str, options: dict):  # type: ignore[no-untyped-def]
    import graphpack

    fn = graphpack.new_function("root")
    graph = fn.set_topology("flow", engine="sync")
    graph.to(class_name=Tag, name="tag").respond().to(">>", "q1", path=url, **options) \
        .to(class_name=Tag, name="child-step", function="child")
    fn.add_child_function("child", __file__)
    return fn.to_mock_server(current_function="")


def drive(server, mode: str, events: int, concurrency: int) -> dict:  # type: ignore[no-untyped-def]
    """Run ``events`` events with at most ``concurrency`` unacknowledged; ack latencies in s."""
    from graphpack.runtime.event import Event

    latencies: list[float] = []
    cond = threading.Condition()
    in_flight = [0]

    def acked(started: float) -> None:
        now = time.perf_counter()
        with cond:
            latencies.append(now - started)
            in_flight[0] -= 1
            cond.notify()

    start = time.time()
    for n in range(events):
        with cond:
            while in_flight[0] >= concurrency:
                cond.wait()
            in_flight[0] += 1
        started = time.perf_counter()
        event = Event({"n": n, "t": time.time()}, id=str(n))
        if mode == "fsync-each":
            response = server.run(event)  # blocks: one write + fsync per event
            writes = None
        else:
            response, writes = server.run_deferred(event)
        if response.status_code != 200:
            raise SystemExit(f"event {n} answered {response.status_code}: {response.body}")
        if writes is None or mode == "early":
            acked(started)
        else:
            writes.when_done(lambda failure, s=started: acked(s))
    with cond:
        while in_flight[0]:
            cond.wait()
    elapsed = time.time() - start
    latencies.sort()
    return {"start": start, "ack_seconds": elapsed, "acked_per_s": events / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000}


def _writes(server: Any) -> int:
    """Durable writes the root's queue made so far (group-commit batches)."""
    queue = next(n.obj._queue for n in server._nodes if getattr(n.obj, "_queue", None) is not None)
    return queue._committer.batches if queue._committer is not None else 0


def run_case(args: argparse.Namespace, backend: str, mode: str, workdir: Path) -> dict:
    concurrency = args.concurrency or (256 if backend == "file" else 1024)
    options: dict = {}
    if backend == "file":
        url = str(workdir / f"q-{mode}-{uuid.uuid4().hex[:6]}")
        if mode == "fsync-each":
            options["linger"] = 0
    elif backend == "kafka":
        url = f"kafka://{args.kafka}/bench-{mode}-{uuid.uuid4().hex[:6]}"
        if args.linger is not None:
            options["linger"] = args.linger
    else:
        s3 = __import__("boto3").client("s3", endpoint_url=args.endpoint)
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/queues/q1"
        options = {"endpoint_url": args.endpoint}
        if args.linger is not None:
            options["linger"] = args.linger
    if backend == "file" and args.linger is not None and mode != "fsync-each":
        options["linger"] = args.linger
    events = args.events if mode != "fsync-each" else min(args.events, 2000)
    child_options = {k: v for k, v in options.items() if k != "linger"}
    if backend in ("s3", "kafka"):
        child_options["poll_interval"] = args.poll
    from graphpack.queues import check_queue_url

    check_queue_url(url, **child_options)
    cmd = [sys.executable, __file__, "--role", "child", "--url", url, "--options", json.dumps(child_options),
           "--events", str(events + WARM_UP), "--batch", str(args.batch), "--poll", str(args.poll)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        server = root_server(url, options)
        drive(server, mode, WARM_UP, concurrency)  # connections, a Kafka producer's id (~0.5 s), caches
        warm_writes = _writes(server)
        cpu = cpu_seconds()
        broker_cpu = cpu_seconds(args.broker_pid) if backend == "kafka" and args.broker_pid else None
        result = drive(server, mode, events, concurrency)
        queue = next(n.obj._queue for n in server._nodes if getattr(n.obj, "_queue", None) is not None)
        root_requests = getattr(queue, "requests", 0)
        batches = _writes(server) - warm_writes  # the measured events' writes, not the warm-up's
        server.wait_for_completion()
        root_cpu = cpu_seconds() - cpu
        out, _ = proc.communicate(timeout=max(120, events / 500))
        if broker_cpu is not None:
            broker_cpu = cpu_seconds(args.broker_pid) - broker_cpu
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    child_result = read_result(out)
    requests = root_requests + child_result["requests"]
    return {
        "backend": backend, "mode": mode, "events": events, "concurrency": concurrency,
        "linger_s": queue.linger, "acked_per_s": result["acked_per_s"],
        "delivered_per_s": events / (child_result["last"] - result["start"]),
        "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
        "writes": batches, "records_per_write": events / batches if batches else 1.0,
        "requests": requests, "requests_per_event": requests / (events + WARM_UP) if backend == "s3" else None,  # both count the warm-up
        "events_per_commit": (events + WARM_UP) / max(child_result["commits"], 1),
        "root_cpu_us": root_cpu / events * 1e6, "child_cpu_us": child_result["cpu_s"] / events * 1e6,
        "broker_cpu_us": broker_cpu / events * 1e6 if broker_cpu is not None else None,
    }


def report(case: dict) -> str:
    line = (f"  {case['backend']:5} {case['mode']:10} <= {case['concurrency']:4} in flight: acknowledged {case['acked_per_s']:9,.0f}/s   "
            f"root -> child {case['delivered_per_s']:9,.0f}/s   ack p50 {case['p50_ms']:6.2f} ms "
            f"p99 {case['p99_ms']:7.2f} ms   {case['records_per_write']:7.1f} events/write   "
            f"{case['events_per_commit']:6.1f} events/commit")
    if case["requests_per_event"] is not None:
        line += f"   {case['requests_per_event']:.4f} S3 requests/event"
    line += f"   CPU us/event: root {case['root_cpu_us']:.1f} child {case['child_cpu_us']:.1f}"
    if case["broker_cpu_us"] is not None:
        line += f" broker {case['broker_cpu_us']:.1f}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", default="root", choices=["root", "child"])
    parser.add_argument("--url")
    parser.add_argument("--options", default="{}")
    parser.add_argument("--backend", choices=["file", "s3", "both", "kafka", "all"], default="both",
                        help="both: file and S3; kafka: Kafka with the file queue's durable case beside it; "
                             "all: file, S3 and Kafka")
    parser.add_argument("--endpoint", help="an S3 endpoint already running (default: start moto)")
    parser.add_argument("--kafka", help="a Kafka broker already running, host:port (default: start one from "
                                        "the jars tests/plugins/kafka_broker.py resolves)")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=None,
                        help="unacknowledged events at most (default: file 256, S3 1024: an S3 PUT takes "
                             "tens of ms, so durable S3 throughput needs more events in flight)")
    parser.add_argument("--batch", type=int, default=2000, help="consumer batch size")
    parser.add_argument("--linger", type=float, default=None, help="group-commit window, s (queue default)")
    parser.add_argument("--poll", type=float, default=0.02, help="consumer poll interval, s")
    parser.add_argument("--dir", help="directory for file queues (default: a temporary one)")
    parser.add_argument("--broker-pid", type=int, help="with --kafka: the broker's process, to count its CPU time")
    args = parser.parse_args()
    if args.role == "child":
        child(args)
        return
    sys.setswitchinterval(0.001)  # as graphpack serve: the writer thread gets the GIL back quickly
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="graphpack-bench-queues-"))
    cases = []
    try:
        if args.backend in ("file", "both", "all"):
            for mode in ("durable", "early", "fsync-each"):
                cases.append(run_case(args, "file", mode, workdir))
        elif args.backend == "kafka":  # the peer in the same run
            cases.append(run_case(args, "file", "durable", workdir))
        if args.backend in ("kafka", "all"):
            if args.kafka:
                cases += [run_case(args, "kafka", mode, workdir) for mode in ("durable", "early")]
            else:
                from tests.plugins.kafka_broker import run_broker

                with run_broker() as broker:
                    args.kafka, args.broker_pid = broker.bootstrap, broker.proc.pid if broker.proc else None
                    warm_broker(broker.bootstrap)
                    cases += [run_case(args, "kafka", mode, workdir) for mode in ("durable", "early")]
        if args.backend in ("s3", "both", "all"):
            if args.endpoint:
                cases += [run_case(args, "s3", mode, workdir) for mode in ("durable", "early")]
            else:
                from tests.plugins.s3 import moto_server

                with moto_server() as endpoint:
                    args.endpoint = endpoint
                    cases += [run_case(args, "s3", mode, workdir) for mode in ("durable", "early")]
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"root -> child, {args.events:,} events per case (fsync-each: 2,000), load average {load:.2f}")
    for case in cases:
        print(report(case))
    kafka = next((c for c in cases if c["backend"] == "kafka" and c["mode"] == "durable"), None)
    peer = next((c for c in cases if c["backend"] == "file" and c["mode"] == "durable"), None)
    if kafka is not None and peer is not None:
        print(ratio_line("kafka vs file queue: durable root -> child events/s",
                         kafka["delivered_per_s"] / peer["delivered_per_s"]))
    if kafka is not None:
        print(ratio_line("kafka: durable root -> child events/s vs goal",
                         kafka["delivered_per_s"] / GOAL_KAFKA_EVENTS_PER_S, f">= {GOAL_KAFKA_EVENTS_PER_S:,}/s",
                         kafka["delivered_per_s"] >= GOAL_KAFKA_EVENTS_PER_S))
    if kafka is not None and kafka["broker_cpu_us"] is not None:  # what the machine allows
        total = kafka["root_cpu_us"] + kafka["child_cpu_us"] + kafka["broker_cpu_us"]
        cores = os.cpu_count() or 1
        print(f"kafka durable: {total:.1f} CPU us/event (root {kafka['root_cpu_us']:.1f}, child "
              f"{kafka['child_cpu_us']:.1f}, broker {kafka['broker_cpu_us']:.1f}): {cores} idle cores would "
              f"allow at most {cores * 1e6 / total:,.0f} events/s root -> child")
    for backend in ("file", "s3", "kafka"):
        durable = next((c for c in cases if c["backend"] == backend and c["mode"] == "durable"), None)
        early = next((c for c in cases if c["backend"] == backend and c["mode"] == "early"), None)
        if durable is None or early is None:
            continue
        print(ratio_line(f"{backend}: durable vs early, acknowledged/s", durable["acked_per_s"] / early["acked_per_s"]))
        ok = durable["acked_per_s"] >= GOAL_EVENTS_PER_S and durable["delivered_per_s"] >= GOAL_EVENTS_PER_S
        goal = f">= {GOAL_EVENTS_PER_S:,}/s"
        if backend == "s3":
            ok = ok and durable["requests_per_event"] <= GOAL_REQUESTS_PER_EVENT
            goal += f" at <= {GOAL_REQUESTS_PER_EVENT} requests/event"
        print(ratio_line(f"{backend}: durable events/s vs goal", durable["acked_per_s"] / GOAL_EVENTS_PER_S,
                         goal, ok))
    emit_result({"bench": "queues", "load": load, "cases": cases})


if __name__ == "__main__":
    main()
