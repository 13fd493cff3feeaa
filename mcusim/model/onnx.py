"""Import an ONNX model (.onnx) as an mcusim model (`Imported`).

ONNX tensors are NCHW; mcusim's are HWC (batch 1).  Every activation keeps both views: its
HWC shape (the layout of the data mcusim computes) and its ONNX shape (to interpret the ops).
An input [N, C, H, W] is (H, W, C); a 1-D input [N, C, L] is (1, L, C) (H = 1, so a 1-D
convolution is a conv2d with kernel [1, k]); a vector input [N, F] is (1, 1, F).  Weights are
transposed to mcusim's layouts: conv (Cout, Cin, kh, kw) -> (Cout, kh, kw, Cin); depthwise
(C, 1, kh, kw) -> (C, kh, kw); fc (out, in).  A Flatten / Reshape of a (C, H, W) tensor
flattens in CHW order while mcusim's flatten is HWC: the columns of the fc that consumes it
are permuted to match (exactly the same function).

Supported nodes (opsets 13..28, the default domain): Conv (1-D and 2-D; strides; pads or
auto_pad SAME_UPPER / SAME_LOWER / VALID; group 1 or depthwise with one filter per group;
dilations 1), Gemm (transB, alpha, beta folded; transA 0), MatMul (+ Add of a constant: the
bias), Relu, Clip(0, 6) (relu6) and Clip(0, inf) (relu) fused into the producing layer,
MaxPool / AveragePool (non-overlapping, no padding), GlobalAveragePool / GlobalMaxPool,
ReduceMean over H and W, Flatten / Reshape / Squeeze / Unsqueeze (a flatten, or dropped),
Pad (constant 0, folded into the next Conv), BatchNormalization (folded into the Conv / Gemm
before it), Dropout and Identity (dropped), Softmax / LogSoftmax at the output (dropped: the
loss includes it), Add (two activations: a residual add; a constant: a bias folded into the
layer before it), and constant sub-graphs (Constant, Shape, Gather, Concat, Cast,
Unsqueeze... computing e.g. a Reshape's target) evaluated at import.

Every problem is one line of ModelError naming the node, e.g. "model.onnx: node 'conv3'
(ConvTranspose): unsupported op; supported: Conv, Gemm, ...".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mcusim.errors import InternalError, ModelError, UsageError
from mcusim.model.imported import Imported
from mcusim.model.importing import (
    MAX_IMPORT_BYTES,
    MAX_OPS,
    MAX_TENSORS,
    Shape,
    Value,
    _Builder,
    check_input_shape,
    conv_out,
    conv_padding,
    fmt_shape,
    sanitize,
)
from mcusim.userfiles import read_bytes, shown

MIN_OPSET, MAX_OPSET = 13, 28

LAYER_OPS = ("Conv", "Gemm", "MatMul", "Add", "Relu", "Clip", "MaxPool", "AveragePool",
             "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "Flatten", "Reshape", "Squeeze",
             "Unsqueeze", "Pad", "BatchNormalization", "Dropout", "Identity", "Softmax",
             "LogSoftmax")
# evaluated at import on constants only (weights, shape computations)
CONSTANT_OPS = ("Constant", "Shape", "Gather", "Concat", "Cast", "Transpose", "Mul", "Sub",
                "Div")
SUPPORTED_OPS = LAYER_OPS + CONSTANT_OPS
_SUPPORTED_TEXT = f"{', '.join(LAYER_OPS)} (and on constants: {', '.join(CONSTANT_OPS)})"

# the attributes each op may carry (anything else: unsupported attribute)
_ATTRS: dict[str, tuple[str, ...]] = {
    "Conv": ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"),
    "Gemm": ("alpha", "beta", "transA", "transB"),
    "MaxPool": ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order",
                "strides"),
    "AveragePool": ("auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape",
                    "pads", "strides"),
    "ReduceMean": ("axes", "keepdims", "noop_with_empty_axes"),
    "Flatten": ("axis",),
    "Reshape": ("allowzero",),
    "Pad": ("mode",),
    "BatchNormalization": ("epsilon", "momentum", "training_mode"),
    "Dropout": ("seed",),
    "Softmax": ("axis",),
    "LogSoftmax": ("axis",),
    "Constant": ("value", "value_float", "value_floats", "value_int", "value_ints"),
    "Shape": ("start", "end"),
    "Gather": ("axis",),
    "Concat": ("axis",),
    "Cast": ("to", "saturate", "round_mode"),
    "Transpose": ("perm",),
}
# the AttributeProto type of each attribute (FLOAT 1, INT 2, STRING 3, TENSOR 4, INTS 7)
_ATTR_TYPES: dict[str, int] = {
    "auto_pad": 3, "mode": 3, "dilations": 7, "kernel_shape": 7, "pads": 7, "strides": 7,
    "perm": 7, "axes": 7, "group": 2, "transA": 2, "transB": 2, "axis": 2, "keepdims": 2,
    "noop_with_empty_axes": 2, "ceil_mode": 2, "count_include_pad": 2, "storage_order": 2,
    "allowzero": 2, "training_mode": 2, "seed": 2, "start": 2, "end": 2, "to": 2,
    "saturate": 2, "round_mode": 3, "alpha": 1, "beta": 1, "epsilon": 1, "momentum": 1,
    "value": 4, "value_float": 1, "value_floats": 6, "value_int": 2, "value_ints": 7,
}
_ATTR_TYPE_NAMES = {1: "FLOAT", 2: "INT", 3: "STRING", 4: "TENSOR", 6: "FLOATS", 7: "INTS"}
# ops evaluated at import when all their inputs are constants
_CONST_OPS = ("Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Concat", "Gather",
              "Transpose", "Add", "Sub", "Mul", "Div", "Flatten")


def _hwc(oshape: tuple[int, ...]) -> Shape | None:
    """mcusim's (H, W, C) of an ONNX activation shape with batch 1."""
    if len(oshape) == 4 and oshape[0] == 1:
        return (oshape[2], oshape[3], oshape[1])
    if len(oshape) == 3 and oshape[0] == 1:
        return (1, oshape[2], oshape[1])
    if len(oshape) == 2 and oshape[0] == 1:
        return (1, 1, oshape[1])
    if len(oshape) == 1:
        return (1, 1, oshape[0])
    return None


