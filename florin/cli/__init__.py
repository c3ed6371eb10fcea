"""The ``florin`` command line (typer).

Commands are added through the ``florin_register_commands`` hook, florin's own
included (:mod:`florin.cli.commands`). Library errors become one line on
stderr and a non-zero exit: 2 for bad usage, parameters or a missing input file,
1 for a failed run, 130 after Ctrl-C (SIGINT) and 143 after SIGTERM, both of
which remove the run's temporary outputs; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import logging
import signal
import sys
import warnings

import typer

from florin import _signals
from florin.registry import call_hook

try:  # typer >= 0.2x vendors its own click
    from typer import _click as click
except ImportError:  # pragma: no cover
    import click

from florin import __version__
from florin.errors import FlorinError, FlorinWarning, MissingInputError, OperatorBindError, ParameterError

__all__ = ["build_app", "main"]

log = logging.getLogger("florin")


def _version(value: bool):
    if value:
        typer.echo(f"florin {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    """The typer application with every plugin's commands."""
    app = typer.Typer(
        name="florin",
        help="Learning-free segmentation of large N-D image volumes.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        # Plain click help: rich markup would eat "[[class]]" and show "<bool>" after every flag.
        rich_markup_mode=None,
    )

    @app.callback()
    def root(
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
        debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
        verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="Debug log output."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors (no progress, no timing summary)."),
    ):
        # INFO by default: the per-step timing summary at the end of a run; -q hides it.
        level = logging.ERROR if quiet else (logging.INFO, logging.DEBUG)[min(verbose, 1)]
        logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)


    call_hook("florin_register_commands", app=app)
    return app


def _exit_code(exc) -> int:
    # A missing input file is a mistyped argument: usage, like a bad parameter.
    return 2 if isinstance(exc, ParameterError | OperatorBindError | MissingInputError) else 1


def main(argv=None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""

    process = argv is None  # the florin process itself: it exits with the code, so handlers stay (recording)
    argv = list(sys.argv[1:] if argv is None else argv)
    # Ctrl-C and SIGTERM stop the run cleanly: exit 130 / 143
    with warnings.catch_warnings(), _signals.install(restore=not process):
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, FlorinWarning):  # one line, as errors are
                typer.echo(f"florin: warning: {_one_line(message)}", err=True)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        try:
            rv = _run_app(argv)
        except KeyboardInterrupt:  # a signal just as the command returned
            rv = 130
        # The outcome is decided: a signal from now on (a late one, one sent again) is recorded, not raised.
        return _outcome(rv, _signals.hold())


def _outcome(rv, received) -> int:
    # typer turns Ctrl-C (and SIGTERM's Terminated, a KeyboardInterrupt) into a plain exit status 130.
    if received == signal.SIGTERM:
        typer.echo("florin: terminated", err=True)
        return 143
    if received == signal.SIGINT:
        typer.echo("florin: interrupted", err=True)
        return 130
    return rv


def _run_app(argv) -> int:
    debug = "--debug" in argv
    try:
        app = build_app()
        rv = app(args=argv, prog_name="florin", standalone_mode=False)
    except KeyboardInterrupt:
        if _signals.received() is None:  # not a signal (main() names those)
            typer.echo("florin: interrupted", err=True)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("florin: aborted", err=True)
        return 130
    except click.exceptions.NoArgsIsHelpError as exc:
        # No command: the help itself, not an "error:" line (click's message is the help text).
        typer.echo(exc.format_message())
        return exc.exit_code
    except click.ClickException as exc:
        if debug:
            raise
        ctx = getattr(exc, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"florin: error: {_one_line(exc.format_message())}{where}", err=True)
        return exc.exit_code
    except Exception as exc:
        if debug:
            raise

        if _signals.received() is not None:
            # A signal arrived and something turned its KeyboardInterrupt into another error (a library's bare
            # `except:` around an import, say): the run was interrupted, and main() says so, in one line.
            return 130
        return _report(exc)
    return rv if isinstance(rv, int) else 0


def _report(exc: Exception) -> int:
    """Print the one line for an error that ended a command; its exit status."""
    if isinstance(exc, FlorinError):
        typer.echo(f"florin: error: {_one_line(exc)}", err=True)
        return _exit_code(exc)
    if isinstance(exc, OSError):
        # The system refused (permissions, a full disk, a file that vanished): its reason, not an "internal error".
        typer.echo(f"florin: error: {_one_line(_os_message(exc))}", err=True)
        return 1
    typer.echo(f"florin: internal error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for details)",
               err=True)
    return 1


def _os_message(exc: OSError) -> str:
    if exc.strerror and exc.filename is not None:
        return f"{exc.strerror}: {exc.filename!r}"
    return str(exc) or type(exc).__name__


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
