"""Model descriptions at and past their limits, and runs that go wrong.

* A model path that is a FIFO, /dev/zero or a huge file fails at once with one line (exit 2),
  as does a data set path like that.
* Nesting thousands deep, integers of thousands of digits, names of 100,000 characters or
  with control characters: one short line, never a traceback.
* Every size in the file is bounded (module docstring of mcusim.model.schema): the limits are
  checked at the boundary, with the expected values worked out by hand from the definitions
  (weights of an fc layer: in x out, biases: out; MACs of a conv2d: output values x kh x kw x
  Cin).
* A large but valid model is reported as not fitting without its weights ever existing: the
  step is checked on a sizes-only program (mcusim.fqt.network) whose buffers equal the real
  program's in everything but their contents.
* Training that diverges (a learning rate far too high) stops with one line, exit 1, for the
  float32 baseline and for FQT alike.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

from mcusim.errors import InternalError, McusimError, ModelError, TrainingDiverged
from mcusim.fqt.baseline import FloatTrainer, copy_net, train_float
from mcusim.fqt.network import Program, Trainer, TwinExecutor
from mcusim.fqt.planner import plan_memory
from mcusim.fqt.quant import LOSS_DTYPE
from mcusim.fqt.reference import FloatNet
from mcusim.model.schema import (
    MAX_ACTIVATIONS,
    MAX_BATCH,
    MAX_DIM,
    MAX_LAYERS,
    MAX_MACS,
    MAX_PARAMS,
    MAX_TENSOR,
    parse_model,
)
from mcusim.model.zoo import load_model, zoo_names

FLAT_FC = '[[layer]]\ntype = "flatten"\n[[layer]]\ntype = "fc"\nunits = {classes}\n'


def model(input_: str = "[8, 8, 1]", classes: int | str = 2, layers: str | None = None,
          extra: str = "") -> str:
    body = FLAT_FC.format(classes=classes) if layers is None else layers
    return f'[model]\nname = "t"\ninput = {input_}\nclasses = {classes}\n{extra}\n{body}'


def fails(text: str, fragment: str) -> str:
    with pytest.raises(ModelError) as info:
        parse_model(text)
    msg = str(info.value)
    assert fragment in msg, msg
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def run_cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """mcusim in a child under a 2 GiB address-space limit: what a user's shell would see."""

    def limit() -> None:  # pragma: no cover - runs in the child
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run([sys.executable, "-m", "mcusim", *argv], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit,
                          stdin=subprocess.DEVNULL)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("mcusim: [")]


# ---------------------------------------------------------------------- files


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_model_path_that_is_not_a_regular_file_fails_at_once(tmp_path, kind):
    path = "/dev/zero"
    if kind == "fifo":
        path = str(tmp_path / "model.toml")
        os.mkfifo(path)
    r = run_cli("step", path, "--mcu", "nRF52840", timeout=20)
    assert r.returncode == 2, r.stderr
    lines = error_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert "FIFO" in lines[0] if kind == "fifo" else "character device" in lines[0]
    assert "Traceback" not in r.stderr


def test_a_model_file_past_16_mib_is_refused_unread(tmp_path):
    path = tmp_path / "big.toml"
    with open(path, "wb") as f:  # sparse: no disk space, no time
        f.write(model().encode())
        f.truncate(17 << 20)
    with pytest.raises(ModelError, match=r"17\.0 MiB, larger than the 16\.0 MiB"):
        load_model(path)


def test_a_data_set_path_that_is_not_a_regular_file_fails_at_once(tmp_path):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    for path, what in ((str(fifo), "FIFO"), ("/dev/zero", "character device")):
        r = run_cli("step", "digits-cnn", "--mcu", "nRF52840", "--data", path, timeout=20)
        assert r.returncode == 2, r.stderr
        lines = error_lines(r.stderr)
        assert len(lines) == 1 and what in lines[0], r.stderr


def test_a_path_with_a_newline_stays_on_one_line(tmp_path):
    d = tmp_path / "new\nline"
    d.mkdir()
    with pytest.raises(ModelError) as info:
        load_model(d / "m.toml")
    assert "\n" not in str(info.value) and "new\\nline" in str(info.value)
    os.mkfifo(d / "f.toml")
    with pytest.raises(ModelError) as info:
        load_model(d / "f.toml")
    assert "\n" not in str(info.value) and "FIFO" in str(info.value)


