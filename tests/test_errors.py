"""Bad input raises a florin error that names the parameter (issue 14, item 8)."""

import numpy as np
import pytest

import florin
from florin import conncomp, morphology
from florin.errors import FlorinError, ParameterError, ParameterTypeError
from florin.pipelines import Pipeline

MASK = np.zeros((5, 5, 5), bool)
MASK[2, 2, 2] = True

CASES = {
    "tile float shape": (lambda: florin.tile(shape=4.0), ParameterTypeError, "shape"),
    "2-D footprint on 3-D": (lambda: morphology.binary_opening(MASK, footprint=np.ones((3, 3), bool)), ParameterError, "footprint"),
    "footprint name": (lambda: morphology.binary_opening(MASK, footprint="ball"), ParameterError, "footprint"),
    "empty footprint": (lambda: morphology.binary_opening(MASK, footprint=np.ones((0, 0, 0), bool)), ParameterError, "footprint"),
    "bad grey mode": (lambda: morphology.opening(MASK.astype(float), mode="xx"), ParameterError, "mode"),
    "float labels": (lambda: morphology.remove_small_objects(MASK.astype(float)), ParameterError, "dtype"),
    "negative labels": (lambda: morphology.remove_small_objects(-MASK.astype(int)), ParameterError, ">= 0"),
    "0-d label": (lambda: conncomp.label(np.array(1)), ParameterError, "dimension"),
    "steps not a list": (lambda: Pipeline.from_toml("steps = 3"), ParameterTypeError, "steps"),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_raises_a_florin_error_naming_the_parameter(name):
    call, kind, word = CASES[name]
    with pytest.raises(kind) as info:
        call()
    assert isinstance(info.value, FlorinError)
    assert word in str(info.value)
    assert "\n" not in str(info.value)


def test_type_errors_stay_catchable_as_type_error():
    with pytest.raises(TypeError):
        florin.tile(shape=4.0)
    with pytest.raises(TypeError):
        Pipeline.from_toml("steps = 3")


def test_a_valid_footprint_still_works():
    out = morphology.binary_dilation(MASK, footprint=np.ones((3, 3, 3), bool))
    assert int(out.values.sum()) == 27
