"""Round trips and foreign files for every registered format."""

import json
import os

import h5py
import numpy as np
import pytest
import xarray as xr

import florin
from florin.errors import FormatError, InputFileError, OutputExistsError, ParameterError
from florin.io import read, write
from florin.io.lazy import is_lazy

DTYPES = [np.uint8, np.uint16, np.uint32, np.int16, np.int32, np.int64, np.float32, np.float64, bool]
TARGETS = {
    "hdf5": ("v.h5", {}),
    "netcdf": ("v.nc", {}),
    "zarr": ("v.zarr", {}),
    "ome-zarr": ("v.ome.zarr", {}),
    "ome-zarr-0.4": ("v.ome.zarr", {"version": "0.4", "levels": 2}),
    "tiff": ("v.tif", {}),
    "tiff-zlib": ("v.tif", {"compression": "zlib"}),
    "npy": ("v.npy", {}),
    "stack-tif": ("slices/", {}),
    "stack-png": ("slices/", {"suffix": ".png"}),
}


def _volume(rng, dtype, shape=(6, 10, 12)):
    data = (rng.random(shape) * 100).astype(dtype)
    return florin.as_volume(data, spacing=(2.0, 0.5, 0.25), units="um",
                            attrs={"classes": {"1": "cell"}, "note": "round trip"})


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_roundtrip_every_format(tmp_path, rng, target, dtype):
    name, options = TARGETS[target]
    if target == "stack-png" and np.dtype(dtype) not in (np.uint8, np.uint16, bool):
        with pytest.raises(FormatError, match="PNG"):
            write(os.path.join(tmp_path, name), _volume(rng, dtype), **options)
        assert not os.path.exists(os.path.join(tmp_path, name))
        return
    vol = _volume(rng, dtype)
    write(os.path.join(tmp_path, name), vol, **options)
    back = read(os.path.join(tmp_path, name))
    assert is_lazy(back)
    assert back.shape == vol.shape and back.dtype == np.dtype(dtype) and back.dims == ("z", "y", "x")
    np.testing.assert_array_equal(back.values, vol.values)
    np.testing.assert_array_equal(back[2:5, 3, ::3].values, vol.values[2:5, 3, ::3])
    assert florin.get_spacing(back) == (2.0, 0.5, 0.25)
    assert back.coords["z"].values.tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert back.attrs["units"] == "um"
    assert back.attrs["classes"] == {"1": "cell"} and back.attrs["note"] == "round trip"
    # Nothing but the output is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({name.rstrip("/"), *(
        [name + ".json"] if name.endswith(".npy") else [])})


@pytest.mark.parametrize("name", ["v.h5", "v.nc", "v.zarr", "v.ome.zarr", "v.tif", "v.npy", "stack/"])
def test_roundtrip_2d_and_eager_reads(tmp_path, rng, name):
    vol = florin.as_volume((rng.random((9, 11)) * 200).astype(np.uint8), spacing=(0.5, 0.25))
    write(os.path.join(tmp_path, name), vol)
    back = read(os.path.join(tmp_path, name))
    assert back.dims == ("y", "x") and florin.get_spacing(back) == (0.5, 0.25)
    np.testing.assert_array_equal(back.values, vol.values)
    eager = read(os.path.join(tmp_path, name), lazy=False)
    assert not is_lazy(eager)
    np.testing.assert_array_equal(eager.values, vol.values)


def test_format_option_overrides_the_extension(tmp_path, rng):
    vol = _volume(rng, np.uint16)
    write(tmp_path / "volume.dat", vol, format="hdf5")
    assert h5py.is_hdf5(tmp_path / "volume.dat")
    np.testing.assert_array_equal(read(tmp_path / "volume.dat", format="hdf5").values, vol.values)


# -- HDF5 ----------------------------------------------------------------------------------
def test_hdf5_key_chunks_and_compression(tmp_path, rng):
    vol = _volume(rng, np.uint16, shape=(20, 64, 64))
    write(tmp_path / "c.h5", vol, key="/images/raw", chunks=(5, 32, 32), compression="gzip", compression_opts=6)
    with h5py.File(tmp_path / "c.h5") as f:
        ds = f["images/raw"]
        assert ds.chunks == (5, 32, 32) and ds.compression == "gzip" and ds.compression_opts == 6
        assert list(ds.attrs["element_size_um"]) == [2.0, 0.5, 0.25]
        assert [d.decode() if isinstance(d, bytes) else d for d in ds.attrs["dims"]] == ["z", "y", "x"]
    np.testing.assert_array_equal(read(tmp_path / "c.h5").values, vol.values)
    np.testing.assert_array_equal(read(tmp_path / "c.h5", key="images/raw").values, vol.values)


