"""Reading the Dockerfile subset (dockerfile.py)."""
import pytest

from graphpack import GraphpackError
from graphpack.packager.images.dockerfile import duration, instructions, parse

TEXT = '''# comment
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ENV A=1 \\
    B="two words" \\
    # a comment inside a continuation
    C=$A
ENV D=${A}x
COPY a.txt b.txt /opt/app/
USER 10001:10001
WORKDIR /opt/app
EXPOSE 8080 9090/udp
LABEL org.example.x=y
HEALTHCHECK --interval=1m30s --timeout=3s --retries=2 CMD curl -f http://127.0.0.1/ || exit 1
ENTRYPOINT ["tini", "--"]
CMD python3 -m app
'''


def test_parse_the_subset():
    recipe = parse(TEXT, {"BASE_IMAGE": "127.0.0.1:5000/base:1"})
    assert recipe.base == "127.0.0.1:5000/base:1"
    assert recipe.env == [("A", "1"), ("B", "two words"), ("C", ""), ("D", "1x")]
    assert recipe.copies == [(["a.txt", "b.txt"], "/opt/app/")]
    assert recipe.user == "10001:10001" and recipe.workdir == "/opt/app"
    assert recipe.exposed == ["8080/tcp", "9090/udp"]
    assert recipe.labels == {"org.example.x": "y"}
    assert recipe.healthcheck == {"Interval": 90 * 10**9, "Timeout": 3 * 10**9, "Retries": 2,
                                  "Test": ["CMD-SHELL", "curl -f http://127.0.0.1/ || exit 1"]}
    assert recipe.entrypoint == ["tini", "--"]
    assert recipe.cmd == ["/bin/sh", "-c", "python3 -m app"]
    assert parse(TEXT).base == "python:3.11-slim"


def test_continuations_join_and_keep_line_numbers():
    ins = instructions("FROM x\nRUN a \\\n  b\nCMD [\"c\"]\n")
    assert [(i.keyword, i.args, i.line) for i in ins] == [("FROM", "x", 1), ("RUN", "a b", 2), ("CMD", '["c"]', 4)]


@pytest.mark.parametrize("text, message", [
    ("FROM a\nFROM b\n", "multi-stage"),
    ("FROM a\nADD x /x\n", "only plain COPY"),
    ("FROM a\nCOPY --from=b /x /x\n", "only plain COPY"),
    ("FROM a\nSHELL [\"bash\"]\n", "SHELL is not supported"),
    ("ENV A=1\n", "no FROM"),
])
def test_unsupported_instructions_are_clear_errors(text, message):
    with pytest.raises(GraphpackError, match=message):
        parse(text)


def test_duration():
    assert duration("10s") == 10 * 10**9 and duration("1h2m") == 3720 * 10**9 and duration("500ms") == 5 * 10**8
