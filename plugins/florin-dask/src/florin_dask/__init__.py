"""florin-dask: run florin pipelines on a Dask cluster.

Installing this package registers the ``dask`` executor through florin's
``florin_register_executors`` hook (see :mod:`florin_dask.plugin`), so that
``florin.Dask(...)``, ``get_registry().executor('dask')`` and the CLI's
``--executor dask`` find it. Importing :class:`Dask` from here works too.
"""

__version__ = "0.1.0.dev0"
__all__ = ["Dask", "__version__"]


def __getattr__(name):
    # PEP 562: florin imports florin_dask.plugin (and so this package) at every command; dask only when used.
    if name == "Dask":
        from florin_dask.executor import Dask

        return Dask
    raise AttributeError(f"module 'florin_dask' has no attribute {name!r}")
