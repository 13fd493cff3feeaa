"""The ONNX importer (mcusim.model.onnx): small graphs built with onnx.helper, one per
supported op and attribute variant, each imported and run through the test evaluator
(tests/import_support.py) and compared with onnxruntime on the original file
(mcusim.model.reference_runtime); and every error path, each one line of ModelError."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mcusim.errors import ModelError  # noqa: E402
from mcusim.model.onnx import read_onnx  # noqa: E402
from mcusim.model.reference_runtime import run_reference  # noqa: E402

from .import_support import forward  # noqa: E402

IR_VERSION = 8


def _w(rng, *shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


class G:
    """A graph under construction: nodes, initializers, one float input and output."""

    def __init__(self, in_dims, seed=0):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.in_dims = in_dims
        self.k = 0

    def init(self, arr, name=None):
        self.k += 1
        name = name or f"c{self.k}"
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def w(self, *shape, scale=0.5):
        return self.init(_w(self.rng, *shape, scale=scale))

    def node(self, op, inputs, name=None, n_out=1, **attrs):
        self.k += 1
        name = name or f"{op.lower()}{self.k}"
        outs = [f"{name}_out{i}" if i else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0]

    def model(self, out, opset=17, out_dims=None, elem=TensorProto.FLOAT):
        x = helper.make_tensor_value_info("x", elem, self.in_dims)
        y = helper.make_tensor_value_info(out, TensorProto.FLOAT, out_dims)
        g = helper.make_graph(self.nodes, "g", [x], [y], initializer=self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                                 ir_version=IR_VERSION)


def _save(tmp_path, model, name="model.onnx"):
    p = tmp_path / name
    p.write_bytes(model.SerializeToString())
    return p


def check(tmp_path, model, *, input_shape=None, n=3, lo=-1.0, hi=1.0, name="model.onnx"):
    """Import, then compare the evaluator with onnxruntime on n random inputs."""
    p = _save(tmp_path, model, name)
    m = read_onnx(p, input_shape=input_shape)
    rng = np.random.default_rng(1)
    for _ in range(n):
        x = rng.uniform(lo, hi, m.input_shape).astype(np.float32)
        ref = run_reference(p, x)
        got = forward(m, x)
        assert got.shape == ref.shape == (m.outputs,)
        atol = 1e-5 * max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=atol)
    return m


def types(m):
    return [L.table["type"] for L in m.layers]


def layer(m, t, k=0):
    return [L for L in m.layers if L.table["type"] == t][k]


def error(tmp_path, model_or_bytes, *, input_shape=None, name="bad.onnx"):
    p = tmp_path / name
    p.write_bytes(model_or_bytes if isinstance(model_or_bytes, bytes)
                  else model_or_bytes.SerializeToString())
    with pytest.raises(ModelError) as ei:
        read_onnx(p, input_shape=input_shape)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(str(p)), msg
    return msg


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize("opset", [17, 18])
def test_small_cnn_conv_relu_pool_gap_gemm_softmax(tmp_path, opset):
    g = G([1, 3, 8, 8])
    h = g.node("Conv", ["x", g.w(4, 3, 3, 3), g.w(4)], name="conv1", pads=[1, 1, 1, 1])
    h = g.node("Relu", [h])
    h = g.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.node("GlobalAveragePool", [h])
    h = g.node("Flatten", [h])
    h = g.node("Gemm", [h, g.w(5, 4), g.w(5)], name="fc", transB=1)
    y = g.node("Softmax", [h])
    m = check(tmp_path, g.model(y, opset=opset))
    assert types(m) == ["conv2d", "maxpool", "avgpool", "fc"]
    assert m.input_shape == (8, 8, 3) and m.outputs == 5 and m.loss == "xent"
    conv = m.layers[0].table
    assert conv == {"name": "conv1", "type": "conv2d", "inputs": ["input"], "filters": 4,
                    "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1, 1, 1],
                    "activation": "relu", "bias": True}
    assert m.layers[0].weight.shape == (4, 3, 3, 3) and m.layers[0].weight.dtype == np.float32
    assert m.layers[1].table["pool"] == [2, 2] and m.layers[2].table["pool"] == "global"
    assert m.layers[3].table["inputs"] == [m.layers[2].name]
    assert any("Softmax" in d for d in m.dropped) and any("Flatten" in d for d in m.dropped)
    assert m.format == "onnx" and not m.quantized


@pytest.mark.parametrize("auto_pad,size,stride", [
    ("SAME_UPPER", 7, 2), ("SAME_LOWER", 7, 2), ("SAME_UPPER", 8, 2), ("VALID", 7, 2),
    ("SAME_LOWER", 6, 1)])
def test_conv_auto_pad(tmp_path, auto_pad, size, stride):
    g = G([1, 2, size, size + 1])
    h = g.node("Conv", ["x", g.w(3, 2, 4, 4)], auto_pad=auto_pad, strides=[stride, stride])
    m = check(tmp_path, g.model(h))
    t = m.layers[0].table
    assert t["bias"] is False and m.layers[0].bias is None
    if auto_pad == "SAME_UPPER" and size == 7:
        assert t["padding"] == [1, 2, 1, 1]  # TensorFlow's rule: the extra row at the end
    if auto_pad == "SAME_LOWER" and size == 7:
        assert t["padding"] == [2, 1, 1, 1]
    if auto_pad == "VALID":
        assert t["padding"] == [0, 0, 0, 0]


@pytest.mark.parametrize("pads,strides", [([0, 1, 2, 0], [1, 1]), ([2, 0, 1, 2], [2, 3]),
                                          ([1, 1, 1, 1], [3, 1])])
def test_conv_explicit_asymmetric_pads_and_strides(tmp_path, pads, strides):
    g = G([1, 2, 9, 10])
    h = g.node("Conv", ["x", g.w(3, 2, 3, 3), g.w(3)], pads=pads, strides=strides,
               kernel_shape=[3, 3], dilations=[1, 1], group=1)
    m = check(tmp_path, g.model(h))
    t, b, left, right = m.layers[0].table["padding"]
    assert [t, left, b, right] == pads  # ONNX [top, left, bottom, right]
    assert m.layers[0].table["stride"] == strides


def test_conv1d_as_h1(tmp_path):
    g = G([1, 3, 20])
    h = g.node("Conv", ["x", g.w(4, 3, 5), g.w(4)], pads=[2, 1], strides=[2])
    h = g.node("Relu", [h])
    h = g.node("MaxPool", [h], kernel_shape=[2], strides=[2])
    h = g.node("Flatten", [h])
    h = g.node("Gemm", [h, g.w(6, 4 * 5), g.w(6)], transB=1)
    m = check(tmp_path, g.model(h))
    assert m.input_shape == (1, 20, 3)
    c = m.layers[0].table
    assert c["kernel"] == [1, 5] and c["stride"] == [1, 2] and c["padding"] == [0, 0, 2, 1]
    assert m.layers[1].table["pool"] == [1, 2]
    assert types(m) == ["conv2d", "maxpool", "flatten", "fc"]
    assert any("1-D" in n for n in m.layers[0].notes)


def test_depthwise_and_pointwise_with_clip_relu6(tmp_path):
    g = G([1, 4, 6, 6])
    h = g.node("Conv", ["x", g.w(4, 1, 3, 3), g.w(4)], group=4, pads=[1, 1, 1, 1])
    h = g.node("Clip", [h, g.init(np.float32(0)), g.init(np.float32(6))])
    h = g.node("Conv", [h, g.w(8, 4, 1, 1)])
    h = g.node("Clip", [h, g.init(np.float32(0))])  # Clip(0, inf): relu
    m = check(tmp_path, g.model(h), lo=-4, hi=4)
    assert types(m) == ["dwconv2d", "conv2d"]
    assert m.layers[0].weight.shape == (4, 3, 3)
    assert m.layers[0].table["activation"] == "relu6" and "filters" not in m.layers[0].table
    assert m.layers[1].table["activation"] == "relu"


def test_pad_folded_into_conv(tmp_path):
    g = G([1, 2, 6, 7])
    p = g.node("Pad", ["x", g.init(np.array([0, 0, 1, 2, 0, 0, 1, 0], np.int64))], name="pad0")
    h = g.node("Conv", [p, g.w(3, 2, 3, 3)], pads=[1, 0, 0, 1])
    m = check(tmp_path, g.model(h))
    assert m.layers[0].table["padding"] == [2, 1, 2, 1]
    assert any("Pad" in n and "folded" in n for n in m.layers[0].notes)
    assert any("pad0" in d for d in m.dropped)


def test_pad_opset18_axes_and_zero_value(tmp_path):
    g = G([1, 2, 6, 6])
    p = g.node("Pad", ["x", g.init(np.array([1, 1, 0, 2], np.int64)),
                       g.init(np.float32(0.0)), g.init(np.array([2, 3], np.int64))])
    h = g.node("Conv", [p, g.w(3, 2, 3, 3)])
    m = check(tmp_path, g.model(h, opset=18))
    assert m.layers[0].table["padding"] == [1, 0, 1, 2]


@pytest.mark.parametrize("conv_bias", [True, False])
def test_batchnorm_folded_into_conv(tmp_path, conv_bias):
    g = G([1, 3, 6, 6])
    ins = ["x", g.w(4, 3, 3, 3)] + ([g.w(4)] if conv_bias else [])
    h = g.node("Conv", ins, pads=[1, 1, 1, 1])
    bn = [g.init(g.rng.uniform(0.5, 2, 4).astype(np.float32)), g.w(4), g.w(4),
          g.init(g.rng.uniform(0.1, 2, 4).astype(np.float32))]
    h = g.node("BatchNormalization", [h, *bn], name="bn1", epsilon=1e-3)
    h = g.node("Relu", [h])
    m = check(tmp_path, g.model(h))
    L = m.layers[0]
    assert len(m.layers) == 1 and L.table["bias"] is True and L.table["activation"] == "relu"
    assert L.ops == ["Conv", "BatchNormalization", "Relu"]
    assert any("BatchNormalization 'bn1' folded" in n for n in L.notes)


def test_batchnorm_folded_into_depthwise_and_gemm(tmp_path):
    g = G([1, 3, 4, 4])
    h = g.node("Conv", ["x", g.w(3, 1, 3, 3)], group=3, pads=[1, 1, 1, 1])
    bn = [g.init(g.rng.uniform(0.5, 2, 3).astype(np.float32)), g.w(3), g.w(3),
          g.init(g.rng.uniform(0.1, 2, 3).astype(np.float32))]
    h = g.node("BatchNormalization", [h, *bn])
    h = g.node("Flatten", [h])
    h = g.node("Gemm", [h, g.w(48, 5)])  # transB = 0
    bn = [g.init(g.rng.uniform(0.5, 2, 5).astype(np.float32)), g.w(5), g.w(5),
          g.init(g.rng.uniform(0.1, 2, 5).astype(np.float32))]
    h = g.node("BatchNormalization", [h, *bn])
    m = check(tmp_path, g.model(h))
    assert types(m) == ["dwconv2d", "flatten", "fc"]
    assert m.layers[2].table["bias"] is True


@pytest.mark.parametrize("trans_b,alpha,beta,c_shape", [
    (0, 1.0, 1.0, (5,)), (1, 0.5, 2.0, (1, 5)), (0, 2.0, 0.25, (1,)), (1, 1.0, 1.0, None)])
def test_gemm_variants(tmp_path, trans_b, alpha, beta, c_shape):
    g = G([1, 7])
    B = g.w(*((5, 7) if trans_b else (7, 5)))
    ins = ["x", B] + ([g.init(_w(g.rng, *c_shape))] if c_shape else [])
    h = g.node("Gemm", ins, transB=trans_b, alpha=alpha, beta=beta)
    m = check(tmp_path, g.model(h))
    L = m.layers[0]
    assert L.weight.shape == (5, 7) and L.table["units"] == 5
    assert L.table["bias"] is (c_shape is not None)
    assert m.input_shape == (1, 1, 7)


def test_matmul_add_bias_relu_chain(tmp_path):
    g = G([1, 6])
    h = g.node("MatMul", ["x", g.w(6, 8)])
    h = g.node("Add", [h, g.w(8)])
    h = g.node("Relu", [h])
    h = g.node("MatMul", [h, g.w(8, 3)])
    h = g.node("Add", [g.w(1, 3), h])  # constant first, shape (1, 3)
    m = check(tmp_path, g.model(h))
    assert types(m) == ["fc", "fc"]
    assert [L.table["bias"] for L in m.layers] == [True, True]
    assert m.layers[0].table["activation"] == "relu"
    assert m.layers[0].ops == ["MatMul", "Add", "Relu"]


def test_matmul_without_bias(tmp_path):
    g = G([1, 6])
    h = g.node("MatMul", ["x", g.w(6, 4)])
    m = check(tmp_path, g.model(h))
    assert m.layers[0].table["bias"] is False and m.layers[0].bias is None


def test_conv_bias_add_per_channel(tmp_path):
    g = G([1, 2, 5, 5])
    h = g.node("Conv", ["x", g.w(3, 2, 3, 3)])
    h = g.node("Add", [h, g.init(_w(g.rng, 3, 1, 1))])
    m = check(tmp_path, g.model(h))
    assert m.layers[0].table["bias"] is True


def test_residual_add_with_fused_relu(tmp_path):
    g = G([1, 4, 6, 6])
    a = g.node("Conv", ["x", g.w(4, 4, 3, 3), g.w(4)], name="c1", pads=[1, 1, 1, 1])
    a = g.node("Relu", [a])
    h = g.node("Conv", [a, g.w(4, 4, 3, 3), g.w(4)], name="c2", pads=[1, 1, 1, 1])
    h = g.node("Relu", [h])
    h = g.node("Conv", [h, g.w(4, 4, 3, 3), g.w(4)], name="c3", pads=[1, 1, 1, 1])
    h = g.node("Add", [a, h], name="res")
    h = g.node("Relu", [h])
    h = g.node("GlobalAveragePool", [h])
    h = g.node("Flatten", [h])
    h = g.node("Gemm", [h, g.w(3, 4), g.w(3)], transB=1)
    m = check(tmp_path, g.model(h))
    assert types(m) == ["conv2d", "conv2d", "conv2d", "add", "avgpool", "fc"]
    add = layer(m, "add")
    assert add.table == {"name": "res", "type": "add", "inputs": ["c1", "c3"],
                         "activation": "relu"}
    assert m.layers[0].table["activation"] == "relu"  # c1 feeds c2 and the add: still fused
    assert m.layers[2].table["activation"] == "none"


@pytest.mark.parametrize("opset,keepdims", [(17, 1), (18, 1), (18, 0)])
def test_reducemean_over_hw(tmp_path, opset, keepdims):
    g = G([1, 3, 4, 5])
    h = g.node("Conv", ["x", g.w(6, 3, 1, 1)])
    if opset >= 18:
        h = g.node("ReduceMean", [h, g.init(np.array([-1, 2], np.int64))], keepdims=keepdims)
    else:
        h = g.node("ReduceMean", [h], axes=[2, 3], keepdims=keepdims)
    if keepdims:
        h = g.node("Flatten", [h])
    h = g.node("Gemm", [h, g.w(2, 6)], transB=1)
    m = check(tmp_path, g.model(h, opset=opset))
    assert types(m) == ["conv2d", "avgpool", "fc"]
    assert layer(m, "avgpool").table["pool"] == "global"


def test_flatten_after_conv_permutes_fc_columns(tmp_path):
    g = G([1, 2, 4, 3])
    h = g.node("Conv", ["x", g.w(5, 2, 3, 3), g.w(5)], pads=[1, 1, 1, 1])
    h = g.node("Flatten", [h])
    B = _w(g.rng, 4, 5 * 4 * 3)
    h = g.node("Gemm", [h, g.init(B), g.w(4)], transB=1)
    m = check(tmp_path, g.model(h))
    assert types(m) == ["conv2d", "flatten", "fc"]
    fc = m.layers[2]
    assert any("permuted" in n for n in fc.notes)
    # column (c, h, w) of the ONNX fc is column (h, w, c) of mcusim's
    C, H, W = 5, 4, 3
    for c, hh, ww in [(0, 0, 1), (4, 3, 2), (2, 1, 0)]:
        np.testing.assert_array_equal(fc.weight[:, hh * W * C + ww * C + c],
                                      B[:, c * H * W + hh * W + ww])


def test_reshape_flatten_variants(tmp_path):
    """Reshape [1, -1], [0, -1] and a PyTorch-style computed shape (Shape, Gather,
    Unsqueeze, Concat) all flatten in CHW order."""
    for variant in ("minus1", "zero", "computed"):
        g = G([1, 2, 3, 3])
        h = g.node("Conv", ["x", g.w(4, 2, 2, 2)])
        if variant == "minus1":
            shape = g.init(np.array([1, -1], np.int64))
        elif variant == "zero":
            shape = g.init(np.array([0, -1], np.int64))
        else:
            s = g.node("Shape", [h])
            n0 = g.node("Gather", [s, g.init(np.array(0, np.int64))], axis=0)
            n0 = g.node("Unsqueeze", [n0, g.init(np.array([0], np.int64))])
            shape = g.node("Concat", [n0, g.init(np.array([-1], np.int64))], axis=0)
        h = g.node("Reshape", [h, shape])
        h = g.node("Gemm", [h, g.w(3, 16), g.w(3)], transB=1)
        m = check(tmp_path, g.model(h), name=f"{variant}.onnx")
        assert types(m) == ["conv2d", "flatten", "fc"], variant


def test_squeeze_unsqueeze_identity_dropout_dropped(tmp_path):
    g = G([1, 3, 4, 4])
    h = g.node("Conv", ["x", g.w(6, 3, 3, 3)])
    h = g.node("GlobalMaxPool", [h])
    h = g.node("Squeeze", [h, g.init(np.array([2, 3], np.int64))])
    h = g.node("Dropout", [h], n_out=2)
    h = g.node("Identity", [h])
    h = g.node("Gemm", [h, g.w(4, 6), g.w(4)], transB=1)
    h = g.node("Unsqueeze", [h, g.init(np.array([2], np.int64))])
    h = g.node("Squeeze", [h, g.init(np.array([2], np.int64))])
    h = g.node("LogSoftmax", [h], axis=1)
    m = check(tmp_path, g.model(h))
    assert types(m) == ["conv2d", "maxpool", "fc"]
    dropped = " ".join(m.dropped)
    for op in ("Squeeze", "Unsqueeze", "Dropout", "Identity", "LogSoftmax"):
        assert op in dropped


def test_average_pool_floor_and_relu_after_maxpool_commutes(tmp_path):
    g = G([1, 2, 7, 9])
    h = g.node("Conv", ["x", g.w(3, 2, 1, 1), g.w(3)])
    h = g.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.node("Relu", [h])  # PyTorch order: pool then relu; moved before the pool
    h = g.node("AveragePool", [h], kernel_shape=[1, 2], strides=[1, 2], count_include_pad=1)
    m = check(tmp_path, g.model(h))
    assert types(m) == ["conv2d", "maxpool", "avgpool"]
    assert m.layers[0].table["activation"] == "relu"
    assert any("commute" in n for n in m.layers[0].notes)
    assert m.outputs == 3 * 2 * 3


def test_autoencoder_loss_mse_and_constant_node_weights(tmp_path):
    g = G([1, 12])
    wn = g.node("Constant", [], value=numpy_helper.from_array(_w(g.rng, 4, 12), "w"))
    h = g.node("Gemm", ["x", wn, g.w(4)], transB=1)
    h = g.node("Relu", [h])
    h = g.node("Gemm", [h, g.w(12, 4), g.w(12)], transB=1)
    m = check(tmp_path, g.model(h))
    assert m.loss == "mse" and m.outputs == 12


def test_conv_output_in_hwc_order(tmp_path):
    """A model ending in a conv with a spatial output: reference and import agree in HWC."""
    g = G([1, 2, 4, 5])
    h = g.node("Conv", ["x", g.w(2, 2, 3, 3), g.w(2)], pads=[1, 1, 1, 1])
    m = check(tmp_path, g.model(h))
    assert m.outputs == 4 * 5 * 2 and m.loss == "mse"


def test_dynamic_input_with_input_shape(tmp_path):
    g = G(["N", 3, "H", "W"])
    h = g.node("Conv", ["x", g.w(4, 3, 3, 3)], pads=[1, 1, 1, 1])
    h = g.node("GlobalAveragePool", [h])
    h = g.node("Flatten", [h])
    h = g.node("Gemm", [h, g.w(2, 4)], transB=1)
    model = g.model(h)
    msg = error(tmp_path, model)
    assert "--input-shape" in msg and "dynamic" in msg
    m = check(tmp_path, model, input_shape=(6, 5, 3))
    assert m.input_shape == (6, 5, 3)
    assert "does not fit" in error(tmp_path, model, input_shape=(6, 5, 2))


def test_dynamic_batch_is_fine(tmp_path):
    g = G(["batch", 5])
    h = g.node("Gemm", ["x", g.w(2, 5)], transB=1)
    m = check(tmp_path, g.model(h))
    assert m.input_shape == (1, 1, 5)


# --------------------------------------------------------------------------- errors


def _one_conv(g, **attrs):
    return g.node("Conv", ["x", g.w(4, 4, 3, 3)], name="conv3", **attrs)


@pytest.mark.parametrize("build,needle", [
    (lambda g: g.node("ConvTranspose", ["x", g.w(4, 4, 3, 3)], name="conv3"),
     "node 'conv3' (ConvTranspose): unsupported op; supported: Conv, Gemm"),
    (lambda g: g.node("Sigmoid", ["x"], name="sig"), "node 'sig' (Sigmoid): unsupported op"),
    (lambda g: _one_conv(g, dilations=[2, 2]), "dilations [2, 2]"),
    (lambda g: g.node("Conv", ["x", g.w(4, 2, 3, 3)], name="conv3", group=2), "group 2"),
    (lambda g: g.node("Conv", ["x", g.w(8, 1, 3, 3)], group=4), "group 4"),
    (lambda g: _one_conv(g, pads=[3, 3, 3, 3]), "not smaller than the kernel"),
    (lambda g: _one_conv(g, foo=1), "unsupported attribute 'foo'"),
    (lambda g: g.node("Clip", [_one_conv(g), g.init(np.float32(-1)), g.init(np.float32(1))]),
     "Clip(-1.0, 1.0)"),
    (lambda g: g.node("Relu", ["x"]), "cannot fuse relu into the model input"),
    (lambda g: g.node("MaxPool", [_one_conv(g)], kernel_shape=[3, 3], strides=[2, 2]),
     "non-overlapping"),
    (lambda g: g.node("AveragePool", [_one_conv(g)], kernel_shape=[2, 2], strides=[2, 2],
                      pads=[1, 1, 1, 1]), "without padding"),
    (lambda g: g.node("MaxPool", [_one_conv(g)], kernel_shape=[3, 3], strides=[3, 3],
                      ceil_mode=1), "ceil_mode"),
    (lambda g: g.node("BatchNormalization", ["x", g.w(4), g.w(4), g.w(4), g.init(
        np.ones(4, np.float32))]), "folds a BatchNormalization only"),
    (lambda g: g.node("Conv", [g.node("Pad", ["x", g.init(np.array(
        [0, 0, 1, 1, 0, 0, 1, 1], np.int64)), g.init(np.float32(1))]), g.w(4, 4, 3, 3)]),
     "zero padding only"),
    (lambda g: g.node("Conv", [g.node("Pad", ["x", g.init(np.array(
        [0, 0, 1, 1, 0, 0, 1, 1], np.int64))], mode="reflect"), g.w(4, 4, 3, 3)]),
     "mode 'reflect'"),
    (lambda g: g.node("MaxPool", [g.node("Pad", ["x", g.init(np.array(
        [0, 0, 1, 1, 0, 0, 1, 1], np.int64))])], kernel_shape=[2, 2], strides=[2, 2]),
     "folds a Pad only into a following Conv"),
    (lambda g: g.node("Relu", [g.node("Softmax", [_one_conv(g)], axis=1)]),
     "softmax over"),
    (lambda g: g.node("Add", [_one_conv(g), g.node("ReduceMean", ["x"], axes=[2, 3])]),
     "no broadcasting"),
    (lambda g: g.node("Reshape", [_one_conv(g), g.init(np.array([1, 16, 4], np.int64))]),
     "reshape [1, 4, 4, 4] -> [1, 16, 4]"),
    (lambda g: g.node("ReduceMean", ["x"], axes=[1]), "ReduceMean over H and W"),
    (lambda g: g.node("Gemm", [g.node("Flatten", ["x"]), g.w(1, 3)], transA=1), "transA"),
    (lambda g: g.node("MatMul", [g.w(2, 1), g.node("Flatten", ["x"])]), "constant by an"),
    (lambda g: g.node("Dropout", [_one_conv(g), g.init(np.float32(0.5)),
                                  g.init(np.array(True))]), "training_mode"),
    (lambda g: g.node("Add", ["x", g.w(4, 1, 1)]), "folds a constant Add only"),
])
def test_unsupported_nodes_are_one_line_errors(tmp_path, build, needle):
    g = G([1, 4, 6, 6])
    out = build(g)
    msg = error(tmp_path, g.model(out))
    assert needle in msg, msg


def test_softmax_inside_the_graph(tmp_path):
    g = G([1, 6])
    h = g.node("Gemm", ["x", g.w(4, 6)], transB=1)
    h = g.node("Softmax", [h])
    h = g.node("Gemm", [h, g.w(2, 4)], transB=1)
    assert "inside the graph" in error(tmp_path, g.model(h))


def test_output_not_the_last_layer(tmp_path):
    g = G([1, 6])
    a = g.node("Gemm", ["x", g.w(4, 6)], transB=1, name="fc1")
    g.node("Gemm", [a, g.w(2, 4)], transB=1, name="fc2")
    msg = error(tmp_path, g.model(a))
    assert "fc2" in msg  # either the output is not the last layer, or fc2 is unused


def test_multiple_inputs_outputs_and_types(tmp_path):
    g = G([1, 6])
    h = g.node("Gemm", ["x", g.w(4, 6)], transB=1)
    model = g.model(h)
    model.graph.input.append(helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 6]))
    assert "2 graph inputs" in error(tmp_path, model)
    model = g.model(h)
    model.graph.output.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6]))
    assert "2 graph outputs" in error(tmp_path, model)
    g = G([1, 6])
    h = g.node("Cast", ["x"], to=TensorProto.FLOAT)
    assert "type INT64" in error(tmp_path, g.model(h, elem=TensorProto.INT64))


def test_opset_out_of_range(tmp_path):
    g = G([1, 6])
    h = g.node("Gemm", ["x", g.w(4, 6)], transB=1)
    assert "opset 12: mcusim imports ONNX opsets 13..28" in error(tmp_path, g.model(h, opset=12))


def test_external_data_refused(tmp_path):
    g = G([1, 6])
    h = g.node("Gemm", ["x", g.w(4, 6)], transB=1)
    model = g.model(h)
    t = model.graph.initializer[0]
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    t.ClearField("float_data")
    helper.set_model_props  # noqa: B018 - keep the import used
    assert "external" in error(tmp_path, model)


def test_truncated_and_garbage_files(tmp_path):
    g = G([1, 3, 8, 8])
    h = g.node("Conv", ["x", g.w(4, 3, 3, 3), g.w(4)], pads=[1, 1, 1, 1])
    h = g.node("GlobalAveragePool", [h])
    h = g.node("Flatten", [h])
    h = g.node("Gemm", [h, g.w(5, 4), g.w(5)], transB=1)
    data = g.model(h).SerializeToString()
    rng = np.random.default_rng(0)
    cases = [data[:len(data) // 2], data[:17], b"", b"\x00" * 100, b"garbage" * 50,
             rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(), b"\x08\x07" + data[2:40]]
    for i, blob in enumerate(cases):
        error(tmp_path, blob, name=f"bad{i}.onnx")
    with pytest.raises(ModelError, match="no such file"):
        read_onnx(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="directory"):
        read_onnx(tmp_path)


def test_every_truncation_of_a_model_is_one_line(tmp_path):
    g = G([1, 4])
    h = g.node("Gemm", ["x", g.w(2, 4), g.w(2)], transB=1)
    data = g.model(h).SerializeToString()
    p = tmp_path / "t.onnx"
    for n in range(0, len(data), 7):
        p.write_bytes(data[:n])
        try:
            read_onnx(p)
        except ModelError as e:
            assert "\n" not in str(e)


def test_relu_after_flatten_moves_before_it(tmp_path):
    g = G([1, 2, 3, 3])
    h = g.node("Conv", ["x", g.w(3, 2, 2, 2), g.w(3)])
    h = g.node("Flatten", [h])
    h = g.node("Relu", [h])
    h = g.node("Gemm", [h, g.w(2, 12), g.w(2)], transB=1)
    m = check(tmp_path, g.model(h))
    assert types(m) == ["conv2d", "flatten", "fc"]
    assert m.layers[0].table["activation"] == "relu"


@pytest.mark.parametrize("shape", [(0, 4, 3), (4, 4), (4, 4, 3, 1), (True, 4, 3), (4.0, 4, 3),
                                   (70000, 1, 1)])
def test_bad_input_shape_argument(tmp_path, shape):
    from mcusim.errors import UsageError

    g = G([1, 6])
    h = g.node("Gemm", ["x", g.w(4, 6)], transB=1)
    p = _save(tmp_path, g.model(h))
    with pytest.raises(UsageError, match="--input-shape must be"):
        read_onnx(p, input_shape=shape)


# --------------------------------------------------------------------------- end to end


def test_onnx_residual_network_written_and_trained_bit_exact(tmp_path, catalog,
                                                             default_toolchain):
    """A PyTorch-style residual network (Conv+BatchNorm+Relu, an identity shortcut, a
    depthwise conv with Clip(0, 6), GAP, Gemm) through `import`: the written model's
    FloatNet equals onnxruntime, and training every layer runs bit-exactly on the M0+."""
    from mcusim.fqt.reference import FloatNet
    from mcusim.fqt.verify import run_verify
    from mcusim.model.writer import import_file, write_imported

    g = G([1, 3, 8, 8], seed=4)
    a = g.node("Conv", ["x", g.w(6, 3, 3, 3), g.w(6)], name="stem", pads=[1, 1, 1, 1])
    a = g.node("BatchNormalization", [a, g.init(np.full(6, 1.5, np.float32)),
                                      g.w(6), g.w(6), g.init(np.full(6, 2.0, np.float32))])
    a = g.node("Relu", [a])
    h = g.node("Conv", [a, g.w(6, 1, 3, 3), g.w(6)], name="dw", group=6, pads=[1, 1, 1, 1])
    h = g.node("Clip", [h, g.init(np.float32(0.0)), g.init(np.float32(6.0))])
    h = g.node("Conv", [h, g.w(6, 6, 1, 1), g.w(6)], name="pw")
    h = g.node("Add", [a, h], name="res")
    h = g.node("Relu", [h])
    h = g.node("GlobalAveragePool", [h])
    h = g.node("Flatten", [h])
    h = g.node("Gemm", [h, g.w(4, 6), g.w(4)], transB=1, name="head")
    p = _save(tmp_path, g.model(h))
    w = write_imported(import_file(p), tmp_path / "out", "resnet-onnx", input_range=(-1, 1))
    spec = w.spec
    assert [L.type for L in spec.layers] == ["conv2d", "dwconv2d", "conv2d", "add", "avgpool",
                                             "fc"]
    assert spec.layers[1].activation == "relu6" and spec.is_graph
    net = FloatNet.init(spec)
    for x in np.random.default_rng(3).uniform(-1, 1, (3, 8, 8, 3)).astype(np.float32):
        ref = run_reference(p, x)
        np.testing.assert_allclose(net.forward(x)[-1].reshape(-1), ref, rtol=1e-4,
                                   atol=1e-5 * float(np.abs(ref).max()))
    rep = run_verify(spec.with_train(batch_size=2, lambda_min=0.5), catalog.mcu("RP2040"),
                     default_toolchain, steps=5)
    assert rep.bit_exact and rep.first_mismatch is None
