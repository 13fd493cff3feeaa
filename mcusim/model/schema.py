"""Model descriptions: the network a simulation trains, read from TOML into typed, checked specs.

A model is a TOML file, either in the zoo (``models/*.toml`` at the top of the repository,
looked up by stem, case-insensitively) or anywhere on disk.  Its schema::

    [model]
    name = "digits-cnn"        # optional: defaults to the file's stem
    description = "..."        # optional
    input = [8, 8, 1]          # H, W, C (required)
    classes = 10               # required; the last layer's output size (the logits)
    loss = "xent"              # optional: xent (softmax cross-entropy over the logits) | mse
                               #   (mean squared error reconstructing the input: autoencoders)
    input_range = [0.0, 1.0]   # optional: the real range of the input (must contain 0)
    weights = "model.npz"      # optional: pretrained float32 weights (mcusim.model.weights),
                               #   relative to this file; default: random (He-uniform)
    imported_from = "x.onnx"   # optional, informational: written by `mcusim import`
    frozen_weights = "per-tensor"  # optional: per-tensor (default) | per-channel: frozen
                               #   layers hold symmetric int8 weights per output channel and
                               #   requantize per channel (as int8 runtimes do)

    [train]                    # optional; every key optional; unknown keys are errors
    learning_rate = 0.01       # > 0
    lr_final = 0.0005          # optional: cosine decay to this over the epochs (0: constant)
    batch_size = 8             # >= 1
    lambda_min = 1.0           # fraction of structures updated per step, 0 <= min <= max <= 1;
    lambda_max = 1.0           #   lambda_min < 1 turns on partial (sparse) updates
    rounding = "nearest"       # nearest | floor | stochastic: forward/backward requantization
    update_rounding = "nearest"  # nearest | floor | stochastic: the weight update's
                               #   requantization.  Nearest unless you study the others:
                               #   floor is a ratchet (zero gradients still move every weight
                               #   down by up to 1 LSB per update: -29 LSB in 100 updates on
                               #   digits-cnn's conv2, measured) and stochastic rounding
                               #   turns sub-LSB steps into a random walk
    range_update = "sample"    # sample | batch: when tracked activation/error ranges take
                               #   effect.  Every sample's range is folded into the EMA; the
                               #   scales and zero points are re-derived after every sample
                               #   (sample: each sample's errors use the whole uint8 range, so
                               #   a batch's int32 gradients are summed in per-sample units)
                               #   or once per mini-batch (batch: one unit per batch, the
                               #   exact sum; 1.1 points less accuracy on digits, measured)
    logit_headroom = 1.0       # >= 1: the logits' tracked range is widened by this factor so
                               #   that confident samples' largest logits are not clipped
    fc_gradient = "accumulate" # accumulate | pairs: an FC layer's weight gradient as out x in
                               #   int32 accumulators, or as the mini-batch's (input, error)
                               #   byte pairs, formed at the update (batch x (in + out) bytes;
                               #   the same training, bit for bit, for less RAM and more
                               #   update work)
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
    type = "conv2d"            # conv2d | dwconv2d | fc | maxpool | avgpool | flatten | add
    inputs = ["c1", "input"]   # optional: the layers it reads ("input": the model's input);
                               #   default the previous layer; add: exactly two
    filters = 8                # conv2d: output channels (required)
    units = 10                 # fc: outputs (required)
    kernel = 3                 # conv2d, dwconv2d (required): int or [kh, kw]
    stride = 1                 # conv2d, dwconv2d: int or [sh, sw] (default 1)
    padding = "same"           # "valid" (default) | "same" | int | [top, bottom, left, right]
    activation = "relu"        # conv2d, dwconv2d, fc: "relu" | "relu6" | "none" (default);
                               #   add: "relu" | "none"
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
* add: the element-wise sum of two different earlier outputs of the same shape (a residual
  connection).  A layer's output may feed several layers (a fork); in training the errors
  of all of them are summed.  Every output but the last layer's must be read by some layer.

The whole description must make sense for tail training: the last layer is an fc or conv2d
without relu whose output size equals ``classes``; at least one weighted layer is trainable; and
every frozen weighted layer comes before every trainable one.

Limits.  Every size is bounded when the file is read, before anything is allocated or
computed, so that a mistyped or hostile description fails at once with one line instead of
exhausting memory or time: the file itself is at most 16 MiB and must be a regular file (not a
FIFO or a device); arrays and tables nest at most 64 levels deep; every size written in
the file (input H, W, C, classes, filters, units, kernel, stride, pool) is at most 65,535; a
model has at most 4,096 layers; every tensor (the input and each layer's output) has at most
2**24 = 16,777,216 values (16 MiB of int8: 16x the RAM of the largest MCU in the catalog), and
all of them together at most 2**26 = 67,108,864 (a training step keeps them all); the whole
model has at most 2**25 = 33,554,432 parameters (32 MiB of int8 weights: 4x the flash of
the largest MCU) and 2**32 multiply-accumulates per forward pass (seconds per sample on the
fastest Cortex-M); batch_size is at most 65,536 (as the CLI's --batch) and learning_rate at
most 3.4e38 (a float32, as the kernels store it).  Models far beyond any MCU are thus still
accepted (a budget reports how far off they are); only absurd ones are refused.

Every mistake raises ModelError with one line that starts with the file name and, for a layer,
names its index and name.  Values quoted in messages are shortened.  Nothing here prints.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
import re
import reprlib
import stat
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, NoReturn

from mcusim.errors import ModelError
from mcusim.userfiles import MiB, read_bytes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LAYER_TYPES = ("conv2d", "dwconv2d", "fc", "maxpool", "avgpool", "flatten", "add")
WEIGHTED_TYPES = ("conv2d", "dwconv2d", "fc")
POOL_TYPES = ("maxpool", "avgpool")
ROUNDING_MODES = ("nearest", "floor", "stochastic")
EPSILON_MODES = ("layer_error", "loss")
RANGE_UPDATES = ("sample", "batch")
FC_GRADIENTS = ("accumulate", "pairs")
ACTIVATIONS = ("relu", "relu6", "none")
LOSSES = ("xent", "mse")
RELU6 = 6.0  # the upper clip of relu6

Shape = tuple[int, int, int]

_LAYER_KEYS: dict[str, tuple[str, ...]] = {
    "conv2d": ("name", "type", "inputs", "filters", "kernel", "stride", "padding",
               "activation", "trainable", "bias"),
    "dwconv2d": ("name", "type", "inputs", "kernel", "stride", "padding", "activation",
                 "trainable", "bias"),
    "fc": ("name", "type", "inputs", "units", "activation", "trainable", "bias"),
    "maxpool": ("name", "type", "inputs", "pool"),
    "avgpool": ("name", "type", "inputs", "pool"),
    "flatten": ("name", "type", "inputs"),
    "add": ("name", "type", "inputs", "activation"),
}
_ALL_LAYER_KEYS = tuple(sorted({k for keys in _LAYER_KEYS.values() for k in keys}))
_MODEL_KEYS = ("name", "description", "input", "classes", "loss", "input_range", "weights",
               "imported_from", "frozen_weights")
FROZEN_WEIGHTS = ("per-tensor", "per-channel")
_TOP_KEYS = ("model", "train", "layer")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")

# limits (see the module docstring); each message names the limit and why it is there
MAX_MODEL_BYTES = 16 * MiB  # size of a model file
MAX_DIM = 65_535  # any size written in the file: H, W, C, classes, filters, units, kernel...
MAX_LAYERS = 4_096
MAX_TENSOR = 1 << 24  # values of the input and of any layer's output (int8: 16 MiB)
MAX_ACTIVATIONS = 1 << 26  # values of the input and all layer outputs together (64 MiB)
MAX_PARAMS = 1 << 25  # weights + biases of the whole model (int8 weights: 32 MiB)
MAX_MACS = 1 << 32  # multiply-accumulates of one forward pass
# samples per mini-batch (as the CLI's --batch): on-device mini-batches are small (the
# gradients accumulate per sample; the paper's are tens of samples), and `step` simulates
# every sample of one (about 4-25 ms each on this machine: 1,024 take 4-25 s)
MAX_BATCH = 1_024
MAX_LEARNING_RATE = 3.4028234663852886e38  # the largest float32: the kernels store it so
MAX_NAME = 128  # characters of a model or layer name
_WHY_TENSOR = "16 MiB of int8, 16x the RAM of the largest MCU in the catalog"
_WHY_ACTIVATIONS = "64 MiB of int8, 64x the RAM of the largest MCU in the catalog"
_WHY_PARAMS = ("32 MiB of int8 weights, 4x the flash of the largest MCU in the catalog")
_WHY_MACS = "seconds per sample on the fastest Cortex-M"


class _ShortRepr(reprlib.Repr):
    """repr() for messages: shortened, never raising on deep nesting or huge integers."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = 40
        self.maxother = 40
        self.maxlong = 24
        self.maxlist = self.maxdict = self.maxtuple = 6

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 200:  # repr() of a huge int is slow or refused (4300 digits)
            return f"{'-' if x < 0 else ''}<a {x.bit_length()}-bit integer>"
        return super().repr_int(x, level)