def test_a_name_from_an_odd_file_stem_is_kept_to_one_short_line(tmp_path):
    path = tmp_path / ("we\x01ird" + "x" * 200 + ".toml")
    path.write_text(model().replace('name = "t"\n', ""))
    m = load_model(path)
    # the stem with the control character escaped (4 characters), cut to 128
    assert m.name == ("we\\x01ird" + "x" * 200)[:128] and len(m.name) == 128


# ---------------------------------------------------------------------- TOML oddities


@pytest.mark.parametrize("text", [
    "a = " + "[" * 2000 + "]" * 2000,            # RecursionError inside tomllib
    "a = " + "{b = " * 2000 + "1" + "}" * 2000,  # inline tables
    "a = " + "[" * 100 + "]" * 100,              # parses, but deeper than any model needs
    model(input_="[" * 70 + "8" + "]" * 70),
])
def test_deep_nesting_is_one_line(text):
    fails(text, "nested too deeply")


def test_three_levels_are_fine():
    assert parse_model(model(extra='description = "x"')).input_shape == (8, 8, 1)


@pytest.mark.parametrize(("text", "fragment"), [
    (model(input_="[" + "9" * 5000 + ", 1, 1]"), "invalid TOML"),  # > 4300 digits
    (model(input_="[0x" + "f" * 5000 + ", 1, 1]"), "<a 20000-bit integer>"),
    (model(classes="-" + "9" * 4000), "-<a 13288-bit integer>"),
    (model(extra="[train]\nlearning_rate = 1" + "0" * 400), "'learning_rate' is too large"),
    (model(extra="[train]\nbatch_size = -" + "9" * 4000), "'batch_size' must be >= 1"),
])
def test_huge_integers_are_quoted_short(text, fragment):
    fails(text, fragment)


@pytest.mark.parametrize(("text", "fragment"), [
    (model().replace('name = "t"', 'name = "a\\nb"'), "'name' must be one line"),
    (model().replace('name = "t"', 'name = "\\u001b[31mred"'), "'name' must be one line"),
    (model().replace('name = "t"', 'name = "' + "x" * 100_000 + '"'), "at most 128"),
    (model(layers='[[layer]]\nname = "' + "c" * 100_000 + '"\ntype = "flatten"\n'
           '[[layer]]\ntype = "fc"\nunits = 2\n'), "at most 128 long"),
    (model(layers='[[layer]]\ntype = "' + "c" * 100_000 + '"\n'), "unknown layer type"),
    (model(layers='[[layer]]\ntype = "flatten"\n' + "k" * 100_000 + " = 1\n"), "unknown key"),
    (model(layers='[[layer]]\ntype = "flatten"\n[[layer]]\ntype = "fc"\nunits = 2\n'
           'activation = ["relu"]\n'), "'activation' must be one of relu, relu6, none (got ['relu'])"),
])
def test_odd_names_and_values_give_one_short_line(text, fragment):
    fails(text, fragment)


# ---------------------------------------------------------------------- size limits


def conv(filters: int | str = 2, kernel: int | str = 1, extra: str = "") -> str:
    return f'[[layer]]\ntype = "conv2d"\nfilters = {filters}\nkernel = {kernel}\n{extra}\n'


@pytest.mark.parametrize(("text", "fragment"), [
    (model(input_="[65536, 1, 1]"), "'input' sizes must be at most 65,535"),
    (model(input_="[9223372036854775807, 1, 1]"), "'input' sizes must be at most 65,535"),
    (model(classes=65536), "'classes' must be at most 65,535"),
    (model(layers=conv(filters=65536) + FLAT_FC.format(classes=2)),
     "'filters' must be at most 65,535"),
    (model(layers=conv(kernel=1_000_000_000, extra='padding = "same"')
           + FLAT_FC.format(classes=2)), "'kernel' sizes must be at most 65,535"),
    (model(layers=conv(kernel="[1, 65536]") + FLAT_FC.format(classes=2)),
     "'kernel' sizes must be at most 65,535"),
    (model(layers=conv(extra="stride = 65536") + FLAT_FC.format(classes=2)),
     "'stride' sizes must be at most 65,535"),
    (model(layers='[[layer]]\ntype = "maxpool"\npool = [1, 99999999999999999999]\n'
           + FLAT_FC.format(classes=2)), "'pool' sizes must be at most 65,535"),
    (model(layers='[[layer]]\ntype = "flatten"\n[[layer]]\ntype = "fc"\nunits = 25000000\n'
           '[[layer]]\ntype = "fc"\nunits = 2\n'), "'units' must be at most 65,535"),
    (model(extra="[train]\nbatch_size = 1025"), "'batch_size' must be at most 1,024"),
    (model(extra="[train]\nlearning_rate = 1e39"), "'learning_rate' must be at most"),
])
def test_each_size_is_bounded(text, fragment):
    fails(text, fragment)


