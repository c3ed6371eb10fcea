"""What the CLI's file commands run (``info``, ``run``; xarray, not numba), imported on first use.

:func:`florin.cli.commands.files` imports this module when a command needs it,
so ``florin --help``, ``ops``, ``formats`` and ``plugins`` never load xarray
(``tests/test_startup.py``). Everything here is imported at the top.
"""

from florin import _run
from florin.io import _format, read, write
from florin.io.lazy import is_lazy
from florin.io.outputs import check_outputs, pipeline_saves
from florin.memory import parse_size
from florin.pipelines import Pipeline
from florin.resume import FOLDER_SUFFIX, committed_outputs, partial_folder
from florin.volume import check_single_channel, get_spacing

__all__ = [
    "FOLDER_SUFFIX", "Pipeline", "_format", "_run", "check_outputs", "check_single_channel", "committed_outputs",
    "get_spacing", "is_lazy", "parse_size", "partial_folder", "pipeline_saves", "read", "write",
]