_SHORT = _ShortRepr()


def _show(v: Any) -> str:
    """A user's value as quoted in a message: repr(), shortened to one short line."""
    try:
        return _SHORT.repr(v)
    except (RecursionError, ValueError):  # pragma: no cover - a defence
        return f"<a {type(v).__name__}>"


def _nesting(v: Any, limit: int) -> bool:
    """Whether the lists and tables of a parsed document nest deeper than `limit`."""
    stack = [(v, 0)]
    while stack:
        x, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(x, dict):
            stack.extend((y, depth + 1) for y in x.values())
        elif isinstance(x, list):
            stack.extend((y, depth + 1) for y in x)
    return False


MAX_NESTING = 64  # levels of arrays / tables a model file may nest (it needs 3)


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
    # producers of the inputs: indices of earlier layers, -1 the model's input (one, or two
    # for add); () only in hand-built specs, meaning the previous layer
    inputs: tuple[int, ...] = ()
    clip_hi: float = 0.0  # > 0: the activation is also clipped above (relu6: 6.0)

    @property
    def activation(self) -> str:
        if not self.relu:
            return "none"
        return "relu6" if self.clip_hi == RELU6 else "relu"

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
            "activation": self.activation,
            "inputs": list(self.inputs),
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
    update_rounding: str = "nearest"  # rounding of the weight update's requantization
    range_update: str = "sample"  # sample | batch: when tracked ranges take effect
    logit_headroom: float = 1.0  # the logits' tracked range is widened by this factor
    fc_gradient: str = "accumulate"  # accumulate | pairs: how FC weight gradients are kept

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
    loss: str = "xent"  # xent: softmax cross-entropy over `classes` logits; mse: reconstruct
    input_range: tuple[float, float] = (0.0, 1.0)  # the real range of the input
    weights: str | None = None  # path of the pretrained weights (.npz), None: random init
    imported_from: str = ""  # the ONNX / TFLite file it was imported from, if any
    frozen_weights: str = "per-tensor"  # per-channel: frozen layers' weights and multipliers

    def producers(self, i: int) -> tuple[int, ...]:
        """The layers feeding layer i (-1: the model input)."""
        return self.layers[i].inputs or (i - 1,)

    def consumers(self) -> list[list[int]]:
        """For each layer, the later layers that read its output (the last: none)."""
        out: list[list[int]] = [[] for _ in self.layers]
        for j in range(len(self.layers)):
            for k in self.producers(j):
                if k >= 0:
                    out[k].append(j)
        return out

    def needs_error(self) -> list[bool]:
        """Whether training needs the error w.r.t. each layer's output: the layer is
        trainable, or a trainable layer lies upstream of it (the error passes through it)."""
        need = [False] * len(self.layers)
        for j, L in enumerate(self.layers):
            need[j] = (L.has_weights and L.trainable) or \
                any(k >= 0 and need[k] for k in self.producers(j))
        return need

    @property
    def is_graph(self) -> bool:
        """Whether any layer reads something other than the layer before it."""
        return any(self.producers(i) != (i - 1,) for i in range(len(self.layers)))

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

    def max_batch(self) -> tuple[int, str, int]:
        """The largest mini-batch whose int32 gradient accumulators cannot overflow, the
        layer that bounds it and its output positions ((MAX_BATCH, "", 0) when none does).
        One sample adds to a weight's accumulator at most 255 * 255 per output position the
        weight is used at (|e - z_e| and |x - z_x| are at most 255): out_h * out_w for
        conv2d/dwconv2d, one for fc.  mcusim bounds the batch rather than saturating the
        accumulators: a saturated gradient would be silently wrong, a refused batch is a
        clear error."""
        best, name, where = MAX_BATCH, "", 0
        for i in self.trainable_layers:
            L = self.layers[i]
            pos = L.out_shape[0] * L.out_shape[1] if L.type != "fc" else 1
            b = (2**31 - 1) // (pos * 255 * 255)
            if b < best:
                best, name, where = b, L.name, pos
        return best, name, where

    def check_batch(self) -> None:
        """ModelError when the batch size could overflow a gradient accumulator."""
        most, layer, pos = self.max_batch()
        if most == 0:
            raise ModelError(
                f"{self.name}: {layer} has {pos:,} output positions: one sample alone could "
                f"overflow its int32 gradient accumulators ({pos:,} x 255 x 255 per weight); "
                f"a trainable conv may have at most {(2**31 - 1) // 65025:,}")
        if self.train.batch_size > most:
            raise ModelError(
                f"{self.name}: a mini-batch of {self.train.batch_size:,} samples could overflow "
                f"{layer}'s int32 gradient accumulators ({pos:,} output positions x 255 x 255 "
                f"per weight and sample); use a batch of at most {most:,}")

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

    def with_trainable(self, names: list[str] | tuple[str, ...]) -> ModelSpec:
        """A copy in which exactly the named weighted layers are trainable; they must be the
        tail of the weighted layers (the method trains the last layers)."""
        weighted = [i for i, layer in enumerate(self.layers) if layer.has_weights]
        by_name = {self.layers[i].name: i for i in weighted}
        for n in names:
            if n not in by_name:
                other = [layer.name for layer in self.layers]
                what = "has no weights" if n in other else "is not a layer of the model"
                raise ModelError(f"{self.name}: --trainable {n!r} {what}; weighted layers: "
                                 f"{', '.join(self.layers[i].name for i in weighted)}")
        keep = {by_name[n] for n in names}
        if not keep:
            raise ModelError(f"{self.name}: --trainable names no layer")
        tail = weighted[-len(keep):]
        if sorted(keep) != tail:
            raise ModelError(
                f"{self.name}: --trainable must name the last weighted layers (the method "
                f"trains the tail): {len(keep)} layer(s) would be "
                f"{', '.join(self.layers[i].name for i in tail)}")
        return self.with_trainable_tail(len(keep))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "input_shape": list(self.input_shape),
            "classes": self.classes,
            "loss": self.loss,
            "input_range": list(self.input_range),
            "weights": self.weights,
            "imported_from": self.imported_from,
            "frozen_weights": self.frozen_weights,
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


