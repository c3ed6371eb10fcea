"""NPY: memory-mapped reads; dims, spacing and attrs in a ``.json`` sidecar."""

from __future__ import annotations

import os

import numpy as np

from florin.io import Format
from florin.io.metadata import from_json, to_json
from florin.volume import as_volume

__all__ = ["FORMAT"]


def _sidecar(path):
    return os.fspath(path) + ".json"


def read_npy(path, *, mmap=True):
    """Read an ``.npy`` file, memory-mapped read-only unless ``mmap=False``."""
    data = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    meta = None
    if os.path.exists(_sidecar(path)):
        with open(_sidecar(path)) as f:
            meta = from_json(f.read())
    if meta is None:
        return as_volume(data)
    attrs = meta["attrs"]
    if meta.get("dtype") == "bool" and data.dtype != bool:
        data = data.astype(bool)
    return as_volume(data, dims=meta["dims"], spacing=attrs.pop("spacing", None), attrs=attrs)


def write_npy(path, volume):
    """Write an ``.npy`` file and its ``.npy.json`` metadata sidecar."""
    with open(_sidecar(path), "w") as f:
        f.write(to_json(volume))
    with open(path, "wb") as f:
        np.save(f, np.asarray(volume), allow_pickle=False)


FORMAT = Format("npy", (".npy",), read_npy, write_npy, "NumPy .npy (memory-mapped reads, JSON sidecar metadata)")
