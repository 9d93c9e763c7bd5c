"""Faults on the local target with real processes (issue 13 point 3): a 2xx means stored.

A root (``tag`` responder -> queue) and a child (records every event's ``n``) are deployed with
``graphpack deploy``'s local target; a client posts events over HTTP from several threads, and a
fault hits while it does: the queue's disk fills up (a small tmpfs), its directory turns
read-only, the S3 endpoint goes away (a TCP proxy in front of the moto server stops), root
workers, the root supervisor and the child are SIGKILLed at random points. Every test checks
that every acknowledged (2xx) event reaches the child, that every event the child never got was
answered 503 (or not at all), and how many events the child saw twice.
"""
from __future__ import annotations

import errno
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

import graphpack
from graphpack import GraphpackError
from tests.plugins.net import free_port

ROOT_CODE = '''
class Tag:
    def do(self, body):
        body["tag"] = 1
        return body
'''

CHILD_CODE = '''
import os

class Record:
    def do(self, body):
        with open(os.environ["FAULTS_OUT"], "a") as f:
            f.write(f"{body['n']}\\n")
        return body
'''

CONSUMER_BATCH = 100  # the child's Consumer default batch size


@contextmanager
def deployed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, queue: str, workers: int = 2, engine: str = "sync",
             **queue_options: object) -> Iterator[graphpack.Project]:
    (tmp_path / "serving.py").write_text(ROOT_CODE)
    (tmp_path / "child.py").write_text(CHILD_CODE)
    monkeypatch.setenv("FAULTS_OUT", str(tmp_path / "child.txt"))
    project = graphpack.get_or_create_project("faults", str(tmp_path))
    fn = project.set_function("serving.py", name="root")
    graph = fn.set_topology("flow", engine=engine)
    graph.to(class_name="Tag", name="tag").respond().to(">>", "q1", path=queue, **queue_options) \
        .to(class_name="Record", name="record", function="child")
    fn.add_child_function("child", "child.py")
    fn.with_http(workers=workers, port=free_port())
    project.deploy_function("root")
    try:
        yield project
    finally:
        try:
            project.down(purge=False)
        except GraphpackError:
            pass


def url_of(project: graphpack.Project) -> str:
    return project.deployer().status()["root"]["url"]


def send(url: str, ns: Iterable[int], statuses: dict, threads: int = 8, retry: bool = False,
         stop_after: float = 120.0) -> None:
    """POST ``{"n": n}`` for each n from ``threads`` keep-alive connections; ``statuses[n]`` gets
    the last answer's (status, headers, body), or None when there was none. With ``retry``,
    an unacknowledged event is sent again until it is acknowledged (as a client honouring
    ``Retry-After``)."""
    todo = list(ns)
    lock = threading.Lock()
    deadline = time.monotonic() + stop_after

    def work() -> None:
        with httpx.Client(timeout=30) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    n = todo.pop()
                while True:
                    try:
                        r = client.post(url, json={"n": n})
                        statuses[n] = (r.status_code, dict(r.headers), r.text)
                    except httpx.HTTPError:
                        statuses[n] = None
                    if not retry or (statuses[n] and statuses[n][0] == 200) or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def received(out: Path) -> Counter:
    if not out.exists():
        return Counter()
    return Counter(int(line) for line in out.read_text().split())


def wait_received(out: Path, wanted: set[int], timeout: float = 60.0) -> Counter:
    deadline = time.monotonic() + timeout
    while True:
        seen = received(out)
        if wanted <= set(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def check(statuses: dict, out: Path, settle: float = 60.0) -> tuple[set[int], Counter]:
    """0 acknowledged events lost; an event the child never got was answered 503 (or not at all)."""
    acked = {n for n, s in statuses.items() if s and s[0] == 200}
    seen = wait_received(out, acked, settle)
    lost = acked - set(seen)
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {sorted(lost)[:10]}"
    time.sleep(0.5)  # anything still on its way to the child
    seen = received(out)
    unstored = set(statuses) - set(seen)
    wrong = {n: statuses[n][0] for n in unstored if statuses[n] is not None and statuses[n][0] != 503}
    assert not wrong, f"events not stored were answered other than 503: {dict(list(wrong.items())[:10])}"
    return acked, seen


def check_503(statuses: dict, must_name: str) -> int:
    failed = [s for s in statuses.values() if s and s[0] != 200]
    for status, headers, body in failed:
        assert status == 503, (status, body)
        assert headers.get("retry-after") == "1", headers
        assert must_name in body and "q1" in body, body
    return len(failed)


# -- disk full and read-only: a small tmpfs under the queue ------------------------------------
@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"needs a tmpfs mount (root and mount(8)); mount said: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk: Path) -> Path:
    """Take every free byte of the tmpfs."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    for size in (4096, 512, 1):  # the last partial chunks
        with open(filler, "ab", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return filler


def remount(disk: Path, mode: str) -> None:
    """Remount the tmpfs; a moment's retry while a write happens to be open (EBUSY)."""
    for _ in range(100):
        done = subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], capture_output=True, text=True)
        if done.returncode == 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"cannot remount {disk} {mode}: {done.stderr}")


