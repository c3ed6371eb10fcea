"""Volume metadata (dims, spacing, units, attrs) as JSON, for formats without a native place."""

from __future__ import annotations

import json

import numpy as np

from florin import tilemeta

__all__ = ["from_json", "meta_json", "to_json"]


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def to_json(volume) -> str:
    """Serialize dims, shape, dtype and JSON-compatible attrs of ``volume``."""
    return meta_json(volume.dims, volume.dtype, volume.attrs, shape=getattr(volume, "shape", None))


def meta_json(dims, dtype, attrs, shape=None) -> str:
    """Like :func:`to_json`, from the parts (for files created before their data exists)."""
    out = {}
    for key, value in tilemeta.strip(dict(attrs)).items():
        value = _plain(value)
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue  # not representable in a file; provenance only
        out[key] = value
    meta = {"florin": 1, "dims": list(dims), "dtype": str(np.dtype(dtype)), "attrs": out}
    if shape is not None:
        meta["shape"] = [int(n) for n in shape]  # lets readers notice a truncated file
    return json.dumps(meta)


def from_json(text):
    """Parse :func:`to_json` output; None when ``text`` is not florin metadata."""
    try:
        meta = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("florin") != 1:
        return None
    attrs = meta.get("attrs", {})
    if "spacing" in attrs:
        attrs["spacing"] = tuple(attrs["spacing"])
    meta["attrs"] = attrs
    return meta
