"""What a pipeline step is: the one module that reads a step's declarations.

Any callable is a pipeline step. What a pipeline, a tiling or a planner needs
to know about it is what the step *declares* through optional attributes, and
this module is the only place that reads them (and knows their defaults):

``name``
    How the step is named in messages, timings and pipeline files
    (default: the function's ``__name__``).
``per_item`` (default True)
    A pipeline maps the step over the items of a collection (tiles, regions)
    instead of handing it the whole collection.
``halo``
    Voxels of context per axis the step needs to be exact on a tile: an int,
    a tuple, or a callable ``halo(full_shape)``; ``math.inf`` on an axis means
    the step needs whole objects (default 0). A step that declares a finite
    halo (0 included) is exact under tiling: its tiled result cannot depend on
    the tiles, so florin chooses the blocks it runs on (see
    :func:`florin.planner.regroup`); an undeclared halo counts as 0 for the
    tile's context but keeps the user's tiles (:func:`declares_halo`).
``accepts_tiles`` (default False)
    The step is given the tiles of a volume as they are (``save`` writes them
    one by one) instead of the implicit join of untouched tiles.
``blockwise``
    How the step runs over the blocks of a volume larger than memory, one of
    :data:`KINDS`:

    * ``'map'``: block by block with the step's halo (NDNT, morphology);
    * ``'label-merge'``: blocks labelled, labels merged across faces, edges and
      corners, then relabelled (``conncomp.label``, the size filters);
    * ``'reduce'``: per-block statistics combined (``conncomp.regionprops``);
    * ``'lookup'``: a table applied block by block (``florin.reconstruct``);
    * ``'whole'``: needs the whole volume at once.

    Undeclared: ``'map'``, or ``'whole'`` when the halo is unbounded.
    :func:`florin.florinate` records it (``florinate(func, kind='reduce')``).
``blockwise_impl``
    Optionally, the step's blockwise form, which the planner
    (:mod:`florin.planner`) calls instead of the step on a volume above the
    run's memory budget: ``impl(datum, *, allocate, blocks, map, **params)``
    returns what the step returns, computed block by block (``allocate(shape,
    dtype)`` gives destinations within the budget, ``blocks`` partition the
    volume, ``map`` maps the per-block work, ``params`` are the step's bound
    parameters). It may be given as ``'module:attribute'``.
``merged_at_join`` (default False)
    The step's result on a tile is complete only once the join merges the
    tiles (``conncomp.label``); in a tiled part only steps that declare
    ``takes_merged_tiles`` (``conncomp.regionprops``) may follow it.
``after_map`` (default None)
    A callable a pipeline calls with the collection it rebuilt after mapping
    the step over its items: what needs all the items at once, such as
    ``classify``'s warning when no object matched a bounded class.
``whole_collection`` (default False)
    Applied to a whole collection of items other than tiles (the regions'
    table), the step returns exactly what mapping it over the items and
    rebuilding the collection would (``classify``, vectorised over the table):
    a pipeline, whatever its executor, calls it once on the collection instead
    of shipping the items to workers.
``reads_paths`` (default False)
    The step reads the pipeline's raw input itself (``load``: paths or arrays).
``path`` and ``overwrite``
    The step writes the file ``path`` (``save``, the CLI's objects table):
    its output is checked before the run, and a resumed run does not write
    it again when the interrupted run committed it (:mod:`florin.resume`).
``to_spec()``
    The step as a pipeline-file table (:mod:`florin.pipeline_file`).

Examples
--------
>>> import math
>>> import florin
>>> from florin import steps
>>> from florin.morphology import binary_opening, remove_small_holes
>>> steps.kind(binary_opening(), (8, 8)), steps.halo(binary_opening(), (8, 8))
('map', (2, 2))
>>> steps.kind(remove_small_holes(max_size=3), (8, 8))
'label-merge'
>>> steps.kind(lambda image: image, (8, 8)), steps.name(abs)
('map', 'abs')
"""

from __future__ import annotations

import importlib
import math

import numpy as np

from florin.errors import ParameterError

__all__ = [
    "KINDS", "NO_DATA", "accepts_tiles", "after_map", "blockwise_impl", "check_kind", "declares", "declares_halo",
    "describe", "halo", "is_unbounded", "kind", "merged_at_join", "name", "normalize_halo", "output", "params",
    "per_item", "reads_paths", "spec", "takes_merged_tiles", "whole_collection",
]

#: The ways a step can run over the blocks of a volume (see the module docstring).
KINDS = ("map", "label-merge", "reduce", "lookup", "whole")

#: What a pipeline called without data passes its first step (a load step then reads its own path).
NO_DATA = object()


def check_kind(value, *, where="kind"):
    """``value`` if it is one of :data:`KINDS` (or None), else a ParameterError naming ``where``."""
    if value is None or (isinstance(value, str) and value in KINDS):
        return value
    raise ParameterError(f"{where} must be one of {', '.join(map(repr, KINDS))} (or None), got {value!r}")


