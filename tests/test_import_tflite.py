"""The TFLite importer (mcusim.model.tflite).

The real MLPerf Tiny reference models (../shared/models/mlperf-tiny, skipped when absent):
structure, parameter counts, per-channel scales, and the key check: the float forward of the
imported model (tests/import_support.py) against LiteRT running the original file
(mcusim.model.reference_runtime).  Small synthetic files (written by
import_support.TFLiteFile) cover the operators the real models do not use (PAD, MEAN,
MAX_POOL_2D, RELU ops, SQUEEZE, QUANTIZE / DEQUANTIZE) and the error paths.

Measured when this was written (the bounds below keep a margin):
* float models: AD and ResNet-8 agree with LiteRT to 1e-6 relative (SQNR > 120 dB).  The
  "float32" KWS file keeps its conv2d weights int8 and LiteRT runs them with hybrid kernels
  that quantize the activations on the fly: the plain float forward is within 2 % (SQNR
  36-45 dB); emulating that activation quantization it agrees to 2e-7 relative.
* int8 models against the dequantized int8 reference, 32 uniform random inputs over the
  input range, activations clipped to the ranges the file records (as the int8 model
  saturates): top-1 KWS 31/32, ResNet-8 31/32 (AD 30/32, not a classifier); SQNR min / mean
  KWS 36.5 / 41.7 dB, ResNet-8 28.8 / 33.6 dB, AD 36.9 / 44.7 dB.  Without the clipping
  ResNet-8 keeps 30/32 and 16.8 / 26.2 dB and AD 15.9 / 27.0 dB, while KWS collapses (13/32,
  -3 dB): uniform random MFCCs over the whole input range drive its activations far past
  the calibrated ranges, where the int8 model saturates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcusim.errors import ModelError
from mcusim.model.tflite import read_tflite

from .conftest import MLPERF_DIR
from .import_support import SAME, TFLiteFile, forward, macs, n_params, sqnr_db

pytest.importorskip("tflite")

MODELS = MLPERF_DIR


def _model(name: str) -> Path:
    p = MODELS / name
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p


def _runtime():
    pytest.importorskip("ai_edge_litert")
    from mcusim.model.reference_runtime import run_reference
    return run_reference


def types(m):
    return [L.table["type"] for L in m.layers]


# --------------------------------------------------------------------------- the real models

KWS_TYPES = ["conv2d"] + ["dwconv2d", "conv2d"] * 4 + ["avgpool", "fc"]
RESNET_TYPES = ["conv2d", "conv2d", "conv2d", "add", "conv2d", "conv2d", "conv2d", "add",
                "conv2d", "conv2d", "conv2d", "add", "avgpool", "fc"]
AD_UNITS = [128, 128, 128, 128, 8, 128, 128, 128, 128, 640]


@pytest.mark.parametrize("name", ["kws_ref_model_float32.tflite", "kws_ref_model.tflite"])
def test_kws_ds_cnn_structure(name):
    m = read_tflite(_model(name))
    assert types(m) == KWS_TYPES
    assert m.input_shape == (49, 10, 1) and m.outputs == 12 and m.loss == "xent"
    assert n_params(m) == 22_604 and macs(m) == 2_656_768
    first = m.layers[0].table
    assert first["kernel"] == [10, 4] and first["stride"] == [2, 2]
    assert first["padding"] == [4, 5, 1, 1]  # SAME on 49x10 with stride 2 (TF's rule)
    assert first["filters"] == 64 and first["activation"] == "relu"
    for L in m.layers[1:9]:
        assert L.table["activation"] == "relu"
        if L.table["type"] == "dwconv2d":
            assert L.weight.shape == (64, 3, 3) and L.table["padding"] == [1, 1, 1, 1]
        else:
            assert L.weight.shape == (64, 1, 1, 64)
    assert m.layers[-2].table["pool"] == "global"  # AVERAGE_POOL_2D 25x5 on 25x5
    assert m.layers[-1].table == {"name": "dense", "type": "fc", "inputs": ["average_pooling2d"],
                                  "units": 12, "activation": "none", "bias": True}
    assert any(d.startswith("SOFTMAX") for d in m.dropped)
    assert any(d.startswith("RESHAPE") for d in m.dropped)
    # every layer's inputs are the previous layer's name: a chain
    assert [L.table["inputs"] for L in m.layers] == [["input"]] + [[L.name] for L in
                                                                   m.layers[:-1]]
    quant = name == "kws_ref_model.tflite"
    assert m.quantized is quant
    if quant:
        assert m.input_range == pytest.approx((0.5847029 * (-128 - 83), 0.5847029 * (127 - 83)))
        assert all(L.out_range is not None for L in m.layers)
        assert m.layers[0].out_range[0] == 0.0  # relu: zero point -128
    else:
        assert m.input_range is None and all(L.out_range is None for L in m.layers)
        # the float file keeps the conv2d weights int8 (per tensor) for hybrid kernels
        assert all(L.weight_scales is not None and "hybrid" in " ".join(L.notes)
                   for L in m.layers if L.table["type"] == "conv2d")


@pytest.mark.parametrize("name", ["pretrainedResnet.tflite", "pretrainedResnet_quant.tflite"])
def test_resnet8_structure(name):
    m = read_tflite(_model(name))
    assert types(m) == RESNET_TYPES
    assert n_params(m) == 77_706 and macs(m) == 12_501_632
    assert m.input_shape == (32, 32, 3) and m.outputs == 10 and m.loss == "xent"
    adds = [L for L in m.layers if L.table["type"] == "add"]
    assert [a.table["inputs"] for a in adds] == [["conv2d", "conv2d_2"],
                                                 ["conv2d_5", "conv2d_4"],
                                                 ["conv2d_8", "conv2d_7"]]
    assert all(a.table["activation"] == "relu" for a in adds)
    by = {L.name: L.table for L in m.layers}
    assert by["conv2d_3"]["stride"] == [2, 2] and by["conv2d_3"]["padding"] == [0, 1, 0, 1]
    assert by["conv2d_5"]["kernel"] == [1, 1] and by["conv2d_5"]["inputs"] == ["add"]
    assert by["conv2d_2"]["activation"] == "none"
    if name.endswith("_quant.tflite"):
        assert m.quantized and m.input_range == (0.0, 255.0)  # scale 1, zero point -128


@pytest.mark.parametrize("name", ["ad01_fp32.tflite", "ad01_int8.tflite"])
def test_anomaly_detection_autoencoder(name):
    m = read_tflite(_model(name))
    assert types(m) == ["fc"] * 10
    assert [L.table["units"] for L in m.layers] == AD_UNITS
    assert [L.table["activation"] for L in m.layers] == ["relu"] * 9 + ["none"]
    assert m.layers[0].weight.shape == (128, 640)
    assert m.input_shape == (1, 1, 640) and m.outputs == 640
    assert m.loss == "mse"  # output size == input size, no softmax
    assert n_params(m) == 265_864 and macs(m) == 264_192
    assert m.dropped == []


def _file_scales(path: Path) -> dict[str, np.ndarray]:
    """Weight scales straight from the flatbuffer: weight tensor name -> scales."""
    import tflite

    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    g = model.Subgraphs(0)
    out = {}
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        if op.InputsLength() < 2:
            continue
        t = g.Tensors(op.Inputs(1))
        q = t.Quantization()
        if t.Type() == 9 and q is not None and q.ScaleLength():  # INT8 weights
            out[g.Tensors(op.Outputs(0)).Name().decode()] = q.ScaleAsNumpy()
    return out


@pytest.mark.parametrize("name,spread", [("kws_ref_model.tflite", 7.5),
                                         ("pretrainedResnet_quant.tflite", 11.6)])
def test_per_channel_scales_preserved(name, spread):
    p = _model(name)
    m = read_tflite(p)
    scales = _file_scales(p)
    per_channel = 0
    for L in m.layers:
        if L.weight is None:
            continue
        want = scales[L.nodes[0]]
        cout = L.weight.shape[0]
        assert L.weight_scales is not None and L.weight_scales.shape == (cout,)
        np.testing.assert_array_equal(L.weight_scales, np.broadcast_to(want, (cout,)))
        # the float weights are exactly int8 x the channel's own scale (not an average)
        q = L.weight.astype(np.float64) / L.weight_scales.astype(np.float64).reshape(
            (cout,) + (1,) * (L.weight.ndim - 1))
        np.testing.assert_allclose(q, np.round(q), atol=1e-4)
        assert np.abs(np.round(q)).max() <= 127
        if want.size > 1:
            per_channel += 1
            assert "per-channel int8 weights" in " ".join(L.notes)
    assert per_channel == len([L for L in m.layers if L.table["type"] in ("conv2d",
                                                                           "dwconv2d")])
    notes = " ".join(n for L in m.layers for n in L.notes)
    assert f"spread {spread}x" in notes


def _inputs(m, n, seed=0):
    rng = np.random.default_rng(seed)
    lo, hi = m.input_range or (-1.0, 1.0)
    return [rng.uniform(lo, hi, m.input_shape).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("name", ["ad01_fp32.tflite", "pretrainedResnet.tflite"])
def test_float_models_match_litert(name):
    run_reference = _runtime()
    p = _model(name)
    m = read_tflite(p)
    for x in _inputs(m, 4):
        ref = run_reference(p, x)
        got = forward(m, x)
        assert got.shape == ref.shape == (m.outputs,)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))


def test_kws_float32_file_matches_litert():
    """The file's conv2d weights are int8 run by LiteRT's hybrid kernels, which quantize
    each conv input on the fly (symmetric, max|x| / 127): emulating that, the import is
    exact; as plain float it is within the hybrid kernels' error."""
    run_reference = _runtime()
    p = _model("kws_ref_model_float32.tflite")
    m = read_tflite(p)
    for x in _inputs(m, 4):
        ref = run_reference(p, x)
        exact = forward(m, x, hybrid_inputs=True)
        np.testing.assert_allclose(exact, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))
        plain = forward(m, x)
        assert sqnr_db(ref, plain) > 25.0
        assert plain.argmax() == ref.argmax()


