"""florin-dask: run florin pipelines on a Dask cluster.

Installing this package registers the ``dask`` executor through florin's
``florin_register_executors`` hook (see :mod:`florin_dask.plugin`), so that
``florin.Dask(...)``, ``get_registry().executor('dask')`` and the CLI's
``--executor dask`` find it. Importing :class:`Dask` from here works too.
"""

from florin_dask.executor import Dask

__version__ = "0.1.0.dev0"
__all__ = ["Dask", "__version__"]
