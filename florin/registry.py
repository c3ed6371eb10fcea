"""The plugin manager and the registry of operators, executors and formats.

Plugins are found through the ``florin`` entry-point group and loaded once, on
first use. florin's built-ins (:mod:`florin.builtin`) are four plugins of their
own, ``florin.operators``, ``florin.executors``, ``florin.formats`` and
``florin.commands``, registered first and through the very same hooks; their
hook implementations are ``tryfirst``, so a plugin registering a built-in name
afterwards overrides it (with a :class:`PluginWarning`), as xarray lets a
backend replace a built-in engine.

Every hook is called through ``pm.hook.<name>(...)``, so pluggy's ordering,
wrappers and call monitoring apply. Each plugin's implementations are guarded:
a plugin that fails to import, implements a hook florin does not have
(``pm.check_pending()``: "unknown hook ..."), or raises while registering warns
and is listed as failed by ``florin plugins``; what it registered is removed,
any built-in it overrode comes back, and the core keeps working. Set
``FLORIN_DISABLE_PLUGINS=name1,name2`` to block plugins by name (entry-point
names, or the built-in plugin names above).

A name may be registered as the object itself or as a ``"module:attribute"``
reference that is imported on first use, so that listing what is installed
imports nothing heavy.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import os
import sys
import threading
import warnings
from collections.abc import MutableMapping
from dataclasses import dataclass, field

import pluggy

from florin import __version__, hookspecs
from florin._metadata import describe_format, describe_operator, operator_signature, operator_summary
from florin.builtin import PARTS, PLUGINS, complete_operators, extras, install_hint
from florin.errors import ParameterError, PluginError, UnknownFormatError

__all__ = ["PluginInfo", "PluginWarning", "Registry", "get_registry", "plugin_manager", "reset_registry"]

ENTRY_POINT_GROUP = "florin"
#: Prefix of the built-in plugins' names.
BUILTIN = "florin"
DISABLE_ENV = "FLORIN_DISABLE_PLUGINS"

_KINDS = ("operators", "executors", "formats", "commands")
_REGISTER_HOOKS = ("florin_register_operators", "florin_register_executors", "florin_register_formats")


#: Which pip extra provides the built-in names that need optional packages (from :data:`florin.builtin.PARTS`).
EXTRAS = {"executors": extras("executor"), "formats": extras("format")}


class PluginWarning(UserWarning):
    """A plugin failed to load or register, or overrides a name; florin goes on."""


@dataclass
class PluginInfo:
    """What ``florin plugins`` shows about one plugin."""

    name: str
    version: str = ""
    status: str = "loaded"  # loaded, failed, disabled
    error: str = ""
    registered: dict = field(default_factory=lambda: {kind: [] for kind in _KINDS})
    #: Messages about single names: built-ins it overrides, names another plugin had first.
    notes: list = field(default_factory=list)

    @property
    def builtin(self) -> bool:
        return self.name == BUILTIN or self.name.startswith(BUILTIN + ".")


_UNRESOLVED = object()


@dataclass
class Entry:
    """One registered name: the object, or a ``module:attribute`` reference imported on first use."""

    kind: str
    name: str
    plugin: str
    obj: object = _UNRESOLVED
    ref: str | None = None
    #: What is known without importing: ``signature``/``summary`` (operators), ``extensions``/``description`` (formats).
    meta: dict = field(default_factory=dict)

    @property
    def resolved(self) -> bool:
        return self.obj is not _UNRESOLVED

    @property
    def attr(self) -> str:
        """The object's name without importing it (a class name, for executors)."""
        if self.resolved:
            return getattr(self.obj, "__name__", self.name)
        return self.ref.rpartition(":")[2]


