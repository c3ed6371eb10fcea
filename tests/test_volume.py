import numpy as np
import pytest

import florin
from florin.errors import ParameterError


def test_numpy_arrays_are_wrapped_without_copy():
    data = np.zeros((2, 3, 4), np.uint16)
    vol = florin.as_volume(data)
    assert vol.dims == ("z", "y", "x")
    assert np.shares_memory(vol.values, data)


def test_extra_leading_dims_and_2d():
    assert florin.as_volume(np.zeros((2, 3, 4, 5))).dims == ("dim_0", "z", "y", "x")
    assert florin.as_volume(np.zeros((3, 4))).dims == ("y", "x")


def test_spacing_sets_coords_and_survives_slicing():
    vol = florin.as_volume(np.zeros((3, 4, 5)), spacing=(2.0, 0.5, 0.25), units="um")
    assert florin.get_spacing(vol[1:2, 2:3, :]) == (2.0, 0.5, 0.25)
    assert vol.coords["x"].values[-1] == pytest.approx(1.0)


def test_bad_spacing_names_parameter():
    with pytest.raises(ParameterError, match="spacing"):
        florin.as_volume(np.zeros((3, 4)), spacing=(1, 2, 3))
    with pytest.raises(ParameterError, match="spacing"):
        florin.as_volume(np.zeros((3, 4)), spacing=(0, 1))
