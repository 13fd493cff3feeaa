"""Energy, row by row, straight from the catalog's figures.

The catalog (cost_models/mcus.toml, header): "Active energy = energy-weighted cycles /
clock_hz * voltage_v * run_current_ma", with voltage_v in V and run_current_ma in mA:
V x mA = mW, cycles / Hz = s, mW x s = mJ, the unit of every `energy_mj`.  All per-class
energy weights in cost_models/cortex_*.toml are 1.0 (checked below from the TOML files),
so energy-weighted cycles are cycles and every figure must be

    energy_mj = cycles / clock_hz * voltage_v * run_current_ma.

tests/test_energy.py checks the step's rows at rel=1e-3 (and totals): an error that
moves a fraction of a per mille between rows, or takes a row's energy from one sample
instead of the mean over the samples, passes there.  Here each row is checked as tightly
as the JSON allows: `cycles` is printed rounded to 0.1 cycle, so a row's energy may differ
from cycles / clock x V x I by at most 0.05 cycle's worth (plus float rounding).  V and I
are read from mcus.toml with tomllib, not through mcusim.catalog.
"""

from __future__ import annotations

import json

import pytest
import tomllib

from mcusim.catalog import COST_MODELS_DIR
from mcusim.cli import main

RAW = tomllib.loads((COST_MODELS_DIR / "mcus.toml").read_text())
ENTRY = {m["name"]: m for m in RAW["mcu"]}
STEP_MCUS = ("RP2040", "SAMD21G18", "nRF52840", "STM32F411", "STM32F746", "MIMXRT1062")


def figures(name: str, basis: str = "chip") -> tuple[float, float, int]:
    """(V, mA, clock_hz) of an MCU from mcus.toml."""
    m = ENTRY[name]
    if basis == "board":
        return m["energy"]["board_voltage_v"], m["energy"]["board_current_ma"], m["clock_hz"]
    return m["voltage_v"], m["run_current_ma"], m["clock_hz"]


def mj(cycles: float, name: str, basis: str = "chip") -> float:
    v, i, f = figures(name, basis)
    return cycles / f * v * i


def tolerance(name: str, basis: str = "chip") -> float:
    """A row's cycles are printed to 0.1: half of it, in mJ, plus float slack."""
    return mj(0.05, name, basis) * 1.0001 + 1e-15


def test_energy_weights_are_one():
    """The precondition of checking rows from cycles: every class weighs 1.0."""
    for core in ("m0plus", "m4", "m7"):
        raw = tomllib.loads((COST_MODELS_DIR / f"cortex_{core}.toml").read_text())
        assert float(raw.get("energy", {}).get("default", 1.0)) == 1.0, core
        for name, row in raw.get("class", {}).items():
            assert float(row.get("energy", 1.0)) == 1.0, (core, name)


def _step(capsys, *argv) -> dict:
    code = main(["step", "digits-cnn", *argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _check_report(d: dict, basis: str = "chip") -> None:
    name = d["mcu"]
    v, i, f = figures(name, basis)
    assert d["clock_hz"] == f
    assert (d["energy_basis"]["voltage_v"], d["energy_basis"]["run_current_ma"]) == (v, i)
    tol = tolerance(name, basis)
    rows = d["rows"]
    assert rows and any(r["layer"] == "(kernel calls)" for r in rows)
    for r in rows:
        want = mj(r["cycles"], name, basis)
        assert abs(r["energy_mj"] - want) <= tol, \
            f"{name} {r['layer']}/{r['phase']}: {r['energy_mj']!r} mJ, {r['cycles']} " \
            f"cycles give {want!r} mJ"
        assert r["latency_ms"] == pytest.approx(r["cycles"] / f * 1e3, abs=0.05 / f * 1e3)
        assert r["cycles_min"] <= r["cycles"] + 0.1 and r["cycles"] <= r["cycles_max"] + 0.1
    # the per-sample total: the rows' sum, and cycles x V x I
    assert d["energy_mj"] == pytest.approx(sum(r["energy_mj"] for r in rows), rel=1e-12)
    assert abs(d["energy_mj"] - mj(d["cycles"], name, basis)) <= tol
    # a mini-batch is batch_size samples' worth (each carrying 1/batch of the update)
    assert d["batch"]["energy_mj"] == pytest.approx(d["energy_mj"] * d["batch_size"],
                                                    rel=1e-12)
    assert abs(d["batch"]["energy_mj"] - mj(d["batch"]["cycles"], name, basis)) \
        <= tolerance(name, basis) * d["batch_size"] + 1e-12


def test_step_rows_chip_basis(capsys):
    argv = [a for m in STEP_MCUS for a in ("-m", m)]
    # batch 5: the per-batch update's share (update / 5) makes the update rows'
    # cycles fractional, so a row priced from rounded cycles would be seen too
    d = _step(capsys, *argv, "--batch", "5")
    reports = d["reports"]
    assert [r["mcu"] for r in reports] == list(STEP_MCUS)
    for rep in reports:
        assert rep["energy_basis"]["basis"] == "chip"
        _check_report(rep)
    # the rows differ between samples (min < max somewhere), so a row's energy taken
    # from one sample instead of the mean would be seen
    assert any(r["cycles_min"] < r["cycles_max"] for rep in reports for r in rep["rows"])
    assert any(r["cycles"] != int(r["cycles"]) for rep in reports for r in rep["rows"]
               if r["layer"] == "(kernel calls)")


def test_step_rows_board_basis(capsys):
    d = _step(capsys, "-m", "MIMXRT1062", "--batch", "5", "--energy", "board")
    assert d["energy_basis"]["basis"] == "board"
    _check_report(d, "board")


@pytest.mark.parametrize("board", ["RP2040", "nRF52840", "MIMXRT1062", "STM32F746"])
def test_run_energy(capsys, build_probes, board):
    """`mcusim run --json`: energy_mj = cycles / clock x V x I, exactly up to float
    rounding (the cycles are an integer here), and the catalog figures it names."""
    elf = build_probes(board)
    code = main(["run", elf, "-f", "sum6", "-m", board, "--args", "1,2,3,4,5,6", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    d = json.loads(out)
    v, i, f = figures(board)
    assert d["clock_hz"] == f
    assert (d["model"]["voltage_v"], d["model"]["run_current_ma"]) == (v, i)
    assert d["energy_weighted_cycles"] == d["cycles"]
    assert d["energy_mj"] == pytest.approx(d["cycles"] / f * v * i, rel=1e-12)
    assert d["latency_ms"] == pytest.approx(d["cycles"] / f * 1e3, rel=1e-12)
