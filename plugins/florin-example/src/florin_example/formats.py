"""A format: raw voxels after a one-line JSON header, read lazily.

A format is a :class:`florin.io.Format`: a name, the file extensions it claims,
and two functions:

* ``read(path, **options)`` returns a volume (an ``xarray.DataArray``, see
  :func:`florin.as_volume`). Returning a *lazy* volume (memory-mapped here) lets
  ``florin.tile`` cut tiles without reading the file, and executors ship each
  worker a reference so that it reads only its own tile.
* ``write(path, volume, **options)`` writes exactly ``path``. florin passes a
  temporary path and renames it when ``write`` returns, so a failed write never
  leaves a truncated file behind; do not rename or write elsewhere yourself.

Keyword-only options of ``read``/``write`` become options of ``florin.load`` /
``florin.save`` (``florin.save('out.raw', order='F')`` would be checked against
the signature).

The file layout: a JSON object on the first line (shape, dtype, dims, voxel
spacing and JSON-compatible attributes), a newline, then the voxels in C order.
"""

from __future__ import annotations

import json

import numpy as np

import florin
from florin.errors import FormatError
from florin.io import Format

__all__ = ["FORMAT", "read_raw", "write_raw"]

MAGIC = "florin-example-raw"
MAX_HEADER = 1 << 16


def _header(volume) -> bytes:
    attrs = {}
    for key, value in volume.attrs.items():
        if key == "spacing":
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue  # not representable (e.g. florin's tile metadata): provenance only
        attrs[key] = value
    header = {
        "format": MAGIC,
        "version": 1,
        "shape": list(volume.shape),
        "dtype": np.dtype(volume.dtype).str,
        "dims": list(volume.dims),
        "spacing": list(florin.get_spacing(volume)),
        "attrs": attrs,
    }
    return json.dumps(header).encode() + b"\n"


def write_raw(path, volume):
    """Write ``volume`` as a JSON header line followed by its voxels (C order).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> vol = florin.as_volume(np.arange(6, dtype=np.uint8).reshape(2, 3), spacing=(2.0, 0.5))
    >>> path = os.path.join(tempfile.mkdtemp(), "vol.raw")
    >>> write_raw(path, vol)
    >>> open(path, "rb").readline()[:40]
    b'{"format": "florin-example-raw", "versio'
    """
    volume = florin.as_volume(volume)
    data = np.ascontiguousarray(volume.values)
    with open(path, "wb") as f:
        f.write(_header(volume))
        f.write(data.tobytes())


def read_raw(path, *, mmap=True):
    """Read a file written by :func:`write_raw`, memory-mapped read-only unless ``mmap=False``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "vol.raw")
    >>> write_raw(path, florin.as_volume(np.arange(6, dtype=np.uint8).reshape(2, 3), spacing=(2.0, 0.5)))
    >>> vol = read_raw(path)
    >>> vol.values.tolist(), florin.get_spacing(vol), vol.dims
    ([[0, 1, 2], [3, 4, 5]], (2.0, 0.5), ('y', 'x'))
    """
    with open(path, "rb") as f:
        line = f.readline(MAX_HEADER)
    try:
        header = json.loads(line)
        if header.get("format") != MAGIC:
            raise ValueError("not a florin-example raw file")
        shape, dtype = tuple(header["shape"]), np.dtype(header["dtype"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FormatError(f"{path}: not a valid .raw file of the example format ({exc})") from None
    if mmap:
        data = np.memmap(path, dtype=dtype, mode="r", offset=len(line), shape=shape)
    else:
        with open(path, "rb") as f:
            f.seek(len(line))
            data = np.fromfile(f, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
    return florin.as_volume(data, dims=header["dims"], spacing=header["spacing"], attrs=header.get("attrs", {}))


FORMAT = Format(
    name="example-raw",
    extensions=(".raw",),
    read=read_raw,
    write=write_raw,
    description="raw voxels after a one-line JSON header (florin-example template plugin)",
)