def test_hdf5_default_writes_are_chunked_and_compressed(tmp_path):
    write(tmp_path / "d.h5", np.zeros((64, 256, 256), np.uint16))
    with h5py.File(tmp_path / "d.h5") as f:
        assert f["data"].chunks is not None and f["data"].compression == "gzip"
    assert os.path.getsize(tmp_path / "d.h5") < 1_000_000  # 8 MiB of zeros


def test_hdf5_key_errors_list_the_datasets(tmp_path):
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["a"] = np.zeros((3, 3))
        f.create_group("g")["b"] = np.ones((2, 2, 2), np.uint16)
    with pytest.raises(InputFileError, match=r"m\.h5.*2 datasets \(/a, /g/b\); pass key="):
        read(tmp_path / "m.h5")
    with pytest.raises(InputFileError, match=r"no dataset 'nope'; datasets present: /a, /g/b"):
        read(tmp_path / "m.h5", key="nope")
    with pytest.raises(InputFileError, match="group 'g'"):
        read(tmp_path / "m.h5", key="g")
    assert read(tmp_path / "m.h5", key="/g/b").dims == ("z", "y", "x")


def test_hdf5_from_other_tools_gives_spacing(tmp_path):
    with h5py.File(tmp_path / "fiji.h5", "w") as f:
        ds = f.create_dataset("exported", data=np.zeros((4, 5, 6), np.uint8))
        ds.attrs["element_size_um"] = [1.5, 0.2, 0.2]
        ds.attrs["comment"] = "from Fiji"
    vol = read(tmp_path / "fiji.h5")
    assert florin.get_spacing(vol) == pytest.approx((1.5, 0.2, 0.2))
    assert vol.attrs["units"] == "um" and vol.attrs["comment"] == "from Fiji"


# -- NetCDF --------------------------------------------------------------------------------
def test_netcdf_dims_coords_attrs_are_standard(tmp_path, rng):
    vol = _volume(rng, np.float32)
    vol.name = "density"
    write(tmp_path / "v.nc", vol)
    ds = xr.open_dataset(tmp_path / "v.nc")
    assert list(ds.data_vars) == ["density"] and ds["density"].dims == ("z", "y", "x")
    np.testing.assert_allclose(ds["x"].values, np.arange(12) * 0.25)
    assert ds["density"].attrs["units"] == "um" and ds["density"].attrs["note"] == "round trip"
    ds.close()


def test_netcdf_from_other_tools(tmp_path):
    ds = xr.Dataset(
        {"temp": (("z", "y", "x"), np.arange(24, dtype=np.float64).reshape(2, 3, 4), {"long_name": "T"}),
         "other": (("z",), np.zeros(2))},
        coords={"z": [0.0, 10.0], "y": [0.0, 2.0, 4.0], "x": [0.0, 1.0, 2.0, 3.0]},
    )
    ds.to_netcdf(tmp_path / "t.nc", engine="netcdf4")
    with pytest.raises(InputFileError, match=r"2 data variables \(temp, other\); pass key="):
        read(tmp_path / "t.nc")
    with pytest.raises(InputFileError, match="no variable 'nope'; data variables present: temp, other"):
        read(tmp_path / "t.nc", key="nope")
    vol = read(tmp_path / "t.nc", key="temp")
    assert vol.attrs["long_name"] == "T" and florin.get_spacing(vol) == (10.0, 2.0, 1.0)
    np.testing.assert_array_equal(vol[1].values, ds["temp"].values[1])


# -- Zarr / OME-Zarr -----------------------------------------------------------------------
def test_zarr_groups_key_and_errors(tmp_path):
    import zarr

    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("raw", shape=(4, 5, 6), dtype="u2")[...] = 7
    g.create_group("labels").create_array("cells", shape=(4, 5, 6), dtype="u4")
    with pytest.raises(InputFileError, match=r"2 arrays \(labels/cells, raw\); pass key="):
        read(tmp_path / "g.zarr")
    with pytest.raises(InputFileError, match=r"no array 'nuclei'; arrays present: labels/cells, raw"):
        read(tmp_path / "g.zarr", key="nuclei")
    assert int(read(tmp_path / "g.zarr", key="raw").values.max()) == 7
    assert read(tmp_path / "g.zarr", key="labels/cells").dtype == np.uint32


