"""The training-step analyzer: totals, rows, memory, budgets, the CLI and the API."""

from __future__ import annotations

import json

import pytest

import mcusim
from mcusim.analyze import OVERHEAD_LAYER, call_overhead, simulate_step
from mcusim.cli import main
from mcusim.model.zoo import load_model
from mcusim.timing.table import load_table

BOARDS = ("RP2040", "nRF52840", "MIMXRT1062")
_cache: dict[tuple, mcusim.StepReport] = {}


def step(model, mcu, **train):
    key = (model, mcu, tuple(sorted(train.items())))
    if key not in _cache:
        spec = load_model(model).with_train(**train) if train else model
        _cache[key] = simulate_step(spec, mcu)
    return _cache[key]


@pytest.mark.parametrize("board", BOARDS)
def test_totals_are_consistent(catalog, board):
    r = step("digits-cnn", board)
    mcu = catalog.mcu(board)
    assert r.fits and r.samples == r.batch_size == 8
    assert r.latency_ms * mcu.clock_hz / 1e3 == pytest.approx(r.cycles)
    assert sum(row.cycles for row in r.rows) == pytest.approx(r.cycles)
    # all class energy weights are 1.0: energy = time x V x I_run
    assert r.energy_mj == pytest.approx(r.cycles / mcu.clock_hz * mcu.voltage_v
                                        * mcu.run_current_ma, rel=1e-9)
    assert r.batch_cycles == pytest.approx(sum(r.sample_cycles) + r.update_cycles)
    assert r.cycles == pytest.approx(sum(r.sample_cycles) / r.samples
                                     + r.update_cycles / r.batch_size)
    assert min(r.sample_cycles) <= max(r.sample_cycles)
    assert {row.phase for row in r.rows} == {"forward", "loss", "backward", "update"}


def test_cores_rank_as_expected():
    c = {b: step("digits-cnn", b).cycles for b in BOARDS}
    assert c["RP2040"] > c["nRF52840"] > c["MIMXRT1062"]


def _backward(r):
    return sum(row.cycles for row in r.rows if row.phase == "backward")


def test_lower_lambda_lowers_backward_cycles():
    full = step("digits-cnn", "nRF52840", lambda_min=1.0, lambda_max=1.0)
    part = step("digits-cnn", "nRF52840", lambda_min=0.1, lambda_max=0.1)
    assert _backward(part) < 0.8 * _backward(full)
    # data-dependent: the report spreads over samples
    assert any(row.cycles_max > row.cycles_min for row in part.rows if row.phase == "backward")


def test_frozen_layers_cost_nothing_backward():
    spec = load_model("mbednet-tail")
    frozen = {L.name for i, L in enumerate(spec.layers) if i < spec.first_trainable}
    r = step("mbednet-tail", "MIMXRT1062")
    assert r.fits
    for row in r.rows:
        if row.phase in ("backward", "update"):
            assert row.layer not in frozen, row
    assert any(row.layer in frozen for row in r.rows if row.phase == "forward")


def test_planned_arena_is_the_measured_one():
    for model, board in (("digits-cnn", "RP2040"), ("emnist-cnn", "MIMXRT1062"),
                         ("mbednet-tail", "MIMXRT1062")):
        r = step(model, board)
        assert r.arena_measured == r.arena_predicted > 0
        assert r.stack_bytes > 0
        assert r.ram["activation/error arena"] == r.arena_predicted


def test_call_overhead_is_modelled_and_shown():
    r = step("digits-cnn", "nRF52840")
    rows = [row for row in r.rows if row.layer == OVERHEAD_LAYER]
    assert {row.phase for row in rows} == {"forward", "loss", "backward", "update"}
    # M4: 4 register arguments (LDR, 2 each) + BL (1 + P) = 10 cycles
    assert call_overhead(load_table("m4"), 4) == 10
    assert call_overhead(load_table("m4"), 8) == 4 * 2 + 4 * (2 + 1) + 2


