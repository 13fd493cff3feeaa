"""Test support for the importers: a small float32 evaluator of an `Imported` model.

Deliberately naive (loops over output positions, explicit zero padding) so that it is
obviously correct: it follows the [[layer]] tables and the weight layouts of
mcusim.model.imported (HWC tensors; conv2d (Cout, kh, kw, Cin); dwconv2d (C, kh, kw); fc
(out, in) on the HWC-flattened input).  The lead will switch these tests to FloatNet.
"""

from __future__ import annotations

import numpy as np

from mcusim.model.imported import Imported, ImportedLayer

F = np.float32


def _act(y: np.ndarray, act: str) -> np.ndarray:
    if act == "relu":
        return np.maximum(y, 0)
    if act == "relu6":
        return np.clip(y, 0, 6)
    assert act == "none", act
    return y


def _conv(x: np.ndarray, L: ImportedLayer, depthwise: bool) -> np.ndarray:
    t = L.table
    kh, kw = t["kernel"]
    sh, sw = t["stride"]
    top, bottom, left, right = t["padding"]
    assert top < kh and bottom < kh and left < kw and right < kw
    H, W, C = x.shape
    xp = np.zeros((H + top + bottom, W + left + right, C), dtype=np.float64)
    xp[top:top + H, left:left + W] = x
    oh = (xp.shape[0] - kh) // sh + 1
    ow = (xp.shape[1] - kw) // sw + 1
    w = L.weight.astype(np.float64)
    cout = w.shape[0]
    y = np.zeros((oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            win = xp[i * sh:i * sh + kh, j * sw:j * sw + kw]  # (kh, kw, C)
            if depthwise:
                y[i, j] = np.einsum("hwc,chw->c", win, w)
            else:
                y[i, j] = np.einsum("hwc,ohwc->o", win, w)
    if L.bias is not None:
        y += L.bias
    return _act(y, t["activation"])


def _pool(x: np.ndarray, L: ImportedLayer) -> np.ndarray:
    H, W, C = x.shape
    pool = L.table["pool"]
    ph, pw = (H, W) if pool == "global" else pool
    oh, ow = H // ph, W // pw
    win = x[:oh * ph, :ow * pw].reshape(oh, ph, ow, pw, C)
    return win.max(axis=(1, 3)) if L.table["type"] == "maxpool" else win.mean(axis=(1, 3))


def _hybrid(x: np.ndarray) -> np.ndarray:
    """What LiteRT's hybrid kernels (float activations, int8 weights) do to their input:
    quantize it symmetrically to int8 with scale max|x| / 127."""
    s = float(np.abs(x).max()) / 127
    return x if s == 0 else np.round(x / s) * s


def forward(m: Imported, x_hwc: np.ndarray, *, clip_to_out_range: bool = False,
            hybrid_inputs: bool = False) -> np.ndarray:
    """The imported model's output (flattened, HWC order) for one HWC input, in float64
    arithmetic on float32 weights.

    clip_to_out_range: clip every layer's output to its `out_range` (an int8 model
    saturates there).  hybrid_inputs: quantize the input of every layer with int8 weights
    in a float model, as LiteRT's hybrid kernels do."""
    x = np.asarray(x_hwc, dtype=F).reshape(m.input_shape).astype(np.float64)
    acts: dict[str, np.ndarray] = {"input": x}
    y = x
    for L in m.layers:
        t = L.table
        ins = [acts[n] for n in t["inputs"]]
        if hybrid_inputs and L.weight_scales is not None and not m.quantized:
            ins = [_hybrid(a) for a in ins]
        kind = t["type"]
        if kind == "conv2d":
            y = _conv(ins[0], L, depthwise=False)
        elif kind == "dwconv2d":
            y = _conv(ins[0], L, depthwise=True)
        elif kind == "fc":
            a = ins[0]
            assert a.shape[:2] == (1, 1), a.shape
            y = L.weight.astype(np.float64) @ a.reshape(-1)
            if L.bias is not None:
                y = y + L.bias
            y = _act(y, t["activation"]).reshape(1, 1, -1)
        elif kind in ("maxpool", "avgpool"):
            y = _pool(ins[0], L)
        elif kind == "flatten":
            y = ins[0].reshape(1, 1, -1)
        elif kind == "add":
            assert len(ins) == 2 and ins[0].shape == ins[1].shape
            y = _act(ins[0] + ins[1], t["activation"])
        else:  # pragma: no cover
            raise AssertionError(kind)
        if clip_to_out_range and L.out_range is not None:
            y = np.clip(y, *L.out_range)
        acts[t["name"]] = y
    return y.reshape(-1).astype(F)


def n_params(m: Imported) -> int:
    return sum((0 if L.weight is None else L.weight.size) + (0 if L.bias is None else L.bias.size)
               for L in m.layers)


def macs(m: Imported) -> int:
    """Multiply-accumulates of one forward pass (conv, dwconv, fc)."""
    shapes = {"input": m.input_shape}
    total = 0
    for L in m.layers:
        t = L.table
        H, W, C = shapes[t["inputs"][0]]
        kind = t["type"]
        if kind in ("conv2d", "dwconv2d"):
            kh, kw = t["kernel"]
            sh, sw = t["stride"]
            pt, pb, pl, pr = t["padding"]
            oh, ow = (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1
            cout = t["filters"] if kind == "conv2d" else C
            total += oh * ow * cout * kh * kw * (C if kind == "conv2d" else 1)
            shapes[t["name"]] = (oh, ow, cout)
        elif kind == "fc":
            total += H * W * C * t["units"]
            shapes[t["name"]] = (1, 1, t["units"])
        elif kind in ("maxpool", "avgpool"):
            ph, pw = (H, W) if t["pool"] == "global" else t["pool"]
            shapes[t["name"]] = (H // ph, W // pw, C)
        elif kind == "flatten":
            shapes[t["name"]] = (1, 1, H * W * C)
        else:
            shapes[t["name"]] = (H, W, C)
    return total


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """10 log10(|ref|^2 / |ref - test|^2)."""
    noise = float(np.sum((ref.astype(np.float64) - test) ** 2))
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise)


# --------------------------------------------------------------------------- TFLite files

_TFL_TYPES = {"FLOAT32": (0, np.float32), "INT32": (2, np.int32), "UINT8": (3, np.uint8),
              "INT64": (4, np.int64), "INT8": (9, np.int8)}
_TFL_OPS = {"ADD": 0, "AVERAGE_POOL_2D": 1, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 4,
            "DEQUANTIZE": 6, "FULLY_CONNECTED": 9, "LOGISTIC": 14, "MAX_POOL_2D": 17,
            "RELU": 19, "RELU6": 21, "RESHAPE": 22, "SOFTMAX": 25, "PAD": 34, "MEAN": 40,
            "SQUEEZE": 43, "QUANTIZE": 114}
# builtin options: union type and the fields (slot, kind) in schema order
_TFL_OPTIONS = {
    "CONV_2D": (1, [("padding", "b"), ("stride_w", "i"), ("stride_h", "i"), ("act", "b"),
                    ("dil_w", "i"), ("dil_h", "i")]),
    "DEPTHWISE_CONV_2D": (2, [("padding", "b"), ("stride_w", "i"), ("stride_h", "i"),
                              ("mult", "i"), ("act", "b"), ("dil_w", "i"), ("dil_h", "i")]),
    "AVERAGE_POOL_2D": (5, [("padding", "b"), ("stride_w", "i"), ("stride_h", "i"),
                            ("filter_w", "i"), ("filter_h", "i"), ("act", "b")]),
    "MAX_POOL_2D": (5, [("padding", "b"), ("stride_w", "i"), ("stride_h", "i"),
                        ("filter_w", "i"), ("filter_h", "i"), ("act", "b")]),
    "FULLY_CONNECTED": (8, [("act", "b"), ("weights_format", "b"), ("keep_num_dims", "b")]),
    "SOFTMAX": (9, [("beta", "f")]),
    "ADD": (11, [("act", "b")]),
    "MEAN": (27, [("keep_dims", "b")]),
}
SAME, VALID = 0, 1
ACT = {"none": 0, "relu": 1, "relu6": 3, "tanh": 4}


class TFLiteFile:
    """A minimal writer of TFLite flatbuffers (one subgraph), for tests: tensors, constant
    buffers, quantization parameters, builtin operators and their options."""

    def __init__(self) -> None:
        self.tensors: list[dict] = []
        self.buffers: list[bytes] = [b""]
        self.ops: list[tuple[str, list[int], list[int], dict]] = []

    def tensor(self, shape, dtype="FLOAT32", *, data=None, name=None, scale=None, zp=None,
               qdim=0, signature=None) -> int:
        buf = 0
        if data is not None:
            self.buffers.append(np.ascontiguousarray(data, _TFL_TYPES[dtype][1]).tobytes())
            buf = len(self.buffers) - 1
        self.tensors.append({"shape": list(shape), "type": _TFL_TYPES[dtype][0], "buffer": buf,
                             "name": name or f"t{len(self.tensors)}", "scale": scale,
                             "zp": zp, "qdim": qdim, "signature": signature})
        return len(self.tensors) - 1

    def const(self, arr, dtype="FLOAT32", **kw) -> int:
        arr = np.asarray(arr)
        return self.tensor(arr.shape, dtype, data=arr, **kw)

    def op(self, name, inputs, out_shape, *, dtype="FLOAT32", out_name=None, scale=None,
           zp=None, **options) -> int:
        out = self.tensor(out_shape, dtype, name=out_name, scale=scale, zp=zp)
        self.ops.append((name, list(inputs), [out], options))
        return out

    def build(self, inputs, outputs) -> bytes:
        import flatbuffers

        b = flatbuffers.Builder(1024)
        b.ForceDefaults(True)

        def ivec(values, kind="i"):
            arr = np.asarray(values, dtype={"i": np.int32, "q": np.int64, "f": np.float32,
                                            "B": np.uint8}[kind])
            return b.CreateNumpyVector(arr)

        def table(fields):  # fields: [(slot, kind, value)]
            b.StartObject(max((s for s, _, _ in fields), default=-1) + 1)
            for slot, kind, v in fields:
                if kind == "o":
                    b.PrependUOffsetTRelativeSlot(slot, v, 0)
                elif kind == "b":
                    b.PrependInt8Slot(slot, v, 0)
                elif kind == "B":
                    b.PrependUint8Slot(slot, v, 0)
                elif kind == "i":
                    b.PrependInt32Slot(slot, v, 0)
                elif kind == "I":
                    b.PrependUint32Slot(slot, v, 0)
                elif kind == "f":
                    b.PrependFloat32Slot(slot, v, 0.0)
            return b.EndObject()

        def offsets(items):
            b.StartVector(4, len(items), 4)
            for o in reversed(items):
                b.PrependUOffsetTRelative(o)
            return b.EndVector()

        bufs = [table([(0, "o", ivec(np.frombuffer(d, np.uint8), "B"))]) if d else table([])
                for d in self.buffers]
        tens = []
        for t in self.tensors:
            name = b.CreateString(t["name"])
            shape = ivec(t["shape"])
            sig = None if t["signature"] is None else ivec(t["signature"])
            q = None
            if t["scale"] is not None:
                sc = ivec(np.atleast_1d(t["scale"]), "f")
                zp = ivec(np.atleast_1d(t["zp"] if t["zp"] is not None else
                                        np.zeros(np.size(t["scale"]), np.int64)), "q")
                q = table([(2, "o", sc), (3, "o", zp), (6, "i", t["qdim"])])
            fields = [(0, "o", shape), (1, "b", t["type"]), (2, "I", t["buffer"]),
                      (3, "o", name)]
            if q is not None:
                fields.append((4, "o", q))
            if t["signature"] is not None:
                fields.append((7, "o", sig))
            tens.append(table(fields))
        names = sorted({o[0] for o in self.ops})
        codes = [table([(0, "b", min(_TFL_OPS[n], 127)), (2, "i", 1), (3, "i", _TFL_OPS[n])])
                 for n in names]
        ops = []
        for name, ins, outs, opts in self.ops:
            fields = [(0, "I", names.index(name)), (1, "o", ivec(ins)), (2, "o", ivec(outs))]
            if name in _TFL_OPTIONS:
                utype, spec = _TFL_OPTIONS[name]
                defaults = {"stride_w": 1, "stride_h": 1, "dil_w": 1, "dil_h": 1, "mult": 1,
                            "beta": 1.0, "padding": VALID, "filter_w": 1, "filter_h": 1}
                vals = [(i, kind, opts.get(key, defaults.get(key, 0)))
                        for i, (key, kind) in enumerate(spec)]
                o = table(vals)
                fields += [(3, "B", utype), (4, "o", o)]
            ops.append(table(fields))
        sub = table([(0, "o", offsets(tens)), (1, "o", ivec(inputs)), (2, "o", ivec(outputs)),
                     (3, "o", offsets(ops))])
        desc = b.CreateString("mcusim test")
        model = table([(0, "I", 3), (1, "o", offsets(codes)), (2, "o", offsets([sub])),
                       (3, "o", desc), (4, "o", offsets(bufs))])
        b.Finish(model, file_identifier=b"TFL3")
        return bytes(b.Output())
