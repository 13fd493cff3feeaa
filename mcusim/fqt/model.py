"""Model descriptions: the network a simulation trains, read from TOML into typed, checked specs.

A model is a TOML file, either in the zoo (``models/*.toml`` at the top of the repository,
looked up by stem, case-insensitively) or anywhere on disk.  Its schema::

    [model]
    name = "digits-cnn"        # optional: defaults to the file's stem
    description = "..."        # optional
    input = [8, 8, 1]          # H, W, C (required)
    classes = 10               # required; the last layer's output size (the logits)

    [train]                    # optional; every key optional; unknown keys are errors
    learning_rate = 0.01       # > 0
    lr_final = 0.0005          # optional: cosine decay to this over the epochs (0: constant)
    batch_size = 8             # >= 1
    lambda_min = 1.0           # fraction of structures updated per step, 0 <= min <= max <= 1;
    lambda_max = 1.0           #   lambda_min < 1 turns on partial (sparse) updates
    rounding = "nearest"       # nearest | floor | stochastic
    alpha_a = 0.1              # EMA rate of activation ranges        (0, 1]
    alpha_e = 0.1              # EMA rate of error ranges             (0, 1]
    alpha_w = 0.001            # EMA rate of weight ranges            (0, 1]
    alpha_norm = 0.8           # EMA rate of gradient-standardization statistics (0, 1]
    epsilon = "layer_error"    # layer_error | loss: how the "surprise" ε of partial updates is
                               #   measured: the layer's mean error magnitude / the largest
                               #   seen for that layer, or the sample's loss / the largest
                               #   loss seen

    [[layer]]                  # one table per layer, input to output
    name = "conv1"             # optional; default "<type><index>", e.g. "conv2d0"
    type = "conv2d"            # conv2d | dwconv2d | fc | maxpool | avgpool | flatten
    filters = 8                # conv2d: output channels (required)
    units = 10                 # fc: outputs (required)
    kernel = 3                 # conv2d, dwconv2d (required): int or [kh, kw]
    stride = 1                 # conv2d, dwconv2d: int or [sh, sw] (default 1)
    padding = "same"           # "valid" (default) | "same" | int | [top, bottom, left, right]
    activation = "relu"        # conv2d, dwconv2d, fc: "relu" | "none" (default "none")
    trainable = true           # weighted layers; default true
    bias = true                # weighted layers; default true
    pool = 2                   # maxpool, avgpool (required): int, [ph, pw] or "global"

Shapes are (H, W, C).  Layer indices in messages are 0-based, as in ``ModelSpec.layers``.

* conv2d / dwconv2d: out = floor((in + pad_total - k) / stride) + 1 per dimension.  "same" is
  TensorFlow's rule: out = ceil(in / stride), pad_total = max((out - 1) * stride + k - in, 0),
  top/left = pad_total // 2, bottom/right = the rest.  Explicit padding numbers must be >= 0 and
  smaller than the kernel.  dwconv2d keeps the channel count (depth multiplier 1).  A 1-D
  convolution is H = 1 with kernel [1, k].
* maxpool / avgpool: non-overlapping, stride = pool size, out = floor(in / pool); "global" pools
  the whole H x W.
* flatten: (H, W, C) -> (1, 1, H*W*C).
* fc: input must be (1, 1, N) (put a flatten or a global pool before it); output (1, 1, units).

The whole description must make sense for tail training: the last layer is an fc or conv2d
without relu whose output size equals ``classes``; at least one weighted layer is trainable; and
every frozen weighted layer comes before every trainable one.

Every mistake raises ModelError with one line that starts with the file name and, for a layer,
names its index and name.  Nothing here prints.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, NoReturn

from mcusim.errors import ModelError
from mcusim.resources import data_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODELS_DIR = data_dir("models")

LAYER_TYPES = ("conv2d", "dwconv2d", "fc", "maxpool", "avgpool", "flatten")
WEIGHTED_TYPES = ("conv2d", "dwconv2d", "fc")
POOL_TYPES = ("maxpool", "avgpool")
ROUNDING_MODES = ("nearest", "floor", "stochastic")
EPSILON_MODES = ("layer_error", "loss")
ACTIVATIONS = ("relu", "none")

Shape = tuple[int, int, int]

_LAYER_KEYS: dict[str, tuple[str, ...]] = {
    "conv2d": ("name", "type", "filters", "kernel", "stride", "padding", "activation",
               "trainable", "bias"),
    "dwconv2d": ("name", "type", "kernel", "stride", "padding", "activation", "trainable",
                 "bias"),
    "fc": ("name", "type", "units", "activation", "trainable", "bias"),
    "maxpool": ("name", "type", "pool"),
    "avgpool": ("name", "type", "pool"),
    "flatten": ("name", "type"),
}
_ALL_LAYER_KEYS = tuple(sorted({k for keys in _LAYER_KEYS.values() for k in keys}))
_MODEL_KEYS = ("name", "description", "input", "classes")
_TOP_KEYS = ("model", "train", "layer")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class LayerSpec:
    """One layer with its inferred shapes.  Shapes are (H, W, C)."""

    name: str
    type: str
    in_shape: Shape
    out_shape: Shape
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, bottom, left, right
    relu: bool = False
    trainable: bool = False
    bias: bool = True

    @property
    def has_weights(self) -> bool:
        return self.type in WEIGHTED_TYPES

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """conv2d (Cout, kh, kw, Cin); dwconv2d (C, kh, kw); fc (out, in); () otherwise."""
        kh, kw = self.kernel
        if self.type == "conv2d":
            return (self.out_shape[2], kh, kw, self.in_shape[2])
        if self.type == "dwconv2d":
            return (self.out_shape[2], kh, kw)
        if self.type == "fc":
            return (self.out_shape[2], self.in_shape[2])
        return ()

    @property
    def n_weights(self) -> int:
        return math.prod(self.weight_shape) if self.has_weights else 0

    @property
    def n_structures(self) -> int:
        """Output channels (conv2d), channels (dwconv2d) or outputs (fc); 0 without weights."""
        return self.weight_shape[0] if self.has_weights else 0

    @property
    def struct_size(self) -> int:
        """Weights per structure (one output channel / neuron)."""
        return self.n_weights // self.n_structures if self.n_structures else 0

    @property
    def n_biases(self) -> int:
        return self.n_structures if self.bias else 0

    @property
    def n_params(self) -> int:
        return self.n_weights + self.n_biases

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one forward pass of one sample."""
        kh, kw = self.kernel
        if self.type == "conv2d":
            return self.out_size * kh * kw * self.in_shape[2]
        if self.type == "dwconv2d":
            return self.out_size * kh * kw
        if self.type == "fc":
            return self.in_size * self.out_size
        return 0

    @property
    def in_size(self) -> int:
        return math.prod(self.in_shape)

    @property
    def out_size(self) -> int:
        return math.prod(self.out_shape)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "in_shape": list(self.in_shape),
            "out_shape": list(self.out_shape),
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "relu": self.relu,
            "trainable": self.trainable,
            "bias": self.bias,
            "weight_shape": list(self.weight_shape),
            "n_weights": self.n_weights,
            "n_params": self.n_params,
            "macs": self.macs,
        }


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of fully quantized on-device training."""

    learning_rate: float = 0.01
    batch_size: int = 8
    lambda_min: float = 1.0
    lambda_max: float = 1.0
    rounding: str = "nearest"
    alpha_a: float = 0.1
    alpha_e: float = 0.1
    alpha_w: float = 0.001
    alpha_norm: float = 0.8
    epsilon: str = "layer_error"
    lr_final: float = 0.0  # > 0: cosine decay from learning_rate to this over the epochs

    @property
    def partial(self) -> bool:
        """Whether only a fraction of the structures is updated per step."""
        return self.lambda_min < 1.0

    def learning_rate_at(self, epoch: int, epochs: int) -> float:
        """The learning rate of epoch (1-based) of `epochs`: constant, or with lr_final > 0
        a cosine decay from learning_rate (first epoch) to lr_final (last epoch)."""
        if self.lr_final <= 0 or epochs <= 1:
            return self.learning_rate
        t = (epoch - 1) / (epochs - 1)
        return self.lr_final + 0.5 * (self.learning_rate - self.lr_final) * \
            (1 + math.cos(math.pi * t))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["partial"] = self.partial
        return d


@dataclass(frozen=True)
class ModelSpec:
    """A validated model: layers with shapes, and its training settings."""

    name: str
    description: str
    input_shape: Shape
    classes: int
    layers: tuple[LayerSpec, ...]
    train: TrainSettings
    source: str

    @property
    def trainable_layers(self) -> tuple[int, ...]:
        return tuple(i for i, layer in enumerate(self.layers)
                     if layer.has_weights and layer.trainable)

    @property
    def first_trainable(self) -> int | None:
        t = self.trainable_layers
        return t[0] if t else None

    @property
    def n_params(self) -> int:
        return sum(layer.n_params for layer in self.layers)

    @property
    def n_trainable_params(self) -> int:
        return sum(self.layers[i].n_params for i in self.trainable_layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def with_train(self, **changes: Any) -> ModelSpec:
        """A copy with some TrainSettings fields replaced, checked like the [train] table."""
        train = _parse_train(changes, _display(self.source), base=self.train)
        return replace(self, train=train)

    def with_trainable_tail(self, k: int | None) -> ModelSpec:
        """A copy in which only the last k weighted layers are trainable (None: all)."""
        weighted = [i for i, layer in enumerate(self.layers) if layer.has_weights]
        if k is not None and not 1 <= k <= len(weighted):
            raise ModelError(f"{self.name}: can train the last 1..{len(weighted)} weighted "
                             f"layers, not {k}")
        keep = set(weighted if k is None else weighted[-k:])
        layers = tuple(replace(layer, trainable=i in keep) if layer.has_weights else layer
                       for i, layer in enumerate(self.layers))
        return replace(self, layers=layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "input_shape": list(self.input_shape),
            "classes": self.classes,
            "n_params": self.n_params,
            "n_trainable_params": self.n_trainable_params,
            "macs": self.macs,
            "trainable_layers": list(self.trainable_layers),
            "train": self.train.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
        }


# --------------------------------------------------------------------------- shape maths


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow "same" padding of one dimension: (out, pad_before, pad_after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def conv_output_size(size: int, kernel: int, stride: int, pad_before: int = 0,
                     pad_after: int = 0) -> int:
    """floor((size + padding - kernel) / stride) + 1; < 1 when the kernel does not fit."""
    return (size + pad_before + pad_after - kernel) // stride + 1


# --------------------------------------------------------------------------- loading


def zoo_names() -> list[str]:
    """The models of the zoo: sorted stems of models/*.toml."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.stem for p in MODELS_DIR.glob("*.toml"))


def load_model(name_or_path: str | Path) -> ModelSpec:
    """Load a zoo model by name (case-insensitive) or a model TOML file by path."""
    if isinstance(name_or_path, Path):
        path = name_or_path
    else:
        text = str(name_or_path)
        if text.lower().endswith(".toml") or "/" in text or "\\" in text:
            path = Path(text)
        else:
            zoo = {n.lower(): n for n in zoo_names()}
            if text.lower() in zoo:
                path = MODELS_DIR / f"{zoo[text.lower()]}.toml"
            elif text and Path(text).is_file():
                path = Path(text)
            else:
                raise ModelError(_unknown_model_message(text, list(zoo.values())))
    return parse_model(_read_text(path), source=str(path))


def parse_model(text: str, source: str = "<string>") -> ModelSpec:
    """Parse and check a model description; `source` names it in error messages."""
    src = _display(source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ModelError(f"{src}: invalid TOML: {_one_line(str(e))}") from None

    _check_keys(doc, _TOP_KEYS, f"{src}: unknown top-level key")
    if "model" not in doc:
        raise ModelError(f"{src}: missing [model] table (with input = [H, W, C] and classes)")
    model = doc["model"]
    if not isinstance(model, dict):
        raise ModelError(f"{src}: 'model' must be a table: write [model]")
    where = f"{src}: [model]"
    _check_keys(model, _MODEL_KEYS, f"{where} unknown key")

    default_name = Path(source).stem if source != "<string>" else "model"
    name = model.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"{where} 'name' must be a non-empty string (got {name!r})")
    description = model.get("description", "")
    if not isinstance(description, str):
        raise ModelError(f"{where} 'description' must be a string (got {description!r})")
    if "input" not in model:
        raise ModelError(f"{where} missing required key 'input' (= [H, W, C])")
    raw_input = model["input"]
    if (not isinstance(raw_input, list) or len(raw_input) != 3
            or not all(_is_int(v) for v in raw_input)):
        raise ModelError(f"{where} 'input' must be a list of three integers [H, W, C] "
                         f"(got {raw_input!r})")
    if any(v < 1 for v in raw_input):
        raise ModelError(f"{where} 'input' sizes must be >= 1 (got {raw_input!r})")
    input_shape: Shape = (raw_input[0], raw_input[1], raw_input[2])
    if "classes" not in model:
        raise ModelError(f"{where} missing required key 'classes'")
    classes = model["classes"]
    if not _is_int(classes):
        raise ModelError(f"{where} 'classes' must be an integer (got {classes!r})")
    if classes < 2:
        raise ModelError(f"{where} 'classes' must be >= 2 (a classifier needs two classes; "
                         f"got {classes})")

    raw_train = doc.get("train", {})
    if not isinstance(raw_train, dict):
        raise ModelError(f"{src}: 'train' must be a table: write [train]")
    train = _parse_train(raw_train, src)

    if "layer" not in doc:
        raise ModelError(f"{src}: no layers: add one [[layer]] table per layer")
    raw_layers = doc["layer"]
    if not isinstance(raw_layers, list) or not all(isinstance(r, dict) for r in raw_layers):
        raise ModelError(f"{src}: 'layer' must be an array of tables: write [[layer]] "
                         "before each layer")
    if not raw_layers:
        raise ModelError(f"{src}: no layers: add one [[layer]] table per layer")

    layers: list[LayerSpec] = []
    seen: dict[str, int] = {}
    shape = input_shape
    for i, raw in enumerate(raw_layers):
        layer = _parse_layer(raw, i, shape, src)
        if layer.name in seen:
            raise ModelError(f"{src}: layer {i} '{layer.name}': duplicate layer name (layer "
                             f"{seen[layer.name]} has it too)")
        seen[layer.name] = i
        layers.append(layer)
        shape = layer.out_shape

    _check_structure(layers, classes, src)
    return ModelSpec(name=name, description=description, input_shape=input_shape,
                     classes=classes, layers=tuple(layers), train=train, source=source)


# --------------------------------------------------------------------------- internals


def _display(source: str) -> str:
    return source if source == "<string>" else Path(source).name


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _did_you_mean(word: str, options: tuple[str, ...] | list[str]) -> str:
    near = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    for key in table:
        if key not in allowed:
            raise ModelError(f"{what} {key!r}{_did_you_mean(key, allowed)}")


def _unknown_model_message(name: str, zoo: list[str]) -> str:
    near = difflib.get_close_matches(name.lower(), zoo, n=1, cutoff=0.5)
    msg = f"unknown model {name!r}"
    if near:
        msg += f" (did you mean {near[0]!r}?)"
    listing = ", ".join(zoo) if zoo else "(none)"
    return msg + f"; the zoo has: {listing}; or give the path of a .toml file"


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    except OSError as e:
        raise ModelError(f"{path.name}: cannot read: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelError(f"{path.name}: invalid TOML: not UTF-8 text ({e.reason} at byte "
                         f"{e.start})") from None


_FLOAT_FIELDS = ("learning_rate", "lr_final", "lambda_min", "lambda_max", "alpha_a",
                 "alpha_e", "alpha_w", "alpha_norm")


def _parse_train(table: dict[str, Any], src: str, base: TrainSettings | None = None
                 ) -> TrainSettings:
    where = f"{src}: [train]"
    names = tuple(f.name for f in fields(TrainSettings))
    _check_keys(table, names, f"{where} unknown key")
    values: dict[str, Any] = {}
    for key, v in table.items():
        if key in _FLOAT_FIELDS:
            if not _is_number(v):
                raise ModelError(f"{where} {key!r} must be a number (got {v!r})")
            values[key] = float(v)
        elif key == "batch_size":
            if not _is_int(v):
                raise ModelError(f"{where} 'batch_size' must be an integer (got {v!r})")
            values[key] = int(v)
        else:  # rounding, epsilon
            if not isinstance(v, str):
                raise ModelError(f"{where} {key!r} must be a string (got {v!r})")
            values[key] = v
    t = replace(base or TrainSettings(), **values)

    if not (t.learning_rate > 0 and math.isfinite(t.learning_rate)):
        raise ModelError(f"{where} 'learning_rate' must be > 0 (got {t.learning_rate})")
    if not (0.0 <= t.lr_final <= t.learning_rate and math.isfinite(t.lr_final)):
        raise ModelError(f"{where} 'lr_final' must be in [0, learning_rate] (got "
                         f"{t.lr_final})")
    if t.batch_size < 1:
        raise ModelError(f"{where} 'batch_size' must be >= 1 (got {t.batch_size})")
    for key in ("lambda_min", "lambda_max"):
        v = getattr(t, key)
        if not 0.0 <= v <= 1.0:
            raise ModelError(f"{where} {key!r} must be in [0, 1] (got {v})")
    if t.lambda_min > t.lambda_max:
        raise ModelError(f"{where} 'lambda_min' ({t.lambda_min}) must not exceed 'lambda_max' "
                         f"({t.lambda_max})")
    for key in ("alpha_a", "alpha_e", "alpha_w", "alpha_norm"):
        v = getattr(t, key)
        if not 0.0 < v <= 1.0:
            raise ModelError(f"{where} {key!r} must be in (0, 1] (got {v})")
    if t.rounding not in ROUNDING_MODES:
        raise ModelError(f"{where} 'rounding' must be one of {', '.join(ROUNDING_MODES)} "
                         f"(got {t.rounding!r})")
    if t.epsilon not in EPSILON_MODES:
        raise ModelError(f"{where} 'epsilon' must be one of {', '.join(EPSILON_MODES)} "
                         f"(got {t.epsilon!r})")
    return t


class _LayerReader:
    """Typed access to one [[layer]] table; every error names the file and the layer."""

    def __init__(self, raw: dict[str, Any], index: int, src: str, label: str) -> None:
        self.raw = raw
        self.prefix = f"{src}: layer {index} '{label}'"

    def fail(self, problem: str) -> NoReturn:
        raise ModelError(f"{self.prefix}: {problem}")

    def get_int(self, key: str, *, default: int | None = None) -> int:
        if key not in self.raw:
            if default is None:
                self.fail(f"missing required key {key!r}")
            return default
        v = self.raw[key]
        if not _is_int(v):
            self.fail(f"{key!r} must be an integer (got {v!r})")
        if v < 1:
            self.fail(f"{key!r} must be >= 1 (got {v})")
        return int(v)

    def get_pair(self, key: str, *, default: tuple[int, int] | None = None) -> tuple[int, int]:
        if key not in self.raw:
            if default is None:
                self.fail(f"missing required key {key!r}")
            return default
        v = self.raw[key]
        if _is_int(v):
            v = [v, v]
        if not (isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v)):
            self.fail(f"{key!r} must be an integer or a list of two integers (got {v!r})")
        if v[0] < 1 or v[1] < 1:
            self.fail(f"{key!r} sizes must be >= 1 (got {self.raw[key]!r})")
        return int(v[0]), int(v[1])

    def get_bool(self, key: str, default: bool) -> bool:
        v = self.raw.get(key, default)
        if not isinstance(v, bool):
            self.fail(f"{key!r} must be true or false (got {v!r})")
        return v

    def activation(self) -> bool:
        v = self.raw.get("activation", "none")
        if v not in ACTIVATIONS:
            self.fail(f"'activation' must be one of {', '.join(ACTIVATIONS)} (got {v!r})")
        return v == "relu"


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _parse_layer(raw: dict[str, Any], index: int, in_shape: Shape, src: str) -> LayerSpec:
    ltype = raw.get("type")
    given_name = raw.get("name")
    if isinstance(given_name, str) and given_name:
        label = given_name
    elif isinstance(ltype, str):
        label = f"{ltype}{index}"
    else:
        label = f"layer{index}"
    r = _LayerReader(raw, index, src, label)

    if "type" not in raw:
        r.fail(f"missing required key 'type' (one of {', '.join(LAYER_TYPES)})")
    if ltype not in LAYER_TYPES:
        near = (difflib.get_close_matches(ltype, LAYER_TYPES, n=1, cutoff=0.6)
                if isinstance(ltype, str) else [])
        hint = f"; did you mean {near[0]!r}?" if near else ""
        r.fail(f"unknown layer type {ltype!r} (expected one of {', '.join(LAYER_TYPES)}){hint}")
    allowed = _LAYER_KEYS[ltype]
    for key in raw:
        if key in allowed:
            continue
        if key in _ALL_LAYER_KEYS:
            why = ""
            if key == "stride" and ltype in POOL_TYPES:
                why = ": a pool's stride is always its pool size"
            elif key in ("trainable", "bias") and ltype not in WEIGHTED_TYPES:
                why = ": it has no weights"
            r.fail(f"key {key!r} does not apply to {ltype} layers{why} "
                   f"(their keys: {', '.join(allowed)})")
        r.fail(f"unknown key {key!r}{_did_you_mean(key, allowed)}")

    name = label
    if "name" in raw:
        if not isinstance(given_name, str) or not _NAME_RE.match(given_name):
            r.fail(f"'name' must be a string of letters, digits, '_', '-' or '.' starting with "
                   f"a letter or '_' (got {given_name!r})")
        name = given_name

    H, W, C = in_shape
    if ltype in ("conv2d", "dwconv2d"):
        cout = r.get_int("filters") if ltype == "conv2d" else C
        kernel = r.get_pair("kernel")
        stride = r.get_pair("stride", default=(1, 1))
        padding = _padding(r, (H, W), kernel, stride)
        t, b, left, right = padding
        kh, kw = kernel
        if H + t + b < kh or W + left + right < kw:
            r.fail(f"kernel {kh}x{kw} is larger than the padded input {H + t + b}x"
                   f"{W + left + right} (output dimension < 1)")
        ho = conv_output_size(H, kh, stride[0], t, b)
        wo = conv_output_size(W, kw, stride[1], left, right)
        return LayerSpec(name=name, type=ltype, in_shape=in_shape, out_shape=(ho, wo, cout),
                         kernel=kernel, stride=stride, padding=padding, relu=r.activation(),
                         trainable=r.get_bool("trainable", True), bias=r.get_bool("bias", True))
    if ltype == "fc":
        units = r.get_int("units")
        if H != 1 or W != 1:
            r.fail(f"fc input is {_fmt(in_shape)}, not 1x1xN: put a flatten before it")
        return LayerSpec(name=name, type=ltype, in_shape=in_shape, out_shape=(1, 1, units),
                         relu=r.activation(), trainable=r.get_bool("trainable", True),
                         bias=r.get_bool("bias", True))
    if ltype in POOL_TYPES:
        if raw.get("pool") == "global":
            pool = (H, W)
        elif isinstance(raw.get("pool"), str):
            r.fail(f"'pool' must be an integer, [ph, pw] or \"global\" (got {raw['pool']!r})")
        else:
            pool = r.get_pair("pool")
        if pool[0] > H or pool[1] > W:
            r.fail(f"pool {_fmt(pool)} is larger than its input {H}x{W}")
        return LayerSpec(name=name, type=ltype, in_shape=in_shape,
                         out_shape=(H // pool[0], W // pool[1], C), kernel=pool, stride=pool)
    # flatten
    return LayerSpec(name=name, type=ltype, in_shape=in_shape, out_shape=(1, 1, H * W * C))


def _padding(r: _LayerReader, in_hw: tuple[int, int], kernel: tuple[int, int],
             stride: tuple[int, int]) -> tuple[int, int, int, int]:
    v = r.raw.get("padding", "valid")
    if v == "valid":
        return (0, 0, 0, 0)
    if v == "same":
        _, t, b = same_padding(in_hw[0], kernel[0], stride[0])
        _, left, right = same_padding(in_hw[1], kernel[1], stride[1])
        return (t, b, left, right)
    if _is_int(v):
        v = [v] * 4
    if not (isinstance(v, list) and len(v) == 4 and all(_is_int(x) for x in v)):
        r.fail("'padding' must be \"valid\", \"same\", an integer or [top, bottom, left, right] "
               f"(got {r.raw['padding']!r})")
    if any(x < 0 for x in v):
        r.fail(f"'padding' must be >= 0 (got {r.raw['padding']!r})")
    t, b, left, right = (int(x) for x in v)
    kh, kw = kernel
    if t >= kh or b >= kh or left >= kw or right >= kw:
        r.fail(f"'padding' {r.raw['padding']!r} must be smaller than the kernel {kh}x{kw}")
    return (t, b, left, right)


def _check_structure(layers: list[LayerSpec], classes: int, src: str) -> None:
    last_i = len(layers) - 1
    last = layers[last_i]
    where = f"{src}: layer {last_i} '{last.name}'"
    if last.type not in ("fc", "conv2d"):
        raise ModelError(f"{where}: the last layer must be an fc or conv2d layer producing the "
                         f"{classes} logits (got {last.type})")
    if last.relu:
        raise ModelError(f"{where}: the last layer produces the logits and must not have "
                         "activation = \"relu\"")
    if last.out_size != classes:
        raise ModelError(f"{where}: the last layer outputs {_fmt(last.out_shape)} = "
                         f"{last.out_size} values but [model] classes = {classes}")
    trainable_seen: int | None = None
    for i, layer in enumerate(layers):
        if not layer.has_weights:
            continue
        if layer.trainable:
            if trainable_seen is None:
                trainable_seen = i
        elif trainable_seen is not None:
            raise ModelError(
                f"{src}: layer {i} '{layer.name}': frozen layers must come before trainable "
                f"ones: the method trains the tail (layer {trainable_seen} "
                f"'{layers[trainable_seen].name}' is trainable)")
    if trainable_seen is None:
        raise ModelError(f"{src}: no trainable layer: set trainable = true on at least the last "
                         "weighted layer")
