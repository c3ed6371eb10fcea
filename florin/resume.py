"""Resumable runs: per-tile completion records kept beside the output (issue 13 item 6).

``pipeline(data, resume=True)`` (``florin run|segment --resume``) keeps what a
run has finished in one folder, ``NAME.florin-partial/`` beside the first
output ``NAME`` (or under ``scratch=``), so that the same call after an
interruption (a crash, a kill, a failing tile, Ctrl-C) continues where the
first one stopped and gives the same output as an uninterrupted run:

* ``manifest.json``: the pipeline's steps (their specs and parameters; the
  executors are left out, so a Serial run can resume under Multiprocess), its
  inputs (path, size and modification time, or a hash of an in-memory array)
  and the memory budget. A folder whose manifest names another pipeline or
  input is refused with :class:`~florin.errors.ResumeError`;
* ``lock``: held (``flock``) while a run uses the folder;
* one ``part-NNN/`` per tiled part of the run (each mapping of steps over
  tiles, in run order): ``done.log``, the indices of the tiles whose results
  the join has written and flushed to disk, and the join's destination
  (``out.npy``, a memory map kept here instead of in the scratch directory);
* ``committed.json``: the outputs the run committed (path, size and
  modification time); a resumed run neither refuses nor rewrites them.

A tile is recorded only after its join kind (:class:`florin.tiling.TileJoin`)
added it and flushed the destination (``fsync``), in the process that joins,
so a tile that failed, or whose result never arrived, is never recorded: the
resumed run computes it again. Join kinds declare ``resumable``: plain
arrays, tiles written by ``save`` and labelled tiles (``conncomp.label``
inside the tiled part; each tile's merge data is kept beside its record) are.
A join whose ``finish`` rewrites its destination (labels) drops its records
first, so a run stopped then runs that part again. Steps on the whole volume
always run again (their inputs come back from the records).

The folder is removed when the run succeeds and kept when it fails or is
stopped. Without ``resume``, nothing is recorded and a failed run leaves no
scratch behind, as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np

from florin import _run
from florin import steps as _steps
from florin.errors import OutputBusyError, ParameterError, PipelineError, ResumeError
from florin.io.atomic import fsync_file, remove_path
from florin.io.lazy import sources
from florin.io.outputs import pipeline_saves
from florin.io.tile_sink import tile_workdir
from florin.tiling import join_kind_named

try:  # POSIX advisory locks
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["FOLDER_SUFFIX", "Part", "Resume", "committed_outputs", "partial_folder"]

#: The records of an interrupted run live in ``NAME + FOLDER_SUFFIX``.
FOLDER_SUFFIX = ".florin-partial"
#: Version of the folder's layout (a folder of another version is refused).
LAYOUT = 1


def _output_paths(pipeline) -> list[Path]:
    """The files ``pipeline``'s save steps write, in run order."""
    found = []
    for step in pipeline_saves(pipeline):
        out = getattr(step, "out", None)
        found.append(Path(out.target) if out is not None else Path(step.path))
    return found


def partial_folder(pipeline, *, scratch=None, output=None) -> Path:
    """Where a resumable run of ``pipeline`` keeps its records.

    ``NAME.florin-partial`` beside the first output ``NAME`` (a save step of
    the pipeline, else ``output``), or in ``scratch`` when it is given.

    Examples
    --------
    >>> import florin
    >>> partial_folder(florin.Serial(florin.save("out/seg.h5"))).as_posix()
    'out/seg.h5.florin-partial'
    >>> partial_folder(florin.Serial(florin.save("out/seg.h5")), scratch="/scratch").as_posix()
    '/scratch/seg.h5.florin-partial'
    """
    outputs = _output_paths(pipeline)
    first = outputs[0] if outputs else (Path(output) if output is not None else None)
    if first is None and scratch is None:
        raise ParameterError("resume=True needs a place for its records: the pipeline has no save step, "
                             "so give scratch= (or resume= a folder)")
    name = (first.name if first is not None else "run") + FOLDER_SUFFIX
    return Path(scratch) / name if scratch is not None else first.parent / name


# -- what a run is -----------------------------------------------------------------------------
def _jsonable(value):
    return json.loads(json.dumps(value, default=repr, sort_keys=True))


