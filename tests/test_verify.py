"""`mcusim verify`: zoo models train bit-exactly on the paper's boards, and a broken twin
kernel is caught and located."""

from __future__ import annotations

import json

import pytest

from mcusim.cli import main
from mcusim.fqt import twin
from mcusim.fqt.verify import run_verify
from mcusim.model.zoo import load_model

from .conftest import PAPER_BOARDS


@pytest.mark.parametrize("board", PAPER_BOARDS)
@pytest.mark.parametrize("model,lam,rounding", [
    ("digits-cnn", 1.0, "nearest"), ("digits-cnn", 0.3, "stochastic"),
    ("imu-cnn", 0.5, "floor"), ("emnist-cnn", 0.2, "nearest"),
    ("mbednet-tail", 1.0, "nearest"), ("mbednet-tail", 0.1, "stochastic")])
def test_zoo_trains_bit_exact(catalog, default_toolchain, board, model, lam, rounding):
    spec = load_model(model).with_train(lambda_min=lam, rounding=rounding, batch_size=4)
    rep = run_verify(spec, catalog.mcu(board), default_toolchain, steps=9)
    assert rep.first_mismatch is None and rep.bit_exact
    assert rep.updates == 2 and rep.steps == 9
    assert rep.instructions_by_phase["forward"] > 0 and rep.instructions_by_phase["update"] > 0


def test_a_broken_twin_is_caught(catalog, default_toolchain, monkeypatch):
    """Drop the ReLU mask from the twin: verify must fail in the backward phase and name it."""
    monkeypatch.setitem(twin.KERNELS, "fqt_relu_backward", lambda mem, *a: None)
    rep = run_verify(load_model("digits-cnn"), catalog.mcu("RP2040"), default_toolchain, 4)
    assert not rep.bit_exact
    m = rep.first_mismatch
    assert m.step == 0 and m.phase == "backward" and m.tensor.endswith(".e")


def test_partial_updates_prune_work(catalog, default_toolchain):
    """λ_min = 0.1 lowers backward instructions (pruned structures are skipped)."""
    mcu = catalog.mcu("nRF52840")
    full = run_verify(load_model("digits-cnn"), mcu, default_toolchain, 8)
    part = run_verify(load_model("digits-cnn").with_train(lambda_min=0.1, lambda_max=0.1),
                      mcu, default_toolchain, 8)
    assert part.bit_exact and full.bit_exact
    assert part.instructions_by_phase["backward"] < 0.8 * full.instructions_by_phase["backward"]


def test_partial_updates_emnist_backward_speedup(catalog, default_toolchain):
    """emnist-cnn on the nRF52840 (Cortex-M4): λ = 0.1 takes its backward pass at least 5x
    faster than λ = 1 (pruned structures cost next to nothing: the kept list; measured
    5.13x with gcc, 5.58x with zig, after the full-training kernels got 2.6x faster),
    bit-exact both ways."""
    mcu = catalog.mcu("nRF52840")
    spec = load_model("emnist-cnn").with_train(batch_size=4)
    full = run_verify(spec, mcu, default_toolchain, 4)
    part = run_verify(spec.with_train(lambda_min=0.1, lambda_max=0.1), mcu, default_toolchain,
                      4)
    assert part.bit_exact and full.bit_exact
    assert full.cycles_by_phase["backward"] >= 5 * part.cycles_by_phase["backward"]


def test_cli_verify_json_and_errors(capsys):
    assert main(["verify", "digits-cnn", "--mcu", "nrf52840", "--steps", "3", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["bit_exact"] is True and d["steps"] == 3 and d["mcu"] == "nRF52840"
    assert d["core"] == "m4"
    assert main(["verify", "no-such-model", "--mcu", "rp2040"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["verify", "emnist-cnn", "--mcu", "STM32L053"]) == 2
    assert "does not fit" in capsys.readouterr().err
