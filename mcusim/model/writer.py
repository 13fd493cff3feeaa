"""`mcusim import`: an ONNX or TFLite file -> a model TOML plus its weights `.npz`.

`import_file` reads the file with the importer its format needs (mcusim.model.onnx,
mcusim.model.tflite), `write_imported` writes the model TOML (mcusim.model.schema) and the
weights (mcusim.model.weights) and reads the TOML back, so what it wrote is exactly what
every command will load.  `imported_spec` does both into mcusim's cache for commands given a
.onnx / .tflite file directly (keyed by the file's contents and the import options).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcusim.errors import ModelError, UsageError
from mcusim.model.imported import Imported
from mcusim.model.importing import MAX_IMPORT_BYTES
from mcusim.model.schema import MAX_NAME, ModelSpec
from mcusim.model.weights import save_weights
from mcusim.model.zoo import load_model
from mcusim.userfiles import check_regular, shown

FORMATS = {".onnx": "onnx", ".tflite": "tflite"}
MAX_SOURCE_BYTES = MAX_IMPORT_BYTES  # an ONNX / TFLite file (64 MiB: far past any MCU)


def source_format(path: str | Path) -> str | None:
    """"onnx" / "tflite" for a file name with that suffix, else None."""
    return FORMATS.get(Path(path).suffix.lower())


def check_source(path: str | Path) -> str:
    """The format of a model file to import; one-line errors for a wrong suffix, a missing
    file, a directory or a device."""
    fmt = source_format(path)
    if fmt is None:
        raise UsageError(f"{shown(path)}: not an ONNX (.onnx) or TFLite (.tflite) file")
    check_regular(path, f"an {'ONNX' if fmt == 'onnx' else 'TFLite'} model",
                  MAX_SOURCE_BYTES, ModelError)
    return fmt


def import_file(path: str | Path, *, input_shape: tuple[int, int, int] | None = None
                ) -> Imported:
    """Read an ONNX or TFLite model (by its suffix)."""
    fmt = check_source(path)
    if fmt == "onnx":
        from mcusim.model.onnx import read_onnx

        return read_onnx(path, input_shape=input_shape)
    from mcusim.model.tflite import read_tflite

    return read_tflite(path, input_shape=input_shape)


@dataclass
class Written:
    """What `write_imported` wrote, and the model as every command will load it."""

    toml: Path
    weights: Path
    spec: ModelSpec
    imported: Imported
    input_range_assumed: bool

    def rows(self) -> list[dict[str, Any]]:
        """One row per layer: name, type, source ops, shapes, parameters, trainable, notes."""
        out = []
        by_name = {L.name: L for L in self.imported.layers}
        for L in self.spec.layers:
            imp = by_name.get(L.name)
            out.append({
                "layer": L.name, "type": L.type,
                "ops": list(imp.ops) if imp else [],
                "inputs": ["input" if k < 0 else self.spec.layers[k].name
                           for k in self.spec.producers(self.spec.layers.index(L))],
                "in_shape": list(L.in_shape), "out_shape": list(L.out_shape),
                "activation": L.activation, "params": L.n_params, "macs": L.macs,
                "trainable": bool(L.has_weights and L.trainable),
                "frozen": bool(L.has_weights and not L.trainable),
                "notes": (list(imp.notes) if imp else []) + (
                    [f"per-tensor uint8 weights: SQNR {weight_sqnr(imp.weight):.1f} dB"]
                    if imp is not None and imp.weight is not None and imp.weight.size
                    and (L.trainable or self.spec.frozen_weights == "per-tensor") else []),
            })
        return out

    def to_dict(self) -> dict[str, Any]:
        s = self.spec
        return {"model": s.name, "toml": str(self.toml), "weights": str(self.weights),
                "source": self.imported.source, "format": self.imported.format,
                "quantized_source": self.imported.quantized,
                "input_shape": list(s.input_shape), "input_range": list(s.input_range),
                "input_range_assumed": self.input_range_assumed, "loss": s.loss,
                "outputs": s.classes, "n_params": s.n_params,
                "n_trainable_params": s.n_trainable_params, "macs": s.macs,
                "layers": self.rows(), "dropped": list(self.imported.dropped)}


def safe_name(text: str) -> str:
    """A model / file name from `text`: letters, digits, '_', '-', '.'."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._-") or "model"
    if not re.match(r"[A-Za-z_]", name):
        name = "m_" + name
    return name[:MAX_NAME]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ModelError(f"cannot write the non-finite value {v} to a model file")
        return repr(float(v))
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {type(v).__name__}")


