"""The command line: JSON-only stdout with --json, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mcusim.cli import main, parse_args_list
from mcusim.errors import UsageError


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["--version"])
    assert ei.value.code == 0
    assert "mcusim 0." in capsys.readouterr().out
    for cmd in ("demo", "mcus", "build", "run"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "--json" in capsys.readouterr().out


def test_mcus_json_is_pure_json(capsys):
    code, out, _err = run(capsys, "mcus", "--json")
    assert code == 0
    data = json.loads(out)
    names = {m["name"] for m in data["mcus"]}
    assert {"RP2040", "nRF52840", "MIMXRT1062"} <= names
    assert all(m["sources"] for m in data["mcus"])


def test_mcus_table(capsys):
    code, out, _ = run(capsys, "mcus", "--core", "m7")
    assert code == 0 and "MIMXRT1062" in out and "RP2040" not in out


def test_run_json_keys(capsys, build_probes):
    elf = build_probes("nRF52840")
    code, out, err = run(capsys, "run", elf, "--function", "sum6", "--mcu", "nrf52840",
                         "--args", "1,2,3,4,0x10,-1", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["return"] == 1 + 2 + 3 + 4 + 16 - 1
    assert data["instructions"] == 8
    assert data["stack_bytes"] == 0
    assert data["mcu"] == "nRF52840" and data["core"] == "m4"


def test_run_fault_is_one_line_exit_1(capsys, build_probes):
    elf = build_probes("RP2040")
    code, out, err = run(capsys, "run", elf, "-f", "read_word", "-m", "RP2040",
                         "--args", "0xA0000000", "--json")
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0
    assert "mcusim: error: read of unmapped memory at 0xa0000000" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["run", "{elf}", "-f", "sum6", "-m", "STM32F412"], "did you mean"),
    (["run", "{elf}", "-f", "sum7", "-m", "RP2040"], "no function 'sum7'"),
    (["run", "{elf}", "-f", "sum6", "-m", "RP2040", "--args", "1,zz"], "not an integer"),
    (["run", "{elf}", "-f", "sum6", "-m", "RP2040", "--args", ",".join("1" * 17)], "too many"),
    (["run", "/nonexistent.elf", "-f", "x", "-m", "RP2040"], "no such file"),
    (["run", "{elf}", "-f", "spin", "-m", "RP2040", "--budget", "1000"], "budget exhausted"),
    (["--catalog", "{bad}", "mcus"], "malformed TOML"),
])
def test_bad_input_one_line_nonzero(capsys, tmp_path, build_probes, argv, message):
    bad = tmp_path / "bad.toml"
    bad.write_text("schema = = 1")
    argv = [a.format(elf=build_probes("RP2040"), bad=bad) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code != 0 and out == ""
    assert message in err and err.strip().count("\n") == 0 and "Traceback" not in err


def test_parse_args_list():
    assert parse_args_list("1, 0x10,-2,0b11") == [1, 16, -2, 3]
    assert parse_args_list(None) == []
    with pytest.raises(UsageError):
        parse_args_list("0x1_0000_0000")


def test_console_script_entry_point():
    """The installed console script and `python -m mcusim.cli` both work."""
    r = subprocess.run([sys.executable, "-m", "mcusim.cli", "mcus", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)


def test_demo_json(capsys):
    code, out, err = run(capsys, "demo", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["bit_exact"] is True
    assert [r["mcu"] for r in data["runs"]] == ["RP2040", "nRF52840", "MIMXRT1062"]
    assert all(r["instructions"] > r["macs"] for r in data["runs"])