@pytest.mark.parametrize("name,classifier,min_top1,min_sqnr,mean_sqnr", [
    ("kws_ref_model.tflite", True, 28, 25.0, 32.0),
    ("pretrainedResnet_quant.tflite", True, 28, 20.0, 25.0),
    ("ad01_int8.tflite", False, 0, 25.0, 32.0),
])
def test_int8_models_against_the_dequantized_reference(name, classifier, min_top1, min_sqnr,
                                                       mean_sqnr):
    """32 random inputs over the input range; the evaluator clips every layer's output to
    the range the int8 file records (the int8 model saturates there)."""
    run_reference = _runtime()
    p = _model(name)
    m = read_tflite(p)
    top1, sq = 0, []
    for x in _inputs(m, 32, seed=0):
        ref = run_reference(p, x)
        got = forward(m, x, clip_to_out_range=True)
        top1 += int(ref.argmax() == got.argmax())
        sq.append(sqnr_db(ref, got))
    if classifier:
        assert top1 >= min_top1, (top1, sq)
    assert min(sq) >= min_sqnr and float(np.mean(sq)) >= mean_sqnr, sq


@pytest.mark.parametrize("name", ["pretrainedResnet_quant.tflite", "ad01_int8.tflite"])
def test_int8_models_unclipped_float_forward(name):
    run_reference = _runtime()
    p = _model(name)
    m = read_tflite(p)
    top1, sq = 0, []
    for x in _inputs(m, 32, seed=0):
        ref = run_reference(p, x)
        got = forward(m, x)
        top1 += int(ref.argmax() == got.argmax())
        sq.append(sqnr_db(ref, got))
    assert float(np.mean(sq)) >= 20.0 and min(sq) >= 12.0, sq
    if name.startswith("pretrainedResnet"):
        assert top1 >= 26, top1


