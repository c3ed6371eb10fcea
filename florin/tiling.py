"""Tiling a volume into overlapping tiles and joining processed tiles.

The stride grid defines each tile's *core*: tile ``k`` along an axis owns voxels
``[k * stride, (k + 1) * stride)``, so every voxel belongs to exactly one tile.
``shape - stride`` voxels after the core are extra context (the tile as FLoRIN
cut it), and the halo adds context on both sides so that operators declaring a
halo give exactly the whole-volume result in the core. Join writes cores only.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import numbers

import numpy as np
import xarray as xr

from florin import _run, file_backed, tilemeta
from florin.collection import Collection
from florin.errors import ParameterError, ParameterTypeError, PipelineError, TilingError
from florin.memory import sealed
from florin.volume import as_volume

__all__ = [
    "Tile", "TileJoin", "TileRef", "Tiles", "core_of", "is_lazy", "join", "join_kind", "join_kind_named", "join_stream",
    "register_join", "tile", "tile_infos", "unregister_join", "wrap_joined",
]


def _per_axis(value, ndim, name):
    if isinstance(value, numbers.Integral):
        value = (int(value),) * ndim
    try:
        value = tuple(value)
    except TypeError:
        raise TilingError(f"{name} must be an int or a tuple of ints, got {value!r}") from None
    if len(value) != ndim:
        raise TilingError(f"{name} {value} has {len(value)} entries but the volume is {ndim}-D; give one per axis")
    if not all(isinstance(v, numbers.Integral) or v == math.inf for v in value):
        raise TilingError(f"{name} {value} must contain integers")
    return value


def tile_infos(full_shape, shape, stride=None, halo=0) -> list[tilemeta.TileInfo]:
    """Tile geometry for a volume of ``full_shape``, in raster order.

    Parameters
    ----------
    full_shape : tuple of int
        Shape of the volume.
    shape : int or tuple of int
        Tile shape (core plus the context after it), per axis.
    stride : int or tuple of int, optional
        Distance between tile origins; the core size. Default: ``shape``.
    halo : int or tuple of int
        Context on both sides of each tile, clipped at the volume's edges.

    Examples
    --------
    >>> infos = tile_infos((10, 100), shape=(10, 64), stride=(10, 32), halo=(0, 2))
    >>> [i.core_slices[1] for i in infos]
    [slice(0, 32, None), slice(32, 64, None), slice(64, 96, None), slice(96, 100, None)]
    >>> infos[1].read_slices
    (slice(0, 10, None), slice(30, 98, None))
    """
    full_shape = tuple(int(n) for n in full_shape)
    ndim = len(full_shape)
    shape = _per_axis(shape, ndim, "shape")
    stride = shape if stride is None else _per_axis(stride, ndim, "stride")
    halo = _per_axis(halo, ndim, "halo")
    for name, values in (("shape", shape), ("stride", stride)):
        if any(v < 1 for v in values):
            raise TilingError(f"tile {name} {values} must be >= 1 on every axis")
    if any(h < 0 for h in halo):
        raise TilingError(f"halo {halo} must be >= 0 on every axis")
    if any(s > t for s, t in zip(stride, shape, strict=True)):
        raise TilingError(f"stride {stride} must not exceed the tile shape {shape} on any axis")
    if any(n == 0 for n in full_shape):
        raise TilingError(f"cannot tile an empty volume of shape {full_shape}")

    starts = [range(0, n, s) for n, s in zip(full_shape, stride, strict=True)]
    infos = []
    for index, origin in enumerate(itertools.product(*starts)):
        core, before, after = [], [], []
        for o, n, s, t, h in zip(origin, full_shape, stride, shape, halo, strict=True):
            c = min(s, n - o)
            core.append(c)
            before.append(int(min(o, h)))
            after.append(int(min(n - o - c, (t - s) + h)))
        infos.append(tilemeta.TileInfo(index, tuple(origin), tuple(core), tuple(before), tuple(after), full_shape))
    return infos


def is_lazy(volume) -> bool:
    """Whether ``volume`` is file-backed, so a worker can read a tile itself (:func:`florin.io.lazy.is_lazy`).

    For such volumes executors ship a :class:`TileRef` (the volume as a file
    reference plus the tile's geometry) instead of the tile's voxels, and the
    worker reads only its own slice.

    Examples
    --------
    >>> import numpy as np
    >>> is_lazy(as_volume(np.zeros((2, 2))))
    False
    """
    return file_backed.is_lazy(volume)


class TileRef:
    """A light reference to one tile: its volume and its :class:`~florin.tilemeta.TileInfo`.

    Executors ship these for file-backed volumes (see :func:`is_lazy`): a
    ``TileRef`` pickles as a reference to the file, and :meth:`resolve` in the
    worker cuts the tile, so each worker reads only its own slice.
    """

    __slots__ = ("volume", "info")

    def __init__(self, volume, info):
        self.volume = volume
        self.info = info

    def resolve(self):
        """The tile (a DataArray carrying its metadata), read once into memory."""
        return tilemeta.attach(self.volume[self.info.read_slices].load(), self.info)

    def __reduce__(self):
        source = file_backed.memmap_source(self.volume)
        if source is None:
            return (TileRef, (self.volume, self.info))  # lazy volumes pickle as file references
        filename, offset, strides = source
        tile = self.volume[self.info.read_slices]
        coords = {k: v.variable for k, v in tile.coords.items()}
        header = (self.volume.shape, self.volume.dtype.str, strides, tile.dims, coords, dict(tile.attrs), tile.name)
        return (_open_memmap_tile, (filename, offset, header, self.info))

    def __repr__(self):
        return f"<TileRef: tile at origin {self.info.origin} of a {tuple(self.volume.shape)} volume>"


def _open_memmap_tile(filename, offset, header, info):
    shape, dtype, strides, dims, coords, attrs, name = header
    raw = np.memmap(filename, dtype=np.uint8, mode="r")
    full = np.ndarray(shape, dtype=np.dtype(dtype), buffer=raw, offset=offset, strides=strides)
    tile = xr.DataArray(full[info.read_slices], dims=dims, coords=coords, attrs=attrs, name=name)
    return _ResolvedTile(tilemeta.attach(tile, info))


class _ResolvedTile:
    """A tile re-opened in a worker from its file (what a memory-mapped TileRef unpickles to)."""

    __slots__ = ("tile",)

    def __init__(self, tile):
        self.tile = tile

    def resolve(self):
        return self.tile

    def __reduce__(self):
        return (_ResolvedTile, (self.tile,))


class Tiles(Collection):
    """The tiles of a volume; indexing cuts (and reads, if lazy) one tile.

    Parameters
    ----------
    volume : xarray.DataArray
        The source volume (may be lazy: slicing it reads only the tile).
    infos : list of TileInfo
        Geometry of each tile.

    Notes
    -----
    :meth:`items` is what executors ship to workers: the cut tiles of an
    in-memory volume (pickling a tile copies only its voxels), or
    :class:`TileRef` references for a file-backed volume (:func:`is_lazy`),
    which :meth:`resolve` turns into the tile inside the worker.
    """

    def __init__(self, volume: xr.DataArray, infos):
        self.volume = volume
        self.infos = list(infos)

    def __len__(self):
        return len(self.infos)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        info = self.infos[i]
        return tilemeta.attach(self.volume[info.read_slices], info)

    def items(self) -> list:
        """What executors map over: tiles, or :class:`TileRef` for a file-backed volume."""
        if is_lazy(self.volume):
            return [TileRef(self.volume, info) for info in self.infos]
        return [self[i] for i in range(len(self))]

    @staticmethod
    def resolve(item):
        """The tile an item stands for (reads it when the item is a reference).

        A reference is any object with a ``resolve()`` method returning the
        tile: :class:`TileRef`, or what an executor ships instead of a tile
        (e.g. a tile of a volume in shared memory).
        """
        if not isinstance(item, xr.DataArray) and callable(getattr(item, "resolve", None)):
            return item.resolve()
        return item

    def item_label(self, item) -> str:
        info = tilemeta.info_of(item)
        return f"tile at origin {info.origin}" if info is not None else "item"

    def item_nbytes(self) -> int:
        """The largest tile's voxels, at 3 times the volume's item size (the tile, its result and some work)."""
        voxels = max((math.prod(i.tile_shape) for i in self.infos), default=0)
        return 3 * voxels * max(int(self.volume.dtype.itemsize), 1)

    def rebuild(self, results):
        return self.rebuild_stream(enumerate(results))

    def rebuild_stream(self, pairs, *, records=None):
        """Join tile results as they arrive: each core goes into the destination at once.

        The destination is in memory, or an on-disk scratch volume when the
        joined volume exceeds the run's memory budget (see :mod:`florin.memory`),
        which the next steps then read lazily. ``records`` are the completion
        records of a resumable run (see :func:`join_stream`).
        """
        joined = join_stream((result for _, result in pairs), infos=self.infos, like=self.volume,
                             allocate=_destination(), records=records)
        return sealed(joined)

    def __repr__(self):
        return f"<Tiles: {len(self)} tiles of a {self.volume.shape} volume>"


# -- joins ------------------------------------------------------------------------------------
class TileJoin:
    """How the results of one kind of tile are joined into the next datum.

    ``join`` knows no operator: each tile result is *claimed* by a result kind
    (the newest registered kind whose :meth:`claims` is true, else this class,
    the plain array kind) and that kind joins it. florin's own kinds are plain
    arrays (cores written into the destination), labelled tiles
    (``florin.conncomp``: labels merged across tiles, statistics aggregated)
    and tiles a ``save`` already wrote (``florin.io.written_join``: the output
    committed). A plugin adds a kind by subclassing and calling
    :func:`register_join`.

    Tiles arrive one at a time, in any order (executors hand them back as they
    complete), so a kind must not depend on the order: :meth:`add` gets each
    result once, and :meth:`finish` returns the joined datum.

    A kind that declares :attr:`resumable` lets an interrupted run continue
    (``resume=True``, see :mod:`florin.resume`): after :meth:`add` and
    :meth:`flush` a tile is recorded as done, and the resumed run hands the
    tiles recorded earlier to :meth:`restore` instead of computing them again
    (its destination, made by ``allocate``, is then the first run's).

    Parameters
    ----------
    first : xarray.DataArray
        The first result to arrive (for its dtype and attrs); it is also
        passed to :meth:`add`.
    infos : list of TileInfo
        The geometry of every tile of the volume (in raster order).
    like : xarray.DataArray, optional
        Volume whose dims, coords and attrs the result takes.
    out : array_like, optional
        Where to write; when None, ``allocate(shape, dtype)`` makes it.
    allocate : callable
        ``allocate(shape, dtype) -> array``: a destination in memory, or an
        on-disk scratch volume when it would exceed the run's memory budget.
    """

    #: Shown in messages.
    name = "array"
    #: Whether a resumed run may :meth:`restore` the tiles an earlier run recorded instead of computing them.
    #: A subclass is not, unless it says so itself (its own ``add`` may keep what ``restore`` does not).
    resumable = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.resumable = bool(cls.__dict__.get("resumable", False))

    @classmethod
    def claims(cls, tile) -> bool:
        """Whether ``tile`` (a tile result) is of this kind."""
        return True

    def __init__(self, first, *, infos, like=None, out=None, allocate=None):
        self.first, self.infos, self.like = first, list(infos), like
        self.allocate = allocate or _allocate_in_memory
        self.out = out
        self._covered = 0 if out is None else None  # voxels written into a destination of our own

    def add(self, tile, info) -> None:
        """Take one tile result (``info`` is its :class:`~florin.tilemeta.TileInfo`)."""
        if self.out is None:
            self.out = self.allocate(info.full_shape, tile.dtype)
        self.out[info.core_slices] = np.asarray(core_of(tile, info))
        if self._covered is not None:
            self._covered += math.prod(info.core_shape)

    def restore(self, info, state=None) -> None:
        """Account for the tile ``info`` whose core an earlier, interrupted run wrote into the destination.

        ``state`` is what :meth:`state` gave for that tile in that run.
        """
        if self.out is None:
            self.out = self.allocate(info.full_shape, self.first.dtype)
        if self._covered is not None:
            self._covered += math.prod(info.core_shape)

    def state(self, info):
        """What :meth:`restore` needs of tile ``info`` besides the destination (picklable), kept with its record."""
        return None

    def rewrites(self) -> bool:
        """Whether :meth:`finish` changes what :meth:`add` wrote (the records are then dropped before it)."""
        return False

    def flush(self) -> None:
        """Make what :meth:`add` wrote durable (on disk) before the tile is recorded as done."""
        flush = getattr(self.out, "flush", None)
        if callable(flush):
            flush()

    def committed(self) -> dict | None:
        """What :meth:`finish` commits, as JSON with the ``outputs`` (paths) among it, or None.

        A resumed run does not write those outputs again; a kind that commits
        outputs also defines ``reopen(record, like=)``, giving the result again.
        """
        return None

    def finish(self):
        """The joined datum."""
        if self._covered is not None and self._covered != math.prod(self.out.shape):
            raise PipelineError(
                f"the tiles cover {self._covered} of the {math.prod(self.out.shape)} voxels; a tile is missing "
                "(pass out= to join part of a volume)"
            )
        return wrap_joined(self.out, self.like, self.first)


_JOINS: list = []


def register_join(kind) -> type:
    """Register a result kind (a :class:`TileJoin` subclass); the newest registered is tried first.

    Usable as a class decorator. Registering the same class again moves it to the front.

    Examples
    --------
    >>> import numpy as np
    >>> @register_join
    ... class Doubled(TileJoin):
    ...     name = "doubled"
    ...     @classmethod
    ...     def claims(cls, tile):
    ...         return "doubled" in tile.attrs
    ...     def add(self, tile, info):
    ...         super().add(tile * 2, info)
    >>> vol = as_volume(np.arange(8).reshape(2, 4))
    >>> parts = [t.assign_attrs(doubled=True) for t in tile(shape=(2, 2))(vol)]
    >>> join(parts, like=vol).values.tolist()
    [[0, 2, 4, 6], [8, 10, 12, 14]]
    >>> unregister_join(Doubled)
    """
    if not (isinstance(kind, type) and issubclass(kind, TileJoin)):
        raise ParameterTypeError(f"register_join() takes a subclass of florin.tiling.TileJoin, got {kind!r}")
    unregister_join(kind)
    _JOINS.insert(0, kind)
    return kind


def unregister_join(kind) -> None:
    """Remove a result kind registered with :func:`register_join` (no error if absent)."""
    while kind in _JOINS:
        _JOINS.remove(kind)


def join_kind_named(name):
    """The registered result kind called ``name`` (a :class:`TileJoin` subclass), or None."""
    for kind in [*_JOINS, TileJoin]:
        if kind.name == name:
            return kind
    return None


def join_kind(tile) -> type:
    """The result kind (a :class:`TileJoin` subclass) that claims ``tile``."""
    for kind in _JOINS:
        if kind.claims(tile):
            return kind
    return TileJoin


def core_of(tile, info):
    """The core of a tile result, whole or already cropped to its core."""
    shape = tuple(tile.shape)
    if shape == tuple(info.core_shape):
        return tile
    if shape == info.tile_shape:
        return tile[info.core_in_tile]
    raise PipelineError(
        f"tile at origin {info.origin} has shape {shape}, expected {info.tile_shape}: "
        "steps inside a tiled pipeline must keep the tile's shape",
        origin=info.origin,
    )


def _allocate_in_memory(shape, dtype):
    return np.empty(tuple(shape), np.dtype(dtype))


def _destination():
    """How the implicit join of the running pipeline allocates: within the run's memory budget."""
    return _run.allocate


def _tile_info(t):
    info = tilemeta.info_of(t)
    if info is None:
        raise PipelineError(
            "join() got data without tile metadata; a step dropped the tile's attrs "
            "(wrap plain functions with florin.florinate or return a DataArray with the input's attrs)"
        )
    return info


def join_stream(results, *, infos=None, like=None, out=None, allocate=None, records=None):
    """Join tile results as they arrive (an iterable, in any order); see :func:`join`.

    Each result is handed to its kind's joiner and can be dropped right after,
    so only the destination and the results in flight are held. ``infos``
    is the geometry of every tile (default: the results', which are then
    gathered first). ``allocate(shape, dtype)`` makes the destination
    (default: in memory).

    ``records`` (a :class:`florin.resume.Part`) are the completion records of
    a resumable run: when the kind is :attr:`~TileJoin.resumable`, its
    destination is kept with the records, the tiles they name
    (``records.restored``, which the results do not include) are restored,
    and each tile is recorded only once the joiner added and flushed it.
    """
    if infos is None:
        results = list(results)
        infos = sorted((_tile_info(t) for t in results), key=lambda i: i.index)
    joiner, first_kind, recording = None, None, False
    for t in results:
        info = _tile_info(t)
        kind = join_kind(t)
        if joiner is None:
            first_kind = kind
            if records is not None:
                records.check_kind(kind)
                recording = kind.resumable and out is None
            joiner = kind(t, infos=infos, like=like, out=out, allocate=records.allocate if recording else allocate)
            for done in records.restored if recording else ():
                joiner.restore(done, records.state(done))
        elif kind is not first_kind:
            raise PipelineError(
                f"join got tiles of different kinds ({first_kind.name} and {kind.name}, the tile at origin "
                f"{info.origin}); every tile of a tiled pipeline must end with the same steps"
            )
        joiner.add(t, info)
        if recording:
            joiner.flush()
            records.record(info, joiner.state(info))
    if joiner is None:
        raise PipelineError("join() got no tiles")
    committed = joiner.committed() if recording else None
    if committed:
        records.finishing(first_kind, committed)
    if recording and joiner.rewrites():
        records.forget()  # stopped while finish() rewrites the destination, the part runs again whole
    result = joiner.finish()
    if records is not None:
        records.finished(first_kind, committed)
    return result


def join(tiles=None, *, like=None, out=None):
    """Assemble processed tiles into a volume, writing each tile's core only.

    What the join of a tile result is depends on its kind (see
    :class:`TileJoin`): the cores of plain arrays are written into the
    volume, labelled tiles have their labels merged, tiles a ``save`` wrote
    are committed.

    Parameters
    ----------
    tiles : iterable of DataArray
        Tiles carrying their metadata (as produced by :func:`tile` and kept by
        florin operators). Each may be whole or already cropped to its core.
    like : xarray.DataArray, optional
        Volume whose dims, coords and attrs the result takes.
    out : array_like, optional
        Where to write (e.g. an on-disk dataset); allocated when omitted.

    Returns
    -------
    xarray.DataArray, or a pipeline step when called without ``tiles``.

    Examples
    --------
    >>> import numpy as np
    >>> vol = as_volume(np.arange(20).reshape(4, 5))
    >>> parts = [t.copy(data=t.values * 2) for t in tile(shape=(2, 2))(vol)]  # keeps the tile metadata
    >>> join(parts, like=vol).values.tolist() == (vol.values * 2).tolist()
    True
    """
    if tiles is None:
        return Join(like=like, out=out)
    return join_stream(tiles, like=like, out=out)


def wrap_joined(out, like, first):
    """The destination ``out`` of a join as a volume like ``like`` (attrs of ``first``, tile metadata stripped)."""
    if like is None:
        dims = first.dims if isinstance(first, xr.DataArray) else None
        attrs = tilemeta.strip(first.attrs) if isinstance(first, xr.DataArray) else {}
        return as_volume(out, dims=dims, attrs=attrs)
    attrs = tilemeta.strip(first.attrs) if isinstance(first, xr.DataArray) else dict(like.attrs)
    coords = {k: v for k, v in like.coords.items() if set(v.dims) <= set(like.dims)}
    return xr.DataArray(out, dims=like.dims, coords=coords, attrs=attrs, name=like.name)


_wrap_joined = wrap_joined  # the name other modules used


class Tile:
    """Pipeline step that cuts a volume into :class:`Tiles` (see :func:`tile`)."""

    per_item = False
    name = "tile"

    #: The values of ``blocks=`` (see :func:`tile`).
    BLOCKS = ("auto", "tiles")

    def __init__(self, shape, stride=None, halo="auto", blocks="auto"):
        self.shape = shape
        self.stride = stride
        if not (isinstance(blocks, str) and blocks in self.BLOCKS):
            raise ParameterError(f"tile() blocks must be 'auto' or 'tiles', got {blocks!r}")
        self.blocks = blocks
        if not (halo == "auto" or isinstance(halo, numbers.Integral) or isinstance(halo, tuple | list)):
            raise TilingError(f"halo must be 'auto', an int or a tuple of ints, got {halo!r}")
        self.halo = halo
        # Check what can be checked before a volume is known.
        for name, value in (("shape", shape), ("stride", stride)):
            if value is None:
                continue
            try:
                values = (value,) if isinstance(value, numbers.Integral) else tuple(value)
            except TypeError:
                raise ParameterTypeError(f"tile {name} must be an int >= 1 or a tuple of ints >= 1, got {value!r}") from None
            if any(not isinstance(v, numbers.Integral) or v < 1 for v in values):
                raise TilingError(f"tile {name} {value} must contain integers >= 1")
        if stride is not None and not isinstance(shape, numbers.Integral) and not isinstance(stride, numbers.Integral):
            if len(tuple(shape)) != len(tuple(stride)):
                raise TilingError(f"stride {stride} and shape {shape} have different lengths")

    @property
    def regroups(self) -> bool:
        """Whether florin may run the tiled part on blocks of its choosing (``blocks='auto'``, ``halo='auto'``)."""
        return self.blocks == "auto" and self.halo == "auto"

    def __call__(self, volume, *, auto_halo=None):
        if isinstance(volume, Tiles):
            raise PipelineError("tile() got tiles; join them first")
        volume = as_volume(volume)
        if self.halo == "auto":
            halo = auto_halo if auto_halo is not None else 0
        else:
            halo = self.halo
        halo = _per_axis(halo, volume.ndim, "halo")
        if any(h == math.inf for h in halo):
            raise TilingError(
                "a step after tile() needs the whole volume (its halo is unbounded); "
                "move it after the join (out of the tiled pipeline)"
            )
        return Tiles(volume, tile_infos(volume.shape, self.shape, self.stride, halo))

    def to_spec(self) -> dict:
        """This step as a pipeline-file table."""
        spec = {"op": "tile", "shape": self.shape}
        if self.stride is not None:
            spec["stride"] = self.stride
        if self.halo != "auto":
            spec["halo"] = self.halo
        if self.blocks != "auto":
            spec["blocks"] = self.blocks
        return spec

    def __repr__(self):
        blocks = "" if self.blocks == "auto" else f", blocks={self.blocks!r}"
        return f"tile(shape={self.shape!r}, stride={self.stride!r}, halo={self.halo!r}{blocks})"


class Join:
    """Pipeline step that joins tiles explicitly (see :func:`join`)."""

    per_item = False
    name = "join"

    def __init__(self, like=None, out=None):
        self.like, self.out = like, out

    def to_spec(self) -> dict:
        """This step as a pipeline-file table."""
        return {"op": "join"}

    def __call__(self, data):
        if isinstance(data, Tiles):
            return data.rebuild(data[:])
        if isinstance(data, list | tuple):
            return join(data, like=self.like, out=self.out)
        return data


def _keyword_only(func):
    """``func`` refusing positional arguments with a one-line error that names them (its options are keyword-only)."""

    @functools.wraps(func)
    def call(*args, **kwargs):
        if args:
            names = list(inspect.signature(func).parameters)[:len(args)]
            raise ParameterTypeError(f"{func.__name__}: pass {', '.join(names)} by keyword: "
                                     f"{func.__name__}({', '.join(f'{n}=...' for n in names)})")
        return func(**kwargs)

    return call


@_keyword_only
def tile(*, shape, stride=None, halo="auto", blocks="auto"):
    """Pipeline step that cuts a volume into overlapping tiles.

    A tiled result is exact when every step of the tiled part declares a
    finite halo (florin's operators do), so the tile shape cannot change it
    and only says how to cut the work: florin then runs the steps on blocks
    of its own choosing (``blocks='auto'``, see
    :func:`florin.planner.regroup`), large enough that the halos cost little,
    with enough blocks for every worker, within the run's memory budget. A
    step that declares no halo (a plain function, whose result may depend on
    the tile) keeps the tiles as given, as do ``blocks='tiles'`` and an
    explicit ``halo``.

    The options are keyword-only (``tile(shape=..., stride=...)``); a
    positional call raises a one-line :class:`~florin.errors.ParameterTypeError`.

    Parameters
    ----------
    shape : int or tuple of int
        Tile shape per axis (core plus context after it).
    stride : int or tuple of int, optional
        Step between tiles; each tile owns a ``stride``-sized core. Default: ``shape``.
    halo : 'auto', int or tuple of int
        Context added on each side of every tile. ``'auto'`` (default) adds the
        halo declared by the per-tile steps that follow, so that the tiled result
        equals the whole-volume result voxel for voxel. An explicit halo keeps
        the tiles as given.
    blocks : {'auto', 'tiles'}
        ``'auto'`` (default): florin chooses the blocks when the result cannot
        depend on them; ``'tiles'``: the steps run on these tiles, as given
        (e.g. to keep per-tile behaviour or the tiles' memory).

    Returns
    -------
    Tile
        A step; called on a volume it returns :class:`Tiles`.

    Examples
    --------
    >>> import numpy as np
    >>> tiles = tile(shape=(2, 4), stride=(2, 2))(np.zeros((4, 6)))
    >>> len(tiles), tiles[0].shape
    (6, (2, 4))
    """
    return Tile(shape, stride, halo, blocks)