@pytest.mark.slow
@pytest.mark.parametrize("fault,engine", [("disk-full", "sync"), ("disk-full", "async"), ("read-only", "sync")])
def test_storage_fault_answers_503_and_loses_nothing_acknowledged(fault, engine, tmp_path, monkeypatch):
    with tmpfs(tmp_path / "disk", "8m") as disk, \
            deployed(tmp_path, monkeypatch, str(disk / "q"), engine=engine) as project:
        url, out, statuses = url_of(project), tmp_path / "child.txt", {}
        send(url, range(0, 300), statuses)
        assert all(s and s[0] == 200 for s in statuses.values()), "before the fault"
        if fault == "disk-full":
            filler = fill(disk)
        else:
            remount(disk, "ro")
        during: dict = {}
        send(url, range(300, 600), during)
        time.sleep(1.5)  # the child meets the fault too (its checkpoint), for a while
        if fault == "disk-full":
            filler.unlink()
        else:
            remount(disk, "rw")
        refused = check_503(during, str(disk / "q"))
        assert refused >= 250, f"only {refused} of 300 events refused while the queue could not be written"
        statuses.update(during)
        send(url, range(600, 900), statuses)
        assert all(statuses[n] and statuses[n][0] == 200 for n in range(600, 900)), "after recovery"
        acked, seen = check(statuses, out)
        duplicates = sum(seen.values()) - len(seen)
        print(f"{fault}: {len(acked)} acknowledged, {refused} answered 503, {len(seen)} stored, "
              f"{duplicates} duplicates")
        assert duplicates <= CONSUMER_BATCH  # the failing checkpoint was retried, the batch not redelivered
        log = Path(project.deployer().status()["child"]["log"]).read_text()
        delays = [float(line.rsplit("retrying in ", 1)[1].split()[0]) for line in log.splitlines()
                  if "retrying in" in line]
        for before, after in zip(delays, delays[1:]):  # the pause doubles (up to 10 s) until a round succeeds
            assert after in (round(min(before * 2, 10.0), 1), 0.1), delays


# -- S3 endpoint down: a TCP proxy in front of the moto server ----------------------------------
class Proxy:
    """127.0.0.1:<port> -> the target port; ``down()`` refuses and cuts every connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.conns: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.lock = threading.Lock()
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            conns, self.conns = self.conns, []
        if listener is not None:
            listener.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.mark.slow
def test_s3_endpoint_down_answers_503_and_recovers(tmp_path, monkeypatch, s3_server, s3_bucket):
    proxy = Proxy(int(s3_server.rsplit(":", 1)[1]))
    endpoint = f"http://127.0.0.1:{proxy.port}"
    queue = f"s3://{s3_bucket}/queues/q1"
    try:
        with deployed(tmp_path, monkeypatch, queue, endpoint_url=endpoint, poll_interval=0.05) as project:
            url, out, statuses = url_of(project), tmp_path / "child.txt", {}
            send(url, range(0, 200), statuses)
            assert all(s and s[0] == 200 for s in statuses.values()), "before the outage"
            proxy.down()
            during: dict = {}
            send(url, range(200, 216), during)
            refused = check_503(during, endpoint)
            assert refused == 16, f"{16 - refused} events acknowledged while S3 was unreachable"
            proxy.up()
            statuses.update(during)
            send(url, range(216, 416), statuses)
            assert all(statuses[n] and statuses[n][0] == 200 for n in range(216, 416)), "after recovery"
            acked, seen = check(statuses, out)
            assert acked == set(range(0, 200)) | set(range(216, 416))
            print(f"S3 down: {len(acked)} acknowledged, {refused} answered 503, {len(seen)} stored")
    finally:
        proxy.down()


# -- SIGKILL at random points ---------------------------------------------------------------
def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


@pytest.mark.slow
def test_sigkill_of_root_workers_supervisor_and_child_loses_nothing_acknowledged(tmp_path, monkeypatch):
    events, threads = 10_000, 8
    rng = random.Random(13)
    with deployed(tmp_path, monkeypatch, str(tmp_path / "q")) as project:
        url, out, statuses = url_of(project), tmp_path / "child.txt", {}
        sender = threading.Thread(target=send, args=(url, range(events), statuses),
                                  kwargs={"threads": threads, "retry": True, "stop_after": 240})
        sender.start()
        kills: list[str] = []
        for target in ["root worker", "child", "root supervisor", "root worker", "child", "root supervisor"]:
            time.sleep(rng.uniform(0.3, 1.5))
            if not sender.is_alive():
                break
            status = project.deployer().status()
            if target == "child":
                pid = status["child"]["pid"]
            elif target == "root supervisor":
                pid = status["root"]["pid"]
            else:
                workers = children(status["root"]["pid"])
                if not workers:
                    continue
                pid = rng.choice(workers)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            kills.append(target)
        sender.join(300)
        assert not sender.is_alive()
        assert len(statuses) == events
        acked, seen = check(statuses, out, settle=120)
        assert len(acked) == events, f"{events - len(acked)} events never acknowledged (retried for 240 s)"
        duplicates = sum(seen.values()) - len(seen)
        root_kills = sum(1 for k in kills if k.startswith("root"))
        child_kills = kills.count("child")
        bound = root_kills * threads + child_kills * CONSUMER_BATCH
        print(f"SIGKILL: {events} events, kills {kills}, {duplicates} duplicates (bound {bound})")
        assert len(kills) >= 4, kills
        assert duplicates <= bound, f"{duplicates} duplicates for kills {kills}"
