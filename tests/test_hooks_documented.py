"""Every plugin hook is documented, and the plugin guide's hook reference shows it.

The hook reference page (``docs/plugins-hooks.rst``) is generated from
``florin/hookspecs.py`` by ``docs/_ext/florin_plugin_guide.py``; after changing a
hook, regenerate it with ``python docs/_ext/florin_plugin_guide.py``.
"""

import importlib.util
import inspect
import pathlib
import types

import pytest

import florin.hookspecs
from florin.hookspecs import hookspec

ROOT = pathlib.Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "docs" / "_ext" / "florin_plugin_guide.py"
PAGE = ROOT / "docs" / "plugins-hooks.rst"
REGENERATE = "regenerate it with: python docs/_ext/florin_plugin_guide.py"


@pytest.fixture(scope="module")
def guide():
    spec = importlib.util.spec_from_file_location("florin_plugin_guide", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = [
    name for name, obj in vars(florin.hookspecs).items() if inspect.isfunction(obj) and hasattr(obj, "florin_spec")
]


def test_the_hooks_are_found():
    assert {
        "florin_register_operators",
        "florin_register_executors",
        "florin_register_formats",
        "florin_register_commands",
    } <= set(HOOKS)


def test_every_hook_has_a_numpydoc_docstring_with_parameters_and_examples(guide):
    assert [name for name, _ in guide.hook_specs()] == HOOKS
    assert guide.check_hooks() == []


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_in_the_generated_guide(guide, hook):
    assert PAGE.exists(), f"{PAGE} is missing; {REGENERATE}"
    page = PAGE.read_text(encoding="utf-8")
    func = getattr(florin.hookspecs, hook)
    summary = guide.parse_docstring(func.__doc__)["summary"]
    assert f".. py:function:: {hook}{inspect.signature(func)}" in page, f"{hook} is missing; {REGENERATE}"
    assert summary in page


def test_the_generated_guide_is_up_to_date(guide):
    assert PAGE.read_text(encoding="utf-8") == guide.render(), f"{PAGE.name} is stale; {REGENERATE}"


def test_the_check_catches_an_undocumented_hook(guide):
    fake = types.ModuleType("fake_hookspecs")

    def florin_register_documented(registry, extra):
        """Register things.

        Parameters
        ----------
        registry : Registry
            Where to register.
        extra : int
            Something else.

        Examples
        --------
        >>> 1 + 1
        2
        """

    def florin_register_bare(registry):
        pass

    def florin_register_half(registry, app):
        """Half documented.

        Parameters
        ----------
        registry : Registry

        Notes
        -----
        No examples and ``app`` not listed.
        """

    for func in (florin_register_documented, florin_register_bare, florin_register_half):
        setattr(fake, func.__name__, hookspec(func))
    problems = guide.check_hooks(fake)
    assert not any("florin_register_documented" in p for p in problems)
    assert "florin_register_bare: no docstring summary" in problems
    assert "florin_register_bare: no 'Parameters' section" in problems
    assert "florin_register_bare: no 'Examples' section with a >>> example" in problems
    assert "florin_register_half: parameter 'app' is not documented under 'Parameters'" in problems
    assert "florin_register_half: parameter 'registry' has no description" in problems
    assert "florin_register_half: no 'Examples' section with a >>> example" in problems
    assert "florin_register_bare" in guide.render(fake)
