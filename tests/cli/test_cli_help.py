"""What a user reads in ``--help``: literal brackets, readable metavars, shapes in z,y,x order."""

import re

import pytest

from florin.cli import main


def _help(capsys, *command):
    assert main([*command, "--help"]) == 0
    return capsys.readouterr().out


def test_segment_help_shows_class_tables_literally(capsys):
    out = _help(capsys, "segment")
    assert "[[class]] tables" in out


@pytest.mark.parametrize("command", [(), ("segment",), ("demo",), ("run",), ("preview",), ("info",)])
def test_flags_and_lists_have_readable_metavars(capsys, command):
    out = _help(capsys, *command)
    assert "<bool>" not in out
    assert "list[" not in out


def test_class_metavar_says_what_to_type(capsys):
    out = _help(capsys, "segment")
    assert re.search(r"--class NAME:PROP=LO\.\.HI", out)


@pytest.mark.parametrize("command, options", [("segment", ("--shape", "--tile", "--stride")), ("demo", ("--size",))])
def test_shape_options_say_zyx_with_an_example(capsys, command, options):
    out = " ".join(_help(capsys, command).split())  # unwrap help columns
    for option in options:
        text = out.split(f"{option} Z,Y,X", 1)[1].split(" --", 1)[0]
        assert "z,y,x order" in text and re.search(r"e\.g\. \d+,\d+,\d+", text), (option, text)


def test_no_arguments_prints_the_help_without_an_error_line(capsys):
    assert main([]) in (0, 2)
    captured = capsys.readouterr()
    assert "Usage: florin" in captured.out and "Commands:" in captured.out
    assert "florin: error" not in captured.err + captured.out