def test_the_largest_sizes_written_are_accepted():
    assert MAX_DIM == 65_535 and MAX_BATCH == 1_024
    m = parse_model(model(layers=conv(extra="stride = 65535") + FLAT_FC.format(classes=2),
                          extra="[train]\nbatch_size = 1024\nlearning_rate = 3.4e38"))
    # 8x8 with stride 65535: floor((8 - 1) / 65535) + 1 = 1 per dimension
    assert m.layers[0].out_shape == (1, 1, 2) and m.train.batch_size == 1_024
    # classes = units = 65,535 on a 1x1x1 input: 65,535 weights + 65,535 biases
    wide = parse_model(model(input_="[1, 1, 1]", classes=65535))
    assert wide.n_params == 2 * 65_535


def test_tensor_limit():
    assert MAX_TENSOR == 2**24 == 4096 * 4096
    pool = '[[layer]]\ntype = "maxpool"\npool = "global"\n' + FLAT_FC.format(classes=2)
    # 4096 x 4096 x 1 = 2**24 values: at the limit; global pool -> 1x1x1 -> fc 2
    assert parse_model(model(input_="[4096, 4096, 1]", layers=pool)).n_params == 1 * 2 + 2
    # 4096 x 4097 = 16,781,312 values
    fails(model(input_="[4096, 4097, 1]", layers=pool), "has 16,781,312 values")
    # a conv output past it: 4096 x 4096 x 2 = 33,554,432 values
    fails(model(input_="[4096, 4096, 1]", layers=conv(filters=2) + pool),
          "output 4096x4096x2 has 33,554,432 values")


def test_activation_total_limit():
    assert MAX_ACTIVATIONS == 2**26 == 4 * 2**24
    # a 4096x4096x1 input (2**24 values), then 1x1 max pools (no MACs, no weights) that each
    # output another 2**24 values; a global pool adds 1, the fc 2 (a flatten adds nothing:
    # its output is its input's buffer)
    pool = '[[layer]]\ntype = "maxpool"\npool = 1\n'
    head = '[[layer]]\ntype = "maxpool"\npool = "global"\n' + FLAT_FC.format(classes=2)
    # 2 pools: 3 x 2**24 + 1 + 2 values
    assert len(parse_model(model(input_="[4096, 4096, 1]", layers=pool * 2 + head)).layers) \
        == 5
    # 3 pools reach 4 x 2**24 = 2**26 exactly (allowed); the global pool's 1 more is not
    msg = fails(model(input_="[4096, 4096, 1]", layers=pool * 3 + head),
                "hold 67,108,865 values; mcusim accepts at most 67,108,864")
    assert "layer 3 'maxpool3'" in msg


def test_parameter_limit():
    assert MAX_PARAMS == 2**25 == 33_554_432
    # one fc layer from 1x1xN to 65,535 classes: N x 65,535 weights + 65,535 biases
    # = 65,535 (N + 1): N = 511 gives 33,553,920 <= 2**25; N = 512 gives 33,619,455 > 2**25
    ok = parse_model(model(input_="[1, 1, 511]", classes=65535))
    assert ok.n_params == 65_535 * 512 == 33_553_920
    fails(model(input_="[1, 1, 512]", classes=65535), "the model has 33,619,455 parameters")


