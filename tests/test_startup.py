"""Start-up: commands that only list things import nothing heavy (issue 15 item 4).

Behavioural, no timings: each command runs in a fresh interpreter, which then
reports which heavy packages ended up in ``sys.modules``.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import florin
from florin import _metadata
from florin.registry import get_registry

HEAVY = ("numba", "dask", "matplotlib", "xarray", "pandas", "skimage", "zarr")

PROBE = f"""
import json, sys
from florin.cli import main
rc = main(sys.argv[1:])
print(json.dumps({{"rc": rc, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""


def _imported_by(*argv):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0, proc.stdout
    return set(report["heavy"])


STALE = "florin/_catalog.py is out of date: regenerate it with `python -m florin._metadata`"


@pytest.mark.parametrize("argv", [["--help"], ["ops"], ["formats"], ["plugins"]])
def test_listing_commands_import_no_heavy_package(argv):
    assert _imported_by(*argv) == set()


def test_info_imports_neither_numba_nor_dask_nor_matplotlib(tmp_path):
    florin.io.write(tmp_path / "v.tif", np.zeros((2, 8, 8), np.uint16))
    heavy = _imported_by("info", str(tmp_path / "v.tif"))
    assert not heavy & {"numba", "dask", "matplotlib"}, heavy


def test_import_florin_is_lazy_and_the_public_names_still_work():
    code = ("import sys, florin; assert 'xarray' not in sys.modules and 'numba' not in sys.modules; "
            "from florin import Serial, load, tile; import numpy as np; "
            "assert 'florin.pipelines' in sys.modules and florin.Multithread.__name__ == 'Multithread'; "
            "assert 'io' in dir(florin) or florin.io.read; print('ok')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_the_catalog_lists_exactly_what_the_modules_define():
    assert _metadata.builtin_catalog() == _metadata.live_catalog(), STALE


def test_listing_from_metadata_equals_the_imported_objects():
    registry = get_registry()
    for name in registry.operators:
        listed = registry.describe_operator(name)
        factory = registry.operators[name]  # imports it
        assert listed == (_metadata.operator_signature(factory), _metadata.operator_summary(factory)), name
        assert registry.describe_operator(name) == listed
    for name in registry.formats:
        listed = registry.format_info(name)
        fmt = registry.formats[name]
        assert listed == (tuple(fmt.extensions), fmt.description), name


def test_a_plugin_reference_is_described_from_its_source(tmp_path, monkeypatch):
    (tmp_path / "refplugin.py").write_text(
        "import florin\n"
        "from florin.io import Format\n"
        "@florin.florinate(halo=1)\n"
        "def smooth(image, radius: int = 1, *, mode='reflect', **more):\n"
        '    """Smooth an image.\n\n    More text."""\n'
        "    return image\n"
        "FORMAT = Format('ref', ('.ref', '.rf'), None, None, 'a format for the test')\n"
        "OTHER = Format(name='other', extensions=['.o'], read=None, write=None)\n"
        "dynamic = florin.florinate(lambda image: image)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _metadata.describe_operator("refplugin:smooth") == {
        "signature": "(radius=1, *, mode='reflect', **more)", "summary": "Smooth an image."}
    assert _metadata.describe_operator("refplugin:dynamic") is None  # not plain: florin ops imports it
    assert _metadata.describe_format("refplugin:FORMAT") == {
        "name": "ref", "extensions": (".ref", ".rf"), "description": "a format for the test"}
    assert _metadata.describe_format("refplugin:OTHER") == {"name": "other", "extensions": (".o",), "description": ""}
    assert "refplugin" not in sys.modules


def test_an_operator_added_to_a_builtin_module_after_the_catalog_is_still_found(monkeypatch, fresh_registry):
    import florin.morphology as morphology

    @florin.florinate
    def brand_new(image):
        return image

    monkeypatch.setattr(morphology, "brand_new", brand_new, raising=False)
    monkeypatch.setattr(morphology, "__all__", [*morphology.__all__, "brand_new"])
    registry = get_registry()
    assert "morphology.brand_new" not in registry.operators  # not in the catalog
    assert florin.operator("morphology.brand_new") is brand_new
    assert "morphology.brand_new" in registry.plugins["florin.operators"].registered["operators"]
