"""florin inside napari: reader, writers, NDNT with a live preview, segmentation, pipeline files.

The napari side is declared in ``napari.yaml`` (npe2). Everything here uses
florin's public API only (``florin``, ``florin.io``, ``florin.thresholding``,
``florin.morphology``, ``florin.conncomp``, ``florin.pipeline_file`` and the
registry).
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
