"""The command line: JSON-only stdout with --json, one-line errors, exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

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


# --------------------------------------------------------------------------- --catalog FILE

def _user_catalog(capsys, tmp_path, name="my.toml", mcu="MyChip", clock="168_000_000"):
    code, out, err = run(capsys, "mcus", "--template")
    assert code == 0 and err == ""
    p = tmp_path / name
    p.write_text(out.replace('name = "MyChip"', f'name = "{mcu}"')
                 .replace("clock_hz = 168_000_000", f"clock_hz = {clock}"))
    return str(p)


@pytest.mark.parametrize("where", ["before", "after", "both"])
def test_catalog_before_and_after_the_command(capsys, tmp_path, where):
    a = _user_catalog(capsys, tmp_path, "a.toml", "ChipA")
    b = _user_catalog(capsys, tmp_path, "b.toml", "ChipB")
    argv = {"before": ["--catalog", a, "mcus", "--json"],
            "after": ["mcus", "--json", "--catalog", a],
            "both": ["--catalog", a, "mcus", "--catalog", b, "--json"]}[where]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    mcus = {m["name"]: m for m in json.loads(out)["mcus"]}
    assert {"RP2040", "nRF52840", "MIMXRT1062", "ChipA"} <= set(mcus)  # extends the built-ins
    assert ("ChipB" in mcus) == (where == "both")
    assert mcus["ChipA"]["user_file"] == a and mcus["nRF52840"]["user_file"] is None
    assert mcus["ChipA"]["sources"]["run_current_ma"] == f"user-provided ({a})"


def test_later_catalog_wins_and_override_warns(capsys, tmp_path):
    a = _user_catalog(capsys, tmp_path, "a.toml", "nRF52840", clock="100_000_000")
    b = _user_catalog(capsys, tmp_path, "b.toml", "nRF52840", clock="120_000_000")
    code, out, err = run(capsys, "--catalog", a, "mcus", "--json", "--catalog", b)
    assert code == 0, err
    nrf = [m for m in json.loads(out)["mcus"] if m["name"] == "nRF52840"]
    assert len(nrf) == 1 and nrf[0]["clock_hz"] == 120_000_000
    lines = err.strip().splitlines()
    assert f"mcusim: warning: {a}: MCU 'nRF52840' overrides the built-in entry" in lines[0]
    assert f"mcusim: warning: {b}: MCU 'nRF52840' overrides the entry from {a}" in lines[1]
    assert len(lines) == 2


def test_mcus_table_marks_user_entries(capsys, tmp_path):
    a = _user_catalog(capsys, tmp_path)
    code, out, _ = run(capsys, "mcus", "--core", "m4", "--catalog", a)
    assert code == 0
    assert "MyChip (user)" in out and "nRF52840 (user)" not in out and "nRF52840" in out
    assert f"provided by you, in {a}" in out


def test_template_round_trip_budget(capsys, tmp_path):
    p = _user_catalog(capsys, tmp_path)
    code, out, err = run(capsys, "budget", "digits-cnn", "--mcu", "MyChip", "--catalog", p,
                         "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["mcu"] == "MyChip" and data["fits"] is True


@pytest.mark.parametrize("what, message", [
    ("devnull", "/dev/null: is a character device, not a catalog TOML file"),
    ("directory", "is a directory, not a catalog TOML file"),
    ("missing", "catalog file not found"),
    ("three", "fields 'clock_hz', 'voltage_v', 'data_region': are missing"),
    ("escape", "MCU name may only use letters, digits"),
])
def test_bad_catalog_is_one_line_exit_2(capsys, tmp_path, what, message):
    path = {"devnull": "/dev/null", "directory": str(tmp_path),
            "missing": str(tmp_path / "nope.toml")}.get(what)
    if path is None:
        path = _user_catalog(capsys, tmp_path, mcu="../../ESCAPED" if what == "escape"
                             else "MyChip")
        if what == "three":
            text = Path(path).read_text()
            for field in ("clock_hz", "voltage_v", "data_region"):
                text = re.sub(rf"^{field}\s*=.*\n", "", text, count=1, flags=re.M)
            Path(path).write_text(text)
    for argv in (["--catalog", path, "mcus"], ["budget", "digits-cnn", "-m", "MyChip",
                                               "--catalog", path]):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == ""
        assert err.strip().count("\n") == 0 and "Traceback" not in err
        assert err.startswith("mcusim: error: ") and message in err, err


# --------------------------------------------------------------------------- what people read


def _cli_at(monkeypatch, width: int = 80):
    """Route the CLI's stdout console into a recording Console of `width` columns."""
    import io

    from rich.console import Console

    import mcusim.cli as cli

    con = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    monkeypatch.setattr(cli, "stdout", con)
    return con


def _readable(text: str, whole=(), width: int = 80) -> None:
    text = text.replace("\u00a0", " ")  # no-break spaces keep names on one line
    assert "…" not in text, text
    assert all(len(line) <= width for line in text.splitlines()), text
    for s in whole:
        assert any(s in line for line in text.splitlines()), f"{s!r} not whole in\n{text}"


def test_run_shows_r0_unsigned_like_json(capsys, monkeypatch, build_probes):
    elf = build_probes("RP2040")
    code, out, err = run(capsys, "run", elf, "-f", "sum6", "-m", "RP2040",
                         "--args", "0,0,0,0,0,-5", "--json")
    assert code == 0, err
    assert json.loads(out)["return"] == 4294967291
    con = _cli_at(monkeypatch)
    code, _out, err = run(capsys, "run", elf, "-f", "sum6", "-m", "RP2040",
                          "--args", "0,0,0,0,0,-5")
    assert code == 0, err
    text = con.export_text()
    _readable(text, ["4294967291 (-5 as int32), 0xfffffffb", "RP2040"])
    con = _cli_at(monkeypatch)
    assert run(capsys, "run", elf, "-f", "sum6", "-m", "RP2040", "--args", "1,2")[0] == 0
    text = con.export_text()
    assert "3, 0x00000003" in text and "as int32" not in text


