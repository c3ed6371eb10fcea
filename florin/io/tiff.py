"""TIFF and OME-TIFF through tifffile.

Reads are memory-mapped when the file is uncompressed and contiguous. Voxel
size comes from OME metadata, else ImageJ metadata (``spacing`` for z,
resolution tags for y and x). Writes use the ImageJ hyperstack layout for the
dtypes ImageJ/Fiji open natively (uint8, uint16, float32) and OME-TIFF
otherwise; florin's own attrs (dims, spacing, class tables...) are kept as JSON
in a private tag so they round-trip exactly.
"""

from __future__ import annotations

import numpy as np
import tifffile

from florin.io import Format
from florin.io.metadata import from_json, to_json
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


def read_tiff(path, *, mmap=True):
    """Read a TIFF/OME-TIFF volume, memory-mapped when possible."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes
        tag = tif.pages.first.tags.get(_META_TAG)
        meta = from_json(_tag_text(tag.value)) if tag is not None else None
        if tif.is_ome:
            spacing, unit = _ome_spacing(tif)
        elif tif.is_imagej:
            spacing, unit = _imagej_spacing(tif)
        else:
            spacing, unit = {}, None
    data = None
    if mmap:
        try:
            data = tifffile.memmap(path, mode="r")
        except (ValueError, OSError):
            data = None
    if data is None:
        data = tifffile.imread(path)
    if meta is not None and len(meta["dims"]) == data.ndim:
        attrs = meta["attrs"]
        if meta.get("dtype") == "bool" and data.dtype != bool:
            data = data.astype(bool) if not isinstance(data, np.memmap) else data.view(bool)
        return as_volume(data, dims=meta["dims"], spacing=attrs.pop("spacing", None), attrs=attrs)
    dims = _dims_from_axes(axes, data.ndim)
    vol = as_volume(data, dims=dims)
    if spacing:
        vol = as_volume(vol, spacing=tuple(spacing.get(d, 1.0) for d in dims), units=unit)
    return vol


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


def write_tiff(path, volume, *, compression=None, imagej=None):
    """Write a volume as TIFF: ImageJ hyperstack for uint8/uint16/float32, OME-TIFF otherwise."""
    data = np.asarray(volume)
    if data.dtype == bool:
        data = data.view(np.uint8)
    spacing = dict(zip(volume.dims, get_spacing(volume), strict=True))
    unit = volume.attrs.get("units", "um" if "spacing" in volume.attrs else None)
    extratags = [(_META_TAG, "s", 0, to_json(volume), True)]
    spatial_only = all(d in ("z", "y", "x") for d in volume.dims) and data.ndim >= 2
    if imagej is None:
        imagej = spatial_only and data.dtype in (np.uint8, np.uint16, np.float32) and data.dtype.byteorder in "=|<"
    options = {"compression": compression, "extratags": extratags}
    if imagej:
        metadata = {"axes": "".join(d.upper() for d in volume.dims)}
        if "z" in spacing:
            metadata["spacing"] = spacing["z"]
        if unit:
            metadata["unit"] = "um" if unit == "um" else unit
        res = (1.0 / spacing.get("x", 1.0), 1.0 / spacing.get("y", 1.0))
        tifffile.imwrite(path, data, imagej=True, resolution=res, metadata=metadata, **options)
        return
    if spatial_only and data.dtype.itemsize <= 4 or data.dtype == np.float64:
        metadata = {"axes": "".join(d.upper() for d in volume.dims)}
        for d in ("z", "y", "x"):
            if d in spacing:
                metadata[f"PhysicalSize{d.upper()}"] = spacing[d]
                if unit:
                    metadata[f"PhysicalSize{d.upper()}Unit"] = "µm" if unit == "um" else unit
        tifffile.imwrite(path, data, ome=True, metadata=metadata, **options)
        return
    tifffile.imwrite(path, data, ome=False, metadata=None, **options)


FORMAT = Format(
    "tiff",
    (".tif", ".tiff", ".ome.tif", ".ome.tiff"),
    read_tiff,
    write_tiff,
    "TIFF / OME-TIFF / ImageJ hyperstacks (tifffile; memory-mapped reads)",
)
