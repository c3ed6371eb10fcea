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

from florin_example.executors import Chunked
from florin_example.formats import FORMAT, read_raw, write_raw
from florin_example.operators import sauvola

__version__ = "0.1.0.dev0"
__all__ = ["FORMAT", "Chunked", "__version__", "read_raw", "sauvola", "write_raw"]
