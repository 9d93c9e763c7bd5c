"""S3 queue benchmark: root -> child through an S3 queue on a moto server, at steady load.

The root (this process) pushes wire records at ``--rate`` events/s for ``--seconds``; the child (a
subprocess) runs graphpack's Consumer on the same queue. Prints events/s delivered end to end,
S3 requests per event (root + child, every request boto3 sent) and p50/p99 delivery latency
(push to handler). Goal: >= 10,000 events/s at <= 0.01 S3 requests/event.

    python bench/queues.py                         # starts its own moto server
    python bench/queues.py --rate 20000 --seconds 5
    python bench/queues.py --endpoint http://127.0.0.1:5000   # an S3 endpoint already running
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

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


def child(args: argparse.Namespace) -> None:
    """Consume ``--events`` records and report latencies and request counts."""
    from graphpack.queues import open_queue
    from graphpack.queues.consumer import Consumer

    queue = open_queue(args.url, shards=args.shards, endpoint_url=args.endpoint, poll_interval=args.poll)
    queue.check()
    latencies: list[float] = []
    first_last = [0.0, 0.0]
    done = threading.Event()

    def handler(record: dict, item) -> None:
        now = time.time()
        latencies.append(now - record["body"]["t"])
        if len(latencies) == 1:
            first_last[0] = now
        if len(latencies) >= args.events:
            first_last[1] = now
            done.set()

    consumer = Consumer(queue, "child", handler, batch_size=args.batch, poll_interval=args.poll)
    print("ready", flush=True)
    while not done.is_set():
        if consumer.run_once() == 0:
            time.sleep(args.poll)
    consumer.close()
    latencies.sort()
    emit_result({
        "received": len(latencies),
        "requests": queue.requests,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "first": first_last[0],
        "last": first_last[1],
    })
    queue.close()


def root(args: argparse.Namespace) -> dict:
    """Start the child, push at a steady rate, collect both sides' figures."""
    from graphpack.queues import open_queue

    s3 = __import__("boto3").client("s3", endpoint_url=args.endpoint)
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/queues/q1"
    events = int(args.rate * args.seconds)
    queue = open_queue(url, shards=args.shards, endpoint_url=args.endpoint, linger=args.linger)
    queue.check()
    cmd = [sys.executable, __file__, "--role", "child", "--url", url, "--endpoint", args.endpoint,
           "--events", str(events), "--shards", str(args.shards), "--batch", str(args.batch),
           "--poll", str(args.poll)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    checks = queue.requests
    tick = 0.005
    per_tick = args.rate * tick
    start = time.time()
    sent = 0
    while sent < events:
        due = min(events, int((time.time() - start) / tick * per_tick) + int(per_tick))
        if due > sent:
            now = time.time()
            queue.push([{"full_event_wrapper": True, "body": {"n": n, "t": now}, "id": str(n)}
                        for n in range(sent, due)])
            sent = due
        time.sleep(tick / 2)
    push_seconds = time.time() - start
    queue.flush()
    out, _ = proc.communicate(timeout=max(60, args.seconds * 6))
    result = read_result(out)
    root_requests = queue.requests - checks
    queue.close()
    total = result["requests"] + root_requests
    return {
        "events": events,
        "offered_rate": args.rate,
        "push_seconds": push_seconds,
        "events_per_s": events / (result["last"] - start),
        "requests": total,
        "root_requests": root_requests,
        "child_requests": result["requests"],
        "requests_per_event": total / events,
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "shards": args.shards,
        "linger_s": args.linger,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", default="root", choices=["root", "child"])
    parser.add_argument("--url")
    parser.add_argument("--endpoint")
    parser.add_argument("--rate", type=float, default=12_000, help="offered load, events/s")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2000, help="consumer batch size")
    parser.add_argument("--linger", type=float, default=0.1, help="producer flush interval, s")
    parser.add_argument("--poll", type=float, default=0.05, help="consumer poll interval, s")
    args = parser.parse_args()
    if args.role == "child":
        child(args)
        return
    if args.endpoint:
        result = root(args)
    else:
        from tests.plugins.s3 import moto_server

        with moto_server() as endpoint:
            args.endpoint = endpoint
            result = root(args)
    print(f"S3 queue on moto server, root -> child, {result['events']:,} events offered at "
          f"{result['offered_rate']:,.0f}/s, {result['shards']} shard(s), linger {result['linger_s']} s")
    print(f"  delivered end to end   {result['events_per_s']:12,.0f} events/s   "
          f"(goal >= {GOAL_EVENTS_PER_S:,}: {'MET' if result['events_per_s'] >= GOAL_EVENTS_PER_S else 'MISSED'})")
    print(f"  S3 requests per event  {result['requests_per_event']:12.4f}            "
          f"(goal <= {GOAL_REQUESTS_PER_EVENT}: "
          f"{'MET' if result['requests_per_event'] <= GOAL_REQUESTS_PER_EVENT else 'MISSED'}; "
          f"root {result['root_requests']}, child {result['child_requests']})")
    print(f"  delivery latency       p50 {result['p50_ms']:.1f} ms   p99 {result['p99_ms']:.1f} ms")
    print(ratio_line("events/s vs goal", result["events_per_s"] / GOAL_EVENTS_PER_S, ">= 1.0x",
                     result["events_per_s"] >= GOAL_EVENTS_PER_S))
    emit_result({"bench": "queues", **result})


if __name__ == "__main__":
    main()
