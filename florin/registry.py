"""The plugin manager and the registry of operators, executors and formats.

Plugins are found through the ``florin`` entry-point group and loaded once, on
first use. florin's built-ins (:mod:`florin.builtin`) are registered first,
through the very same hooks. A plugin that fails to import or to register
warns and is listed as failed by ``florin plugins``; the core keeps working.
Set ``FLORIN_DISABLE_PLUGINS=name1,name2`` to skip plugins by entry-point name.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
import threading
import warnings
from dataclasses import dataclass, field

import pluggy

from florin import hookspecs
from florin.errors import FormatError, ParameterError, PluginError

__all__ = ["PluginInfo", "PluginWarning", "Registry", "get_registry", "reset_registry"]

ENTRY_POINT_GROUP = "florin"
BUILTIN = "florin"

# Which pip extra provides the built-in names that need optional packages.
EXTRAS = {
    "executors": {"mpi": "mpi", "dask": "dask, then pip install ./plugins/florin-dask"},
    "formats": {"zarr": "zarr", "ome-zarr": "zarr", "netcdf": "netcdf"},
}


class PluginWarning(UserWarning):
    """A plugin failed to load or register; florin goes on without it."""


@dataclass
class PluginInfo:
    """What ``florin plugins`` shows about one plugin."""

    name: str
    version: str = ""
    status: str = "loaded"  # loaded, failed, disabled
    error: str = ""
    registered: dict = field(default_factory=lambda: {"operators": [], "executors": [], "formats": [], "commands": []})


class Registry:
    """Names registered by plugins (florin's built-ins included).

    A registry is filled by calling the hooks of every plugin; use
    :func:`get_registry` for the process-wide one.
    """

    def __init__(self):
        self.operators: dict = {}
        self.executors: dict = {}
        self.formats: dict = {}
        self.plugins: dict[str, PluginInfo] = {}
        self._owner: dict = {}
        self._current: PluginInfo | None = None

    # -- registration (called from hooks) -------------------------------------------------
    def _claim(self, kind: str, name: str):
        owner = self._owner.get((kind, name))
        current = self._current.name if self._current else BUILTIN
        if owner is not None:
            raise PluginError(
                f"plugin {current!r} registers {kind[:-1]} {name!r}, which plugin {owner!r} already registered"
            )
        self._owner[(kind, name)] = current
        if self._current is not None:
            self._current.registered[kind].append(name)

    def add_operator(self, name: str, factory) -> None:
        """Register an operator factory (made with :func:`florin.florinate`) under ``name``."""
        from florin.operators import Florinated

        if not isinstance(factory, Florinated):
            raise PluginError(f"operator {name!r} must be made with florin.florinate, got {factory!r}")
        self._claim("operators", name)
        self.operators[name] = factory

    def add_executor(self, name: str, cls) -> None:
        """Register a :class:`florin.Pipeline` subclass as executor ``name``."""
        from florin.pipelines import Pipeline

        if not (isinstance(cls, type) and issubclass(cls, Pipeline)):
            raise PluginError(f"executor {name!r} must be a subclass of florin.Pipeline, got {cls!r}")
        self._claim("executors", name.lower())
        self.executors[name.lower()] = cls

    def add_format(self, fmt) -> None:
        """Register a :class:`florin.io.Format`."""
        self._claim("formats", fmt.name)
        self.formats[fmt.name] = fmt

    def note_command(self, name: str) -> None:
        """Record that the current plugin added CLI command ``name``."""
        if self._current is not None:
            self._current.registered["commands"].append(name)

    # -- lookup ---------------------------------------------------------------------------
    def operator(self, name: str):
        """The operator factory registered as ``name``."""
        try:
            return self.operators[name]
        except KeyError:
            raise ParameterError(_unknown("operator", name, self.operators, {})) from None

    def executor(self, name: str):
        """The executor class registered as ``name`` (case-insensitive)."""
        key = name.lower()
        if key in self.executors:
            return self.executors[key]
        for cls in self.executors.values():
            if cls.__name__.lower() == key:
                return cls
        raise ParameterError(_unknown("executor", name, self.executors, EXTRAS["executors"]))

    def format(self, name: str):
        """The format registered as ``name``."""
        try:
            return self.formats[name]
        except KeyError:
            raise FormatError(_unknown("format", name, self.formats, EXTRAS["formats"])) from None

    def format_for_path(self, path) -> object:
        """The format whose extensions match ``path`` (longest extension wins)."""
        name = os.fspath(path).lower().rstrip("/\\")
        best, best_len = None, 0
        for fmt in self.formats.values():
            for ext in fmt.extensions:
                if name.endswith(ext.lower()) and len(ext) > best_len:
                    best, best_len = fmt, len(ext)
        if best is None:
            known = ", ".join(sorted({e for f in self.formats.values() for e in f.extensions}))
            missing = [f"{n} (extra [{x}])" for n, x in EXTRAS["formats"].items() if n not in self.formats]
            more = f"; more with: {', '.join(missing)}" if missing else ""
            raise FormatError(f"cannot tell the format of {os.fspath(path)!r} from its extension; "
                              f"known extensions: {known}{more}; or name the format with format= (--format on the command line)")
        return best


def _unknown(kind, name, known, extras):
    close = difflib.get_close_matches(str(name).lower(), [k.lower() for k in known], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    missing = [f"{n} (install extra [{x}])" for n, x in extras.items() if n not in known]
    more = f" Not installed: {', '.join(missing)}." if missing else ""
    return f"unknown {kind} {name!r}.{hint} Installed: {', '.join(sorted(known)) or 'none'}.{more}"


_lock = threading.RLock()
_registry: Registry | None = None
_manager: pluggy.PluginManager | None = None


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (plugins loaded)."""
    get_registry()
    return _manager


def _disabled() -> set:
    return {n.strip() for n in os.environ.get("FLORIN_DISABLE_PLUGINS", "").split(",") if n.strip()}


def _load_plugins(pm: pluggy.PluginManager, registry: Registry) -> None:
    from florin import __version__, builtin

    registry.plugins[BUILTIN] = PluginInfo(BUILTIN, __version__)
    pm.register(builtin, name=BUILTIN)
    disabled = _disabled()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == BUILTIN or ep.name in registry.plugins:
            continue
        version = ep.dist.version if ep.dist is not None else ""
        info = registry.plugins[ep.name] = PluginInfo(ep.name, version)
        if ep.name in disabled:
            info.status = "disabled"
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must never break the core
            _fail(info, f"import failed: {type(exc).__name__}: {exc}")


def _fail(info: PluginInfo, message: str) -> None:
    info.status, info.error = "failed", message
    warnings.warn(f"florin plugin {info.name!r} disabled: {message}", PluginWarning, stacklevel=3)


def call_hook(hook_name: str, **kwargs) -> None:
    """Call one hook on every loaded plugin, isolating failures per plugin."""
    registry = get_registry()
    _call_hook(plugin_manager(), registry, hook_name, kwargs)


def _call_hook(pm, registry, hook_name, kwargs):
    hook = getattr(pm.hook, hook_name)
    # Built-ins first, then plugins in load order (pluggy calls LIFO otherwise).
    for impl in sorted(hook.get_hookimpls(), key=lambda i: i.plugin_name != BUILTIN):
        info = registry.plugins.get(impl.plugin_name)
        if info is not None and info.status == "failed":
            continue
        registry._current = info
        try:
            impl.function(**{k: kwargs[k] for k in impl.argnames})
        except Exception as exc:
            if impl.plugin_name == BUILTIN:
                raise
            _fail(info, f"{hook_name} failed: {type(exc).__name__}: {exc}")
            _unregister(registry, info)
        finally:
            registry._current = None


def _unregister(registry: Registry, info: PluginInfo) -> None:
    for kind, names in info.registered.items():
        table = getattr(registry, kind, None)
        for name in names:
            if isinstance(table, dict):
                table.pop(name, None)
            registry._owner.pop((kind, name), None)
        names.clear()


def get_registry() -> Registry:
    """The process-wide registry, loading plugins on first call."""
    global _registry, _manager
    if _registry is not None:
        return _registry
    with _lock:
        if _registry is None:
            pm = pluggy.PluginManager("florin")
            pm.add_hookspecs(hookspecs)
            registry = Registry()
            _load_plugins(pm, registry)
            for hook_name in ("florin_register_operators", "florin_register_executors", "florin_register_formats"):
                _call_hook(pm, registry, hook_name, {"registry": registry})
            _manager, _registry = pm, registry
    return _registry


def reset_registry() -> None:
    """Forget loaded plugins so the next :func:`get_registry` loads them again (tests)."""
    global _registry, _manager
    with _lock:
        _registry = _manager = None