def _describe_step(step):
    inner = getattr(step, "steps", None)
    if isinstance(inner, list) and callable(getattr(step, "run", None)):
        return {"pipeline": [_describe_step(s) for s in inner]}  # the executor is left out
    try:
        spec = _steps.spec(step)
    except Exception:  # a step that cannot be written to a pipeline file (save into an array)
        spec = None
    if isinstance(spec, dict):
        spec = {k: v for k, v in spec.items() if k != "overwrite"}  # --overwrite added on resume is the same run
    else:
        spec = {"name": _steps.name(step), "params": _steps.params(step)}
        path = getattr(step, "path", None)
        if path is not None:
            spec["path"] = os.fspath(path)
    return _jsonable(spec)


def _file_fingerprint(path) -> dict:
    st = os.stat(path)
    return {"path": os.path.realpath(os.fspath(path)), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _array_fingerprint(data) -> dict:
    """A lazy volume by its files, an in-memory one by a hash of its voxels."""
    files = sources(data)
    if files:
        return {"files": [_file_fingerprint(p) for p in files]}
    array = np.ascontiguousarray(np.asarray(getattr(data, "values", data)))
    digest = hashlib.sha256(array.view(np.uint8).reshape(-1) if array.size else b"").hexdigest()
    return {"array": {"shape": list(array.shape), "dtype": array.dtype.str, "sha256": digest}}


def _inputs(pipeline, data, no_data) -> list:
    found = []
    if data is not no_data and data is not None:
        if isinstance(data, str | os.PathLike):
            found.append(_file_fingerprint(data))
        elif hasattr(data, "shape") and hasattr(data, "dtype"):
            found.append(_array_fingerprint(data))
    stack = list(getattr(pipeline, "steps", ()))
    while stack:
        step = stack.pop(0)
        if isinstance(getattr(step, "steps", None), list):
            stack[:0] = step.steps
        elif _steps.reads_paths(step) and isinstance(getattr(step, "path", None), str | os.PathLike):
            found.append(_file_fingerprint(step.path))
    return found


def _atomic_json(path: Path, value) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(value, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_file(path.parent)  # the rename too


def _read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _matches(record: dict) -> bool:
    try:
        return _file_fingerprint(record["path"]) == record
    except (OSError, KeyError, TypeError):
        return False


def committed_outputs(folder) -> set[str]:
    """Real paths of the outputs that the interrupted run kept in ``folder`` committed, unchanged since.

    Also those a join was committing when the run stopped, if the rename into place happened (see
    :meth:`Part.finishing`).
    """
    records = _read_json(Path(folder) / "committed.json", {}) or {}
    found = {path for path, record in records.items() if isinstance(record, dict) and _matches(record)}
    return found | {os.path.realpath(path) for _, path, _ in _pending_commits(folder)}


def _pending_commits(folder):
    """``(part folder, output, its temporary folder)`` of joins that renamed an output into place but were
    stopped before recording it: the output exists and its temporary file is gone."""
    for part in sorted(Path(folder).glob("part-*")):
        record = _read_json(part / "result.json")
        if not isinstance(record, dict) or not record.get("pending"):
            continue
        tokens = _read_json(part / "saves.json", {}) or {}
        for path in record.get("outputs", ()):
            token = tokens.get(os.path.realpath(path))
            workdir = tile_workdir(Path(path), token) if token else None
            if workdir is not None and os.path.exists(path) and not (workdir / Path(path).name).exists():
                yield part, path, workdir


# -- one run ---------------------------------------------------------------------------------------
class Resume:
    """The records of one resumable run (made by :meth:`start`, ended by :meth:`close`)."""

    def __init__(self, folder: Path, manifest: dict, lock_fd):
        self.folder, self.manifest, self._lock_fd = folder, manifest, lock_fd
        self._parts = []
        self.resumed = False

    @classmethod
    def start(cls, pipeline, data, folder, *, budget, no_data=None) -> Resume:
        """Open (or create) ``folder`` for a run of ``pipeline`` on ``data``; check that it is the same run."""
        folder = Path(folder)
        manifest = {"florin-partial": LAYOUT, "steps": _describe_step(pipeline), "inputs": _inputs(pipeline, data,
                                                                                                   no_data)}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ParameterError(f"resume: cannot use {os.fspath(folder)!r} for the run's records: {exc}") from None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusyError(f"the partial run in {os.fspath(folder)!r} is being resumed by another florin run; "
                                  "wait for it to finish") from None
        resume = cls(folder, manifest, fd)
        try:
            earlier = _read_json(folder / "manifest.json")
            if earlier is None:
                if any(p.name.startswith("part-") for p in folder.iterdir()):
                    raise ResumeError(f"{os.fspath(folder)!r} holds records without a manifest; remove that folder "
                                      "or run without --resume")
                manifest["budget"] = int(budget)
                _atomic_json(folder / "manifest.json", manifest)
            else:
                same = {k: earlier.get(k) for k in ("florin-partial", "steps", "inputs")}
                if same != {k: manifest[k] for k in same}:
                    what = "input" if same["steps"] == manifest["steps"] else "pipeline"
                    raise ResumeError(
                        f"the partial run in {os.fspath(folder)!r} is of another {what}; remove that folder "
                        "or run without --resume to start afresh"
                    )
                manifest["budget"] = int(earlier.get("budget") or budget)
                resume.resumed = True
                resume._adopt_pending()
        except BaseException:
            resume.close(keep=True)
            raise
        return resume

    def _adopt_pending(self) -> None:
        """Record the outputs a join had renamed into place when the run stopped (and remove what it left)."""
        for part, path, workdir in list(_pending_commits(self.folder)):
            self.committed(path)
            record = _read_json(part / "result.json")
            record.pop("pending", None)
            _atomic_json(part / "result.json", record)
            remove_path(workdir)

    @property
    def budget(self) -> int:
        """The memory budget of the first run (a resumed run without ``memory=`` keeps it, and so its plan)."""
        return self.manifest["budget"]

    # -- committed outputs ---------------------------------------------------------------------
    def is_committed(self, path) -> bool:
        """Whether the interrupted run committed ``path`` and it is unchanged since (so it is not written again)."""
        return os.path.realpath(os.fspath(path)) in committed_outputs(self.folder)

    def committed(self, path) -> None:
        """Record that this run committed ``path`` (on the process that writes outputs)."""
        if not _run.is_writer():
            return
        records = _read_json(self.folder / "committed.json", {}) or {}
        records[os.path.realpath(os.fspath(path))] = _file_fingerprint(path)
        _atomic_json(self.folder / "committed.json", records)

    # -- tiled parts ---------------------------------------------------------------------------
    def part(self, tiles, steps) -> Part:
        """The records of the next tiled part of the run (``steps`` mapped over ``tiles``)."""
        key = hashlib.sha256(json.dumps(
            [repr(list(tiles.infos)), [_describe_step(s) for s in steps]], sort_keys=True, default=repr
        ).encode()).hexdigest()
        part = Part(self, self.folder / f"part-{len(self._parts):03d}", key)
        self._parts.append(part)
        return part

    def close(self, *, keep: bool) -> None:
        """End the run: remove the folder (success) or keep it for the next run (``keep``); release the lock."""
        if self._lock_fd is None:
            return
        for part in self._parts:
            part.close()
        try:
            if not keep:
                shutil.rmtree(self.folder, ignore_errors=True)
        finally:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None


class Part:
    """The records of one tiled part: which tiles the join has, its destination, its saves' temporary outputs.

    The join (:func:`florin.tiling.join_stream`) gets this as ``records``.
    """

    def __init__(self, run: Resume, folder: Path, key: str):
        self.run, self.folder, self.key = run, folder, key
        if _read_json(folder / "key.json") != key:
            self._reset()
        self.done = self._read_done()
        self.restored = []
        self._log = None
        self._allocated = 0

    def _reset(self) -> None:
        for workdir in self._save_workdirs():
            remove_path(workdir)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        _atomic_json(self.folder / "key.json", self.key)

    def _read_done(self) -> set[int]:
        try:
            text = (self.folder / "done.log").read_text()
        except OSError:
            return set()
        return {int(line) for line in text.splitlines()[: -1 if not text.endswith("\n") else None] if line.isdigit()}

    # -- tile-by-tile saves ----------------------------------------------------------------------
    def _save_workdirs(self) -> list[Path]:
        tokens = _read_json(self.folder / "saves.json", {}) or {}
        return [tile_workdir(Path(path), token) for path, token in tokens.items()]

    def save_tokens(self, saves, new_token) -> dict:
        """The token of each tile-by-tile save of this part (``{id(save): token}``): the first run's, kept here.

        When a save's temporary output of the first run is gone, the tiles recorded so far are forgotten.
        """
        tokens = _read_json(self.folder / "saves.json", {}) or {}
        keys = [os.path.realpath(os.fspath(save.path)) for save in saves]
        if set(tokens) != set(keys) or not all(tile_workdir(Path(k), tokens[k]).is_dir() for k in keys):
            if self.done:
                self._reset()
                self.done = set()
            tokens = {k: new_token() for k in keys}
            _atomic_json(self.folder / "saves.json", tokens)
        return {id(save): tokens[k] for save, k in zip(saves, keys, strict=True)}

    # -- the tiles -------------------------------------------------------------------------------
    def select(self, items, infos) -> list:
        """The items still to compute; the others are :attr:`restored` (their join only accounts for them).

        When every tile is recorded, the first is computed again: the join needs one result (its kind,
        dtype and attributes).
        """
        done = {i for i in self.done if 0 <= i < len(infos)}
        if done and len(done) == len(infos):
            done.discard(min(done))
        keep = [item for item, info in zip(items, infos, strict=True) if info.index not in done]
        self.restored = [info for info in infos if info.index in done]
        return keep

    def allocate(self, shape, dtype):
        """The join's destination, kept in this part's folder: the first run's when tiles are recorded."""
        shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        path = self.folder / f"out{self._allocated or ''}.npy"
        self._allocated += 1
        if self.restored:
            try:
                out = np.load(path, mmap_mode="r+")
            except (OSError, ValueError) as exc:
                raise ResumeError(f"the partial run in {os.fspath(self.run.folder)!r} lost its volume {path.name!r} "
                                  f"({exc}); remove that folder or run without --resume") from None
            if out.shape != shape or out.dtype != dtype:
                raise ResumeError(f"the partial run in {os.fspath(self.run.folder)!r} holds a {out.dtype} volume of "
                                  f"{out.shape} where this run joins {dtype} of {shape}; remove that folder or run "
                                  "without --resume")
            return out
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    def check_kind(self, kind) -> None:
        """Refuse to join a kind that cannot take the restored tiles (records were made by a resumable kind)."""
        if self.restored and not getattr(kind, "resumable", False):
            raise PipelineError(f"the partial run in {os.fspath(self.run.folder)!r} recorded tiles of a part whose "
                                f"join ({kind.name}) cannot resume; remove that folder or run without --resume")

    def record(self, info, state=None) -> None:
        """Record that the join has tile ``info`` on disk (called after the join flushed it).

        ``state`` (picklable, or None) is what the join needs to restore the tile; it is on disk before the record.
        """
        if state is not None:
            path = self.folder / f"tile-{int(info.index)}.pkl"
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as f:
                pickle.dump(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        if self._log is None:
            self._log = open(self.folder / "done.log", "a")
        self._log.write(f"{int(info.index)}\n")
        self._log.flush()
        os.fsync(self._log.fileno())

    def finishing(self, kind, record=None) -> None:
        """The join of ``kind`` is about to commit what ``record`` names (see :meth:`finished`).

        Kept as pending: when the run stops between the commit and :meth:`finished`, the resumed run
        finds the output in place and its temporary file gone, and takes it as committed.
        """
        if record:
            _atomic_json(self.folder / "result.json", {**record, "kind": kind.name, "pending": True})

    def finished(self, kind, record=None) -> None:
        """The join of ``kind`` is done; ``record`` (JSON, or None) says what it committed, its ``outputs`` among it.

        The outputs are recorded as committed, and the record kept for :meth:`committed_result`.
        """
        self.close()
        if record:
            for path in record.get("outputs", ()):
                self.run.committed(path)
            _atomic_json(self.folder / "result.json", {**record, "kind": kind.name})

    def state(self, info):
        """The state :meth:`record` kept for tile ``info`` (None when there is none)."""
        try:
            with open(self.folder / f"tile-{int(info.index)}.pkl", "rb") as f:
                return pickle.load(f)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise ResumeError(f"the partial run in {os.fspath(self.run.folder)!r} holds an unreadable record of the "
                              f"tile at origin {info.origin} ({exc}); remove that folder or run without --resume") from None

    def forget(self) -> None:
        """Drop the tile records (the join is about to change what they describe)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.folder / "done.log")
        for path in self.folder.glob("tile-*.pkl"):
            path.unlink(missing_ok=True)
        fsync_file(self.folder)
        self.done = set()

    def close(self) -> None:
        """Stop recording (the join finished, or the run ended)."""
        if self._log is not None:
            self._log.close()
            self._log = None

    def committed_result(self, like):
        """The result of this part when an earlier run committed it (its outputs unchanged since), else None."""
        record = _read_json(self.folder / "result.json")
        if not isinstance(record, dict) or not all(self.run.is_committed(p) for p in record.get("outputs", ())):
            return None
        kind = join_kind_named(record.get("kind"))
        reopen = getattr(kind, "reopen", None)
        return reopen(record, like=like) if callable(reopen) else None
