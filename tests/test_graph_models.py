"""Graph models: residual adds, forks, relu6 and the mse loss, from the model TOML to
bit-exact training on the three cores, and the float reference against its definition."""

from __future__ import annotations

import numpy as np
import pytest

from mcusim.errors import ModelError
from mcusim.fqt.network import Program, Trainer, TwinExecutor
from mcusim.fqt.reference import FloatNet
from mcusim.fqt.verify import run_verify
from mcusim.model.schema import parse_model

from .conftest import PAPER_BOARDS

# a ResNet-style network: an identity shortcut (c0 feeds c1 and add1: a fork) and a 1x1
# stride-2 shortcut conv (add1 feeds sc and c3), relu6, a global average pool
RESNET = """
[model]
name = "res"
input = [8, 8, 3]
classes = 5
[train]
batch_size = 3
[[layer]]
name = "c0"
type = "conv2d"
filters = 8
kernel = 3
padding = "same"
activation = "relu"
[[layer]]
name = "c1"
type = "conv2d"
filters = 8
kernel = 3
padding = "same"
activation = "relu"
[[layer]]
name = "c2"
type = "conv2d"
filters = 8
kernel = 3
padding = "same"
[[layer]]
name = "add1"
type = "add"
inputs = ["c2", "c0"]
activation = "relu"
[[layer]]
name = "sc"
type = "conv2d"
filters = 8
kernel = 1
stride = 2
inputs = ["add1"]
[[layer]]
name = "c3"
type = "conv2d"
filters = 8
kernel = 3
stride = 2
padding = "same"
activation = "relu6"
inputs = ["add1"]
[[layer]]
name = "add2"
type = "add"
inputs = ["c3", "sc"]
[[layer]]
name = "gap"
type = "avgpool"
pool = "global"
[[layer]]
name = "flat"
type = "flatten"
[[layer]]
name = "fc"
type = "fc"
units = 5
"""

# a dense autoencoder trained with the mse loss (the MLPerf Tiny anomaly detector's shape)
AUTOENCODER = """
[model]
name = "ae"
input = [1, 1, 24]
classes = 24
loss = "mse"
input_range = [-2.0, 3.0]
[train]
batch_size = 2
[[layer]]
name = "enc"
type = "fc"
units = 8
activation = "relu"
[[layer]]
name = "mid"
type = "fc"
units = 6
activation = "relu6"
[[layer]]
name = "dec"
type = "fc"
units = 24
"""


def test_graph_structure_and_needs():
    spec = parse_model(RESNET)
    names = [L.name for L in spec.layers]
    assert spec.is_graph
    assert spec.producers(names.index("add1")) == (2, 0)
    assert spec.producers(names.index("c3")) == (3,)
    cons = spec.consumers()
    assert cons[0] == [1, 3] and cons[3] == [4, 5]  # the two forks
    # training the last two weighted layers (c3, fc): errors reach c3, not the shortcut
    t2 = spec.with_trainable_tail(2)
    need = dict(zip(names, t2.needs_error(), strict=True))
    assert need["c3"] and need["add2"] and need["fc"] and not need["sc"]
    assert not need["add1"] and not need["c0"]
    assert all(parse_model(RESNET).needs_error())


@pytest.mark.parametrize("text,fragment", [
    (RESNET.replace('inputs = ["c2", "c0"]', 'inputs = ["c2", "nope"]'),
     "'inputs' names 'nope', which is not an earlier layer"),
    (RESNET.replace('inputs = ["c2", "c0"]', 'inputs = ["c2"]'),
     "a add layer takes 2 inputs (got 1)"),
    (RESNET.replace('inputs = ["c2", "c0"]', 'inputs = ["c2", "c2"]'),
     "add needs two different inputs"),
    (RESNET.replace('inputs = ["c3", "sc"]', 'inputs = ["c3", "add1"]'),
     "add inputs must have the same shape (got 4x4x8 and 8x8x8)"),
    (RESNET.replace('inputs = ["c3", "sc"]', 'inputs = ["c3", "c3"]'),
     "add needs two different inputs"),
    (RESNET.replace('inputs = ["add1"]\n[[layer]]\nname = "c3"', 'inputs = ["c3"]\n[[layer]]\n'
                    'name = "c3"'), "layer 4 'sc': 'inputs' names 'c3', which is not an earlier"),
    (AUTOENCODER.replace("units = 24", "units = 12").replace("classes = 24", "classes = 12"),
     "loss \"mse\" trains an autoencoder to reconstruct its input"),
    (RESNET.replace('type = "add"\ninputs = ["c3", "sc"]',
                    'type = "add"\ninputs = ["c3", "sc"]\nactivation = "relu6"'),
     "an add takes activation \"relu\" or \"none\""),
    (RESNET.replace('inputs = ["add1"]', 'inputs = ["c0"]'),
     "layer 3 'add1': its output is never used"),
])
def test_graph_mistakes_are_one_line(text, fragment):
    with pytest.raises(ModelError) as info:
        parse_model(text)
    msg = str(info.value)
    assert fragment in msg and "\n" not in msg, msg


