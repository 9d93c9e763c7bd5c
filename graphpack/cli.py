"""The ``graphpack`` command.

One vocabulary for every command that reads a project: ``-f/--file`` (a project directory,
graphpack.yaml, a .py module or a notebook; default ".") and ``-C DIR`` (run as if started in
DIR: -f, -o and relative paths resolve there). Function names may be project functions or child
functions. ``--json`` prints data as JSON. A mistake is one line starting with ``error:``: exit 2
for a usage error (unknown flag, bad value), exit 1 for anything else.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

import click

from . import __version__
from .errors import GraphpackError

USAGE_EXIT = 2


class _Group(click.Group):
    """Every error is one line: usage errors exit 2, GraphpackError (a user mistake) exits 1."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:  # plain `graphpack`
                click.echo(exc.ctx.get_help())
                sys.exit(0)
            command = exc.ctx.command_path if exc.ctx is not None else "graphpack"
            message = (exc.format_message().splitlines() or ["usage error"])[0].rstrip(".")
            click.echo(f"error: {message[0].lower() + message[1:]} (see `{command} --help`)", err=True)
            sys.exit(USAGE_EXIT)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GraphpackError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="graphpack")
def main() -> None:
    """Build, deploy and invoke serving graphs as Nuclio / Knative functions.

    Every command that reads a project takes -f/--file (project directory, graphpack.yaml,
    module.py or notebook.ipynb; default: the current directory) and -C DIR (run as if started
    in DIR). Errors are one line starting with "error:"; exit status 2 means a usage error
    (unknown flag, bad value), 1 any other error.
    """


def _example(text: str) -> str:
    return "\b\nExample:\n" + "\n".join(f"  {line}" for line in text.strip().splitlines())


def _project_options(command: Callable) -> Callable:
    command = click.option("-C", "--directory", "directory", default=".", show_default=True,
                           type=click.Path(file_okay=False),
                           help="run as if graphpack was started in this directory")(command)
    return click.option("-f", "--file", "source", default=".", show_default=True,
                        help="project directory, graphpack.yaml, or a .py/.ipynb that defines the project")(command)


def _json_option(command: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="print the result as JSON")(command)


def _target_option(default: str = "local") -> Callable:
    return click.option("--target", type=click.Choice(["local", "docker", "nuclio", "knative"]), default=default,
                        show_default=True, help="deploy target")


def _at(directory: str, path: str) -> str:
    """``path`` as seen from ``-C directory``."""
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(directory, path))


def _load(directory: str, source: str) -> Any:
    from .source import load_source

    return load_source(_at(directory, source))


def _state_dir(directory: str, source: str) -> str:
    """The project directory (where deploy keeps its state) named by -C and -f."""
    path = _at(directory, source)
    if not os.path.exists(path):
        raise GraphpackError(f"project source {path!r} does not exist")
    return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))


def _progress(as_json: bool) -> Any:
    return (lambda message: None) if as_json else (lambda message: click.echo(f"... {message}", err=True))


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _deployer(target: str, directory: str, **options: Any) -> Any:
    from .packager.deploy import get_deployer

    return get_deployer(target, directory, **options)


# -- project commands ---------------------------------------------------------------------------
@main.command("build", epilog=_example("""
graphpack build                          # every function for Nuclio, into ./build
graphpack build --target local --function auditor --json
graphpack build --image --registry 127.0.0.1:5000"""))
@_project_options
@click.option("-o", "--output", default="build", show_default=True, help="output directory")
@click.option("--function", "functions", multiple=True,
              help="function or child function to build (default: all); repeatable")
@click.option("--target", type=click.Choice(["local", "docker", "nuclio", "knative"]), default="nuclio",
              show_default=True, help="where the functions will run (the build contexts differ by target)")
@click.option("--wheels", type=click.Path(file_okay=False), help="directory of wheels to put in each context")
@_json_option
@click.option("--image", is_flag=True, help="also build an image per function (wheels downloaded on the host)")
@click.option("--builder", type=click.Choice(["oci", "docker"]), default="oci", show_default=True,
              help="oci: daemonless and reproducible; docker: the Docker engine")
@click.option("--registry", help="registry host[:port] to push to (default: $GRAPHPACK_REGISTRY)")
@click.option("--push/--no-push", default=True, show_default=True, help="push the images to the registry")
@click.option("--tag", help="image tag (default: a digest of the build context)")
def build_command(source: str, directory: str, output: str, functions: tuple, target: str, wheels: str | None,
                  as_json: bool, image: bool, builder: str, registry: str | None, push: bool,
                  tag: str | None) -> None:
    """Write a build context per function (function.yaml, entry module, code, spec, Dockerfile).

    The default target is nuclio; --target local|docker|knative writes the contexts for that target.
    """
    from .packager import build_project

    project = _load(directory, source)
    result = build_project(project, _at(directory, output), list(functions) or None, target=target,
                           wheels=_at(directory, wheels) if wheels else None)
    if image:
        from .packager.images.pipeline import build_images

        result["images"] = build_images(result, project.name, builder, registry, push, tag, _progress(as_json))
    if as_json:
        _echo_json(result)
        return
    for item in result["functions"]:
        click.echo(f"{item['path']}  ({item['name']})")
    for item in result.get("images", []):
        click.echo(f"{item['pinned'] if item['pushed'] else item['image'] + '  ' + item['digest']}")


