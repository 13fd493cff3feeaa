"""Random models from every layer type and option the schema accepts: each is either
rejected by the schema with a one-line ModelError, or trains bit-exactly (C kernels on the
emulated MCU against the numpy twin, mcusim.fqt.verify) on an M0+, an M4 and an M7, keeps
every layer's requantization parameters in step with its ranges, and a training step
(mcusim.analyze.simulate_step) runs without a fault on one of the three (drawn).

The generator tracks shapes itself (independently of mcusim.model.schema) so that it knows
which drawn models are valid: those must be accepted.  A fraction of the draws is
deliberately broken in one way (a pool or kernel larger than its input, padding not smaller
than the kernel, fc on a non-flat input, a frozen layer after a trainable one, ReLU on the
logits, a wrong class count, no trainable layer): those must be rejected with one line.
Sizes are bounded so that every model fits the smallest of the three boards and one example
runs in about a second per board.  Derandomized: the same examples every run."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mcusim.analyze import simulate_step
from mcusim.catalog import Catalog, load_catalog
from mcusim.cli import main
from mcusim.errors import EmulationFault, InternalError, ModelError
from mcusim.fqt.network import DeviceExecutor, Program, Trainer, TwinExecutor
from mcusim.fqt.quant import (
    LAYER_DTYPE,
    QP_DTYPE,
    RANGE_DTYPE,
    SELECT_DTYPE,
    multiplier_of,
)
from mcusim.fqt.verify import run_verify
from mcusim.model.schema import ModelSpec, parse_model
from mcusim.model.zoo import MODELS_DIR, load_model
from mcusim.toolchain import Toolchain, find_toolchain

from .conftest import PAPER_BOARDS

MAX_ACT = 384       # elements of any activation
MAX_MACS = 6000     # per weighted layer and forward pass
BODY_LAYERS = (1, 2, 3, 4, 0)  # layers before the head (the first choice is the most common)
EXAMPLES = 100      # per toolchain: 75-90 s on this machine (a fifth are rejected at once)

# no shrinking: an example costs seconds, and the failure message shows the model's TOML
PROPERTY = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                    print_blob=True, phases=(Phase.explicit, Phase.generate),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])

BREAKS = ("pool_too_big", "kernel_too_big", "padding_too_big", "fc_not_flat",
          "frozen_after_trainable", "relu_logits", "wrong_classes", "nothing_trainable",
          "add_inputs")


@dataclass
class Drawn:
    """A drawn model: its TOML text, how it was broken if it was, and what it contains (for
    the coverage check)."""

    text: str
    broken: str = ""  # how it was broken (the schema must reject it); "" = valid
    step_board: str = PAPER_BOARDS[0]  # where simulate_step runs (verify runs on all three)
    features: set[str] = field(default_factory=set)


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return repr(v)


def _toml(input_shape: tuple[int, int, int], classes: int, train: dict[str, object],
          layers: list[dict[str, object]], loss: str | None = None) -> str:
    lines = ["[model]", 'name = "random"', f"input = {_value(list(input_shape))}",
             f"classes = {classes}"] + ([f'loss = "{loss}"'] if loss else []) + ["", "[train]"]
    lines += [f"{k} = {_value(v)}" for k, v in train.items()]
    for layer in layers:
        lines += ["", "[[layer]]"] + [f"{k} = {_value(v)}" for k, v in layer.items()]
    return "\n".join(lines) + "\n"


def _out(size: int, k: int, s: int, before: int, after: int) -> int:
    return (size + before + after - k) // s + 1


def _same(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


@st.composite
def _conv(draw, ltype: str, shape: tuple[int, int, int], feats: set[str]
          ) -> tuple[dict[str, object], tuple[int, int, int]] | None:
    """A conv2d / dwconv2d layer on `shape` with every option drawn, or None when none fits
    the size bounds."""
    H, W, C = shape
    layer: dict[str, object] = {"type": ltype}
    kh = 1 if H == 1 and draw(st.booleans()) else draw(st.integers(1, min(H + 2, 4)))
    kw = draw(st.integers(1, min(W + 2, 5)))
    layer["kernel"] = kh if kh == kw and draw(st.booleans()) else [kh, kw]
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if (sh, sw) != (1, 1) or draw(st.booleans()):
        layer["stride"] = sh if sh == sw and draw(st.booleans()) else [sh, sw]
    kind = draw(st.sampled_from(["list", "same", "int", "default", "valid"]))
    if kind in ("default", "valid"):
        pad = (0, 0, 0, 0)
        if kind == "valid":
            layer["padding"] = "valid"
    elif kind == "same":
        pad = (*_same(H, kh, sh), *_same(W, kw, sw))
        layer["padding"] = "same"
    elif kind == "int":
        p = draw(st.integers(0, min(kh, kw) - 1))
        pad = (p, p, p, p)
        layer["padding"] = p
    else:
        pad = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kh - 1)),
               draw(st.integers(0, kw - 1)), draw(st.integers(0, kw - 1)))
        layer["padding"] = list(pad)
    if H + pad[0] + pad[1] < kh or W + pad[2] + pad[3] < kw:
        return None
    oh, ow = _out(H, kh, sh, pad[0], pad[1]), _out(W, kw, sw, pad[2], pad[3])
    if ltype == "conv2d":
        cap = min(MAX_ACT // (oh * ow), MAX_MACS // (oh * ow * kh * kw * C), 6)
        if cap < 1:
            return None
        cout = draw(st.integers(1, cap))
        layer["filters"] = cout
    else:
        cout = C
        if oh * ow * C > MAX_ACT:
            return None
    _options(draw, layer)
    feats.update({ltype, f"pad:{kind}", "stride" if (sh, sw) != (1, 1) else "stride1",
                  f"relu:{layer.get('activation', 'none')}",
                  f"bias:{layer.get('bias', True)}", "kh>1" if kh > 1 else "kh=1"})
    return layer, (oh, ow, cout)


def _options(draw, layer: dict[str, object]) -> None:
    """activation and bias of a weighted layer: each given or left to its default."""
    act = draw(st.sampled_from(["relu", "relu6", "none", None]))
    if act is not None:
        layer["activation"] = act
    bias = draw(st.sampled_from([False, True, None]))
    if bias is not None:
        layer["bias"] = bias


@st.composite
def models(draw) -> Drawn:
    feats: set[str] = set()
    if draw(st.booleans()):
        shape = (1, draw(st.integers(3, 24)), draw(st.integers(1, 4)))
        feats.add("1-D")
    else:
        shape = (draw(st.integers(2, 8)), draw(st.integers(2, 8)), draw(st.integers(1, 3)))
        feats.add("2-D")
    input_shape = shape
    layers: list[dict[str, object]] = []
    outs: list[tuple[str, tuple[int, int, int]]] = [("input", shape)]  # earlier outputs
    # body layer types: a random order of all of them (so that few examples cover them
    # all), a type repeated now and then, an fc where the input is flat
    order = draw(st.permutations(["conv2d", "avgpool", "dwconv2d", "maxpool", "flatten"]))
    for i in range(draw(st.sampled_from(BODY_LAYERS))):
        H, W, C = shape
        ltype = order[i % len(order)]
        if draw(st.integers(0, 3)) == 3:
            ltype = order[0]
        if H == 1 and W == 1 and draw(st.booleans()):
            ltype = "fc"
        if ltype in ("conv2d", "dwconv2d"):
            got = draw(_conv(ltype, shape, feats))
            if got is None:
                continue
            layer, shape = got
        elif ltype in ("maxpool", "avgpool"):
            form = draw(st.sampled_from(["int", "pair", "global"]))
            if form == "global":
                ph, pw, pool = H, W, "global"
            elif form == "int":
                ph = pw = draw(st.integers(1, max(1, min(H, W, 3))))
                pool = ph
            else:
                ph, pw = draw(st.integers(1, min(H, 3))), draw(st.integers(1, min(W, 4)))
                pool = [ph, pw]
            layer = {"type": ltype, "pool": pool}
            shape = (H // ph, W // pw, C)
            feats.update({ltype, f"{ltype}:{form}"})
        elif ltype == "flatten":
            layer = {"type": "flatten"}
            shape = (1, 1, H * W * C)
            feats.add("flatten")
        else:  # fc on a flat input
            units = draw(st.integers(1, max(1, min(8, MAX_MACS // C))))
            layer = {"type": "fc", "units": units}
            _options(draw, layer)
            shape = (1, 1, units)
            feats.add("fc-body")
        layer = {"name": f"b{len(layers)}", **layer}
        layers.append(layer)
        outs.append((str(layer["name"]), shape))
        # a residual add of this output and an earlier one of the same shape (the earlier
        # layer's output then feeds two layers: a fork)
        same = [n for n, sh in outs[:-1] if sh == shape]
        if same and draw(st.integers(0, 2)) == 0:
            other = draw(st.sampled_from(same))
            add: dict[str, object] = {"name": f"b{len(layers)}", "type": "add",
                                      "inputs": [outs[-1][0], other][::draw(st.sampled_from(
                                          [1, -1]))]}
            act = draw(st.sampled_from(["relu", "none", None]))
            if act is not None:
                add["activation"] = act
            layers.append(add)
            outs.append((str(add["name"]), shape))
            feats.update({"add", "fork" if other != "input" else "add:input"})
    # the head: logits from an fc (after a flatten or a global pool) or a conv2d
    H, W, C = shape
    head = draw(st.sampled_from(["fc", "conv_full", "conv_any"]))
    classes = draw(st.integers(2, 6))
    loss = None
    if head == "fc" and math.prod(input_shape) <= 24 and draw(st.integers(0, 3)) == 0:
        classes, loss = math.prod(input_shape), "mse"  # an autoencoder
        feats.add("loss:mse")
    if head == "fc":
        if (H, W) != (1, 1):
            how = draw(st.sampled_from(["flatten", "maxpool", "avgpool"]))
            layers.append({"type": "flatten"} if how == "flatten" else
                          {"type": how, "pool": "global"})
            feats.add(f"{how}:global" if how != "flatten" else "flatten")
        last: dict[str, object] = {"type": "fc", "units": classes}
    elif head == "conv_full":
        last = {"type": "conv2d", "filters": classes, "kernel": [H, W]}
    else:
        kh, kw, f = draw(st.integers(1, H)), draw(st.integers(1, W)), draw(st.integers(1, 3))
        n = (H - kh + 1) * (W - kw + 1) * f
        if not 2 <= n <= 12:
            kh, kw, f, n = H, W, classes, classes
        classes = n
        last = {"type": "conv2d", "filters": f, "kernel": [kh, kw]}
    if draw(st.booleans()):
        last["bias"] = draw(st.booleans())
    if draw(st.booleans()):
        last["activation"] = "none"
    layers.append(last)
    feats.add(f"head:{head}")
    # frozen / trainable: a split point among the weighted layers
    weighted = [i for i, layer in enumerate(layers) if layer["type"] in ("conv2d", "dwconv2d",
                                                                         "fc")]
    split = draw(st.integers(0, len(weighted) - 1))
    for n, i in enumerate(weighted):
        if n < split:
            layers[i]["trainable"] = False
        elif draw(st.booleans()):
            layers[i]["trainable"] = True
    if split:
        feats.add("frozen+trainable")
    # training settings
    train: dict[str, object] = {"batch_size": draw(st.integers(1, 3)),
                                "rounding": draw(st.sampled_from(["nearest", "floor",
                                                                  "stochastic"]))}
    if draw(st.booleans()):
        lo = draw(st.sampled_from([0.0, 0.1, 0.3, 0.5]))
        train["lambda_min"] = lo
        train["lambda_max"] = draw(st.sampled_from([lo, 0.6, 1.0]))
        train["epsilon"] = draw(st.sampled_from(["layer_error", "loss"]))
        feats.add(f"partial:{train['epsilon']}")
    if draw(st.booleans()):
        train["learning_rate"] = draw(st.sampled_from([0.001, 0.05, 0.5]))
        for key in ("alpha_a", "alpha_e", "alpha_w", "alpha_norm"):
            train[key] = draw(st.sampled_from([0.01, 0.3, 1.0]))
    feats.add(f"rounding:{train['rounding']}")
    drawn = Drawn(_toml(input_shape, classes, train, layers, loss), features=feats,
                  step_board=draw(st.sampled_from(PAPER_BOARDS)))
    how = draw(st.sampled_from((None,) * 4 * len(BREAKS) + BREAKS))
    if how:  # break it in one way (one in five): the schema must reject it
        _break(how, draw, drawn, input_shape, classes, train, layers, weighted, loss)
    return drawn


def _break(how: str, draw, drawn: Drawn, input_shape: tuple[int, int, int], classes: int,
           train: dict[str, object], layers: list[dict[str, object]],
           weighted: list[int], loss: str | None = None) -> None:
    layers = [dict(layer) for layer in layers]
    H, W, _ = input_shape
    if how == "pool_too_big":
        layers.insert(0, {"type": draw(st.sampled_from(["maxpool", "avgpool"])),
                          "pool": [H + 1, 1] if draw(st.booleans()) else [1, W + 1]})
    elif how == "kernel_too_big":
        layers.insert(0, {"type": "conv2d", "filters": 2, "kernel": [H + 1, 1]})
    elif how == "padding_too_big":
        layers.insert(0, {"type": "dwconv2d", "kernel": [1, 2], "padding": [0, 0, 2, 0]})
    elif how == "fc_not_flat":
        if (H, W) == (1, 1):
            return
        layers.insert(0, {"type": "fc", "units": 3})
    elif how == "frozen_after_trainable":
        layers[weighted[-1]]["trainable"] = False
        for i in weighted[:-1]:
            layers[i]["trainable"] = True
    elif how == "relu_logits":
        layers[-1]["activation"] = "relu"
    elif how == "wrong_classes":
        classes += 1
    elif how == "add_inputs":  # an add with one input, the same twice, or a later one
        inputs = draw(st.sampled_from([["input"], ["input", "input"], ["input", "later"]]))
        layers.insert(len(layers) - 1, {"name": "badd", "type": "add", "inputs": inputs})
    else:  # nothing_trainable
        for i in weighted:
            layers[i]["trainable"] = False
    drawn.text = _toml(input_shape, classes, train, layers, loss)
    drawn.broken = how


@functools.cache
def _catalog() -> Catalog:
    return load_catalog()


def _check(drawn: Drawn, toolchain: Toolchain) -> str:
    """The property: rejected with one line, or bit-exact on every board, with parameters
    that follow the ranges, and a fault-free training step.  Returns what happened."""
    try:
        spec = parse_model(drawn.text)
    except ModelError as e:
        msg = str(e)
        assert drawn.broken, f"a valid model was rejected: {msg}\n{drawn.text}"
        assert "\n" not in msg and msg.startswith("<string>: "), msg
        return "rejected"
    assert not drawn.broken, f"broken ({drawn.broken}) but accepted:\n{drawn.text}"
    _parameters_stay_fresh(spec)
    steps = 2 * spec.train.batch_size + 1  # two updates, then a sample with the new weights
    for board in PAPER_BOARDS:
        mcu = _catalog().mcu(board)
        rep = run_verify(spec, mcu, toolchain, steps=steps)
        assert rep.bit_exact, (f"{board}: first mismatch {rep.first_mismatch}\n{drawn.text}")
        assert rep.steps == steps and rep.updates == steps // spec.train.batch_size
    step = simulate_step(spec, _catalog().mcu(drawn.step_board), toolchain=toolchain)
    assert step.fits and not step.problems, (drawn.step_board, step.problems, drawn.text)
    assert step.samples == spec.train.batch_size and step.cycles and step.cycles > 0
    return "verified"


def _twin_trainer(spec: ModelSpec, ram: int, flash: int) -> tuple[Program, TwinExecutor,
                                                                  Trainer]:
    """The model laid out in `ram` bytes of SRAM and `flash` bytes of flash, trained in the
    twin, initialised."""
    program = Program.build(spec)
    program.layout((0x2000_0000, 0x2000_0000 + ram), (0x1000_0000, 0x1000_0000 + flash))
    ex = TwinExecutor(program)
    trainer = Trainer(program, ex)
    trainer.initialise()
    return program, ex, trainer


def _parameters_stay_fresh(spec: ModelSpec) -> None:
    """After every training sample (twin), each layer's requantization parameters are those
    of its current ranges: zero points equal, multiplier from s_w s_x / s_y."""
    program, ex, trainer = _twin_trainer(spec, 0x100_0000, 0x100_0000)
    rng = np.random.default_rng(3)
    structs = [b for b in program.buffers.values() if b.name.endswith(".layer")]

    def rec(addr: int, dtype: np.dtype) -> np.ndarray:
        return np.frombuffer(ex.read(addr, dtype.itemsize), dtype)[0]

    for _ in range(2 * spec.train.batch_size + 1):
        trainer.train_sample(rng.integers(0, 256, math.prod(spec.input_shape), dtype=np.uint8),
                             int(rng.integers(0, spec.classes)))
        for b in structs:
            layer = rec(b.addr, LAYER_DTYPE)
            x, w, y = (rec(int(layer[f]), RANGE_DTYPE) for f in ("x", "w", "y"))
            q = rec(int(layer["fwd"]), QP_DTYPE)
            m = np.float32(np.float32(w["scale"]) * np.float32(x["scale"])) / \
                np.float32(y["scale"])
            assert (q["x_zero"], q["w_zero"], q["y_zero"]) == (x["zero"], w["zero"],
                                                               y["zero"]), b.layer
            assert (q["multiplier"], q["shift"]) == multiplier_of(m), b.layer


_seen: dict[str, dict[str, int]] = {}


@PROPERTY
@given(drawn=models())
def test_random_models_are_rejected_or_bit_exact(default_toolchain, drawn):
    """With the default toolchain: CI runs the suite once with gcc, once with zig alone."""
    outcome = _check(drawn, default_toolchain)
    tally = _seen.setdefault(default_toolchain.kind, {})
    tally[outcome] = tally.get(outcome, 0) + 1
    for f in drawn.features if outcome == "verified" else ():
        tally[f] = tally.get(f, 0) + 1


def test_the_draws_cover_the_schema(default_toolchain):
    """The examples above covered every layer type and option (runs after them: pytest
    keeps file order)."""
    tally = _seen.get(default_toolchain.kind)
    if not tally:
        pytest.skip("the property test did not run")
    # every layer type and option of the schema; "a|b": either (both are the same option
    # written two ways, e.g. padding as one integer or four)
    want = ("verified", "rejected", "1-D", "2-D", "conv2d", "dwconv2d", "maxpool", "avgpool",
            "flatten", "fc-body", "avgpool:global", "avgpool:int|avgpool:pair",
            "maxpool:global", "maxpool:int|maxpool:pair", "pad:same", "pad:list|pad:int",
            "pad:valid|pad:default", "stride", "kh>1", "relu:relu", "relu:none", "bias:False",
            "bias:True", "frozen+trainable", "partial:layer_error", "partial:loss", "head:fc",
            "relu:relu6", "add", "fork", "loss:mse",
            "head:conv_full", "head:conv_any", "rounding:nearest", "rounding:stochastic",
            "rounding:floor")
    missing = [w for w in want if not set(w.split("|")) & set(tally)]
    assert not missing, f"no verified example with {missing}; tally {tally}"


# ------------------------------------------------------------ issue 12: avgpool, mcusim's bugs


def _digits_avgpool(pool: str = "2") -> str:
    """digits-cnn with its second pool an average pool (the model that crashed)."""
    text = (MODELS_DIR / "digits-cnn.toml").read_text()
    head, tail = text.split('name = "pool2"', 1)
    old = 'type = "maxpool"\npool = 2'
    assert old in tail
    return head + 'name = "pool2"' + tail.replace(old, f'type = "avgpool"\npool = {pool}', 1)


@pytest.mark.parametrize("pool", ["2", '"global"'])
def test_digits_with_avgpool_trains_bit_exact(toolchain, pool):
    """The reproduction of issue 12: an average pool after a trained layer (its input range
    is tracked, so the MCU refreshes the pool's parameters) faulted in fqt_layer_refresh."""
    spec = parse_model(_digits_avgpool(pool))
    for board in PAPER_BOARDS:
        rep = run_verify(spec, _catalog().mcu(board), toolchain, steps=9)
        assert rep.bit_exact and rep.updates == 1, rep.first_mismatch
    step = simulate_step(spec, "RP2040", toolchain=toolchain)
    assert step.fits and step.cycles > 0
    assert any(r.layer == "pool2" and r.phase == "update" for r in step.rows)


def test_chained_avgpools_follow_the_trained_range(toolchain):
    """An average pool after an average pool after a trained layer: the second pool's input
    range is derived, not tracked, but changes all the same, so the MCU must refresh both
    (before the fix the second kept its initial parameters: consistent in C and twin, but
    not the mean of its input)."""
    text = _digits_avgpool().replace(
        '[[layer]]                  # -> 1x1x64',
        '[[layer]]\nname = "pool3"\ntype = "avgpool"\npool = [1, 2]\n\n[[layer]]')
    spec = parse_model(text)
    assert [L.type for L in spec.layers[3:5]] == ["avgpool", "avgpool"]
    _parameters_stay_fresh(spec)
    rep = run_verify(spec, _catalog().mcu("nRF52840"), toolchain, steps=9)
    assert rep.bit_exact, rep.first_mismatch


def _pool2_w_range_on_host(monkeypatch) -> None:
    """Re-introduce the avgpool bug: pool2's constant weight range only on the host."""
    add = Program.add

    def add_on_host(self, name, layer, kind, region, data, compare=True):
        return add(self, name, layer, kind, "host" if name == "pool2.w.r" else region, data,
                   compare)

    monkeypatch.setattr(Program, "add", add_on_host)


def test_a_device_call_reaching_a_host_buffer_is_an_internal_error(monkeypatch):
    """The builder checks that no call the MCU makes reaches a host-only buffer."""
    _pool2_w_range_on_host(monkeypatch)
    with pytest.raises(InternalError) as info:
        Program.build(parse_model(_digits_avgpool()))
    e = info.value
    assert e.layer == "pool2" and e.kernel == "fqt_layer_refresh"
    assert "pool2.w.r" in str(e) and "\n" not in str(e)


def test_a_kernel_fault_is_an_internal_error(monkeypatch, tmp_path, capsys):
    """A kernel call mcusim makes that faults is mcusim's bug: InternalError (exit 3) naming
    the kernel and the layer, in verify, step (and so budget, profile, train)."""
    _pool2_w_range_on_host(monkeypatch)
    monkeypatch.setattr(Program, "check_device_reach", lambda self: None)
    spec = parse_model(_digits_avgpool())
    tc = find_toolchain()
    with pytest.raises(InternalError) as info:
        run_verify(spec, _catalog().mcu("RP2040"), tc, steps=2)
    e = info.value
    assert e.layer == "pool2" and e.kernel == "fqt_layer_refresh"
    msg = str(e)
    assert msg.startswith("kernel fqt_layer_refresh faulted on layer pool2 (update): read of "
                          "unmapped memory at 0xf"), msg
    assert "fqt_range.c:" in msg and "\n" not in msg
    assert isinstance(e.__cause__, EmulationFault)
    with pytest.raises(InternalError, match="faulted on layer pool2"):
        simulate_step(spec, "nRF52840", toolchain=tc)
    path = tmp_path / "digits-avg.toml"
    path.write_text(_digits_avgpool())
    assert main(["step", str(path), "--mcu", "rp2040"]) == InternalError.exit_code == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "fqt_layer_refresh" in err and "pool2" in err


def test_a_broken_kernel_argument_is_an_internal_error(monkeypatch):
    """Any fault of a model-driven call is wrapped, whichever kernel and layer: here conv2's
    layer record on the device (only: the twin's copy is intact) points its input range
    nowhere."""
    init = DeviceExecutor.__init__

    def broken(self, program, machine, image):
        init(self, program, machine, image)
        machine.write(program.ref("conv2.layer:x"), (0xF000_0000).to_bytes(4, "little"))

    monkeypatch.setattr(DeviceExecutor, "__init__", broken)
    with pytest.raises(InternalError) as info:
        run_verify(load_model("digits-cnn"), _catalog().mcu("MIMXRT1062"), find_toolchain(),
                   steps=1)
    assert info.value.layer == "conv2" and info.value.kernel == "fqt_layer_refresh"
    assert str(info.value).startswith("kernel fqt_layer_refresh faulted on layer conv2 "
                                      "(update): read of unmapped memory at 0xf00000")


def test_epsilon_loss_is_the_loss_over_the_largest_loss():
    """epsilon = "loss": every layer's selection gets ε = loss / the largest loss so far."""
    spec = load_model("digits-cnn").with_train(lambda_min=0.2, lambda_max=0.8, epsilon="loss",
                                               batch_size=2)
    program, ex, trainer = _twin_trainer(spec, 0x4_0000, 0x10_0000)
    rng = np.random.default_rng(1)
    losses = []
    # every selecting layer (the output layer is always updated in full: no selection)
    sels = [f"{spec.layers[i].name}.sel" for i in spec.trainable_layers
            if i != len(spec.layers) - 1]
    assert sels and "fc.sel" not in program.buffers
    for _ in range(6):
        r = trainer.train_sample(rng.integers(0, 256, 64, dtype=np.uint8),
                                 int(rng.integers(0, 10)))
        losses.append(np.float32(r.loss))
        for sel in sels:
            b = program.buffers[sel]
            rec = np.frombuffer(ex.read(b.addr, b.nbytes), SELECT_DTYPE)[0]
            assert rec["eps_mode"] == 1
            assert rec["eps"] == losses[-1] / max(losses)