def parse_model(text: str, source: str = "<string>") -> ModelSpec:
    """Parse and check a model description; `source` names it in error messages."""
    src = _display(source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ModelError(f"{src}: invalid TOML: {_one_line(str(e))}") from None
    except RecursionError:  # arrays or inline tables nested thousands deep
        raise ModelError(f"{src}: invalid TOML: arrays or tables nested too deeply (a model "
                         f"needs 3 levels; mcusim reads at most {MAX_NESTING})") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise ModelError(f"{src}: invalid TOML: {_one_line(str(e))[:200]}") from None
    if _nesting(doc, MAX_NESTING):
        raise ModelError(f"{src}: invalid TOML: arrays or tables nested too deeply (a model "
                         f"needs 3 levels; mcusim reads at most {MAX_NESTING})")

    _check_keys(doc, _TOP_KEYS, f"{src}: unknown top-level key")
    if "model" not in doc:
        raise ModelError(f"{src}: missing [model] table (with input = [H, W, C] and classes)")
    model = doc["model"]
    if not isinstance(model, dict):
        raise ModelError(f"{src}: 'model' must be a table: write [model]")
    where = f"{src}: [model]"
    _check_keys(model, _MODEL_KEYS, f"{where} unknown key")

    # the file's stem, kept to one printable line (the name is in every later message)
    default_name = (printable(Path(source).stem)[:MAX_NAME] or "model") \
        if source != "<string>" else "model"
    name = model.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"{where} 'name' must be a non-empty string (got {_show(name)})")
    if len(name) > MAX_NAME or not name.isprintable():
        raise ModelError(f"{where} 'name' must be one line of at most {MAX_NAME} printable "
                         f"characters (got {_show(name)})")
    description = model.get("description", "")
    if not isinstance(description, str):
        raise ModelError(f"{where} 'description' must be a string (got {_show(description)})")
    if "input" not in model:
        raise ModelError(f"{where} missing required key 'input' (= [H, W, C])")
    raw_input = model["input"]
    if (not isinstance(raw_input, list) or len(raw_input) != 3
            or not all(_is_int(v) for v in raw_input)):
        raise ModelError(f"{where} 'input' must be a list of three integers [H, W, C] "
                         f"(got {_show(raw_input)})")
    if any(v < 1 for v in raw_input):
        raise ModelError(f"{where} 'input' sizes must be >= 1 (got {_show(raw_input)})")
    if any(v > MAX_DIM for v in raw_input):
        raise ModelError(f"{where} 'input' sizes must be at most {MAX_DIM:,} (got "
                         f"{_show(raw_input)})")
    input_shape: Shape = (int(raw_input[0]), int(raw_input[1]), int(raw_input[2]))
    if math.prod(input_shape) > MAX_TENSOR:
        raise ModelError(f"{where} 'input' {_fmt(input_shape)} has "
                         f"{math.prod(input_shape):,} values; mcusim accepts at most "
                         f"{MAX_TENSOR:,} per tensor ({_WHY_TENSOR})")
    if "classes" not in model:
        raise ModelError(f"{where} missing required key 'classes'")
    classes = model["classes"]
    if not _is_int(classes):
        raise ModelError(f"{where} 'classes' must be an integer (got {_show(classes)})")
    if classes < 2 and model.get("loss") != "mse":
        raise ModelError(f"{where} 'classes' must be >= 2 (a classifier needs two classes; "
                         f"got {_show(classes)})")
    if classes > MAX_DIM:
        raise ModelError(f"{where} 'classes' must be at most {MAX_DIM:,} (got "
                         f"{_show(classes)})")

    loss = model.get("loss", "xent")
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ModelError(f"{where} 'loss' must be one of {', '.join(LOSSES)} (got "
                         f"{_show(loss)})")
    input_range = (0.0, 1.0)
    if "input_range" in model:
        v = model["input_range"]
        if not (isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v)
                and all(math.isfinite(float(x)) for x in v) and float(v[0]) < float(v[1])
                and abs(float(v[0])) < 1e30 and abs(float(v[1])) < 1e30):
            raise ModelError(f"{where} 'input_range' must be [lo, hi], two finite numbers "
                             f"with lo < hi (got {_show(v)})")
        if not float(v[0]) <= 0.0 <= float(v[1]):
            raise ModelError(f"{where} 'input_range' must contain 0 (uint8 tensors represent "
                             f"0 exactly; got {_show(v)})")
        input_range = (float(v[0]), float(v[1]))
    weights = None
    if "weights" in model:
        v = model["weights"]
        if not isinstance(v, str) or not v or len(v) > 4096 or "\0" in v:
            raise ModelError(f"{where} 'weights' must be the path of a .npz file (got "
                             f"{_show(v)})")
        base = Path(source).parent if source != "<string>" else Path.cwd()
        weights = str(base / v)
    frozen_weights = model.get("frozen_weights", "per-tensor")
    if not isinstance(frozen_weights, str) or frozen_weights not in FROZEN_WEIGHTS:
        raise ModelError(f"{where} 'frozen_weights' must be one of {', '.join(FROZEN_WEIGHTS)} "
                         f"(got {_show(frozen_weights)})")
    imported_from = model.get("imported_from", "")
    if not isinstance(imported_from, str):
        raise ModelError(f"{where} 'imported_from' must be a string (got "
                         f"{_show(imported_from)})")

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
    if len(raw_layers) > MAX_LAYERS:
        raise ModelError(f"{src}: {len(raw_layers):,} layers; mcusim accepts at most "
                         f"{MAX_LAYERS:,}")

    layers: list[LayerSpec] = []
    seen: dict[str, int] = {}
    params = macs = 0
    values = math.prod(input_shape)
    for i, raw in enumerate(raw_layers):
        inputs = _inputs(raw, i, seen, src)
        shapes = [input_shape if k < 0 else layers[k].out_shape for k in inputs]
        layer = _parse_layer(raw, i, shapes[0], src)
        if layer.name in seen or layer.name == "input":
            other = "the model input's name" if layer.name == "input" else \
                f"layer {seen[layer.name]} has it too"
            raise ModelError(f"{src}: layer {i} '{layer.name}': duplicate layer name ({other})")
        want = 2 if layer.type == "add" else 1
        if len(inputs) != want:
            raise ModelError(f"{src}: layer {i} '{layer.name}': a {layer.type} layer takes "
                             f"{want} input{'s' if want > 1 else ''} (got {len(inputs)})")
        if layer.type == "add" and inputs[0] == inputs[1]:
            raise ModelError(f"{src}: layer {i} '{layer.name}': add needs two different inputs "
                             f"(got {raw['inputs'][0]!r} twice)")
        if layer.type == "add" and shapes[0] != shapes[1]:
            raise ModelError(f"{src}: layer {i} '{layer.name}': add inputs must have the same "
                             f"shape (got {_fmt(shapes[0])} and {_fmt(shapes[1])})")
        layer = replace(layer, inputs=tuple(inputs))
        seen[layer.name] = i
        params += layer.n_params
        macs += layer.macs
        if layer.type != "flatten":  # a flatten's output is its input's buffer
            values += layer.out_size
        _check_size(layer, i, src, params, macs, values)
        layers.append(layer)

    _check_structure(layers, classes, src)
    _check_graph(layers, input_shape, loss, src)
    return ModelSpec(name=name, description=description, input_shape=input_shape,
                     classes=classes, layers=tuple(layers), train=train, source=source,
                     loss=loss, input_range=input_range, weights=weights,
                     imported_from=imported_from, frozen_weights=frozen_weights)


