import pickle

import cloudpickle
import numpy as np
import pytest
import xarray as xr

import florin
import florin.conncomp
import florin.morphology
import florin.operators
import florin.thresholding as thresholding
from florin.errors import OperatorBindError, ParameterError


@florin.florinate
def scale(image, scalar=1):
    return image * scalar


def test_florinate_prepends_image_and_binds_parameters():
    op = scale(scalar=3)
    assert op(np.array([1, 2])).tolist() == [3, 6]
    assert op.params() == {"scalar": 3}


def test_florinate_in_line_and_positional():
    def shift(image, offset, factor=1):
        return (image + offset) * factor

    op = florin.florinate(shift)(2, factor=10)
    assert op(np.array([1])).tolist() == [30]


def test_seed_typo_names_operator_and_suggests_threshold():
    with pytest.raises(TypeError) as err:
        thresholding.ndnt(shape=(10, 64, 64), thresshold=0.3)
    assert isinstance(err.value, OperatorBindError)
    message = str(err.value)
    assert "ndnt" in message and "did you mean `threshold`" in message


def test_too_many_positional_arguments_is_a_bind_error():
    with pytest.raises(OperatorBindError, match="scale"):
        scale(1, 2, 3)


def test_direct_call_on_array_applies_immediately():
    out = thresholding.ndnt(np.full((4, 4), 5, np.uint8), shape=3)
    assert isinstance(out, xr.DataArray) and out.dtype == bool


def test_operator_declares_halo_from_parameters():
    op = thresholding.ndnt(shape=(10, 64, 63), threshold=0.3)
    assert op.halo((100, 200, 200)) == (5, 32, 31)
    opening = florin.morphology.binary_opening()
    assert opening.halo((10, 10, 10)) == (2, 2, 2)
    assert florin.morphology.binary_erosion(footprint=np.ones((1, 5, 3))).halo((9, 9, 9)) == (0, 2, 1)


def test_default_ndnt_halo_uses_full_volume_shape():
    op = thresholding.ndnt()
    assert op.halo((80, 160, 8)) == tuple(max(1, round(n / 8)) // 2 for n in (80, 160, 8))


def test_operators_pickle_by_reference_and_by_value():
    op = florin.morphology.binary_opening()
    again = pickle.loads(pickle.dumps(op))
    assert again.factory is op.factory
    local = florin.florinate(lambda image, k=2: image + k)(k=5)
    assert cloudpickle.loads(cloudpickle.dumps(local))(np.array([1])).tolist() == [6]


def test_florinate_rejects_function_without_image_argument():
    with pytest.raises(ValueError, match="takes no image"):
        florin.florinate(lambda: 0)


def test_array_like_first_argument_is_the_image():
    # The signature decides, not the argument's type: lists and dask arrays are images too.
    listed = thresholding.ndnt([[10, 100], [100, 100]], shape=3)
    assert isinstance(listed, xr.DataArray) and listed.shape == (2, 2)
    dask_array = pytest.importorskip("dask.array")
    data = np.arange(16, dtype=np.uint8).reshape(4, 4)
    lazy = thresholding.ndnt(dask_array.from_array(data), shape=3)
    assert isinstance(lazy, xr.DataArray)
    assert np.array_equal(lazy.values, thresholding.ndnt(data, shape=3).values)


def test_none_as_the_image_is_an_error():
    with pytest.raises(ParameterError, match="image is None"):
        thresholding.ndnt(None)


def test_builtin_operators_take_options_by_keyword_only():
    # Issue 16 item 5: the image (or the regions) is the only positional parameter of every built-in operator;
    # classify's classifiers are its *varargs.
    import importlib
    import inspect

    from florin import _catalog

    kinds = inspect.Parameter
    for row in _catalog.OPERATORS:
        module, _, attr = row["ref"].partition(":")
        factory = getattr(importlib.import_module(module), attr)
        if not isinstance(factory, florin.operators.Florinated):
            continue  # load/save/tile/join are step factories without an image
        options = list(factory.signature.parameters.values())[1:]
        positional = [p.name for p in options if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
        assert positional == [], f"{row['name']}: {positional} can be passed by position"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda im: thresholding.ndnt(im, (3, 3)), "ndnt: pass shape by keyword: ndnt(image, shape=...)"),
        (lambda im: thresholding.ndnt(im, 3, 0.3),
         "ndnt: pass shape, threshold by keyword: ndnt(image, shape=..., threshold=...)"),
        (lambda im: thresholding.ndnt(3), "ndnt: pass shape by keyword: ndnt(image, shape=...)"),
        (lambda im: florin.morphology.binary_opening(im > 50, np.ones((3, 3))),
         "binary_opening: pass footprint by keyword: binary_opening(image, footprint=...)"),
        (lambda im: florin.morphology.remove_small_objects(im > 50, 5),
         "remove_small_objects: pass min_size by keyword: remove_small_objects(image, min_size=...)"),
        (lambda im: florin.conncomp.label(im > 50, 2), "label: pass connectivity by keyword: label(image, connectivity=...)"),
    ],
)
def test_option_given_by_position_is_a_one_line_parameter_type_error(call, message):
    from florin.errors import ParameterTypeError

    image = np.full((5, 5), 100, np.uint8)
    image[2, 2] = 10
    with pytest.raises(ParameterTypeError) as err:
        call(image)
    assert str(err.value) == message
    assert thresholding.ndnt(image, shape=(3, 3)).values[2, 2]  # the keyword form runs
