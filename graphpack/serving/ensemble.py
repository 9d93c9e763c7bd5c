"""``VotingEnsemble``: run every model route and combine their outputs per sample.

Regression takes the weighted mean; classification the weighted vote, a tie going to the
smallest label. Weights are normalised to sum to 1; zero or negative weights fail at init.
"""
from __future__ import annotations

import math
from numbers import Integral, Number
from typing import Any

from ..errors import BadRequestError, GraphpackError
from ._utils import is_get
from .parallel import RouteRunner, raise_first_failure
from .routers import BaseModelRouter

VOTE_TYPES = ("classification", "regression")
ENSEMBLE_OPS = ("infer", "predict", "explain")


def normalise_weights(weights: dict[str, float] | None, routes: list[str] | None = None) -> dict[str, float] | None:
    """Weights scaled to sum to 1; a zero, negative or non-numeric weight is a GraphpackError.

    With ``routes`` given, every route needs a weight and no weight may name an unknown route.
    """
    if weights is None:
        return None
    if not isinstance(weights, dict) or not weights:
        raise GraphpackError("VotingEnsemble weights must be a non-empty dict {model: weight}")
    bad = [
        f"{k}={v!r}" for k, v in weights.items()
        if isinstance(v, bool) or not isinstance(v, Number) or not math.isfinite(float(v)) or float(v) <= 0  # type: ignore[arg-type]
    ]
    if bad:
        raise GraphpackError(
            f"VotingEnsemble weights must be positive numbers; got {', '.join(bad)}"
        )
    if routes is not None:
        unknown = sorted(set(weights) - set(routes))
        missing = [r for r in routes if r not in weights]
        if unknown:
            raise GraphpackError(f"VotingEnsemble weights name unknown models: {', '.join(unknown)}")
        if missing:
            raise GraphpackError(f"VotingEnsemble weights are missing for models: {', '.join(missing)}")
    total = float(sum(weights.values()))  # type: ignore[arg-type]
    return {k: float(v) / total for k, v in weights.items()}  # type: ignore[arg-type]


def infer_vote_type(values: list[Any]) -> str:
    """``classification`` when every value is an integer or a string label, else ``regression``."""
    for value in values:
        if isinstance(value, (str, Integral)) or _is_integer_like(value):
            continue
        return "regression"
    return "classification"


def _is_integer_like(value: Any) -> bool:
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    return kind in ("i", "u", "b")


def vote(
    predictions: list[list[Any]],
    weights: list[float],
    vote_type: str,
) -> list[Any]:
    """Combine ``predictions`` (samples x models) with per-model ``weights`` (summing to 1)."""
    out: list[Any] = []
    for sample in predictions:
        if vote_type == "regression":
            value = sum(float(p) * w for p, w in zip(sample, weights, strict=True))
            out.append(value)
        else:
            scores: dict[Any, float] = {}
            for label, w in zip(sample, weights, strict=True):
                label = _plain(label)
                scores[label] = scores.get(label, 0.0) + w
            best = max(scores.values())
            tied = [label for label, score in scores.items() if math.isclose(score, best, rel_tol=1e-12, abs_tol=1e-12)]
            out.append(min(tied, key=_label_order))
    return out


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _label_order(label: Any) -> tuple:
    return (0, label, "") if isinstance(label, Number) else (1, 0, str(label))