def _import_ref(ref: str):
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise PluginError(f"a reference must look like 'package.module:name', got {ref!r}")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class _Table(MutableMapping):
    """Names of one kind; a value is imported the first time it is looked up."""

    def __init__(self, registry, kind):
        self._registry = registry
        self._kind = kind
        self._entries: dict[str, Entry] = {}

    def entry(self, name) -> Entry:
        """The :class:`Entry` for ``name``, without importing anything."""
        return self._entries[name]

    def entries(self):
        return list(self._entries.values())

    def __getitem__(self, name):
        entry = self._entries[name]
        if not entry.resolved:
            self._registry._resolve(entry)
        return entry.obj

    def __setitem__(self, name, value):
        self._entries[name] = Entry(self._kind, name, "", obj=value)

    def __delitem__(self, name):
        del self._entries[name]

    def __iter__(self):
        return iter(list(self._entries))

    def __len__(self):
        return len(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def __repr__(self):
        return f"<{self._kind}: {', '.join(self._entries)}>"


def _check_operator(name, obj):
    if not callable(obj):
        raise PluginError(f"operator {name!r} must be made with florin.florinate (or be a step factory), got {obj!r}")


def _defined(module, name):
    """``module.name`` if ``module`` is imported, else None.

    An executor subclasses :class:`florin.Pipeline` and a format is a :class:`florin.io.Format`: a plugin making
    either has imported the module defining it, so a check needs no import of its own (both import xarray, and the
    registry is on every command).
    """
    loaded = sys.modules.get(module)
    return getattr(loaded, name, None)


def _check_executor(name, obj):
    Pipeline = _defined("florin.pipelines", "Pipeline")
    if not (Pipeline is not None and isinstance(obj, type) and issubclass(obj, Pipeline)):
        raise PluginError(f"executor {name!r} must be a subclass of florin.Pipeline, got {obj!r}")


def _check_format(name, obj):
    Format = _defined("florin.io.formats", "Format")
    if not (Format is not None and isinstance(obj, Format)):
        raise PluginError(f"format {name!r} must be a florin.io.Format, got {obj!r}")


_CHECKS = {"operators": _check_operator, "executors": _check_executor, "formats": _check_format}


class Registry:
    """Names registered by plugins (florin's built-ins included).

    A registry is filled by calling the hooks of every plugin; use
    :func:`get_registry` for the process-wide one. ``operators``, ``executors``
    and ``formats`` are mappings from name to object; a name registered as a
    ``"module:attribute"`` reference is imported when it is first looked up.
    """

    def __init__(self):
        self.operators = _Table(self, "operators")
        self.executors = _Table(self, "executors")
        self.formats = _Table(self, "formats")
        self.plugins: dict[str, PluginInfo] = {}
        self._shadowed: dict = {}  # (kind, name) -> the built-in Entry a plugin overrode
        self._current: PluginInfo | None = None

    # -- registration (called from hooks) -------------------------------------------------
    def _add(self, kind: str, name: str, obj, meta=None) -> None:
        table = getattr(self, kind)
        current = self._current
        plugin = current.name if current is not None else ""
        if isinstance(obj, str):  # a reference, imported and checked on first use
            entry = Entry(kind, name, plugin, ref=obj, meta=dict(meta or {}))
        else:
            _CHECKS[kind](name, obj)
            entry = Entry(kind, name, plugin, obj=obj)
        old = table._entries.get(name)
        if old is not None and old.plugin != plugin:
            owner = self.plugins.get(old.plugin)
            what = f"{kind[:-1]} {name!r}"
            if owner is not None and owner.builtin and not (current is not None and current.builtin):
                message = f"plugin {plugin!r} overrides built-in {what} (from {old.plugin!r})"
                warnings.warn(message, PluginWarning, stacklevel=4)
                self._shadowed.setdefault((kind, name), old)
                if current is not None:
                    current.notes.append(f"overrides built-in {what}")
                if owner is not None and name in owner.registered[kind]:
                    owner.registered[kind].remove(name)
                    owner.notes.append(f"{what} overridden by plugin {plugin!r}")
            else:
                # Two plugins claim one name: the first keeps it, the second keeps its other names.
                message = (f"plugin {plugin!r} registers {what}, which plugin {old.plugin!r} already "
                           f"registered; keeping {old.plugin!r}'s")
                warnings.warn(message, PluginWarning, stacklevel=4)
                if current is not None:
                    current.notes.append(f"{what} not registered: plugin {old.plugin!r} has it")
                return
        table._entries[name] = entry
        if current is not None and name not in current.registered[kind]:
            current.registered[kind].append(name)

    def add_operator(self, name: str, factory, *, signature=None, summary=None) -> None:
        """Register an operator or step factory under ``name``.

        Parameters
        ----------
        name : str
            Dotted name such as ``"myplugin.sauvola"``; pipeline files use it as ``op = "..."``.
        factory : callable or str
            A function made with :func:`florin.florinate`, another step factory (as
            :func:`florin.load`), or a ``"module:attribute"`` reference to one, imported
            on first use.
        signature, summary : str, optional
            For a reference: the parameters and the one-line summary ``florin ops`` shows
            (by default read from the module's source when it is a plain decorated ``def``,
            else the module is imported to list it).
        """
        meta = {k: v for k, v in (("signature", signature), ("summary", summary)) if v is not None}
        self._add("operators", name, factory, meta)

    def add_executor(self, name: str, cls) -> None:
        """Register a :class:`florin.Pipeline` subclass (or a ``"module:Class"`` reference) as executor ``name``."""
        self._add("executors", name.lower(), cls)

    def add_format(self, fmt, *, name=None, extensions=None, description=None) -> None:
        """Register a :class:`florin.io.Format` under its name.

        ``fmt`` may be a ``"module:attribute"`` reference; ``name``, ``extensions`` and
        ``description`` then say what the registry lists without importing it (by
        default they are read from a ``Format(...)`` call with literal arguments in the
        module's source, else the module is imported now).
        """
        if not isinstance(fmt, str):
            self._add("formats", fmt.name, fmt)
            return
        meta = {"name": name, "extensions": extensions, "description": description}
        if name is None or extensions is None:
            found = describe_format(fmt) or {}
            meta = {k: found.get(k) if v is None else v for k, v in meta.items()}
        if meta["name"] is None or meta["extensions"] is None:
            self._add("formats", name or fmt, _import_ref(fmt))
            return
        meta["extensions"] = tuple(meta["extensions"])
        meta["description"] = meta["description"] or ""
        self._add("formats", meta["name"], fmt, meta)

    def note_command(self, name: str) -> None:
        """Record that the current plugin added CLI command ``name`` (florin records typer commands itself)."""
        if self._current is not None and name not in self._current.registered["commands"]:
            self._current.registered["commands"].append(name)

    def _resolve(self, entry: Entry) -> None:
        try:
            obj = _import_ref(entry.ref)
        except Exception as exc:
            raise PluginError(
                f"{entry.kind[:-1]} {entry.name!r} of plugin {entry.plugin!r} cannot be imported from "
                f"{entry.ref!r}: {type(exc).__name__}: {exc}"
            ) from exc
        _CHECKS[entry.kind](entry.name, obj)
        entry.obj = obj

    # -- lookup ---------------------------------------------------------------------------
    def describe_operator(self, name: str) -> tuple:
        """``(signature, summary)`` of operator ``name`` as ``florin ops`` shows them, importing only if need be."""
        entry = self.operators.entry(name)
        if not entry.resolved:
            meta = entry.meta if "signature" in entry.meta else describe_operator(entry.ref) or {}
            if "signature" in meta:
                return meta["signature"], meta.get("summary", "")
        factory = self.operators[name]
        return operator_signature(factory), operator_summary(factory)

    def format_info(self, name: str) -> tuple:
        """``(extensions, description)`` of format ``name``, without importing it."""
        entry = self.formats.entry(name)
        if entry.resolved:
            return tuple(entry.obj.extensions), entry.obj.description
        return entry.meta["extensions"], entry.meta["description"]

    def operator(self, name: str):
        """The operator (or step) factory registered as ``name``."""
        if name not in self.operators:
            complete_operators(self, str(name))
        if name not in self.operators:
            raise ParameterError(_unknown("operator", name, self.operators, {}))
        return self.operators[name]

    def executor_entry(self, name: str) -> Entry:
        """The executor entry for ``name`` (registry name or class name, any case), without importing it."""
        key = name.lower()
        if key in self.executors:
            return self.executors.entry(key)
        for entry in self.executors.entries():
            if entry.attr.lower() == key:
                return entry
        raise ParameterError(_unknown("executor", name, self.executors, EXTRAS["executors"]))

    def executor(self, name: str):
        """The executor class registered as ``name`` (case-insensitive; the class name works too)."""
        return self.executors[self.executor_entry(name).name]

    def format(self, name: str):
        """The format registered as ``name``."""
        if name not in self.formats:
            raise UnknownFormatError(_unknown("format", name, self.formats, EXTRAS["formats"]))
        return self.formats[name]

    def format_for_path(self, path) -> object:
        """The format whose extensions match ``path`` (longest extension wins)."""
        name = os.fspath(path).lower().rstrip("/\\")
        best, best_len = None, 0
        for fmt_name in self.formats:
            for ext in self.format_info(fmt_name)[0]:
                if name.endswith(ext.lower()) and len(ext) > best_len:
                    best, best_len = fmt_name, len(ext)
        if best is None:
            known = ", ".join(sorted({e for f in self.formats for e in self.format_info(f)[0]}))
            missing = [f"{n} (extra [{x}])" for n, x in EXTRAS["formats"].items() if n not in self.formats]
            more = f"; more with: {', '.join(missing)}" if missing else ""
            raise UnknownFormatError(f"cannot tell the format of {os.fspath(path)!r} from its extension; "
                              f"known extensions: {known}{more}; or name the format with format= (--format on the command line)")
        return self.formats[best]

    # -- removal (a plugin that failed) ---------------------------------------------------
    def _unregister(self, info: PluginInfo) -> None:
        for kind, names in info.registered.items():
            table = getattr(self, kind, None)
            for name in names:
                if isinstance(table, _Table):
                    entry = table._entries.get(name)
                    if entry is not None and entry.plugin == info.name:
                        del table._entries[name]
                        shadowed = self._shadowed.pop((kind, name), None)
                        if shadowed is not None:  # the built-in comes back
                            table._entries[name] = shadowed
                            owner = self.plugins.get(shadowed.plugin)
                            if owner is not None:
                                owner.registered[kind].append(name)
            names.clear()


def _unknown(kind, name, known, extras):
    close = difflib.get_close_matches(str(name).lower(), [k.lower() for k in known], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    hints = {p.name: install_hint(p) for p in PARTS if p.kind == kind}
    missing = [f"{n} ({hints.get(n, f'install extra [{x}]')})" for n, x in extras.items() if n not in known]
    more = f" Not installed: {', '.join(missing)}." if missing else ""
    return f"unknown {kind} {name!r}.{hint} Installed: {', '.join(sorted(known)) or 'none'}.{more}"


# -- the plugin manager ---------------------------------------------------------------------------
_lock = threading.RLock()
_registry: Registry | None = None
_manager: pluggy.PluginManager | None = None


def _disabled() -> set:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


class _Guarded:
    """A plugin as pluggy sees it: each hook implementation of ``plugin`` runs with failures isolated.

    The registry learns which plugin is registering (so names are recorded and
    overrides warned about per plugin), and an exception marks that plugin as
    failed instead of aborting the hook call for every other plugin.
    """

    def __init__(self, plugin, info: PluginInfo, registry: Registry, pm: pluggy.PluginManager):
        self.__plugin = plugin
        for attr in dir(plugin):
            if not attr.startswith("florin_"):
                continue
            func = getattr(plugin, attr, None)
            opts = pm.parse_hookimpl_opts(plugin, attr)
            if opts is None or not callable(func):
                continue
            if opts.get("wrapper") or opts.get("hookwrapper"):
                setattr(self, attr, func)  # wrappers wrap the whole call; they stay as written
            else:
                setattr(self, attr, _guard(func, attr, info, registry))

    def __repr__(self):
        return repr(self.__plugin)


def _guard(func, hook_name, info, registry):
    commands = hook_name == "florin_register_commands"

    @functools.wraps(func)
    def call(*args, **kwargs):
        if info.status == "failed":
            return None
        app = (kwargs["app"] if "app" in kwargs else args[0]) if commands else None
        before = _commands(app)
        registry._current = info
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if info.builtin:
                raise
            _fail(info, f"{hook_name} raised {type(exc).__name__}: {exc}")
            registry._unregister(info)
            if app is not None:  # commands added before the failure come out again
                del app.registered_commands[len(before[0]):]
                del app.registered_groups[len(before[1]):]
            return None
        finally:
            registry._current = None
            if app is not None and info.status != "failed":
                after = _commands(app)
                names = info.registered["commands"]
                for item in after[0][len(before[0]):] + after[1][len(before[1]):]:
                    if item in names:  # noted by hand as well: keep the app's order
                        names.remove(item)
                    names.append(item)

    return call


def _commands(app):
    """The names of ``app``'s commands and of its command groups."""
    if app is None:
        return [], []
    commands = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]
    groups = [g.name or g.typer_instance.info.name or "?" for g in app.registered_groups]
    return commands, groups


def _fail(info: PluginInfo, message: str) -> None:
    info.status, info.error = "failed", message
    warnings.warn(f"florin plugin {info.name!r} disabled: {message}", PluginWarning, stacklevel=3)


def _register(pm, registry, info, plugin) -> None:
    try:
        pm.register(_Guarded(plugin, info, registry, pm), name=info.name)
    except pluggy.PluginValidationError as exc:
        _fail(info, str(exc))


def _unknown_hooks(pm, plugin) -> list:
    names = []
    for hook_name, caller in vars(pm.hook).items():
        if caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and not impl.optionalhook:
                names.append(hook_name)
    return names


def _check_pending(pm, registry) -> None:
    """``pm.check_pending()``: a plugin implementing a hook florin does not have fails as a whole."""
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            plugin = exc.plugin
            name = pm.get_name(plugin)
            info = registry.plugins[name]
            unknown = _unknown_hooks(pm, plugin)
            hints = []
            for hook_name in unknown:
                close = difflib.get_close_matches(hook_name, [h for h in vars(pm.hook) if h.startswith("florin_")
                                                              and getattr(pm.hook, h).has_spec()], n=1)
                hints.append(f"{hook_name}" + (f" (did you mean {close[0]}?)" if close else ""))
            pm.unregister(plugin)
            pm.set_blocked(name)
            _fail(info, f"unknown hook {', '.join(hints) or exc}")


def _load_plugins(pm: pluggy.PluginManager, registry: Registry) -> None:
    disabled = _disabled()
    for name in disabled:
        pm.set_blocked(name)
    for name, plugin in PLUGINS.items():
        info = registry.plugins[name] = PluginInfo(name, __version__)
        if pm.is_blocked(name):
            info.status = "disabled"
            continue
        _register(pm, registry, info, plugin)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in registry.plugins:
            continue
        version = ep.dist.version if ep.dist is not None else ""
        info = registry.plugins[ep.name] = PluginInfo(ep.name, version)
        if pm.is_blocked(ep.name):
            info.status = "disabled"
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must never break the core
            _fail(info, f"cannot import {ep.value!r}: {type(exc).__name__}: {exc}")
            continue
        _register(pm, registry, info, plugin)
    _check_pending(pm, registry)


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (plugins loaded)."""
    get_registry()
    return _manager


def call_hook(hook_name: str, **kwargs) -> None:
    """Call ``pm.hook.<hook_name>(**kwargs)`` on every loaded plugin, failures isolated per plugin."""
    get_registry()
    getattr(_manager.hook, hook_name)(**kwargs)


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
            for hook_name in _REGISTER_HOOKS:
                getattr(pm.hook, hook_name)(registry=registry)
            _manager, _registry = pm, registry
    return _registry


def reset_registry() -> None:
    """Forget loaded plugins so the next :func:`get_registry` loads them again (tests)."""
    global _registry, _manager
    with _lock:
        _registry = _manager = None
