"""Hook implementations: the only way florin-dask plugs into florin.

The ``florin`` entry point in this package's ``pyproject.toml`` names this
module; florin's plugin manager imports it and calls the hooks it implements.
"""

import florin


@florin.hookimpl
def florin_register_executors(registry):
    """Register :class:`florin_dask.Dask` as executor ``dask``.

    By reference: dask is imported when the executor is first used, not when
    florin lists its plugins or starts its command line.
    """
    registry.add_executor("dask", "florin_dask.executor:Dask")
