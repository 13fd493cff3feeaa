"""Model descriptions: the zoo, shape inference, MAC counts, and one test per validation rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcusim.errors import McusimError, ModelError
from mcusim.model.schema import (
    LAYER_TYPES,
    LayerSpec,
    ModelSpec,
    TrainSettings,
    conv_output_size,
    parse_model,
    same_padding,
)
from mcusim.model.zoo import MODELS_DIR, load_model, zoo_names

ZOO = ("digits-cnn", "emnist-cnn", "gunpoint-cnn", "imu-cnn", "italypowerdemand-cnn",
       "japanesevowels-cnn", "mbednet-tail")

# The smallest valid model: 8x8x1 -> flatten -> fc 10.
FLAT_FC = """
[[layer]]
type = "flatten"

[[layer]]
type = "fc"
units = 10
"""


def toml(layers: str = FLAT_FC, *, train: str = "", model: str = "", input_: str = "[8, 8, 1]",
         classes: int = 10) -> str:
    """A small model description; `layers` is the [[layer]] part."""
    return (f'[model]\nname = "t"\ninput = {input_}\nclasses = {classes}\n{model}\n'
            f"{'[train]' if train else ''}\n{train}\n{layers}")


def fails(text: str, fragment: str, source: str = "<string>") -> str:
    with pytest.raises(ModelError) as info:
        parse_model(text, source=source)
    msg = str(info.value)
    assert fragment in msg, msg
    assert msg.startswith(Path(source).name + ": ") or msg.startswith("<string>: "), msg
    assert "\n" not in msg, msg
    return msg


# --------------------------------------------------------------------------- the zoo


def test_zoo_lists_the_seven_models():
    assert zoo_names() == sorted(ZOO)
    assert MODELS_DIR.name == "models" and MODELS_DIR.is_dir()


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_loads_and_shapes_chain(name):
    m = load_model(name)
    assert isinstance(m, ModelSpec)
    assert m.name == name
    assert m.source.endswith(f"{name}.toml")
    assert m.description
    assert m.layers[0].in_shape == m.input_shape
    for prev, layer in zip(m.layers, m.layers[1:], strict=False):
        assert layer.in_shape == prev.out_shape, layer.name
    last = m.layers[-1]
    assert last.type in ("fc", "conv2d") and not last.relu
    assert last.out_size == m.classes
    assert len({layer.name for layer in m.layers}) == len(m.layers)
    assert m.trainable_layers and m.first_trainable == m.trainable_layers[0]
    for layer in m.layers:
        assert layer.type in LAYER_TYPES
        if not layer.has_weights:
            assert not layer.trainable and layer.weight_shape == () and layer.n_params == 0
    json.dumps(m.to_dict())  # JSON-able


@pytest.mark.parametrize("name", ZOO)
def test_zoo_file_has_a_comment_header(name):
    text = (MODELS_DIR / f"{name}.toml").read_text()
    assert text.startswith(f"# {name} ")
    header = text.split("\n[model]")[0]
    assert "ours" in header  # says which sizes are our choice
    assert "[[layer]]" in header and "classes" in header  # documents the schema


def test_digits_cnn_shapes_macs_params_by_hand():
    m = load_model("digits-cnn")
    assert m.input_shape == (8, 8, 1) and m.classes == 10
    assert [layer.type for layer in m.layers] == [
        "conv2d", "maxpool", "conv2d", "maxpool", "flatten", "fc"]
    assert [layer.out_shape for layer in m.layers] == [
        (8, 8, 8),    # conv 3x3 same, 8 filters
        (4, 4, 8),    # maxpool 2
        (4, 4, 16),   # conv 3x3 same, 16 filters
        (2, 2, 16),   # maxpool 2
        (1, 1, 64),   # flatten: 2*2*16
        (1, 1, 10),   # fc 10
    ]
    conv1, pool1, conv2, _, _, fc = m.layers
    # "same" with k=3, s=1 on 8 (and on 4): out = in, pad_total = (in-1)*1 + 3 - in = 2 -> 1/1
    assert conv1.padding == (1, 1, 1, 1) and conv2.padding == (1, 1, 1, 1)
    assert pool1.kernel == (2, 2) and pool1.stride == (2, 2)
    assert conv1.weight_shape == (8, 3, 3, 1)
    assert conv2.weight_shape == (16, 3, 3, 8)
    assert fc.weight_shape == (10, 64)
    # MACs: conv1 8*8 outputs * 8 ch * 3*3*1 = 4608; conv2 4*4 * 16 * 3*3*8 = 18432;
    # fc 64*10 = 640; total 23680
    assert [layer.macs for layer in m.layers] == [4608, 0, 18432, 0, 0, 640]
    assert m.macs == 23680
    # params: conv1 72 + 8 = 80; conv2 1152 + 16 = 1168; fc 640 + 10 = 650; total 1898
    assert [layer.n_params for layer in m.layers] == [80, 0, 1168, 0, 0, 650]
    assert m.n_params == m.n_trainable_params == 1898
    assert (conv2.n_structures, conv2.struct_size) == (16, 72)
    assert (fc.n_structures, fc.struct_size) == (10, 64)
    assert m.trainable_layers == (0, 2, 5)
    assert m.train.batch_size == 8 and m.train.learning_rate == 0.01
    assert not m.train.partial
    # small: even as float32 the parameters take 7.6 KB of a 16 KB part
    assert m.n_params * 4 < 16 * 1024


def test_emnist_cnn_has_four_trainable_layers():
    m = load_model("emnist-cnn")
    assert m.input_shape == (28, 28, 1)
    assert len(m.trainable_layers) == 4
    assert m.layers[4].out_shape == (1, 1, 784)  # 7*7*16
    # fc1: 784*32 + 32 (32 wide so its int32 gradients fit an nRF52840)
    assert m.layers[5].n_params == 25120


def test_imu_cnn_is_one_dimensional():
    m = load_model("imu-cnn")
    assert m.input_shape == (1, 100, 6) and m.classes == 4
    conv1 = m.layers[0]
    assert conv1.kernel == (1, 5) and conv1.padding == (0, 0, 2, 2)
    assert [layer.out_shape for layer in m.layers] == [
        (1, 100, 16), (1, 50, 16), (1, 50, 32), (1, 25, 32), (1, 1, 800), (1, 1, 4)]
    # conv1 MACs: 100 outputs * 16 ch * 1*5*6 = 48000
    assert conv1.macs == 48000


@pytest.mark.parametrize(("name", "shapes", "params", "macs"), [
    # 150 steps, halved first: conv 7 (8, 16, 16 filters) with max pools 2, 2, 3 between
    ("gunpoint-cnn", [(1, 75, 1), (1, 75, 8), (1, 37, 8), (1, 37, 16), (1, 18, 16),
                      (1, 18, 16), (1, 6, 16), (1, 1, 96), (1, 1, 2)],
     [0, 7 * 8 + 8, 0, 7 * 8 * 16 + 16, 0, 7 * 16 * 16 + 16, 0, 0, 96 * 2 + 2],
     [0, 75 * 8 * 7, 0, 37 * 16 * 7 * 8, 0, 18 * 16 * 7 * 16, 0, 0, 96 * 2]),
    # 24 hourly values: conv 3 (8, 16 filters), max pools 2
    ("italypowerdemand-cnn", [(1, 24, 8), (1, 12, 8), (1, 12, 16), (1, 6, 16), (1, 1, 96),
                              (1, 1, 2)],
     [3 * 8 + 8, 0, 3 * 8 * 16 + 16, 0, 0, 96 * 2 + 2],
     [24 * 8 * 3, 0, 12 * 16 * 3 * 8, 0, 0, 96 * 2]),
    # 32 frames x 12 cepstra: conv 3 (16, 32 filters), max pools 2
    ("japanesevowels-cnn", [(1, 32, 16), (1, 16, 16), (1, 16, 32), (1, 8, 32), (1, 1, 256),
                            (1, 1, 9)],
     [3 * 12 * 16 + 16, 0, 3 * 16 * 32 + 32, 0, 0, 256 * 9 + 9],
     [32 * 16 * 3 * 12, 0, 16 * 32 * 3 * 16, 0, 0, 256 * 9]),
])
def test_time_series_cnns_by_hand(name, shapes, params, macs):
    """The zoo's 1-D CNNs for the UCR/UEA sets (mcusim/fqt/datasets.py): shapes, parameters
    and MACs as their headers state them."""
    m = load_model(name)
    assert [layer.out_shape for layer in m.layers] == shapes
    assert [layer.n_params for layer in m.layers] == params
    assert [layer.macs for layer in m.layers] == macs
    assert m.n_params == m.n_trainable_params == sum(params)
    header = (MODELS_DIR / f"{name}.toml").read_text().split("\n[model]")[0]
    words = " ".join(line.lstrip("#").strip() for line in header.splitlines())
    assert f"{sum(params):,} parameters" in words
    for layer in m.layers:
        if layer.type == "conv2d":
            assert layer.kernel[0] == 1 and layer.padding[:2] == (0, 0)  # 1-D: H = 1


def test_mbednet_tail_trains_only_the_last_two_layers():
    m = load_model("mbednet-tail")
    n = len(m.layers)
    assert m.trainable_layers == (n - 2, n - 1)
    assert m.first_trainable == n - 2
    assert all(layer.type == "fc" for layer in m.layers[-2:])
    frozen = [layer for layer in m.layers[: n - 2] if layer.has_weights]
    assert len(frozen) == 7 and not any(layer.trainable for layer in frozen)
    assert [layer.out_shape for layer in m.layers] == [
        (16, 16, 16), (16, 16, 16), (16, 16, 32), (8, 8, 32), (8, 8, 64), (4, 4, 64),
        (4, 4, 128), (1, 1, 128), (1, 1, 128), (1, 1, 64), (1, 1, 10)]
    # stride-2 "same" 3x3 on 32: out 16, pad_total = 15*2 + 3 - 32 = 1 -> top 0, bottom 1
    assert m.layers[0].padding == (0, 1, 0, 1)
    assert m.layers[1].weight_shape == (16, 3, 3)
    # dw1 MACs: 16*16*16 outputs * 3*3 = 36864
    assert m.layers[1].macs == 36864
    # trainable: fc1 128*64 + 64 = 8256, fc2 64*10 + 10 = 650
    assert m.n_trainable_params == 8906
    assert m.train.lambda_min == 1.0


# --------------------------------------------------------------------------- shape maths


@pytest.mark.parametrize(("size", "k", "s", "expected"), [
    (7, 3, 2, (4, 1, 1)),    # out ceil(7/2)=4; total 3*2+3-7 = 2
    (8, 3, 2, (4, 0, 1)),    # out 4; total 3*2+3-8 = 1 -> before 0, after 1
    (32, 3, 2, (16, 0, 1)),  # out 16; total 15*2+3-32 = 1
    (8, 3, 1, (8, 1, 1)),    # out 8; total 7+3-8 = 2
    (5, 4, 1, (5, 1, 2)),    # out 5; total 4+4-5 = 3 -> 1 before, 2 after
    (6, 5, 3, (2, 1, 1)),    # out 2; total 3+5-6 = 2
    (10, 1, 3, (4, 0, 0)),   # out 4; 3*3+1-10 = 0
    (9, 2, 4, (3, 0, 1)),    # out 3; 2*4+2-9 = 1
    (1, 1, 1, (1, 0, 0)),
])
def test_same_padding(size, k, s, expected):
    assert same_padding(size, k, s) == expected
    out, before, after = expected
    assert conv_output_size(size, k, s, before, after) == out


def test_same_padding_agrees_with_the_conv_formula():
    for size in range(1, 20):
        for k in range(1, 6):
            for s in range(1, 5):
                out, before, after = same_padding(size, k, s)
                assert conv_output_size(size, k, s, before, after) == out == -(-size // s)
                assert 0 <= before <= after <= before + 1
                assert before + after < k


def test_conv_output_size_valid():
    assert conv_output_size(8, 3, 1) == 6
    assert conv_output_size(7, 3, 2) == 3   # (7-3)//2 + 1
    assert conv_output_size(2, 3, 1) == 0   # does not fit


def test_same_padding_in_a_model():
    m = parse_model(toml("""