# --------------------------------------------------------------------------- synthetic files


def _w(rng, *shape):
    return (rng.standard_normal(shape) * 0.5).astype(np.float32)


def _check(tmp_path, f, x, y, *, n=3, name="t.tflite", **kw):
    run_reference = _runtime()
    p = tmp_path / name
    p.write_bytes(f.build([x], [y]))
    m = read_tflite(p, **kw)
    rng = np.random.default_rng(1)
    for _ in range(n):
        xx = rng.uniform(-1, 1, m.input_shape).astype(np.float32)
        ref = run_reference(p, xx)
        got = forward(m, xx)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))
    return m


def test_synthetic_conv_maxpool_mean_fc_softmax(tmp_path):
    rng = np.random.default_rng(0)
    f = TFLiteFile()
    x = f.tensor([1, 9, 8, 3], name="x")
    h = f.op("CONV_2D", [x, f.const(_w(rng, 4, 3, 3, 3)), f.const(_w(rng, 4))], [1, 5, 4, 4],
             padding=SAME, stride_h=2, stride_w=2, act=1, out_name="net/conv/Conv2D")
    h = f.op("MAX_POOL_2D", [h], [1, 2, 2, 4], filter_w=2, filter_h=2, stride_w=2, stride_h=2)
    h = f.op("MEAN", [h, f.const(np.array([1, 2], np.int32), "INT32")], [1, 4], keep_dims=0)
    h = f.op("FULLY_CONNECTED", [h, f.const(_w(rng, 5, 4)), f.const(_w(rng, 5))], [1, 5])
    y = f.op("SOFTMAX", [h], [1, 5])
    m = _check(tmp_path, f, x, y)
    assert types(m) == ["conv2d", "maxpool", "avgpool", "fc"]
    assert m.layers[0].table["padding"] == [1, 1, 0, 1]  # SAME, stride 2: 9 -> 5, 8 -> 4
    assert m.layers[1].table["pool"] == [2, 2]  # 5x4 -> 2x2 (floor)
    assert m.layers[2].table["pool"] == "global"