def test_cli_tables_readable_at_80_columns(capsys, monkeypatch, tmp_path):
    from mcusim.catalog import load_catalog
    from mcusim.profile import profile_step
    from tests.test_render import _subscripted

    boards = ("RP2040", "nRF52840", "MIMXRT1062")
    # what the profile shows, from the same profile through the library: a hot line with a
    # subscript, the hottest blocks' function
    prof, _ = profile_step("digits-cnn", load_catalog().mcu("RP2040"))
    sub, hot_fn = _subscripted(prof, 30), prof.top_blocks(1)[0].function
    assert sub
    for argv, whole in (
            (["mcus"], ["STM32H743", "MIMXRT1062", "1,056 KB", "7,936 KB"]),
            (["cost-model", "m7"], ["table_branch", "ceil(N/2)"]),
            (["step", "digits-cnn", *[a for b in boards for a in ("--mcu", b)]],
             [*boards, "cycles / sample", _tc()]),
            (["verify", "digits-cnn", "--mcu", "RP2040", "--steps", "2"],
             ["bit-exact", f"built with {_tc()}"]),
            (["train", "digits-cnn", "--dataset", _small_digits(tmp_path), "--mcu",
              "nRF52840", "--epochs", "1"], ["float32", "host time", _tc()]),
            (["budget", "digits-cnn", *[a for b in boards for a in ("--mcu", b)]],
             [*boards, "fits"]),
            (["profile", "digits-cnn", "--mcu", "RP2040", "--by", "line", "--top", "30"],
             [sub]),
            (["profile", "digits-cnn", "--mcu", "RP2040", "--by", "block", "--top", "5"],
             [hot_fn, "[r"])):
        con = _cli_at(monkeypatch)
        code, _out, err = run(capsys, *argv)
        assert code == 0, (argv, err)
        _readable(con.export_text(), whole)


def _tc() -> str:
    from mcusim.toolchain import find_toolchain

    tc = find_toolchain()
    return f"{tc.kind} {tc.version}"


def test_errors_and_names_are_not_markup(capsys):
    code, out, err = run(capsys, "step", "net[i][red]", "--mcu", "RP2040")
    assert code == 2 and out == ""
    assert "net[i][red]" in err and err.strip().count("\n") == 0


def test_plain_progress_is_rate_limited():
    import io

    from rich.console import Console

    from mcusim.cli import PlainProgress

    now = [0.0]
    con = Console(file=io.StringIO(), width=200, color_system=None)
    p = PlainProgress(con, interval=5.0, clock=lambda: now[0])
    for k in range(40):  # 10 s of the same kind of message, every 0.25 s
        p(f"epoch 1: train {k}/40 samples")
        now[0] += 0.25
    p("link kernels for RP2040")  # a new kind: shown at once
    lines = con.file.getvalue().splitlines()
    assert [x.split("] ", 1)[1] for x in lines] == [
        "epoch 1: train 0/40 samples", "epoch 1: train 20/40 samples",
        "link kernels for RP2040"]
    assert all(x.startswith("mcusim: [") for x in lines)
    assert "\r" not in con.file.getvalue() and "\x1b" not in con.file.getvalue()


def _small_digits(tmp_path) -> str:
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    path = tmp_path / "small.npz"
    np.savez(path, x_train=x[:64], y_train=d.target[:64], x_test=x[64:96],
             y_test=d.target[64:96])
    return str(path)


def test_json_with_piped_stderr_still_reports_progress(tmp_path):
    """stdout piped and --json: stdout is only JSON; stderr (not a terminal) carries plain
    progress lines and train's per-epoch lines, labelled host time."""
    data = _small_digits(tmp_path)
    r = subprocess.run([sys.executable, "-m", "mcusim.cli", "train", "digits-cnn", "--dataset",
                        data, "--mcu", "nRF52840", "--epochs", "2", "--no-baseline", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)  # pure JSON
    assert len(d["epochs"]) == 2
    err = r.stderr.splitlines()
    for e in (1, 2):
        line = next(x for x in err if x.startswith(f"epoch {e}: loss "))
        assert "on nRF52840:" in line and "host time" in line and "simulated" not in line
    assert any(x.startswith("mcusim: [") and "epoch 1: train" in x for x in err), r.stderr
    assert "\x1b" not in r.stderr and "\r" not in r.stderr  # no spinner, no colours


def test_cold_build_and_step_report_progress_on_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MCUSIM_CACHE_DIR", str(tmp_path / "cache"))
    code, out, err = run(capsys, "build", "--core", "m4", "--mcu", "nRF52840", "--json")
    assert code == 0, err
    json.loads(out)
    assert re.search(r"^mcusim: \[ *\d+ s\] compile \S+\.c for Cortex-M4", err, re.M), err
    assert re.search(r"^mcusim: \[ *\d+ s\] link kernels for nRF52840", err, re.M), err
    code, out, err = run(capsys, "step", "digits-cnn", "--mcu", "nRF52840", "--json")
    assert code == 0, err
    assert json.loads(out)["mcu"] == "nRF52840"
    assert "one training step on nRF52840" in err
