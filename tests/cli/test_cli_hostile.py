"""Property-based bad CLI invocations (issue 14): random bad paths, options and files.

For every case: exactly one line on stderr (``florin: error: ...``), the exit
status README documents (2 for bad usage, parameters or a missing input file;
1 for a run that fails, e.g. on an input that cannot be read), no traceback,
no output or temporary file left behind, and every input byte for byte as it
was. The CLI runs in-process (``florin.cli.main``), with its own temporary
folder as ``tempfile``'s, and a bounded number of examples, so the suite takes
seconds.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from florin.cli import main

# FLORIN_HOSTILE_EXAMPLES=N runs more examples; FLORIN_HOSTILE_RANDOM=1 draws new ones instead of the fixed set.
SETTINGS = settings(max_examples=int(os.environ.get("FLORIN_HOSTILE_EXAMPLES", 80)), deadline=None,
                    derandomize=not os.environ.get("FLORIN_HOSTILE_RANDOM"),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

USAGE, FAILED = 2, 1


def _volume_bytes(shape=(4, 8, 8)):
    buffer = io.BytesIO()
    np.save(buffer, (np.random.default_rng(0).random(shape) * 255).astype(np.uint8))
    return buffer.getvalue()


def _tiff_bytes():
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, (np.random.default_rng(0).random((4, 32, 32)) * 255).astype(np.uint8))
    return buffer.getvalue()


GOOD_NPY = _volume_bytes()
GOOD_TIFF = _tiff_bytes()

# -- files whose content is bad: reading them fails the run (exit 1) ------------------------------------------
BAD_FILES = {
    "garbage.tif": b"\x00garbage" * 10,
    "empty.tif": b"",
    "cut.tif": GOOD_TIFF[: len(GOOD_TIFF) // 3],
    "header.tif": GOOD_TIFF[:8],
    "garbage.npy": b"\x93NUMPY garbage",
    "cut.npy": GOOD_NPY[:60],
    "text.npy": b"not an array at all\n",
    "garbage.h5": b"\x89HDF garbage",
}
MAGIC = {".tif": b"II*\x00", ".npy": b"\x93NUMPY\x01\x00", ".h5": b"\x89HDF\r\n\x1a\n", ".nc": b"CDF\x01"}
# -- inputs that are a bad argument: usage (exit 2) -------------------------------------------------------------
SHAPE_FILES = {
    "line.npy": _volume_bytes((10,)),
    "void.npy": _volume_bytes((0, 5, 5)),
}


def _case_files(root: Path) -> None:
    (root / "v.npy").write_bytes(GOOD_NPY)
    (root / "v.tif").write_bytes(GOOD_TIFF)
    for name, data in {**BAD_FILES, **SHAPE_FILES}.items():
        (root / name).write_bytes(data)
    (root / "x.xyz").write_bytes(b"abc")
    (root / "existing.tif").write_bytes(b"keep me")
    (root / "emptydir").mkdir()
    (root / "bad.toml").write_text("steps = [[[")
    (root / "unknown.toml").write_text('[[steps]]\nop = "no_such_op"\n')
    (root / "typo.toml").write_text('[[steps]]\nop = "thresholding.ndnt"\nthresshold = 0.3\n')
    (root / "raises.py").write_text("raise RuntimeError('configured badly')\n")
    (root / "syntax.py").write_text("pipeline = (\n")
    (root / "nopipe.py").write_text("x = 1\n")
    (root / "bad.pkl").write_bytes(b"garbage")


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


# -- the strategies -----------------------------------------------------------------------------------------------
names = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="_-"), min_size=1,
                max_size=12)
missing_inputs = st.builds(lambda n, ext: f"missing_{n}{ext}", names, st.sampled_from([".tif", ".npy", ".h5", ""]))


@st.composite
def segment_options(draw):
    """One bad option of ``florin segment`` (on a good input) and the exit status it must give."""
    bad = draw(st.sampled_from([
        (["--threshold", draw(st.sampled_from(["-5", "500", "101", "-0.5", "1e9"]))], USAGE),
        (["--threshold", draw(names.filter(lambda s: not _is_number(s)))], USAGE),
        (["--polarity", draw(names.filter(lambda s: s not in ("dark", "bright")))], USAGE),
        (["--shape", draw(st.sampled_from(["0,1,1", "a,b,c", "1,2", "-3", "2,2,2,2", ",", "1.5,2,2"]))], USAGE),
        (["--tile", draw(st.sampled_from(["0", "a", "2,4", "1,1,1,1", "-1,4,4"]))], USAGE),
        (["--tile", "2,4,4", "--stride", draw(st.sampled_from(["3,4,4", "0,4,4", "x"]))], USAGE),
        (["--stride", "2,4,4"], USAGE),
        (["--executor", draw(names.filter(lambda s: s.lower() not in _EXECUTORS))], USAGE),
        (["--workers", draw(st.sampled_from(["0", "-2", "many"]))], USAGE),
        (["--min-size", draw(st.sampled_from(["-1", "x", "1.5"]))], USAGE),
        (["--connectivity", draw(st.sampled_from(["0", "4", "9", "x"]))], USAGE),
        (["--class", draw(st.sampled_from([":area=1", "c:area=x..y", "c:volume=1..2", "cell area=1..9", "c:=3",
                                            "c:area", "area=1..2"]))], USAGE),
        (["--classes", draw(missing_inputs)], USAGE),
        (["--objects", draw(st.sampled_from(["o.txt", "o", "o.tif"]))], USAGE),
        (["--" + draw(names.map(str.lower).filter(lambda s: s not in _SEGMENT_OPTIONS))], USAGE),
        (["--format", draw(names.filter(lambda s: s.lower() not in _FORMATS))], USAGE),
    ]))
    return bad


_EXECUTORS = {"serial", "multithread", "multiprocess", "mpi", "dask", "chunked"}
_FORMATS = {"tiff", "npy", "hdf5", "netcdf", "zarr", "ome-zarr", "stack", "example-raw"}
_SEGMENT_OPTIONS = {"output", "shape", "threshold", "polarity", "tile", "stride", "executor", "workers", "min-size",
                    "connectivity", "class", "classes", "objects", "mask", "overwrite", "format", "help", "auto"}


def _is_number(text) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@st.composite
def invocations(draw):
    """``(argv, expected exit status)`` of one bad invocation (paths relative to the case folder)."""
    kind = draw(st.sampled_from(["missing", "bad-file", "random-file", "shape-file", "unknown-ext", "segment-option",
                                 "output", "preview", "run", "usage"]))
    command = draw(st.sampled_from(["info", "segment", "preview"]))
    out = {"info": [], "segment": ["-o", "out.tif"], "preview": ["-o", "out.png"]}[command]
    if kind == "missing":
        return [command, draw(missing_inputs), *out], USAGE
    if kind == "bad-file":
        return [command, draw(st.sampled_from(sorted(BAD_FILES))), *out], FAILED
    if kind == "random-file":  # random bytes, often behind a valid signature, written by the test itself
        ext, magic = draw(st.sampled_from(sorted(MAGIC.items())))
        data = (magic if draw(st.booleans()) else b"") + draw(st.binary(max_size=300))
        return [command, {"name": f"random{ext}", "data": data}, *out], FAILED
    if kind == "shape-file":
        if command == "info":
            command, out = "segment", ["-o", "out.tif"]
        return [command, draw(st.sampled_from(sorted(SHAPE_FILES))), *out], USAGE
    if kind == "unknown-ext":
        return [command, "x.xyz", *out], USAGE
    if kind == "segment-option":
        option, code = draw(segment_options())
        return ["segment", draw(st.sampled_from(["v.npy", "v.tif"])), "-o", "out.tif", *option], code
    if kind == "output":  # an existing output without --overwrite, the input, no format, two outputs on one path
        target = draw(st.sampled_from(["existing.tif", "v.npy", "out.xyz", "out", "emptydir", "out.tif"]))
        extra = draw(st.sampled_from([["--mask", "existing.tif"], ["--mask", "out.tif"], ["--objects", "v.npy"]]
                                     if target == "out.tif" else [[], ["--mask", "existing.tif"]]))
        return ["segment", "v.npy", "-o", target, *extra], USAGE
    if kind == "preview":
        options = draw(st.sampled_from([
            ["-o", "out.jpg"], ["-o", "existing.tif"], ["-o", "out.png", "--montage", "0"],
            ["-o", "out.png", "--labels", "missing.tif"], ["-o", "out.png", "--labels", "garbage.tif"],
        ]))
        return ["preview", "v.npy", *options], FAILED if "garbage.tif" in options else USAGE
    if kind == "run":
        pipeline, code = draw(st.sampled_from([
            ("bad.toml", USAGE), ("unknown.toml", USAGE), ("typo.toml", USAGE), ("missing.toml", USAGE),
            ("raises.py", FAILED), ("syntax.py", FAILED), ("nopipe.py", FAILED), ("bad.pkl", FAILED),
        ]))
        volume = draw(st.sampled_from(["v.npy", "missing.npy"]))
        return ["run", pipeline, volume, "-o", "out.npy"], USAGE if volume == "missing.npy" else code
    return draw(st.sampled_from([["nope"], ["segment"], ["segment", "v.npy"], ["info", "v.npy", "extra"],
                                 ["preview", "v.npy"], ["--frobnicate"]])), USAGE


def _run(argv, root: Path):
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    scratch = root / ".tmp-of-the-run"
    scratch.mkdir()
    old_tempdir = tempfile.tempdir
    try:
        os.chdir(root)
        tempfile.tempdir = str(scratch)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        tempfile.tempdir = old_tempdir
        os.chdir(cwd)
    leftovers = sorted(os.listdir(scratch))
    scratch.rmdir() if not leftovers else None
    return code, out.getvalue(), err.getvalue(), leftovers


@SETTINGS
@given(invocations())
def test_bad_invocations_fail_cleanly(case):
    argv, expected = case
    with tempfile.TemporaryDirectory(prefix="florin-hostile-") as folder:
        root = Path(folder)
        _case_files(root)
        for i, arg in enumerate(argv):
            if isinstance(arg, dict):  # a file the strategy made
                (root / arg["name"]).write_bytes(arg["data"])
                argv = [*argv[:i], arg["name"], *argv[i + 1:]]
        before = _snapshot(root)
        code, out, err, leftovers = _run(argv, root)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, (argv, err)
        assert lines[0].startswith("florin: error: "), (argv, err)
        assert "Traceback" not in err + out and "internal error" not in err, (argv, err)
        assert code == expected, (argv, code, err)
        assert not leftovers, (argv, leftovers)
        assert _snapshot(root) == before, (argv, sorted(set(_snapshot(root)) ^ set(before)))


@pytest.mark.parametrize("argv", [["segment", "cut.tif", "-o", "out.tif"], ["run", "raises.py", "v.npy"],
                                  ["segment", "v.npy", "-o", "out.tif", "--class", "cell area=1..9"]])
def test_bad_invocations_fail_cleanly_from_the_shell(tmp_path, argv):
    # The same from a real process: nothing printed at interpreter exit, the status as documented.
    import subprocess
    import sys

    _case_files(tmp_path)
    before = _snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "florin", *argv], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("florin: error: "), proc.stderr
    assert proc.returncode == (FAILED if argv[0] == "run" or "cut.tif" in argv else USAGE), proc.stderr
    assert _snapshot(tmp_path) == before
