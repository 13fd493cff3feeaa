"""Simulated on-device training: engines agree, evaluation is side-effect free, CLI, plots."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from mcusim.cli import main
from mcusim.errors import UsageError
from mcusim.fqt.datasets import load_dataset
from mcusim.fqt.quant import quantize_inputs
from mcusim.fqt.train import FqtSession, parse_classes, train_fqt
from mcusim.model.zoo import load_model


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _subset(ds, n_train, n_test):
    return replace(ds, x_train=ds.x_train[:n_train], y_train=ds.y_train[:n_train],
                   x_test=ds.x_test[:n_test], y_test=ds.y_test[:n_test])


def test_twin_and_emulator_engines_train_identically(catalog, default_toolchain, digits):
    """240 training steps (30 weight updates, partial updates, stochastic rounding) on the
    numpy twin and as compiled kernels in Unicorn: the same weights, byte for byte."""
    spec = load_model("digits-cnn").with_train(lambda_min=0.3, lambda_max=1.0,
                                               rounding="stochastic")
    mcu = catalog.mcu("nRF52840")
    xq = quantize_inputs(digits.x_train[:240])
    y = digits.y_train[:240]
    order = np.random.default_rng(5).permutation(240)
    states = []
    for engine in ("twin", "emulator"):
        s = FqtSession(spec, mcu, default_toolchain, engine=engine, seed=2,
                       calibration=digits.x_train[:32])
        loss, acc, _ = s.train_epoch(xq, y, order)
        states.append((s.state(), loss, acc))
    assert states[0] == states[1]
    assert states[0][1] > 0 and 0 <= states[0][2] <= 1


def test_evaluation_changes_nothing(catalog, default_toolchain, digits):
    spec = load_model("digits-cnn")
    s = FqtSession(spec, catalog.mcu("RP2040"), default_toolchain, seed=1)
    xq = quantize_inputs(digits.x_train[:64])
    s.train_epoch(xq, digits.y_train[:64], np.arange(64))
    before = s.snapshot()
    acc = s.evaluate(quantize_inputs(digits.x_test[:50]), digits.y_test[:50])
    assert 0 <= acc <= 1
    assert s.snapshot() == before


def test_training_learns_and_reports_costs(catalog, default_toolchain, digits):
    data = _subset(digits, 400, 120)
    rep = train_fqt(load_model("digits-cnn"), data, catalog.mcu("nRF52840"),
                    default_toolchain, epochs=2, seed=0, baseline=True)
    assert [e.epoch for e in rep.epochs] == [1, 2]
    assert rep.epochs[-1].test_acc > 0.5  # 10 classes: chance is 0.1
    assert rep.baseline is not None and len(rep.baseline) == 2
    for e in rep.epochs:
        assert e.device_ms > 0 and e.device_mj > 0 and e.cost_samples > 0
        assert sum(e.device_phase_ms.values()) * 400 == pytest.approx(e.device_ms)
    d = rep.to_dict()
    for key in ("epoch", "train_loss", "train_acc", "test_acc", "device_ms", "device_mj"):
        assert key in d["epochs"][0] and key in d["baseline"][0]
    # deterministic
    again = train_fqt(load_model("digits-cnn"), data, catalog.mcu("nRF52840"),
                      default_toolchain, epochs=2, seed=0, baseline=False)
    assert [e.test_acc for e in again.epochs] == [e.test_acc for e in rep.epochs]
    assert [e.device_ms for e in again.epochs] == [e.device_ms for e in rep.epochs]


def test_emulator_engine_costs_are_exact(catalog, default_toolchain, digits):
    data = _subset(digits, 48, 16)
    rep = train_fqt(load_model("digits-cnn"), data, catalog.mcu("RP2040"), default_toolchain,
                    epochs=1, engine="emulator", baseline=False)
    e = rep.epochs[0]
    assert e.cost_samples == 48 and e.device_ms > 0


def test_parse_classes():
    assert parse_classes(None, 10) == [0, 1, 2, 3, 4]
    assert parse_classes("0-2,7", 10) == [0, 1, 2, 7]
    with pytest.raises(UsageError):
        parse_classes("3-12", 10)
    with pytest.raises(UsageError):
        parse_classes("x", 10)


def test_cli_train_json_and_plots(capsys, tmp_path):
    out = tmp_path / "plots"
    assert main(["train", "digits-cnn", "--dataset", "digits", "--mcu", "nRF52840",
                 "--epochs", "1", "--plot", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    rec = d["epochs"][0]
    for key in ("epoch", "train_loss", "train_acc", "test_acc", "device_ms", "device_mj"):
        assert key in rec
    assert 0 <= rec["test_acc"] <= 1 and d["baseline"][0]["test_acc"] > 0
    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy.png", "accuracy_vs_device_time.png", "phase_time.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in out.iterdir())


def test_cli_transfer_learning(capsys):
    assert main(["train", "digits-cnn", "--dataset", "digits", "--mcu", "MIMXRT1062",
                 "--epochs", "1", "--pretrain", "1", "--pretrain-classes", "0-4",
                 "--train-last", "1", "--no-baseline", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["pretrain"]["classes"] == [0, 1, 2, 3, 4]
    assert d["trainable_layers"] == ["fc"] and d["baseline"] is None


def test_cli_train_bad_inputs(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert main(["train", "digits-cnn", "--dataset", str(bad), "--mcu", "nRF52840"]) == 2
    err = capsys.readouterr().err
    assert "bad.npz" in err and "Traceback" not in err
    assert main(["train", "emnist-cnn", "--dataset", "digits", "--mcu", "nRF52840"]) == 2
    assert "expects input" in capsys.readouterr().err


def test_learning_rate_schedule():
    t = load_model("digits-cnn").with_train(learning_rate=0.01, lr_final=0.001).train
    assert t.learning_rate_at(1, 10) == pytest.approx(0.01)
    assert t.learning_rate_at(10, 10) == pytest.approx(0.001)
    assert 0.001 < t.learning_rate_at(5, 10) < 0.01
    const = load_model("digits-cnn").with_train(lr_final=0.0).train
    assert const.learning_rate_at(7, 10) == const.learning_rate
