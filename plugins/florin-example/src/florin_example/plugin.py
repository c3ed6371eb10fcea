"""The hook implementations: the whole interface between this plugin and florin.

florin finds this module through the entry point declared in ``pyproject.toml``::

    [project.entry-points.florin]
    florin-example = "florin_example.plugin"

and calls each function below once, with the registry to fill. A plugin
implements only the hooks it needs (see ``florin.hookspecs`` for all of them).
Keep this module cheap to import: it is imported by every ``florin`` command.
"""

import florin
from florin_example.executors import Chunked
from florin_example.formats import FORMAT
from florin_example.operators import sauvola


@florin.hookimpl
def florin_register_operators(registry):
    """Add ``example.sauvola`` (use a dotted name prefixed by your plugin's name)."""
    registry.add_operator("example.sauvola", sauvola)


@florin.hookimpl
def florin_register_formats(registry):
    """Add the ``example-raw`` format (files ending in ``.raw``)."""
    registry.add_format(FORMAT)


@florin.hookimpl
def florin_register_executors(registry):
    """Add the ``chunked`` executor: ``florin.Chunked`` and ``--executor chunked``."""
    registry.add_executor("chunked", Chunked)
