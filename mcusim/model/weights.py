"""Pretrained weights of a model: the `.npz` file a model TOML names in `[model] weights`.

`mcusim import` writes it next to the model TOML; every command that builds the network
(step, budget, train, verify, profile) starts from it instead of a random initialisation.
Members (all float32, in the kernels' layouts, mcusim.model.imported):

    <layer>.w      weights: conv2d (Cout, kh, kw, Cin); dwconv2d (C, kh, kw); fc (out, in)
    <layer>.b      biases (n_structures,); absent for a layer with bias = false
    <layer>.range  optional [lo, hi]: the real range of the layer's output, as an int8 model
                   quantized it; used instead of calibrating that layer
    <layer>.wscale optional (n_structures,): an int8 model's weight scale of each output
                   channel (> 0); a frozen layer of a model with frozen_weights =
                   "per-channel" holds its weights as exactly these int8 values
    format         [1]: the version of this layout

Every member is checked against the model's layers (names, shapes, finite values) when it is
read; a mismatch is one line (ModelError, exit 2).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcusim.errors import ModelError
from mcusim.model.schema import ModelSpec, _one_line, printable
from mcusim.userfiles import MiB, read_bytes, shown

FORMAT = 1
# 2**25 parameters (the model limit) as float32, plus headers
MAX_WEIGHTS_BYTES = 160 * MiB
F = np.float32


@dataclass
class Weights:
    """Float32 parameters by layer name ((w, b)) and the int8 models' output ranges."""

    params: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    scales: dict[str, np.ndarray] = field(default_factory=dict)


def save_weights(path: str | Path, params: dict[str, tuple[np.ndarray, np.ndarray | None]],
                 ranges: dict[str, tuple[float, float]] | None = None,
                 scales: dict[str, np.ndarray] | None = None) -> None:
    """Write a weights file (see the module docstring)."""
    members: dict[str, np.ndarray] = {"format": np.array([FORMAT], np.int32)}
    for name, (w, b) in params.items():
        members[f"{name}.w"] = np.ascontiguousarray(w, F)
        if b is not None:
            members[f"{name}.b"] = np.ascontiguousarray(b, F)
    for name, (lo, hi) in (ranges or {}).items():
        members[f"{name}.range"] = np.array([lo, hi], F)
    for name, sc in (scales or {}).items():
        members[f"{name}.wscale"] = np.ascontiguousarray(sc, F)
    with open(path, "wb") as f:
        np.savez(f, **members)


def load_weights(spec: ModelSpec) -> Weights:
    """The weights file `spec.weights`, checked against the model's layers."""
    if spec.weights is None:
        raise ModelError(f"{spec.name}: the model names no weights file")
    path = Path(spec.weights)
    model = Path(spec.source).name if spec.source != "<string>" else spec.name
    where = f"{printable(model)}: weights {shown(path)}"
    try:
        data = read_bytes(path, "a weights file (.npz)", MAX_WEIGHTS_BYTES, ModelError)
    except ModelError as e:
        raise ModelError(f"{printable(model)}: [model] weights: {e}") from None
    if not data.startswith(b"PK"):
        raise ModelError(f"{where}: not a weights file (.npz): not a zip archive")
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ModelError(f"{where}: not a weights file (.npz): {_why(e)}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ModelError(f"{where}: not a weights file (.npz): a single array")
    out = Weights()
    with archive:
        members = {}
        for key in archive.files:
            try:
                members[key] = archive[key]
            except Exception as e:  # corrupt member, object arrays, zlib errors
                raise ModelError(f"{where}: cannot read member {key!r}: {_why(e)}") \
                    from None
    fmt = members.pop("format", None)
    if fmt is None or fmt.shape != (1,) or int(fmt[0]) != FORMAT:
        raise ModelError(f"{where}: not an mcusim weights file (member 'format' = [{FORMAT}] "
                         "missing; write it with `mcusim import`)")
    layers = {L.name: L for L in spec.layers}
    for key, arr in members.items():
        name, _, part = key.rpartition(".")
        L = layers.get(name)
        if L is None or part not in ("w", "b", "range", "wscale") or \
                (part != "range" and not L.has_weights):
            raise ModelError(f"{where}: member {key!r} matches no weighted layer of "
                             f"{spec.name} (expected <layer>.w, <layer>.b, <layer>.range)")
        if arr.dtype.kind not in "fiu":
            raise ModelError(f"{where}: member {key!r} has dtype {arr.dtype}, not numbers")
        want = {"w": L.weight_shape, "b": (L.n_structures,), "range": (2,),
                "wscale": (L.n_structures,)}[part]
        if tuple(arr.shape) != tuple(want):
            raise ModelError(f"{where}: member {key!r} has shape {tuple(arr.shape)}, layer "
                             f"'{name}' needs {tuple(want)}")
        arr = arr.astype(F)
        if not np.all(np.isfinite(arr)):
            raise ModelError(f"{where}: member {key!r} holds NaN or infinite values")
        if part == "range":
            lo, hi = float(arr[0]), float(arr[1])
            if not lo <= hi:
                raise ModelError(f"{where}: member {key!r} is not a range [lo, hi]")
            out.ranges[name] = (lo, hi)
        if part == "wscale":
            if not np.all(arr > 0):
                raise ModelError(f"{where}: member {key!r}: weight scales must be > 0")
            out.scales[name] = arr
    for L in spec.layers:
        if not L.has_weights:
            continue
        w = members.get(f"{L.name}.w")
        if w is None:
            raise ModelError(f"{where}: no weights for layer '{L.name}' (member "
                             f"'{L.name}.w')")
        b = members.get(f"{L.name}.b")
        if b is None and L.bias:
            raise ModelError(f"{where}: no biases for layer '{L.name}' (member "
                             f"'{L.name}.b'; or set bias = false)")
        out.params[L.name] = (w.astype(F), b.astype(F) if b is not None
                              else np.zeros(L.n_structures, F))
    return out


def _why(e: BaseException) -> str:
    """An exception as a short phrase for a one-line message."""
    return _one_line(str(e))[:200] or type(e).__name__