[[layer]]
type = "conv2d"
filters = 4
kernel = 3
stride = 2
padding = "same"

[[layer]]
type = "flatten"

[[layer]]
type = "fc"
units = 10
""", input_="[7, 7, 2]"))
    conv = m.layers[0]
    assert conv.out_shape == (4, 4, 4) and conv.padding == (1, 1, 1, 1)
    assert conv.macs == 4 * 4 * 4 * 3 * 3 * 2


def test_explicit_padding_valid_stride_and_defaults():
    m = parse_model(toml("""
[[layer]]
type = "conv2d"
filters = 3
kernel = [3, 5]
stride = [1, 2]
padding = [1, 0, 2, 2]
activation = "relu"
bias = false

[[layer]]
type = "dwconv2d"
kernel = 2
activation = "none"

[[layer]]
type = "avgpool"
pool = [2, 1]

[[layer]]
type = "flatten"

[[layer]]
type = "fc"
units = 10
""", input_="[8, 9, 1]"))
    conv, dw, pool, flat, _fc = m.layers
    # H: (8+1+0-3)//1+1 = 7; W: (9+2+2-5)//2+1 = 5
    assert conv.out_shape == (7, 5, 3) and conv.padding == (1, 0, 2, 2)
    assert conv.relu and not conv.bias and conv.trainable and conv.n_params == 3 * 3 * 5
    assert dw.out_shape == (6, 4, 3) and dw.padding == (0, 0, 0, 0) and not dw.relu
    assert pool.out_shape == (3, 4, 3) and pool.stride == (2, 1)
    assert flat.out_shape == (1, 1, 36)
    assert [layer.name for layer in m.layers] == [
        "conv2d0", "dwconv2d1", "avgpool2", "flatten3", "fc4"]
    assert m.train == TrainSettings()


def test_pool_floors_and_global_pool_feeds_fc():
    m = parse_model(toml("""