@main.command("graph", epilog=_example("""
graphpack graph -o shop.svg
graphpack graph --function auditor --format dot -o auditor.dot"""))
@_project_options
@click.option("--function", "function", help="function or child function to draw (default: the first function)")
@click.option("--format", "fmt", type=click.Choice(["svg", "png", "pdf", "dot"]), default="svg", show_default=True)
@click.option("-o", "--output", help="output file (default: <function>.<format>)")
@_json_option
def graph_command(source: str, directory: str, function: str | None, fmt: str, output: str | None,
                  as_json: bool) -> None:
    """Draw a function's graph (graphviz); a child function draws its root's graph, where the
    child's steps are marked with its name."""
    from .graph.plot import plot_graph
    from .packager import find_function

    project = _load(directory, source)
    if not project.functions:
        raise GraphpackError(f"project {project.name!r} has no functions")
    name = function or next(iter(project.functions))
    root, _ = find_function(project, name)
    graph = project.functions[root].spec.graph
    target = _at(directory, output or f"{name}.{fmt}")
    if fmt == "dot":
        with open(target, "w") as handle:
            handle.write(plot_graph(graph).source)
    else:
        plot_graph(graph, filename=target, format=fmt)
    if as_json:
        _echo_json({"function": name, "root": root, "format": fmt, "file": target})
    else:
        click.echo(target)


@main.command("deploy", epilog=_example("""
graphpack deploy                                   # local processes
graphpack deploy --function auditor                # (re)start one child function
graphpack deploy --target knative --dry-run        # the plan, offline
graphpack deploy --target nuclio --registry 127.0.0.1:5000"""))
@_project_options
@_target_option()
@click.option("--function", "functions", multiple=True,
              help="function or child function to deploy (default: all); repeatable")
@click.option("--registry", help="docker, nuclio, knative: registry host[:port] to push images to "
                                 "(default: $GRAPHPACK_REGISTRY)")
@click.option("--image", "images", multiple=True,
              help="docker, nuclio, knative: FUNCTION=IMAGE to run instead of building one; repeatable")
@click.option("--builder", type=click.Choice(["oci", "docker"]),
              help="docker, nuclio, knative: image builder (default: $GRAPHPACK_IMAGE_BUILDER or oci)")
@click.option("--dry-run", is_flag=True, help="print the plan offline (no cluster, dashboard or registry) "
                                              "and change nothing")
@click.option("--force", is_flag=True, help="knative: take over fields another field manager set (server-side apply)")
@_json_option
def deploy_command(source: str, directory: str, target: str, functions: tuple, registry: str | None,
                   images: tuple, builder: str | None, dry_run: bool, force: bool, as_json: bool) -> None:
    """Build and deploy the project's functions (children first, then the root).

    local runs each function as a supervised process; docker as containers; nuclio through the
    dashboard ($NUCLIO_DASHBOARD_URL); knative with server-side apply ($KUBECONFIG). Images for
    docker, nuclio and knative are built and pushed to --registry unless --image names one.
    """
    from .packager.render import parse_images

    project = _load(directory, source)
    options: dict = {}
    given = parse_images(images)
    if target == "local" and (registry or given or builder):
        raise GraphpackError("deploy --target local runs the build contexts as processes: --registry, --image "
                             "and --builder are for the docker, nuclio and knative targets")
    if registry:
        options["registry"] = registry
    if given:
        options["images"] = given
    if builder:
        options["builder"] = builder
    if force:
        if target != "knative":
            raise GraphpackError("deploy --force is for the knative target (server-side apply field ownership)")
        options["force"] = True
    deployer = _deployer(target, str(project.context), **options)
    names = list(functions) or None
    if dry_run:
        plan = deployer.dry_run(project, names)
        click.echo(plan.to_json() if as_json else plan.describe())
        return
    plan = deployer.plan(project, names)
    if not as_json:
        click.echo(plan.describe(), err=True)
        if not plan.changes:
            click.echo(f"nothing to change: {len(plan.steps)} function(s) already deployed as planned", err=True)
    status = deployer.apply(plan, progress=_progress(as_json))
    if as_json:
        _echo_json(status)
        return
    for name, info in status.items():
        click.echo(f"{name}: {info['url']}  ({info['state']})")
    click.echo(f"deployed {len(plan.changes)} change(s), {len(status)} function(s) on {target}")


