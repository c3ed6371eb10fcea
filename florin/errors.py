"""Typed errors raised by florin.

Library code raises these; only the CLI turns them into one readable line and
an exit code. Each subclass also derives from the built-in exception a Python
user would naturally catch (``ValueError``, ``TypeError``, ``OSError``...).
"""
import pickle


class FlorinError(Exception):
    """Base class of every error florin raises on purpose."""


class ParameterError(FlorinError, ValueError):
    """A parameter has an invalid value; the message names it and what would be valid."""


class ParameterTypeError(ParameterError, TypeError):
    """A parameter has the wrong type (also a ``TypeError``, which Python raised here before)."""


class OperatorBindError(FlorinError, TypeError):
    """An operator was given arguments its signature does not accept."""


class PipelineError(FlorinError):
    """A pipeline is malformed or a step failed while it ran.

    Parameters
    ----------
    message : str
        What went wrong.
    operator : str, optional
        Name of the step that failed.
    origin : tuple of int, optional
        Origin of the tile (its core, in full-volume voxels) the step was working on.
    """

    def __init__(self, message, *, operator=None, origin=None):
        super().__init__(message)
        self.operator = operator
        self.origin = origin

    def __reduce__(self):
        # Keep operator, origin and the chained cause when the error travels between processes
        # (plain pickle drops __cause__).
        state = dict(self.__dict__)
        if self.__cause__ is not None:
            try:
                pickle.loads(pickle.dumps(self.__cause__))  # some exceptions pickle but do not rebuild
                state["_cause"] = self.__cause__
            except Exception:  # an unpicklable cause stays behind; the executor reports it as text
                pass
        return (_rebuild_pipeline_error, (type(self), str(self), self.operator, self.origin), state)

    def __setstate__(self, state):
        state = dict(state)
        cause = state.pop("_cause", None)
        self.__dict__.update(state)
        if cause is not None:
            self.__cause__ = cause


def _rebuild_pipeline_error(cls, message, operator, origin):
    return cls(message, operator=operator, origin=origin)


class WorkerError(PipelineError):
    """A worker (thread, process, MPI rank) died or could not run an item."""


class TilingError(ParameterError):
    """Tile geometry (shape, stride, halo) is invalid for the volume."""


class FormatError(FlorinError, ValueError):
    """A file format is unknown, unavailable, or a file is not valid for it."""


class UnknownFormatError(FormatError, ParameterError):
    """No format has this name, or a path's extension names none: a bad parameter (the CLI exits 2)."""


class InputFileError(FlorinError, OSError):
    """An input file is missing, unreadable, or lacks the requested dataset."""


class MissingInputError(InputFileError):
    """An input file does not exist (the CLI treats it as a usage error, exit status 2)."""


class OutputExistsError(FlorinError, FileExistsError):
    """An output already exists (pass ``overwrite=True``) or would overwrite an input."""


class OutputNotWritableError(FlorinError, PermissionError):
    """The folder an output goes to is not writable."""


class OutputBusyError(FlorinError, BlockingIOError):
    """Another run is writing the same output right now (it holds the output's claim)."""


class ResumeError(ParameterError):
    """A run cannot resume from the partial run it was pointed at (another pipeline or input, lost records)."""


class PluginError(FlorinError):
    """A plugin failed to load or registered a name that is already taken."""


class ClassificationError(ParameterError):
    """A classifier refers to an unknown property or has invalid bounds."""


class AnnotationError(ParameterError):
    """An annotation for tuning is invalid (wrong shape, values other than 0/1/2, no foreground or background)."""


class FlorinWarning(UserWarning):
    """Base class of the warnings florin gives (the CLI prints them as ``florin: warning: ...``)."""


class ClassificationWarning(FlorinWarning):
    """A classification is likely not what was meant (e.g. no object matched any bounded class)."""


class FlorinDeprecationWarning(FlorinWarning, FutureWarning):
    """A florin name that still works but is going away (e.g. ``Multithread(threads=...)``: use ``workers=``).

    A :class:`FutureWarning`, so that it is shown by default, as scikit-image's parameter renames are.
    """
