"""Pretrained weights files (`[model] weights`): written, read back, used by every program,
and every kind of damage refused with one line."""

from __future__ import annotations

import numpy as np
import pytest

from mcusim.cli import main
from mcusim.errors import ModelError
from mcusim.fqt.network import Program
from mcusim.fqt.reference import FloatNet
from mcusim.model.weights import load_weights, save_weights
from mcusim.model.zoo import load_model

TOML = """
[model]
name = "tiny"
input = [4, 4, 2]
classes = 3
weights = "tiny.npz"
[[layer]]
name = "conv"
type = "conv2d"
filters = 4
kernel = 3
activation = "relu"
trainable = false
[[layer]]
type = "flatten"
[[layer]]
name = "fc"
type = "fc"
units = 3
bias = false
"""


def _params(seed: int = 0):
    rng = np.random.default_rng(seed)
    return {"conv": (rng.normal(size=(4, 3, 3, 2)).astype(np.float32),
                     rng.normal(size=4).astype(np.float32)),
            "fc": (rng.normal(size=(3, 16)).astype(np.float32), None)}


@pytest.fixture
def model(tmp_path):
    (tmp_path / "tiny.toml").write_text(TOML)
    save_weights(tmp_path / "tiny.npz", _params(), {"conv": (0.0, 5.0)})
    return tmp_path / "tiny.toml"


def test_weights_are_read_back_and_used(model):
    spec = load_model(model)
    w = load_weights(spec)
    p = _params()
    np.testing.assert_array_equal(w.params["conv"][0], p["conv"][0])
    np.testing.assert_array_equal(w.params["fc"][1], np.zeros(3, np.float32))
    assert w.ranges == {"conv": (0.0, 5.0)}
    net = FloatNet.init(spec, seed=99)  # the seed does not matter: the file's weights
    np.testing.assert_array_equal(net.params["fc"][0], p["fc"][0])
    prog = Program.build(spec)
    r = prog.buffers["conv.y.r"].data  # the frozen layer's output range: the file's
    assert float(r["fmin"]) == 0.0 and float(r["fmax"]) == 5.0
    # the frozen weights in flash are the file's, quantized per tensor
    wr = prog.buffers["conv.w.r"].data
    q = prog.buffers["conv.w"].data.astype(np.float64)
    deq = float(wr["scale"]) * (q - int(wr["zero"]))
    assert np.max(np.abs(deq - p["conv"][0].reshape(-1))) <= float(wr["scale"]) * 0.5 + 1e-6


def _damage(path, **members):
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    for k, v in members.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    np.savez(path, **d)


@pytest.mark.parametrize("change,fragment", [
    ({"conv.w": np.zeros((4, 3, 3, 3), np.float32)},
     "member 'conv.w' has shape (4, 3, 3, 3), layer 'conv' needs (4, 3, 3, 2)"),
    ({"conv.w": None}, "no weights for layer 'conv'"),
    ({"conv.b": None}, "no biases for layer 'conv'"),
    ({"fc.w": np.full((3, 16), np.nan, np.float32)}, "member 'fc.w' holds NaN or infinite"),
    ({"pool.w": np.zeros(3, np.float32)}, "member 'pool.w' matches no weighted layer"),
    ({"conv.range": np.array([3.0, 1.0], np.float32)}, "member 'conv.range' is not a range"),
    ({"format": None}, "not an mcusim weights file"),
    ({"fc.w": np.array(["a"] * 48).reshape(3, 16)}, "member 'fc.w' has dtype <U1"),
])
def test_damaged_weights_are_one_line(model, change, fragment):
    _damage(model.parent / "tiny.npz", **change)
    with pytest.raises(ModelError) as info:
        FloatNet.init(load_model(model))
    msg = str(info.value)
    assert fragment in msg and "\n" not in msg, msg


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04garbage" * 10])
def test_not_an_npz(model, content):
    (model.parent / "tiny.npz").write_bytes(content)
    with pytest.raises(ModelError) as info:
        FloatNet.init(load_model(model))
    assert "tiny.npz" in str(info.value) and "\n" not in str(info.value)


def test_missing_weights_file_from_the_cli(model, capsys):
    (model.parent / "tiny.npz").unlink()
    assert main(["budget", str(model), "--mcu", "RP2040"]) == 2
    err = capsys.readouterr().err.strip()
    assert "tiny.npz: no such file" in err and "\n" not in err


def test_a_pickled_member_is_refused(model):
    path = model.parent / "tiny.npz"
    _damage(path, **{"fc.w": np.array([{"x": 1}] * 48, dtype=object).reshape(3, 16)})
    with pytest.raises(ModelError) as info:
        FloatNet.init(load_model(model))
    assert "fc.w" in str(info.value)
