"""Volume metadata (dims, spacing, units, attrs) as JSON, for formats without a native place."""

from __future__ import annotations

import json

import numpy as np

from florin import tilemeta

__all__ = ["from_json", "to_json"]


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
    """Serialize dims, dtype and JSON-compatible attrs of ``volume``."""
    attrs = {}
    for key, value in tilemeta.strip(dict(volume.attrs)).items():
        value = _plain(value)
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue  # not representable in a file; provenance only
        attrs[key] = value
    return json.dumps({"florin": 1, "dims": list(volume.dims), "dtype": str(volume.dtype), "attrs": attrs})


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
