"""Test the shop graph in-process (the mock server runs root and child, queue hop included)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.chdir(HERE)

from project import MODEL, fn, train  # noqa: E402

if not os.path.exists(MODEL):
    train(MODEL)
server = fn.to_mock_server()
print(server.test("/v2/models/iris/infer", {"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}))
server.wait_for_completion()
