"""The ``graphpack`` command."""
from __future__ import annotations

import sys
from typing import Any

import click

from . import __version__
from .errors import GraphpackError


class _Group(click.Group):
    """Turns GraphpackError into a one-line message and exit code 1 (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GraphpackError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="graphpack")
def main() -> None:
    """Build, deploy and invoke serving graphs as Nuclio / Knative functions."""


source_option = click.option("-f", "--file", "source", default=".", show_default=True,
                             help="project directory, graphpack.yaml, or a .py/.ipynb that defines the project")


@main.command("graph")
@source_option
@click.option("--function", "function", help="function to draw (default: the first one)")
@click.option("--format", "fmt", type=click.Choice(["svg", "png", "pdf", "dot"]), default="svg", show_default=True)
@click.option("-o", "--output", help="output file (default: <function>.<format>)")
def graph_command(source: str, function: str | None, fmt: str, output: str | None) -> None:
    """Draw a function's graph (graphviz)."""
    from .graph.plot import plot_graph
    from .source import load_source

    project = load_source(source)
    if not project.functions:
        raise GraphpackError(f"project {project.name!r} has no functions")
    fn = project.get_function(function) if function else next(iter(project.functions.values()))
    target = output or f"{fn.metadata.name}.{fmt}"
    if fmt == "dot":
        text = plot_graph(fn.spec.graph).source
        with open(target, "w") as handle:
            handle.write(text)
    else:
        plot_graph(fn.spec.graph, filename=target, format=fmt)
    click.echo(target)


@main.command("serve")
@click.argument("function_dir", type=click.Path(file_okay=False))
@click.option("--port", type=int, help="port of the http trigger (default: function.yaml, $PORT, 8080)")
@click.option("--workers", type=int, help="worker processes (default: the http trigger's maxWorkers)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--workdir", type=click.Path(file_okay=False, exists=True),
              help="directory to run in (relative paths in the graph resolve there)")
def serve_command(function_dir: str, port: int | None, workers: int | None, host: str,
                  workdir: str | None) -> None:
    """Run a built function (BUILD_DIR/<function>) with graphpack's own processor."""
    import os

    from .runtime.processor import serve

    function_dir = os.path.abspath(function_dir)
    if workdir:
        os.chdir(workdir)
    sys.exit(serve(function_dir, port=port, workers=workers, host=host))


@main.command("build")
@source_option
@click.option("-o", "--output", default="build", show_default=True, help="output directory")
@click.option("--function", "functions", multiple=True, help="function to build (default: all); repeatable")
@click.option("--target", type=click.Choice(["local", "docker", "nuclio", "knative"]), default="nuclio",
              show_default=True, help="where the functions will run (only 'local' allows queues without a path)")
@click.option("--wheels", type=click.Path(file_okay=False), help="directory of wheels to put in each context")
@click.option("--json", "as_json", is_flag=True, help="print what was written as JSON")
@click.option("--image", is_flag=True, help="also build an image per function (wheels downloaded on the host)")
@click.option("--builder", type=click.Choice(["oci", "docker"]), default="oci", show_default=True,
              help="oci: daemonless and reproducible; docker: the Docker engine")
@click.option("--registry", help="registry host[:port] to push to (default: $GRAPHPACK_REGISTRY)")
@click.option("--push/--no-push", default=True, show_default=True, help="push the images to the registry")
@click.option("--tag", help="image tag (default: a digest of the build context)")
def build_command(source: str, output: str, functions: tuple, target: str, wheels: str | None,
                  as_json: bool, image: bool, builder: str, registry: str | None, push: bool,
                  tag: str | None) -> None:
    """Write a build context per function (function.yaml, entry module, code, spec, Dockerfile)."""
    import json

    from .packager import build_project
    from .source import load_source

    project = load_source(source)
    result = build_project(project, output, list(functions) or None, target=target, wheels=wheels)
    if image:
        from .packager.images.pipeline import build_images

        result["images"] = build_images(result, project.name, builder, registry, push, tag, _progress(as_json))
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        for item in result["functions"]:
            click.echo(f"{item['path']}  ({item['name']})")
        for item in result.get("images", []):
            click.echo(f"{item['pinned'] if item['pushed'] else item['image'] + '  ' + item['digest']}")


@main.command("base-image")
@click.option("--registry", help="registry host[:port] to push to (default: $GRAPHPACK_REGISTRY)")
@click.option("--push/--no-push", default=True, show_default=True, help="push when a registry is set")
@click.option("--load", is_flag=True, help="load it into the local Docker engine")
@click.option("--force", is_flag=True, help="rebuild even when cached")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def base_image_command(registry: str | None, push: bool, load: bool, force: bool, as_json: bool) -> None:
    """Build graphpack's Python base image from Debian packages (cached by content)."""
    import json

    from .packager.images.pipeline import base_image

    info = base_image(registry, push, load, force, _progress(as_json))
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    click.echo(f"{info['name']}  {info['digest']}  ({info['size'] / 1e6:.1f} MB)")
    for key in ("pushed", "docker"):
        if key in info:
            click.echo(f"{key}: {info[key]}")


def _project_dir(source: str) -> str:
    import os

    return source if os.path.isdir(source) else os.path.dirname(os.path.abspath(source))


def _progress(as_json: bool) -> Any:
    return (lambda message: None) if as_json else (lambda message: click.echo(f"... {message}", err=True))


def _parse_data(data: str | None) -> Any:
    """-d DATA or -d @file; JSON when it parses, else the text as is."""
    import json
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


@main.command("deploy")
@source_option
@click.option("--target", default="local", show_default=True,
              help="local, docker, nuclio or knative (docker reads $GRAPHPACK_IMAGE_BUILDER and "
                   "$GRAPHPACK_REGISTRY; nuclio and knative read $GRAPHPACK_REGISTRY, $NUCLIO_DASHBOARD_URL, "
                   "$KUBECONFIG)")
