"""PNG previews of volumes and label overlays (matplotlib, no display needed).

A 3-D volume is shown as its three orthogonal mid-slices (or a montage of z
slices), a 2-D image as itself; labels are drawn on top in distinct colours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.segmentation import find_boundaries

from florin.builtin import PARTS, install_hint
from florin.errors import FlorinError, ParameterError
from florin.io.atomic import atomic_path
from florin.reconstruction import class_table
from florin.volume import as_volume, get_spacing

__all__ = ["label_colors", "preview_figure", "preview_title", "save_preview"]


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        part = next(p for p in PARTS if p.kind == "command" and p.name == "preview")
        raise FlorinError(f"previews need {part.needs}: {install_hint(part)}") from None
    return matplotlib


def _pyplot():
    """``matplotlib.pyplot``, on the Agg backend unless one was chosen (previews and tuning reports draw with it)."""
    _matplotlib().use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def label_colors(n: int) -> np.ndarray:
    """``n + 1`` RGBA colours: transparent for 0, then well-separated hues.

    Examples
    --------
    >>> label_colors(3).shape
    (4, 4)
    """
    matplotlib = _matplotlib()

    golden = 0.618033988749895
    hues = (np.arange(n) * golden) % 1.0
    hsv = np.stack([hues, np.full(n, 0.75), np.full(n, 0.95)], axis=1)
    rgb = matplotlib.colors.hsv_to_rgb(hsv) if n else np.zeros((0, 3))
    colors = np.zeros((n + 1, 4))
    colors[1:, :3] = rgb
    colors[1:, 3] = 0.45
    return colors


# Classes get fixed, saturated colours (cell red, vasculature blue, ... in class-id order) so a key can name them;
# object labels get golden-ratio hues (label_colors).
_CLASS_COLORS = ((0.95, 0.25, 0.15), (0.15, 0.55, 1.0), (1.0, 0.8, 0.1), (0.3, 0.85, 0.3), (0.8, 0.35, 0.9),
                 (0.1, 0.85, 0.85))
_FILL_ALPHA = 0.35  # fill plus an opaque outline: readable over dark and bright voxels alike


def _norm(image):
    image = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(image, [1, 99]) if image.size else (0, 1)
    return np.clip((image - lo) / (hi - lo if hi > lo else 1), 0, 1)


def _panels(vol, labels, montage):
    """``(title, image, labels, (row dim, col dim), (row spacing, col spacing))`` per panel."""
    data = np.asarray(vol)
    lab = None if labels is None else np.asarray(labels)
    spacing = get_spacing(vol)
    dims = tuple(vol.dims)
    if data.size == 0:
        raise ParameterError(f"volume: preview needs voxels to show; this volume has shape {data.shape}")
    if data.ndim == 2:
        return [("", data, lab, dims, spacing)]
    if data.ndim != 3:
        raise ParameterError(f"volume: preview shows 2-D or 3-D volumes; this one is {data.ndim}-D")
    (dz, dy, dx), (sz, sy, sx) = dims, spacing
    if montage:
        idx = np.linspace(0, data.shape[0] - 1, montage).round().astype(int)
        return [(f"{dz}={i}", data[i], None if lab is None else lab[i], (dy, dx), (sy, sx)) for i in idx]
    cz, cy, cx = (n // 2 for n in data.shape)
    take = (lambda a, sl: None) if lab is None else (lambda a, sl: a[sl])
    return [
        (f"{dz}={cz}", data[cz], take(lab, (cz,)), (dy, dx), (sy, sx)),
        (f"{dy}={cy}", data[:, cy], take(lab, (slice(None), cy)), (dz, dx), (sz, sx)),
        (f"{dx}={cx}", data[:, :, cx], take(lab, (slice(None), slice(None), cx)), (dz, dy), (sz, sy)),
    ]


def _overlay(lab, colors):
    """RGBA image of a 2-D label slice: a translucent fill and an opaque outline per label."""
    lab = np.asarray(lab).astype(np.intp)
    rgba = np.zeros((*lab.shape, 4))
    idx = np.clip(lab, 0, len(colors) - 1).astype(np.intp)
    rgba[..., :3] = colors[idx, :3]
    rgba[..., 3] = np.where(lab > 0, _FILL_ALPHA, 0.0)
    rgba[find_boundaries(lab, mode="inner") & (lab > 0), 3] = 1.0
    return rgba


def _nice_length(target):
    """The largest 1, 2 or 5 times a power of ten not above ``target`` (> 0)."""
    power = 10.0 ** np.floor(np.log10(target))
    return max(m * power for m in (1, 2, 5) if m * power <= target)


def _key(labels, classes):
    """``(colors, entries)``: the overlay palette and the key's ``(name, colour)`` entries."""
    if labels is None:
        return None, []
    if np.asarray(labels).dtype == bool:  # a mask: one colour, no objects to count
        colors = np.array([(0, 0, 0, 0), (*_CLASS_COLORS[0], 1.0)])
        return colors, [("foreground", colors[1, :3])]
    top = int(np.max(labels)) if np.size(labels) else 0
    if classes:
        n = max(top, max(classes))
        colors = np.zeros((n + 1, 4))
        for cid in range(1, n + 1):
            colors[cid, :3] = _CLASS_COLORS[(cid - 1) % len(_CLASS_COLORS)]
        return colors, [(classes.get(cid, f"class {cid}"), colors[cid, :3]) for cid in sorted(classes)]
    colors = label_colors(top)
    count = int(np.count_nonzero(np.unique(labels))) if top else 0
    return colors, [(f"objects ({count})", (0.6, 0.6, 0.6))]


