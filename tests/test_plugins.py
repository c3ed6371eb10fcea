"""Plugins installed for real (pip --target) and found through the entry-point group."""

import importlib
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import florin
import florin.pipeline_file
from florin.registry import PluginWarning, get_registry, reset_registry

GOOD = '''
import numpy as np
import florin
import florin.pipeline_file
from florin.io import Format


@florin.florinate
def invert(image, top=255):
    return top - image


def read_rev(path):
    return florin.as_volume(np.load(path)[::-1])


def write_rev(path, volume):
    with open(path, "wb") as f:
        np.save(f, np.asarray(volume)[::-1])


class Backwards(florin.Pipeline):
    """Maps items in reverse order and puts results back in order."""

    name = "backwards"
    ran = 0

    def map(self, func, items):
        items = list(items)
        Backwards.ran += len(items)
        return [func(x) for x in items[::-1]][::-1]


@florin.hookimpl
def florin_register_operators(registry):
    registry.add_operator("throwaway.invert", invert)


@florin.hookimpl
def florin_register_formats(registry):
    registry.add_format(Format("rev", (".rev",), read_rev, write_rev, "reversed npy"))


@florin.hookimpl
def florin_register_executors(registry):
    registry.add_executor("backwards", Backwards)
'''

BROKEN = "raise ImportError('this plugin is broken on purpose')\n"

GREEDY = '''
import florin
import florin.pipeline_file


class Loud(florin.Serial):
    """A Serial that counts its runs."""

    runs = 0

    def map(self, func, items):
        Loud.runs += 1
        return super().map(func, items)


@florin.florinate
def twice(image):
    return image * 2


@florin.hookimpl
def florin_register_executors(registry):
    registry.add_executor("serial", Loud)  # overrides the built-in


@florin.hookimpl
def florin_register_operators(registry):
    registry.add_operator("greedy.twice", twice)
    registry.add_operator("throwaway.invert", twice)  # throwaway has it: the first plugin keeps it
'''

TYPO = '''
import florin
import florin.pipeline_file


@florin.florinate
def nothing(image):
    return image


@florin.hookimpl
def florin_register_operator(registry):  # misspelled: the hook is florin_register_operators
    registry.add_operator("typo.nothing", nothing)


@florin.hookimpl
def florin_register_formats(registry):
    raise AssertionError("a plugin with an unknown hook is never called")
'''

WRAPPER = '''
import florin
import florin.pipeline_file

SEEN = []


@florin.hookimpl(wrapper=True)
def florin_register_operators(registry):
    SEEN.append(sorted(registry.operators))  # before: the other plugins have not run yet
    result = yield
    SEEN.append(sorted(registry.operators))
    return result
'''

LATE_FAILURE = '''
import florin
import florin.pipeline_file
from florin.io import Format


def nope(path, volume=None):
    raise OSError("nope")


@florin.hookimpl
def florin_register_formats(registry):
    registry.add_format(Format("tiff", (".tif", ".tiff"), nope, nope, "a broken tiff"))
    raise RuntimeError("half-way")
'''


