"""The public API: everything in __all__ exists, and the MLRun names users type are there."""
import graphpack
import graphpack.serving


def test_all_names_exist():
    for module in (graphpack, graphpack.serving):
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == [], module.__name__


def test_mlrun_compatible_entry_points():
    for name in ("get_or_create_project", "new_function", "code_to_function", "function_from_dict",
                 "GraphServer", "GraphContext", "HTTPError", "CronTrigger"):
        assert name in graphpack.__all__
    for name in ("Extend", "Map", "Filter", "FlatMap", "GraphServer", "GraphContext"):
        assert name in graphpack.serving.__all__
    assert callable(graphpack.utils.get_serving_spec)
