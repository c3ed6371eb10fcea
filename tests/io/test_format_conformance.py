"""The conformance suite every registered format passes, plugin formats included.

The formats come from the registry when the tests are collected, so a plugin's
format (the example plugin's ``example-raw`` here) is tested like florin's own.
What a format cannot do it declares on its :class:`florin.io.Format`
(``dtypes``, ``ndims``, ``lazy``; ``key=`` support is its reader's signature),
and the suite then checks that it refuses cleanly instead of skipping it.
"""

import inspect
import os

import numpy as np
import pytest

import florin
from florin.errors import FlorinError, FormatError, InputFileError, MissingInputError, ParameterError
from florin.io import read, write
from florin.io.lazy import FileArray, is_lazy, lazy_volume
from florin.registry import get_registry

DTYPES = [np.uint8, np.uint16, np.uint32, np.int16, np.int32, np.int64, np.float32, np.float64, bool]
FORMATS = sorted(get_registry().formats)
SPACING = (2.0, 0.5, 0.25)


def _format(name):
    return get_registry().format(name)


def _path(tmp_path, name):
    """An output path of format ``name``: its first extension, or a bare name (directory formats)."""
    fmt = _format(name)
    return os.path.join(tmp_path, "out" + (fmt.extensions[0] if fmt.extensions else ""))


def _volume(rng, dtype, shape=(4, 6, 8)):
    data = (rng.random(shape) * 100).astype(dtype)
    return florin.as_volume(data, spacing=SPACING, units="um", attrs={"note": "conformance"})


def _accepts(fmt, dtype):
    return fmt.dtypes is None or np.dtype(dtype) in {np.dtype(d) for d in fmt.dtypes}


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip_per_dtype(tmp_path, rng, name, dtype):
    fmt, path, vol = _format(name), _path(tmp_path, name), _volume(rng, dtype)
    if not _accepts(fmt, dtype):  # declared: a one-line FormatError, and no file
        with pytest.raises(FormatError, match=np.dtype(dtype).name):
            write(path, vol, format=name)
        assert os.listdir(tmp_path) == []
        return
    write(path, vol, format=name)
    back = read(path, format=name)
    assert back.shape == vol.shape and back.dtype == np.dtype(dtype) and back.dims == ("z", "y", "x")
    np.testing.assert_array_equal(back.values, vol.values)
    assert back.attrs["note"] == "conformance"


@pytest.mark.parametrize("name", FORMATS)
def test_ndims_outside_the_declared_range_are_refused(tmp_path, rng, name):
    fmt = _format(name)
    low, high = fmt.ndims
    for ndim in sorted(n for n in {1, 2, 3, 4, low - 1, high + 1} if 1 <= n <= 5):
        path = os.path.join(tmp_path, f"n{ndim}", os.path.basename(_path(tmp_path, name)))
        vol = florin.as_volume(rng.integers(0, 9, (3,) * ndim).astype(np.uint8))
        if low <= ndim <= high:
            write(path, vol, format=name)
            np.testing.assert_array_equal(read(path, format=name).values, vol.values)
        else:
            with pytest.raises(FormatError):
                write(path, vol, format=name)
            assert not os.path.exists(os.path.dirname(path)) or os.listdir(os.path.dirname(path)) == []


@pytest.mark.parametrize("name", FORMATS)
def test_reads_are_lazy_or_declared_eager(tmp_path, rng, name):
    fmt, path, vol = _format(name), _path(tmp_path, name), _volume(rng, np.uint16)
    write(path, vol, format=name)
    back = read(path, format=name)
    assert is_lazy(back) is fmt.lazy and is_lazy(back[1:3, 2:]) is fmt.lazy
    np.testing.assert_array_equal(back[1:3, 2:, ::3].values, vol.values[1:3, 2:, ::3])


@pytest.mark.parametrize("name", FORMATS)
def test_spacing_and_units_round_trip(tmp_path, rng, name):
    path = _path(tmp_path, name)
    write(path, _volume(rng, np.float32), format=name)
    back = read(path, format=name)
    assert florin.get_spacing(back) == SPACING and back.attrs["units"] == "um"


def _fail_after_reading(path, key, index):
    raise OSError("the source went away mid-write")


@pytest.mark.parametrize("name", FORMATS)
def test_a_failing_write_leaves_no_file(tmp_path, name):
    source = tmp_path / "source"
    source.write_bytes(b"")
    data = FileArray(source, "conformance", None, (4, 6, 8), np.uint8, _fail_after_reading)
    vol = lazy_volume(data, spacing=SPACING)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FlorinError, match="went away"):
        write(_path(out, name), vol, format=name)
    assert os.listdir(out) == []


@pytest.mark.parametrize("name", FORMATS)
def test_missing_file_is_one_typed_error(tmp_path, name):
    path = _path(tmp_path, name)
    with pytest.raises(MissingInputError, match="does not exist"):
        read(path, format=name)


@pytest.mark.parametrize("name", FORMATS)
def test_bad_key_is_one_typed_error(tmp_path, rng, name):
    fmt, path = _format(name), _path(tmp_path, name)
    write(path, _volume(rng, np.uint8), format=name)
    if "key" in inspect.signature(fmt.read).parameters:
        with pytest.raises(InputFileError, match="'no-such-array'"):
            read(path, format=name, key="no-such-array")
    else:  # declared by its reader's signature: key= is refused as an option it does not take
        with pytest.raises(ParameterError, match="does not take option 'key'"):
            read(path, format=name, key="no-such-array")


def test_a_declared_dtype_limit_is_enforced_by_write(tmp_path, monkeypatch):
    npy = _format("npy")
    narrow = florin.io.Format("u8-only", (".u8",), npy.read, npy.write, dtypes=(np.uint8,))
    monkeypatch.setitem(get_registry().formats, "u8-only", narrow)
    with pytest.raises(FormatError, match=r"as u8-only: it holds uint8, not uint16"):
        write(tmp_path / "v.u8", np.zeros((2, 2), np.uint16))
    assert os.listdir(tmp_path) == []
    write(tmp_path / "v.u8", np.arange(4, dtype=np.uint8).reshape(2, 2))
    assert read(tmp_path / "v.u8", format="npy").values.tolist() == [[0, 1], [2, 3]]
