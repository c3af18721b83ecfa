"""The method parameters are the signature: listed with their defaults, names enforced.

Issue 16: ``register(x, treshold=2)`` raised a bare ``TypeError`` from the dataclass, and
``inspect.signature(register)`` showed only ``**params``.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing

import numpy as np
import pytest
import xarray as xr

import daskreg
from daskreg import cli
from daskreg.errors import ParameterError
from daskreg.parallel.fourd import register_4dstem
from daskreg.params import RegistrationParams
from daskreg.signatures import PARAM_NAMES
from daskreg.synthetic import lattice_series

from .parallel.conftest import assert_same_result

# Every field but ``extra`` (what older saved results held; not a method argument).
FIELDS = [f for f in dataclasses.fields(RegistrationParams) if f.name != "extra"]
TAKE_PARAMS = [
    daskreg.register,
    daskreg.register_series,
    daskreg.Registration,
    register_4dstem,
    daskreg.plan,
]


@pytest.mark.parametrize("func", TAKE_PARAMS, ids=lambda f: f.__name__)
def test_signature_lists_every_parameter_with_its_default(func):
    parameters = inspect.signature(func).parameters
    hints = typing.get_type_hints(RegistrationParams)
    for field in FIELDS:
        p = parameters[field.name]
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, field.name
        assert p.default == field.default, field.name
        assert p.annotation == hints[field.name], field.name
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    assert "extra" not in parameters


def test_register_keeps_its_execution_options_and_return_types():
    sig = inspect.signature(daskreg.register)
    assert list(sig.parameters)[:3] == ["stack", "engine", "client"]
    assert sig.parameters["engine"].default == "auto"
    assert sig.return_annotation is daskreg.RegistrationResult
    series = inspect.signature(daskreg.register_series)
    assert list(series.parameters) == list(sig.parameters)
    assert series.return_annotation == list[daskreg.RegistrationResult]
    # Type hints too (IPython/Jupyter and Sphinx read them), not only the signature.
    assert typing.get_type_hints(daskreg.register)["threshold"] == float | None


def test_command_line_has_a_flag_for_every_parameter():
    assert sorted(cli.options.FLAG_PARAMS) == sorted(PARAM_NAMES)


STACK = np.zeros((5, 32, 32), np.float32)


@pytest.mark.parametrize(
    ("call", "wrong", "right"),
    [
        (lambda **kw: daskreg.register(STACK, **kw), "treshold", "threshold"),
        (lambda **kw: daskreg.Registration(STACK, **kw), "windw", "window"),
        (lambda **kw: daskreg.register_series(STACK, **kw), "n_worker", "n_workers"),
        (lambda **kw: daskreg.plan(STACK, **kw), "maxpath", "maxpaths"),
        (lambda **kw: register_4dstem(STACK[..., None, None], **kw), "find_maxma", "find_maxima"),
        (lambda **kw: daskreg.Registration(STACK).find_shifts(**kw), "num_peak", "num_peaks"),
    ],
    ids=["register", "Registration", "register_series", "plan", "register_4dstem", "step"],
)
def test_misspelt_name_names_the_right_one(call, wrong, right):
    with pytest.raises(ParameterError) as caught:
        call(**{wrong: 2})
    message = str(caught.value)
    assert f"{wrong!r} (did you mean {right!r}?)" in message
    # The list of valid names is there, whole.
    assert all(name in message for name in PARAM_NAMES)


def test_unknown_name_is_refused_before_any_work():
    # A missing file would be a StackFileNotFoundError if the stack were opened first.
    with pytest.raises(ParameterError, match="'treshold'"):
        daskreg.register("/no/such/stack.tif", treshold=2)


def test_a_name_with_no_close_match_gets_no_suggestion():
    with pytest.raises(ParameterError) as caught:
        daskreg.register(STACK, zzzz=1)
    assert "'zzzz'" in str(caught.value) and "did you mean" not in str(caught.value)


def test_register_gives_one_result_register_series_the_list():
    stacks = [lattice_series(6, (48, 48), dose=100, seed=s).stack for s in (0, 1)]
    data = xr.DataArray(
        np.stack(stacks), dims=("temperature", "frame", "y", "x"), coords={"temperature": [1, 2]}
    )
    with pytest.raises(ParameterError, match="register_series"):
        daskreg.register(data, scheduler="synchronous", progress=False)
    results = daskreg.register_series(data, scheduler="synchronous", progress=False)
    assert isinstance(results, list) and len(results) == 2
    for k, (result, stack) in enumerate(zip(results, stacks, strict=True)):
        assert int(result.dataset["temperature"]) == k + 1
        # Each entry registered as register registers it alone (engines agree to 1e-6 px).
        assert_same_result(result, daskreg.register(stack))
    # A (frame, y, x) stack: register gives the result, register_series a list of it.
    one = daskreg.register_series(stacks[0])
    assert isinstance(one, list) and len(one) == 1
    assert isinstance(daskreg.register(stacks[0]), daskreg.RegistrationResult)
    assert_same_result(one[0], daskreg.register(stacks[0]))


def test_register_4dstem_takes_the_execution_options_of_register():
    """One definition of the execution options (``Execution``): both signatures list
    each with the same default and type, and a misspelt one is refused by name."""
    assert daskreg.register_4dstem is register_4dstem

    def options(func):
        return {
            name: (p.default, p.annotation)
            for name, p in inspect.signature(func).parameters.items()
            if p.kind is p.KEYWORD_ONLY and name not in PARAM_NAMES
        }

    expected = options(daskreg.register)
    assert expected.pop("engine")[0] == "auto"  # 4D-STEM always runs on Dask
    assert {"client", "checkpoint", "resume", "save_stack"} <= set(expected)
    assert options(register_4dstem) == expected
    with pytest.raises(ParameterError, match="'keep_checkpont' \\(did you mean"):
        register_4dstem(STACK[..., None, None], keep_checkpont=True)
    with pytest.raises(ParameterError, match="checkpoint="):
        register_4dstem(STACK[..., None, None], resume=True)
