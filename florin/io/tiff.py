"""TIFF and OME-TIFF through tifffile.

Reads are lazy (see :mod:`florin.io.lazy`): an uncompressed contiguous file is
memory-mapped region by region, any other file (compressed, tiled) is read page
by page, so a tile reads only the pages (z planes) it covers. Voxel size comes
from OME metadata, else ImageJ metadata (``spacing`` for z, resolution tags for
y and x). Writes use the ImageJ hyperstack layout for the dtypes ImageJ/Fiji
open natively (uint8, uint16, float32) and OME-TIFF otherwise; florin's own
attrs (dims, spacing, class tables...) are kept as JSON in a private tag so
they round-trip exactly. A lazy volume is written page by page.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading

import numpy as np
import tifffile

from florin.errors import FormatError, InputFileError
from florin.io import Format
from florin.io._blocks import flushed, reserve
from florin.io._reader import stored_volume, volume_of
from florin.io.lazy import FileArray, cached_handle, is_lazy, read_raw
from florin.io.metadata import from_json, meta_json
from florin.volume import as_volume, get_spacing

__all__ = ["FORMAT"]

_META_TAG = 65432  # private TIFF tag holding florin's JSON metadata
_AXES = {"Z": "z", "Y": "y", "X": "x", "T": "t", "C": "c", "S": "c", "Q": "z", "I": "z"}
_UNITS = {"µm": "um", "\\u00B5m": "um", "micron": "um", "micrometer": "um"}


def _ome_spacing(tif):
    try:
        ome = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
    except (KeyError, TypeError):
        return {}, None
    pixels = (ome[0] if isinstance(ome, list) else ome).get("Pixels", {})
    spacing = {ax.lower(): float(pixels[f"PhysicalSize{ax}"]) for ax in "ZYX" if f"PhysicalSize{ax}" in pixels}
    unit = pixels.get("PhysicalSizeXUnit")
    return spacing, _UNITS.get(unit, unit)


def _imagej_spacing(tif):
    meta = tif.imagej_metadata or {}
    page = tif.pages.first
    spacing = {}
    if "spacing" in meta:
        spacing["z"] = float(meta["spacing"])
    for ax, tag in (("x", "XResolution"), ("y", "YResolution")):
        res = page.tags.get(tag)
        if res is not None and meta:
            num, den = res.value
            if num:
                spacing[ax] = den / num
    unit = meta.get("unit")
    return spacing, _UNITS.get(unit, unit)


def read_tiff(path, *, lazy=True, mmap=None, series=0):
    """Read a TIFF/OME-TIFF volume lazily (memory-mapped or page by page).

    Parameters
    ----------
    path : str or path-like
        The file.
    lazy : bool
        Read voxels only when indexed (default). ``False`` reads the file now.
    mmap : bool, optional
        Former name of ``lazy``.
    series : int
        Which image series of the file (default: the first).
    """
    if mmap is not None:
        lazy = mmap
    path = os.fspath(path)
    with _tifffile_errors(path), tifffile.TiffFile(path) as tif:
        try:
            ser = tif.series[series]
        except IndexError:
            raise InputFileError(f"{path!r} has {len(tif.series)} image series; series={series} does not exist") from None
        axes = ser.axes
        tag = tif.pages.first.tags.get(_META_TAG)
        meta = from_json(_tag_text(tag.value)) if tag is not None else None
        if tif.is_ome:
            spacing, unit = _ome_spacing(tif)
        elif tif.is_imagej:
            spacing, unit = _imagej_spacing(tif)
        else:
            spacing, unit = {}, None
        array = _lazy_array(path, tif, ser, series) if lazy else None
        data = array if array is not None else ser.asarray()
    if meta is not None and meta.get("dtype") == "bool" and data.dtype != bool:
        if array is None:
            data = data.astype(bool)
        else:
            data = FileArray(array.path, array.format, array.key, array.shape, array.dtype, array.reader,
                             array.options, view="bool")
    written = tuple(meta["shape"]) if meta is not None and meta.get("shape") is not None else None
    if written is not None and written != tuple(data.shape) and math.prod(written) == math.prod(data.shape):
        # tifffile drops length-1 axes (a single slice of a 3-D volume) and folds the leading axes of a volume
        # written without ImageJ or OME axes into one axis of pages (4-D and up): restore the written shape.
        if isinstance(data, FileArray) and data.reader is read_raw:  # contiguous: the same bytes, lazily
            data = FileArray(data.path, data.format, data.key, written, data.options["dtype"], read_raw,
                             {**data.options, "shape": written}, view=data.view)
        else:
            data = np.asarray(data if isinstance(data, np.ndarray) else tifffile.imread(path, series=series))
            data = data.reshape(written).astype(bool if meta.get("dtype") == "bool" else data.dtype, copy=False)
    if written is not None and written != tuple(data.shape):
        raise InputFileError(
            f"{path!r} is truncated or corrupt: it was written with shape {tuple(meta['shape'])} "
            f"but holds {tuple(data.shape)}"
        )
    vol = stored_volume(data, meta)
    if vol is not None:
        return vol
    vol = volume_of(data, dims=_dims_from_axes(axes, len(data.shape)))
    if spacing:
        vol = as_volume(vol, spacing=tuple(spacing.get(d, 1.0) for d in vol.dims), units=unit)
    return vol


@contextlib.contextmanager
def _tifffile_errors(path):
    """Turn what tifffile only logs while parsing (broken page chains: truncation) into an error.

    What tifffile logs in this thread meanwhile is held back: on an error only the
    error is raised (no log lines before it), otherwise it is passed on as logged.
    """
    held, thread = [], threading.get_ident()

    def _hold(record):
        if record.thread != thread:
            return True
        held.append(record)
        return False

    logger = logging.getLogger("tifffile")
    logger.addFilter(_hold)
    try:
        yield
    finally:
        logger.removeFilter(_hold)
    errors = [r.getMessage() for r in held if r.levelno >= logging.ERROR]
    if errors:
        raise InputFileError(f"{path!r} is truncated or corrupt: {errors[-1]}")
    for record in held:
        logger.handle(record)


def _lazy_array(path, tif, ser, series):
    """A FileArray over a series: memory-mapped if contiguous, else page by page (None if neither)."""
    shape, dtype = tuple(ser.shape), np.dtype(tif.byteorder + ser.dtype.char)
    size = os.path.getsize(path)
    if ser.dataoffset is not None:
        need = int(ser.dataoffset) + math.prod(shape) * dtype.itemsize
        if need > size:
            raise InputFileError(f"{path!r} is truncated: its voxels need {need} bytes but the file has {size}")
        return FileArray(path, "tiff", None, shape, dtype, read_raw,
                         {"offset": int(ser.dataoffset), "shape": shape, "dtype": dtype.str})
    pages = ser.pages
    page_shape = tuple(ser.keyframe.shape)
    lead = shape[: len(shape) - len(page_shape)]
    if shape[len(lead):] != page_shape or math.prod(lead) != len(pages):
        return None
    end = 0
    for page in pages:
        if page is None:
            return None
        offsets, counts = page.dataoffsets, page.databytecounts
        if offsets:
            end = max(end, max(o + c for o, c in zip(offsets, counts, strict=True)))
    if end > size:
        raise InputFileError(f"{path!r} is truncated: its pages need {end} bytes but the file has {size}")
    return FileArray(path, "tiff", None, shape, dtype, read_pages, {"series": series, "lead": lead})


_page_locks: dict = {}


def _open_tiff(path):
    return tifffile.TiffFile(path)


def read_pages(path, key, index, *, series, lead):
    """Read ``index`` of a series page by page: only the pages the index selects."""
    tif = cached_handle(_open_tiff, path)
    lock = _page_locks.setdefault(id(tif), threading.Lock())
    ser = tif.series[series]
    nlead = len(lead)
    numbers = np.arange(math.prod(lead), dtype=np.int64).reshape(lead)[index[:nlead]]
    inner = index[nlead:]
    flat = np.atleast_1d(numbers).ravel()
    parts = []
    with lock:
        for n in flat:
            parts.append(np.asarray(ser.pages[int(n)].asarray())[inner])
    if not parts:
        probe = np.empty(ser.keyframe.shape, ser.dtype)[inner]
        return np.empty(numbers.shape + probe.shape, ser.dtype)
    return np.stack(parts).reshape(numbers.shape + parts[0].shape)


def _tag_text(value):
    # Unknown tags come back as raw bytes (or a uint8 array) with a trailing NUL.
    if isinstance(value, np.ndarray):
        value = value.tobytes()
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value.rstrip("\0")


def _dims_from_axes(axes, ndim):
    if len(axes) != ndim:
        return None
    dims, seen = [], set()
    for i, ax in enumerate(axes):
        name = _AXES.get(ax, f"dim_{i}")
        if name in seen:
            name = f"dim_{i}"
        seen.add(name)
        dims.append(name)
    return dims


def _layout(volume, dtype, imagej, compression=None):
    """tifffile keyword arguments that write ``volume``'s metadata (ImageJ, OME or plain)."""
    dims = tuple(volume.dims)
    sp = volume.attrs.get("spacing")
    sp = get_spacing(volume) if sp is None or len(sp) != len(dims) else sp
    spacing = dict(zip(dims, sp, strict=True))
    unit = volume.attrs.get("units", "um" if "spacing" in volume.attrs else None)
    extratags = [(_META_TAG, "s", 0, meta_json(volume.dims, volume.dtype, volume.attrs, volume.shape), True)]
    spatial_only = all(d in ("z", "y", "x") for d in dims) and len(dims) >= 2
    if imagej is None:
        imagej = spatial_only and dtype in (np.uint8, np.uint16, np.float32) and dtype.byteorder in "=|<"
    options = {"compression": compression, "extratags": extratags, "photometric": "minisblack"}
    if imagej:
        metadata = {"axes": "".join(d.upper() for d in dims)}
        if "z" in spacing:
            metadata["spacing"] = spacing["z"]
        if unit:
            metadata["unit"] = "um" if unit == "um" else unit
        res = (1.0 / spacing.get("x", 1.0), 1.0 / spacing.get("y", 1.0))
        return {"imagej": True, "resolution": res, "metadata": metadata, **options}
    if spatial_only and dtype.itemsize <= 4 or dtype == np.float64:
        metadata = {"axes": "".join(d.upper() for d in dims)}
        for d in ("z", "y", "x"):
            if d in spacing:
                metadata[f"PhysicalSize{d.upper()}"] = spacing[d]
                if unit:
                    metadata[f"PhysicalSize{d.upper()}Unit"] = "µm" if unit == "um" else unit
        return {"ome": True, "metadata": metadata, **options}
    return {"ome": False, "metadata": None, **options}