def _inputs(raw: dict[str, Any], i: int, seen: dict[str, int], src: str) -> list[int]:
    """The producers a [[layer]] table names in 'inputs' (default: the layer before)."""
    if "inputs" not in raw:
        return [i - 1]
    v = raw["inputs"]
    label = raw.get("name") if _good_name(raw.get("name")) else f"layer{i}"
    where = f"{src}: layer {i} '{label}'"
    if not (isinstance(v, list) and 1 <= len(v) <= 2 and all(isinstance(x, str) for x in v)):
        raise ModelError(f"{where}: 'inputs' must be a list of one or two layer names (got "
                         f"{_show(v)})")
    out = []
    for x in v:
        if x == "input":
            out.append(-1)
        elif x in seen:
            out.append(seen[x])
        else:
            raise ModelError(f"{where}: 'inputs' names {_show(x)}, which is not an earlier "
                             f"layer (nor \"input\"){_did_you_mean(x, list(seen))}")
    return out


def _check_graph(layers: list[LayerSpec], input_shape: Shape, loss: str, src: str) -> None:
    """Every layer's output is used (the last is the model's output), and the mse loss
    reconstructs the input."""
    used = {k for L in layers for k in L.inputs}
    for i, L in enumerate(layers[:-1]):
        if i not in used:
            raise ModelError(f"{src}: layer {i} '{L.name}': its output is never used (only the "
                             "last layer may be the model's output)")
    if loss == "mse" and layers[-1].out_size != math.prod(input_shape):
        raise ModelError(f"{src}: loss \"mse\" trains an autoencoder to reconstruct its "
                         f"input: the last layer outputs {layers[-1].out_size} values, the "
                         f"input has {math.prod(input_shape)}")


