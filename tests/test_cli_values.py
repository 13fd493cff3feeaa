"""Command-line values as a user types them, and JSON that is always JSON."""

from __future__ import annotations

import json
import math

import pytest

from mcusim import cli


def test_negative_args_need_no_equals_sign(build_probes, capsys):
    elf = build_probes("nRF52840")
    # sum6(a..f) = a + b + c + d + e + f: 6 values, two of them negative, e and f on the stack
    assert cli.main(["run", elf, "-f", "sum6", "-m", "nRF52840", "--args", "-5,-1,3,4,-7,100",
                     "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["args"] == [-5, -1, 3, 4, -7, 100]
    assert d["return_signed"] == -5 - 1 + 3 + 4 - 7 + 100
    # a single negative value and the = form still work
    assert cli.main(["run", elf, "-f", "sum6", "-m", "nRF52840", "--args=-1,0,0,0,0,0",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["return_signed"] == -1


@pytest.mark.parametrize("argv, joined", [
    (["--args", "-5,-1"], ["--args=-5,-1"]),
    (["--args", "-0x10, 2"], ["--args=-0x10, 2"]),
    (["--args", "--json"], ["--args", "--json"]),   # an option stays an option
    (["--args", "1,-2"], ["--args", "1,-2"]),       # not starting with '-': argparse's job
])
def test_join_negative_values(argv, joined):
    assert cli._join_negative_values(argv) == joined


def test_json_has_no_nan_or_infinity(capsys):
    cli.emit_json({"loss": float("nan"), "rows": [1.5, float("inf"), {"x": -math.inf}],
                   "n": 3})
    text = capsys.readouterr().out
    assert json.loads(text) == {"loss": None, "rows": [1.5, None, {"x": None}], "n": 3}
    assert "NaN" not in text and "Infinity" not in text


@pytest.mark.parametrize("argv, words", [
    (["train", "digits-cnn", "-d", "digits", "-m", "nRF52840", "--baseline-lr", "nan"],
     "must be a finite number"),
    (["train", "digits-cnn", "-d", "digits", "-m", "nRF52840", "--lr", "inf"],
     "must be a finite number"),
    (["step", "digits-cnn", "-m", "RP2040", "--lambda-min", "nan"], "must be a finite number"),
    (["step"], "the following arguments are required"),
    (["stepp"], "invalid choice"),
    (["run", "x.elf", "-f", "f", "-m", "RP2040", "--budget", "1e400"], "not an integer"),
    (["run", "x.elf", "-f", "f", "-m", "RP2040", "--budget", "1e13"], "instructions"),
    (["step", "digits-cnn", "-m", "RP2040", "--batch", "1e18"], "samples per mini-batch"),
    (["step", "digits-cnn", "-m", "RP2040", "--seed", "-1"], "must be 0 .. 4294967295"),
    (["verify", "digits-cnn", "-m", "RP2040", "--seed", str(2**32)], "must be 0 .. 4294967295"),
    (["train", "digits-cnn", "-d", "digits", "-m", "RP2040", "--epochs", "1.5e0"],
     "not an integer"),
])
def test_bad_command_lines_are_one_line_and_exit_2(argv, words, capsys):
    with pytest.raises(SystemExit) as ei:
        cli.main(argv)
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert words in err and "--help" in err


@pytest.mark.parametrize("option, value, ok", [
    ("--lr", "0", False), ("--lr", "-0.01", False), ("--lr", "1e39", False),
    ("--lr", "3.4e38", True), ("--lr", "0.01", True),
    ("--baseline-lr", "0", True), ("--baseline-lr", "-1", False),
    ("--lr-final", "0", True), ("--lr-final", "-0.1", False), ("--lr-final", "1e39", False),
])
def test_learning_rates_are_positive_float32(option, value, ok):
    """A learning rate is kept in a float32 by the kernels: > 0 and at most 3.4028e38 (0
    means "the model's own" for --baseline-lr and "constant" for --lr-final)."""
    parser = cli.build_parser()
    argv = ["train", "digits-cnn", "-d", "digits", "--mcu", "RP2040", f"{option}={value}"]
    if ok:
        args = parser.parse_args(argv)
        assert getattr(args, option[2:].replace("-", "_")) == float(value)
    else:
        with pytest.raises(SystemExit) as ei:
            parser.parse_args(argv)
        assert ei.value.code == 2


def test_error_messages_are_one_line(capsys, tmp_path):
    """A path holding a line break (a legal file name) stays on the error's one line."""
    bad = tmp_path / "two\nlines.toml"
    bad.write_text("not toml [")
    assert cli.main(["budget", str(bad), "--mcu", "RP2040"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mcusim: error:"), err
    assert cli._one_line("a\nb\r\n c\n") == "a b c"