def test_ome_zarr_metadata_is_valid_ngff(tmp_path, rng):
    import zarr

    vol = _volume(rng, np.uint16, shape=(4, 16, 18))
    write(tmp_path / "i.ome.zarr", vol, levels=3)
    group = zarr.open_group(str(tmp_path / "i.ome.zarr"), mode="r")
    assert group.metadata.zarr_format == 3
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    (ms,) = ome["multiscales"]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert all(a["type"] == "space" and a["unit"] == "micrometer" for a in ms["axes"])
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2"]
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales == [[2.0, 0.5, 0.25], [2.0, 1.0, 0.5], [2.0, 2.0, 1.0]]
    assert group["1"].shape == (4, 8, 9) and group["2"].shape == (4, 4, 5)
    assert tuple(group["0"].metadata.dimension_names) == ("z", "y", "x")
    np.testing.assert_array_equal(group["1"][...], vol.values[:, ::2, ::2])
    lvl = read(tmp_path / "i.ome.zarr", level=2)
    assert lvl.shape == (4, 4, 5) and florin.get_spacing(lvl) == (2.0, 2.0, 1.0)


def test_ome_zarr_validates_with_ome_zarr_models(tmp_path, rng):
    models = pytest.importorskip("ome_zarr_models", reason="optional NGFF validator (pip install ome-zarr-models)")
    import zarr
    from ome_zarr_models.v04.image import Image as Image04
    from ome_zarr_models.v05.image import Image as Image05

    vol = _volume(rng, np.uint16, shape=(4, 16, 18))
    write(tmp_path / "a.ome.zarr", vol, levels=2)
    write(tmp_path / "b.ome.zarr", vol, version="0.4", levels=2)
    Image05.from_zarr(zarr.open_group(str(tmp_path / "a.ome.zarr"), mode="r"))
    Image04.from_zarr(zarr.open_group(str(tmp_path / "b.ome.zarr"), mode="r"))
    assert models


def test_ome_zarr_from_other_tools_level_0_with_scale(tmp_path):
    """An NGFF 0.4 image as other tools write it: 5-D, Zarr v2, nested scale transforms."""
    import zarr

    g = zarr.open_group(str(tmp_path / "x.ome.zarr"), mode="w", zarr_format=2)
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"},
            {"name": "z", "type": "space", "unit": "nanometer"}, {"name": "y", "type": "space", "unit": "nanometer"},
            {"name": "x", "type": "space", "unit": "nanometer"}]
    g.attrs["multiscales"] = [{"version": "0.4", "name": "em", "axes": axes, "datasets": [
        {"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 40, 8, 8]}]},
        {"path": "s1", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 40, 16, 16]}]},
    ]}]
    g.create_array("s0", shape=(1, 1, 3, 8, 8), dtype="u1", chunk_key_encoding={"name": "v2", "separator": "/"})
    g["s0"][...] = 3
    g.create_array("s1", shape=(1, 1, 3, 4, 4), dtype="u1", chunk_key_encoding={"name": "v2", "separator": "/"})
    vol = read(tmp_path / "x.ome.zarr")
    assert vol.dims == ("t", "c", "z", "y", "x") and vol.shape == (1, 1, 3, 8, 8)
    assert florin.get_spacing(vol) == (1.0, 1.0, 40.0, 8.0, 8.0) and vol.attrs["units"] == "nm"
    assert int(vol.values.sum()) == 3 * 3 * 64
    with pytest.raises(InputFileError, match="2 resolution levels; level=5"):
        read(tmp_path / "x.ome.zarr", level=5)


def test_ome_zarr_rejects_volumes_it_cannot_describe(tmp_path):
    with pytest.raises(FormatError, match="2 to 5 dims"):
        write(tmp_path / "a.ome.zarr", np.zeros((2, 2, 2, 2, 2, 2), np.uint8))
    assert not os.path.exists(tmp_path / "a.ome.zarr")


# -- slice stacks --------------------------------------------------------------------------
def test_stack_natural_order_and_foreign_slices(tmp_path):
    import tifffile

    folder = tmp_path / "scan"
    folder.mkdir()
    for i in (1, 2, 10, 11, 9):
        tifffile.imwrite(folder / f"img_{i}.tif", np.full((4, 5), i, np.uint16))
    (folder / "notes.txt").write_text("not a slice")
    vol = read(folder)
    assert vol.dims == ("z", "y", "x") and vol.shape == (5, 4, 5)
    assert vol[:, 0, 0].values.tolist() == [1, 2, 9, 10, 11]
    assert vol[3].values.max() == 10  # a lazy read of one plane


def test_stack_png_slices_from_other_tools(tmp_path):
    from PIL import Image

    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((6, 7), i * 10, np.uint8)).save(folder / f"z{i}.png")
    vol = read(folder)
    assert vol.shape == (3, 6, 7) and vol.dtype == np.uint8
    assert vol[:, 2, 3].values.tolist() == [0, 10, 20]