def test_mac_limit():
    assert MAX_MACS == 2**32
    head = '[[layer]]\ntype = "avgpool"\npool = "global"\n' + FLAT_FC.format(classes=2)
    # 256x256x64 input, conv 64 filters 3x3 "same": 256*256*64 outputs x 9 x 64
    # = 2,415,919,104 MACs, then avgpool (0) and fc 64 -> 2 (128): under 2**32
    ok = parse_model(model(input_="[256, 256, 64]",
                           layers=conv(64, 3, 'padding = "same"') + head))
    assert ok.macs == 256 * 256 * 64 * 9 * 64 + 64 * 2 == 2_415_919_232
    # 5x5: 256*256*64 x 25 x 64 = 6,710,886,400 > 2**32
    fails(model(input_="[256, 256, 64]", layers=conv(64, 5, 'padding = "same"') + head),
          "6,710,886,400 multiply-accumulates")


def test_layer_count_limit():
    assert MAX_LAYERS == 4096
    flat = '[[layer]]\ntype = "flatten"\n'
    fc = '[[layer]]\ntype = "fc"\nunits = 2\n'
    assert len(parse_model(model(layers=flat * 4095 + fc)).layers) == 4096
    fails(model(layers=flat * 4096 + fc), "4,097 layers; mcusim accepts at most 4,096")


# ---------------------------------------------------------------------- no weights before the fit


def _specs():
    for name in zoo_names():
        spec = load_model(name)
        yield spec
        yield spec.with_train(lambda_min=0.3, epsilon="loss", rounding="stochastic")
        yield spec.with_trainable_tail(1)


@pytest.mark.parametrize("spec", list(_specs()), ids=lambda s: s.name)
def test_sizes_only_program_is_the_real_one_without_contents(spec):
    real = Program.build(spec, seed=4)
    dry = Program.build(spec, seed=4, sizes_only=True)
    assert list(real.buffers) == list(dry.buffers)
    for name, b in real.buffers.items():
        d = dry.buffers[name]
        assert (b.kind, b.region, b.layer, b.nbytes, b.data.dtype, b.data.shape, b.compare) \
            == (d.kind, d.region, d.layer, d.nbytes, d.data.dtype, d.data.shape, d.compare)
    assert real.pointers == dry.pointers

    def calls(p):
        return {g: [(o.kernel, o.args, o.layer, o.phase, o.seed) for o in ops]
                for g, ops in p.ops.items()}

    assert calls(real) == calls(dry)
    assert plan_memory(real).offsets == plan_memory(dry).offsets
    spans = ((0x2000_0000, 0x2100_0000), (0x0800_0000, 0x0900_0000))
    real.layout(*spans)
    dry.layout(*spans)
    assert {n: b.addr for n, b in real.buffers.items()} == \
        {n: b.addr for n, b in dry.buffers.items()}
    with pytest.raises(InternalError, match="cannot be run"):
        TwinExecutor(dry)


def test_a_large_model_is_reported_without_its_weights(monkeypatch, catalog,
                                                      default_toolchain):
    """33.5 million parameters (32 MiB of int8 weights, 128 MiB of int32 gradients): the
    budget says it does not fit, no float32 network is made, and the step's Python memory
    peak is that of the 1,898-parameter digits-cnn (images, catalog), not tens of MiB more."""
    from mcusim.analyze import simulate_step

    mcu = catalog.mcu("nRF52840")
    spec = parse_model(model(input_="[1, 1, 511]", classes=65535))
    assert spec.n_params == 33_553_920

    def peak(fn) -> int:
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small = load_model("digits-cnn")
    simulate_step(small, mcu, toolchain=default_toolchain, run=False)  # warm the caches
    base = peak(lambda: simulate_step(small, mcu, toolchain=default_toolchain, run=False))

    def no_weights(*args, **kwargs):
        raise AssertionError("FloatNet.init called before the fit check")

    monkeypatch.setattr(FloatNet, "init", classmethod(no_weights))
    out = {}
    big = peak(lambda: out.setdefault("r", simulate_step(
        spec, mcu, toolchain=default_toolchain, hypothetical=True)))
    r = out["r"]
    assert not r.fits and r.problems and r.cycles is None
    assert big < base + (4 << 20), (base, big)  # the int8 weights alone: 33,553,920 bytes
    # what it needs, by hand: fc weights 511 x 65,535 int8, int32 gradients of as many
    assert r.ram["trainable weights"] >= 511 * 65_535
    assert r.ram["gradient accumulators"] >= 4 * 511 * 65_535
    assert not r.hypothetical  # (its flash does not fit either: no hypothetical run)