def test_emnist_budget(capsys):
    assert main(["budget", "emnist-cnn", "--mcu", "STM32L053"]) == 1
    err = capsys.readouterr().err
    assert "does not fit STM32L053" in err and "short by" in err and "gradient" in err
    assert main(["budget", "emnist-cnn", "--mcu", "MIMXRT1062", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["fits"] and d["peak_ram_bytes"] <= d["ram_budget_bytes"]


def test_budget_all_mcus(capsys):
    assert main(["budget", "digits-cnn", "--all-mcus", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    fits = {o["mcu"]: o["fits"] for o in d["results"]}
    assert fits["STM32L053"] is False and fits["RP2040"] is True and d["fits_any"]


def test_budget_errors(capsys):
    assert main(["budget", "digits-cnn"]) == 2
    assert "--mcu" in capsys.readouterr().err
    assert main(["budget", "digits-cnn", "--mcu", "Z80"]) == 2
    assert main(["step", "no-such-model", "--mcu", "RP2040"]) == 2


def test_step_json(capsys):
    assert main(["step", "digits-cnn", "--mcu", "nRF52840", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for key in ("mcu", "core", "clock_hz", "toolchain", "cycles", "latency_ms", "energy_mj",
                "peak_ram_bytes", "flash_bytes", "fits"):
        assert key in d, key
    for key in ("cycles", "latency_ms", "energy_mj", "peak_ram_bytes", "flash_bytes", "fits"):
        assert key in d["batch"], key
    assert d["batch"]["cycles"] == pytest.approx(d["cycles"] * d["batch_size"], rel=1e-6)
    assert all({"layer", "phase", "cycles"} <= set(row) for row in d["rows"])
    assert {row["phase"] for row in d["rows"]} <= {"forward", "loss", "backward", "update"}


def test_step_side_by_side_and_not_fitting(capsys):
    assert main(["step", "emnist-cnn", "--mcu", "STM32G071", "--mcu", "MIMXRT1062",
                 "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    a, b = d["reports"]
    # it does not fit the G071's 36 KB of RAM, says why, and its cost is offered labelled
    # as hypothetical (the code and weights fit its 128 KB of flash)
    assert not a["fits"] and a["problems"] and a["unplaced"] and a["ram_headroom_bytes"] < 0
    assert a["hypothetical"] is True and a["cycles"] > 0 and a["virtual_bank_bytes"] > 0
    assert b["fits"] and b["cycles"] > 0 and b["hypothetical"] is False
    # on the STM32L053 (64 KB of flash) the kernels and weights do not fit flash either:
    # no cost is offered, and both shortfalls are named
    assert main(["step", "emnist-cnn", "--mcu", "STM32L053", "--json"]) == 1
    a = json.loads(capsys.readouterr().out)
    assert not a["fits"] and a["hypothetical"] is False and a["cycles"] is None
    assert any(p.startswith("flash short by") for p in a["problems"])
    assert any(p.startswith("RAM short by") for p in a["problems"])
    assert main(["step", "digits-cnn", "--mcu", "RP2040", "--mcu", "nRF52840"]) == 0
    out = capsys.readouterr().out
    assert "RP2040" in out and "nRF52840" in out and "where the time goes" in out


def test_demo_json(capsys):
    assert main(["demo", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [r["mcu"] for r in d["reports"]] == list(BOARDS)
    assert all(r["fits"] and r["cycles"] > 0 for r in d["reports"])
    assert d["bit_exact"] is True
    t = d["training"]
    assert t["dataset"] == "digits" and len(t["epochs"]) == 3 and len(t["baseline"]) == 3
    assert t["epochs"][-1]["test_acc"] > 0.5 and t["epochs"][-1]["device_ms"] > 0


def test_step_on_real_samples(capsys):
    assert main(["step", "digits-cnn", "--mcu", "nRF52840", "--dataset", "digits",
                 "--lambda-min", "0.1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["dataset"] == "digits" and d["samples"] == 8
    assert d["per_sample"]["cycles_min"] < d["per_sample"]["cycles_max"]
    assert "digits training set" in d["assumptions"][1]


def test_several_ram_banks(catalog, default_toolchain):
    """emnist-cnn does not fit the STM32F407's SRAM1 alone (112 KB) but fits when the
    planner also uses its CCM and SRAM2; the banked layout trains bit-exactly."""
    from mcusim.fqt.verify import run_verify

    r = step("emnist-cnn", "STM32F407")
    assert r.fits and r.peak_ram_bytes > catalog.mcu("STM32F407").data.size
    assert set(r.ram_by_region) >= {"SRAM1", "CCM"} and r.ram_by_region["CCM"] > 0
    assert sum(r.ram_by_region.values()) == r.peak_ram_bytes
    assert r.arena_measured == r.arena_predicted
    rep = run_verify(load_model("emnist-cnn").with_train(batch_size=2),
                     catalog.mcu("STM32F407"), default_toolchain, 3)
    assert rep.bit_exact
