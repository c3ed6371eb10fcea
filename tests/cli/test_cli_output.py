"""Output tidiness: the formats table, pipeline TOML and the timing summary."""

import logging
import sys

import florin
import florin.thresholding as thresholding
from florin.cli import main
from florin.cli.segment import _report_timings
from florin.registry import get_registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_formats_table_stays_aligned_with_plugin_formats(capsys):
    formats = get_registry().formats
    assert "example-raw" in formats, "the florin-example plugin registers example-raw"
    assert main(["formats"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines}
    for name, fmt in formats.items():
        if fmt.extensions:
            assert rows[name].index(fmt.extensions[0]) == rows["tiff"].index(".tif"), name
            assert rows[name].index(fmt.description) == rows["tiff"].index(formats["tiff"].description), name


def test_to_toml_writes_short_arrays_inline():
    pipeline = florin.Serial(florin.tile(shape=(10, 64, 64), stride=(10, 32, 32)), thresholding.ndnt(shape=(10, 64, 64)))
    text = pipeline.to_toml()
    assert "shape = [10, 64, 64]" in text and "stride = [10, 32, 32]" in text
    assert tomllib.loads(text)["steps"][0]["shape"] == [10, 64, 64]
    assert florin.Pipeline.from_toml(text).to_toml() == text


def test_to_toml_keeps_long_or_bracketed_arrays_valid():
    import tomli_w

    from florin.pipeline_file import _inline_short_arrays

    data = {"long": ["x" * 50, "y" * 50], "tricky": ["a]b", "c,d"], "nested": [[1, 2], [3, 4]]}
    text = _inline_short_arrays(tomli_w.dumps(data))
    assert tomllib.loads(text) == data
    assert "[1, 2]" in text and '"x' not in text.split("long = ")[1].split("\n")[0]


def test_timing_summary_lines_up_its_numbers(caplog):
    with caplog.at_level(logging.INFO, logger="florin"):
        _report_timings({"load": 0.004, "thresholding.ndnt": 1234.5, "save": 12.25, "label": 123456.0})
    lines = [r.getMessage() for r in caplog.records][1:]
    assert len(lines) == 4
    assert len({line.rindex(".") for line in lines}) == 1, lines  # decimal points in one column
    assert len({len(line) for line in lines}) == 1, lines
