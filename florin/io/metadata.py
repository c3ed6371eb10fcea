"""Volume metadata (dims, spacing, units, attrs) as JSON, for formats without a native place."""

from __future__ import annotations

import json
import os

import numpy as np

from florin import tilemeta

__all__ = ["from_json", "meta_json", "plain", "to_json"]


def plain(value):
    """``value`` with numpy scalars and arrays, tuples and paths turned into plain Python (for JSON and TOML).

    Examples
    --------
    >>> import numpy as np
    >>> from pathlib import Path
    >>> plain({"n": np.int64(3), "box": (np.arange(2), Path("a"))})
    {'n': 3, 'box': [[0, 1], 'a']}
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def to_json(volume) -> str:
    """Serialize dims, shape, dtype and JSON-compatible attrs of ``volume``."""
    return meta_json(volume.dims, volume.dtype, volume.attrs, shape=getattr(volume, "shape", None))


def meta_json(dims, dtype, attrs, shape=None) -> str:
    """Like :func:`to_json`, from the parts (for files created before their data exists)."""
    out = {}
    for key, value in tilemeta.strip(dict(attrs)).items():
        value = plain(value)
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