# --------------------------------------------------------------------------- internals


def _display(source: str) -> str:
    return source if source == "<string>" else printable(Path(source).name)


def printable(text: str) -> str:
    """`text` with control and other unprintable characters escaped (a newline as \\n), so
    that a file name in a message keeps it on one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _did_you_mean(word: str, options: tuple[str, ...] | list[str]) -> str:
    if len(word) > MAX_NAME:  # difflib is quadratic in the word's length
        return ""
    near = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    for key in table:
        if key not in allowed:
            raise ModelError(f"{what} {_show(key)}{_did_you_mean(key, allowed)}")


def _unknown_model_message(name: str, zoo: list[str]) -> str:
    near = difflib.get_close_matches(name.lower(), zoo, n=1, cutoff=0.5)
    msg = f"unknown model {name!r}"
    if near:
        msg += f" (did you mean {near[0]!r}?)"
    listing = ", ".join(zoo) if zoo else "(none)"
    return msg + f"; the zoo has: {listing}; or give the path of a .toml file"


def _read_text(path: Path) -> str:
    """The text of a model file: a regular file of at most MAX_MODEL_BYTES, UTF-8.  A FIFO
    or a device (/dev/zero) is refused at once, without reading."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ModelError(f"model file not found: {printable(str(path))}") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise ModelError(f"{printable(path.name)}: cannot read: "
                         f"{getattr(e, 'strerror', None) or e}") from None
    if stat.S_ISDIR(mode):
        raise ModelError(f"{printable(path.name)}: cannot read: is a directory, not a model "
                         "file")
    try:
        data = read_bytes(path, "a model description (TOML)", MAX_MODEL_BYTES, ModelError)
    except ModelError as e:  # it names the path as given: keep the message on one line
        raise ModelError(str(e).replace(str(path), printable(str(path)))) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelError(f"{printable(path.name)}: invalid TOML: not UTF-8 text ({e.reason} "
                         f"at byte {e.start})") from None