def normalize_halo(value, ndim) -> tuple:
    """A declared halo (None, int, ``math.inf`` or a sequence) as one entry per axis."""
    if value is None:
        return (0,) * ndim
    if np.isscalar(value):
        if value == math.inf:
            return (math.inf,) * ndim
        return (int(value),) * ndim
    value = tuple(value)
    if len(value) != ndim:
        raise ParameterError(f"halo {value} has {len(value)} entries for a {ndim}-D volume")
    return tuple(v if v == math.inf else int(v) for v in value)


def name(step) -> str:
    """A readable name for any pipeline step."""
    value = getattr(step, "name", None)
    if isinstance(value, str):
        return value
    return getattr(step, "__name__", type(step).__name__)


def per_item(step) -> bool:
    """Whether a pipeline maps ``step`` over the items of a collection."""
    return bool(getattr(step, "per_item", True))


def accepts_tiles(step) -> bool:
    """Whether ``step`` is given tiles as they are (instead of their implicit join)."""
    return bool(getattr(step, "accepts_tiles", False))


def after_map(step):
    """What to call with the rebuilt collection after ``step`` was mapped over its items, or None."""
    hook = getattr(step, "after_map", None)
    return hook if callable(hook) else None


def whole_collection(step) -> bool:
    """Whether ``step`` applied to a whole collection (not tiles) equals it mapped over the items."""
    return bool(getattr(step, "whole_collection", False))


def merged_at_join(step) -> bool:
    """Whether ``step``'s result on a tile is only complete after the join (labels)."""
    return bool(getattr(step, "merged_at_join", False))


def takes_merged_tiles(step) -> bool:
    """Whether ``step`` can run on tiles whose results the join still has to merge."""
    return bool(getattr(step, "takes_merged_tiles", False))


def reads_paths(step) -> bool:
    """Whether ``step`` reads the pipeline's raw input (a path or an array) itself."""
    return bool(getattr(step, "reads_paths", False))


def output(step):
    """The file ``step`` writes (it has ``path`` and ``overwrite``, and is no ``load``), or None."""
    if reads_paths(step) or not hasattr(step, "overwrite"):
        return None
    return getattr(step, "path", None)


def halo(step, full_shape) -> tuple:
    """Halo ``step`` declares for a volume of ``full_shape`` (0 per axis when it declares none)."""
    value = getattr(step, "halo", None)
    if callable(value):
        value = value(tuple(full_shape))
    return normalize_halo(value, len(full_shape))


def declares_halo(step) -> bool:
    """Whether ``step`` declares its halo (0 included), so that tiling cannot change its result.

    An operator answers for itself (``declares_halo``: whether
    ``florinate(halo=...)`` was given); any other step declares one when it has
    a ``halo`` attribute that is not None. A plain function declares none: its
    result may depend on the tile (a per-tile Otsu threshold).

    Examples
    --------
    >>> import numpy as np
    >>> from florin.morphology import binary_opening
    >>> declares_halo(binary_opening()), declares_halo(np.negative)
    (True, False)
    """
    declared = getattr(step, "declares_halo", None)
    if isinstance(declared, bool):
        return declared
    return getattr(step, "halo", None) is not None


def is_unbounded(step, full_shape) -> bool:
    """Whether ``step`` needs whole objects (an infinite halo on some axis)."""
    return math.inf in halo(step, full_shape)


def kind(step, full_shape=None) -> str:
    """How ``step`` runs over blocks: one of :data:`KINDS`.

    The declared ``blockwise`` kind; undeclared, ``'map'``, or ``'whole'``
    when the step's halo is unbounded (for ``full_shape``, or a 1-D probe).
    """
    declared = getattr(step, "blockwise", None)
    if callable(declared) and not isinstance(declared, str):
        declared = declared()
    if declared is not None:
        return check_kind(declared, where=f"step `{name(step)}`'s blockwise kind")

    shape = tuple(full_shape) if full_shape is not None else (1,)
    try:
        unbounded = is_unbounded(step, shape)
    except Exception:  # a halo function that needs a real shape
        unbounded = False
    return "whole" if unbounded else "map"


def blockwise_impl(step):
    """The blockwise form ``impl(datum, *, allocate, blocks, map, **params)`` ``step`` declares, or None."""
    impl = getattr(step, "blockwise_impl", None)
    if isinstance(impl, str):
        module, _, attr = impl.partition(":")
        try:
            impl = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            return None  # not available (yet): the step runs in memory
    return impl if callable(impl) else None


def describe(func, default="the steps") -> str:
    """The names of the steps a mapped function runs (an item runner's ``steps``), comma-separated."""
    inner = getattr(func, "steps", None)
    if not inner:
        return default
    return ", ".join(name(s) for s in inner)


def params(step) -> dict:
    """The step's bound parameters with defaults (``params()`` of florin operators), else ``{}``."""
    get = getattr(step, "params", None)
    return dict(get()) if callable(get) else {}


def declares(step) -> bool:
    """Whether ``step`` declares how it runs over blocks (a kind or a halo), so a planner may run it blockwise."""
    return getattr(step, "blockwise", None) is not None or getattr(step, "halo", None) is not None


def spec(step):
    """The step's own pipeline-file table (``to_spec()``), or None when it has none."""
    to_spec = getattr(step, "to_spec", None)
    return to_spec() if callable(to_spec) else None
