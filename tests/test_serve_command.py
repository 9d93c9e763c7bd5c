"""``python -m graphpack.serve``'s command line: the plain forms are read without argparse (a few
ms of every cold start) exactly as argparse reads them; anything else goes to argparse."""
from __future__ import annotations

import pytest

from graphpack.serve import _plain_args, parser

PLAIN = [
    ["/fn"], ["/fn", "--port", "8080"], ["--port", "8080", "/fn"], ["/fn", "--port=9000", "--workers", "2"],
    ["/fn", "--host", "0.0.0.0", "--workdir", "/work"], ["/fn", "--port", "08080"], ["fn dir", "--workers=3"],
    ["/fn", "--port", "1", "--port", "2"], ["/fn", "--no-metrics"], ["--metrics", "/fn", "--port", "1"],
    ["/fn", "--metrics", "--no-metrics"],
]
OTHER = [
    [], ["-h"], ["--help"], ["/fn", "--port"], ["/fn", "--port", "x"], ["/fn", "--port", "-1"], ["/fn", "--po", "1"],
    ["/fn", "/other"], ["/fn", "--unknown", "1"], ["/fn", "--port", "1_000"], ["/fn", "--port", "²"],
    ["/fn", "--host="], ["--", "/fn"], ["/fn", "--metrics=1"], ["/fn", "--metric"],
]


@pytest.mark.parametrize("argv", PLAIN)
def test_plain_command_lines_read_as_argparse_reads_them(argv):
    assert _plain_args(argv) == vars(parser().parse_args(argv))


@pytest.mark.parametrize("argv", OTHER)
def test_other_command_lines_are_left_to_argparse(argv):
    assert _plain_args(argv) is None
