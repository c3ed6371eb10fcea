"""Operators: functions of an image turned into pipeline steps.

``florinate(func)`` makes a factory: ``op = factory(*args, **kwargs)`` checks and
binds the parameters, and ``op(image)`` calls ``func(image, *args, **kwargs)``.
Unlike :func:`functools.partial` the image is *prepended*, which matches the
image-first convention of scikit-image and scipy.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import numbers
import sys

from florin import steps as _steps
from florin.errors import OperatorBindError, ParameterError, ParameterTypeError

__all__ = [
    "Florinated", "Operator", "florinate", "halo_of", "is_per_item", "merged_at_join", "step_name", "takes_merged_tiles",
]


class Operator:
    """A pipeline step with its parameters bound.

    Calling it applies the function to an image: ``op(image)`` is
    ``func(image, *args, **kwargs)``.

    Attributes
    ----------
    name : str
        Name used in messages and pipeline files.
    func : callable
        The wrapped function.
    args, kwargs : tuple, dict
        The bound parameters.
    per_item : bool
        True when the step works on one datum at a time, so that a pipeline maps
        it over a collection (tiles, regions) instead of handing it the collection.
    merged_at_join, takes_merged_tiles : bool
        See :func:`florinate`.
    blockwise : str or None
        The blockwise kind the factory declares (see :mod:`florin.steps`).
    blockwise_impl : callable, str or None
        The blockwise form of the step, if the factory declares one.
    """

    def __init__(self, factory: Florinated, args: tuple, kwargs: dict):
        self.factory = factory
        self.args = args
        self.kwargs = kwargs

    @property
    def func(self):
        return self.factory.func

    @property
    def name(self) -> str:
        return self.factory.name

    @property
    def per_item(self) -> bool:
        return self.factory.per_item

    @property
    def merged_at_join(self) -> bool:
        return self.factory.merged_at_join

    @property
    def takes_merged_tiles(self) -> bool:
        return self.factory.takes_merged_tiles

    @property
    def after_map(self):
        """``factory.after_map(op, collection)`` bound to this operator, if the factory declares one."""
        hook = getattr(self.factory, "after_map", None)
        return None if hook is None else functools.partial(hook, self)

    @property
    def whole_collection(self) -> bool:
        """Whether the factory declares that the step on a whole collection equals it mapped over the items."""
        return bool(getattr(self.factory, "whole_collection", False))

    @property
    def blockwise(self):
        return self.factory.kind

    @property
    def blockwise_impl(self):
        return self.factory.blockwise

    def __call__(self, image):
        return self.factory.func(image, *self.args, **self.kwargs)

    def params(self) -> dict:
        """All parameters with defaults filled in (the image excluded)."""
        bound = self.factory.signature.bind(None, *self.args, **self.kwargs)
        bound.apply_defaults()
        params = dict(bound.arguments)
        params.pop(next(iter(self.factory.signature.parameters)))
        return params

    @property
    def declares_halo(self) -> bool:
        """Whether the factory declares a halo (``florinate(halo=...)``, 0 included): tiling cannot change the result."""
        return self.factory.halo is not None

    def halo(self, full_shape) -> tuple:
        """Voxels of context per axis this step needs to be exact on a tile.

        ``math.inf`` on an axis means the step needs the whole volume.
        """
        declared = self.factory.halo
        value = declared(self.params(), tuple(full_shape)) if callable(declared) else declared
        return _steps.normalize_halo(value, len(full_shape))

    def __repr__(self):
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"


class Florinated:
    """A factory of :class:`Operator` made by :func:`florinate`.

    Calling it with parameters binds them; calling it with an image (any
    array_like: numpy or dask array, DataArray, nested list) as first positional
    argument applies the function right away. ``None`` there is an error.
    florin's own operators take their options keyword-only (``def op(image, *,
    size=3)``); one given by position is a one-line
    :class:`~florin.errors.ParameterTypeError` naming it
    (``op: pass size by keyword: op(image, size=...)``).
    """

    def __init__(self, func, *, name=None, halo=None, per_item=True, merged_at_join=False, takes_merged_tiles=False,
                 kind=None, blockwise=None):
        self.func = func
        self.name = name or getattr(func, "__name__", type(func).__name__)
        self.halo = halo
        self.per_item = per_item
        self.merged_at_join = merged_at_join
        self.takes_merged_tiles = takes_merged_tiles
        self.kind = _steps.check_kind(kind, where=f"florinate({self.name}): kind")
        if blockwise is not None and not (callable(blockwise) or isinstance(blockwise, str)):
            raise ParameterError(
                f"florinate({self.name}): blockwise must be a callable or a 'module:attribute' string, got {blockwise!r}"
            )
        self.blockwise = blockwise
        try:
            self.signature = inspect.signature(func)
        except (TypeError, ValueError) as exc:  # builtins without a signature
            raise ParameterError(f"cannot florinate {func!r}: it has no inspectable signature") from exc
        if not self.signature.parameters:
            raise ParameterError(f"cannot florinate {self.name}: it takes no image argument")
        functools.update_wrapper(self, func)
        if name is not None and name.isidentifier():
            # ``florinate(op, name="opening")`` on a function made in a factory: the factory pickles by
            # that module-level name (a dotted plugin name such as "example.sauvola" is a display name only).
            self.__name__ = self.__qualname__ = name

    def __call__(self, *args, **kwargs):
        if args and self._fills_image(args, kwargs):
            return self.bind(*args[1:], **kwargs)(args[0])
        return self.bind(*args, **kwargs)

    def _fills_image(self, args, kwargs) -> bool:
        # The signature decides: the first positional argument is the image (array_like, including lists and
        # dask arrays) whenever the call binds with it in the image's place. A number or string never is.
        image = args[0]
        first = next(iter(self.signature.parameters))
        if image is None:
            raise ParameterError(f"{self.name}(): {first} is None; pass an array, or give parameters by keyword")
        if isinstance(image, numbers.Number | str | bytes):
            return False
        if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in self.signature.parameters.values()):
            # func(image, *things): positional arguments are the things unless the first is an array.
            return hasattr(image, "__array__")
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError:
            if hasattr(image, "__array__"):
                # ``ndnt(image, (10, 64, 64))``: an image followed by options given by position.
                message = self._positional_message(args[1:])
                if message is not None:
                    raise ParameterTypeError(message) from None
            return False
        return True

    def _positional_message(self, extra):
        """``"ndnt: pass shape by keyword: ndnt(image, shape=...)"`` for options given by position, else None."""
        params = list(self.signature.parameters.values())
        image, options = params[0], params[1:]
        kinds = inspect.Parameter
        if any(p.kind is kinds.VAR_POSITIONAL for p in params):
            return None
        positional = [p for p in options if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
        keyword_only = [p.name for p in options if p.kind is kinds.KEYWORD_ONLY]
        extra = extra[len(positional):]
        if not extra or len(extra) > len(keyword_only):
            return None
        names = keyword_only[:len(extra)]
        return (f"{self.name}: pass {', '.join(names)} by keyword: "
                f"{self.name}({image.name}, {', '.join(f'{n}=...' for n in names)})")

    def bind(self, *args, **kwargs) -> Operator:
        """Check ``args``/``kwargs`` against the signature and return the bound operator."""
        try:
            self.signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            message = self._positional_message(args)
            if message is not None:
                raise ParameterTypeError(message) from None
            raise OperatorBindError(self._bind_message(exc, kwargs)) from None
        return Operator(self, args, kwargs)

    def _bind_message(self, exc, kwargs):
        params = list(self.signature.parameters)[1:]
        accepts_var_kw = any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in self.signature.parameters.values()
        )
        if not accepts_var_kw:
            for key in kwargs:
                if key not in self.signature.parameters:
                    close = difflib.get_close_matches(key, params, n=1)
                    hint = f"; did you mean `{close[0]}`?" if close else ""
                    valid = ", ".join(params) or "none"
                    return (
                        f"{self.name}() got an unexpected keyword argument `{key}`{hint} "
                        f"(valid parameters: {valid})"
                    )
        return f"{self.name}(): {exc}"

    def __repr__(self):
        return f"<florinated {self.name}{self.signature}>"

    def __reduce__(self):
        # A decorated module-level function pickles by name, like the function
        # itself would; anything else (in-line use, __main__) by value.
        module = sys.modules.get(getattr(self, "__module__", None) or "")
        if module is not None and module.__name__ != "__main__":
            obj = module
            for part in self.__qualname__.split("."):
                obj = getattr(obj, part, None)
            if obj is self:
                return self.__qualname__
        return (Florinated, (self.func,), {"name": self.name, "halo": self.halo, "per_item": self.per_item,
                                           "merged_at_join": self.merged_at_join,
                                           "takes_merged_tiles": self.takes_merged_tiles,
                                           "kind": self.kind, "blockwise": self.blockwise})

    def __setstate__(self, state):
        self.__init__(self.func, **state)


def florinate(func=None, *, name=None, halo=None, per_item=True, merged_at_join=False, takes_merged_tiles=False,
              kind=None, blockwise=None):
    """Turn ``func(image, *args, **kwargs)`` into a pipeline operator factory.

    Parameters
    ----------
    func : callable
        Function taking the image first.
    name : str, optional
        Name shown in messages (default: ``func.__name__``).
    halo : int, tuple or callable, optional
        Voxels of context per axis the function needs so that running it on a
        tile gives exactly the whole-volume result in the tile's core. A callable
        gets ``(params, full_shape)``, the bound parameters with defaults and the
        full volume's shape, and returns an int or a tuple. ``math.inf`` marks a
        step that needs the whole volume. Default: 0 (voxel-wise).
    per_item : bool
        Map the step over collections (tiles, regions). Default True.
    merged_at_join : bool
        The step's result on a tile is only complete once the join merges the
        tiles (``conncomp.label``: per-tile labels are merged across tiles).
        In a tiled part, the steps after it must declare ``takes_merged_tiles``;
        a pipeline that puts another step there is refused when it is built,
        and in a flat pipeline the tiles are joined before that step. Default False.
    takes_merged_tiles : bool
        The step can run on the tile results of a ``merged_at_join`` step and
        leaves them to the join (``conncomp.regionprops``). Default False.
    kind : {'map', 'label-merge', 'reduce', 'lookup', 'whole'}, optional
        How the step runs over the blocks of a volume larger than memory (see
        :mod:`florin.steps`). Default: ``'map'`` (with the halo), or
        ``'whole'`` when the halo is unbounded.
    blockwise : callable or str, optional
        The step's blockwise form, ``impl(datum, *, allocate, blocks, map,
        **params)`` returning what the step returns (see :mod:`florin.steps`),
        or a ``'module:attribute'`` naming it; the planner calls it instead of
        the step on a volume above the run's memory budget.

    Returns
    -------
    Florinated
        Calling it binds parameters (checked against ``func``'s signature) and
        returns an :class:`Operator`.

    Examples
    --------
    >>> import numpy as np
    >>> @florinate
    ... def scale(image, scalar=1):
    ...     return image * scalar
    >>> op = scale(scalar=2)
    >>> op(np.array([1, 2])).tolist()
    [2, 4]
    >>> scale(scalr=2)
    Traceback (most recent call last):
    ...
    florin.errors.OperatorBindError: scale() got an unexpected keyword argument `scalr`; did you mean `scalar`? (valid parameters: scalar)
    """
    options = dict(name=name, halo=halo, per_item=per_item, merged_at_join=merged_at_join,
                   takes_merged_tiles=takes_merged_tiles, kind=kind, blockwise=blockwise)
    if func is None:
        return functools.partial(florinate, **options)
    if isinstance(func, Florinated):
        return func
    return Florinated(func, **options)


# Kept for callers of the names from before florin.steps (one implementation: florin.steps).
step_name = _steps.name
is_per_item = _steps.per_item
halo_of = _steps.halo
merged_at_join = _steps.merged_at_join
takes_merged_tiles = _steps.takes_merged_tiles
