"""florin's own operators, executors, formats and commands, registered like any plugin.

There is no second path: the core registers itself through the hooks in
:mod:`florin.hookspecs`, as four plugins (``florin.operators``,
``florin.executors``, ``florin.formats`` and ``florin.commands``) whose hook
implementations run first (``tryfirst``), so that an installed plugin may
override a built-in name. Each of them can be disabled like any plugin
(``FLORIN_DISABLE_PLUGINS=florin.formats``).

:data:`PARTS` is the one table of what needs an optional dependency: the
registry's "not installed" hints, ``florin formats`` and ``florin.<Name>``
errors all derive from it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from florin import _catalog
from florin.hookspecs import hookimpl

__all__ = ["PARTS", "PLUGINS", "Part", "builtin_catalog", "complete_operators", "extras", "install_hint"]


@dataclass(frozen=True)
class Part:
    """One built-in part and what it needs.

    Parameters
    ----------
    kind : str
        ``'executor'``, ``'format'`` or ``'command'``.
    name : str
        Registry name (``--executor NAME``, ``format=NAME``, ``florin NAME``).
    where : str or None
        ``'module:attribute'`` that holds it; ``None`` for a part that a
        separate package brings (the ``dask`` executor of florin-dask).
    needs : str or None
        Module that must be importable for the part to be registered.
    extra : str or None
        The pip extra of florin that installs ``needs``.
    install : str or None
        What to run when an extra alone does not install it.
    """

    kind: str
    name: str
    where: str | None
    needs: str | None = None
    extra: str | None = None
    install: str | None = None


#: Which optional dependency brings which part. The only such table.
PARTS = (
    Part("executor", "serial", "florin.pipelines:Serial"),
    Part("executor", "multithread", "florin.executors:Multithread"),
    Part("executor", "multiprocess", "florin.executors:Multiprocess", needs="pathos", install="pip install pathos"),
    Part("executor", "mpi", "florin.executors:MPI", needs="mpi4py", extra="mpi"),
    Part("executor", "dask", None, needs="florin_dask", extra="dask",
         install="pip install 'florin[dask]' ./plugins/florin-dask (from a florin checkout)"),
    Part("format", "tiff", "florin.io.tiff:FORMAT"),
    Part("format", "npy", "florin.io.npy:FORMAT"),
    Part("format", "hdf5", "florin.io.hdf5:FORMAT", needs="h5py", install="pip install h5py"),
    Part("format", "netcdf", "florin.io.netcdf:FORMAT", needs="netCDF4", extra="netcdf"),
    Part("format", "zarr", "florin.io.zarr:FORMAT", needs="zarr", extra="zarr"),
    Part("format", "ome-zarr", "florin.io.zarr:OME_FORMAT", needs="zarr", extra="zarr"),
    Part("format", "stack", "florin.io.stack:FORMAT"),
    Part("command", "preview", "florin.cli.commands:preview", needs="matplotlib", extra="preview"),
)


def install_hint(part: Part) -> str:
    """How to install what ``part`` needs (``"pip install 'florin[mpi]'"``)."""
    if part.install is not None:
        return part.install
    return f"pip install 'florin[{part.extra}]'" if part.extra else "pip install florin"


def extras(kind: str) -> dict:
    """``{name: extra}`` of the parts of ``kind`` that an extra installs (for error messages)."""
    return {p.name: p.extra for p in PARTS if p.kind == kind and p.extra}


def _installed(part: Part) -> bool:
    if part.where is None:
        return False
    if part.needs is not None and importlib.util.find_spec(part.needs) is None:
        return False
    return True


def _parts(kind):
    return [p for p in PARTS if p.kind == kind and _installed(p)]


def builtin_catalog():
    """``(operators, formats)``: the rows of :mod:`florin._catalog`."""
    return _catalog.OPERATORS, _catalog.FORMATS


def _resolve(where: str):
    module, _, attr = where.partition(":")
    return getattr(importlib.import_module(module), attr)


_OPERATOR_MODULES = (
    "florin.thresholding",
    "florin.morphology",
    "florin.conncomp",
    "florin.classification",
    "florin.reconstruction",
)

#: Pipeline steps that are not image operators, in the same namespace as the operators.
_STEPS = (
    ("load", "florin.io:load"),
    ("save", "florin.io:save"),
    ("tile", "florin.tiling:tile"),
    ("join", "florin.tiling:join"),
    ("classify", "florin.classification:classify"),
    ("reconstruct", "florin.reconstruction:reconstruct"),
)


class Operators:
    """Plugin ``florin.operators``: thresholding, morphology, objects, and the steps load/save/tile/join."""

    @hookimpl(tryfirst=True)
    def florin_register_operators(self, registry):
        # By reference, from the catalog: nothing is imported until an operator is used.
        for row in builtin_catalog()[0]:
            registry.add_operator(row["name"], row["ref"], signature=row["signature"], summary=row["summary"])


def florinated_class():
    """:class:`florin.operators.Florinated`, imported when first needed (operators imports numpy; this module is on
    every command, as is :mod:`florin._metadata`, which finds the class here too)."""
    from florin.operators import Florinated

    return Florinated


def complete_operators(registry, name) -> bool:
    """Register the operators of the built-in module ``name`` points into, if the catalog lacks some.

    Called by the registry when ``name`` (``'morphology.new_op'``) is not registered:
    an operator added to a built-in module since ``python -m florin._metadata`` last
    ran is found by importing that module. Returns whether anything was added.
    """
    module_name = f"florin.{name.partition('.')[0]}"
    info = registry.plugins.get("florin.operators")
    if module_name not in _OPERATOR_MODULES or info is None or info.status != "loaded":
        return False
    Florinated = florinated_class()
    module = importlib.import_module(module_name)
    prefix = module_name.rsplit(".", 1)[1]
    added = False
    registry._current = info
    try:
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr)
            if isinstance(obj, Florinated) and f"{prefix}.{attr}" not in registry.operators:
                registry.add_operator(f"{prefix}.{attr}", obj)
                added = True
    finally:
        registry._current = None
    return added


class Executors:
    """Plugin ``florin.executors``: Serial, Multithread, Multiprocess and MPI (when mpi4py is installed)."""

    @hookimpl(tryfirst=True)
    def florin_register_executors(self, registry):
        for part in _parts("executor"):
            registry.add_executor(part.name, part.where)


class Formats:
    """Plugin ``florin.formats``: TIFF, NPY, HDF5, NetCDF, Zarr, OME-Zarr and slice stacks."""

    @hookimpl(tryfirst=True)
    def florin_register_formats(self, registry):
        rows = {row["ref"]: row for row in builtin_catalog()[1]}
        for part in _parts("format"):
            row = rows.get(part.where)
            if row is not None:
                registry.add_format(part.where, name=row["name"], extensions=row["extensions"],
                                    description=row["description"])
            else:  # not in the catalog yet (python -m florin._metadata): import it
                registry.add_format(_resolve(part.where))


#: The modules of florin's commands, by reference like every built-in: each ``register(app)`` adds its commands.
_COMMANDS = ("florin.cli.commands:register", "florin.cli.segment:register", "florin.cli.tune:register")


class Commands:
    """Plugin ``florin.commands``: info, plugins, formats, ops, run, preview, segment, demo and tune."""

    @hookimpl(tryfirst=True)
    def florin_register_commands(self, app):
        for where in _COMMANDS:
            _resolve(where)(app)


#: The built-in plugins, by plugin name, in registration order.
PLUGINS = {
    "florin.operators": Operators(),
    "florin.executors": Executors(),
    "florin.formats": Formats(),
    "florin.commands": Commands(),
}
