"""Image build benchmark: the daemonless OCI builder vs `docker build` of the same Dockerfile,
in the same run, on the same build context.

Cases (median of --repeats runs, the two builders taking turns run by run; the docker side never
pushes, the daemonless side pushes, and its build-only time is printed too):
  cold       a new project: daemonless = build + push to an empty registry with the base image
             cached locally and no cached requirements layer; docker = `docker build --no-cache`
             with the same base already in the engine (no push).
  code-only  one line of the user's code changed: daemonless = build + push; docker = `docker build`
             with its layer cache.
Goals: code-only rebuild <= 0.3 s and >= 10x faster than docker build; cold build <= 5 s.

    python bench/images.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _harness import emit_result, ratio_line  # noqa: E402

# bench/ holds modules named like the stdlib (http.py): keep it off the path from here on
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

GOAL_REBUILD_S = 0.3
GOAL_REBUILD_RATIO = 10.0
GOAL_COLD_S = 5.0

CODE = '''
class Echo:
    def __init__(self, context=None, name=None):
        self.context = context

    def do(self, body):
        return {"echo": body, "version": VERSION}
'''


def make_context(directory: Path, wheels: Path, version: int = 0) -> Path:
    import graphpack
    from graphpack.packager import build_project

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "serving.py").write_text(f"VERSION = {version}\n" + CODE)
    project = graphpack.get_or_create_project("bench", str(directory))
    fn = project.set_function(str(directory / "serving.py"), name="echo")
    fn.set_topology("flow", engine="sync").to(class_name="Echo", name="echo").respond()
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        build_project(project, directory / "build", target="docker", wheels=str(wheels))
    finally:
        os.chdir(cwd)
    return directory / "build" / "echo"


def bump(context: Path, version: int) -> None:
    path = context / "serving.py"
    text = path.read_text().split("\n", 1)[1]
    path.write_text(f"VERSION = {version}\n{text}")


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from graphpack.packager.images import baseimage
    from graphpack.packager.images.daemonless import OCIBuilder
    from graphpack.packager.images.docker_engine import DockerBuilder
    from graphpack.packager.images.oci import BlobStore
    from graphpack.packager.images.testing import run_registry
    from graphpack.packager.images.wheels import download_wheels
    from graphpack.packager.requirements import processor_requirements

    base = baseimage.build_base(print)
    wheels = download_wheels(processor_requirements())
    docker = DockerBuilder(base=base, push=False)
    docker.base_tag()  # the base is in the engine before anything is timed ("cached base")
    work = Path(tempfile.mkdtemp(prefix="graphpack-bench-images-"))
    cold_oci, cold_docker, hot_oci, hot_docker, hot_local = [], [], [], [], []
    with run_registry() as registry:
        for run in range(args.repeats):
            # cold: a fresh project, an empty repository, no cached requirements layer
            context = make_context(work / f"cold-{run}", wheels)
            store = BlobStore(work / f"store-{run}")
            os.environ["GRAPHPACK_CACHE"] = str(work / f"cache-{run}")   # requirements layer index
            with registry.client() as client:
                oci = OCIBuilder(base=base, registry=client, store=store)
                tag = f"{registry.host}/bench/{uuid.uuid4().hex[:8]}:cold"
                cold_oci.append(timed(lambda: oci.build(context, tag)))
            os.environ.pop("GRAPHPACK_CACHE")
            docker.nocache = True
            cold_docker.append(timed(lambda: docker.build(context, f"graphpack-bench/echo:cold{run}")))
            docker.nocache = False
            # code-only: change one line, rebuild with each builder's caches warm
            with registry.client() as client:
                oci = OCIBuilder(base=base, registry=client, store=store)
                tag = f"{registry.host}/bench/hot:latest"
                oci.build(context, tag)
                docker.build(context, "graphpack-bench/echo:hot")
                bump(context, run + 1)
                hot_oci.append(timed(lambda: oci.build(context, tag)))
                bump(context, run + 101)
                hot_local.append(timed(lambda: oci.assemble(context)))   # like docker build: no push
                hot_docker.append(timed(lambda: docker.build(context, "graphpack-bench/echo:hot")))
            print(f"run {run + 1}: cold oci {cold_oci[-1]:.2f}s docker {cold_docker[-1]:.2f}s | "
                  f"code-only oci {hot_oci[-1]:.3f}s (no push {hot_local[-1]:.3f}s) docker {hot_docker[-1]:.2f}s",
                  flush=True)
    med = statistics.median
    result = {"cold_oci_s": med(cold_oci), "cold_docker_s": med(cold_docker),
              "rebuild_oci_s": med(hot_oci), "rebuild_docker_s": med(hot_docker),
              "rebuild_oci_nopush_s": med(hot_local)}
    print(f"cold build      daemonless (build+push) {result['cold_oci_s']:7.3f}s   docker build --no-cache "
          f"{result['cold_docker_s']:7.3f}s")
    print(f"code-only build daemonless (build+push) {result['rebuild_oci_s']:7.3f}s   docker build (cached) "
          f"{result['rebuild_docker_s']:7.3f}s")
    cold_ratio = result["cold_docker_s"] / result["cold_oci_s"]
    hot_ratio = result["rebuild_docker_s"] / result["rebuild_oci_s"]
    print(f"code-only build daemonless, no push      {result['rebuild_oci_nopush_s']:7.3f}s")
    print(ratio_line("cold docker/daemonless", cold_ratio))
    print(ratio_line("code-only docker/daemonless (daemonless includes the push)", hot_ratio,
                     f">= {GOAL_REBUILD_RATIO:g}x", hot_ratio >= GOAL_REBUILD_RATIO))
    print(ratio_line("code-only docker/daemonless, neither pushes",
                     result["rebuild_docker_s"] / result["rebuild_oci_nopush_s"]))
    print(f"goal code-only rebuild <= {GOAL_REBUILD_S}s: {result['rebuild_oci_s']:.3f}s  "
          + ("MET" if result["rebuild_oci_s"] <= GOAL_REBUILD_S else "MISSED"))
    print(f"goal cold build with cached base <= {GOAL_COLD_S}s: {result['cold_oci_s']:.2f}s  "
          + ("MET" if result["cold_oci_s"] <= GOAL_COLD_S else "MISSED"))
    emit_result({**result, "cold_ratio": cold_ratio, "rebuild_ratio": hot_ratio})
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    for tag in [f"graphpack-bench/echo:cold{run}" for run in range(args.repeats)] + ["graphpack-bench/echo:hot"]:
        try:
            docker.client.images.remove(tag)
        except Exception:  # noqa: BLE001 - cleanup only
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