def preview_figure(volume, labels=None, *, montage=None, title=None, classes=None):
    """The matplotlib figure of a preview (see :func:`save_preview`); the caller closes it.

    Examples
    --------
    >>> import numpy as np, florin
    >>> vol = florin.as_volume(np.random.default_rng(0).random((8, 32, 32)), spacing=(2.0, 0.5, 0.5), units="um")
    >>> fig = preview_figure(vol, (vol > 0.9).astype(np.uint8), classes={1: "bright"})
    >>> [t.get_text() for t in fig.legends[0].get_texts()]
    ['bright']
    >>> fig.axes[1].get_xlabel(), fig.axes[1].get_ylabel()
    ('x (um)', 'z (um)')
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    plt = _pyplot()
    Patch = _matplotlib().patches.Patch  # loaded by pyplot
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    vol = as_volume(volume)
    if labels is not None and np.shape(labels) != vol.shape:
        raise ParameterError(f"labels: shape {np.shape(labels)} differs from the volume's {vol.shape}")
    if montage is not None and montage < 1:
        raise ParameterError(f"montage: must be >= 1, got {montage}")
    if classes is None and labels is not None:
        classes = class_table(labels)
    panels = _panels(vol, labels, montage)
    colors, entries = _key(labels, classes)
    units = vol.attrs.get("units") or ""
    # Panels are drawn in physical proportions, so a side view of anisotropic voxels is not squashed.
    widths = [image.shape[1] * cs for _, image, _, _, (_, cs) in panels]
    heights = [image.shape[0] * rs for _, image, _, _, (rs, _) in panels]
    scale = 4.0 / max(heights)
    fig, axes = plt.subplots(1, len(panels), squeeze=False, gridspec_kw={"width_ratios": widths},
                             figsize=(max(4.0, scale * sum(widths) + 0.6 * len(panels)), 4.6 if entries else 4.2))
    for ax, (name, image, lab, (rd, cd), (rs, cs)) in zip(axes[0], panels, strict=True):
        extent = (0, image.shape[1] * cs, image.shape[0] * rs, 0)  # physical units, origin top left
        ax.imshow(_norm(image), cmap="gray", extent=extent, interpolation="nearest")
        if lab is not None and colors is not None:
            ax.imshow(_overlay(lab, colors), extent=extent, interpolation="nearest")
        ax.set_title(name)
        suffix = f" ({units})" if units else ""
        ax.set_xlabel(f"{cd}{suffix}")
        ax.set_ylabel(f"{rd}{suffix}")
        ax.set_xticks([])
        ax.set_yticks([])
        length = _nice_length(extent[1] / 5)
        bar = AnchoredSizeBar(ax.transData, length, f"{length:g} {units}".strip(), "lower right", pad=0.4,
                              color="white", frameon=True, size_vertical=extent[2] / 80)
        bar.patch.set(facecolor="black", alpha=0.6, edgecolor="none")
        ax.add_artist(bar)
    if entries:
        handles = [Patch(facecolor=(*c, _FILL_ALPHA + 0.3), edgecolor=c, label=n) for n, c in entries]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08 if entries else 0, 1, 1))
    return fig


def save_preview(path, volume, labels=None, *, montage=None, title=None, classes=None, dpi=100) -> None:
    """Write a PNG preview of ``volume`` with optional ``labels`` drawn on top.

    Every panel is drawn in physical proportions from the voxel size, with its axis names, a scale bar in the
    volume's units and, under the panels, a key: the class names of a class volume (from its ``classes`` attrs,
    as :func:`florin.reconstruct` writes them) or ``objects (N)`` for a label volume. Labels are drawn as a
    translucent fill with an opaque outline, so they read on dark and bright volumes alike.

    Parameters
    ----------
    path : str or path-like
        Output PNG (written atomically).
    volume : array_like or xarray.DataArray
        2-D or 3-D image; a DataArray's spacing and units scale the panels and the scale bar.
    labels : array_like or xarray.DataArray, optional
        Label or class volume of the same shape; 0 is not drawn.
    montage : int, optional
        Show this many evenly spaced z slices instead of orthogonal mid-slices.
    title : str, optional
        Figure title.
    classes : dict of int to str, optional
        Class names by class id for the key; default: the ``classes`` attrs of ``labels``, if any.
    dpi : int
        Resolution of the PNG.

    Examples
    --------
    >>> import numpy as np, florin
    >>> vol = florin.as_volume(np.random.default_rng(0).random((8, 32, 32)), spacing=(2.0, 0.5, 0.5), units="um")
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "preview.png")
    >>> save_preview(path, vol, vol > 0.9)
    >>> open(path, "rb").read(4)
    b'\\x89PNG'
    """
    plt = _pyplot()
    fig = preview_figure(volume, labels, montage=montage, title=title, classes=classes)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)


def preview_title(volume_path, labels_path=None) -> str:
    """The title ``florin preview`` and ``florin demo`` give a preview of these files.

    Examples
    --------
    >>> preview_title("out/volume.tif", "out/labeled.tiff")
    'volume.tif with labeled.tiff'
    """
    name = Path(volume_path).name
    return name if labels_path is None else f"{name} with {Path(labels_path).name}"
