import numpy as np
import pytest

import florin
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.errors import OperatorBindError, ParameterError


def _pipeline(out):
    return florin.Serial(
        florin.load(),
        florin.tile(shape=(6, 16, 16), stride=(6, 8, 8)),
        florin.Serial(thresholding.ndnt(shape=(5, 9, 9), threshold=0.3), morphology.binary_opening()),
        np.logical_not,
        florin.save(out, overwrite=True),
    )


def test_toml_round_trip_gives_same_pipeline_and_result(tmp_path, volume):
    pipe = _pipeline(tmp_path / "a.npy")
    text = pipe.to_toml()
    assert 'op = "thresholding.ndnt"' in text and 'executor = "serial"' in text
    again = florin.Pipeline.from_toml(text)
    assert again.to_toml() == text
    np.testing.assert_array_equal(pipe(volume).values, again(volume).values)


def test_toml_file_path(tmp_path, volume):
    path = tmp_path / "p.toml"
    path.write_text(_pipeline(tmp_path / "b.npy").to_toml())
    assert florin.Pipeline.from_toml(path)(volume).dtype == bool


@pytest.mark.parametrize(
    "text, error, match",
    [
        ('executor = "serial"\n[[steps]]\nop = "thresholding.ndnt"\nthresshold = 0.3\n', ParameterError,
         "did you mean `threshold`"),
        ('executor = "serial"\n[[steps]]\nop = "nope.op"\n', ParameterError, "unknown operator"),
        ('executor = "warp"\n[[steps]]\nop = "load"\n', ParameterError, "unknown executor"),
        ('executor = "serial"\nsteps = []\n', ParameterError, "non-empty"),
        ("this is = not toml =", ParameterError, "invalid TOML"),
    ],
)
def test_bad_pipeline_files(text, error, match):
    with pytest.raises(error, match=match):
        florin.Pipeline.from_toml(text)


def test_unregistered_operator_cannot_be_written():
    op = florin.florinate(lambda image: image)()
    with pytest.raises(florin.errors.PipelineError, match="not registered"):
        florin.Serial(op).to_toml()


def test_bind_error_is_type_error_in_python_api():
    with pytest.raises(OperatorBindError):
        thresholding.ndnt(thresshold=0.3)
