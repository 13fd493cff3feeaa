"""What both importers (mcusim.model.onnx, mcusim.model.tflite) share: values flowing through
the source graph, the layers being built (`_Builder`: naming, fusing an activation into the
layer that produces its input, the final checks), padding and output-size arithmetic, and
the limits a model file must respect."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from mcusim.errors import ModelError, UsageError
from mcusim.model.imported import Imported, ImportedLayer
from mcusim.model.schema import MAX_DIM, MAX_NAME, conv_output_size, same_padding
from mcusim.userfiles import MiB, shown

MAX_IMPORT_BYTES = 64 * MiB  # an ONNX or TFLite file (MCU models are KiB to a few MiB)
MAX_OPS = 65_536  # operators / nodes of one graph (MCU models have tens)
MAX_TENSORS = 262_144  # tensors / values of one graph

Shape = tuple[int, int, int]
F = np.float32

ACTIVATION_LAYERS = ("conv2d", "dwconv2d", "fc", "add")  # the types with an 'activation' key
# layers a relu / relu6 commutes with: relu(maxpool(x)) == maxpool(relu(x)), likewise flatten
_COMMUTES_WITH_RELU = ("maxpool", "flatten")


def fmt_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def sanitize(text: str, fallback: str) -> str:
    """A layer name of [A-Za-z_][A-Za-z0-9_.-]* (at most 64 characters) from `text`."""
    name = _BAD_NAME_CHARS.sub("_", text).strip("_.-")
    if not name:
        name = fallback
    if not (name[0].isalpha() or name[0] == "_"):
        name = f"{fallback}_{name}"
    return name[:64].rstrip(".-") or fallback


# --------------------------------------------------------------------------- shared builder


@dataclass
class Value:
    """An activation of the source graph as mcusim sees it."""

    src: str  # the mcusim layer that produces it, or "input"
    shape: Shape  # H, W, C
    # True while the producing layer's output reaches this value along one path only (every
    # tensor on the way has exactly one consumer): only then may an op be fused into it
    exclusive: bool = True
    pad: tuple[int, int, int, int] | None = None  # a pending zero pad for the next conv
    pad_nodes: list[str] = field(default_factory=list)
    # ONNX: a (C, H, W) tensor flattened in CHW order: perm[i] is the HWC position of the
    # i-th value of the CHW order
    perm: np.ndarray | None = None
    qrange: tuple[float, float] | None = None  # int8 models: real range of this tensor
    qscale: float | None = None  # int8 models: its scale (for biases)


class _Builder:
    """Collects mcusim layers while an importer walks the source graph."""

    def __init__(self, source: str, fmt: str) -> None:
        self.source = source
        self.shown = shown(source)
        self.format = fmt
        self.layers: list[ImportedLayer] = []
        self.by_name: dict[str, ImportedLayer] = {}
        self.in_values: dict[str, list[Value]] = {}  # layer -> the values it consumed
        self.dropped: list[str] = []
        self.used: set[str] = set()  # layers (and "input") some layer consumes
        self.softmax = False

    def fail(self, where: str, problem: str) -> NoReturn:
        raise ModelError(f"{self.shown}: {where}: {problem}" if where else
                         f"{self.shown}: {problem}")

    def unique(self, base: str) -> str:
        name = sanitize(base, "layer")[:MAX_NAME]
        if name == "input":
            name = "input_"
        if name not in self.by_name:
            return name
        k = 2
        while f"{name}_{k}" in self.by_name:
            k += 1
        return f"{name}_{k}"

    def add(self, base: str, table: dict[str, Any], inputs: list[Value], *, op: str,
            node: str, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
            notes: list[str] | None = None) -> ImportedLayer:
        name = self.unique(base)
        t = {"name": name, "type": table["type"], "inputs": [v.src for v in inputs]}
        t.update((k, v) for k, v in table.items() if k != "type")
        layer = ImportedLayer(table=t, ops=[op], nodes=[node], notes=list(notes or []),
                              weight=None if weight is None else np.array(weight, dtype=F),
                              bias=None if bias is None else np.array(bias, dtype=F))
        self.layers.append(layer)
        self.by_name[name] = layer
        self.in_values[name] = list(inputs)
        self.used.update(v.src for v in inputs)
        return layer

    def layer_of(self, v: Value) -> ImportedLayer | None:
        return None if v.src == "input" else self.by_name[v.src]

    def foldable(self, v: Value, types: tuple[str, ...]) -> ImportedLayer | None:
        """The layer producing `v` when an op on `v` may be merged into it: `v` is its whole
        output, used only here, and the layer is one of `types` without an activation."""
        layer = self.layer_of(v)
        if (layer is None or not v.exclusive or v.pad is not None or v.perm is not None
                or layer.table["type"] not in types or layer.table.get("activation",
                                                                     "none") != "none"):
            return None
        return layer

    def fuse_activation(self, v: Value, act: str, *, op: str, node: str, where: str,
                        out_range: tuple[float, float] | None = None) -> Value:
        """Fuse relu / relu6 into the layer producing `v`; the value of the result."""
        orig = v
        target, via = self.layer_of(v), []
        # relu commutes with max pooling and flattening: move it before them
        while (target is not None and v.exclusive and v.pad is None
               and target.table["type"] in _COMMUTES_WITH_RELU):
            (prev,) = self.in_values[target.name]
            if not prev.exclusive or prev.pad is not None or prev.perm is not None:
                break
            via.append(target)
            v = prev
            target = self.layer_of(prev)
        if target is None or self.foldable(v, ACTIVATION_LAYERS) is None:
            what = "the model input" if target is None else \
                f"layer '{target.name}' ({target.table['type']})"
            self.fail(where, f"cannot fuse {act} into {what}: mcusim applies relu / relu6 "
                      "only as the activation of a conv2d, dwconv2d, fc or add layer whose "
                      "output nothing else uses")
        target.table["activation"] = act
        target.ops.append(op)
        target.nodes.append(node)
        moved = f" (moved before {', '.join(x.name for x in via)}: they commute)" if via else ""
        target.notes.append(f"fused {op} '{node}'{moved}")
        if out_range is not None and not via:
            target.out_range = out_range
        return Value(src=orig.src, shape=orig.shape, exclusive=True, qrange=out_range)

    def finish(self, out: Value, *, name: str, input_shape: Shape, input_range: Any,
               quantized: bool, where: str) -> Imported:
        if not self.layers:
            self.fail("", "the graph has no layers mcusim can train (no conv, fc or pool)")
        last = self.layers[-1]
        if out.src != last.name or out.pad is not None:
            what = "the model input" if out.src == "input" else f"layer '{out.src}'"
            self.fail(where, f"the model output is {what}, not the last layer "
                      f"'{last.name}': mcusim trains a chain that ends in the output")
        for layer in self.layers:
            for what, arr in (("weights", layer.weight), ("biases", layer.bias)):
                if arr is not None and not np.isfinite(arr).all():
                    self.fail("", f"layer '{layer.name}' ({layer.ops[0]} "
                              f"'{_short(layer.nodes[0])}'): its {what} hold NaN or infinite "
                              "values")
        for layer in self.layers[:-1]:
            if layer.name not in self.used:
                self.fail("", f"layer '{layer.name}' ({layer.ops[0]} '{_short(layer.nodes[0])}'"
                          "): its output is not used by any later layer and is not the model "
                          "output")
        outputs = math.prod(out.shape)
        loss = "mse" if (not self.softmax and outputs == math.prod(input_shape)) else "xent"
        stem = sanitize(Path(self.source).stem, "model")
        return Imported(name=name or stem, source=self.source, format=self.format,
                        input_shape=input_shape, outputs=outputs, loss=loss,
                        input_range=input_range, layers=self.layers, dropped=self.dropped,
                        quantized=quantized)


def conv_padding(where: str, b: _Builder, mode: str, in_hw: tuple[int, int],
                 kernel: tuple[int, int], stride: tuple[int, int],
                 extra: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
    """Explicit [t, b, l, r] of a convolution: its own mode ("same" = TensorFlow's rule,
    "valid") plus a folded zero pad; every side must be smaller than the kernel."""
    if mode == "same":
        _, t, bot = same_padding(in_hw[0], kernel[0], stride[0])
        _, left, right = same_padding(in_hw[1], kernel[1], stride[1])
        pads = (t, bot, left, right)
    else:
        pads = (0, 0, 0, 0)
    if extra is not None:
        pads = tuple(p + e for p, e in zip(pads, extra, strict=True))  # type: ignore[assignment]
    kh, kw = kernel
    if pads[0] >= kh or pads[1] >= kh or pads[2] >= kw or pads[3] >= kw:
        b.fail(where, f"padding [top, bottom, left, right] = {list(pads)} is not smaller than "
               f"the kernel {kh}x{kw}: mcusim supports padding < kernel only")
    return pads  # type: ignore[return-value]


def conv_out(where: str, b: _Builder, shape: Shape, kernel: tuple[int, int],
             stride: tuple[int, int], pads: tuple[int, int, int, int], cout: int) -> Shape:
    ho = conv_output_size(shape[0], kernel[0], stride[0], pads[0], pads[1])
    wo = conv_output_size(shape[1], kernel[1], stride[1], pads[2], pads[3])
    if ho < 1 or wo < 1:
        b.fail(where, f"kernel {fmt_shape(kernel)} does not fit the padded input "
               f"{shape[0] + pads[0] + pads[1]}x{shape[1] + pads[2] + pads[3]}")
    return (ho, wo, cout)


def check_input_shape(shape: Any) -> None:
    """An --input-shape is None or three sizes 1..MAX_DIM (UsageError otherwise)."""
    if shape is None:
        return
    ok = (isinstance(shape, (tuple, list)) and len(shape) == 3
          and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                  and 1 <= d <= MAX_DIM for d in shape))
    if not ok:
        raise UsageError(f"--input-shape must be three sizes H,W,C of 1..{MAX_DIM:,} (got "
                         f"{_short(repr(shape))})")


def scale_note(scales: np.ndarray, how: str = "") -> str:
    s = np.abs(scales[scales != 0])
    spread = float(s.max() / s.min()) if s.size else 1.0
    return (f"per-channel int8 weights{how} ({scales.size} scales, spread {spread:.1f}x): "
            "kept per channel while frozen, requantized per tensor when trained")


def _short(name: Any, limit: int = 60) -> str:
    text = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."