@main.command("render", epilog=_example("""
graphpack render --target knative -o manifests
graphpack render --target nuclio -o manifests --registry 127.0.0.1:5000 --build
graphpack render --target knative -o manifests --image recommender=registry.example/shop:v1"""))
@_project_options
@click.option("--target", type=click.Choice(["knative", "nuclio"]), required=True, help="manifests for this target")
@click.option("-o", "--output", required=True, help="directory to write the manifests to")
@click.option("--function", "functions", multiple=True,
              help="function or child function to render (default: all); repeatable")
@click.option("--image", "images", multiple=True, help="FUNCTION=IMAGE: use this image (tag or digest); repeatable")
@click.option("--registry", envvar="GRAPHPACK_REGISTRY", help="where images are pushed [$GRAPHPACK_REGISTRY]")
@click.option("--build", "build_images", is_flag=True,
              help="build and push the images now and write their digests (default: offline, tags)")
@click.option("--builder", type=click.Choice(["oci", "docker", "fixed"]), default="oci", show_default=True,
              help="image builder for --build")
@click.option("--namespace", help="namespace written into the manifests")
@_json_option
def render_command(source: str, directory: str, target: str, output: str, functions: tuple, images: tuple,
                   registry: str | None, build_images: bool, builder: str, namespace: str | None,
                   as_json: bool) -> None:
    """Write the target's manifests (GitOps) without applying them.

    Offline by default: nothing is built, pushed or applied and no registry is contacted; each
    function's image is the tag `graphpack deploy` (or `render --build`) builds and pushes. Knative
    resolves a tag to a digest when it creates the revision.
    """
    from .packager.render import Images, parse_images, render

    project = _load(directory, source)
    chosen = Images(parse_images(images), registry, builder, build=build_images)
    notes: list[str] = []
    written = render(project, target, _at(directory, output), list(functions) or None, chosen, namespace,
                     _progress(as_json), notes=notes)
    if as_json:
        _echo_json({"target": target, "files": [str(p) for p in written], "images": chosen.chosen,
                    "notes": notes})
        return
    for path in written:
        click.echo(str(path))
    for note in notes:
        click.echo(f"note: {note}", err=True)


# -- deployed functions -------------------------------------------------------------------------
@main.command("invoke", epilog=_example("""
graphpack invoke recommender /v2/models/iris/infer -d '{"inputs": [[5.1, 3.5, 1.4, 0.2]]}'
graphpack invoke recommender / -d @request.json -H 'X-Trace: 1' --json"""))
@click.argument("function")
@click.argument("path", default="/")
@click.option("-d", "--data", help="request body: JSON or text, or @file")
@click.option("-X", "--method", help="HTTP method (default: POST with data, else GET)")
@click.option("-H", "--header", "headers", multiple=True, help="header K:V; repeatable")
@_target_option()
@_project_options
@click.option("--timeout", default=60.0, show_default=True, help="seconds to wait for the answer")
@_json_option
def invoke_command(function: str, path: str, data: str | None, method: str | None, headers: tuple,
                   target: str, source: str, directory: str, timeout: float, as_json: bool) -> None:
    """Call a deployed function; prints the response body (JSON as JSON) as the last line."""
    header_map = {}
    for item in headers:
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise GraphpackError(f"header {item!r} is not K:V")
        header_map[key.strip()] = value.strip()
    deployer = _deployer(target, _state_dir(directory, source))
    result = deployer.invoke(function, path, _parse_data(_at_data(directory, data)), method, header_map, timeout)
    body = result.body
    text = json.dumps(body) if isinstance(body, (dict, list)) else \
        body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    if as_json:
        _echo_json({"status": result.status_code, "content_type": result.content_type,
                    "body": body if isinstance(body, (dict, list, int, float)) or body is None else text})
    if not result.ok:
        click.echo(f"error: {function} answered {result.status_code}: {text}", err=True)
        sys.exit(1)
    if not as_json:
        click.echo(text)


def _at_data(directory: str, data: str | None) -> str | None:
    return "@" + _at(directory, data[1:]) if data and data.startswith("@") else data


def _parse_data(data: str | None) -> Any:
    """-d DATA or -d @file; JSON when it parses, else the text as is."""
    from pathlib import Path

    if data is None:
        return None
    if data.startswith("@"):
        path = Path(data[1:])
        if not path.is_file():
            raise GraphpackError(f"data file {str(path)!r} does not exist")
        raw = path.read_bytes()
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    try:
        return json.loads(data)
    except ValueError:
        return data


