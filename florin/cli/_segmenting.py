"""What the CLI's computing commands run (``segment``, ``demo``, ``tune``, ``preview``: numba), imported on first use.

:func:`florin.cli.commands.segmenting` imports this module when a command
needs it, so ``florin --help``, ``ops``, ``formats``, ``plugins`` and ``info``
never load numba (``tests/test_startup.py``). Everything here is imported at
the top, the optional progress bar (rich) included.
"""

import florin.conncomp as conncomp
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.data import PHANTOM_CLASSES, class_accuracy, compile_demo_ahead, dice, phantom
from florin.io.atomic import atomic_path
from florin.pipeline_file import to_toml
from florin.planner import default_tile
from florin.preview import preview_title, save_preview
from florin.reconstruction import class_table
from florin.tuning import estimate_parameters, tune
from florin.tuning_classes import parse_classes_text
from florin.tuning_report import save_report

try:  # optional (florin[all]): the progress bar; plain logging without it
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
except ImportError:  # pragma: no cover
    Console = None

__all__ = [
    "PHANTOM_CLASSES", "atomic_path", "class_accuracy", "class_table", "compile_demo_ahead", "conncomp", "default_tile",
    "dice",
    "estimate_parameters", "morphology", "parse_classes_text", "phantom", "preview_title", "progress_bar",
    "save_preview", "save_report", "thresholding", "to_toml", "tune",
]


def progress_bar():
    """A rich progress display on stderr (transient), or None without rich."""
    if Console is None:  # pragma: no cover
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True)
