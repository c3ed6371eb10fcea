"""florin's own operators, executors and formats, registered like any plugin.

There is no second path: the core registers itself through the hooks in
:mod:`florin.hookspecs`, first, under the plugin name ``florin``.
"""

from __future__ import annotations

import importlib
import importlib.util

from florin.hookspecs import hookimpl

_OPERATOR_MODULES = (
    "florin.thresholding",
    "florin.morphology",
    "florin.conncomp",
    "florin.classification",
    "florin.reconstruction",
)
_EXECUTORS = (
    ("serial", "florin.pipelines", "Serial", None),
    ("multithread", "florin.executors", "Multithread", None),
    ("multiprocess", "florin.executors", "Multiprocess", "pathos"),
    ("mpi", "florin.executors", "MPI", "mpi4py"),
)
_FORMATS = (
    ("florin.io.tiff", None),
    ("florin.io.npy", None),
    ("florin.io.hdf5", "h5py"),
    ("florin.io.netcdf", "netCDF4"),
    ("florin.io.zarr", "zarr"),
    ("florin.io.stack", None),
)


def _available(module, requirement=None) -> bool:
    """Whether a built-in module exists and its optional dependency is importable."""
    if requirement is not None and importlib.util.find_spec(requirement) is None:
        return False
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@hookimpl
def florin_register_operators(registry):
    from florin.operators import Florinated

    for module_name in _OPERATOR_MODULES:
        if not _available(module_name):
            continue
        module = importlib.import_module(module_name)
        prefix = module_name.rsplit(".", 1)[1]
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if isinstance(obj, Florinated):
                registry.add_operator(f"{prefix}.{name}", obj)


@hookimpl
def florin_register_executors(registry):
    for name, module_name, cls_name, requirement in _EXECUTORS:
        if _available(module_name, requirement):
            registry.add_executor(name, getattr(importlib.import_module(module_name), cls_name))


@hookimpl
def florin_register_formats(registry):
    for module_name, requirement in _FORMATS:
        if _available(module_name, requirement):
            module = importlib.import_module(module_name)
            for fmt in getattr(module, "FORMATS", (module.FORMAT,)):  # a module may register several
                registry.add_format(fmt)


@hookimpl
def florin_register_commands(app):
    from florin.cli import commands, segment, tune

    commands.register(app)
    segment.register(app)
    tune.register(app)
