"""`mcusim train` of the zoo's time-series CNNs on the UCR/UEA sets bundled in aeon: a short
run (the model's own [train] settings, seed 0, the default twin engine) works end to end and
learns: its test accuracy beats chance (the larger class's share) clearly.

Longer runs reach their float32 baselines (README, "Training on real data"); these runs are
a few epochs because a run's time is mostly the per-epoch cost sampling on the emulator.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcusim.cli import main
from mcusim.fqt.datasets import load_dataset

pytest.importorskip("aeon")  # the imu extra: pip install 'mcusim[imu]'


@pytest.mark.parametrize(("model", "dataset", "epochs", "at_least"), [
    # chance = the largest class's share of the test split: 0.24 (88/370), 0.50, 0.51
    ("japanesevowels-cnn", "japanesevowels", 3, 0.45),  # measured 0.73
    ("italypowerdemand-cnn", "italypowerdemand", 6, 0.70),  # measured 0.90
    ("gunpoint-cnn", "gunpoint", 6, 0.65),  # measured 0.83
])
def test_short_training_beats_chance(capsys, model, dataset, epochs, at_least):
    assert main(["train", model, "--dataset", dataset, "--mcu", "nRF52840",
                 "--epochs", str(epochs), "--seed", "0", "--no-baseline", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    ds = load_dataset(dataset)
    chance = np.bincount(ds.y_test).max() / len(ds.y_test)
    assert d["model"] == model and d["dataset"] == dataset
    assert (d["n_train"], d["n_test"]) == (len(ds.y_train), len(ds.y_test))
    assert [e["epoch"] for e in d["epochs"]] == list(range(1, epochs + 1))
    final = d["epochs"][-1]
    assert final["device_ms"] > 0 and final["device_mj"] > 0
    assert final["test_acc"] > max(at_least, chance + 0.1), final