def test_stack_errors(tmp_path):
    import tifffile

    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="holds no slices"):
        read(tmp_path / "empty")
    folder = tmp_path / "mixed"
    folder.mkdir()
    tifffile.imwrite(folder / "a1.tif", np.zeros((4, 5), np.uint8))
    tifffile.imwrite(folder / "a2.tif", np.zeros((6, 5), np.uint8))
    with pytest.raises(InputFileError, match=r"a2\.tif.*same shape"):  # from the headers, when the folder is read
        read(folder)
    with pytest.raises(ParameterError, match="suffix"):
        write(os.path.join(tmp_path, "out/"), np.zeros((2, 3, 3)), suffix=".jpg")
    with pytest.raises(FormatError, match="2-D or 3-D"):
        write(os.path.join(tmp_path, "out4/"), np.zeros((2, 2, 3, 3)))


# -- errors common to all formats ----------------------------------------------------------
@pytest.mark.parametrize("name", ["v.h5", "v.nc", "v.zarr", "v.ome.zarr", "v.tif", "v.npy", "stack/"])
def test_existing_output_needs_overwrite(tmp_path, name):
    write(os.path.join(tmp_path, name), np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(OutputExistsError, match="already exists; pass overwrite=True"):
        write(os.path.join(tmp_path, name), np.ones((2, 3, 4), np.uint8))
    write(os.path.join(tmp_path, name), np.ones((2, 3, 4), np.uint8), overwrite=True)
    assert read(os.path.join(tmp_path, name)).values.min() == 1


@pytest.mark.parametrize("name", ["v.h5", "v.nc", "v.zarr", "v.ome.zarr", "v.tif", "v.npy", "stack/"])
def test_parent_directories_are_created_and_missing_inputs_named(tmp_path, name):
    path = os.path.join(tmp_path, "a", "b", name)
    write(path, np.zeros((2, 3, 4), np.uint8))
    assert read(path).shape == (2, 3, 4)
    with pytest.raises(InputFileError, match=r"missing.* does not exist"):
        read(os.path.join(tmp_path, "missing" + name))


@pytest.mark.parametrize("name", ["v.h5", "v.nc", "v.zarr", "v.tif", "v.npy"])
def test_never_writes_over_the_file_being_read(tmp_path, name):
    write(os.path.join(tmp_path, name), np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    vol = read(os.path.join(tmp_path, name))
    with pytest.raises(OutputExistsError, match="input being read"):
        write(os.path.join(tmp_path, name), vol, overwrite=True)
    np.testing.assert_array_equal(read(os.path.join(tmp_path, name)).values, np.arange(24).reshape(2, 3, 4))


def test_unknown_extension_lists_formats_and_the_extra(tmp_path, monkeypatch, fresh_registry):
    import florin.builtin

    with pytest.raises(FormatError, match=r"known extensions: .*\.h5.*\.nc.*\.zarr"):
        write(tmp_path / "v.xyz", np.zeros(3))
    monkeypatch.setattr(florin.builtin, "PARTS", tuple(p for p in florin.builtin.PARTS if "zarr" not in p.name))
    florin.registry.reset_registry()
    with pytest.raises(FormatError, match=r"zarr \(extra \[zarr\]\)"):
        read(tmp_path / "v.zarr")


def _truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


@pytest.mark.parametrize("name", ["v.h5", "v.nc", "v.tif", "v.npy"])
def test_truncated_file_is_a_clear_error(tmp_path, rng, name):
    write(os.path.join(tmp_path, name), (rng.random((8, 64, 64)) * 1000).astype(np.uint16))
    _truncate(os.path.join(tmp_path, name))
    with pytest.raises(InputFileError, match=name.replace(".", r"\.")):
        np.asarray(read(os.path.join(tmp_path, name)))


@pytest.mark.parametrize("name", ["v.h5", "v.nc", "v.tif", "v.npy", "v.zarr"])
def test_corrupt_file_is_a_clear_error(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".zarr"):
        path.mkdir()
        (path / "zarr.json").write_text("{not json")
    else:
        path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(InputFileError, match=name.replace(".", r"\.")):
        read(path)


def test_corrupt_chunk_names_the_file(tmp_path, rng):
    write(tmp_path / "c.zarr", (rng.random((8, 64, 64)) * 1000).astype(np.uint16), chunks=(4, 64, 64))
    chunk = next(p for p in (tmp_path / "c.zarr").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"broken")
    with pytest.raises(InputFileError, match=r"c\.zarr"):
        np.asarray(read(tmp_path / "c.zarr"))


def test_florin_metadata_is_plain_json(tmp_path, rng):
    write(tmp_path / "v.h5", _volume(rng, np.uint8))
    with h5py.File(tmp_path / "v.h5") as f:
        meta = json.loads(f["data"].attrs["florin"])
    assert meta["dims"] == ["z", "y", "x"] and meta["attrs"]["spacing"] == [2.0, 0.5, 0.25]
