"""nox sessions: the test matrix, plugins, linting, docs and packaging.

``nox -l`` lists the sessions; ``nox -s NAME`` runs one (``nox`` alone runs
``tests`` on every interpreter found, and ``lint``):

* ``tests-3.10`` ... ``tests-3.13``: the README's test command, ``pip install -e
  '.[all,dev]'`` then ``python -m pytest -n 2``, on each Python 3.10-3.13 that
  is installed (on ``PATH``, or installed by pyenv without being on ``PATH``).
* ``tests_minimal``: the core without optional extras (no MPI, Dask, Zarr,
  NetCDF, previews, cc3d); tests of optional parts skip with a reason.
* ``mpi``: the tests marked ``mpi`` (real ``mpiexec`` jobs) with ``[mpi]``.
* ``plugins``: installs the core and every package under ``plugins/`` and runs
  each plugin's own tests (``python -m pytest plugins/NAME``), except
  ``florin-napari``, which has its own session:
* ``napari``: ``plugins/florin-napari`` with napari's Qt (``[pyqt,test]``), its
  tests under a virtual display (``xvfb-run -a python -m pytest
  plugins/florin-napari``) and ``npe2 validate``. Xvfb and Mesa are Debian
  packages: ``.ci/run`` installs them when missing (the same line works here).
* ``lint``: ruff.
* ``docs``: the Sphinx site with warnings as errors.
* ``build``: sdist and wheel of the core and of each plugin (``python -m
  build``), checked with ``twine check --strict``.

What CI covers: ``.ci/run`` runs, on the machine's default interpreter, the
``tests`` session's command (the README's test command) and then the
``plugins`` and ``napari`` sessions' tests (the plugins installed editable into
the same environment). The other sessions (other interpreters, ``tests_minimal``,
``mpi`` on its own, ``lint``, ``docs``, ``build``) are run with nox by hand.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
VERSIONS = ("3.10", "3.11", "3.12", "3.13")
PLUGINS = sorted(p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("plugins/*/pyproject.toml"))
PYTEST = ("python", "-m", "pytest")
NAPARI = "plugins/florin-napari"  # needs a display: tested by the `napari` session, not `plugins`

nox.options.sessions = ["tests", "lint"]
nox.options.default_venv_backend = "uv|virtualenv"  # uv when installed: much faster installs


def _works(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import sys"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _interpreters() -> list[str]:
    """The Python versions that exist here.

    A version counts when ``pythonX.Y`` on PATH runs, or when pyenv installed it
    without exposing it (its shims then fail): such interpreters are linked into
    ``.nox/_pythons``, which is put first on PATH for nox to find them.
    """
    found, links = [], ROOT / ".nox" / "_pythons"
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for version in VERSIONS:
        exe = shutil.which(f"python{version}")
        if exe and _works(exe):
            found.append(version)
            continue
        candidates = sorted(glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin", f"python{version}")))
        candidates = [c for c in candidates if _works(c)]
        if candidates:
            links.mkdir(parents=True, exist_ok=True)
            link = links / f"python{version}"
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(candidates[-1])
            found.append(version)
    if links.is_dir() and str(links) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{links}{os.pathsep}{os.environ.get('PATH', '')}"
    return found


PYTHONS = _interpreters()


@nox.session(python=PYTHONS)
def tests(session):
    """The README's test command: every optional extra installed, the whole suite."""
    session.install("-e", ".[all,dev]")
    session.run(*PYTEST, "-n", "2", *session.posargs)


@nox.session
def tests_minimal(session):
    """The core without optional extras; tests of optional parts must skip with a reason."""
    session.install("-e", ".[dev]")
    session.run(*PYTEST, "-n", "2", "-rs", *session.posargs)


@nox.session
def mpi(session):
    """The MPI executor's real mpiexec jobs (mpi4py and the PyPI mpich wheel)."""
    session.install("-e", ".[mpi,dev]")
    # tests/ only: doctests are never marked mpi, and collecting florin/ would import every optional module
    session.run(*PYTEST, "-m", "mpi", *(session.posargs or ["tests"]))


@nox.session
def plugins(session):
    """Install the core and every package under plugins/, then run each plugin's tests."""
    session.install("-e", ".[dev]")
    session.install(*[arg for plugin in PLUGINS for arg in ("-e", plugin)])
    session.run("python", "-m", "florin", "plugins")
    for plugin in PLUGINS:
        if plugin != NAPARI:
            session.run(*PYTEST, plugin, *session.posargs)


@nox.session
def napari(session):
    """florin-napari with napari's Qt: its tests under Xvfb (``xvfb-run``, Debian's xvfb) and ``npe2 validate``."""
    if shutil.which("xvfb-run") is None:
        session.error("xvfb-run is missing: install Debian's xvfb and Mesa as .ci/run does (apt-get install ...)")
    session.install("-e", ".[all]", "-e", f"{NAPARI}[pyqt,test]")
    session.run("npe2", "validate", "--imports", "florin-napari")
    session.run("xvfb-run", "-a", *PYTEST, NAPARI, *session.posargs, external=True)


@nox.session
def lint(session):
    """ruff on the package, tests, plugins, examples, benchmarks, docs extensions and this file."""
    session.install("ruff")
    paths = ["florin", "tests", "plugins", "benchmarks", "examples", "docs", "noxfile.py"]
    session.run("ruff", "check", *[p for p in paths if (ROOT / p).exists()])


@nox.session
def docs(session):
    """The Sphinx site, warnings as errors (sphinx -W), into docs/_build/html."""
    session.install("-e", ".[all]", *[arg for plugin in PLUGINS for arg in ("-e", plugin)])
    requirements = ROOT / "docs" / "requirements.txt"
    if requirements.exists():
        session.install("-r", str(requirements))
    else:
        session.install("sphinx>=7.2", "myst-parser", "numpydoc", "furo")
    out = ROOT / "docs" / "_build" / "html"
    if (ROOT / "docs" / "conf.py").exists():
        session.run("python", "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", str(out))
    else:  # no site yet: build the plugin-author pages on their own
        session.run("python", "docs/_ext/florin_plugin_guide.py")
        session.run(
            "python", "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-C",
            "-D", "root_doc=plugin-guide", "-D", "project=florin", "docs", str(out),
        )  # fmt: skip


@nox.session
def build(session):
    """sdist + wheel of the core and of each plugin, and `twine check --strict` on them."""
    session.install("build", "twine")
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for project in [".", *PLUGINS]:
        session.run("python", "-m", "build", "--outdir", str(dist), project)
    session.run("twine", "check", "--strict", *sorted(str(p) for p in dist.iterdir()))
