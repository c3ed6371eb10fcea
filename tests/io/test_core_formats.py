import os

import numpy as np
import pytest
import tifffile

import florin
from florin.errors import FormatError, InputFileError, OutputExistsError, ParameterError
from florin.io import read, write

DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.uint32, np.float32, np.float64, bool, np.int64]


@pytest.mark.parametrize("ext", [".tif", ".ome.tif", ".npy"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_roundtrip_dtype_shape_spacing_attrs(tmp_path, rng, ext, dtype):
    data = (rng.random((3, 5, 7)) * 100).astype(dtype)
    vol = florin.as_volume(data, spacing=(2.0, 0.5, 0.25), units="um", attrs={"classes": {"1": "cell"}})
    path = tmp_path / f"v{ext}"
    write(path, vol)
    back = read(path)
    assert back.dtype == np.dtype(dtype) and back.shape == data.shape
    np.testing.assert_array_equal(back.values, data)
    assert florin.get_spacing(back) == (2.0, 0.5, 0.25)
    assert back.attrs["units"] == "um" and back.attrs["classes"] == {"1": "cell"}


def test_imagej_tiff_from_other_tools_gives_spacing(tmp_path):
    path = tmp_path / "fiji.tif"
    tifffile.imwrite(path, np.zeros((4, 6, 8), np.uint16), imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"spacing": 1.5, "unit": "micron", "axes": "ZYX"})
    vol = read(path)
    assert vol.dims == ("z", "y", "x")
    assert florin.get_spacing(vol) == pytest.approx((1.5, 0.2, 0.2))
    assert vol.attrs["units"] == "um"


def test_ome_tiff_from_other_tools_gives_spacing(tmp_path):
    path = tmp_path / "ome.ome.tif"
    tifffile.imwrite(path, np.zeros((4, 6, 8), np.float64), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeZ": 3.0, "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.25})
    assert florin.get_spacing(read(path)) == (3.0, 0.5, 0.25)


def test_reads_are_lazy(tmp_path):
    from florin.io.lazy import is_lazy

    for name in ("a.tif", "a.npy"):
        write(tmp_path / name, np.zeros((4, 16, 16), np.uint16))
        vol = read(tmp_path / name)
        assert is_lazy(vol) and is_lazy(vol[1:3, 2:])


def test_failing_save_leaves_no_file(tmp_path, monkeypatch):
    import florin.io.tiff as tiff

    def explode(path, volume, **options):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    formats = florin.registry.get_registry().formats
    monkeypatch.setitem(formats, "tiff", florin.io.Format("tiff", (".tif",), tiff.read_tiff, explode))
    with pytest.raises(FormatError, match="disk full"):
        write(tmp_path / "out.tif", np.zeros((2, 2)))
    assert os.listdir(tmp_path) == []


def test_existing_output_needs_overwrite(tmp_path):
    path = tmp_path / "o.npy"
    write(path, np.zeros(3))
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        write(path, np.ones(3))
    write(path, np.ones(3), overwrite=True)
    assert np.load(path).tolist() == [1, 1, 1]


def test_pipeline_never_overwrites_its_input(tmp_path):
    path = tmp_path / "in.npy"
    np.save(path, np.arange(4))
    pipe = florin.Serial(florin.load(), florin.save(path, overwrite=True))
    with pytest.raises(OutputExistsError, match="input"):
        pipe(path)
    assert np.load(path).tolist() == [0, 1, 2, 3]


def test_errors_for_missing_file_unknown_extension_and_bad_option(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        read(tmp_path / "missing.tif")
    with pytest.raises(FormatError, match="known extensions"):
        read(tmp_path / "volume.xyz")
    with pytest.raises(FormatError, match="unknown format"):
        florin.load(format="nope")
    np.save(tmp_path / "a.npy", np.zeros(2))
    with pytest.raises(ParameterError, match="valid options"):
        read(tmp_path / "a.npy", bogus=1)


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.tif"
    path.write_bytes(b"not a tiff at all")
    with pytest.raises(InputFileError, match="bad.tif"):
        read(path)


@pytest.mark.parametrize("shape", [(1, 5, 7), (1, 3, 5, 7), (3, 1, 7)])
def test_tiff_keeps_length_one_axes(tmp_path, shape):
    data = (np.arange(np.prod(shape)) % 200).reshape(shape).astype(np.uint16)
    write(tmp_path / "a.tif", data)
    back = read(tmp_path / "a.tif")
    assert back.shape == shape
    np.testing.assert_array_equal(back.values, data)