def _numeric_grad(net: FloatNet, x: np.ndarray, label: int, name: str, idx: tuple,
                  h: float = 1e-3) -> float:
    w, b = net.params[name]
    w64 = w.astype(np.float64)

    def loss_at(v: float) -> float:
        w2 = w64.copy()
        w2[idx] = v
        net.params[name] = (w2.astype(np.float32), b)
        acts = net.forward(x)
        loss, _ = net.loss_and_error(acts[-1], label, target=x)
        return loss

    v0 = float(w64[idx])
    g = (loss_at(v0 + h) - loss_at(v0 - h)) / (2 * h)
    net.params[name] = (w, b)
    return g


@pytest.mark.parametrize("text", [RESNET, AUTOENCODER])
def test_float_reference_gradients_match_finite_differences(text):
    """The float reference's backward (forks summed, add passing errors through, relu6
    masks, the mse gradient) against central differences of its own forward loss: the
    definition of the gradient, independent of how backward is written."""
    spec = parse_model(text)
    net = FloatNet.init(spec, seed=3)
    rng = np.random.default_rng(5)
    lo, hi = spec.input_range
    x = rng.uniform(lo, hi, spec.input_shape).astype(np.float32)
    label = 2
    acts = net.forward(x)
    _, _, grads = net.backward(x, acts, label)
    assert set(grads) == {L.name for L in spec.layers if L.has_weights}
    checked = 0
    for name, (gw, _) in grads.items():
        for flat in rng.choice(gw.size, 4, replace=False):
            idx = np.unravel_index(flat, gw.shape)
            num = _numeric_grad(net, x, label, name, idx)
            assert abs(num - float(gw[idx])) <= 2e-3 + 2e-2 * abs(num), (name, idx)
            checked += 1
    assert checked >= 12


def test_float_forward_of_a_residual_block_by_hand():
    """add1 = relu(c2 + c0) and add2 = c3 + sc exactly, with relu6 capping c3 at 6."""
    spec = parse_model(RESNET)
    net = FloatNet.init(spec, seed=1)
    w, b = net.params["c3"]
    net.params["c3"] = (w * 40, b + 3)  # drive c3 far past 6
    x = np.random.default_rng(2).uniform(0, 1, spec.input_shape).astype(np.float32)
    a = {L.name: v for L, v in zip(spec.layers, net.forward(x), strict=True)}
    np.testing.assert_array_equal(a["add1"], np.maximum(a["c2"] + a["c0"], 0))
    np.testing.assert_array_equal(a["add2"], a["c3"] + a["sc"])
    assert a["c3"].max() == 6.0 and a["c3"].min() == 0.0


def _twin_losses(spec, n: int = 6) -> list[float]:
    p = Program.build(spec)
    p.layout((0x2000_0000, 0x2000_0000 + (1 << 20)), (0x0800_0000, 0x0810_0000))
    t = Trainer(p, TwinExecutor(p))
    t.initialise()
    rng = np.random.default_rng(0)
    n_in = int(np.prod(spec.input_shape))
    return [t.train_sample(rng.integers(0, 256, n_in).astype(np.uint8), i % spec.classes).loss
            for i in range(n)]