def _chw_perm(shape: Shape) -> np.ndarray | None:
    """perm[i] = the HWC position of the i-th value of a (C, H, W) tensor flattened in CHW
    order; None when both orders agree (H * W == 1 or C == 1)."""
    H, W, C = shape
    if H * W == 1 or C == 1:
        return None
    return np.arange(H * W * C).reshape(H, W, C).transpose(2, 0, 1).reshape(-1)


class _Onnx:
    def __init__(self, model: Any, source: str, input_shape: Shape | None) -> None:
        self.model = model
        self.g = model.graph
        self.b = _Builder(source, "onnx")
        self.src = shown(source)
        self.input_shape = input_shape
        self.values: dict[str, Value] = {}
        self.oshape: dict[str, tuple[int, ...]] = {}  # ONNX shape of each activation
        self.consts: dict[str, np.ndarray] = {}
        self.consumers: dict[str, int] = {}
        self.inferred: dict[str, tuple[int, ...]] = {}
        self.counter: dict[str, int] = {}

    # ------------------------------------------------------------ helpers
    def fail(self, where: str, problem: str) -> Any:
        self.b.fail(where, problem)

    def where(self, node: Any) -> str:
        label = node.name or (node.output[0] if node.output else "?")
        return f"node '{_clip(label)}' ({_clip(node.op_type, 40)})"

    def attrs(self, node: Any) -> dict[str, Any]:
        from onnx import helper

        allowed = _ATTRS.get(node.op_type, ())
        out: dict[str, Any] = {}
        for a in node.attribute:
            if a.name not in allowed:
                self.fail(self.where(node), f"unsupported attribute '{_clip(a.name, 40)}' "
                          f"(supported: {', '.join(allowed) or 'none'})")
            want = _ATTR_TYPES.get(a.name)
            if want is not None and a.type != want:
                self.fail(self.where(node), f"attribute '{a.name}' has type "
                          f"{_ATTR_TYPE_NAMES.get(a.type, a.type)}, expected "
                          f"{_ATTR_TYPE_NAMES[want]}")
            out[a.name] = helper.get_attribute_value(a)
        return out

    def value(self, node: Any, name: str) -> Value:
        if name in self.consts:
            self.fail(self.where(node), f"input '{_clip(name)}' is a constant where mcusim "
                      "expects an activation")
        if name not in self.values:
            self.fail(self.where(node), f"input '{_clip(name)}' is not produced by any earlier "
                      "node (the graph is not topologically sorted)")
        v = self.values[name]
        if v.pad is not None and node.op_type != "Conv":
            self.fail(self.where(node), f"its input is zero-padded by Pad ({', '.join(v.pad_nodes)}"
                      "): mcusim folds a Pad only into a following Conv")
        exclusive = v.exclusive and self.consumers.get(name, 0) == 1
        return Value(src=v.src, shape=v.shape, exclusive=exclusive, pad=v.pad,
                     pad_nodes=v.pad_nodes, perm=v.perm)

    def const(self, node: Any, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            how = "an activation" if name in self.values else "not a constant"
            self.fail(self.where(node), f"its {what} '{_clip(name)}' is {how}: mcusim needs "
                      "a constant (an initializer or a Constant node)")
        return self.consts[name]

    def opt_const(self, node: Any, i: int, what: str) -> np.ndarray | None:
        if len(node.input) <= i or not node.input[i]:
            return None
        return self.const(node, node.input[i], what)

    def alias(self, node: Any, v: Value, in_name: str, *, note: str | None = None) -> None:
        out = node.output[0]
        self.values[out] = Value(src=v.src, shape=v.shape,
                                 exclusive=v.exclusive and self.consumers.get(in_name, 0) == 1,
                                 pad=v.pad, pad_nodes=v.pad_nodes, perm=v.perm)
        self.oshape[out] = self.oshape[in_name]
        if note:
            self.b.dropped.append(f"{node.op_type} '{_clip(node.name or out)}': {note}")

    def base(self, node: Any, fallback: str) -> str:
        name = node.name
        if name:
            comps = [c for c in name.split("/") if c]
            if len(comps) > 1 and comps[-1].split("_")[0] == node.op_type:
                comps = comps[:-1]  # '/layer1/conv1/Conv' -> layer1_conv1
            text = "_".join(comps)
            if text:
                return sanitize(text, fallback)
        k = self.counter.get(fallback, 0)
        self.counter[fallback] = k + 1
        return f"{fallback}_{k}"

    def emit(self, node: Any, fallback: str, table: dict[str, Any], inputs: list[Value],
             shape: Shape, oshape: tuple[int, ...], *, weight: np.ndarray | None = None,
             bias: np.ndarray | None = None, notes: list[str] | None = None) -> Value:
        out = node.output[0]
        layer = self.b.add(self.base(node, fallback), table, inputs, op=node.op_type,
                           node=_clip(node.name or out, 120), weight=weight, bias=bias,
                           notes=notes)
        got = self.inferred.get(out)
        if got is not None and all(d > 0 for d in got) and _hwc(got) != shape:
            raise InternalError(f"{self.src}: {self.where(node)}: mcusim computes the output "
                                f"{fmt_shape(shape)} (HWC), ONNX shape inference "
                                f"{list(got)}", layer=layer.name)
        v = Value(src=layer.name, shape=shape)
        self.values[out] = v
        self.oshape[out] = oshape
        return v

    def spatial_rank(self, node: Any, name: str) -> int:
        r = len(self.oshape[name])
        if r not in (3, 4):
            self.fail(self.where(node), f"input of rank {r}: expected [N, C, H, W] or "
                      "[N, C, L]")
        return r

    # ------------------------------------------------------------ the walk
    def run(self) -> Imported:
        g, b = self.g, self.b
        if len(g.node) > MAX_OPS or len(g.initializer) > MAX_TENSORS:
            self.fail("", f"{len(g.node):,} nodes and {len(g.initializer):,} initializers: more "
                      f"than mcusim reads ({MAX_OPS:,} / {MAX_TENSORS:,})")
        if len(g.node) == 0:
            self.fail("", "the graph has no nodes (not an ONNX model?)")
        self._opset()
        self._initializers()
        inp = self._input()
        for node in g.node:
            for name in node.input:
                if name:
                    self.consumers[name] = self.consumers.get(name, 0) + 1
        outs = [o.name for o in g.output]
        for name in outs:
            self.consumers[name] = self.consumers.get(name, 0) + 1
        if len(outs) != 1:
            self.fail("", f"{len(outs)} graph outputs: mcusim imports models with one output")
        self._infer(inp)
        for node in g.node:
            self.node(node)
        if outs[0] not in self.values:
            self.fail("", f"the output '{_clip(outs[0])}' is not an activation mcusim computes")
        return b.finish(self.values[outs[0]], name="", input_shape=self.in_shape,
                        input_range=None, quantized=False, where=f"output '{_clip(outs[0])}'")

    def _opset(self) -> None:
        versions = [o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")]
        if not versions:
            self.fail("", "no default-domain opset import (not an ONNX model?)")
        v = versions[0]
        if not MIN_OPSET <= v <= MAX_OPSET:
            self.fail("", f"opset {v}: mcusim imports ONNX opsets {MIN_OPSET}..{MAX_OPSET} "
                      "(export again with e.g. opset_version=17)")

    def _initializers(self) -> None:
        from onnx import numpy_helper

        if len(self.g.sparse_initializer):
            self.fail("", "sparse initializers are unsupported")
        for t in self.g.initializer:
            if t.data_location == 1:  # EXTERNAL
                self.fail("", f"initializer '{_clip(t.name)}' keeps its data in an external "
                          "file: unsupported (save the model with its weights inside)")
            try:
                self.consts[t.name] = numpy_helper.to_array(t)
            except Exception as e:
                self.fail("", f"initializer '{_clip(t.name)}' cannot be read: "
                          f"{_first_line(e)}")

    def _input(self) -> Any:
        from onnx import TensorProto

        inits = set(self.consts)
        inputs = [i for i in self.g.input if i.name not in inits]
        if len(inputs) != 1:
            self.fail("", f"{len(inputs)} graph inputs: mcusim imports models with one input")
        inp = inputs[0]
        tt = inp.type.tensor_type
        if not inp.type.HasField("tensor_type") or tt.elem_type != TensorProto.FLOAT:
            et = TensorProto.DataType.Name(tt.elem_type) if tt.elem_type in \
                TensorProto.DataType.values() else str(tt.elem_type)
            self.fail("", f"input '{_clip(inp.name)}' has type {et}: mcusim imports float32 "
                      "inputs")
        dims: list[int | None] = []
        for d in tt.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None)
        rank = len(dims)
        if rank not in (2, 3, 4):
            self.fail("", f"input '{_clip(inp.name)}' has rank {rank}: mcusim imports [N, C, H, "
                      "W], [N, C, L] or [N, F] inputs")
        if dims[0] not in (None, 1):
            self.fail("", f"input '{_clip(inp.name)}' has batch {dims[0]}: mcusim imports "
                      "batch 1 (or a dynamic batch)")
        file_hwc = _hwc(tuple(1 if d is None else d for d in dims))
        dynamic = any(d is None for d in dims[1:])
        if self.input_shape is not None:
            given = tuple(int(x) for x in self.input_shape)
            full = {4: (1, given[2], given[0], given[1]), 3: (1, given[2], given[1]),
                    2: (1, given[2])}[rank]
            if (rank == 3 and given[0] != 1) or (rank == 2 and given[:2] != (1, 1)) or any(
                    d is not None and d != f for d, f in zip(dims[1:], full[1:], strict=True)):
                self.fail("", f"--input-shape {fmt_shape(given)} does not fit the input "
                          f"'{_clip(inp.name)}' {_dims_text(dims)}")
            oshape = full
        elif dynamic:
            self.fail("", f"input '{_clip(inp.name)}' has dynamic dimensions {_dims_text(dims)}: "
                      "give its size with --input-shape H,W,C")
        else:
            oshape = (1, *[int(d) for d in dims[1:]])  # type: ignore[misc]
            assert file_hwc is not None
        shape = _hwc(oshape)
        assert shape is not None
        v = Value(src="input", shape=shape)
        self.values[inp.name] = v
        self.in_shape = shape
        self.oshape[inp.name] = oshape
        return inp

    def _infer(self, inp: Any) -> None:
        """ONNX shape inference with the input fixed to batch 1: it validates the graph
        (strict mode) and gives the shapes mcusim's own are checked against."""
        from onnx import shape_inference

        m = type(self.model)()
        m.CopyFrom(self.model)
        for i in m.graph.input:
            if i.name == inp.name:
                dims = i.type.tensor_type.shape.dim
                for d, n in zip(dims, self.oshape[inp.name], strict=True):
                    d.Clear()
                    d.dim_value = n
        del m.graph.value_info[:]
        try:
            m = shape_inference.infer_shapes(m, check_type=True, strict_mode=True,
                                             data_prop=True)
        except Exception as e:
            self.fail("", f"ONNX shape inference fails: {_first_line(e)}")
        for vi in [*m.graph.value_info, *m.graph.output]:
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                self.inferred[vi.name] = tuple(
                    d.dim_value if d.HasField("dim_value") else -1
                    for d in vi.type.tensor_type.shape.dim)

    def node(self, node: Any) -> None:
        op = node.op_type
        where = self.where(node)
        if node.domain not in ("", "ai.onnx") or op not in SUPPORTED_OPS:
            dom = f" (domain {node.domain})" if node.domain not in ("", "ai.onnx") else ""
            self.fail(where, f"unsupported op{dom}; supported: {_SUPPORTED_TEXT}")
        if not node.output or not node.output[0]:
            self.fail(where, "has no output")
        attrs = self.attrs(node)
        if op == "Constant":
            return self.op_constant(node, attrs)
        if op == "Shape":
            return self.op_shape(node, attrs)
        ins = [n for n in node.input if n]
        if op in _CONST_OPS and ins and all(n in self.consts for n in ins):
            return self.fold(node, attrs)
        handler = getattr(self, f"op_{op.lower()}", None)
        if handler is None:
            self.fail(where, "supported only on constants (it computes weights or shapes); "
                      "here it takes an activation")
        handler(node, attrs)

    # ------------------------------------------------------------ constants
    def op_constant(self, node: Any, attrs: dict[str, Any]) -> None:
        from onnx import numpy_helper

        if "value" in attrs:
            try:
                arr = numpy_helper.to_array(attrs["value"])
            except Exception as e:
                self.fail(self.where(node), f"cannot read its value: {_first_line(e)}")
        elif "value_float" in attrs or "value_floats" in attrs:
            arr = np.asarray(attrs.get("value_float", attrs.get("value_floats")), np.float32)
        elif "value_int" in attrs or "value_ints" in attrs:
            arr = np.asarray(attrs.get("value_int", attrs.get("value_ints")), np.int64)
        else:
            self.fail(self.where(node), "a Constant without a numeric value")
        self.consts[node.output[0]] = arr

    def op_shape(self, node: Any, attrs: dict[str, Any]) -> None:
        name = node.input[0]
        if name in self.consts:
            shape = np.asarray(self.consts[name].shape, dtype=np.int64)
        elif name in self.oshape:
            shape = np.asarray(self.oshape[name], dtype=np.int64)
        else:
            self.fail(self.where(node), f"input '{_clip(name)}' is not produced by any earlier "
                      "node")
        start, end = attrs.get("start", 0), attrs.get("end", None)
        self.consts[node.output[0]] = shape[start:end]

    def fold(self, node: Any, attrs: dict[str, Any]) -> None:
        """Evaluate an op on constants (weights or shape computations) at import time."""
        op = node.op_type
        x = [self.consts[n] if n else None for n in node.input]
        try:
            if op == "Identity":
                y = x[0]
            elif op == "Cast":
                from onnx import helper
                y = x[0].astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
            elif op == "Reshape":
                y = x[0].reshape(_reshape_target(x[0].shape, x[1], attrs.get("allowzero", 0)))
            elif op == "Flatten":
                axis = attrs.get("axis", 1) % max(x[0].ndim, 1)
                y = x[0].reshape(math.prod(x[0].shape[:axis]), -1)
            elif op == "Squeeze":
                axes = None if len(x) < 2 or x[1] is None else tuple(int(a) for a in x[1])
                y = np.squeeze(x[0], axis=axes)
            elif op == "Unsqueeze":
                y = x[0]
                axes = sorted(int(a) % (x[0].ndim + len(x[1])) for a in x[1])
                for a in axes:
                    y = np.expand_dims(y, a)
            elif op == "Concat":
                y = np.concatenate([a for a in x if a is not None], axis=attrs["axis"])
            elif op == "Gather":
                y = np.take(x[0], x[1], axis=attrs.get("axis", 0))
            elif op == "Transpose":
                y = np.transpose(x[0], attrs.get("perm"))
            elif op in ("Add", "Sub", "Mul", "Div"):
                fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}.get(op)
                if fn is not None:
                    y = fn(x[0], x[1]).astype(np.result_type(x[0], x[1]))
                elif np.issubdtype(x[0].dtype, np.integer):
                    y = np.trunc(x[0] / x[1]).astype(x[0].dtype)
                else:
                    y = (x[0] / x[1]).astype(x[0].dtype)
            else:  # pragma: no cover - _CONST_OPS lists the above
                raise AssertionError(op)
        except ModelError:
            raise
        except Exception as e:
            self.fail(self.where(node), f"cannot evaluate it on its constant inputs: "
                      f"{_first_line(e)}")
        self.consts[node.output[0]] = np.asarray(y)

    # ------------------------------------------------------------ layers
    def op_conv(self, node: Any, attrs: dict[str, Any]) -> None:
        where = self.where(node)
        x = self.value(node, node.input[0])
        rank = self.spatial_rank(node, node.input[0])
        w = self.const(node, node.input[1], "weight").astype(np.float64)
        bias = self.opt_const(node, 2, "bias")
        if w.ndim != rank:
            self.fail(where, f"weight of shape {list(w.shape)} for a rank-{rank} input")
        if rank == 3:
            w = w[:, :, None, :]  # a 1-D convolution: H = 1
        nd = rank - 2
        H, W, C = x.shape
        M, cpg, kh, kw = w.shape
        ks = attrs.get("kernel_shape")
        if ks is not None and tuple(ks) != tuple(w.shape[2:] if nd == 2 else w.shape[3:]):
            self.fail(where, f"kernel_shape {list(ks)} does not match the weight "
                      f"{list(self.consts[node.input[1]].shape)}")
        dil = attrs.get("dilations", [1] * nd)
        if any(d != 1 for d in dil):
            self.fail(where, f"dilations {list(dil)}: mcusim supports dilation 1 only")
        strides = list(attrs.get("strides", [1] * nd))
        if len(strides) != nd or min(strides) < 1:
            self.fail(where, f"strides {strides}: expected {nd} values >= 1")
        stride = (1, strides[0]) if nd == 1 else (strides[0], strides[1])
        kernel = (kh, kw)
        pads = self._pads(node, attrs, nd, (H, W), kernel, stride)
        group = attrs.get("group", 1)
        notes: list[str] = []
        if nd == 1:
            notes.append("1-D convolution as H = 1, kernel [1, k]")
        if group == 1:
            if cpg != C:
                self.fail(where, f"weight {list(self.consts[node.input[1]].shape)} expects "
                          f"{cpg} input channels, the input has {C}")
            ltype, weight = "conv2d", np.transpose(w, (0, 2, 3, 1))  # (Cout, kh, kw, Cin)
        elif group == C and M == C and cpg == 1:
            ltype, weight = "dwconv2d", w[:, 0]  # (C, kh, kw)
        else:
            self.fail(where, f"group {group} with {C} input channels and {M} filters: mcusim "
                      f"supports group 1 and depthwise convolution (group = channels = "
                      f"filters)")
        if x.pad is not None:
            notes.append(f"Pad {', '.join(x.pad_nodes)} folded into padding")
        pads = conv_padding(where, self.b, "valid", (H, W), kernel, stride,
                            _add4(pads, x.pad))
        shape = conv_out(where, self.b, x.shape, kernel, stride, pads, M)
        b = None
        if bias is not None:
            if bias.size != M:
                self.fail(where, f"bias of {bias.size} values for {M} filters")
            b = bias.reshape(-1).astype(np.float64)
        table: dict[str, Any] = {"type": ltype}
        if ltype == "conv2d":
            table["filters"] = int(M)
        table.update(kernel=list(kernel), stride=list(stride), padding=list(pads),
                     activation="none", bias=b is not None)
        oshape = (1, M, shape[0], shape[1]) if rank == 4 else (1, M, shape[1])
        self.emit(node, "conv" if ltype == "conv2d" else "dwconv", table,
                  [x], shape, oshape, weight=weight, bias=b,
                  notes=notes)

    def _pads(self, node: Any, attrs: dict[str, Any], nd: int, hw: tuple[int, int],
              kernel: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int, int, int]:
        """[top, bottom, left, right] of a Conv / pool from pads or auto_pad."""
        where = self.where(node)
        auto = attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out: list[int] = []
            for size, k, s in zip(hw, kernel, stride, strict=True):
                o = -(-size // s)
                total = max((o - 1) * s + k - size, 0)
                small = total // 2
                out += [small, total - small] if auto == "SAME_UPPER" else [total - small, small]
            return (out[0], out[1], out[2], out[3])
        if auto == "VALID":
            return (0, 0, 0, 0)
        if auto != "NOTSET":
            self.fail(where, f"auto_pad {auto!r}: unsupported (NOTSET, SAME_UPPER, SAME_LOWER, "
                      "VALID)")
        p = list(attrs.get("pads", [0] * (2 * nd)))
        if len(p) != 2 * nd or min(p) < 0:
            self.fail(where, f"pads {p}: expected {2 * nd} values >= 0")
        if nd == 1:
            return (0, 0, p[0], p[1])
        return (p[0], p[2], p[1], p[3])

    def _fc_input(self, node: Any, x: Value, n_in: int) -> tuple[Value, np.ndarray | None]:
        """The (1, 1, N) input of an fc: a flatten is added when the value is not one; the
        permutation of its columns when the ONNX graph flattened in CHW order."""
        where = self.where(node)
        if math.prod(x.shape) != n_in:
            self.fail(where, f"weights expect {n_in} inputs, the input {fmt_shape(x.shape)} has "
                      f"{math.prod(x.shape)}")
        if len(self.oshape[node.input[0]]) != 2:
            self.fail(where, f"input of ONNX shape {list(self.oshape[node.input[0]])}: mcusim "
                      "supports an fc on a [1, N] input (flatten first)")
        return x, x.perm

    def _fc(self, node: Any, x: Value, w: np.ndarray, b: np.ndarray | None,
            notes: list[str]) -> None:
        units, n_in = w.shape
        x, perm = self._fc_input(node, x, n_in)
        if perm is not None:
            w2 = np.empty_like(w)
            w2[:, perm] = w
            w = w2
            notes.append("input flattened in CHW order: weight columns permuted to HWC order")
        table = {"type": "fc", "units": int(units), "activation": "none", "bias": b is not None}
        self.emit(node, "fc", table, [x], (1, 1, int(units)),
                  (1, int(units)), weight=w, bias=b, notes=notes)

    def op_gemm(self, node: Any, attrs: dict[str, Any]) -> None:
        where = self.where(node)
        if attrs.get("transA", 0):
            self.fail(where, "transA = 1: mcusim supports Gemm of an activation [1, N] by "
                      "constant weights (transA = 0)")
        x = self.value(node, node.input[0])
        B = self.const(node, node.input[1], "B (weights)").astype(np.float64)
        if B.ndim != 2:
            self.fail(where, f"B of shape {list(B.shape)}: expected 2 dimensions")
        w = B if attrs.get("transB", 0) else B.T  # (out, in)
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        notes = []
        if alpha != 1.0:
            w = w * alpha
            notes.append(f"alpha = {alpha:g} folded into the weights")
        c = self.opt_const(node, 2, "C (bias)")
        b = None
        if c is not None:
            if c.size not in (1, w.shape[0]):
                self.fail(where, f"C of shape {list(c.shape)}: expected {w.shape[0]} values")
            b = np.broadcast_to(c.astype(np.float64).reshape(-1), (w.shape[0],)) * beta
            if beta != 1.0:
                notes.append(f"beta = {beta:g} folded into the bias")
        self._fc(node, x, w, b, notes)

    def op_matmul(self, node: Any, attrs: dict[str, Any]) -> None:
        where = self.where(node)
        if node.input[0] in self.consts:
            self.fail(where, "MatMul of a constant by an activation: mcusim supports an "
                      "activation [1, N] times constant weights [N, M]")
        x = self.value(node, node.input[0])
        B = self.const(node, node.input[1], "weights").astype(np.float64)
        if B.ndim != 2:
            self.fail(where, f"weights of shape {list(B.shape)}: expected [N, M]")
        self._fc(node, x, B.T, None, [])

    def op_add(self, node: Any, attrs: dict[str, Any]) -> None:
        where = self.where(node)
        a_name, c_name = node.input[0], node.input[1]
        if a_name in self.consts or c_name in self.consts:
            act_name, k_name = (c_name, a_name) if a_name in self.consts else (a_name, c_name)
            return self._bias_add(node, act_name, self.consts[k_name])
        a, c = self.value(node, a_name), self.value(node, c_name)
        if a.shape != c.shape or self.oshape[a_name] != self.oshape[c_name]:
            self.fail(where, f"adds {list(self.oshape[a_name])} and {list(self.oshape[c_name])}: "
                      "mcusim adds tensors of the same shape only (no broadcasting)")
        if a.perm is not None or c.perm is not None:
            if a.perm is None or c.perm is None or not np.array_equal(a.perm, c.perm):
                self.fail(where, "adds tensors flattened in different orders: unsupported")
        v = self.emit(node, "add", {"type": "add", "activation": "none"},
                      [a, c],
                      a.shape, self.oshape[a_name])
        v.perm = a.perm

    def _bias_add(self, node: Any, act_name: str, k: np.ndarray) -> None:
        where = self.where(node)
        x = self.value(node, act_name)
        layer = self.b.foldable(x, ("conv2d", "dwconv2d", "fc"))
        if layer is None:
            self.fail(where, "adds a constant: mcusim folds a constant Add only as the bias of "
                      "the Conv / Gemm / MatMul before it (whose output nothing else uses)")
        n = layer.weight.shape[0]
        osh = self.oshape[act_name]
        kk = np.asarray(k, dtype=np.float64)
        per_channel = kk.size == 1 or (kk.size == n and (
            (layer.table["type"] == "fc" and kk.shape[-1:] == (n,)) or
            (layer.table["type"] != "fc" and len(kk.shape) >= len(osh) - 1
             and kk.shape[-(len(osh) - 1)] == n)))
        if not per_channel or kk.ndim > len(osh):
            self.fail(where, f"adds a constant of shape {list(kk.shape)} to {list(osh)}: mcusim "
                      "folds only a per-channel bias")
        add = np.broadcast_to(kk.reshape(-1), (n,))
        layer.bias = ((np.zeros(n) if layer.bias is None else layer.bias.astype(np.float64))
                      + add).astype(np.float32)
        layer.table["bias"] = True
        layer.ops.append("Add")
        layer.nodes.append(_clip(node.name or node.output[0], 120))
        layer.notes.append(f"Add '{_clip(node.name or node.output[0])}' of a constant folded "
                           "into the bias")
        self.alias(node, x, act_name)

    def op_batchnormalization(self, node: Any, attrs: dict[str, Any]) -> None:
        where = self.where(node)
        if attrs.get("training_mode", 0):
            self.fail(where, "training_mode = 1: mcusim folds inference-mode batch norm only")
        if any(self.consumers.get(o, 0) for o in node.output[1:] if o):
            self.fail(where, "its running mean / variance outputs are used: unsupported")
        x = self.value(node, node.input[0])
        layer = self.b.foldable(x, ("conv2d", "dwconv2d", "fc"))
        if layer is None:
            self.fail(where, "mcusim folds a BatchNormalization only into the Conv / Gemm / "
                      "MatMul right before it (whose output nothing else uses)")
        g, beta, mean, var = (self.const(node, node.input[i], what).astype(np.float64)
                              .reshape(-1) for i, what in
                              ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")))
        n = layer.weight.shape[0]
        if not all(a.size == n for a in (g, beta, mean, var)):
            self.fail(where, f"parameters of {g.size} channels for a layer of {n}")
        eps = float(attrs.get("epsilon", 1e-5))
        f = g / np.sqrt(var + eps)
        w = layer.weight.astype(np.float64)
        layer.weight = (w * f.reshape((n,) + (1,) * (w.ndim - 1))).astype(np.float32)
        b0 = np.zeros(n) if layer.bias is None else layer.bias.astype(np.float64)
        layer.bias = ((b0 - mean) * f + beta).astype(np.float32)
        layer.table["bias"] = True
        layer.ops.append("BatchNormalization")
        label = _clip(node.name or node.output[0])
        layer.nodes.append(label)
        layer.notes.append(f"BatchNormalization '{label}' folded (eps {eps:g}): w' = w*g/sqrt"
                           "(var+eps), b' = (b-mean)*g/sqrt(var+eps)+beta")
        self.alias(node, x, node.input[0])

    def op_relu(self, node: Any, attrs: dict[str, Any]) -> None:
        self._activation(node, "relu")

    def op_clip(self, node: Any, attrs: dict[str, Any]) -> None:
        lo = self.opt_const(node, 1, "min")
        hi = self.opt_const(node, 2, "max")
        lo_v = None if lo is None else float(np.asarray(lo).reshape(-1)[0])
        hi_v = None if hi is None else float(np.asarray(hi).reshape(-1)[0])
        if (lo is not None and lo.size != 1) or (hi is not None and hi.size != 1):
            self.fail(self.where(node), "min / max must be scalars")
        if lo_v == 0.0 and hi_v == 6.0:
            return self._activation(node, "relu6")
        if lo_v == 0.0 and (hi_v is None or hi_v == math.inf):
            return self._activation(node, "relu")
        self.fail(self.where(node), f"Clip({lo_v}, {hi_v}): mcusim supports Clip(0, 6) (relu6) "
                  "and Clip(0, inf) (relu)")

    def _activation(self, node: Any, act: str) -> None:
        x = self.value(node, node.input[0])
        v = self.b.fuse_activation(x, act, op=node.op_type, node=_clip(node.name or
                                                                       node.output[0], 120),
                                   where=self.where(node))
        v.perm = x.perm
        self.values[node.output[0]] = v
        self.oshape[node.output[0]] = self.oshape[node.input[0]]

    def op_maxpool(self, node: Any, attrs: dict[str, Any]) -> None:
        self._pool(node, attrs, "maxpool")

    def op_averagepool(self, node: Any, attrs: dict[str, Any]) -> None:
        self._pool(node, attrs, "avgpool")

    def _pool(self, node: Any, attrs: dict[str, Any], ltype: str) -> None:
        where = self.where(node)
        x = self.value(node, node.input[0])
        rank = self.spatial_rank(node, node.input[0])
        nd = rank - 2
        if len(node.output) > 1 and self.consumers.get(node.output[1], 0):
            self.fail(where, "its Indices output is used: unsupported")
        ks = list(attrs.get("kernel_shape", []))
        if len(ks) != nd:
            self.fail(where, f"kernel_shape {ks}: expected {nd} values")
        strides = list(attrs.get("strides", [1] * nd))
        if any(d != 1 for d in attrs.get("dilations", [1] * nd)):
            self.fail(where, f"dilations {list(attrs['dilations'])}: mcusim supports 1 only")
        if strides != ks:
            self.fail(where, f"kernel {ks} with strides {strides}: mcusim pools are "
                      "non-overlapping (stride == kernel)")
        H, W, C = x.shape
        k = (1, ks[0]) if nd == 1 else (ks[0], ks[1])
        pads = self._pads(node, attrs, nd, (H, W), k, k)
        if any(pads):
            self.fail(where, f"padding {list(pads)}: mcusim pools without padding")
        if k[0] > H or k[1] > W:
            self.fail(where, f"kernel {fmt_shape(k)} is larger than its input {H}x{W}")
        if attrs.get("ceil_mode", 0) and (H % k[0] or W % k[1]):
            self.fail(where, f"ceil_mode = 1 on {H}x{W} with kernel {fmt_shape(k)}: mcusim pools "
                      "floor the output size")
        shape = (H // k[0], W // k[1], C)
        pool: Any = "global" if k == (H, W) else list(k)
        oshape = (1, C, shape[0], shape[1]) if rank == 4 else (1, C, shape[1])
        self.emit(node, ltype, {"type": ltype, "pool": pool}, [x], shape, oshape)

    def op_globalaveragepool(self, node: Any, attrs: dict[str, Any]) -> None:
        self._global(node, "avgpool", keep=True)

    def op_globalmaxpool(self, node: Any, attrs: dict[str, Any]) -> None:
        self._global(node, "maxpool", keep=True)

    def _global(self, node: Any, ltype: str, keep: bool, note: str | None = None) -> None:
        x = self.value(node, node.input[0])
        rank = self.spatial_rank(node, node.input[0])
        C = x.shape[2]
        oshape = ((1, C, 1, 1) if rank == 4 else (1, C, 1)) if keep else (1, C)
        self.emit(node, ltype, {"type": ltype, "pool": "global"}, [x], (1, 1, C), oshape,
                  notes=[note] if note else None)

    def op_reducemean(self, node: Any, attrs: dict[str, Any]) -> None:
        where = self.where(node)
        rank = self.spatial_rank(node, node.input[0])
        axes = attrs.get("axes")
        if axes is None:
            given = self.opt_const(node, 1, "axes")
            axes = None if given is None else [int(a) for a in given.reshape(-1)]
        if not axes:
            self.fail(where, "reduces over all axes: mcusim supports ReduceMean over H and W")
        got = sorted({int(a) % rank for a in axes})
        if got != list(range(2, rank)):
            self.fail(where, f"reduces axes {got} of [N, C, ...]: mcusim supports ReduceMean over "
                      "H and W only (a global average pool)")
        self._global(node, "avgpool", keep=bool(attrs.get("keepdims", 1)),
                     note="ReduceMean over H, W as a global average pool")

    # ------------------------------------------------------------ shapes
    def op_flatten(self, node: Any, attrs: dict[str, Any]) -> None:
        osh = self.oshape[node.input[0]] if node.input[0] in self.oshape else ()
        axis = attrs.get("axis", 1)
        if osh and axis % max(len(osh), 1) != 1:
            self.fail(self.where(node), f"axis {axis}: mcusim supports Flatten(axis=1)")
        self._reshape_to(node, (1, math.prod(osh[1:])) if osh else (1,))

    def op_reshape(self, node: Any, attrs: dict[str, Any]) -> None:
        x_name = node.input[0]
        if x_name not in self.oshape:
            self.value(node, x_name)  # the message
        target = self.const(node, node.input[1], "shape")
        try:
            shape = _reshape_target(self.oshape[x_name], target, attrs.get("allowzero", 0))
        except ValueError as e:
            self.fail(self.where(node), f"shape {target.tolist()}: {e}")
        self._reshape_to(node, shape)

    def op_squeeze(self, node: Any, attrs: dict[str, Any]) -> None:
        osh = self._osh(node)
        axes = self.opt_const(node, 1, "axes")
        try:
            shape = np.squeeze(np.empty(osh, dtype=np.uint8),
                               axis=None if axes is None else tuple(int(a) for a in axes)).shape
        except ValueError as e:
            self.fail(self.where(node), f"cannot squeeze {list(osh)}: {e}")
        self._reshape_to(node, shape)

    def op_unsqueeze(self, node: Any, attrs: dict[str, Any]) -> None:
        osh = self._osh(node)
        axes = self.const(node, node.input[1], "axes").reshape(-1)
        shape = list(osh)
        try:
            for a in sorted(int(a) % (len(osh) + len(axes)) for a in axes):
                shape.insert(a, 1)
        except (ValueError, TypeError) as e:
            self.fail(self.where(node), f"cannot unsqueeze {list(osh)}: {e}")
        self._reshape_to(node, tuple(shape))

    def _osh(self, node: Any) -> tuple[int, ...]:
        if node.input[0] not in self.oshape:
            self.value(node, node.input[0])  # the message
        return self.oshape[node.input[0]]

    def _reshape_to(self, node: Any, shape: tuple[int, ...]) -> None:
        """A reshape-like node: dropped when the HWC view does not change, a flatten (in CHW
        order, see _chw_perm) when the result is [1, N], else unsupported."""
        where = self.where(node)
        x_name = node.input[0]
        x = self.value(node, x_name)
        osh = self.oshape[x_name]
        new = _hwc(tuple(int(s) for s in shape))
        if new is None or math.prod(shape) != math.prod(osh):
            self.fail(where, f"reshape {list(osh)} -> {list(shape)}: mcusim supports reshapes "
                      "to [1, N] (a flatten) or that change nothing in HWC (batch 1)")
        if new == x.shape:
            self.alias(node, x, x_name, note="changes nothing in HWC")
            self.oshape[node.output[0]] = tuple(int(s) for s in shape)
            return
        if new[:2] != (1, 1):
            self.fail(where, f"reshape {list(osh)} -> {list(shape)}: mcusim supports reshapes "
                      "to [1, N] (a flatten) or that change nothing in HWC")
        if x.perm is not None:
            self.fail(where, "reshapes a tensor flattened in CHW order again: unsupported")
        perm = _chw_perm(x.shape)
        v = self.emit(node, "flatten", {"type": "flatten"}, [x],
                      new, tuple(int(s) for s in shape))
        v.perm = perm

    def op_pad(self, node: Any, attrs: dict[str, Any]) -> None:
        where = self.where(node)
        mode = attrs.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if mode != "constant":
            self.fail(where, f"mode {mode!r}: mcusim folds constant (zero) padding only")
        x = self.value(node, node.input[0])
        osh = self.oshape[node.input[0]]
        rank = len(osh)
        pads = self.const(node, node.input[1], "pads").astype(np.int64).reshape(-1)
        value = self.opt_const(node, 2, "constant_value")
        if value is not None and value.size and float(value.reshape(-1)[0]) != 0.0:
            self.fail(where, f"constant_value {float(value.reshape(-1)[0])}: mcusim folds zero "
                      "padding only")
        axes = self.opt_const(node, 3, "axes")
        axes_l = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
        if pads.size != 2 * len(axes_l):
            self.fail(where, f"pads {pads.tolist()} for {len(axes_l)} axes")
        full = [0] * (2 * rank)
        for i, a in enumerate(axes_l):
            full[a], full[rank + a] = int(pads[i]), int(pads[len(axes_l) + i])
        if rank not in (3, 4) or any(full[a] or full[rank + a] for a in (0, 1)) or min(full) < 0:
            self.fail(where, f"pads {full} on {list(osh)}: mcusim folds only zero padding of H "
                      "and W (>= 0) into the next Conv")
        extra = (0, 0, full[2], full[rank + 2]) if rank == 3 else \
            (full[2], full[6], full[3], full[7])
        label = f"'{_clip(node.name or node.output[0])}'"
        self.values[node.output[0]] = Value(
            src=x.src, shape=x.shape, exclusive=x.exclusive, pad=_add4(extra, x.pad),
            pad_nodes=[*x.pad_nodes, label])
        self.oshape[node.output[0]] = osh  # the unpadded view: the pad waits for the Conv
        self.b.dropped.append(f"Pad {label}: folded into the next Conv's padding")

    def op_dropout(self, node: Any, attrs: dict[str, Any]) -> None:
        mode = self.opt_const(node, 2, "training_mode")
        if mode is not None and bool(np.asarray(mode).reshape(-1)[0]):
            self.fail(self.where(node), "training_mode = true: unsupported")
        if len(node.output) > 1 and self.consumers.get(node.output[1], 0):
            self.fail(self.where(node), "its mask output is used: unsupported")
        x = self.value(node, node.input[0])
        self.alias(node, x, node.input[0], note="identity at inference")

    def op_identity(self, node: Any, attrs: dict[str, Any]) -> None:
        x = self.value(node, node.input[0])
        self.alias(node, x, node.input[0], note="identity")

    def op_softmax(self, node: Any, attrs: dict[str, Any]) -> None:
        where = self.where(node)
        x = self.value(node, node.input[0])
        osh = self.oshape[node.input[0]]
        if x.shape[:2] != (1, 1) or x.perm is not None:
            self.fail(where, f"softmax over {list(osh)}: mcusim drops a softmax only over the "
                      "[1, N] logits at the output")
        axis = attrs.get("axis", -1) % len(osh)
        if osh[axis] != math.prod(osh):
            self.fail(where, f"softmax over axis {axis} of {list(osh)}: expected the class axis")
        out = node.output[0]
        if not self._reaches_output(out):
            self.fail(where, f"{node.op_type} inside the graph: mcusim drops a softmax only at "
                      "the output (its loss includes it)")
        self.b.softmax = True
        self.alias(node, x, node.input[0], note="at the output; mcusim's softmax cross-entropy "
                   "loss includes it")

    op_logsoftmax = op_softmax

    def _reaches_output(self, name: str) -> bool:
        outs = {o.name for o in self.g.output}
        for _ in range(16):
            if name in outs:
                return True
            users = [n for n in self.g.node if name in n.input]
            if len(users) != 1 or users[0].op_type not in ("Identity", "Dropout"):
                return False
            name = users[0].output[0]
        return False


def _add4(a: tuple[int, int, int, int], b: tuple[int, int, int, int] | None
          ) -> tuple[int, int, int, int]:
    if b is None:
        return a
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


def _reshape_target(shape: tuple[int, ...], target: np.ndarray, allowzero: int
                    ) -> tuple[int, ...]:
    """ONNX Reshape's output shape (0 copies the input's dimension, -1 is inferred)."""
    t = [int(v) for v in np.asarray(target).reshape(-1)]
    out = []
    for i, v in enumerate(t):
        if v == 0 and not allowzero:
            if i >= len(shape):
                raise ValueError("0 refers to a missing input dimension")
            out.append(shape[i])
        else:
            out.append(v)
    total = math.prod(shape)
    if out.count(-1) > 1 or any(v < -1 for v in out):
        raise ValueError("at most one -1 and no other negative value")
    if -1 in out:
        rest = math.prod(v for v in out if v != -1)
        if rest == 0 or total % rest:
            raise ValueError(f"cannot infer -1 for {total} values")
        out[out.index(-1)] = total // rest
    if math.prod(out) != total:
        raise ValueError(f"{math.prod(out)} values for {total}")
    return tuple(out)


def _clip(text: str, limit: int = 60) -> str:
    text = "".join(c if c.isprintable() else "?" for c in str(text))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return _clip(line, 160)


def _dims_text(dims: list[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _load(data: bytes, src: str) -> Any:
    try:
        import onnx
    except ImportError:
        raise UsageError("reading .onnx files needs the 'onnx' package: "
                         "pip install 'mcusim[import]'") from None
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # google.protobuf DecodeError, RuntimeWarning as error, ...
        raise ModelError(f"{src}: not a valid ONNX model (truncated or corrupt: "
                         f"{type(e).__name__}: {_first_line(e)})") from None
    if not model.HasField("graph") or model.ir_version <= 0:
        raise ModelError(f"{src}: not an ONNX model (no graph or IR version)")
    return model


def _check_strings(model: Any, src: str) -> None:
    """Every name is text: a corrupt file can carry invalid UTF-8, which protobuf hands back
    as bytes."""
    g = model.graph
    texts: list[Any] = [g.name]
    for n in g.node:
        texts += [n.name, n.op_type, n.domain, *n.input, *n.output,
                  *(a.name for a in n.attribute)]
    for coll in (g.input, g.output, g.value_info):
        texts += [v.name for v in coll]
    texts += [t.name for t in g.initializer]
    texts += [o.domain for o in model.opset_import]
    if not all(isinstance(t, str) for t in texts):
        raise ModelError(f"{src}: not a valid ONNX model (corrupt: a name is not valid UTF-8)")


def read_onnx(path: str | Path, *, input_shape: tuple[int, int, int] | None = None
              ) -> Imported:
    """Read a .onnx file as an mcusim model; ModelError (one line) when it cannot be."""
    src = shown(path)
    check_input_shape(input_shape)
    data = read_bytes(path, "an ONNX model (.onnx)", MAX_IMPORT_BYTES, ModelError)
    model = _load(data, src)
    _check_strings(model, src)
    try:
        with np.errstate(all="ignore"):
            return _Onnx(model, str(path), input_shape).run()
    except (ModelError, InternalError, UsageError):
        raise
    except RecursionError:
        raise ModelError(f"{src}: nested too deeply") from None
