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
def serve_command(function_dir: str, port: int | None, workers: int | None, host: str) -> None:
    """Run a built function (BUILD_DIR/<function>) with graphpack's own processor."""
    from .runtime.processor import serve

    sys.exit(serve(function_dir, port=port, workers=workers, host=host))


if __name__ == "__main__":  # pragma: no cover
    main()
