"""Import a TensorFlow Lite flatbuffer (.tflite) as an mcusim model (`Imported`).

The file is read with the pure-Python `tflite` package (the generated flatbuffer reader; no
TensorFlow).  Reading happens in two steps: `_parse` copies everything mcusim needs (tensors,
constant buffers, quantization parameters, operators and their options) out of the
flatbuffer into plain Python objects, turning every decoding failure (a truncated file,
garbage bytes, out-of-range offsets) into one-line ModelError; `_convert` then walks the
operators in order and builds the mcusim layers.

Supported operators: CONV_2D, DEPTHWISE_CONV_2D (depth multiplier 1), FULLY_CONNECTED,
AVERAGE_POOL_2D / MAX_POOL_2D (non-overlapping), MEAN over H and W (a global average pool),
RESHAPE / SQUEEZE / EXPAND_DIMS (a flatten, or dropped when they change nothing in HWC),
PAD / PADV2 (zero padding, folded into the following convolution), ADD (two activations of
the same shape: a residual add), RELU / RELU6 (fused into the layer that produces their input;
moved before a max pool or flatten, with which they commute), SOFTMAX at the output (dropped:
mcusim's loss includes it), QUANTIZE / DEQUANTIZE (dropped; a DEQUANTIZE of a constant makes
float weights).  Fused activations NONE, RELU and RELU6.

int8 (and uint8) weights are dequantized to float32 with their own scales: per output channel
when the file quantizes per channel (never an averaged scale); `weight_scales` keeps them.
int32 biases are dequantized with s_in * s_w[c], the scale the integer kernels use.  The real
range of every layer's output (scale * (qmin - zp) .. scale * (qmax - zp)) is kept as
`out_range` and the input's as `input_range`.

The machinery both importers share (values, layers, naming, fusing an activation into the
producing layer, the final checks) is in mcusim.model.importing.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcusim.errors import ModelError, UsageError
from mcusim.model.imported import Imported
from mcusim.model.importing import (
    MAX_IMPORT_BYTES,
    MAX_OPS,
    MAX_TENSORS,
    F,
    Shape,
    Value,
    _Builder,
    _short,
    check_input_shape,
    conv_out,
    conv_padding,
    fmt_shape,
    scale_note,
)
from mcusim.model.schema import same_padding
from mcusim.userfiles import read_bytes, shown

# --------------------------------------------------------------------------- TFLite parsing

# tflite TensorType
_TYPES: dict[int, tuple[str, Any]] = {
    0: ("FLOAT32", np.float32), 1: ("FLOAT16", np.float16), 2: ("INT32", np.int32),
    3: ("UINT8", np.uint8), 4: ("INT64", np.int64), 5: ("STRING", None), 6: ("BOOL", None),
    7: ("INT16", np.int16), 9: ("INT8", np.int8), 10: ("FLOAT64", np.float64),
}


_QRANGE = {"INT8": (-128, 127), "UINT8": (0, 255)}
_ACT = {0: "none", 1: "relu", 3: "relu6"}
_ACT_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D",
                 "MAX_POOL_2D", "MEAN", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "PAD", "PADV2",
                 "ADD", "RELU", "RELU6", "SOFTMAX", "QUANTIZE", "DEQUANTIZE")


@dataclass
class _Tensor:
    index: int
    name: str
    type: str
    shape: tuple[int, ...]
    signature: tuple[int, ...] | None
    data: bytes | None  # constant contents, None for activations
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    qdim: int = 0


@dataclass
class _Op:
    index: int
    name: str  # the builtin operator name, or CUSTOM:<code>
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any]


@dataclass
class _Graph:
    tensors: list[_Tensor]
    ops: list[_Op]
    inputs: list[int]
    outputs: list[int]
    subgraphs: int


def _opnames() -> dict[int, str]:
    from tflite.BuiltinOperator import BuiltinOperator
    return {v: k for k, v in vars(BuiltinOperator).items()
            if not k.startswith("_") and isinstance(v, int)}


def _vector(obj: Any, name: str) -> list[int]:
    if getattr(obj, f"{name}Length")() == 0:
        return []
    return [int(x) for x in getattr(obj, f"{name}AsNumpy")()]


def _options(op: Any, opname: str) -> dict[str, Any]:
    """The builtin options mcusim reads, as a plain dict."""
    import tflite

    classes = {
        "CONV_2D": ("Conv2DOptions", ("Padding", "StrideW", "StrideH", "FusedActivationFunction",
                                      "DilationWFactor", "DilationHFactor")),
        "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions",
                              ("Padding", "StrideW", "StrideH", "DepthMultiplier",
                               "FusedActivationFunction", "DilationWFactor",
                               "DilationHFactor")),
        "FULLY_CONNECTED": ("FullyConnectedOptions",
                            ("FusedActivationFunction", "WeightsFormat", "KeepNumDims")),
        "AVERAGE_POOL_2D": ("Pool2DOptions", ("Padding", "StrideW", "StrideH", "FilterWidth",
                                              "FilterHeight", "FusedActivationFunction")),
        "MAX_POOL_2D": ("Pool2DOptions", ("Padding", "StrideW", "StrideH", "FilterWidth",
                                          "FilterHeight", "FusedActivationFunction")),
        "ADD": ("AddOptions", ("FusedActivationFunction",)),
        "MEAN": ("ReducerOptions", ("KeepDims",)),
        "SOFTMAX": ("SoftmaxOptions", ("Beta",)),
    }
    if opname not in classes:
        return {}
    cls_name, getters = classes[opname]
    table = op.BuiltinOptions()
    if table is None:
        # absent options: the flatbuffer defaults (zeros: SAME padding, no activation...)
        return {"missing": True}
    obj = getattr(tflite, cls_name)()
    obj.Init(table.Bytes, table.Pos)
    return {g: getattr(obj, g)() for g in getters}


def _parse(data: bytes, src: str) -> _Graph:
    """Everything mcusim needs from the flatbuffer, as plain objects, or ModelError."""
    import tflite

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{src}: not a TFLite flatbuffer (no 'TFL3' identifier at byte 4)")
    names = _opnames()
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        n_sub = model.SubgraphsLength()
        if n_sub < 1:
            raise ModelError(f"{src}: the TFLite file holds no subgraph")
        g = model.Subgraphs(0)
        n_tensors, n_ops = g.TensorsLength(), g.OperatorsLength()
        if n_tensors > MAX_TENSORS or n_ops > MAX_OPS:
            raise ModelError(f"{src}: {n_ops:,} operators and {n_tensors:,} tensors: more "
                             f"than mcusim reads ({MAX_OPS:,} / {MAX_TENSORS:,})")
        n_buffers = model.BuffersLength()
        tensors: list[_Tensor] = []
        for i in range(n_tensors):
            t = g.Tensors(i)
            code = t.Type()
            if code not in _TYPES:
                raise ModelError(f"{src}: tensor {i} has an unknown type code {code}")
            if t.Sparsity() is not None:
                raise ModelError(f"{src}: tensor {i} '{_short(t.Name())}' is sparse: "
                                 "unsupported")
            shape = tuple(_vector(t, "Shape"))
            sig = tuple(_vector(t, "ShapeSignature")) or None
            blob = None
            bi = t.Buffer()
            if 0 < bi < n_buffers:
                buf = model.Buffers(bi)
                if buf.Offset() > 1:  # stored after the flatbuffer (files > 2 GiB)
                    off, size = buf.Offset(), buf.Size()
                    if off + size > len(data):
                        raise ModelError(f"{src}: tensor {i}: its data lies beyond the end "
                                         "of the file")
                    blob = data[off:off + size]
                elif buf.DataLength() > 0:
                    blob = buf.DataAsNumpy().tobytes()
            elif bi >= n_buffers:
                raise ModelError(f"{src}: tensor {i} names buffer {bi} of {n_buffers}")
            tensor = _Tensor(index=i, name=_short(t.Name(), 400), type=_TYPES[code][0],
                             shape=shape, signature=sig, data=blob)
            tensor.type_code = code  # type: ignore[attr-defined]
            q = t.Quantization()
            if q is not None and q.ScaleLength() > 0:
                tensor.scale = q.ScaleAsNumpy().astype(np.float64)
                if not (np.isfinite(tensor.scale).all() and (tensor.scale > 0).all()):
                    raise ModelError(f"{src}: tensor {i} '{_short(t.Name())}' has a "
                                     "quantization scale that is not a positive number")
                zp = q.ZeroPointAsNumpy() if q.ZeroPointLength() > 0 else np.zeros(1)
                tensor.zero_point = np.asarray(zp, dtype=np.int64)
                tensor.qdim = int(q.QuantizedDimension())
            tensors.append(tensor)
        ops: list[_Op] = []
        n_codes = model.OperatorCodesLength()
        for i in range(n_ops):
            op = g.Operators(i)
            ci = op.OpcodeIndex()
            if ci >= n_codes:
                raise ModelError(f"{src}: operator {i} names operator code {ci} of {n_codes}")
            oc = model.OperatorCodes(ci)
            code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
            opname = names.get(code, f"builtin code {code}")
            if opname == "CUSTOM":
                cc = oc.CustomCode()
                opname = f"CUSTOM:{_short(cc) if cc else '?'}"
            ins, outs = _vector(op, "Inputs"), _vector(op, "Outputs")
            for k in ins + outs:
                if not -1 <= k < n_tensors:
                    raise ModelError(f"{src}: operator {i} ({opname}) names tensor {k} of "
                                     f"{n_tensors}")
            ops.append(_Op(index=i, name=opname, inputs=ins, outputs=outs,
                           options=_options(op, opname)))
        gin, gout = _vector(g, "Inputs"), _vector(g, "Outputs")
        for k in gin + gout:
            if not 0 <= k < n_tensors:
                raise ModelError(f"{src}: graph input/output names tensor {k} of {n_tensors}")
        return _Graph(tensors=tensors, ops=ops, inputs=gin, outputs=gout, subgraphs=n_sub)
    except ModelError:
        raise
    except (IndexError, ValueError, TypeError, AttributeError, KeyError, OverflowError,
            UnicodeDecodeError, struct.error, MemoryError, RecursionError) as e:
        if isinstance(e, (struct.error, IndexError)):
            why = "an offset points outside the file"
        else:
            text = str(e).splitlines()[0] if str(e).strip() else ""
            why = f"{type(e).__name__}: {_short(text, 100)}" if text else type(e).__name__
        raise ModelError(f"{src}: not a valid TFLite flatbuffer (truncated or corrupt: "
                         f"{why})") from None


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


# --------------------------------------------------------------------------- TFLite conversion

_KNOWN_SUFFIXES = ("Conv2D", "depthwise", "MatMul", "add", "Add", "AvgPool", "MaxPool", "Mean",
                   "Reshape", "Squeeze", "Pad", "BiasAdd")


def _base_name(tensor_name: str, fallback: str) -> str:
    """A short layer name from a converter's tensor name, e.g. 'model/conv2d_3/Conv2D' ->
    'conv2d_3'; `fallback` when no part looks like a Keras layer path."""
    for part in tensor_name.split(";"):
        comps = part.split("/")
        if len(comps) >= 2 and comps[-1] in _KNOWN_SUFFIXES:
            return comps[-2]
    return fallback


def _hwc(shape: tuple[int, ...]) -> Shape | None:
    """The HWC shape of a TFLite activation shape with batch 1: [1,H,W,C], [1,W,C], [1,N]."""
    if len(shape) == 4 and shape[0] == 1:
        return (shape[1], shape[2], shape[3])
    if len(shape) == 3 and shape[0] == 1:
        return (1, shape[1], shape[2])
    if len(shape) == 2 and shape[0] == 1:
        return (1, 1, shape[1])
    if len(shape) == 1:
        return (1, 1, shape[0])
    return None


class _TFLite:
    def __init__(self, g: _Graph, source: str, input_shape: Shape | None) -> None:
        self.g = g
        self.b = _Builder(source, "tflite")
        self.src = shown(source)
        self.values: dict[int, Value] = {}
        self.consts: dict[int, np.ndarray] = {}  # float constants made by DEQUANTIZE
        self.const_scales: dict[int, tuple[np.ndarray, int]] = {}
        self.consumers = [0] * len(g.tensors)
        for op in g.ops:
            for k in op.inputs:
                if k >= 0:
                    self.consumers[k] += 1
        for k in g.outputs:
            self.consumers[k] += 1
        self.input_shape = input_shape
        self.static = True
        self.quantized = False
        self.input_range: tuple[float, float] | None = None
        self.names_fallback: dict[str, int] = {}

    # ------------------------------------------------------------ helpers
    def where(self, op: _Op) -> str:
        out = self.g.tensors[op.outputs[0]].name if op.outputs else ""
        return f"operator {op.index} '{_short(out.split(';')[-1])}' ({op.name})"

    def t(self, k: int) -> _Tensor:
        return self.g.tensors[k]

    def qrange(self, t: _Tensor) -> tuple[float, float] | None:
        if t.scale is None or t.type not in _QRANGE or t.scale.size != 1:
            return None
        lo, hi = _QRANGE[t.type]
        s, zp = float(t.scale[0]), int(t.zero_point[0]) if t.zero_point is not None else 0
        return (s * (lo - zp), s * (hi - zp))

    def is_const(self, k: int) -> bool:
        return k >= 0 and (self.t(k).data is not None or k in self.consts)

    def value(self, op: _Op, k: int) -> Value:
        if k < 0 or k not in self.values:
            if k >= 0 and self.is_const(k):
                self.b.fail(self.where(op), f"input tensor '{_short(self.t(k).name)}' is a "
                            "constant where mcusim expects an activation")
            self.b.fail(self.where(op), f"input tensor {k} is not produced by any earlier "
                        "operator (the graph is not in execution order)")
        v = self.values[k]
        # exclusive: the producing layer's output reaches this op only (see Value)
        v = Value(**{**v.__dict__, "exclusive": v.exclusive and self.consumers[k] == 1})
        if v.pad is not None and op.name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            self.b.fail(self.where(op), f"its input is zero-padded by PAD ({', '.join(v.pad_nodes)}"
                        "): mcusim folds a PAD only into a following CONV_2D / "
                        "DEPTHWISE_CONV_2D")
        return v

    def alias(self, op: _Op, v: Value, out: int, *, keep_pad: bool = False) -> None:
        """The output of an op that changes nothing in mcusim's terms."""
        k_in = op.inputs[0]
        nv = Value(src=v.src, shape=v.shape, exclusive=v.exclusive and self.consumers[k_in] == 1,
                   pad=v.pad if keep_pad else None, pad_nodes=v.pad_nodes, perm=v.perm,
                   qrange=self.qrange(self.t(out)) or v.qrange,
                   qscale=self._scale(self.t(out)) or v.qscale)
        self.values[out] = nv

    def _scale(self, t: _Tensor) -> float | None:
        if t.scale is None or t.scale.size != 1 or t.type not in _QRANGE:
            return None
        return float(t.scale[0])

    def const(self, op: _Op, k: int, what: str) -> tuple[np.ndarray, np.ndarray | None, int]:
        """A constant as float64 (dequantized), with its per-channel scales and their axis
        when it was int8/uint8."""
        if k in self.consts:
            arr = self.consts[k]
            sc = self.const_scales.get(k)
            return arr, (sc[0] if sc else None), (sc[1] if sc else 0)
        t = self.t(k) if k >= 0 else None
        if t is None or t.data is None:
            producer = next((o for o in self.g.ops if k in o.outputs), None)
            how = f" (computed by {producer.name})" if producer is not None else ""
            self.b.fail(self.where(op), f"its {what} must be a constant{how}: mcusim imports "
                        "constant weights only")
        raw = self._raw(op, t)
        if t.type in _QRANGE and t.scale is not None:
            return self._dequantize(op, t, raw)
        if t.type in ("FLOAT32", "FLOAT16", "FLOAT64"):
            return raw.astype(np.float64), None, 0
        if t.type in ("INT32", "INT64"):
            return raw.astype(np.float64), None, 0
        self.b.fail(self.where(op), f"its {what} '{_short(t.name)}' has type {t.type} without "
                    "quantization parameters")

    def _raw(self, op: _Op, t: _Tensor) -> np.ndarray:
        dtype = _TYPES[t.type_code][1]  # type: ignore[attr-defined]
        if dtype is None:
            self.b.fail(self.where(op), f"tensor '{_short(t.name)}' has type {t.type}")
        n = math.prod(t.shape)
        item = np.dtype(dtype).itemsize
        if len(t.data or b"") != n * item:
            self.b.fail(self.where(op), f"tensor '{_short(t.name)}' holds {len(t.data or b'')} "
                        f"bytes, its shape {list(t.shape)} of {t.type} needs {n * item}")
        return np.frombuffer(t.data, dtype=dtype).reshape(t.shape)

    def _dequantize(self, op: _Op, t: _Tensor, raw: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray | None, int]:
        scale = t.scale
        zp = t.zero_point if t.zero_point is not None else np.zeros(1, dtype=np.int64)
        assert scale is not None
        if scale.size == 1:
            real = (raw.astype(np.float64) - float(zp.reshape(-1)[0])) * float(scale[0])
            return real, scale.copy(), 0
        axis = t.qdim
        if not 0 <= axis < raw.ndim or raw.shape[axis] != scale.size:
            self.b.fail(self.where(op), f"tensor '{_short(t.name)}': {scale.size} scales do not "
                        f"match dimension {axis} of its shape {list(t.shape)}")
        if zp.size not in (1, scale.size):
            self.b.fail(self.where(op), f"tensor '{_short(t.name)}': {zp.size} zero points for "
                        f"{scale.size} scales")
        bshape = [1] * raw.ndim
        bshape[axis] = scale.size
        zps = np.broadcast_to(zp.reshape(-1), (scale.size,)).reshape(bshape)
        real = (raw.astype(np.float64) - zps) * scale.reshape(bshape)
        return real, scale.copy(), axis

    def act(self, op: _Op, code: int) -> str:
        if code not in _ACT:
            self.b.fail(self.where(op), f"fused activation {_ACT_NAMES.get(code, code)} is "
                        "unsupported; supported: NONE, RELU, RELU6")
        return _ACT[code]

    def out_shape_check(self, op: _Op, shape: Shape) -> None:
        if not self.static:
            return
        t = self.t(op.outputs[0])
        file_shape = _hwc(t.shape)
        if file_shape is not None and file_shape != shape:
            self.b.fail(self.where(op), f"the file gives its output the shape {list(t.shape)}; "
                        f"its input and parameters give {fmt_shape(shape)} (HWC)")

    def name_for(self, op: _Op, tensor: int, fallback: str) -> str:
        base = _base_name(self.t(tensor).name, "")
        if not base:
            k = self.names_fallback.get(fallback, 0)
            self.names_fallback[fallback] = k + 1
            base = f"{fallback}_{k}"
        return base

    def emit(self, op: _Op, base: str, table: dict[str, Any], inputs: list[Value],
             shape: Shape, *, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
             notes: list[str] | None = None, act: str | None = None,
             weight_scales: np.ndarray | None = None) -> Value:
        out = op.outputs[0]
        if act is not None:
            table["activation"] = act
        layer = self.b.add(base, table, inputs, op=op.name, node=self.t(out).name, weight=weight,
                           bias=bias, notes=notes)
        for part in self.t(out).name.split(";"):
            comps = part.split("/")
            if len(comps) >= 2 and comps[-1].startswith("FusedBatchNorm"):
                layer.notes.append(f"BatchNormalization '{_short(comps[-2])}' already folded "
                                   "into it by the TFLite converter (per the tensor name)")
        if act not in (None, "none"):
            layer.notes.append(f"fused activation {act.upper()}")
        layer.weight_scales = None if weight_scales is None else weight_scales.astype(F)
        t = self.t(out)
        layer.out_range = self.qrange(t)
        self.out_shape_check(op, shape)
        v = Value(src=layer.name, shape=shape, qrange=layer.out_range, qscale=self._scale(t))
        self.values[out] = v
        return v

    # ------------------------------------------------------------ the walk
    def run(self) -> Imported:
        g, b = self.g, self.b
        if g.subgraphs != 1:
            b.fail("", f"{g.subgraphs} subgraphs: mcusim imports single-graph models only")
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            b.fail("", f"{_count(len(g.inputs), 'input')} and {_count(len(g.outputs), 'output')}"
                   ": mcusim imports models with one input and one output")
        tin = self.t(g.inputs[0])
        if tin.type not in ("FLOAT32", "INT8", "UINT8"):
            b.fail("", f"input '{_short(tin.name)}' has type {tin.type}: mcusim imports models "
                   "with a float32 or int8 input")
        shape = self._input_shape(tin)
        self.input_range = self.qrange(tin)
        self.quantized = tin.type in _QRANGE
        self.values[g.inputs[0]] = Value(src="input", shape=shape, qrange=self.input_range,
                                         qscale=self._scale(tin))
        for op in g.ops:
            self.op(op)
        out = g.outputs[0]
        if out not in self.values:
            b.fail("", f"the output tensor '{_short(self.t(out).name)}' is not an activation "
                   "mcusim computes")
        return b.finish(self.values[out], name="", input_shape=shape, input_range=self.input_range,
                        quantized=self.quantized, where="output")

    def _input_shape(self, tin: _Tensor) -> Shape:
        file_shape = _hwc(tin.shape)
        sig = tin.signature or tin.shape
        dynamic = any(d < 0 for d in sig[1:]) if len(sig) > 1 else any(d < 0 for d in sig)
        if file_shape is None or (len(sig) > 1 and sig[0] not in (1, -1)):
            self.b.fail("", f"input '{_short(tin.name)}' has shape {list(sig)}: mcusim imports "
                        "inputs [1, H, W, C], [1, W, C] or [1, N] (batch 1)")
        if self.input_shape is not None:
            given = tuple(int(x) for x in self.input_shape)
            if not dynamic and given != file_shape:
                self.b.fail("", f"--input-shape {fmt_shape(given)} does not match the model's "
                            f"input {fmt_shape(file_shape)} (HWC)")
            if dynamic:
                self.static = False
                # a dynamic dimension (-1 in the signature) takes any size, the others must
                # be the file's
                ok = all(s < 0 or g == f for f, g, s in
                         zip(file_shape, given, _hwc((1, *sig[1:])) or file_shape,
                             strict=True))
                if not ok:
                    self.b.fail("", f"--input-shape {fmt_shape(given)} does not fit the model's "
                                f"input {list(sig)}")
            return given  # type: ignore[return-value]
        if dynamic:
            self.b.fail("", f"input '{_short(tin.name)}' has dynamic dimensions {list(sig)}: "
                        "give its size with --input-shape H,W,C")
        return file_shape

    def op(self, op: _Op) -> None:
        handler = getattr(self, "op_" + op.name.lower(), None)
        if handler is None or op.name not in SUPPORTED_OPS:
            self.b.fail(self.where(op), f"unsupported op; supported: {', '.join(SUPPORTED_OPS)}")
        if not op.outputs:
            self.b.fail(self.where(op), "has no output")
        handler(op)

    def _check_act_io(self, op: _Op, n_min: int) -> None:
        if len(op.inputs) < n_min:
            self.b.fail(self.where(op), f"has {len(op.inputs)} inputs, expected {n_min}")

    # conv / depthwise conv
    def op_conv_2d(self, op: _Op) -> None:
        self._conv(op, depthwise=False)

    def op_depthwise_conv_2d(self, op: _Op) -> None:
        self._conv(op, depthwise=True)

    def _conv(self, op: _Op, depthwise: bool) -> None:
        self._check_act_io(op, 2)
        where = self.where(op)
        o = op.options
        x = self.value(op, op.inputs[0])
        w, wscales, waxis = self.const(op, op.inputs[1], "filter")
        if w.ndim != 4:
            self.b.fail(where, f"filter of shape {list(w.shape)}: expected 4 dimensions")
        if o.get("DilationHFactor", 1) != 1 or o.get("DilationWFactor", 1) != 1:
            self.b.fail(where, f"dilation {o['DilationHFactor']}x{o['DilationWFactor']}: mcusim "
                        "supports dilation 1 only")
        H, W, C = x.shape
        stride = (int(o.get("StrideH", 1)), int(o.get("StrideW", 1)))
        if min(stride) < 1:
            self.b.fail(where, f"stride {fmt_shape(stride)}: must be >= 1")
        if depthwise:
            kernel = (w.shape[1], w.shape[2])
            if w.shape[0] != 1 or w.shape[3] % C:
                self.b.fail(where, f"depthwise filter {list(w.shape)} does not fit the input "
                            f"{fmt_shape(x.shape)}")
            mult = w.shape[3] // C
            if mult != 1:
                self.b.fail(where, f"depth multiplier {mult}: mcusim supports dwconv2d with "
                            "depth multiplier 1 only")
            cout = C
            weight = np.transpose(w[0], (2, 0, 1))  # (C, kh, kw)
            ch_axis = 3
        else:
            cout, kernel = w.shape[0], (w.shape[1], w.shape[2])
            if w.shape[3] != C:
                self.b.fail(where, f"filter {list(w.shape)} expects {w.shape[3]} input channels, "
                            f"the input has {C} (grouped convolution is unsupported)")
            weight = w  # (Cout, kh, kw, Cin): TFLite's OHWI is mcusim's layout
            ch_axis = 0
        mode = "same" if o.get("Padding", 0) == 0 else "valid"
        pads = conv_padding(where, self.b, mode, (H, W), kernel, stride, x.pad)
        shape = conv_out(where, self.b, x.shape, kernel, stride, pads, cout)
        notes = []
        if x.pad is not None:
            notes.append(f"PAD {x.pad_nodes[0]} folded into padding {list(pads)}")
        ws = self._weight_scales(op, wscales, waxis, ch_axis, cout, notes)
        bias = self._bias(op, x, wscales, cout)
        table = {"type": "dwconv2d" if depthwise else "conv2d"}
        if not depthwise:
            table["filters"] = cout
        table.update(kernel=list(kernel), stride=list(stride), padding=list(pads),
                     activation="none", bias=bias is not None)
        base = self.name_for(op, op.inputs[1], table["type"])
        act = self.act(op, o.get("FusedActivationFunction", 0))
        self.emit(op, base, table, [x], shape, weight=weight, bias=bias, notes=notes,
                  act=act, weight_scales=ws)
        self._track_quant(op)

    def _track_quant(self, op: _Op) -> None:
        if self.t(op.outputs[0]).type in _QRANGE:
            self.quantized = True

    def _weight_scales(self, op: _Op, scales: np.ndarray | None, axis: int, ch_axis: int,
                       cout: int, notes: list[str]) -> np.ndarray | None:
        """The weight scale of each output channel (None for float weights), and a note."""
        if scales is None:
            return None
        k = op.inputs[1]
        kind = "int8" if k in self.consts or self.t(k).type == "INT8" else self.t(k).type.lower()
        how = ""
        if self.t(op.inputs[0]).type == "FLOAT32":
            how = (" (a constant DEQUANTIZE feeds them)" if k in self.consts else
                   " (a hybrid kernel: float activations, quantized on the fly at run time)")
        if scales.size == 1:
            notes.append(f"per-tensor {kind} weights{how}, scale {float(scales[0]):.4g}: "
                         "dequantized")
            return np.full(cout, float(scales[0]))
        if axis != ch_axis or scales.size != cout:
            notes.append(f"{kind} weights quantized along dimension {axis}{how}: dequantized")
            return None
        notes.append(scale_note(scales, how))
        return scales

    def _bias(self, op: _Op, x: Value, wscales: np.ndarray | None, cout: int
              ) -> np.ndarray | None:
        """The float bias: int32 with the kernels' scale s_in * s_w[c], or float as is."""
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            return None
        k = op.inputs[2]
        t = self.t(k)
        if t.type in ("INT32", "INT64") and t.data is not None:
            raw = self._raw(op, t).astype(np.float64).reshape(-1)
            if raw.size != cout:
                self.b.fail(self.where(op), f"bias has {raw.size} values for {cout} outputs")
            if x.qscale is not None and wscales is not None:
                sw = np.broadcast_to(wscales.reshape(-1), (cout,)) if wscales.size in (1, cout) \
                    else None
                if sw is not None:
                    return raw * (x.qscale * sw)  # the integer kernels' bias scale
            if t.scale is not None and t.scale.size in (1, cout):
                return raw * np.broadcast_to(t.scale, (cout,))
            self.b.fail(self.where(op), "int32 bias without an int8 input and weight scale")
        bias, _, _ = self.const(op, k, "bias")
        bias = bias.reshape(-1)
        if bias.size != cout:
            self.b.fail(self.where(op), f"bias has {bias.size} values for {cout} outputs")
        return bias

    def op_fully_connected(self, op: _Op) -> None:
        self._check_act_io(op, 2)
        where = self.where(op)
        o = op.options
        if o.get("WeightsFormat", 0) != 0:
            self.b.fail(where, "shuffled weights format: unsupported (DEFAULT only)")
        x = self.value(op, op.inputs[0])
        w, wscales, waxis = self.const(op, op.inputs[1], "weights")
        if w.ndim != 2:
            self.b.fail(where, f"weights of shape {list(w.shape)}: expected 2 dimensions")
        units, n_in = w.shape
        if math.prod(x.shape) != n_in:
            self.b.fail(where, f"weights {list(w.shape)} expect {n_in} inputs, the input "
                        f"{fmt_shape(x.shape)} has {math.prod(x.shape)}")
        if x.shape[:2] != (1, 1):
            # TFLite flattens an fc's input in NHWC order: exactly mcusim's flatten
            fl = self.b.add(f"{self.name_for(op, op.inputs[1], 'fc')}_flatten",
                            {"type": "flatten"}, [x], op="FULLY_CONNECTED",
                            node=self.t(op.outputs[0]).name,
                            notes=["the input flattening FULLY_CONNECTED does implicitly"])
            fl.out_range = x.qrange
            x = Value(src=fl.name, shape=(1, 1, n_in), qrange=x.qrange, qscale=x.qscale)
        notes: list[str] = []
        ws = self._weight_scales(op, wscales, waxis, 0, units, notes)
        bias = self._bias(op, x, wscales, units)
        table = {"type": "fc", "units": int(units), "activation": "none",
                 "bias": bias is not None}
        act = self.act(op, o.get("FusedActivationFunction", 0))
        self.emit(op, self.name_for(op, op.inputs[1], "fc"), table, [x], (1, 1, int(units)),
                  weight=w, bias=bias, notes=notes, act=act, weight_scales=ws)
        self._track_quant(op)

    # pools
    def op_average_pool_2d(self, op: _Op) -> None:
        self._pool(op, "avgpool")

    def op_max_pool_2d(self, op: _Op) -> None:
        self._pool(op, "maxpool")

    def _pool(self, op: _Op, ltype: str) -> None:
        self._check_act_io(op, 1)
        where = self.where(op)
        o = op.options
        x = self.value(op, op.inputs[0])
        H, W, C = x.shape
        k = (int(o.get("FilterHeight", 1)), int(o.get("FilterWidth", 1)))
        s = (int(o.get("StrideH", 1)), int(o.get("StrideW", 1)))
        if min(k) < 1 or k[0] > H or k[1] > W:
            self.b.fail(where, f"pool {fmt_shape(k)} does not fit its input {H}x{W}")
        if k != s:
            self.b.fail(where, f"pool {fmt_shape(k)} with stride {fmt_shape(s)}: mcusim pools "
                        "are non-overlapping (stride == pool size)")
        if o.get("Padding", 0) == 0:  # SAME: fine only when it adds no padding
            pads = same_padding(H, k[0], s[0])[1:] + same_padding(W, k[1], s[1])[1:]
            if any(pads):
                self.b.fail(where, f"SAME padding of a {fmt_shape(k)} pool on {H}x{W} pads "
                            f"{list(pads)}: mcusim pools without padding (VALID)")
        if o.get("FusedActivationFunction", 0) != 0:
            self.b.fail(where, "fused activation on a pool: unsupported")
        pool: Any = "global" if k == (H, W) else list(k)
        shape = (H // k[0], W // k[1], C)
        self.emit(op, self.name_for(op, op.outputs[0], ltype), {"type": ltype, "pool": pool},
                  [x], shape)

    def op_mean(self, op: _Op) -> None:
        self._check_act_io(op, 2)
        where = self.where(op)
        x = self.value(op, op.inputs[0])
        axes, _, _ = self.const(op, op.inputs[1], "axes")
        rank = len(self.t(op.inputs[0]).shape)
        ax = {int(a) % rank for a in axes.reshape(-1)} if rank else set()
        if rank != 4 or ax != {1, 2}:
            self.b.fail(where, f"mean over axes {sorted(ax)} of a rank-{rank} tensor: mcusim "
                        "supports MEAN over H and W only (a global average pool)")
        self.emit(op, self.name_for(op, op.outputs[0], "avgpool"),
                  {"type": "avgpool", "pool": "global"}, [x], (1, 1, x.shape[2]),
                  notes=["MEAN over H, W as a global average pool"])

    # shape-only ops
    def op_reshape(self, op: _Op) -> None:
        self._reshape(op)

    def op_squeeze(self, op: _Op) -> None:
        self._reshape(op)

    def op_expand_dims(self, op: _Op) -> None:
        self._reshape(op)

    def _reshape(self, op: _Op) -> None:
        where = self.where(op)
        x = self.value(op, op.inputs[0])
        f_in = _hwc(self.t(op.inputs[0]).shape)
        f_out = _hwc(self.t(op.outputs[0]).shape)
        if f_in is None or f_out is None or math.prod(f_in) != math.prod(f_out):
            self.b.fail(where, f"reshape {list(self.t(op.inputs[0]).shape)} -> "
                        f"{list(self.t(op.outputs[0]).shape)}: unsupported")
        node = self.t(op.outputs[0]).name
        if f_out == f_in:
            self.b.dropped.append(f"{op.name} '{_short(node)}': changes nothing in HWC")
            self.alias(op, x, op.outputs[0])
            return
        if f_out[:2] == (1, 1):  # a flatten, in NHWC order: mcusim's
            n = math.prod(x.shape)
            if x.shape[:2] == (1, 1):
                self.b.dropped.append(f"{op.name} '{_short(node)}': changes nothing in HWC")
                self.alias(op, x, op.outputs[0])
                return
            self.emit(op, self.name_for(op, op.outputs[0], "flatten"), {"type": "flatten"},
                      [x], (1, 1, n))
            return
        self.b.fail(where, f"reshape {fmt_shape(f_in)} -> {fmt_shape(f_out)} (HWC): mcusim "
                    "supports reshapes that flatten (to 1x1xN) or change nothing")

    def op_pad(self, op: _Op) -> None:
        self._pad(op)

    def op_padv2(self, op: _Op) -> None:
        self._pad(op)

    def _pad(self, op: _Op) -> None:
        where = self.where(op)
        self._check_act_io(op, 2)
        x = self.value(op, op.inputs[0])
        pads, _, _ = self.const(op, op.inputs[1], "paddings")
        tin = self.t(op.inputs[0])
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            cv, _, _ = self.const(op, op.inputs[2], "constant value")
            zp = int(tin.zero_point.reshape(-1)[0]) if tin.zero_point is not None and \
                tin.type in _QRANGE else 0
            raw = self._raw(op, self.t(op.inputs[2])) if self.t(op.inputs[2]).data else cv
            if float(np.asarray(raw, dtype=np.float64).reshape(-1)[0]) != float(zp):
                self.b.fail(where, "padding with a non-zero constant: mcusim pads with zeros")
        pads = pads.astype(np.int64).reshape(-1, 2)
        rank = len(tin.shape)
        if rank == 4 and pads.shape == (4, 2) and not pads[0].any() and not pads[3].any():
            extra = (int(pads[1, 0]), int(pads[1, 1]), int(pads[2, 0]), int(pads[2, 1]))
        elif rank == 3 and pads.shape == (3, 2) and not pads[0].any() and not pads[2].any():
            extra = (0, 0, int(pads[1, 0]), int(pads[1, 1]))
        else:
            self.b.fail(where, f"paddings {pads.tolist()}: mcusim folds only zero padding of H "
                        "and W into a convolution")
        if min(extra) < 0:
            self.b.fail(where, f"negative padding {list(extra)}: unsupported")
        if x.pad is not None:
            extra = tuple(a + c for a, c in zip(extra, x.pad, strict=True))  # type: ignore[assignment]
        node = _short(self.t(op.outputs[0]).name.split(";")[-1])
        self.values[op.outputs[0]] = Value(
            src=x.src, shape=x.shape, exclusive=x.exclusive, pad=extra,
            pad_nodes=[*x.pad_nodes, f"'{node}'"], qrange=x.qrange, qscale=x.qscale)
        self.b.dropped.append(f"{op.name} '{node}': folded into the next convolution's padding")

    def op_add(self, op: _Op) -> None:
        self._check_act_io(op, 2)
        where = self.where(op)
        if any(self.is_const(k) for k in op.inputs[:2]):
            self.b.fail(where, "ADD of a constant: mcusim supports ADD of two activations "
                        "(a residual connection) only")
        a, c = self.value(op, op.inputs[0]), self.value(op, op.inputs[1])
        if a.shape != c.shape:
            self.b.fail(where, f"adds {fmt_shape(a.shape)} and {fmt_shape(c.shape)}: mcusim adds "
                        "tensors of the same shape only (no broadcasting)")
        act = self.act(op, op.options.get("FusedActivationFunction", 0))
        self.emit(op, self.name_for(op, op.outputs[0], "add"),
                  {"type": "add", "activation": "none"}, [a, c], a.shape, act=act)

    def op_relu(self, op: _Op) -> None:
        self._relu(op, "relu")

    def op_relu6(self, op: _Op) -> None:
        self._relu(op, "relu6")

    def _relu(self, op: _Op, act: str) -> None:
        x = self.value(op, op.inputs[0])
        tout = self.t(op.outputs[0])
        v = self.b.fuse_activation(x, act, op=op.name, node=_short(tout.name), where=self.where(op),
                                   out_range=self.qrange(tout))
        v.qscale = self._scale(tout) or x.qscale
        if v.qrange is None:
            v.qrange = x.qrange
        self.values[op.outputs[0]] = v

    def op_softmax(self, op: _Op) -> None:
        where = self.where(op)
        x = self.value(op, op.inputs[0])
        beta = op.options.get("Beta", 1.0)
        if abs(beta - 1.0) > 1e-6:
            self.b.fail(where, f"softmax with beta {beta}: mcusim's loss uses beta 1")
        if op.outputs[0] not in self.g.outputs and not self._feeds_output_only(op.outputs[0]):
            self.b.fail(where, "SOFTMAX inside the graph: mcusim drops a softmax only at the "
                        "output (its loss includes it)")
        self.b.softmax = True
        self.b.dropped.append(f"SOFTMAX '{_short(self.t(op.outputs[0]).name)}': at the output; "
                              "mcusim's softmax cross-entropy loss includes it")
        self.values[op.outputs[0]] = x

    def _feeds_output_only(self, k: int) -> bool:
        """Whether tensor k reaches the graph output through DEQUANTIZE/QUANTIZE/RESHAPE only."""
        seen = 0
        while k not in self.g.outputs and seen < 8:
            users = [o for o in self.g.ops if k in o.inputs]
            if len(users) != 1 or users[0].name not in ("DEQUANTIZE", "QUANTIZE", "RESHAPE"):
                return False
            k = users[0].outputs[0]
            seen += 1
        return k in self.g.outputs

    def op_quantize(self, op: _Op) -> None:
        x = self.value(op, op.inputs[0])
        tout = self.t(op.outputs[0])
        if tout.type in _QRANGE:
            self.quantized = True
        if x.src == "input" and self.input_range is None:
            self.input_range = self.qrange(tout)
        self.b.dropped.append(f"QUANTIZE '{_short(tout.name)}' (to {tout.type}): mcusim "
                              "quantizes by itself")
        self.alias(op, x, op.outputs[0], keep_pad=True)

    def op_dequantize(self, op: _Op) -> None:
        k = op.inputs[0]
        if self.is_const(k):
            arr, scales, axis = self.const(op, k, "input")
            self.consts[op.outputs[0]] = arr
            if scales is not None:
                self.const_scales[op.outputs[0]] = (scales, axis)
            return
        x = self.value(op, k)
        self.b.dropped.append(f"DEQUANTIZE '{_short(self.t(op.outputs[0]).name)}': mcusim "
                              "quantizes by itself")
        self.alias(op, x, op.outputs[0], keep_pad=True)
        self.values[op.outputs[0]].qrange = x.qrange
        self.values[op.outputs[0]].qscale = None


def read_tflite(path: str | Path, *, input_shape: tuple[int, int, int] | None = None
                ) -> Imported:
    """Read a .tflite file as an mcusim model; ModelError (one line) when it cannot be."""
    src = shown(path)
    check_input_shape(input_shape)
    data = read_bytes(path, "a TFLite model (.tflite)", MAX_IMPORT_BYTES, ModelError)
    try:
        import tflite  # noqa: F401
    except ImportError:  # pragma: no cover - a dependency of the import command
        raise UsageError("reading .tflite files needs the 'tflite' package: "
                         "pip install 'mcusim[import]'") from None
    graph = _parse(data, src)
    with np.errstate(all="ignore"):
        return _TFLite(graph, str(path), input_shape).run()
