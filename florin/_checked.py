"""Florinated factories that also check parameter values when a pipeline is built."""

from __future__ import annotations

from florin.operators import Florinated, Operator

__all__ = ["Checked", "SpecOperator", "checked"]


class SpecOperator(Operator):
    """A bound operator that describes itself for pipeline files (``to_spec``)."""

    def to_spec(self) -> dict:
        return self.factory.spec(self)


class Checked(Florinated):
    """A florinated factory whose ``check(params)`` runs when parameters are bound.

    ``florinate`` checks names against the signature; ``check`` gets the bound
    parameters with defaults filled in and raises a :class:`florin.errors.FlorinError`
    for a bad value, so the mistake surfaces when the pipeline is built, not
    halfway through a run. ``data_types`` are the non-image data the function
    takes first (regions), so that ``factory(data, ...)`` applies it directly
    as it does for images. ``spec(op)`` and ``from_spec(entry)`` describe a
    bound step as a pipeline-file table and build it back (see
    :mod:`florin.pipeline_file`), for steps whose parameters are not plain
    data. ``after_map(op, collection)`` runs on the collection a pipeline
    rebuilt after mapping the step over it; ``whole_collection`` declares
    that the step applied to a whole collection gives what mapping it over the
    items gives, so a pipeline calls it once (both in :mod:`florin.steps`).
    Instances must be module-level names (they pickle
    by reference, like functions).
    """

    def __init__(self, func, *, check, data_types=(), spec=None, from_spec=None, after_map=None, whole_collection=False,
                 **kwargs):
        super().__init__(func, **kwargs)
        self.check = check
        self.after_map = after_map
        self.whole_collection = whole_collection
        self.data_types = tuple(data_types)
        self.spec = spec
        if from_spec is not None:
            self.from_spec = from_spec

    def __call__(self, *args, **kwargs):
        # ``op(regions)`` applies at once when the first argument is data of
        # one of ``data_types`` (besides images, which florinate recognises).
        if args and self.data_types and isinstance(args[0], self.data_types):
            return self.bind(*args[1:], **kwargs)(args[0])
        return super().__call__(*args, **kwargs)

    def bind(self, *args, **kwargs):
        op = super().bind(*args, **kwargs)
        self.check(op.params())
        if self.spec is not None:
            op = SpecOperator(self, op.args, op.kwargs)
        return op


def checked(*, check, **kwargs):
    """Decorator form of :class:`Checked`: ``@checked(check=...)`` on a module-level ``def``.

    Takes the keyword arguments of :class:`Checked` (and of :func:`florin.florinate`).
    """

    def decorate(func):
        return Checked(func, check=check, **kwargs)

    return decorate
