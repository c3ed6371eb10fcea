"""The hook implementations: the whole interface between this plugin and florin.

florin finds this module through the entry point declared in ``pyproject.toml``::

    [project.entry-points.florin]
    florin-example = "florin_example.plugin"

and calls each function below once, with the registry to fill. A plugin
implements only the hooks it needs (see ``florin.hookspecs`` for all of them).
Keep this module cheap to import: it is imported by every ``florin`` command.
So it registers ``"module:attribute"`` references, which florin imports the
first time a name is used: ``florin --help``, ``florin ops`` and ``florin
formats`` never import scikit-image or xarray for this plugin. (``florin ops``
and ``florin formats`` read the operator's signature and the format's name,
extensions and description from the source of those modules.)
"""

import florin


@florin.hookimpl
def florin_register_operators(registry):
    """Add ``example.sauvola`` (use a dotted name prefixed by your plugin's name)."""
    registry.add_operator("example.sauvola", "florin_example.operators:sauvola")


@florin.hookimpl
def florin_register_formats(registry):
    """Add the ``example-raw`` format (files ending in ``.raw``)."""
    registry.add_format("florin_example.formats:FORMAT")


@florin.hookimpl
def florin_register_executors(registry):
    """Add the ``chunked`` executor: ``florin.Chunked`` and ``--executor chunked``."""
    registry.add_executor("chunked", "florin_example.executors:Chunked")