[[layer]]
type = "maxpool"
pool = 2

[[layer]]
type = "avgpool"
pool = "global"

[[layer]]
type = "fc"
units = 10
""", input_="[7, 5, 3]"))
    assert m.layers[0].out_shape == (3, 2, 3)
    assert m.layers[1].out_shape == (1, 1, 3) and m.layers[1].kernel == (3, 2)
    assert m.layers[2].weight_shape == (10, 3)


def test_conv_can_produce_the_logits():
    m = parse_model(toml("""
[[layer]]
type = "conv2d"
filters = 10
kernel = 4
""", input_="[4, 4, 2]"))
    assert m.layers[-1].out_shape == (1, 1, 10)


def test_layer_spec_without_weights():
    layer = LayerSpec(name="p", type="maxpool", in_shape=(4, 4, 2), out_shape=(2, 2, 2),
                      kernel=(2, 2), stride=(2, 2))
    assert not layer.has_weights
    assert (layer.n_weights, layer.n_structures, layer.struct_size, layer.macs) == (0, 0, 0, 0)
    assert (layer.in_size, layer.out_size) == (32, 8)


# --------------------------------------------------------------------------- loading


def test_load_by_name_is_case_insensitive():
    assert load_model("DIGITS-CNN") == load_model("digits-cnn")
    assert load_model("Imu-Cnn").name == "imu-cnn"


def test_load_by_path(tmp_path):
    path = MODELS_DIR / "digits-cnn.toml"
    assert load_model(path).layers == load_model("digits-cnn").layers
    assert load_model(str(path)).name == "digits-cnn"
    mine = tmp_path / "mine.toml"
    mine.write_text(toml().replace('name = "t"\n', ""))
    m = load_model(mine)
    assert m.name == "mine"  # default name: the file's stem
    assert m.source == str(mine)


def test_unknown_zoo_name_suggests_the_close_one():
    with pytest.raises(ModelError) as info:
        load_model("digit-cnn")
    msg = str(info.value)
    assert "unknown model 'digit-cnn'" in msg
    assert "did you mean 'digits-cnn'?" in msg
    for name in ZOO:
        assert name in msg
    assert isinstance(info.value, McusimError)


def test_missing_file():
    with pytest.raises(ModelError, match=r"not found.*nope\.toml"):
        load_model("/nonexistent/nope.toml")


def test_invalid_toml_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("[model]\nname = \n")
    with pytest.raises(ModelError) as info:
        load_model(bad)
    msg = str(info.value)
    assert msg.startswith("broken.toml: invalid TOML: ")
    assert "line 2" in msg and "\n" not in msg


def test_unreadable_file(tmp_path):
    d = tmp_path / "dir.toml"
    d.mkdir()
    with pytest.raises(ModelError, match=r"dir\.toml: cannot read"):
        load_model(d)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00[model]")
    with pytest.raises(ModelError, match=r"bin\.toml: invalid TOML"):
        load_model(binary)


def test_validation_error_names_the_file(tmp_path):
    path = tmp_path / "digits.toml"
    path.write_text(toml(FLAT_FC.replace('"fc"', '"dense"')))
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert str(info.value).startswith("digits.toml: layer 1 'dense1': unknown layer type")


# --------------------------------------------------------------------------- with_train


def test_with_train_replaces_and_validates():
    m = load_model("digits-cnn")
    p = m.with_train(lambda_min=0.25, lambda_max=0.5, rounding="stochastic", learning_rate=1)
    assert p.train.lambda_min == 0.25 and p.train.lambda_max == 0.5 and p.train.partial
    assert p.train.rounding == "stochastic"
    assert p.train.learning_rate == 1.0 and isinstance(p.train.learning_rate, float)
    assert p.train.batch_size == m.train.batch_size
    assert p.layers == m.layers
    assert not m.train.partial and m.train.lambda_min == 1.0  # the original is untouched
    assert m.with_train() == m
    with pytest.raises(ModelError, match=r"digits-cnn\.toml: \[train\] 'lambda_min' must be in \[0, 1\]"):
        m.with_train(lambda_min=2.0)
    with pytest.raises(ModelError, match=r"'lambda_min' \(0\.8\) must not exceed 'lambda_max'"):
        m.with_train(lambda_min=0.8, lambda_max=0.5)
    with pytest.raises(ModelError, match="did you mean 'lambda_min'"):
        m.with_train(lamda_min=0.5)
    with pytest.raises(ModelError, match="'rounding' must be one of nearest, floor, stochastic"):
        m.with_train(rounding="up")
    with pytest.raises(ModelError, match="'batch_size' must be an integer"):
        m.with_train(batch_size="8")


def test_to_dict_summary():
    d = load_model("mbednet-tail").to_dict()
    assert d["name"] == "mbednet-tail" and d["classes"] == 10
    assert d["input_shape"] == [32, 32, 3]
    assert d["train"]["learning_rate"] == 0.01 and d["train"]["partial"] is False
    fc2 = d["layers"][-1]
    assert fc2 == {**fc2, "name": "fc2", "type": "fc", "in_shape": [1, 1, 64],
                   "out_shape": [1, 1, 10], "trainable": True, "relu": False, "bias": True,
                   "macs": 640, "n_weights": 640}
    assert {"kernel", "stride", "padding"} <= set(fc2)
    assert json.loads(json.dumps(d)) == d


def test_train_table_is_read():
    m = parse_model(toml(train="""
