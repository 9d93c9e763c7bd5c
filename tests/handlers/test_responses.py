"""Response bodies: ``dumps`` (the C encoder built once) writes what ``json.JSONEncoder`` writes."""
from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest

from graphpack.handlers.responses import _default, dumps


class Array:
    """numpy-like: answers tolist()."""

    def tolist(self):
        return [1.5, 2]


STANDARD = json.JSONEncoder(default=_default)
VALUES = [
    {"inputs": [1, 2, 3]}, [], {}, "text", 1, -2.5, None, True,
    {"nan": float("nan"), "inf": [float("inf"), -float("inf")], "small": 1e-300, "big": 12345678901234567890},
    {"é": "ü\u2028\x00\"\\", "emoji": "\U0001f600", 1: "int key", 2.5: "float key", None: "none key", False: 0},
    {"set": {3}, "frozen": frozenset(), "tuple": (1, (2,)), "bytes": b"\xff\x00", "date": date(2020, 1, 2),
     "time": datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "array": Array(), "other": object},
    [[[[{"deep": [{"er": []}]}]]]],
]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_writes_what_the_standard_encoder_writes(value):
    assert dumps(value) == STANDARD.encode(value)


def test_errors_are_the_standard_encoders():
    circular: list = []
    circular.append(circular)
    for bad, error in ((circular, ValueError), ({(1, 2): 3}, TypeError)):
        with pytest.raises(error) as ours:
            dumps(bad)
        with pytest.raises(error) as theirs:
            STANDARD.encode(bad)
        assert str(ours.value) == str(theirs.value)