def test_synthetic_pad_folding_relu_ops_and_reshapes(tmp_path):
    rng = np.random.default_rng(2)
    f = TFLiteFile()
    x = f.tensor([1, 6, 6, 2], name="x")
    h = f.op("PAD", [x, f.const(np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32),
                                "INT32")], [1, 9, 7, 2])
    h = f.op("CONV_2D", [h, f.const(_w(rng, 3, 3, 3, 2)), f.const(_w(rng, 3))], [1, 7, 5, 3])
    h = f.op("RELU6", [h], [1, 7, 5, 3])
    h = f.op("PAD", [h, f.const(np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32),
                                "INT32")], [1, 9, 7, 3])
    h = f.op("DEPTHWISE_CONV_2D", [h, f.const(_w(rng, 1, 3, 3, 3)), f.const(_w(rng, 3))],
             [1, 7, 5, 3])
    h = f.op("MAX_POOL_2D", [h], [1, 3, 2, 3], filter_w=2, filter_h=2, stride_w=2, stride_h=2)
    h = f.op("RELU", [h], [1, 3, 2, 3])  # after the pool: moved before it (they commute)
    h = f.op("RESHAPE", [h, f.const(np.array([1, 18], np.int32), "INT32")], [1, 18])
    h = f.op("FULLY_CONNECTED", [h, f.const(_w(rng, 4, 18)), -1], [1, 4])  # no bias
    h = f.op("RESHAPE", [h, f.const(np.array([1, 1, 1, 4], np.int32), "INT32")], [1, 1, 1, 4])
    y = f.op("SQUEEZE", [h], [1, 4])
    m = _check(tmp_path, f, x, y)
    assert types(m) == ["conv2d", "dwconv2d", "maxpool", "flatten", "fc"]
    c, d = m.layers[0], m.layers[1]
    assert c.table["padding"] == [1, 2, 0, 1] and m.layers[-1].table["bias"] is False
    assert c.table["activation"] == "relu6"
    assert d.table["padding"] == [1, 1, 1, 1] and d.table["activation"] == "relu"
    assert any("PAD" in n and "folded" in n for n in c.notes)
    assert any("commute" in n for n in d.notes)
    assert sum(x.startswith("PAD") for x in m.dropped) == 2


