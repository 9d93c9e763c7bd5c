"""VotingEnsemble: vote maths, weights, routing to one model, listing and metadata."""
from __future__ import annotations

from typing import Any

import pytest

from graphpack.errors import BadRequestError, GraphpackError
from graphpack.runtime.event import Event
from graphpack.serving.ensemble import VotingEnsemble, infer_vote_type, normalise_weights, vote
from graphpack.serving.v2_model_server import V2ModelServer

from .models import FakeRoute, model_route


class Fixed(V2ModelServer):
    """Answers the outputs it was given, one per input row."""

    def predict(self, request: dict) -> list:
        outputs = self.get_param("outputs")
        return outputs[: len(request["inputs"])]


def ensemble(outputs: dict[str, list], **kwargs: Any) -> VotingEnsemble:
    routes = {k: model_route(Fixed(name=k, model=1, outputs=v)) for k, v in outputs.items()}
    return VotingEnsemble(name="ens", routes=routes, **kwargs)


def run(ens: VotingEnsemble, path: str, body: Any = None, method: str = "POST") -> Any:
    return ens.do_event(Event(body, id="ev", path=path, method=method)).body


def test_normalise_weights() -> None:
    assert normalise_weights({"a": 1, "b": 3}) == {"a": 0.25, "b": 0.75}
    assert normalise_weights({"a": 0.2, "b": 0.2}) == {"a": 0.5, "b": 0.5}  # sum < 1 is fine
    assert normalise_weights(None) is None
    for bad, shown in (({"a": 0, "b": 1}, "a=0"), ({"a": -1, "b": 2}, "a=-1"), ({"a": "x"}, "a='x'"),
                       ({"a": float("nan")}, "a=nan"), ({"a": True}, "a=True")):
        with pytest.raises(GraphpackError, match=f"weights must be positive numbers; got {shown}"):
            normalise_weights(bad)
    with pytest.raises(GraphpackError, match="non-empty dict"):
        normalise_weights({})
    with pytest.raises(GraphpackError, match="unknown models: c"):
        normalise_weights({"a": 1, "c": 1}, ["a", "b"])
    with pytest.raises(GraphpackError, match="missing for models: b"):
        normalise_weights({"a": 1}, ["a", "b"])


def test_vote_maths() -> None:
    # regression: weighted mean
    assert vote([[1.0, 3.0], [2.0, 2.0]], [0.5, 0.5], "regression") == [2.0, 2.0]
    assert vote([[1.0, 3.0]], [0.25, 0.75], "regression") == [2.5]
    # classification: majority, weights, ties to the smallest label
    assert vote([[1, 1, 2], [0, 2, 2]], [1 / 3] * 3, "classification") == [1, 2]
    assert vote([[1, 2]], [0.5, 0.5], "classification") == [1]
    assert vote([[2, 1, 0]], [1 / 3] * 3, "classification") == [0]
    assert vote([[1, 2, 2]], [0.6, 0.2, 0.2], "classification") == [1]
    assert vote([["cat", "ant"]], [0.5, 0.5], "classification") == ["ant"]
    assert infer_vote_type([1, 2, 0]) == "classification"
    assert infer_vote_type(["a", "b"]) == "classification"
    assert infer_vote_type([1, 2.5]) == "regression"


def test_weights_rejected_at_init() -> None:
    with pytest.raises(GraphpackError, match="m1=0"):
        ensemble({"m1": [1], "m2": [1]}, weights={"m1": 0, "m2": 1})
    with pytest.raises(GraphpackError, match="m2=-0.5"):
        ensemble({"m1": [1], "m2": [1]}, weights={"m1": 1, "m2": -0.5})
    with pytest.raises(GraphpackError, match="missing for models: m2"):
        ensemble({"m1": [1], "m2": [1]}, weights={"m1": 1})
    with pytest.raises(GraphpackError, match="vote_type must be one of"):
        ensemble({"m1": [1]}, vote_type="majority")


def test_classification_vote_inferred() -> None:
    ens = ensemble({"a": [0, 1, 2, 1], "b": [0, 2, 2, 0], "c": [1, 1, 0, 2]})
    body = run(ens, "/v2/models/ens/infer", {"inputs": [[0]] * 4})
    assert body == {"id": "ev", "model_name": "ens", "outputs": [0, 1, 2, 0]}
    assert ens.vote_type == "classification"


