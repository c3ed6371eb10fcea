"""florin: learning-free segmentation of large N-D image volumes.

Build a pipeline of steps and run it on a volume::

    import florin
    import florin.morphology as morphology
    import florin.thresholding as thresholding

    pipeline = florin.Serial(
        florin.load(),
        florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)),
        thresholding.ndnt(shape=(10, 64, 64), threshold=0.3),
        morphology.binary_opening(),
        florin.save("segmented.tiff"),
    )
    segmented = pipeline("volume.tif")

Executors (``Serial``, ``Multithread``, ``Multiprocess``, ``MPI`` and those of
plugins) are looked up in the plugin registry, so ``florin.<Name>`` finds a
plugin's executor the same way it finds the built-in ones.
"""
import importlib
import importlib.util

from florin.builtin import PARTS, install_hint
from florin.errors import ParameterError

__version__ = "0.1.0.dev0"

from florin.errors import FlorinError  # noqa: E402
from florin.hookspecs import hookimpl  # noqa: E402

__all__ = [
    "FlorinError",
    "Pipeline",
    "Serial",
    "__version__",
    "as_volume",
    "florinate",
    "get_spacing",
    "hookimpl",
    "join",
    "load",
    "operator",
    "save",
    "tile",
    "tune",
]

# PEP 562: the public names are imported on first use, so that ``import florin`` (and every ``florin`` command
# that only lists things) does not pay for xarray, pandas or numba.
_LAZY = {
    "Pipeline": "florin.pipelines",
    "Serial": "florin.pipelines",
    "as_volume": "florin.volume",
    "florinate": "florin.operators",
    "get_spacing": "florin.volume",
    "join": "florin.tiling",
    "load": "florin.io",
    "save": "florin.io",
    "tile": "florin.tiling",
    "classify": "florin.classification",
    "bounds_classifier": "florin.classification",
    "reconstruct": "florin.reconstruction",
    "tune": "florin.tuning",
}


def operator(name):
    """The operator factory registered as ``name`` (e.g. ``'thresholding.ndnt'``).

    Examples
    --------
    >>> import florin
    >>> florin.operator("morphology.binary_opening")
    <florinated binary_opening(image, *, footprint=None, mode='ignore')>
    """
    return _registry().operator(name)


def _registry():
    """The plugin registry, imported on first use (PEP 562: ``import florin`` loads no plugin)."""
    from florin.registry import get_registry

    return get_registry()


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and name.islower():
        if importlib.util.find_spec(f"florin.{name}") is not None:  # florin.io, florin.conncomp, ...
            return importlib.import_module(f"florin.{name}")
    if name[:1].isupper():
        try:
            entry = _registry().executor_entry(name)
        except ParameterError:
            entry = None
        if entry is not None and entry.attr == name:
            return _registry().executors[entry.name]
        for part in PARTS:
            if part.kind == "executor" and name.lower() == part.name:
                raise AttributeError(f"florin.{name} is not available: install it with {install_hint(part)}")
    raise AttributeError(f"module 'florin' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