def test_synthetic_fc_on_a_4d_input_and_residual_add(tmp_path):
    rng = np.random.default_rng(3)
    f = TFLiteFile()
    x = f.tensor([1, 4, 4, 2], name="x")
    a = f.op("CONV_2D", [x, f.const(_w(rng, 2, 1, 1, 2)), f.const(_w(rng, 2))], [1, 4, 4, 2],
             act=1)
    b = f.op("CONV_2D", [a, f.const(_w(rng, 2, 3, 3, 2)), f.const(_w(rng, 2))], [1, 4, 4, 2],
             padding=SAME)
    h = f.op("ADD", [a, b], [1, 4, 4, 2], act=3)
    y = f.op("FULLY_CONNECTED", [h, f.const(_w(rng, 3, 32)), f.const(_w(rng, 3))], [1, 3])
    m = _check(tmp_path, f, x, y)
    assert types(m) == ["conv2d", "conv2d", "add", "flatten", "fc"]
    assert m.layers[2].table["activation"] == "relu6"
    assert m.layers[2].table["inputs"] == [m.layers[0].name, m.layers[1].name]


def test_synthetic_int8_with_quantize_dequantize(tmp_path):
    """float in, QUANTIZE, int8 conv (per-channel weights), int8 fc, DEQUANTIZE, float out."""
    run_reference = _runtime()
    rng = np.random.default_rng(4)
    f = TFLiteFile()
    x = f.tensor([1, 6, 6, 2], name="x")
    s_in, zp_in = 2.0 / 255, -1
    q = f.op("QUANTIZE", [x], [1, 6, 6, 2], dtype="INT8", scale=s_in, zp=zp_in)
    wq = rng.integers(-127, 128, (3, 3, 3, 2)).astype(np.int8)
    sw = np.array([0.01, 0.004, 0.02], np.float32)
    bq = rng.integers(-500, 500, 3).astype(np.int32)
    w = f.const(wq, "INT8", scale=sw, zp=np.zeros(3, np.int64), qdim=0)
    b = f.const(bq, "INT32", scale=(s_in * sw).astype(np.float32), zp=np.zeros(3, np.int64))
    h = f.op("CONV_2D", [q, w, b], [1, 6, 6, 3], padding=SAME, act=1, dtype="INT8",
             scale=0.02, zp=-128)
    fw = f.const(rng.integers(-127, 128, (4, 108)).astype(np.int8), "INT8", scale=0.003, zp=0)
    h = f.op("FULLY_CONNECTED", [h, fw], [1, 4], dtype="INT8", scale=0.05, zp=3)
    y = f.op("DEQUANTIZE", [h], [1, 4])
    p = tmp_path / "q.tflite"
    p.write_bytes(f.build([x], [y]))
    m = read_tflite(p)
    assert m.quantized and types(m) == ["conv2d", "flatten", "fc"]
    assert m.input_range == pytest.approx((s_in * (-128 - zp_in), s_in * (127 - zp_in)))
    conv = m.layers[0]
    np.testing.assert_array_equal(conv.weight_scales, sw)
    np.testing.assert_allclose(conv.weight, wq * sw[:, None, None, None], rtol=1e-6)
    np.testing.assert_allclose(conv.bias, bq * s_in * sw, rtol=1e-6)
    assert conv.out_range == pytest.approx((0.0, 0.02 * 255))
    assert m.layers[2].out_range == pytest.approx((0.05 * -131, 0.05 * 124))
    assert any("QUANTIZE" in d for d in m.dropped) and any("DEQUANTIZE" in d for d in m.dropped)
    xs = [np.random.default_rng(i).uniform(-1, 1, (6, 6, 2)).astype(np.float32)
          for i in range(8)]
    for xx in xs:
        ref = run_reference(p, xx)
        got = forward(m, xx, clip_to_out_range=True)
        assert sqnr_db(ref, got) > 20.0


