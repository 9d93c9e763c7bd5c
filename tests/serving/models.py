"""Model and route classes the serving tests share."""
from __future__ import annotations

import pickle
from typing import Any, Callable

from graphpack.runtime.event import Event
from graphpack.serving.v2_model_server import V2ModelServer


class ClassifierModel(V2ModelServer):
    """The seed example's model class: a pickled scikit-learn classifier."""

    def load(self) -> None:
        model_file, extra_data = self.get_model(".pkl")
        with open(model_file, "rb") as f:
            self.model = pickle.load(f)

    def predict(self, body: dict) -> list:
        import numpy as np

        return self.model.predict(np.asarray(body["inputs"])).tolist()


class FakeRoute:
    """What a router sees for each route: ``run(event) -> event`` plus name/object/function."""

    def __init__(self, name: str, obj: Any = None, fn: Callable[[Event], Any] | None = None) -> None:
        self.name = name
        self.object = obj
        self.function = None
        self.fn = fn
        self.calls: list[Event] = []

    def run(self, event: Event) -> Event:
        self.calls.append(event)
        if self.object is not None:
            return self.object.do_event(event)
        out = self.fn(event)  # type: ignore[misc]
        if isinstance(out, Event):
            return out
        event.body = out
        return event


def model_route(server: V2ModelServer) -> FakeRoute:
    server.post_init("sync")
    return FakeRoute(server.name, server)
