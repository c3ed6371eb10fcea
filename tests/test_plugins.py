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
from florin.registry import PluginWarning, get_registry, reset_registry

GOOD = '''
import numpy as np
import florin
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


@florin.hookimpl
def florin_register_executors(registry):
    registry.add_executor("serial", florin.Serial)
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


def test_duplicate_name_is_rejected_naming_both_plugins(plugin_site):
    registry, messages = _load_registry()
    greedy = registry.plugins["greedy"]
    assert greedy.status == "failed"
    assert "'greedy'" in greedy.error and "'florin'" in greedy.error and "serial" in greedy.error
    assert registry.executor("serial") is florin.Serial


def test_disable_plugins_by_name(plugin_site, monkeypatch):
    monkeypatch.setenv("FLORIN_DISABLE_PLUGINS", "broken, throwaway")
    registry, messages = _load_registry()
    assert registry.plugins["throwaway"].status == "disabled"
    assert "throwaway.invert" not in registry.operators
    assert not any("broken" in m for m in messages)


def test_florin_plugins_lists_plugins_and_failures(plugin_site):
    env = {**os.environ, "PYTHONPATH": str(plugin_site)}
    proc = subprocess.run([sys.executable, "-m", "florin", "plugins"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "throwaway 0.0.1 [loaded]" in out
    assert "operators: throwaway.invert" in out and "executors: backwards" in out and "formats: rev" in out
    assert "broken 0.0.1 [failed]" in out and "on purpose" in out
    assert "florin" in out and "thresholding.ndnt" in out
