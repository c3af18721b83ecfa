"""Units, metadata encoding and axis-order planning, tested directly."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daskreg.io import open_stack
from daskreg.io._metadata import metadata_json
from daskreg.io._units import normalise_unit


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("n_m", "nm"),
        ("NM", "nm"),
        ("um", "µm"),
        ("μm", "µm"),
        ("\\u00B5m", "µm"),
        ("micron", "µm"),
        ("Å", "Å"),
        ("A", "Å"),
        ("meters", "m"),
        ("us", "µs"),
        ("1 / nm", "1 / nm"),
        (None, ""),
        ("<undefined>", ""),
        ("pixel", "px"),
    ],
)
def test_normalise_unit(raw, canonical: str) -> None:
    assert normalise_unit(raw) == canonical


def test_metadata_keeps_what_json_can_hold() -> None:
    encoded = metadata_json(
        {
            "kV": np.float32(300.0),
            "bad": float("nan"),
            "name": b"HAADF",
            "table": np.arange(3),
            "lazy": da.zeros(3),
            "thumbnail": np.zeros(5000),
            "obj": object(),
            1: (np.int64(2), [None, True]),
        }
    )
    assert json.loads(encoded) == {
        "kV": 300.0,
        "bad": "nan",
        "name": "HAADF",
        "table": [0, 1, 2],
        "1": [2, [None, True]],
    }


def test_metadata_survives_cycles() -> None:
    tree: dict = {}
    tree["self"] = tree
    assert json.loads(metadata_json(tree))["self"]["self"]


_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.arange, st.integers(0, 5)),
    st.builds(object),
)
_trees = st.recursive(
    _leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.one_of(st.text(), st.integers()), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(_trees)
def test_metadata_never_fails(tree) -> None:
    assert isinstance(json.loads(metadata_json(tree)), dict)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(-3, 2),
    st.tuples(st.integers(2, 5), st.integers(2, 5), st.integers(2, 5)),
)
def test_frame_axis_moves_frames_first_and_keeps_the_rest_in_order(frame_axis, shape) -> None:
    stored = np.arange(np.prod(shape)).reshape(shape)
    stack = open_stack(stored, frame_axis=frame_axis)
    np.testing.assert_array_equal(stack.values, np.moveaxis(stored, frame_axis, 0))
