"""A model read from an ONNX or TFLite file, in mcusim's terms, before it is written out.

The importers (mcusim.model.onnx, mcusim.model.tflite) turn a foreign graph into an
`Imported`: one `ImportedLayer` per mcusim layer (its [[layer]] table in the model TOML
schema, mcusim.model.schema), with the float32 weights in the kernels' layouts, what was
folded into it and the int8 quantization parameters the file carried.  `mcusim.model.writer`
writes it as a model TOML plus a weights `.npz` that every command accepts.

Weight layouts (as mcusim.fqt.reference.FloatNet and the kernels hold them):
conv2d (Cout, kh, kw, Cin); dwconv2d (C, kh, kw); fc (out, in), the input of an fc in HWC
order.  Tensors are HWC (batch 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ImportedLayer:
    """One mcusim layer made from one or more ops of the source graph."""

    table: dict[str, Any]  # its [[layer]] table: name, type, inputs, sizes, activation...
    ops: list[str] = field(default_factory=list)  # source ops merged into it, in order
    nodes: list[str] = field(default_factory=list)  # their node / tensor names in the source
    notes: list[str] = field(default_factory=list)  # what was folded, fused or approximated
    weight: np.ndarray | None = None  # float32, mcusim layout (see the module docstring)
    bias: np.ndarray | None = None  # float32 (n_structures,)
    # the real range [lo, hi] of the layer's output as the int8 model quantizes it
    out_range: tuple[float, float] | None = None
    # int8 models: the weight scale of each output channel (per-channel quantization)
    weight_scales: np.ndarray | None = None

    @property
    def name(self) -> str:
        return str(self.table["name"])


@dataclass
class Imported:
    """A whole imported model."""

    name: str
    source: str  # the file it came from (as given)
    format: str  # "onnx" | "tflite"
    input_shape: tuple[int, int, int]  # H, W, C
    outputs: int  # values of the output (classes, or the reconstruction's size)
    loss: str = "xent"  # "xent" (a classifier: softmax cross-entropy) | "mse"
    # the real range of the input: an int8 model's input quantization, else None (unknown)
    input_range: tuple[float, float] | None = None
    layers: list[ImportedLayer] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # "Dropout 'drop1': identity at inference"
    quantized: bool = False  # the source holds int8 weights and activation parameters