@click.option("--function", "functions", multiple=True, help="project function to deploy (default: all); repeatable")
@click.option("--dry-run", is_flag=True, help="print the plan and change nothing")
@click.option("--json", "as_json", is_flag=True, help="print the plan / result as JSON")
def deploy_command(source: str, target: str, functions: tuple, dry_run: bool, as_json: bool) -> None:
    """Build and deploy the project's functions (children first, then the root)."""
    import json

    from .packager.deploy import get_deployer
    from .source import load_source

    project = load_source(source)
    deployer = get_deployer(target, project.context)
    plan = deployer.plan(project, list(functions) or None)
    if dry_run:
        click.echo(plan.to_json() if as_json else plan.describe())
        return
    if not as_json:
        click.echo(plan.describe(), err=True)
    status = deployer.apply(plan, progress=_progress(as_json))
    if as_json:
        click.echo(json.dumps(status, indent=2, sort_keys=True))
        return
    for name, info in status.items():
        click.echo(f"{name}: {info['url']}  ({info['state']})")
    click.echo(f"deployed {len(plan.changes)} change(s), {len(status)} function(s) running on {target}")


@main.command("render")
@source_option
@click.option("--target", type=click.Choice(["knative", "nuclio"]), required=True, help="manifests for this target")
@click.option("-o", "--output", required=True, help="directory to write the manifests to")
@click.option("--function", "functions", multiple=True, help="project function to render (default: all); repeatable")
@click.option("--image", "images", multiple=True, help="FUNCTION=IMAGE: use this image, build nothing; repeatable")
@click.option("--registry", envvar="GRAPHPACK_REGISTRY", help="build images and push them here [$GRAPHPACK_REGISTRY]")
@click.option("--builder", default="oci", show_default=True, help="image builder: oci, docker or fixed")
@click.option("--namespace", help="namespace written into the manifests")
def render_command(source: str, target: str, output: str, functions: tuple, images: tuple, registry: str | None,
                   builder: str, namespace: str | None) -> None:
    """Write the target's manifests (GitOps) without applying them."""
    from .packager.render import Images, parse_images, render
    from .source import load_source

    project = load_source(source)
    chosen = Images(parse_images(images), registry, builder)
    for path in render(project, target, output, list(functions) or None, chosen, namespace, _progress(False)):
        click.echo(str(path))


@main.command("invoke")
@click.argument("function")
@click.argument("path", default="/")
@click.option("-d", "--data", help="request body: JSON or text, or @file")
@click.option("-X", "--method", help="HTTP method (default: POST with data, else GET)")
@click.option("-H", "--header", "headers", multiple=True, help="header K:V; repeatable")
@click.option("--target", default="local", show_default=True)
@click.option("-C", "--project-dir", default=".", show_default=True, help="project directory (deploy state)")
@click.option("--timeout", default=60.0, show_default=True, help="seconds to wait for the answer")
def invoke_command(function: str, path: str, data: str | None, method: str | None, headers: tuple,
                   target: str, project_dir: str, timeout: float) -> None:
    """Call a deployed function; prints the response body (JSON as JSON) as the last line."""
    import json

    from .packager.deploy import get_deployer

    header_map = {}
    for item in headers:
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise GraphpackError(f"header {item!r} is not K:V")
        header_map[key.strip()] = value.strip()
    result = get_deployer(target, project_dir).invoke(function, path, _parse_data(data), method, header_map, timeout)
    body = result.body
    text = json.dumps(body) if isinstance(body, (dict, list)) else \
        body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    if not result.ok:
        click.echo(f"error: {function} answered {result.status_code}: {text}", err=True)
        sys.exit(1)
    click.echo(text)


@main.command("status")
@click.option("--target", default="local", show_default=True)
@click.option("-C", "--project-dir", default=".", show_default=True, help="project directory (deploy state)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def status_command(target: str, project_dir: str, as_json: bool) -> None:
    """Show the deployed functions."""
    import json

    from .packager.deploy import get_deployer

    status = get_deployer(target, project_dir).status()
    if as_json:
        click.echo(json.dumps(status, indent=2, sort_keys=True))
        return
    if not status:
        click.echo("no functions deployed")
        return
    rows = [("FUNCTION", "STATE", "URL", "PID")] + [
        (name, info["state"], info["url"] or "", str(info.get("pid") or "")) for name, info in status.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@main.command("logs")
@click.argument("function")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines")
@click.option("--target", default="local", show_default=True)
@click.option("-C", "--project-dir", default=".", show_default=True, help="project directory (deploy state)")
def logs_command(function: str, follow: bool, target: str, project_dir: str) -> None:
    """Print a deployed function's log."""
    from .packager.deploy import get_deployer

    try:
        for line in get_deployer(target, project_dir).logs(function, follow=follow):
            click.echo(line)
    except KeyboardInterrupt:
        pass


@main.command("down")
@click.option("--function", "functions", multiple=True, help="deployed function to stop (default: all)")
@click.option("--purge", is_flag=True, help="also delete queued data and build output")
@click.option("--target", default="local", show_default=True)
@click.option("-C", "--project-dir", default=".", show_default=True, help="project directory (deploy state)")
def down_command(functions: tuple, purge: bool, target: str, project_dir: str) -> None:
    """Stop what deploy started (queued data is kept unless --purge)."""
    from .packager.deploy import get_deployer

    removed = get_deployer(target, project_dir).delete(list(functions) or None, purge=purge)
    click.echo(f"stopped {len(removed)} function(s)" + (": " + ", ".join(removed) if removed else ""))


if __name__ == "__main__":  # pragma: no cover
    main()