def _package(root, name, module, source):
    pkg = root / name
    (pkg / module).mkdir(parents=True)
    (pkg / module / "__init__.py").write_text(source)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name}"
        version = "0.0.1"
        [project.entry-points.florin]
        {module} = "{module}"
        [tool.setuptools]
        packages = ["{module}"]
    """))
    return pkg


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugins")
    site = root / "site"
    pkgs = [
        _package(root, "florin-throwaway", "throwaway", GOOD),
        _package(root, "florin-broken", "broken", BROKEN),
        _package(root, "florin-greedy", "greedy", GREEDY),
        _package(root, "florin-typo", "typo", TYPO),
        _package(root, "florin-wrapper", "wrapper", WRAPPER),
        _package(root, "florin-late", "late", LATE_FAILURE),
    ]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site)]
        + [str(p) for p in pkgs],
        check=True,
    )
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    reset_registry()
    yield site
    sys.path.remove(str(site))
    importlib.invalidate_caches()
    reset_registry()


def _load_registry():
    reset_registry()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = get_registry()
    return registry, [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]


def test_plugin_operator_format_and_executor_work_in_a_pipeline(plugin_site, tmp_path):
    registry, _ = _load_registry()
    assert registry.plugins["throwaway"].status == "loaded"
    invert = florin.operator("throwaway.invert")
    backwards = florin.Backwards
    data = np.arange(24, dtype=np.uint8).reshape(4, 6)
    pipe = florin.Serial(
        florin.load(),
        florin.tile(shape=(2, 3)),
        backwards(invert(top=100)),
        florin.save(tmp_path / "out.rev"),
    )
    out = pipe(data)
    np.testing.assert_array_equal(out.values, 100 - data)
    assert backwards.ran == 4
    np.testing.assert_array_equal(florin.io.read(tmp_path / "out.rev").values, 100 - data)
    assert np.load(tmp_path / "out.rev").tolist() == (100 - data)[::-1].tolist()


def test_broken_plugin_only_warns_and_core_keeps_working(plugin_site):
    registry, messages = _load_registry()
    assert registry.plugins["broken"].status == "failed"
    assert any("broken" in m and "on purpose" in m for m in messages)
    assert florin.Serial(np.negative)(np.array([1])).values.tolist() == [-1]


def test_a_plugin_overrides_a_builtin_name_with_a_warning_and_keeps_its_other_names(plugin_site):
    registry, messages = _load_registry()
    greedy = registry.plugins["greedy"]
    assert greedy.status == "loaded", greedy.error
    loud = importlib.import_module("greedy").Loud
    assert registry.executor("serial") is loud
    assert any("'greedy' overrides built-in executor 'serial'" in m and "florin.executors" in m for m in messages)
    assert "serial" in greedy.registered["executors"] and "serial" not in registry.plugins["florin.executors"].registered["executors"]
    # its other registrations stay, and a name another plugin had first is the only one it loses
    assert "greedy.twice" in registry.operators and greedy.registered["operators"] == ["greedy.twice"]
    assert registry.operators.entry("throwaway.invert").plugin == "throwaway"
    assert any("'greedy' registers operator 'throwaway.invert'" in m and "'throwaway'" in m for m in messages)
    assert florin.Serial is not loud  # florin.Serial is the class; --executor serial is the override
    pipe = florin.pipeline_file.from_dict({"executor": "serial", "steps": [{"op": "greedy.twice"}]})
    assert type(pipe) is loud and pipe(np.ones(2)).values.tolist() == [2, 2]


def test_a_misspelled_hook_fails_the_plugin_naming_the_hook(plugin_site):
    registry, messages = _load_registry()
    typo = registry.plugins["typo"]
    assert typo.status == "failed"
    assert typo.error.startswith("unknown hook florin_register_operator ")
    assert "did you mean florin_register_operators?" in typo.error
    assert "typo.nothing" not in registry.operators and not any(typo.registered.values())
    assert any("'typo'" in m and "unknown hook florin_register_operator" in m for m in messages)
    assert not registry.plugins["throwaway"].error  # the others load


def test_hooks_are_called_through_pluggy_so_wrappers_see_every_plugin(plugin_site):
    registry, _ = _load_registry()
    seen = importlib.import_module("wrapper").SEEN
    before, after = seen[-2], seen[-1]
    assert before == []
    assert "thresholding.ndnt" in after and "throwaway.invert" in after and "load" in after


def test_a_plugin_that_fails_after_overriding_gives_the_builtin_back(plugin_site):
    registry, messages = _load_registry()
    late = registry.plugins["late"]
    assert late.status == "failed" and "half-way" in late.error
    assert registry.format("tiff").description != "a broken tiff"
    assert "tiff" in registry.plugins["florin.formats"].registered["formats"]


def test_builtins_are_four_plugins_each_can_be_disabled(plugin_site, monkeypatch):
    registry, _ = _load_registry()
    from florin.cli import build_app

    build_app()  # commands are registered into the app
    for name, kind in [("florin.operators", "operators"), ("florin.executors", "executors"),
                       ("florin.formats", "formats"), ("florin.commands", "commands")]:
        assert registry.plugins[name].status == "loaded" and registry.plugins[name].registered[kind]
    monkeypatch.setenv("FLORIN_DISABLE_PLUGINS", "florin.formats,greedy")
    registry, _ = _load_registry()
    assert registry.plugins["florin.formats"].status == "disabled"
    assert "tiff" not in registry.formats and "rev" in registry.formats
    assert "thresholding.ndnt" in registry.operators and registry.executor("serial") is florin.Serial
    with pytest.raises(florin.errors.FormatError, match="unknown format 'tiff'"):
        registry.format("tiff")


def test_load_save_tile_join_are_registered_steps_in_the_one_namespace(plugin_site, monkeypatch, tmp_path):
    registry, _ = _load_registry()
    for name, step in [("load", florin.load), ("save", florin.save), ("tile", florin.tile), ("join", florin.join)]:
        assert florin.operator(name) is step
        assert registry.operators.entry(name).plugin == "florin.operators"
    cut = []

    def my_tile(*, shape, stride=None, halo="auto"):
        cut.append(shape)
        return florin.tile(shape=shape, stride=stride, halo=halo)

    monkeypatch.setitem(registry.operators, "tile", my_tile)
    pipe = florin.pipeline_file.from_dict({"steps": [{"op": "tile", "shape": [2, 2]},
                                                     {"executor": "serial", "steps": [{"op": "throwaway.invert"}]}]})
    np.testing.assert_array_equal(pipe(np.zeros((4, 4), np.uint8)).values, np.full((4, 4), 255))
    assert cut == [[2, 2]]


def test_disable_plugins_by_name(plugin_site, monkeypatch):
    monkeypatch.setenv("FLORIN_DISABLE_PLUGINS", "broken, throwaway,greedy")
    registry, messages = _load_registry()
    assert registry.plugins["throwaway"].status == "disabled"
    assert "throwaway.invert" not in registry.operators
    assert not any("broken" in m for m in messages)


def test_florin_plugins_lists_plugins_and_failures(plugin_site):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), *sys.path])}
    proc = subprocess.run([sys.executable, "-m", "florin", "plugins"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "throwaway 0.0.1 [loaded]" in out
    assert "operators: throwaway.invert" in out and "executors: backwards" in out and "formats: rev" in out
    assert "broken 0.0.1 [failed]" in out and "on purpose" in out
    assert "typo 0.0.1 [failed]\n    failed: unknown hook florin_register_operator " in out
    assert "florin.operators" in out and "thresholding.ndnt" in out and "florin.formats" in out
    assert "note: overrides built-in executor 'serial'" in out


def test_missing_parts_name_the_install_from_the_one_table(monkeypatch, fresh_registry):
    from florin.builtin import PARTS, install_hint

    monkeypatch.setenv("FLORIN_DISABLE_PLUGINS", "florin-dask")
    dask = next(p for p in PARTS if p.name == "dask")
    with pytest.raises(florin.errors.ParameterError, match="Not installed: dask") as err:
        get_registry().executor("dask")
    assert install_hint(dask) in str(err.value)
    with pytest.raises(AttributeError, match="florin.Dask is not available") as err:
        _ = florin.Dask
    assert install_hint(dask) in str(err.value)
