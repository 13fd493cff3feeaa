"""Energy figures: one basis (chip supply) for the whole catalog, printed with every energy
figure; board-level figures only behind `--energy board`.

Expected energies are computed here from mcus.toml read with tomllib (not through
mcusim.catalog) and the reports' cycles: energy = cycles / clock x V x I.  All energy
weights of the cost tables are 1.0 (tests/test_timing.py), so energy-weighted cycles equal
cycles."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tomllib

from mcusim.catalog import COST_MODELS_DIR, ENERGY_BASIS_CHIP, load_catalog
from mcusim.cli import main
from mcusim.errors import CatalogError, UsageError

MCUS = COST_MODELS_DIR / "mcus.toml"
RAW = tomllib.loads(MCUS.read_text())
ENTRY = {m["name"]: m for m in RAW["mcu"]}


def figures(name: str, basis: str = "chip") -> tuple[float, float]:
    """(V, mA) of an MCU straight from mcus.toml."""
    m = ENTRY[name]
    if basis == "board":
        return m["energy"]["board_voltage_v"], m["energy"]["board_current_ma"]
    return m["voltage_v"], m["run_current_ma"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- the catalog


def test_catalog_states_one_basis():
    assert RAW["energy_basis"] == ENERGY_BASIS_CHIP
    assert ENERGY_BASIS_CHIP.startswith("chip supply")


def test_every_mcu_has_a_basis_and_sources(catalog):
    assert set(catalog.mcus) == set(ENTRY)
    for m in catalog.mcus.values():
        assert m.energy_basis == "chip"
        assert m.supply.strip() and m.energy_conditions.strip(), m.name
        assert m.energy_label.startswith(f"chip supply ({m.supply})"), m.name
        for key in ("voltage_v", "run_current_ma"):
            assert m.sources[key].strip(), (m.name, key)
        if m.has_board_energy:
            assert m.board_supply.strip(), m.name
            for key in ("board_voltage_v", "board_current_ma"):
                assert m.sources[key].strip(), (m.name, key)
        # an unconfirmed V or I shows in the label printed with every figure
        assert m.energy_label.endswith(", unconfirmed") == bool(m.energy_unconfirmed)
        info = m.to_dict()["energy_basis"]
        assert info["basis"] == "chip" and info["definition"] == ENERGY_BASIS_CHIP
        assert (info["voltage_v"], info["run_current_ma"]) == figures(m.name)


def test_chip_figures_are_chip_supplies_not_core_rails_or_board_inputs(catalog):
    # The chip basis is the MCU's own supply (1.7-3.6 V for all these parts): neither a
    # 1.1 V core rail behind an on-chip regulator nor a 5 V USB input.
    for m in catalog.mcus.values():
        assert 1.7 <= m.voltage_v <= 3.6, (m.name, m.voltage_v)
    rp, rt = catalog.mcu("RP2040"), catalog.mcu("MIMXRT1062")
    assert rp.voltage_v == 3.3 and "VREG_VIN" in rp.supply
    assert rt.voltage_v == 3.3 and "DCDC_IN" in rt.supply
    assert rt.is_unconfirmed("run_current_ma")  # an upper bound, not a datasheet figure


def test_sources_cite_no_document_outside_the_repository(catalog):
    for key, text in catalog.source_texts.items():
        assert "cortex-m-timing" not in text and "shared docs" not in text, key
    assert "README" not in catalog.source_texts["S4"]
    for m in catalog.mcus.values():
        for key in ("voltage_v", "run_current_ma"):
            assert "cortex-m-timing" not in m.sources[key]


def test_board_figures_only_on_request(catalog):
    rt = catalog.mcu("MIMXRT1062")
    board = rt.with_energy("board")
    assert (board.voltage_v, board.run_current_ma) == figures("MIMXRT1062", "board")
    assert board.energy_basis == "board"
    assert board.energy_label.startswith("board-level (") and "regulators" in board.energy_label
    assert board.to_dict()["energy_basis"]["basis"] == "board"
    assert board.is_unconfirmed("voltage_v")  # the board input rail is not stated (S19)
    assert rt.with_energy("chip") is rt
    assert (rt.voltage_v, rt.run_current_ma) == figures("MIMXRT1062")  # unchanged
    with pytest.raises(UsageError, match="RP2040 has no board-level energy figures"):
        catalog.mcu("RP2040").with_energy("board")
    with pytest.raises(UsageError, match="unknown basis"):
        rt.with_energy("wall")


# --------------------------------------------------------------------------- validation


def _edit_entry(tmp_path: Path, name: str, edit) -> Path:
    text = MCUS.read_text()
    blocks = text.split("[[mcu]]")
    idx = next(i for i, b in enumerate(blocks) if re.search(rf'^name = "{name}"$', b, re.M))
    blocks[idx] = edit(blocks[idx])
    p = tmp_path / "mcus.toml"
    p.write_text("[[mcu]]".join(blocks))
    return p


@pytest.mark.parametrize("name, pattern, repl, message", [
    ("SAMD21G18", r"\[mcu\.energy\]\nsupply = .*\nconditions = .*\n", "",
     r"field 'energy': is missing"),
    ("SAMD21G18", r"^supply = .*\n", "", r"energy: field 'supply': is missing"),
    ("MIMXRT1062", r"^board_current_ma = 100\.0\n", "",
     r"field 'board_current_ma': is missing: board-level figures come as a pair"),
    ("MIMXRT1062", r"^board_supply = .*\n", "", r"field 'board_supply': is missing"),
    ("MIMXRT1062", r"^board_current_ma = \".*\"\n", "",
     r"sources.board_current_ma': is missing"),
    ("MIMXRT1062", r"^board_voltage_v = 5\.0$", "board_voltage_v = 0",
     r"field 'board_voltage_v': must be a finite number > 0"),
    ("SAMD21G18", r"^supply = .*$", 'supply = "VDDIN 3.3 V"\nsuply = 1',
     r"'suply': is not a known field"),
])
def test_energy_table_is_validated(tmp_path, name, pattern, repl, message):
    def edit(block: str) -> str:
        out, n = re.subn(pattern, repl, block, count=1, flags=re.M)
        assert n == 1, pattern
        return out
    with pytest.raises(CatalogError) as ei:
        load_catalog(_edit_entry(tmp_path, name, edit))
    assert re.search(message, str(ei.value)), str(ei.value)


def test_catalog_without_basis_is_rejected(tmp_path):
    p = tmp_path / "mcus.toml"
    p.write_text(re.sub(r"^energy_basis = .*\n", "", MCUS.read_text(), count=1, flags=re.M))
    with pytest.raises(CatalogError, match="field 'energy_basis': is missing"):
        load_catalog(p)


# --------------------------------------------------------------------------- mcusim run


@pytest.mark.parametrize("board", ("RP2040", "nRF52840", "MIMXRT1062"))
def test_run_energy_is_cycles_times_chip_v_i(capsys, build_probes, board):
    elf = build_probes(board)
    code, out, err = run(capsys, "run", elf, "-f", "sum6", "-m", board,
                         "--args", "1,2,3,4,5,6", "--json")
    assert code == 0, err
    d = json.loads(out)
    v, i = figures(board)
    assert d["energy_weighted_cycles"] == pytest.approx(d["cycles"])
    assert d["energy_mj"] == pytest.approx(d["cycles"] / d["clock_hz"] * v * i, rel=1e-12)
    basis = d["energy_basis"]
    assert basis["basis"] == "chip" and basis["label"].startswith("chip supply (")
    assert (basis["voltage_v"], basis["run_current_ma"]) == (v, i)
    assert d["model"]["energy_basis"] == basis
    assert (d["model"]["voltage_v"], d["model"]["run_current_ma"]) == (v, i)  # kept keys
    code, out, _ = run(capsys, "run", elf, "-f", "sum6", "-m", board, "--args", "1,2,3,4,5,6")
    assert code == 0 and "chip supply (" in " ".join(out.split())


def test_run_energy_board(capsys, build_probes):
    elf = build_probes("MIMXRT1062")
    code, out, err = run(capsys, "run", elf, "-f", "sum6", "-m", "MIMXRT1062",
                         "--args", "1,2,3,4,5,6", "--json", "--energy", "board")
    assert code == 0, err
    d = json.loads(out)
    v, i = figures("MIMXRT1062", "board")
    assert d["energy_mj"] == pytest.approx(d["cycles"] / d["clock_hz"] * v * i, rel=1e-12)
    assert d["energy_basis"]["basis"] == "board"
    assert d["energy_basis"]["label"].startswith("board-level (")
    code, out, _ = run(capsys, "run", elf, "-f", "sum6", "-m", "MIMXRT1062",
                       "--args", "1,2,3,4,5,6", "--energy", "board")
    assert code == 0 and "board-level (" in " ".join(out.split())


def test_board_energy_without_board_figures_is_one_line_exit_2(capsys, build_probes):
    elf = build_probes("RP2040")
    code, out, err = run(capsys, "run", elf, "-f", "sum6", "-m", "RP2040", "--json",
                         "--energy", "board")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "no board-level energy figures" in err
    code, out, err = run(capsys, "step", "digits-cnn", "-m", "MIMXRT1062", "-m", "RP2040",
                         "--energy", "board", "--json")
    assert code == 2 and out == "" and "RP2040" in err and err.strip().count("\n") == 0


# --------------------------------------------------------------------------- mcusim step


def _check_step(d: dict, name: str, basis: str) -> None:
    v, i = figures(name, basis)
    clock = d["clock_hz"]
    assert d["energy_basis"]["basis"] == basis
    assert (d["energy_basis"]["voltage_v"], d["energy_basis"]["run_current_ma"]) == (v, i)
    assert d["energy_mj"] == pytest.approx(d["cycles"] / clock * v * i, rel=1e-6)
    for row in d["rows"]:  # each layer x phase row, kernel calls and driver overhead
        assert row["energy_mj"] == pytest.approx(row["cycles"] / clock * v * i, rel=1e-3,
                                                 abs=1e-12), row
    assert d["batch"]["energy_mj"] == pytest.approx(d["energy_mj"] * d["batch_size"])


def test_step_energy_rows_and_basis(capsys):
    code, out, err = run(capsys, "step", "digits-cnn", "-m", "nRF52840", "-m", "MIMXRT1062",
                         "--batch", "2", "--json")
    assert code == 0, err
    reports = json.loads(out)["reports"]
    for d in reports:
        _check_step(d, d["mcu"], "chip")
    code, out, err = run(capsys, "step", "digits-cnn", "-m", "MIMXRT1062", "--batch", "2",
                         "--json", "--energy", "board")
    assert code == 0, err
    d = json.loads(out)
    _check_step(d, "MIMXRT1062", "board")
    # the board figure is 5 V x 100 mA against the chip's 3.3 V x 100 mA
    chip = next(r for r in reports if r["mcu"] == "MIMXRT1062")
    assert d["energy_mj"] / chip["energy_mj"] == pytest.approx(5.0 / 3.3, rel=1e-6)


def test_step_table_prints_the_basis(capsys):
    code, out, err = run(capsys, "step", "digits-cnn", "-m", "nRF52840", "--batch", "2")
    assert code == 0, err
    text = " ".join(out.split())
    assert "energy basis" in text and "chip*" in text
    assert "nRF52840: chip supply (VDD 3.0 V, DC/DC on), unconfirmed" in text


def test_mcus_prints_the_basis(capsys):
    code, out, _ = run(capsys, "mcus", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["energy_basis"] == ENERGY_BASIS_CHIP
    assert all(m["energy_basis"]["basis"] == "chip" for m in d["mcus"])
    code, out, _ = run(capsys, "mcus")
    assert "energy basis chip supply" in " ".join(out.split())


# --------------------------------------------------------------------------- mcusim train


def test_train_device_energy_on_board_basis(capsys):
    code, out, err = run(capsys, "train", "digits-cnn", "--dataset", "digits", "-m",
                         "MIMXRT1062", "--epochs", "1", "--no-baseline", "--json",
                         "--energy", "board")
    assert code == 0, err
    d = json.loads(out)
    v, i = figures("MIMXRT1062", "board")
    assert d["energy_basis"]["basis"] == "board"
    assert d["energy_basis"]["label"].startswith("board-level (")
    e = d["epochs"][0]
    # device energy = device time x V x I (kernels and the modelled driver-call overhead)
    assert e["device_mj"] == pytest.approx(e["device_ms"] / 1e3 * v * i, rel=1e-9)
