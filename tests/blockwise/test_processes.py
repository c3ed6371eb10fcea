"""Every blockwise function gives the in-memory result under a real process pool's map.

A ``numpy.memmap`` or in-memory ``out`` bound with functools.partial would be
pickled as a copy into each task (its writes lost), and an h5py dataset does
not pickle at all: the blockwise functions pass arrays as references (memory
maps mapped again, HDF5 datasets reopened read-only, florin.io.create outputs
by path) and let workers return the blocks of an ``out`` they cannot write.
The pool uses forkserver: forking a process whose OpenMP runtime (numba's
``omp`` layer) is running aborts the child, whatever the blockwise code does.
"""

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import florin
import florin.io
from florin import blockwise, conncomp, morphology
from florin._kernels.label import label_dtype
from florin.blockwise._arrays import Sink, Source

from .strategies import masks, partitions

BLOCKS = (4, 5, 6)


@pytest.fixture(scope="module")
def pool_map():
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as pool:
        yield pool.map


@pytest.fixture(scope="module")
def mask():
    return np.random.default_rng(7).random((9, 11, 13)) < 0.45


def _memmap(path, data=None, *, shape=None, dtype=None):
    mm = np.lib.format.open_memmap(path, mode="w+", shape=shape or data.shape, dtype=dtype or data.dtype)
    if data is not None:
        mm[...] = data
    return mm


def test_memmap_sink_pickles_as_its_file_and_writes_it(tmp_path):
    mm = _memmap(tmp_path / "a.npy", shape=(4, 5), dtype=np.int32)
    view = mm[1:, ::2]
    copy = pickle.loads(pickle.dumps(Sink(view)))
    assert copy.put((slice(0, 3), slice(0, 3)), np.full((3, 3), 9)) is None
    assert (mm[1:, ::2] == 9).all() and (mm[:, 1::2] == 0).all() and (mm[0] == 0).all()
    src = pickle.loads(pickle.dumps(Source(np.load(tmp_path / "a.npy", mmap_mode="r")[1:, ::2])))
    np.testing.assert_array_equal(src[(slice(None), slice(None))], np.full((3, 3), 9))


def test_unshareable_sink_defers_to_the_parent():
    out = np.zeros((2, 2), np.uint8)
    copy = pickle.loads(pickle.dumps(Sink(out)))
    assert len(pickle.dumps(Sink(np.zeros((1000, 1000))))) < 200  # the array itself is not shipped
    pending = copy.put((slice(0, 1), slice(None)), np.ones((1, 2), np.uint8))
    assert not out.any()
    Sink(out).apply(pending)
    np.testing.assert_array_equal(out, [[1, 1], [0, 0]])


@pytest.mark.parametrize("kind", ["memmap", "ndarray", "hdf5", "create"])
def test_label(tmp_path, pool_map, mask, kind):
    expected = conncomp.label(mask, connectivity=2).values
    dtype = label_dtype(mask.size)
    src = _memmap(tmp_path / "mask.npy", mask)
    if kind == "memmap":
        out = _memmap(tmp_path / "out.npy", shape=mask.shape, dtype=dtype)
    elif kind == "ndarray":
        out = np.zeros(mask.shape, dtype)
    elif kind == "create":
        out = florin.io.create(tmp_path / "out.h5", mask.shape, dtype)
    if kind == "hdf5":
        with h5py.File(tmp_path / "out.h5", "w") as f:
            out = f.create_dataset("labels", mask.shape, dtype)
            n = blockwise.label(src, out, blocks=BLOCKS, connectivity=2, map=pool_map)
            got = out[...]
    else:
        n = blockwise.label(src, out, blocks=BLOCKS, connectivity=2, map=pool_map)
        got = out.commit().volume().values if kind == "create" else np.asarray(out)
    np.testing.assert_array_equal(got, expected)
    assert n == expected.max()