@main.command("status", epilog=_example("""
graphpack status
graphpack status --target docker --json"""))
@_target_option()
@_project_options
@_json_option
def status_command(target: str, source: str, directory: str, as_json: bool) -> None:
    """Show the deployed functions."""
    status = _deployer(target, _state_dir(directory, source)).status()
    if as_json:
        _echo_json(status)
        return
    if not status:
        click.echo("no functions deployed")
        return
    rows = [("FUNCTION", "STATE", "URL", "PID", "RESTARTS")] + [
        (name, info["state"], info["url"] or "", str(info.get("pid") or ""), _restarts(info))
        for name, info in status.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _restarts(info: dict) -> str:
    """The RESTARTS cell: supervisor restarts, then replaced workers (``1 +2w``), if any."""
    text = str(info.get("restarts", ""))
    workers = info.get("worker_restarts")
    return f"{text} +{workers}w" if workers else text


@main.command("logs", epilog=_example("""
graphpack logs auditor
graphpack logs recommender --follow"""))
@click.argument("function")
@click.option("--follow", is_flag=True, help="keep printing new lines")
@_target_option()
@_project_options
@_json_option
def logs_command(function: str, follow: bool, target: str, source: str, directory: str, as_json: bool) -> None:
    """Print a deployed function's log (kept after `down`, removed by `down --purge`)."""
    lines = _deployer(target, _state_dir(directory, source)).logs(function, follow=follow)
    try:
        for line in lines:
            click.echo(json.dumps({"function": function, "line": line}) if as_json else line)
    except KeyboardInterrupt:
        pass


@main.command("down", epilog=_example("""
graphpack down --function auditor
graphpack down --purge"""))
@click.option("--function", "functions", multiple=True,
              help="deployed function or child function to stop (default: all); repeatable")
@click.option("--purge", is_flag=True, help="also delete queued data, logs and build output")
@_target_option()
@_project_options
@_json_option
def down_command(functions: tuple, purge: bool, target: str, source: str, directory: str, as_json: bool) -> None:
    """Stop what deploy started (queued data and logs are kept unless --purge)."""
    removed = _deployer(target, _state_dir(directory, source)).delete(list(functions) or None, purge=purge)
    if as_json:
        _echo_json({"stopped": removed, "purged": purge})
        return
    click.echo(f"stopped {len(removed)} function(s)" + (": " + ", ".join(removed) if removed else "")
               + ("; deleted queued data, logs and build output" if purge else ""))


# -- images and the processor -------------------------------------------------------------------
@main.command("base-image", epilog=_example("""
graphpack base-image --registry 127.0.0.1:5000
graphpack base-image --no-push --load"""))
@click.option("--registry", help="registry host[:port] to push to (default: $GRAPHPACK_REGISTRY)")
@click.option("--push/--no-push", default=True, show_default=True, help="push when a registry is set")
@click.option("--load", is_flag=True, help="load it into the local Docker engine")
@click.option("--force", is_flag=True, help="rebuild even when cached")
@_json_option
def base_image_command(registry: str | None, push: bool, load: bool, force: bool, as_json: bool) -> None:
    """Build graphpack's Python base image from Debian packages (cached by content)."""
    from .packager.images.pipeline import base_image

    info = base_image(registry, push, load, force, _progress(as_json))
    if as_json:
        _echo_json(info)
        return
    click.echo(f"{info['name']}  {info['digest']}  ({info['size'] / 1e6:.1f} MB)")
    for key in ("pushed", "docker"):
        if key in info:
            click.echo(f"{key}: {info[key]}")


@main.command("serve", epilog=_example("""
graphpack build --target local && graphpack serve build/recommender --port 8080 --workers 2"""))
@click.argument("function_dir", type=click.Path(file_okay=False))
@click.option("--port", type=int, help="port of the http trigger (default: function.yaml, $PORT, 8080)")
@click.option("--workers", type=int, help="worker processes (default: the http trigger's maxWorkers)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--workdir", type=click.Path(file_okay=False, exists=True),
              help="directory to run in (relative paths in the graph resolve there)")
@click.option("--metrics/--no-metrics", default=None,
              help="Prometheus metrics at GET /metrics (default: on, unless $GRAPHPACK_METRICS=0)")
def serve_command(function_dir: str, port: int | None, workers: int | None, host: str,
                  workdir: str | None, metrics: bool | None) -> None:
    """Run a built function (BUILD_DIR/<function>) with graphpack's own processor."""
    from .serve import run

    sys.exit(run(function_dir, port=port, workers=workers, host=host, workdir=workdir, metrics=metrics))


from .observe.commands import observe_commands  # noqa: E402 - `top` and `ui` live in graphpack/observe/

for _command in observe_commands(_project_options, _target_option, _json_option, _state_dir):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
