"""The tests mirror the package (issue 16 item 6): each folder of tests is one package of florin."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_folder_is_a_package_of_florin():
    packages = {p.name.lstrip("_") for p in (ROOT / "florin").iterdir() if (p / "__init__.py").exists()}
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    assert folders, "no test folders found: the layout check is looking in the wrong place"
    assert folders <= packages, (
        f"test folders that are no package of florin: {sorted(folders - packages)}; "
        f"put a module's tests in tests/test_MODULE.py and a package's in tests/PACKAGE/ ({sorted(packages)})"
    )