def test_synthetic_float_with_dequantized_int8_weights(tmp_path):
    """int8 weights + a DEQUANTIZE op feeding a float conv: per-channel scales kept."""
    rng = np.random.default_rng(5)
    f = TFLiteFile()
    x = f.tensor([1, 5, 5, 2], name="x")
    wq = rng.integers(-127, 128, (4, 3, 3, 2)).astype(np.int8)
    sw = np.array([0.01, 0.03, 0.002, 0.02], np.float32)
    wd = f.op("DEQUANTIZE", [f.const(wq, "INT8", scale=sw, zp=np.zeros(4, np.int64))],
              [4, 3, 3, 2])
    h = f.op("CONV_2D", [x, wd, f.const(_w(rng, 4))], [1, 5, 5, 4], padding=SAME)
    y = f.op("MEAN", [h, f.const(np.array([1, 2], np.int32), "INT32")], [1, 1, 1, 4],
             keep_dims=1)
    m = _check(tmp_path, f, x, y)
    np.testing.assert_array_equal(m.layers[0].weight_scales, sw)
    assert "DEQUANTIZE feeds them" in " ".join(m.layers[0].notes)
    assert not m.quantized


def _error(tmp_path, blob, name="bad.tflite", **kw):
    p = tmp_path / name
    p.write_bytes(blob)
    with pytest.raises(ModelError) as ei:
        read_tflite(p, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(str(p)), msg
    return msg


@pytest.mark.parametrize("case,needle", [
    ("logistic", "(LOGISTIC): unsupported op; supported: CONV_2D"),
    ("multiplier", "depth multiplier 2"),
    ("dilation", "dilation 2x2"),
    ("tanh", "fused activation TANH is unsupported"),
    ("overlap", "non-overlapping"),
    ("same_pool", "SAME padding of a 4x4 pool"),
    ("relu_shared", "cannot fuse relu"),
    ("softmax_mid", "SOFTMAX inside the graph"),
    ("add_const", "ADD of a constant"),
    ("pad_pool", "folds a PAD only into a following CONV_2D"),
    ("big_pad", "not smaller than the kernel"),
    ("mean_c", "MEAN over H and W only"),
    ("reshape", "mcusim supports reshapes that flatten"),
    ("int32_input", "has type INT32"),
    ("two_outputs", "2 outputs"),
])
def test_synthetic_errors(tmp_path, case, needle):
    rng = np.random.default_rng(6)
    f = TFLiteFile()
    dtype = "INT32" if case == "int32_input" else "FLOAT32"
    x = f.tensor([1, 6, 6, 2], dtype, name="x")
    conv = f.op("CONV_2D", [x, f.const(_w(rng, 2, 3, 3, 2))], [1, 6, 6, 2], padding=SAME)
    outs = None
    if case == "logistic":
        y = f.op("LOGISTIC", [conv], [1, 6, 6, 2])
    elif case == "multiplier":
        y = f.op("DEPTHWISE_CONV_2D", [conv, f.const(_w(rng, 1, 3, 3, 4))], [1, 4, 4, 4],
                 mult=2)
    elif case == "dilation":
        y = f.op("CONV_2D", [conv, f.const(_w(rng, 2, 3, 3, 2))], [1, 2, 2, 2], dil_w=2,
                 dil_h=2)
    elif case == "tanh":
        y = f.op("CONV_2D", [conv, f.const(_w(rng, 2, 1, 1, 2))], [1, 6, 6, 2], act=4)
    elif case == "overlap":
        y = f.op("MAX_POOL_2D", [conv], [1, 2, 2, 2], filter_w=3, filter_h=3, stride_w=2,
                 stride_h=2)
    elif case == "same_pool":
        y = f.op("AVERAGE_POOL_2D", [conv], [1, 2, 2, 2], filter_w=4, filter_h=4, stride_w=4,
                 stride_h=4, padding=SAME)
    elif case == "relu_shared":
        r = f.op("RELU", [conv], [1, 6, 6, 2])
        y = f.op("ADD", [conv, r], [1, 6, 6, 2])
    elif case == "softmax_mid":
        s = f.op("SOFTMAX", [conv], [1, 6, 6, 2])
        y = f.op("CONV_2D", [s, f.const(_w(rng, 2, 1, 1, 2))], [1, 6, 6, 2])
    elif case == "add_const":
        y = f.op("ADD", [conv, f.const(_w(rng, 1, 6, 6, 2))], [1, 6, 6, 2])
    elif case == "pad_pool":
        p = f.op("PAD", [conv, f.const(np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32),
                                       "INT32")], [1, 8, 8, 2])
        y = f.op("MAX_POOL_2D", [p], [1, 4, 4, 2], filter_w=2, filter_h=2, stride_w=2,
                 stride_h=2)
    elif case == "big_pad":
        p = f.op("PAD", [conv, f.const(np.array([[0, 0], [3, 0], [0, 0], [0, 0]], np.int32),
                                       "INT32")], [1, 9, 6, 2])
        y = f.op("CONV_2D", [p, f.const(_w(rng, 2, 3, 3, 2))], [1, 7, 4, 2])
    elif case == "mean_c":
        y = f.op("MEAN", [conv, f.const(np.array([3], np.int32), "INT32")], [1, 6, 6])
    elif case == "reshape":
        y = f.op("RESHAPE", [conv, f.const(np.array([1, 12, 3, 2], np.int32), "INT32")],
                 [1, 12, 3, 2])
    elif case == "int32_input":
        y = conv
    elif case == "two_outputs":
        y = f.op("RELU", [conv], [1, 6, 6, 2])
        outs = [conv, y]
    msg = _error(tmp_path, f.build([x], outs or [y]))
    assert needle in msg, msg


