"""nox sessions: the test matrix, linting and packaging.

``.ci/run`` runs the README's test command (the ``tests`` session's command on
the default interpreter); ``nox -l`` lists the sessions.
"""

import shutil

import nox

nox.options.sessions = ["tests", "lint"]
PYTHONS = [v for v in ("3.10", "3.11", "3.12", "3.13") if shutil.which(f"python{v}")]


@nox.session(python=PYTHONS)
def tests(session):
    """The full suite with every optional extra installed."""
    session.install("-e", ".[all,dev]")
    session.run("pytest", "-n", "2", *session.posargs)


@nox.session
def lint(session):
    """ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", "florin", "tests", "benchmarks", "examples", "noxfile.py")