def test_autoencoder_loss_is_the_mse_of_the_dequantized_tensors():
    """The quantized mse loss equals mean((y - x)^2) of the dequantized output and input
    (float64, from the tensors the twin holds) to float32 rounding."""
    spec = parse_model(AUTOENCODER)
    p = Program.build(spec)
    p.layout((0x2000_0000, 0x2000_0000 + (1 << 20)), (0x0800_0000, 0x0810_0000))
    ex = TwinExecutor(p)
    t = Trainer(p, ex)
    t.initialise()
    x = np.random.default_rng(4).integers(0, 256, 24).astype(np.uint8)
    t.set_input(x, 0)
    t._run("forward")
    t._run("loss")  # the ranges as the loss saw them: before this sample's commit
    loss = t.result().loss
    from mcusim.fqt.quant import RANGE_DTYPE

    def deq(buf: str, rng: str) -> np.ndarray:
        r = np.frombuffer(ex.read(p.buffers[rng].addr, RANGE_DTYPE.itemsize), RANGE_DTYPE)[0]
        q = np.frombuffer(ex.read(p.buffers[buf].addr, 24), np.uint8).astype(np.float64)
        return float(r["scale"]) * (q - int(r["zero"]))

    y, xin = deq(p.logits, "dec.y.r"), deq("input", "input.r")
    assert abs(loss - float(np.mean((y - xin) ** 2))) <= 1e-3 * max(loss, 1e-3) + 1e-5


@pytest.mark.parametrize("board", PAPER_BOARDS)
@pytest.mark.parametrize("case,lam,rounding,last", [
    ("resnet", 1.0, "nearest", None), ("resnet", 0.3, "stochastic", None),
    ("resnet", 1.0, "floor", 2), ("autoencoder", 1.0, "nearest", None),
    ("autoencoder", 0.5, "stochastic", 1)])
def test_graph_models_train_bit_exact(catalog, default_toolchain, board, case, lam, rounding,
                                      last):
    spec = parse_model(RESNET if case == "resnet" else AUTOENCODER)
    spec = spec.with_trainable_tail(last).with_train(lambda_min=lam, rounding=rounding)
    rep = run_verify(spec, catalog.mcu(board), default_toolchain, steps=7)
    assert rep.first_mismatch is None and rep.bit_exact, rep.first_mismatch
    assert rep.updates == (7 // spec.train.batch_size)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity; 1 when both are zero (no gradient either way: a dead relu)."""
    a, b = a.astype(np.float64).reshape(-1), b.astype(np.float64).reshape(-1)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb < 1e-6:
        return 1.0
    return float(a @ b / (na * nb)) if na and nb else 0.0


@pytest.mark.parametrize("text", [RESNET, AUTOENCODER])
def test_fqt_gradients_point_where_the_float_gradients_do(text):
    """C and twin agree by construction on what the program asks (a wrong program, e.g. a
    fork that drops one branch's error, is bit-exact too).  Against the definition: after
    one sample's backward pass, each layer's int32 gradient accumulator (sum over the
    sample of (e - z_e)(x - z_x): the gradient up to its positive scale s_e s_x) points the
    way of the float reference's gradient on the same input and weights."""
    spec = parse_model(text)
    net = FloatNet.init(spec, seed=2)
    p = Program.build(spec, net=net)
    p.layout((0x2000_0000, 0x2000_0000 + (1 << 20)), (0x0800_0000, 0x0810_0000))
    ex = TwinExecutor(p)
    t = Trainer(p, ex)
    t.initialise()
    from mcusim.model.quality import quantize_input

    rng = np.random.default_rng(8)
    lo, hi = spec.input_range
    worst = {}
    for k in range(6):
        x = rng.uniform(lo, hi, (1, *spec.input_shape)).astype(np.float32)
        xq = quantize_input(spec, x)[0]
        label = k % spec.classes
        t.set_input(xq, label)
        for g in ("forward", "loss", "backward"):
            t._run(g)
        # the float reference on the input as the MCU holds it
        s = (hi - lo) / 255
        xr = ((xq.astype(np.float64) - round(-lo / s)) * s).reshape(spec.input_shape)
        _, _, grads = net.backward(xr.astype(np.float32), net.forward(xr), label)
        for L in spec.layers:
            if not L.has_weights:
                continue
            b = p.buffers[f"{L.name}.gw"]
            gw = np.frombuffer(ex.read(b.addr, b.nbytes), np.int32)
            c = _cosine(gw, grads[L.name][0])
            worst[L.name] = min(worst.get(L.name, 1.0), c)
            ex.write(b.addr, bytes(b.nbytes))  # start the next sample from zero
        t._run("commit")
    assert all(c > 0.8 for c in worst.values()), worst
