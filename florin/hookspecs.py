"""The hooks through which packages extend florin.

A plugin is a module (or object) with functions named like the hooks below,
decorated with :data:`florin.hookimpl`, and advertised in its package metadata
under the ``florin`` entry-point group::

    [project.entry-points.florin]
    myplugin = "myplugin.plugin"

florin's own operators, executors, formats and commands are registered through
these same hooks (see :mod:`florin.builtin`), as the plugins ``florin.operators``,
``florin.executors``, ``florin.formats`` and ``florin.commands``, whose
implementations run first; a plugin registering a built-in name afterwards
overrides it, with a :class:`florin.registry.PluginWarning`. Each hook receives
the object to register into; its return value is ignored. A function marked
with :data:`florin.hookimpl` whose name is not one of these hooks makes the
plugin fail ("unknown hook ...").

Every ``registry.add_*`` method takes the object, or a ``"module:attribute"``
reference to it that florin imports the first time the name is used, so that
listing plugins and starting the CLI import nothing heavy.
"""

import pluggy

hookspec = pluggy.HookspecMarker("florin")
hookimpl = pluggy.HookimplMarker("florin")


@hookspec
def florin_register_operators(registry):
    """Register pipeline operators.

    Call ``registry.add_operator(name, factory)`` for each operator, where
    ``factory`` is a function made with :func:`florin.florinate` (or another
    step factory, as :func:`florin.load`; or a ``"module:attribute"`` reference
    to one) and ``name`` a dotted name such as ``"myplugin.sauvola"``. Operators
    and the steps ``load``, ``save``, ``tile`` and ``join`` share one namespace:
    registered names are listed by ``florin ops`` and used by name in pipeline
    files.

    Parameters
    ----------
    registry : florin.registry.Registry
        The registry to add operators to.

    Examples
    --------
    >>> import florin
    >>> @florin.florinate
    ... def invert(image):
    ...     return image.max() - image
    >>> @florin.hookimpl
    ... def florin_register_operators(registry):
    ...     registry.add_operator("myplugin.invert", invert)
    """


@hookspec
def florin_register_executors(registry):
    """Register pipeline executors.

    Call ``registry.add_executor(name, cls)`` where ``cls`` subclasses
    :class:`florin.Pipeline` and overrides its ``map`` method (or is a
    ``"module:ClassName"`` reference to such a class). The class becomes
    available as ``florin.<ClassName>`` and as ``--executor name`` in the CLI.

    Parameters
    ----------
    registry : florin.registry.Registry
        The registry to add executors to.

    Examples
    --------
    >>> import florin
    >>> class Reversed(florin.Pipeline):
    ...     def map(self, func, items):
    ...         return list(reversed([func(x) for x in reversed(list(items))]))
    >>> @florin.hookimpl
    ... def florin_register_executors(registry):
    ...     registry.add_executor("reversed", Reversed)
    """


@hookspec
def florin_register_formats(registry):
    """Register file formats for :func:`florin.load` and :func:`florin.save`.

    Call ``registry.add_format(fmt)`` with a :class:`florin.io.Format`, which
    names the format, the file extensions it claims and its ``read`` and
    ``write`` functions.

    Parameters
    ----------
    registry : florin.registry.Registry
        The registry to add formats to.

    Examples
    --------
    >>> import numpy as np
    >>> import florin
    >>> from florin.io import Format
    >>> def read_txt(path, **options):
    ...     return florin.as_volume(np.loadtxt(path))
    >>> def write_txt(path, volume, **options):
    ...     np.savetxt(path, np.asarray(volume))
    >>> @florin.hookimpl
    ... def florin_register_formats(registry):
    ...     registry.add_format(Format("txt", (".txt",), read_txt, write_txt))
    """


@hookspec
def florin_register_commands(app):
    """Add sub-commands to the ``florin`` command line.

    Parameters
    ----------
    app : typer.Typer
        The CLI application; decorate functions with ``@app.command()``.

    Examples
    --------
    >>> import florin
    >>> @florin.hookimpl
    ... def florin_register_commands(app):
    ...     @app.command()
    ...     def hello():
    ...         print("hello from my plugin")
    """
