"""Run an ONNX or TFLite file in its own reference runtime, for comparison with an import.

`run_reference(path, x_hwc)` feeds one HWC float input to the ORIGINAL file — onnxruntime
with graph optimisations disabled (ORT_DISABLE_ALL), or LiteRT's interpreter with the builtin
kernels and no default delegates (no XNNPACK) — and returns its output as a flat float32
vector in HWC order, the order of an imported mcusim model's output:

* ONNX (NCHW): the input is transposed to NCHW ([1, C, H, W]; [1, C, W] for a 1-D model
  with H = 1; [1, N] for a vector input), and an NCHW output is transposed back to HWC.
* TFLite (NHWC): the input is reshaped to the input tensor's shape; an int8/uint8 input is
  quantized with the input tensor's scale and zero point, an int8 output dequantized.
* A softmax at the output is skipped: the result is the softmax's input (the logits), as
  mcusim's model ends in the logits.  ONNX: that tensor is added as a graph output before the
  session is made; TFLite: the interpreter keeps every tensor
  (experimental_preserve_all_tensors) and the softmax's input is read.

onnxruntime and ai_edge_litert are imported only here, when needed; missing, they are one
line of UsageError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mcusim.errors import ModelError, UsageError
from mcusim.userfiles import read_bytes, shown

_SOFTMAX_ONNX = ("Softmax", "LogSoftmax")
_PASS_ONNX = ("Identity", "Dropout")
_PASS_TFLITE = ("DEQUANTIZE", "QUANTIZE")


def run_reference(path: str | Path, x_hwc: np.ndarray) -> np.ndarray:
    """The output of the original model file for one HWC input, float32, flattened in HWC
    order, before a final softmax."""
    from mcusim.model.tflite import MAX_IMPORT_BYTES

    data = read_bytes(path, "an ONNX or TFLite model", MAX_IMPORT_BYTES, ModelError)
    x = np.asarray(x_hwc, dtype=np.float32)
    if x.ndim != 3:
        raise UsageError(f"run_reference: the input must be H x W x C (got shape {x.shape})")
    if len(data) >= 8 and data[4:8] == b"TFL3":
        return _run_tflite(path, data, x)
    return _run_onnx(path, data, x)


# --------------------------------------------------------------------------- ONNX


def _run_onnx(path: str | Path, data: bytes, x: np.ndarray) -> np.ndarray:
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise UsageError("running an ONNX model needs onnxruntime and onnx: "
                         "pip install onnxruntime onnx") from None
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelError(f"{shown(path)}: not a valid ONNX model ({type(e).__name__})") from None
    g = model.graph
    inits = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1 or len(g.output) != 1:
        raise ModelError(f"{shown(path)}: {len(inputs)} inputs and {len(g.output)} outputs; "
                         "expected one of each")
    out_name = g.output[0].name
    producer = {o: n for n in g.node for o in n.output}
    name = out_name
    while name in producer and producer[name].op_type in _PASS_ONNX:
        name = producer[name].input[0]
    fetch = out_name
    if name in producer and producer[name].op_type in _SOFTMAX_ONNX:
        fetch = producer[name].input[0]
        if fetch not in {o.name for o in g.output}:
            g.output.append(onnx.helper.make_empty_tensor_value_info(fetch))
    rank = len(inputs[0].type.tensor_type.shape.dim)
    H = x.shape[0]
    if rank == 4:
        feed = x.transpose(2, 0, 1)[None]
    elif rank == 3:
        if H != 1:
            raise UsageError(f"run_reference: a rank-3 (1-D) ONNX input needs H = 1 (got {H})")
        feed = x[0].T[None]
    elif rank == 2:
        feed = x.reshape(1, -1)
    else:
        raise ModelError(f"{shown(path)}: input of rank {rank}; expected 2, 3 or 4")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=so,
                                providers=["CPUExecutionProvider"])
    (y,) = sess.run([fetch], {inputs[0].name: np.ascontiguousarray(feed, dtype=np.float32)})
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 4:
        y = y.transpose(0, 2, 3, 1)
    elif y.ndim == 3:
        y = y.transpose(0, 2, 1)
    return y.reshape(-1).astype(np.float32)


# --------------------------------------------------------------------------- TFLite


def _run_tflite(path: str | Path, data: bytes, x: np.ndarray) -> np.ndarray:
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise UsageError("running a TFLite model needs LiteRT: pip install ai-edge-litert"
                         ) from None
    from mcusim.model.tflite import _parse

    graph = _parse(data, shown(path))
    # the logits: the graph output, or the input of a softmax that produces it
    k = graph.outputs[0]
    producer = {o: op for op in graph.ops for o in op.outputs}
    while k in producer and producer[k].name in _PASS_TFLITE:
        k = producer[k].inputs[0]
    fetch = graph.outputs[0]
    if k in producer and producer[k].name == "SOFTMAX":
        fetch = producer[k].inputs[0]
    try:
        interp = Interpreter(
            model_content=data,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            experimental_preserve_all_tensors=True)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"{shown(path)}: LiteRT cannot load it: "
                         f"{str(e).splitlines()[0][:120]}") from None
    (inp,) = interp.get_input_details()
    rank = len(inp["shape"])
    want = {4: [1, *x.shape], 3: [1, x.shape[1], x.shape[2]], 2: [1, x.size],
            1: [x.size]}.get(rank)
    if want is None or (rank == 3 and x.shape[0] != 1):
        raise UsageError(f"run_reference: an input of shape {list(inp['shape'])} cannot take "
                         f"H x W x C = {x.shape}")
    if list(inp["shape"]) != want:  # a dynamic input: size it to x
        try:
            interp.resize_tensor_input(inp["index"], want, strict=True)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{shown(path)}: LiteRT cannot resize the input to {want}: "
                             f"{str(e).splitlines()[0][:120]}") from None
        (inp,) = interp.get_input_details()
    feed = x.reshape(inp["shape"])
    feed = _quantize(feed, inp)
    interp.set_tensor(inp["index"], feed)
    interp.invoke()
    details = {d["index"]: d for d in interp.get_tensor_details()}
    y = interp.get_tensor(fetch)
    return _dequantize(y, details[fetch]).reshape(-1)


def _qparams(d: dict[str, Any]) -> tuple[float, int] | None:
    qp = d.get("quantization_parameters") or {}
    scales = qp.get("scales")
    if scales is not None and len(scales) == 1:
        return float(scales[0]), int(qp["zero_points"][0])
    scale, zp = d.get("quantization", (0.0, 0))
    return (float(scale), int(zp)) if scale else None


def _quantize(x: np.ndarray, d: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(d["dtype"])
    if dtype == np.float32:
        return x.astype(np.float32)
    q = _qparams(d)
    if q is None:
        raise ModelError(f"the model's input has type {dtype} without quantization parameters")
    info = np.iinfo(dtype)
    v = x.astype(np.float64) / q[0]
    v = np.sign(v) * np.floor(np.abs(v) + 0.5)  # round half away from zero, as TFLite does
    return np.clip(v + q[1], info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, d: dict[str, Any]) -> np.ndarray:
    if y.dtype == np.float32:
        return y.astype(np.float32)
    q = _qparams(d)
    if q is None:
        return y.astype(np.float32)
    return ((y.astype(np.float64) - q[1]) * q[0]).astype(np.float32)