_FLOAT_FIELDS = ("learning_rate", "lr_final", "lambda_min", "lambda_max", "alpha_a",
                 "alpha_e", "alpha_w", "alpha_norm", "logit_headroom")


def _parse_train(table: dict[str, Any], src: str, base: TrainSettings | None = None
                 ) -> TrainSettings:
    where = f"{src}: [train]"
    names = tuple(f.name for f in fields(TrainSettings))
    _check_keys(table, names, f"{where} unknown key")
    values: dict[str, Any] = {}
    for key, v in table.items():
        if key in _FLOAT_FIELDS:
            if not _is_number(v):
                raise ModelError(f"{where} {key!r} must be a number (got {_show(v)})")
            try:
                values[key] = float(v)
            except OverflowError:  # an integer beyond any float
                raise ModelError(f"{where} {key!r} is too large (got {_show(v)})") from None
        elif key == "batch_size":
            if not _is_int(v):
                raise ModelError(f"{where} 'batch_size' must be an integer (got {_show(v)})")
            values[key] = int(v)
        else:  # rounding, update_rounding, range_update, fc_gradient, epsilon
            if not isinstance(v, str):
                raise ModelError(f"{where} {key!r} must be a string (got {_show(v)})")
            values[key] = v
    t = replace(base or TrainSettings(), **values)

    if not (t.learning_rate > 0 and math.isfinite(t.learning_rate)):
        raise ModelError(f"{where} 'learning_rate' must be > 0 (got {t.learning_rate})")
    if t.learning_rate > MAX_LEARNING_RATE:
        raise ModelError(f"{where} 'learning_rate' must be at most {MAX_LEARNING_RATE:.7g} "
                         f"(a float32, as the kernels store it; got {t.learning_rate})")
    if not (0.0 <= t.lr_final <= t.learning_rate and math.isfinite(t.lr_final)):
        raise ModelError(f"{where} 'lr_final' must be in [0, learning_rate] (got "
                         f"{t.lr_final})")
    if t.batch_size < 1:
        raise ModelError(f"{where} 'batch_size' must be >= 1 (got {_show(t.batch_size)})")
    if t.batch_size > MAX_BATCH:
        raise ModelError(f"{where} 'batch_size' must be at most {MAX_BATCH:,} (got "
                         f"{_show(t.batch_size)})")
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
                         f"(got {_show(t.rounding)})")
    if t.update_rounding not in ROUNDING_MODES:
        raise ModelError(f"{where} 'update_rounding' must be one of "
                         f"{', '.join(ROUNDING_MODES)} (got {_show(t.update_rounding)})")
    if t.range_update not in RANGE_UPDATES:
        raise ModelError(f"{where} 'range_update' must be one of {', '.join(RANGE_UPDATES)} "
                         f"(got {_show(t.range_update)})")
    if not 1.0 <= t.logit_headroom <= 16.0:
        raise ModelError(f"{where} 'logit_headroom' must be in [1, 16] (got "
                         f"{t.logit_headroom})")
    if t.fc_gradient not in FC_GRADIENTS:
        raise ModelError(f"{where} 'fc_gradient' must be one of {', '.join(FC_GRADIENTS)} "
                         f"(got {_show(t.fc_gradient)})")
    if t.epsilon not in EPSILON_MODES:
        raise ModelError(f"{where} 'epsilon' must be one of {', '.join(EPSILON_MODES)} "
                         f"(got {_show(t.epsilon)})")
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
            self.fail(f"{key!r} must be an integer (got {_show(v)})")
        if v < 1:
            self.fail(f"{key!r} must be >= 1 (got {_show(v)})")
        if v > MAX_DIM:
            self.fail(f"{key!r} must be at most {MAX_DIM:,} (got {_show(v)})")
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
            self.fail(f"{key!r} must be an integer or a list of two integers (got {_show(v)})")
        if v[0] < 1 or v[1] < 1:
            self.fail(f"{key!r} sizes must be >= 1 (got {_show(self.raw[key])})")
        if v[0] > MAX_DIM or v[1] > MAX_DIM:
            self.fail(f"{key!r} sizes must be at most {MAX_DIM:,} (got "
                      f"{_show(self.raw[key])})")
        return int(v[0]), int(v[1])

    def get_bool(self, key: str, default: bool) -> bool:
        v = self.raw.get(key, default)
        if not isinstance(v, bool):
            self.fail(f"{key!r} must be true or false (got {_show(v)})")
        return v

    def activation(self) -> bool:
        v = self.raw.get("activation", "none")
        if not isinstance(v, str) or v not in ACTIVATIONS:
            self.fail(f"'activation' must be one of {', '.join(ACTIVATIONS)} (got {_show(v)})")
        return v in ("relu", "relu6")

    def clip_hi(self) -> float:
        return RELU6 if self.raw.get("activation") == "relu6" else 0.0


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _parse_layer(raw: dict[str, Any], index: int, in_shape: Shape, src: str) -> LayerSpec:
    ltype = raw.get("type")
    given_name = raw.get("name")
    if _good_name(given_name):
        label = given_name
    elif _good_name(ltype):  # also an unknown type, for the message: 'dense1'
        label = f"{ltype}{index}"
    else:
        label = f"layer{index}"
    r = _LayerReader(raw, index, src, label)

    if "type" not in raw:
        r.fail(f"missing required key 'type' (one of {', '.join(LAYER_TYPES)})")
    if not isinstance(ltype, str) or ltype not in LAYER_TYPES:
        near = (difflib.get_close_matches(ltype, LAYER_TYPES, n=1, cutoff=0.6)
                if isinstance(ltype, str) and len(ltype) <= MAX_NAME else [])
        hint = f"; did you mean {near[0]!r}?" if near else ""
        r.fail(f"unknown layer type {_show(ltype)} (expected one of "
               f"{', '.join(LAYER_TYPES)}){hint}")
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
        r.fail(f"unknown key {_show(key)}{_did_you_mean(key, allowed)}")

    name = label
    if "name" in raw:
        if not _good_name(given_name):
            r.fail(f"'name' must be a string of letters, digits, '_', '-' or '.' starting with "
                   f"a letter or '_', at most {MAX_NAME} long (got {_show(given_name)})")
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
                         trainable=r.get_bool("trainable", True), bias=r.get_bool("bias", True),
                         clip_hi=r.clip_hi())
    if ltype == "fc":
        units = r.get_int("units")
        if H != 1 or W != 1:
            r.fail(f"fc input is {_fmt(in_shape)}, not 1x1xN: put a flatten before it")
        return LayerSpec(name=name, type=ltype, in_shape=in_shape, out_shape=(1, 1, units),
                         relu=r.activation(), trainable=r.get_bool("trainable", True),
                         bias=r.get_bool("bias", True), clip_hi=r.clip_hi())
    if ltype in POOL_TYPES:
        if raw.get("pool") == "global":
            pool = (H, W)
        elif isinstance(raw.get("pool"), str):
            r.fail(f"'pool' must be an integer, [ph, pw] or \"global\" (got "
                   f"{_show(raw['pool'])})")
        else:
            pool = r.get_pair("pool")
        if pool[0] > H or pool[1] > W:
            r.fail(f"pool {_fmt(pool)} is larger than its input {H}x{W}")
        return LayerSpec(name=name, type=ltype, in_shape=in_shape,
                         out_shape=(H // pool[0], W // pool[1], C), kernel=pool, stride=pool)
    if ltype == "add":
        if r.clip_hi():
            r.fail("an add takes activation \"relu\" or \"none\" (relu6 after an add is not "
                   "supported)")
        return LayerSpec(name=name, type=ltype, in_shape=in_shape, out_shape=in_shape,
                         relu=r.activation(), clip_hi=r.clip_hi())
    # flatten
    return LayerSpec(name=name, type=ltype, in_shape=in_shape, out_shape=(1, 1, H * W * C))


def _good_name(v: Any) -> bool:
    return isinstance(v, str) and len(v) <= MAX_NAME and bool(_NAME_RE.match(v))


def _check_size(layer: LayerSpec, index: int, src: str, params: int, macs: int,
                values: int) -> None:
    """A layer's output and the model's running totals against the limits."""
    where = f"{src}: layer {index} '{layer.name}'"
    if layer.out_size > MAX_TENSOR:
        raise ModelError(f"{where}: output {_fmt(layer.out_shape)} has {layer.out_size:,} "
                         f"values; mcusim accepts at most {MAX_TENSOR:,} per tensor "
                         f"({_WHY_TENSOR})")
    if values > MAX_ACTIVATIONS:
        raise ModelError(f"{where}: the input and the layer outputs up to here hold "
                         f"{values:,} values; mcusim accepts at most {MAX_ACTIVATIONS:,} "
                         f"({_WHY_ACTIVATIONS})")
    if params > MAX_PARAMS:
        raise ModelError(f"{where}: the model has {params:,} parameters up to here; mcusim "
                         f"accepts at most {MAX_PARAMS:,} ({_WHY_PARAMS})")
    if macs > MAX_MACS:
        raise ModelError(f"{where}: {macs:,} multiply-accumulates per forward pass up to "
                         f"here; mcusim accepts at most {MAX_MACS:,} ({_WHY_MACS})")


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
               f"(got {_show(r.raw['padding'])})")
    if any(x < 0 for x in v):
        r.fail(f"'padding' must be >= 0 (got {_show(r.raw['padding'])})")
    t, b, left, right = (int(x) for x in v)
    kh, kw = kernel
    if t >= kh or b >= kh or left >= kw or right >= kw:
        r.fail(f"'padding' {_show(r.raw['padding'])} must be smaller than the kernel {kh}x{kw}")
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