@pytest.mark.parametrize(("layers", "batch", "why"), [
    # two 1x1 convs on 4096x4096x1: the input, two 16 MiB outputs and their errors > 64 MiB
    (conv(1) + conv(1), 1, "MiB of RAM, more than the 64 MiB"),
    # 1024x1024x1 -> conv 4 filters 3x3 same: 1024*1024*4 outputs x 9 x 1 = 37,748,736 MACs,
    # global pool, fc 4 -> 2: 8 more; x 3 (forward and backward) x 8 samples = 905,969,856
    (conv(4, 3, 'padding = "same"'), 8, "905,969,856 multiply-accumulates, more than"),
])
def test_no_hypothetical_run_for_steps_far_too_big(catalog, default_toolchain, monkeypatch,
                                                   layers, batch, why):
    from mcusim.analyze import simulate_step

    size = "[4096, 4096, 1]" if layers.count("conv2d") == 2 else "[1024, 1024, 1]"
    spec = parse_model(model(input_=size, layers=layers + '[[layer]]\ntype = "maxpool"\n'
                             'pool = "global"\n' + FLAT_FC.format(classes=2),
                             extra=f"[train]\nbatch_size = {batch}"))

    def no_weights(*args, **kwargs):
        raise AssertionError("FloatNet.init called")

    monkeypatch.setattr(FloatNet, "init", classmethod(no_weights))
    r = simulate_step(spec, catalog.mcu("nRF52840"), toolchain=default_toolchain,
                      hypothetical=True)
    assert not r.fits and not r.hypothetical and r.cycles is None
    assert r.assumptions[0].startswith("no hypothetical cost: ") and why in r.assumptions[0]


def test_no_hypothetical_run_for_thousands_of_kernel_calls(catalog, default_toolchain):
    """600 conv layers on 4x4x4 do not fit an nRF52840; a mini-batch of 8 makes thousands
    of kernel calls (about a millisecond each emulated): the report says so, at once."""
    from mcusim.analyze import PER_BATCH_GROUPS, PER_SAMPLE_GROUPS, simulate_step

    layers = "".join(conv(4, 1, f'activation = "{"relu" if i % 2 else "none"}"')
                     for i in range(600))
    spec = parse_model(model(input_="[4, 4, 4]", layers=layers + FLAT_FC.format(classes=2),
                             extra="[train]\nbatch_size = 8"))
    p = Program.build(spec, sizes_only=True)
    calls = 8 * sum(len(p.ops.get(g, [])) for g in PER_SAMPLE_GROUPS) + \
        sum(len(p.ops.get(g, [])) for g in PER_BATCH_GROUPS)
    assert calls > 4096
    r = simulate_step(spec, catalog.mcu("nRF52840"), toolchain=default_toolchain,
                      hypothetical=True)
    assert not r.fits and not r.hypothetical and r.cycles is None
    assert r.assumptions[0] == (f"no hypothetical cost: a mini-batch makes {calls:,} kernel "
                                "calls, more than the 4,096 mcusim emulates for a model that "
                                "does not fit")


def test_budget_of_a_large_model_under_a_2_gib_limit():
    """The command line, as a user runs it, in a child limited to 2 GiB of address space."""
    text = model(input_="[1, 1, 1]", classes=2, layers=(
        '[[layer]]\ntype = "fc"\nunits = 65535\nactivation = "relu"\n'
        '[[layer]]\ntype = "fc"\nunits = 255\nactivation = "relu"\n'
        '[[layer]]\ntype = "fc"\nunits = 2\n'))
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"mcusim-wide-{os.getpid()}.toml"
    path.write_text(text)
    try:
        r = run_cli("budget", str(path), "--mcu", "nRF52840", "--json", timeout=60)
    finally:
        path.unlink()
    assert r.returncode == 1, r.stderr
    d = json.loads(r.stdout)
    assert d["fits"] is False and d["hypothetical"] is False and d["cycles"] is None
    # weights: 1 x 65,535 + 65,535 x 255 + 255 x 2 int8, their gradients 4 bytes each
    n_weights = 65_535 + 65_535 * 255 + 255 * 2
    assert d["ram"]["trainable weights"] >= n_weights
    assert d["ram"]["gradient accumulators"] >= 4 * n_weights
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr


# ---------------------------------------------------------------------- divergence


