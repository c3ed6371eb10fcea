"""PNG previews of volumes and label overlays (matplotlib, no display needed).

A 3-D volume is shown as its three orthogonal mid-slices (or a montage of z
slices), a 2-D image as itself; labels are drawn on top in distinct colours.
"""

from __future__ import annotations

import numpy as np

from florin.errors import FlorinError, ParameterError
from florin.io.atomic import atomic_path
from florin.volume import as_volume, get_spacing

__all__ = ["label_colors", "save_preview"]


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise FlorinError("previews need matplotlib: pip install 'florin[preview]'") from None
    return matplotlib


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


def _norm(image):
    image = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(image, [1, 99]) if image.size else (0, 1)
    return np.clip((image - lo) / (hi - lo if hi > lo else 1), 0, 1)


def _panels(vol, labels, montage):
    data = np.asarray(vol)
    lab = None if labels is None else np.asarray(labels)
    if data.ndim == 2:
        return [("", data, lab, 1.0)]
    if data.ndim != 3:
        raise ParameterError(f"preview shows 2-D or 3-D volumes; this one is {data.ndim}-D")
    sz, sy, sx = get_spacing(vol)
    if montage:
        idx = np.linspace(0, data.shape[0] - 1, montage).round().astype(int)
        return [(f"z={i}", data[i], None if lab is None else lab[i], sy / sx) for i in idx]
    cz, cy, cx = (n // 2 for n in data.shape)
    take = (lambda a, sl: None) if lab is None else (lambda a, sl: a[sl])
    return [
        (f"z={cz}", data[cz], take(lab, (cz,)), sy / sx),
        (f"y={cy}", data[:, cy], take(lab, (slice(None), cy)), sz / sx),
        (f"x={cx}", data[:, :, cx], take(lab, (slice(None), slice(None), cx)), sz / sy),
    ]


def save_preview(path, volume, labels=None, *, montage=None, title=None, dpi=100) -> None:
    """Write a PNG preview of ``volume`` with optional ``labels`` drawn on top.

    Parameters
    ----------
    path : str or path-like
        Output PNG (written atomically).
    volume : array_like or xarray.DataArray
        2-D or 3-D image.
    labels : array_like, optional
        Label or class volume of the same shape; 0 is not drawn.
    montage : int, optional
        Show this many evenly spaced z slices instead of orthogonal mid-slices.
    title : str, optional
        Figure title.
    """
    matplotlib = _matplotlib()
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    vol = as_volume(volume)
    if labels is not None and np.shape(labels) != vol.shape:
        raise ParameterError(f"labels have shape {np.shape(labels)} but the volume has {vol.shape}")
    if montage is not None and montage < 1:
        raise ParameterError(f"montage must be >= 1, got {montage}")
    panels = _panels(vol, labels, montage)
    n_labels = int(np.max(labels)) if labels is not None and np.size(labels) else 0
    cmap = ListedColormap(label_colors(n_labels)) if n_labels else None
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    for ax, (name, image, lab, aspect) in zip(axes[0], panels, strict=True):
        ax.imshow(_norm(image), cmap="gray", aspect=aspect, interpolation="nearest")
        if lab is not None and cmap is not None:
            ax.imshow(lab, cmap=cmap, vmin=0, vmax=n_labels, aspect=aspect, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
