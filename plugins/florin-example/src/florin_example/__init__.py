"""florin-example: a template florin plugin.

It adds, purely through florin's public hooks (see :mod:`florin_example.plugin`):

* an operator, ``example.sauvola`` (:func:`florin_example.operators.sauvola`),
  a local threshold that declares its halo so tiled runs are exact;
* a format, ``example-raw`` (:data:`florin_example.formats.FORMAT`), raw voxels
  after a one-line JSON header, read lazily (memory-mapped);
* an executor, ``chunked`` (:class:`florin_example.executors.Chunked`), which maps
  items a chunk at a time in a few threads.

Copy this package to start your own plugin; the plugin guide in florin's docs
walks through every file.
"""

__version__ = "0.1.0.dev0"
__all__ = ["FORMAT", "Chunked", "__version__", "read_raw", "sauvola", "write_raw"]

# Imported on first use (PEP 562): florin imports ``florin_example.plugin`` at every command, and
# that imports this package first, so it must stay cheap.
_LAZY = {
    "Chunked": "florin_example.executors",
    "FORMAT": "florin_example.formats",
    "read_raw": "florin_example.formats",
    "write_raw": "florin_example.formats",
    "sauvola": "florin_example.operators",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'florin_example' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
