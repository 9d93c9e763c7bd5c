"""The ``graphpack top`` and ``graphpack ui`` commands (cli.py adds them with its shared options)."""
from __future__ import annotations

import json
from typing import Callable

import click


def _example(text: str) -> str:
    return "\b\nExample:\n" + "\n".join(f"  {line}" for line in text.strip().splitlines())


def observe_commands(project_options: Callable, target_option: Callable, json_option: Callable,
                     state_dir: Callable[[str, str], str]) -> list[click.Command]:
    """``top`` and ``ui``, decorated with cli.py's -f/-C, --target and --json options."""

    def loader(target: str, source: str, directory: str) -> Callable:
        from .deployment import load_deployment

        where = state_dir(directory, source)
        load_deployment(target, where)  # nothing deployed, no build context: the one-line error now
        return lambda: load_deployment(target, where)

    @click.command("top", epilog=_example("""
graphpack top
graphpack top --json --interval 2"""))
    @target_option()
    @project_options
    @json_option
    @click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
                  help="seconds between refreshes (--json: between its two scrapes)")
    @click.option("--count", type=click.IntRange(min=1), help="stop after this many refreshes")
    def top_command(target: str, source: str, directory: str, as_json: bool, interval: float,
                    count: int | None) -> None:
        """Live figures of the deployed functions from their /metrics: per step events/s, p50/p99
        and errors; per queue pushed and consumed/s, lag, retries and dead letters."""
        from .top import run_top, snapshot_once

        load = loader(target, source, directory)
        if as_json:
            click.echo(json.dumps(snapshot_once(load, interval), indent=2, sort_keys=True))
            return
        run_top(load, interval, count)

    @click.command("ui", epilog=_example("""
graphpack ui                 # prints the page's address, serves until Ctrl-C
graphpack ui --port 8765 --target docker"""))
    @target_option()
    @project_options
    @click.option("--port", type=click.IntRange(min=0, max=65535), default=0,
                  help="port on 127.0.0.1 (default: a free one)")
    @click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
                  help="seconds between refreshes")
    def ui_command(target: str, source: str, directory: str, port: int, interval: float) -> None:
        """A page on 127.0.0.1 drawing the deployed graphs (functions, steps, queues, error edges)
        with live figures; a click on a step lists its recent records in the error stream."""
        from .ui import Observer, make_server

        observer = Observer(loader(target, source, directory), interval)
        observer.start()
        server = make_server(observer, port)
        host, bound = server.server_address[:2]
        click.echo(f"graphpack ui: http://{host!s}:{bound}/  (Ctrl-C stops it)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            observer.stop()

    return [top_command, ui_command]