_LAYER_ORDER = ("name", "type", "inputs", "filters", "units", "kernel", "stride", "padding",
                "pool", "activation", "bias", "trainable")


def model_toml(imp: Imported, name: str, weights_file: str,
               input_range: tuple[float, float], trainable: set[str] | None) -> str:
    """The model TOML text of an import (trainable: the weighted layers to train; None:
    all)."""
    lines = [f"# {name}: imported by `mcusim import` from {Path(imp.source).name} "
             f"({imp.format}{', int8' if imp.quantized else ''}).",
             "# Schema: docs/models.md.  Weights (float32): the .npz named below.", "",
             "[model]", f"name = {_toml_value(name)}",
             f"description = {_toml_value('imported from ' + Path(imp.source).name)}",
             f"input = {_toml_value(list(imp.input_shape))}",
             f"classes = {imp.outputs}",
             f"loss = {_toml_value(imp.loss)}",
             f"input_range = {_toml_value([float(input_range[0]), float(input_range[1])])}",
             f"weights = {_toml_value(weights_file)}",
             f"imported_from = {_toml_value(Path(imp.source).name)}",
             'frozen_weights = "per-channel"  # frozen layers: int8 weights and multipliers '
             "per output channel", ""]
    for L in imp.layers:
        t = dict(L.table)
        if t.get("type") in ("conv2d", "dwconv2d", "fc"):
            t["trainable"] = trainable is None or L.name in trainable
        lines.append("[[layer]]" + (f"  # {', '.join(L.ops)}" if L.ops else ""))
        for key in sorted(t, key=lambda k: (_LAYER_ORDER.index(k)
                                            if k in _LAYER_ORDER else 99, k)):
            lines.append(f"{key} = {_toml_value(t[key])}")
        lines.append("")
    return "\n".join(lines)


def _trainable_names(imp: Imported, train_last: int | None,
                     trainable: list[str] | None) -> set[str] | None:
    weighted = [L.name for L in imp.layers
                if L.table.get("type") in ("conv2d", "dwconv2d", "fc")]
    if trainable:
        return set(trainable)  # checked when the TOML is read back
    if train_last is not None:
        if not 1 <= train_last <= len(weighted):
            raise UsageError(f"--train-last {train_last}: the model has {len(weighted)} "
                             "weighted layers")
        return set(weighted[-train_last:])
    return None


