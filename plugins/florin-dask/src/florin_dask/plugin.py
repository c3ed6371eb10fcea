"""Hook implementations: the only way florin-dask plugs into florin.

The ``florin`` entry point in this package's ``pyproject.toml`` names this
module; florin's plugin manager imports it and calls the hooks it implements.
"""

import florin
from florin_dask.executor import Dask


@florin.hookimpl
def florin_register_executors(registry):
    """Register :class:`florin_dask.Dask` as executor ``dask``."""
    registry.add_executor("dask", Dask)
