"""The shop's serving code: an iris classifier behind a V2 router, and an audit child.

Only the code between the markers is the functions' code; the rest trains the model.
"""
# graphpack: start
import json
import os
import pickle
import time

from graphpack.serving import V2ModelServer


class Enrich:
    """Adds request metadata before the router."""

    def __init__(self, context=None, name=None, source="shop"):
        self.context = context
        self.source = source

    def do(self, body):
        if isinstance(body, dict):
            body.setdefault("source", self.source)
        return body


class ClassifierModel(V2ModelServer):
    """A scikit-learn classifier loaded from a pickle."""

    def load(self):
        path, _ = self.get_model(".pkl")
        with open(path, "rb") as handle:
            self.model = pickle.load(handle)

    def predict(self, request):
        return self.model.predict(request["inputs"]).tolist()


class Audit:
    """Runs in the child function: appends every answered request to a JSON-lines file."""

    def __init__(self, context=None, name=None, path="audit.jsonl"):
        self.path = os.environ.get("SHOP_AUDIT_FILE", path)

    def do(self, body):
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"at": round(time.time(), 3), "record": body}) + "\n")
        return body
# graphpack: end


def train(path):
    """Train a small iris classifier and pickle it to ``path``."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    model = LogisticRegression(max_iter=500).fit(data.data, data.target)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(model, handle)
