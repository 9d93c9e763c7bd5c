"""Build-time check that a function's class and handler names exist in the code it ships."""
from __future__ import annotations

import pytest

from graphpack.errors import GraphpackError
from graphpack.packager.names import check_names, defined_names
from graphpack.packager.usercode import CodeFile

from .conftest import run_build, write_project

OUTSIDE_MARKERS = '''
# graphpack: start
class Echo:
    def do(self, x):
        return x
# graphpack: end


class Forgotten:  # outside the markers: not shipped
    def do(self, x):
        return x


fn = project.set_function("api", kind="serving")
graph = fn.set_topology("flow", engine="sync")
graph.to(class_name="Echo", name="first").to(class_name="Forgotten", name="second")
'''


def test_class_outside_the_markers_fails_the_build(tmp_path):
    source = write_project(tmp_path / "src", OUTSIDE_MARKERS)
    out = tmp_path / "out"
    result = run_build("-f", str(source), "-o", str(out))
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "function 'api': step 'second': field class_name: 'Forgotten' is not defined" in line
    assert not out.exists()


def test_handler_typo_in_a_child_fails_the_build(tmp_path):
    source = write_project(tmp_path / "src", '''
fn = project.set_function("serving.py", name="api")
graph = fn.set_topology("flow", engine="sync")
graph.to(class_name="Echo", name="first").to(">>", "q", path="s3://b/q") \\
     .to(handler="enrichh", name="second", function="child")
fn.add_child_function("child", "./enrich.py")
''')
    result = run_build("-f", str(source), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "function 'api': child 'child': step 'second': field handler: 'enrichh'" in result.stderr


def code(text: str) -> list[CodeFile]:
    return [CodeFile("user", text, "user.py")]


def test_names_defined_imported_assigned_or_builtin_pass():
    from graphpack.graph.steps import RootFlowStep

    graph = RootFlowStep(engine="sync")
    graph.to(class_name="A", name="a").to(class_name="LR", name="b").to(handler="fn", name="c") \
         .to(class_name="Alias", name="d").to(class_name="storey.Extend", name="e", _fn="({'x': 1})") \
         .to(handler="json.dumps", name="f").to(class_name="Extend", name="g").to(handler="len", name="h") \
         .to(class_name="user.A", name="i").to(class_name="__main__.A", name="j")
    check_names(graph, "", code('''
import json
from sklearn.linear_model import LogisticRegression as LR
class A: pass
def fn(x): return x
Alias = A
'''), "function 'f'")


@pytest.mark.parametrize("name", ["Missing", "user.Missing", "__main__.Missing"])
def test_missing_names_fail(name):
    from graphpack.graph.steps import RootFlowStep

    graph = RootFlowStep(engine="sync")
    graph.to(class_name=name, name="s")
    with pytest.raises(GraphpackError, match="step 's': field class_name: 'Missing'"):
        check_names(graph, "", code("class A: pass\n"), "function 'f'")


def test_star_import_disables_the_check():
    from graphpack.graph.steps import RootFlowStep

    graph = RootFlowStep(engine="sync")
    graph.to(class_name="Anything", name="s")
    check_names(graph, "", code("from mylib import *\n"), "function 'f'")


def test_syntax_error_names_the_file_and_line():
    with pytest.raises(GraphpackError, match=r"'user.py' has a syntax error on line 2"):
        defined_names(CodeFile("user", "x = 1\ndef (:\n", "user.py"), "function 'f'")


def test_function_without_code_may_only_use_builtins_and_dotted_paths():
    from graphpack.graph.steps import RouterStep

    router = RouterStep(None, {}, name="router")
    router.add_route("m1", class_name="graphpack.serving.V2ModelServer", model_path="x")
    check_names(router, "", [], "function 'f'")
    router.add_route("m2", class_name="MyModel", model_path="x")
    with pytest.raises(GraphpackError, match="no code file"):
        check_names(router, "", [], "function 'f'")