def test_regression_mean_and_weighted_mean() -> None:
    body = run(ensemble({"a": [1.0, 10.0], "b": [3.0, 20.0]}), "/v2/models/infer", {"inputs": [[0], [0]]})
    assert body["outputs"] == [2.0, 15.0]
    weighted = ensemble({"a": [1.0], "b": [5.0]}, weights={"a": 3, "b": 1}, vote_type="regression")
    assert weighted.weights == {"a": 3, "b": 1}  # listed as configured, normalised when voting
    assert run(weighted, "/", {"inputs": [[0]]})["outputs"] == [2.0]


def test_given_vote_type_and_weights_break_majority() -> None:
    ens = ensemble({"a": [1], "b": [2], "c": [2]}, vote_type="classification", weights={"a": 5, "b": 1, "c": 1})
    assert run(ens, "/v2/models/ens/predict", {"inputs": [[0]]})["outputs"] == [1]
    as_regression = ensemble({"a": [1], "b": [2]}, vote_type="regression")
    assert run(as_regression, "/", {"inputs": [[0]]})["outputs"] == [1.5]


def test_col_name_format() -> None:
    ens = ensemble({"a": [1], "b": [1]}, format_response_with_col_name_flag=True, prediction_col_name="label")
    assert run(ens, "/v2/models/ens/infer", {"inputs": [[0]]})["outputs"] == {"label": [1]}


def test_single_model_paths_delegate() -> None:
    ens = ensemble({"a": [7], "b": [9]})
    body = run(ens, "/v2/models/b/infer", {"inputs": [[0]]})
    assert body["model_name"] == "b" and body["outputs"] == [9]
    assert run(ens, "/", {"model": "a", "inputs": [[0]]})["outputs"] == [7]


def test_list_metadata_and_errors() -> None:
    ens = ensemble({"a": [1], "b": [1]}, weights={"a": 1, "b": 1})
    assert run(ens, "/v2/models/", method="GET") == {"models": ["a", "b", "ens"], "weights": {"a": 1, "b": 1}}
    assert run(ens, "/v2/models/ens", method="GET") == {"name": "ens", "version": "v1", "inputs": [], "outputs": []}
    assert run(ens, "/v2/models/a", method="GET")["name"] == "a"
    with pytest.raises(BadRequestError, match=r"model 'zzz' does not exist, available models: a \| b \| ens"):
        run(ens, "/v2/models/zzz/infer", {"inputs": [[0]]})
    with pytest.raises(BadRequestError, match="unknown operation 'train' for ensemble ens"):
        run(ens, "/v2/models/ens/train", {"inputs": [[0]]})
    with pytest.raises(BadRequestError, match='Expected key "inputs"'):
        run(ens, "/v2/models/ens/infer", {"rows": [[0]]})
    with pytest.raises(BadRequestError, match='Expected "inputs" to be a list'):
        run(ens, "/v2/models/ens/infer", {"inputs": 3})


def test_mismatched_outputs_and_failing_model() -> None:
    ens = ensemble({"a": [1, 2], "b": [1]})
    with pytest.raises(ValueError, match="different numbers of outputs: a=2, b=1"):
        run(ens, "/", {"inputs": [[0], [0]]})

    def boom(event: Event) -> Any:
        raise KeyError("feature x")

    routes = {"ok": model_route(Fixed(name="ok", model=1, outputs=[1])), "bad": FakeRoute("bad", fn=boom)}
    with pytest.raises(RuntimeError, match="ens: route 'bad' failed: KeyError"):
        run(VotingEnsemble(name="ens", routes=routes), "/", {"inputs": [[0]]})


def test_array_executor_and_process_fallback() -> None:
    for executor in ("array", "thread", "process"):
        ens = ensemble({"a": [0, 1], "b": [0, 1], "c": [1, 1]}, executor_type=executor)
        assert run(ens, "/", {"inputs": [[0], [0]]})["outputs"] == [0, 1]
    with pytest.raises(ValueError, match="executor_type must be one of"):
        ensemble({"a": [1]}, executor_type="gpu")