def test_input_shape_option(tmp_path):
    rng = np.random.default_rng(7)
    f = TFLiteFile()
    x = f.tensor([1, 4, 4, 2], name="x")
    y = f.op("CONV_2D", [x, f.const(_w(rng, 2, 1, 1, 2))], [1, 4, 4, 2])
    blob = f.build([x], [y])
    p = tmp_path / "s.tflite"
    p.write_bytes(blob)
    assert read_tflite(p, input_shape=(4, 4, 2)).input_shape == (4, 4, 2)
    assert "does not match" in _error(tmp_path, blob, input_shape=(5, 4, 2))


def test_truncated_and_garbage_files(tmp_path):
    p = _model("kws_ref_model.tflite")
    data = p.read_bytes()
    rng = np.random.default_rng(0)
    blobs = [b"", b"TFL3", b"\x00" * 64, b"garbage!" * 100, b"\x10\x00\x00\x00TFL3" + b"\xff" * 60,
             rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), data[:8] + bytes(200)]
    blobs += [data[:n] for n in (12, 100, 1000, len(data) // 2)]
    for i, blob in enumerate(blobs):
        _error(tmp_path, blob, name=f"bad{i}.tflite")
    with pytest.raises(ModelError, match="no such file"):
        read_tflite(tmp_path / "missing.tflite")


def test_corrupted_bytes_are_one_line_errors(tmp_path):
    """Random byte flips of a real model: imported or refused with one line, nothing else."""
    data = _model("kws_ref_model.tflite").read_bytes()
    rng = np.random.default_rng(1)
    p = tmp_path / "flip.tflite"
    for _ in range(300):
        b = bytearray(data)
        for _ in range(3):
            # the flatbuffer's tables sit around the weights: flip near both ends too
            i = int(rng.choice([rng.integers(0, len(b)), rng.integers(0, 4000),
                                rng.integers(len(b) - 6000, len(b))]))
            b[i] = int(rng.integers(0, 256))
        p.write_bytes(bytes(b))
        try:
            read_tflite(p)
        except ModelError as e:
            assert "\n" not in str(e)


def test_dynamic_input_needs_input_shape(tmp_path):
    rng = np.random.default_rng(8)
    f = TFLiteFile()
    x = f.tensor([1, 1, 1, 2], name="x", signature=[-1, -1, -1, 2])
    h = f.op("CONV_2D", [x, f.const(_w(rng, 3, 3, 3, 2)), f.const(_w(rng, 3))], [1, 1, 1, 3],
             padding=SAME, act=1)
    y = f.op("MEAN", [h, f.const(np.array([1, 2], np.int32), "INT32")], [1, 3])
    msg = _error(tmp_path, f.build([x], [y]))
    assert "dynamic dimensions [-1, -1, -1, 2]" in msg and "--input-shape H,W,C" in msg
    m = _check(tmp_path, f, x, y, input_shape=(7, 5, 2))
    assert m.input_shape == (7, 5, 2) and m.layers[0].table["padding"] == [1, 1, 1, 1]
    assert "does not fit" in _error(tmp_path, f.build([x], [y]), input_shape=(7, 5, 3))