class VotingEnsemble(BaseModelRouter):
    """A router that runs all its model routes and votes on their outputs.

    ``POST /v2/models/<route>/...`` goes to one route; ``POST /v2/models/<ensemble name>[/op]``,
    ``/v2/models/infer`` (predict, explain) or ``/`` run every route and vote.
    ``GET /v2/models/`` lists the models and weights; ``GET /v2/models/<ensemble name>`` gives
    metadata. ``vote_type`` is ``"classification"`` or ``"regression"``, inferred from the first
    outputs when not given.
    """

    def __init__(
        self,
        context: Any = None,
        name: str | None = None,
        routes: dict | None = None,
        protocol: str | None = None,
        url_prefix: str | None = None,
        health_prefix: str | None = None,
        vote_type: str | None = None,
        weights: dict[str, float] | None = None,
        executor_type: str | None = None,
        format_response_with_col_name_flag: bool = False,
        prediction_col_name: str | None = None,
        input_path: str | None = None,
        result_path: str | None = None,
        max_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            context, name or "VotingEnsemble", routes, protocol, url_prefix, health_prefix,
            input_path, result_path, **kwargs,
        )
        if vote_type is not None and vote_type not in VOTE_TYPES:
            raise GraphpackError(
                f"VotingEnsemble vote_type must be one of {', '.join(VOTE_TYPES)}, not {vote_type!r}"
            )
        self.vote_type = vote_type
        self.weights = weights  # as configured (listed by GET /v2/models/); voting normalises them
        self._weights = normalise_weights(weights, list(self.routes) if self.routes else None)
        self.format_response_with_col_name_flag = format_response_with_col_name_flag
        self.prediction_col_name = prediction_col_name or "prediction"
        self.version = kwargs.get("version", "v1")
        self.executor_type = str(executor_type or "thread")
        self._runner = RouteRunner(executor_type, self.context.logger, max_workers)

    def post_init(self, mode: str = "sync") -> None:
        # routes may have been attached after __init__; check the weights against them now
        if self.weights is not None and self.routes:
            self._weights = normalise_weights(self.weights, list(self.routes))

    # ----- routing ----------------------------------------------------------------------

    def _handle_event(self, event: Any) -> Any:
        path = event.path or "/"
        body = event.body if isinstance(event.body, dict) else {}
        get = is_get(event)
        parts = [p for p in path[len(self.url_prefix):].split("/") if p] if path != "/" else []
        if not parts and body.get("model"):
            parts = [str(body["model"])]
        if not parts and get and path != "/":
            event.body = {"models": [*self.routes, self.name], "weights": self.weights}
            event.terminated = True
            return event

        key, rest = self._match_route(parts)
        if key is not None:
            op = str(body.get("operation") or "/".join(rest) or ("" if get else "infer"))
            return self._run_route(key, event, op)
        if parts and parts[0] == self.name:
            parts = parts[1:]
        elif parts and parts[0] not in ENSEMBLE_OPS:
            raise BadRequestError(
                f"model {parts[0]!r} does not exist, available models: "
                f"{' | '.join([*self.routes, self.name])}"
            )
        op = str(body.get("operation") or "/".join(parts) or ("" if get else "infer"))
        if get and not op:
            event.body = self.get_metadata()
            return event
        if op not in ENSEMBLE_OPS:
            raise BadRequestError(
                f"unknown operation {op!r} for ensemble {self.name}; use {', '.join(ENSEMBLE_OPS)}"
            )
        return self._vote_event(event, op)

    def _match_route(self, parts: list[str]) -> tuple[str | None, list[str]]:
        """The single route a path names (``m`` or ``m/versions/v``) and the rest of the path."""
        if len(parts) >= 3 and parts[1] == "versions" and f"{parts[0]}:{parts[2]}" in self.routes:
            return f"{parts[0]}:{parts[2]}", parts[3:]
        if parts and parts[0] in self.routes:
            return parts[0], parts[1:]
        return None, parts

    def validate(self, body: Any, operation: str) -> Any:
        """Check the request before it reaches the models (the V2 ``inputs`` list)."""
        if not isinstance(body, dict) or "inputs" not in body:
            raise BadRequestError(f'Expected key "inputs" in request body (ensemble {self.name})')
        if not isinstance(body["inputs"], list):
            raise BadRequestError(f'Expected "inputs" to be a list (ensemble {self.name})')
        return body

    def _vote_event(self, event: Any, op: str) -> Any:
        self.validate(event.body, op)
        request_id = event.body.get("id") or event.id
        outcomes = self._runner.run(self.routes, event, path="/" + op)
        raise_first_failure(self.name, outcomes, self.context.logger)
        results = {key: result.body for key, result in outcomes.items()}
        votes = self.logic(results, op)
        outputs: Any = votes
        if self.format_response_with_col_name_flag:
            outputs = {self.prediction_col_name: votes}
        event.body = {"id": request_id, "model_name": self.name, "outputs": outputs}
        return event

    # ----- voting -----------------------------------------------------------------------

    def extract_outputs(self, key: str, result: Any) -> list[Any]:
        """The per-sample outputs of one route's response."""
        outputs = result.get("outputs") if isinstance(result, dict) else None
        if isinstance(outputs, dict):
            outputs = outputs.get(self.prediction_col_name)
        if not isinstance(outputs, list):
            raise ValueError(f"{self.name}: model {key!r} returned no outputs list: {result!r}")
        return outputs

    def logic(self, results: dict[str, Any], operation: str) -> list[Any]:
        """Vote on the routes' results (``{route: response body}``); returns per-sample votes."""
        per_model = {key: self.extract_outputs(key, body) for key, body in results.items()}
        sizes = {len(v) for v in per_model.values()}
        if len(sizes) > 1:
            counts = ", ".join(f"{k}={len(v)}" for k, v in per_model.items())
            raise ValueError(f"{self.name}: models returned different numbers of outputs: {counts}")
        keys = list(per_model)
        samples = [list(row) for row in zip(*(per_model[k] for k in keys), strict=True)]
        if self.vote_type is None:
            self.vote_type = infer_vote_type([p for row in samples for p in row])
        if self._weights is None:
            weights = [1.0 / len(keys)] * len(keys)
        else:
            weights = [self._weights[k] for k in keys]
        return vote(samples, weights, self.vote_type)

    def get_metadata(self) -> dict[str, Any]:
        """Ensemble metadata: inputs/outputs from the first route that describes them."""
        inputs: Any = []
        outputs: Any = []
        for route in self.routes.values():
            spec = getattr(getattr(route, "object", None), "model_spec", None) or {}
            if spec.get("inputs") or spec.get("outputs"):
                inputs, outputs = spec.get("inputs", []), spec.get("outputs", [])
                break
        return {"name": self.name, "version": self.version, "inputs": inputs, "outputs": outputs}


__all__ = ["VotingEnsemble", "normalise_weights", "vote", "infer_vote_type"]