def _tiny():
    return parse_model(model(input_="[2, 2, 1]", classes=3, layers=(
        '[[layer]]\ntype = "flatten"\n[[layer]]\ntype = "fc"\nunits = 4\n'
        'activation = "relu"\n[[layer]]\ntype = "fc"\nunits = 3\n'),
        extra="[train]\nbatch_size = 2"))


def _data(n: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 2, 2, 1)).astype(np.float32), np.arange(n) % 3)


def test_a_non_finite_start_stops_at_epoch_1():
    spec = _tiny()
    net = copy_net(FloatNet.init(spec, 0))
    w, _ = net.params["fc2"]
    # logit 0 = inf x a + ...: inf (then softmax takes inf - inf) or NaN (a = 0): the very
    # first loss is NaN
    w[0, 0] = np.inf
    x, y = _data()
    with pytest.raises(TrainingDiverged) as info:
        train_float(spec, x, y, x, y, epochs=3, net=net)
    msg = str(info.value)
    assert msg == ("float32 training diverged at epoch 1: loss is not finite; lower the "
                   "learning rate")
    assert info.value.exit_code == 1 and isinstance(info.value, McusimError)


def test_a_huge_learning_rate_stops_with_one_error_and_no_warnings():
    spec = _tiny().with_train(learning_rate=1e38)
    x, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warnings would be errors here
        with pytest.raises(TrainingDiverged, match=r"^float32 training diverged at epoch \d+: "
                           r"(loss|the weights of layer '\w+') (is|are) not finite; lower the "
                           r"learning rate$"):
            train_float(spec, x, y, x, y, epochs=5, update="sgd")


def test_a_sane_learning_rate_trains_with_finite_records():
    spec = _tiny()
    x, y = _data()
    _, recs = train_float(spec, x, y, x, y, epochs=2)
    assert all(math.isfinite(r.train_loss) for r in recs)


def test_float_trainer_names_the_samples_without_an_epoch():
    spec = _tiny()
    t = FloatTrainer(spec)
    w, _ = t.net.params["fc2"]
    w[...] = np.nan
    with pytest.raises(TrainingDiverged, match=r"diverged after 0 samples: loss is not finite"):
        t.train_sample(np.zeros((2, 2, 1), np.float32), 1)


class _NanLoss(TwinExecutor):
    """The twin, with the loss record's loss set to NaN after every loss kernel."""

    def call(self, op) -> None:
        super().call(op)
        if op.kernel == "fqt_softmax_xent":
            addr = self.program.buffers["loss"].addr + LOSS_DTYPE.fields["loss"][1]
            self.write(addr, np.float32(np.nan).tobytes())


def test_fqt_training_stops_on_a_non_finite_loss():
    spec = load_model("digits-cnn").with_train(batch_size=2)
    p = Program.build(spec)
    p.layout((0x2000_0000, 0x2010_0000), (0x0800_0000, 0x0810_0000))
    tr = Trainer(p, _NanLoss(p))
    tr.initialise()
    x = np.zeros(64, np.uint8)
    with pytest.raises(TrainingDiverged, match=r"^FQT training diverged after 1 sample: "
                       r"loss is not finite; lower the learning rate$"):
        tr.train_sample(x, 1)
    tr.epoch = 3
    with pytest.raises(TrainingDiverged, match=r"^FQT training diverged at epoch 3: "):
        tr.train_sample(x, 1)
    # a finite loss trains on: the real twin
    ok = Trainer(p, TwinExecutor(p))
    ok.initialise()
    assert math.isfinite(ok.train_sample(x, 1).loss)


def test_train_with_a_diverging_baseline_exits_1_with_one_line():
    r = run_cli("train", "digits-cnn", "--mcu", "nRF52840", "-d", "digits", "--epochs", "1",
                "--baseline-lr", "1e30", "--json", timeout=120)
    if "scikit-learn" in r.stderr:
        pytest.skip("the digits data set needs scikit-learn")
    assert r.returncode == 1, r.stderr[-2000:]
    lines = [ln for ln in error_lines(r.stderr) if ln.startswith("mcusim: error:")]
    assert len(lines) == 1 and "diverged at epoch 1" in lines[0], r.stderr[-2000:]
    assert "lower the learning rate" in lines[0]
    assert "Traceback" not in r.stderr and "warning" not in r.stderr
