"""Test-suite wide rules for optional dependencies (the ``tests_minimal`` nox session).

CI installs every extra, so nothing here skips there. Without an extra:

- modules of the package that import it are not collected for doctests;
- a test that fails *because* an optional package is missing (it is not
  importable, or florin says the format/executor needs it) is reported as
  skipped with the package to install, instead of as a failure.
"""

import importlib.util
import os

import pytest

# numba's OpenMP threading layer (GNU libgomp) lets its idle threads spin after every parallel kernel by default;
# the suite calls thousands of small kernels from `-n 2` workers on 2 cores, so the spinning threads of one worker
# take the CPU the other needs (300 small NDNT + opening calls: 2.7-5.9 s of CPU spinning, 0.3 s passive). Set
# before any kernel runs, so libgomp reads it when it loads; subprocesses (CLI, examples, MPI ranks) inherit it.
# Only the waiting changes: threads, results and what the tests check are the same.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# import name -> what to install
OPTIONAL = {
    "zarr": "pip install 'florin[zarr]'",
    "netCDF4": "pip install 'florin[netcdf]'",
    "mpi4py": "pip install 'florin[mpi]'",
    "matplotlib": "pip install 'florin[preview]'",
    "dask": "pip install 'florin[dask]'",
    "distributed": "pip install 'florin[dask]'",
    "cc3d": "pip install connected-components-3d",
    "sphinx": "pip install -r docs/requirements.txt",
    "docutils": "pip install -r docs/requirements.txt",
    "ome_zarr_models": "pip install ome-zarr-models",
}
MISSING = {name: how for name, how in OPTIONAL.items() if importlib.util.find_spec(name) is None}

# package modules that import an optional dependency at the top
_MODULE_NEEDS = {"zarr.py": "zarr", "netcdf.py": "netCDF4"}


def pytest_ignore_collect(collection_path, config):
    need = _MODULE_NEEDS.get(collection_path.name)
    if need in MISSING and collection_path.parent.name == "io":
        return True
    return None


def _missing_cause(excinfo):
    """The missing optional package a failure comes from, or None."""
    if not MISSING:
        return None
    exc = excinfo.value
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "exc_info", None)  # doctest.UnexpectedException wraps the real error
        if isinstance(inner, tuple) and len(inner) == 3 and isinstance(inner[1], BaseException):
            exc = inner[1]
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in MISSING:
            return exc.name.split(".")[0]
        text = str(exc)
        for name, hint in MISSING.items():
            if hint in text:
                return name
            if name.lower() in text.lower() and ("install" in text or "extra" in text or "No module" in text):
                return name
        if "cannot tell the format" in text and ("zarr" in MISSING or "netCDF4" in MISSING):
            return "zarr" if "zarr" in MISSING else "netCDF4"
        exc = exc.__cause__ or exc.__context__
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.excinfo is not None:
        name = _missing_cause(call.excinfo)
        if name is not None:
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0, f"needs {name}: {MISSING[name]}")