def write_imported(imp: Imported, out_dir: str | Path, name: str | None = None, *,
                   train_last: int | None = None, trainable: list[str] | None = None,
                   input_range: tuple[float, float] | None = None,
                   calibration: str | Path | None = None) -> Written:
    """Write `<name>.toml` and `<name>.npz` into `out_dir` and read the model back.

    `calibration`: a data set (.npz with x_train, ..., mcusim.fqt.datasets) in the model's
    input units whose first 64 training samples set every layer's output range (a float
    forward pass: each layer's min and max, widened to contain 0), stored in the weights
    file; without it an int8 source's own ranges are stored, and a float source is
    calibrated on random inputs whenever a program is built."""
    name = safe_name(name or Path(imp.source).stem)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{shown(out)}: cannot create the output directory: "
                         f"{e.strerror or e}") from None
    assumed = False
    rng = input_range or imp.input_range
    if rng is None:
        rng, assumed = (0.0, 1.0), True
    lo, hi = min(float(rng[0]), 0.0), max(float(rng[1]), 0.0)
    toml_path, npz_path = out / f"{name}.toml", out / f"{name}.npz"
    params = {L.name: (L.weight, L.bias) for L in imp.layers if L.weight is not None}
    ranges = {L.name: L.out_range for L in imp.layers if L.out_range is not None}
    scales = {L.name: L.weight_scales for L in imp.layers if L.weight_scales is not None}
    keep = _trainable_names(imp, train_last, trainable)
    text = model_toml(imp, name, npz_path.name, (lo, hi), keep)
    try:
        save_weights(npz_path, params, ranges, scales)
        toml_path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{shown(out)}: cannot write the model: {e.strerror or e}") from None
    spec = load_model(toml_path)
    if calibration is not None:
        from mcusim.fqt.datasets import load_dataset
        from mcusim.fqt.reference import FloatNet

        data = load_dataset(Path(calibration), value_range=spec.input_range)
        if data.input_shape != spec.input_shape:
            raise UsageError(f"--calibration {shown(calibration)}: samples of shape "
                             f"{'x'.join(map(str, data.input_shape))}, the model's input is "
                             f"{'x'.join(map(str, spec.input_shape))}")
        net = FloatNet.init(spec)
        lo = {L.name: 0.0 for L in spec.layers}
        hi = {L.name: 0.0 for L in spec.layers}
        for x in data.x_train[:64]:
            for L, a in zip(spec.layers, net.forward(x), strict=True):
                lo[L.name] = min(lo[L.name], float(a.min()))
                hi[L.name] = max(hi[L.name], float(a.max()))
        ranges = {L.name: (lo[L.name], hi[L.name]) for L in spec.layers
                  if L.type not in ("flatten", "maxpool")}
        try:
            save_weights(npz_path, params, ranges, scales)
        except OSError as e:
            raise UsageError(f"{shown(out)}: cannot write the model: {e.strerror or e}") \
                from None
    if trainable:
        spec = spec.with_trainable(trainable)
    from mcusim.fqt.reference import FloatNet

    FloatNet.init(spec)  # the weights read back and checked against the layers
    return Written(toml_path, npz_path, spec, imp, assumed)


def imported_spec(path: str | Path, *, input_shape: tuple[int, int, int] | None = None
                  ) -> ModelSpec:
    """A .onnx / .tflite file as a model spec, imported once into mcusim's cache (keyed by
    the file's contents, `input_shape` and the source of mcusim's model package, so that a
    newer mcusim imports afresh)."""
    from mcusim.toolchain import default_cache_dir

    check_regular(path, "an ONNX or TFLite model", MAX_SOURCE_BYTES, ModelError)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(repr(input_shape).encode())
    for src in sorted(Path(__file__).parent.glob("*.py")):  # how mcusim imports: the key
        h.update(src.name.encode() + src.read_bytes())  # changes with the importers' code
    d = default_cache_dir() / "imported" / h.hexdigest()[:20]
    name = safe_name(Path(path).stem)
    toml = d / f"{name}.toml"
    if toml.is_file() and (d / f"{name}.npz").is_file():
        return load_model(toml)
    tmp = d.with_name(d.name + f".tmp{os.getpid()}")
    written = write_imported(import_file(path, input_shape=input_shape), tmp, name)
    try:
        os.replace(tmp, d)
    except OSError:  # another process won the race: use its copy
        pass
    toml = d / f"{name}.toml"
    return load_model(toml) if toml.is_file() else written.spec


def weight_sqnr(w: np.ndarray) -> float:
    """SQNR in dB of per-tensor uint8 quantization of a float weight tensor (what mcusim's
    kernels hold), against the float values."""
    from mcusim.fqt.quant import range_params

    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    s, z = range_params(np.float32(lo), np.float32(hi))
    q = np.clip(np.rint(w / s + z), 0, 255)
    err = (q - z) * s - w
    den = float(np.sum(err.astype(np.float64) ** 2))
    return math.inf if den == 0 else 10 * math.log10(float(np.sum(w.astype(np.float64) ** 2))
                                                      / den)