def _stored(dtype):
    dtype = np.dtype(dtype)
    return np.dtype(np.uint8) if dtype == np.dtype(bool) else dtype


def _check_writable_ndim(path, ndim):
    if ndim < 2:
        raise FormatError(f"cannot write {os.fspath(path)!r}: TIFF holds images of 2 or more dims; this volume is "
                          f"{ndim}-D (write .npy, .h5 or .zarr)")


def write_tiff(path, volume, *, compression=None, imagej=None):
    """Write a volume as TIFF: ImageJ hyperstack for uint8/uint16/float32, OME-TIFF otherwise.

    A lazy volume is read and written page by page.
    """
    _check_writable_ndim(path, volume.ndim)
    dtype = _stored(volume.dtype)
    kwargs = _layout(volume, dtype, imagej, compression)
    if is_lazy(volume) and volume.ndim > 2:
        shape = tuple(volume.shape)
        page = shape[-2:]
        lead = shape[:-2]

        def pages():
            step = max(1, (64 * 2**20) // max(1, math.prod(page) * dtype.itemsize))
            for outer in np.ndindex(*lead[:-1]):
                for start in range(0, lead[-1], step):
                    block = np.asarray(volume[(*outer, slice(start, start + step))]).astype(dtype, copy=False)
                    yield from block

        tifffile.imwrite(path, pages(), shape=shape, dtype=dtype, **kwargs)
        return
    data = np.asarray(volume)
    if data.dtype == bool:
        data = data.view(np.uint8)
    tifffile.imwrite(path, data, **kwargs)


def create_tiff(path, shape, dtype, *, dims, attrs, imagej=None):
    """Create an uncompressed, contiguous (memory-mappable) TIFF to be written region by region."""
    _check_writable_ndim(path, len(shape))
    meta_volume = _MetaOnly(shape, dtype, dims, attrs)
    kwargs = _layout(meta_volume, _stored(dtype), imagej)
    kwargs.pop("compression")
    tifffile.imwrite(path, shape=tuple(shape), dtype=_stored(dtype), **kwargs)
    reserve(path)  # memory-mapped region writes: a full disk is an error now, not SIGBUS later
    return {}


class _MetaOnly:
    """The dims, dtype and attrs of a volume that does not exist yet (for metadata writers)."""

    def __init__(self, shape, dtype, dims, attrs):
        self.shape, self.dtype, self.dims, self.attrs = tuple(shape), np.dtype(dtype), tuple(dims), dict(attrs)
        self.ndim = len(self.shape)


def open_region_tiff(path):
    """The data of a file made by :func:`create_tiff`, memory-mapped for writing."""
    return flushed(tifffile.memmap(path, mode="r+"))


FORMAT = Format(
    "tiff",
    (".tif", ".tiff", ".ome.tif", ".ome.tiff"),
    read_tiff,
    write_tiff,
    "TIFF / OME-TIFF / ImageJ hyperstacks (tifffile; lazy memory-mapped or page-wise reads)",
    create=create_tiff,
    open_region=open_region_tiff,
    ndims=(2, 32),
)
