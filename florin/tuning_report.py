"""The figure of a tuning run: score landscape, search trace, and the best result on the annotated slices.

:func:`save_report` writes a PNG (matplotlib, no display needed) or an HTML
page that embeds the same figure next to the text summary.
"""

from __future__ import annotations

import base64
import html
import io
import os
import textwrap

import numpy as np

from florin.errors import OutputExistsError, ParameterError
from florin.io.atomic import atomic_path
from florin.preview import _pyplot
from florin.tuning_regions import _Region

__all__ = ["report_figure", "save_report"]

_SUFFIXES = (".png", ".html")


def _landscape(report):
    """Best score per (in-plane neighbourhood size, threshold) over the evaluated configurations."""
    sizes = report.space.shape[-1]
    thresholds = report.space.threshold
    grid = np.full((len(sizes), len(thresholds)), np.nan)
    for trial in report.trials:
        i = sizes.index(trial.params["shape"][-1])
        j = thresholds.index(trial.params["threshold"])
        if np.isnan(grid[i, j]) or trial.score > grid[i, j]:
            grid[i, j] = trial.score
    return sizes, thresholds, grid


def report_figure(report, *, slices=3):
    """A matplotlib figure of ``report`` (a :class:`florin.tuning.TuneReport` with annotated regions).

    Top: the best score per in-plane neighbourhood size and threshold over the
    evaluated configurations (white: not evaluated) and the score of every
    evaluation in search order. Bottom: up to ``slices`` annotated slices with
    the best result: agreeing foreground green, false foreground red, missed
    foreground blue, prediction on unlabeled voxels yellow.
    """
    plt = _pyplot()


    runs = list(getattr(report, "_runs", []))
    if len(runs) > slices:  # spread over the volume
        runs = [runs[int(i)] for i in np.linspace(0, len(runs) - 1, slices).round()]
    shown = runs
    ncols = max(2, len(shown))
    fig = plt.figure(figsize=(4.2 * ncols, 8.2), layout="constrained")
    grid_spec = fig.add_gridspec(2, ncols)
    ax = fig.add_subplot(grid_spec[0, : ncols // 2])
    sizes, thresholds, grid = _landscape(report)
    im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=np.nanmin(grid), vmax=np.nanmax(grid))
    ax.set_xticks(range(len(thresholds)), [f"{t:g}" for t in thresholds], rotation=45)
    ax.set_yticks(range(len(sizes)), [str(s) for s in sizes])
    ax.set_xlabel("threshold")
    ax.set_ylabel("neighbourhood size (last axis)")
    ax.set_title(f"best {report.metric} per size and threshold")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax = fig.add_subplot(grid_spec[0, ncols // 2:])
    scores = np.array([t.score for t in report.trials])
    ax.plot(scores, ".", ms=3, color="0.5", label="evaluated")
    ax.plot(np.maximum.accumulate(scores), "-", color="C1", label="best so far")
    ax.set_xlabel(f"evaluation ({report.evaluations} of {report.grid_size} configurations)")
    ax.set_ylabel(report.metric)
    ax.set_ylim(max(0.0, float(np.percentile(scores, 5)) - 0.05), 1.0)
    ax.legend(loc="lower right")
    ax.set_title("search")
    for k, (kind, box) in enumerate(shown):
        region = _Region(*report._context[:3], box, *report._context[3:])
        image, annotation, mask = region.prediction(report.params)
        z = image.shape[0] // 2 if image.ndim == 3 else None
        if z is not None:
            image, annotation, mask = image[z], annotation[z], mask[z]
        lo, hi = np.percentile(image, [1, 99])
        ax = fig.add_subplot(grid_spec[1, k])
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        overlay = np.zeros((*image.shape, 4))
        overlay[mask & (annotation == 2)] = (0.1, 0.8, 0.2, 0.55)
        overlay[mask & (annotation == 1)] = (0.9, 0.1, 0.1, 0.7)
        overlay[~mask & (annotation == 2)] = (0.1, 0.3, 1.0, 0.7)
        overlay[mask & (annotation == 0)] = (1.0, 0.85, 0.0, 0.35)
        ax.imshow(overlay)
        first, last = box[0].start, box[0].stop - 1
        where = f"slice {first + z}" if z is not None else f"rows {first}-{last}"
        ax.set_title(f"{kind}: {where}", fontsize=10)
        ax.set_axis_off()
    p = report.params
    fig.suptitle(f"best: shape {','.join(map(str, p['shape']))}, threshold {p['threshold']:g}, {p['polarity']}, "
                 f"opening {p['opening']}, min size {p['min_size']} - {report.metric} {report.score:.3f}"
                 + ("" if report.heldout_score is None else f" (held-out {report.heldout_score:.3f})")
                 + "\ngreen: agree, red: false, blue: missed, yellow: unlabeled"
                 + _classes_lines(report, width=int(ncols * 4.2 * 12)), fontsize=10)
    return fig


def _classes_lines(report, width) -> str:
    """The learned classes for the figure's title, wrapped at ``width`` characters (empty without classes)."""
    if not report.classes:
        return ""
    held = "" if report.heldout_class_accuracy is None else f", held-out {report.heldout_class_accuracy:.3f}"
    accuracy = "n/a" if report.class_accuracy is None else f"{report.class_accuracy:.3f}"
    parts = "; ".join(f"{c.name}: {c.describe()}" for c in report.classes)
    return "\n" + "\n".join(textwrap.wrap(f"classes (per-object accuracy {accuracy}{held}): {parts}", width))


def save_report(path, report, *, overwrite=False):
    """Write the report figure to ``path`` (``.png``) or an HTML page with it and the summary (``.html``).

    Parameters
    ----------
    path : str or os.PathLike
        Output file; its suffix chooses the kind.
    report : florin.tuning.TuneReport
        From :func:`florin.tune` with an annotation.
    overwrite : bool
        Replace an existing file.
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in _SUFFIXES:
        raise ParameterError(f"report: must end in .png or .html, got {os.fspath(path)!r}")
    if report.score is None:
        raise ParameterError("report: needs a tuning run with an annotation (nothing was searched)")
    if os.path.exists(path) and not overwrite:
        raise OutputExistsError(f"output {os.fspath(path)!r} already exists; pass --overwrite to replace it")
    plt = _pyplot()
    fig = report_figure(report)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    data = buffer.getvalue()
    if suffix == ".html":
        encoded = base64.b64encode(data).decode("ascii")
        data = (f"<!doctype html><html><head><meta charset='utf-8'><title>florin tune report</title></head><body>"
                f"<h1>florin tune</h1><pre>{html.escape(report.summary())}</pre>"
                f"<img alt='score landscape and best result' src='data:image/png;base64,{encoded}'></body></html>"
                ).encode()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return path