learning_rate = 0.05
batch_size = 16
lambda_min = 0.1
lambda_max = 0.5
rounding = "floor"
alpha_a = 0.2
alpha_e = 0.3
alpha_w = 0.01
alpha_norm = 0.9
epsilon = "loss"
"""))
    assert m.train == TrainSettings(0.05, 16, 0.1, 0.5, "floor", 0.2, 0.3, 0.01, 0.9, "loss")
    assert m.train.partial


# --------------------------------------------------------------------------- validation


CONV = """
[[layer]]
type = "conv2d"
filters = 4
kernel = 3
{extra}
"""


def conv_model(extra: str, input_: str = "[8, 8, 1]") -> str:
    return toml(CONV.format(extra=extra) + FLAT_FC, input_=input_)


def test_unknown_layer_type_message_as_documented():
    text = toml("""
[[layer]]
type = "conv2d"
filters = 4
kernel = 3

[[layer]]
type = "maxpool"
pool = 2

[[layer]]
type = "flatten"

[[layer]]
name = "fc1"
type = "dense"
units = 10
""")
    msg = fails(text, "", source="models/digits.toml")
    assert msg == ("digits.toml: layer 3 'fc1': unknown layer type 'dense' (expected one of "
                   "conv2d, dwconv2d, fc, maxpool, avgpool, flatten, add)")


def test_unknown_layer_type_close_match():
    fails(toml(FLAT_FC.replace('"flatten"', '"flaten"')), "did you mean 'flatten'?")


def test_unknown_layer_key_did_you_mean():
    fails(conv_model("filter = 3"), "layer 0 'conv2d0': unknown key 'filter' (did you mean 'filters'?)")


def test_key_that_does_not_apply_to_the_layer_type():
    fails(toml('[[layer]]\ntype = "maxpool"\npool = 2\nstride = 2\n' + FLAT_FC),
          "key 'stride' does not apply to maxpool layers: a pool's stride is always its pool size")
    fails(toml('[[layer]]\ntype = "flatten"\ntrainable = true\n[[layer]]\ntype = "fc"\nunits = 10\n'),
          "key 'trainable' does not apply to flatten layers: it has no weights")
    fails(toml(FLAT_FC + 'filters = 3\n'), "layer 1 'fc1': key 'filters' does not apply to fc layers")


def test_unknown_train_key_did_you_mean():
    fails(toml(train="lamda_min = 0.5"), "[train] unknown key 'lamda_min' (did you mean 'lambda_min'?)")


def test_unknown_model_key_did_you_mean():
    fails(toml(model="clases = 3"), "[model] unknown key 'clases' (did you mean 'classes'?)")


def test_unknown_top_level_key():
    fails(toml() + "\n[trian]\nbatch_size = 2\n", "unknown top-level key 'trian' (did you mean 'train'?)")


@pytest.mark.parametrize(("text", "fragment"), [
    (toml('[[layer]]\ntype = "conv2d"\nkernel = 3\n' + FLAT_FC), "layer 0 'conv2d0': missing required key 'filters'"),
    (toml('[[layer]]\ntype = "conv2d"\nfilters = 3\n' + FLAT_FC), "layer 0 'conv2d0': missing required key 'kernel'"),
    (toml('[[layer]]\ntype = "flatten"\n[[layer]]\ntype = "fc"\n'), "layer 1 'fc1': missing required key 'units'"),
    (toml('[[layer]]\ntype = "maxpool"\n' + FLAT_FC), "layer 0 'maxpool0': missing required key 'pool'"),
    (toml('[[layer]]\nname = "x"\n' + FLAT_FC), "layer 0 'x': missing required key 'type'"),
    ('[model]\nclasses = 10\n' + FLAT_FC, "[model] missing required key 'input'"),
    ('[model]\ninput = [8, 8, 1]\n' + FLAT_FC, "[model] missing required key 'classes'"),
    (FLAT_FC, "missing [model] table"),
])
def test_missing_required_key(text, fragment):
    fails(text, fragment)


@pytest.mark.parametrize(("text", "fragment"), [
    (conv_model("").replace("filters = 4", "filters = 0"), "'filters' must be >= 1 (got 0)"),
    (toml(FLAT_FC.replace("units = 10", "units = -1")), "layer 1 'fc1': 'units' must be >= 1 (got -1)"),
    (conv_model("").replace("kernel = 3", "kernel = 0"), "'kernel' sizes must be >= 1"),
    (conv_model("stride = [1, 0]"), "'stride' sizes must be >= 1"),
    (toml('[[layer]]\ntype = "maxpool"\npool = 0\n' + FLAT_FC), "'pool' sizes must be >= 1"),
    (toml(input_="[0, 8, 1]"), "[model] 'input' sizes must be >= 1"),
    (toml(classes=0), "[model] 'classes' must be >= 2"),
])
def test_non_positive_sizes(text, fragment):
    fails(text, fragment)


def test_kernel_larger_than_padded_input():
    fails(conv_model("", input_="[2, 8, 1]"), "layer 0 'conv2d0': kernel 3x3 is larger than the padded input 2x8")
    # with padding 1 the 3x3 kernel fits a 2x2 input: (2+2-3)//1+1 = 2
    m = parse_model(conv_model("padding = 1", input_="[2, 2, 1]"))
    assert m.layers[0].out_shape == (2, 2, 4)


def test_pool_larger_than_input():
    fails(toml('[[layer]]\ntype = "maxpool"\npool = 2\n' + FLAT_FC, input_="[1, 8, 1]"),
          "layer 0 'maxpool0': pool 2x2 is larger than its input 1x8")


def test_fc_needs_a_flat_input():
    fails(toml('[[layer]]\nname = "head"\ntype = "fc"\nunits = 10\n'),
          "layer 0 'head': fc input is 8x8x1, not 1x1xN: put a flatten before it")


@pytest.mark.parametrize(("layers", "fragment"), [
    ('[[layer]]\ntype = "flatten"\n', "layer 0 'flatten0': the last layer must be an fc or conv2d layer"),
    ('[[layer]]\ntype = "dwconv2d"\nkernel = 8\n', "the last layer must be an fc or conv2d layer producing the 10 logits (got dwconv2d)"),
    (FLAT_FC + 'activation = "relu"\n', "layer 1 'fc1': the last layer produces the logits and must not have activation = \"relu\""),
    (FLAT_FC.replace("units = 10", "units = 7"), "the last layer outputs 1x1x7 = 7 values but [model] classes = 10"),
    ('[[layer]]\ntype = "conv2d"\nfilters = 10\nkernel = 3\n', "the last layer outputs 6x6x10 = 360 values"),
])
def test_last_layer_must_produce_the_logits(layers, fragment):
    fails(toml(layers), fragment)


@pytest.mark.parametrize(("train", "fragment"), [
    ("lambda_min = 1.5", "[train] 'lambda_min' must be in [0, 1] (got 1.5)"),
    ("lambda_min = -0.1", "[train] 'lambda_min' must be in [0, 1]"),
    ("lambda_max = 2", "[train] 'lambda_max' must be in [0, 1]"),
    ("lambda_min = 0.6\nlambda_max = 0.3", "'lambda_min' (0.6) must not exceed 'lambda_max' (0.3)"),
    ("batch_size = 0", "[train] 'batch_size' must be >= 1 (got 0)"),
    ("learning_rate = 0", "[train] 'learning_rate' must be > 0"),
    ("learning_rate = -0.01", "[train] 'learning_rate' must be > 0"),
    ("learning_rate = inf", "[train] 'learning_rate' must be > 0"),
    ("alpha_a = 0", "[train] 'alpha_a' must be in (0, 1] (got 0.0)"),
    ("alpha_e = 1.5", "[train] 'alpha_e' must be in (0, 1]"),
    ("alpha_w = -0.001", "[train] 'alpha_w' must be in (0, 1]"),
    ("alpha_norm = nan", "[train] 'alpha_norm' must be in (0, 1]"),
    ('rounding = "round"', "[train] 'rounding' must be one of nearest, floor, stochastic (got 'round')"),
    ('epsilon = "surprise"', "[train] 'epsilon' must be one of layer_error, loss (got 'surprise')"),
])
def test_train_settings_are_checked(train, fragment):
    fails(toml(train=train), fragment)


def test_train_edge_values_are_accepted():
    m = parse_model(toml(train="lambda_min = 0.0\nlambda_max = 1.0\nalpha_a = 1.0\nbatch_size = 1"))
    assert m.train.lambda_min == 0.0 and m.train.alpha_a == 1.0 and m.train.partial


def test_frozen_layer_after_a_trainable_one():
    msg = fails(toml("""