@pytest.mark.parametrize(
    ("blockwise_filter", "in_memory"),
    [
        (blockwise.remove_small_objects, morphology.remove_small_objects),
        (blockwise.remove_small_holes, morphology.remove_small_holes),
    ],
)
@pytest.mark.parametrize("labelled", [False, True])
def test_size_filters(tmp_path, pool_map, mask, blockwise_filter, in_memory, labelled):
    image = conncomp.label(mask).values.astype(np.int32) if labelled else mask
    expected = in_memory(image, max_size=5, connectivity=1).values
    out = np.zeros_like(image)
    src = _memmap(tmp_path / "image.npy", image)
    blockwise_filter(src, out, blocks=BLOCKS, max_size=5, connectivity=1, map=pool_map)
    np.testing.assert_array_equal(out, expected)


def test_regionprops_classify_reconstruct(tmp_path, pool_map, mask):
    labels = conncomp.label(mask, connectivity=3).values
    img = np.random.default_rng(8).integers(0, 4096, mask.shape).astype(np.uint16)
    with h5py.File(tmp_path / "img.h5", "w") as f:
        f["img"] = img
    step = florin.classify(florin.bounds_classifier("small", area=4), florin.bounds_classifier("big"))
    expected = step(conncomp.regionprops(labels, intensity=img))
    src = _memmap(tmp_path / "labels.npy", labels)
    with h5py.File(tmp_path / "img.h5", "r") as f:
        regions = step(blockwise.regionprops(src, f["img"], blocks=BLOCKS, map=pool_map))
    for key, col in expected.table.items():
        np.testing.assert_array_equal(regions.table[key], col, err_msg=key)
    want = florin.reconstruct(expected).values
    for out in (np.zeros(mask.shape, np.uint8), _memmap(tmp_path / "classes.npy", shape=mask.shape, dtype=np.uint8)):
        blockwise.reconstruct(src, regions, out, blocks=BLOCKS, map=pool_map)
        np.testing.assert_array_equal(out, want)


@settings(max_examples=12, deadline=None)
@given(data=st.data(), ndim=st.sampled_from([2, 3]))
def test_random_partitions_and_connectivities(pool_map, data, ndim):
    mask = data.draw(masks(ndim))
    blocks = data.draw(partitions(mask.shape))
    connectivity = data.draw(st.integers(1, ndim))
    expected = conncomp.label(mask, connectivity=connectivity).values
    out = np.zeros(mask.shape, label_dtype(mask.size))  # in memory: the workers' blocks come back to the parent
    n = blockwise.label(mask, out, blocks=blocks, connectivity=connectivity, map=pool_map)
    np.testing.assert_array_equal(out, expected)
    assert n == int(expected.max(initial=0))
    got = blockwise.regionprops(out, mask, blocks=blocks, map=pool_map)
    want = conncomp.regionprops(expected, intensity=mask)
    for key, col in want.table.items():
        np.testing.assert_array_equal(got.table[key], col, err_msg=key)


@pytest.mark.parametrize("executor", ["Multithread", "Multiprocess"])
def test_florin_executor_maps(tmp_path, mask, executor):
    ex = getattr(florin, executor)(workers=2)
    expected = conncomp.label(mask, connectivity=3).values
    for out in (np.zeros(mask.shape, np.uint32), _memmap(tmp_path / "l.npy", shape=mask.shape, dtype=np.uint32)):
        assert blockwise.label(mask, out, blocks=BLOCKS, connectivity=3, map=ex.map) == expected.max()
        np.testing.assert_array_equal(out, expected)
    out = np.zeros_like(mask)
    blockwise.remove_small_holes(mask, out, blocks=BLOCKS, max_size=4, map=ex.map)
    np.testing.assert_array_equal(out, morphology.remove_small_holes(mask, max_size=4).values)
    step = florin.classify(florin.bounds_classifier("small", area=4), florin.bounds_classifier("big"))
    regions = step(blockwise.regionprops(expected, blocks=BLOCKS, map=ex.map))
    classes = np.zeros(mask.shape, np.uint8)
    blockwise.reconstruct(expected, regions, classes, blocks=BLOCKS, map=ex.map)
    np.testing.assert_array_equal(classes, florin.reconstruct(step(conncomp.regionprops(expected))).values)
    saved = blockwise.save(classes, tmp_path / "classes.h5", blocks=BLOCKS, map=ex.map)
    np.testing.assert_array_equal(saved.values, classes)