[[layer]]
name = "c1"
type = "conv2d"
filters = 4
kernel = 3

[[layer]]
name = "c2"
type = "conv2d"
filters = 4
kernel = 3
trainable = false
""" + FLAT_FC), "layer 1 'c2': frozen layers must come before trainable ones: the method trains the tail")
    assert "layer 0 'c1' is trainable" in msg


def test_frozen_then_trainable_is_fine():
    m = parse_model(toml(CONV.format(extra="trainable = false") + FLAT_FC))
    assert m.trainable_layers == (2,) and m.first_trainable == 2
    assert m.n_trainable_params == 6 * 6 * 4 * 10 + 10
    assert m.n_params == m.n_trainable_params + 4 * 9 + 4


def test_no_trainable_layer():
    fails(toml(FLAT_FC + "trainable = false\n"), "no trainable layer")


def test_duplicate_layer_names():
    fails(toml('[[layer]]\nname = "a"\ntype = "flatten"\n[[layer]]\nname = "a"\ntype = "fc"\nunits = 10\n'),
          "layer 1 'a': duplicate layer name (layer 0 has it too)")
    # a given name may collide with a default one
    fails(toml('[[layer]]\nname = "fc1"\ntype = "flatten"\n[[layer]]\ntype = "fc"\nunits = 10\n'),
          "layer 1 'fc1': duplicate layer name")


def test_no_layers():
    fails(toml(""), "no layers")
    fails("layer = []\n" + toml(""), "no layers")
    fails(toml('[layer]\ntype = "flatten"\n'), "'layer' must be an array of tables: write [[layer]]")


@pytest.mark.parametrize(("text", "fragment"), [
    (conv_model("").replace("filters = 4", 'filters = "4"'), "'filters' must be an integer (got '4')"),
    (conv_model("").replace("filters = 4", "filters = true"), "'filters' must be an integer (got True)"),
    (conv_model("").replace("kernel = 3", "kernel = 3.0"), "'kernel' must be an integer or a list of two integers (got 3.0)"),
    (conv_model("").replace("kernel = 3", "kernel = [3, 3, 3]"), "'kernel' must be an integer or a list of two integers"),
    (conv_model('trainable = "yes"'), "'trainable' must be true or false (got 'yes')"),
    (conv_model("bias = 1"), "'bias' must be true or false (got 1)"),
    (conv_model('activation = "sigmoid"'), "'activation' must be one of relu, relu6, none (got 'sigmoid')"),
    (conv_model('padding = "full"'), "'padding' must be \"valid\", \"same\", an integer or [top, bottom, left, right] (got 'full')"),
    (conv_model("padding = [1, 1]"), "'padding' must be \"valid\""),
    (toml('[[layer]]\ntype = "maxpool"\npool = "all"\n' + FLAT_FC), "'pool' must be an integer, [ph, pw] or \"global\""),
    (toml(train='learning_rate = "0.1"'), "[train] 'learning_rate' must be a number (got '0.1')"),
    (toml(train="batch_size = 8.5"), "[train] 'batch_size' must be an integer (got 8.5)"),
    (toml(train="rounding = 1"), "[train] 'rounding' must be a string"),
    (toml(input_='"8x8"'), "[model] 'input' must be a list of three integers"),
    (toml(input_="[8, 8]"), "[model] 'input' must be a list of three integers"),
    (toml(classes='"ten"'), "[model] 'classes' must be an integer"),
    (toml().replace('name = "t"', "name = 3"), "[model] 'name' must be a non-empty string"),
    (toml().replace('name = "t"', 'description = 1'), "[model] 'description' must be a string"),
    (toml(FLAT_FC.replace('type = "fc"', 'type = "fc"\nname = 5')), "layer 1 'fc1': 'name' must be a string"),
    (toml(FLAT_FC.replace('type = "fc"', 'type = "fc"\nname = "my layer"')), "'name' must be a string of letters"),
    (toml('[[layer]]\ntype = 3\n'), "unknown layer type 3"),
    ("train = 3\n" + toml(), "'train' must be a table"),
    ("model = 1\n" + FLAT_FC, "'model' must be a table"),
])
def test_wrong_value_types(text, fragment):
    fails(text, fragment)


@pytest.mark.parametrize(("padding", "fragment"), [
    ("-1", "'padding' must be >= 0 (got -1)"),
    ("[0, 0, -1, 0]", "'padding' must be >= 0"),
    ("3", "'padding' 3 must be smaller than the kernel 3x3"),
    ("[0, 0, 0, 3]", "must be smaller than the kernel 3x3"),
])
def test_padding_numbers(padding, fragment):
    fails(conv_model(f"padding = {padding}"), fragment)


def test_padding_below_the_kernel_is_fine():
    m = parse_model(conv_model("padding = [2, 0, 0, 2]"))
    # H: (8+2-3)+1 = 8, W: (8+2-3)+1 = 8
    assert m.layers[0].out_shape == (8, 8, 4)


def test_invalid_toml_string():
    fails("[model\n", "<string>: invalid TOML: ")


def test_messages_start_with_the_source_name():
    msg = fails(toml(train="batch_size = 0"), "", source="/some/dir/cfg.toml")
    assert msg.startswith("cfg.toml: [train] 'batch_size'")
