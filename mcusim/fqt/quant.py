"""uint8 asymmetric per-tensor quantization: the host side and the kernels' record layouts.

Integer requantization (`requantize`) and the float32 helpers of the kernels are repeated
bit for bit in numpy (see twin.py); the structured dtypes here are the C structs of
kernels/fqt.h, field for field, so one byte buffer means the same on the MCU and in the twin.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import numpy as np

ROUND_NEAREST = 0
ROUND_FLOOR = 1
ROUND_STOCHASTIC = 2
ROUNDING = {"nearest": ROUND_NEAREST, "floor": ROUND_FLOOR, "stochastic": ROUND_STOCHASTIC}

RANGE_FIXED, RANGE_ACC, RANGE_REAL = 0, 1, 2

F = np.float32

# fqt_quant_params_t (11 words); ch_mult / ch_shift: addresses of out_c int32 per-output-
# channel multipliers and shifts of the forward kernels, 0 (NULL, a zeroed record) = per tensor
QP_DTYPE = np.dtype([("x_zero", "<i4"), ("w_zero", "<i4"), ("y_zero", "<i4"),
                     ("multiplier", "<i4"), ("shift", "<i4"), ("act_min", "<i4"),
                     ("act_max", "<i4"), ("rounding", "<i4"), ("seed", "<u4"),
                     ("ch_mult", "<u4"), ("ch_shift", "<u4")])
# fqt_shape_t
SHAPE_DTYPE = np.dtype([(n, "<i4") for n in (
    "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h", "stride_w",
    "pad_top", "pad_left")])
# fqt_range_t
RANGE_DTYPE = np.dtype([("fmin", "<f4"), ("fmax", "<f4"), ("alpha", "<f4"), ("scale", "<f4"),
                        ("zero", "<i4"), ("relu", "<i4"), ("acc_min", "<i4"),
                        ("acc_max", "<i4"), ("acc_scale", "<f4"), ("real_min", "<f4"),
                        ("real_max", "<f4"), ("mode", "<i4"), ("derive", "<f4"),
                        ("headroom", "<f4")])
# fqt_loss_t
LOSS_DTYPE = np.dtype([("n", "<i4"), ("label", "<i4"), ("logits", "<u4"), ("err", "<u4"),
                       ("rounding", "<i4"), ("seed", "<u4"), ("p_label", "<f4"),
                       ("loss", "<f4"), ("argmax", "<i4"),
                       ("target", "<u4"), ("target_r", "<u4")])  # fqt_mse only
# fqt_select_t (14 words): kept = address of N uint16 (the kept structures, ascending), y / yr
# = the ReLU mask's output and range (0: none), touched = address of N bytes (0: none)
SELECT_DTYPE = np.dtype([("n_struct", "<i4"), ("n_pix", "<i4"), ("er", "<u4"),
                         ("lambda_min", "<f4"), ("lambda_max", "<f4"), ("eps_mode", "<i4"),
                         ("eps", "<f4"), ("max_mean", "<f4"), ("k", "<i4"), ("mag", "<u4"),
                         ("kept", "<u4"), ("y", "<u4"), ("yr", "<u4"), ("touched", "<u4")])
# fqt_layer_t
LAYER_DTYPE = np.dtype([(n, "<u4") for n in (
    "x", "w", "y", "e_out", "e_in", "fwd", "bwd_err", "bwd_w", "bias", "bias_q")]
    + [("n_bias", "<i4"), ("relu", "<i4"), ("clip_hi", "<f4")])
# fqt_add_params_t (residual Add)
ADD_PARAMS_DTYPE = np.dtype([(n, "<i4") for n in (
    "a_zero", "b_zero", "y_zero", "a_mult", "a_shift", "b_mult", "b_shift", "y_mult",
    "y_shift", "act_min", "act_max", "left_shift", "rounding")] + [("seed", "<u4")])
# fqt_add_t (its refresh)
ADD_DTYPE = np.dtype([(n, "<u4") for n in ("a", "b", "y", "p")]
                     + [("relu", "<i4"), ("clip_hi", "<f4")])
ADD_LEFT_SHIFT = 20  # FQT_ADD_LEFT_SHIFT
# fqt_update_t
# touched: address of N bytes (0: every structure), lut: 256 floats of scratch (0: none)
UPDATE_DTYPE = np.dtype([(n, "<u4") for n in (
    "w", "gw", "gb", "bias", "mu", "sigma", "bias_stats", "step", "wr")]
    + [("n_struct", "<i4"), ("struct_size", "<i4"), ("lr", "<f4"), ("alpha_norm", "<f4"),
       ("rounding", "<i4"), ("seed", "<u4"), ("touched", "<u4"), ("lut", "<u4"),
       ("pairs", "<u4"), ("row", "<u4")])
# fqt_pairs_t (an FC layer's gradient kept as the batch's input/error pairs)
PAIRS_DTYPE = np.dtype([("x", "<u4"), ("e", "<u4"), ("zeros", "<u4"), ("in_features", "<i4"),
                        ("out_features", "<i4"), ("count", "<i4"), ("capacity", "<i4")])


def record(dtype: np.dtype, **fields: object) -> np.ndarray:
    """A zeroed 0-d structured array with the given fields set."""
    r = np.zeros((), dtype=dtype)
    for k, v in fields.items():
        r[k] = v
    return r


def range_params(fmin: float, fmax: float) -> tuple[np.float32, int]:
    """(scale, zero) of a real range, as fqt_range_params computes them in float32."""
    lo = F(fmin) if F(fmin) < 0 else F(0)
    hi = F(fmax) if F(fmax) > 0 else F(0)
    width = hi - lo
    if not width > F(2.0 ** -20):
        hi = lo + F(2.0 ** -20)
        width = hi - lo
    s = width / F(255)
    t = F(0) - lo
    t = t / s
    t = t + F(0.5)
    # clamped in float first, as the kernel does (NaN -> 0: a diverged range)
    return s, 255 if t >= F(255) else int(t) if t > F(0) else 0


def range_record(fmin: float, fmax: float, *, alpha: float = 0.0, mode: int = RANGE_FIXED,
                 relu: bool = False, derive: float = 1.0, headroom: float = 1.0
                 ) -> np.ndarray:
    """A fqt_range_t initialised to [fmin, fmax] with its scale and zero point."""
    s, z = range_params(fmin, fmax)
    return record(RANGE_DTYPE, fmin=F(min(fmin, 0.0)), fmax=F(max(fmax, 0.0)), alpha=alpha,
                  scale=s, zero=z, relu=int(relu), mode=mode, derive=derive,
                  headroom=headroom,
                  acc_min=np.iinfo(np.int32).max, acc_max=np.iinfo(np.int32).min)


@dataclass(frozen=True)
class QuantParams:
    """Scale and zero point of one uint8 tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int

    @classmethod
    def from_range(cls, fmin: float, fmax: float) -> QuantParams:
        """As the kernels derive them (fqt_range_params, float32): fmin <= 0 <= fmax."""
        s, z = range_params(fmin, fmax)
        return cls(float(s), z)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Round to nearest (float32 maths as fqt_quantize_f), saturating to [0, 255]."""
        t = np.asarray(x, dtype=F) / F(self.scale)
        t = t + F(self.zero_point)
        t = t + F(0.5)
        return np.where(~(t >= 0), 0, np.where(t >= 255, 255, np.trunc(t))).astype(np.uint8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.int32) - self.zero_point).astype(F) * F(self.scale)


def multiplier_of(m: np.float32) -> tuple[int, int]:
    """fqt_multiplier: (multiplier, shift) of a float32 M, exact (its 24-bit mantissa << 7);
    zero/subnormal gives the smallest multiplier, out-of-range values saturate."""
    bits = int(np.array(m, dtype=F).view(np.uint32))
    e = (bits >> 23) & 0xFF
    if e == 0:
        return 1 << 30, -31
    sh = e - 126
    mant = ((bits & 0x7FFFFF) | 0x800000) << 7
    if sh > 30:
        return 0x7FFFFFFF, 30
    if sh < -31:
        return 1 << 30, -31
    return mant, sh


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(multiplier, shift) with real = multiplier * 2^(shift - 31), multiplier in [2^30, 2^31),
    exactly as fqt_multiplier derives them from the float32 value of `real`."""
    m = F(real)
    if not m > 0 or not math.isfinite(float(m)):
        raise ValueError(f"requantization multiplier must be positive and finite, got {real}")
    return multiplier_of(m)


def requantize(acc: np.ndarray | int, multiplier: np.ndarray | int, shift: np.ndarray | int,
               rounding: int = ROUND_NEAREST, noise: np.ndarray | int | None = None
               ) -> np.ndarray:
    """R(M * acc): the twin of fqt_requantize (int64 product, rounding offset, >> 31-shift).
    multiplier and shift may be arrays broadcasting against acc (one M per element:
    per-channel requantization)."""
    if np.ndim(multiplier) or np.ndim(shift):
        return _requantize_each(acc, multiplier, shift, rounding, noise)
    prod = np.asarray(acc, dtype=np.int64) * np.int64(multiplier)
    total = 31 - shift
    if rounding == ROUND_NEAREST:
        prod = prod + (np.int64(1) << np.int64(total - 1))
    elif rounding == ROUND_STOCHASTIC:
        n = np.asarray(0 if noise is None else noise, dtype=np.int64)
        prod = prod + (n >> (32 - total) if total <= 32 else n << (total - 32))
    return (prod >> np.int64(total)).astype(np.int32)


def _requantize_each(acc: np.ndarray | int, multiplier: np.ndarray | int,
                     shift: np.ndarray | int, rounding: int,
                     noise: np.ndarray | int | None) -> np.ndarray:
    """requantize with a multiplier and shift per element (arrays, broadcast)."""
    prod = np.asarray(acc, dtype=np.int64) * np.asarray(multiplier, dtype=np.int64)
    total = 31 - np.asarray(shift, dtype=np.int64)
    if rounding == ROUND_NEAREST:
        prod = prod + (np.int64(1) << (total - 1))
    elif rounding == ROUND_STOCHASTIC:
        n = np.asarray(0 if noise is None else noise, dtype=np.int64)
        # both alignments with in-range shift counts, then pick (total <= 32: n >> (32 - t))
        down = n >> np.clip(32 - total, 0, 63)
        up = n << np.clip(total - 32, 0, 63)
        prod = prod + np.where(total <= 32, down, up)
    return (prod >> total).astype(np.int32)


@dataclass(frozen=True)
class LayerQuant:
    """The kernels' fqt_quant_params_t (fqt.h), field for field."""

    x_zero: int
    w_zero: int
    y_zero: int
    multiplier: int
    shift: int
    act_min: int = 0
    act_max: int = 255
    rounding: int = ROUND_NEAREST
    seed: int = 0
    ch_mult: int = 0   # address of per-channel multipliers (0: per tensor)
    ch_shift: int = 0  # address of per-channel shifts

    def pack(self) -> np.ndarray:
        """The struct as it lies in MCU memory."""
        return self.record()

    def record(self) -> np.ndarray:
        values = astuple(self)
        return record(QP_DTYPE, **dict(zip(QP_DTYPE.names, values, strict=True)))


def quantize_inputs(x: np.ndarray, input_range: tuple[float, float] = (0.0, 1.0)
                    ) -> np.ndarray:
    """Real inputs -> uint8 with the model's input range (the "input.r" record: scale and
    zero point of range_params), nearest; one row per sample.  (0, 1): scale 1/255, zero 0."""
    x = np.asarray(x, np.float64)
    if tuple(input_range) == (0.0, 1.0):
        q = np.clip(np.rint(x * 255.0), 0, 255)
    else:
        s, z = range_params(F(input_range[0]), F(input_range[1]))
        q = np.clip(np.rint(x / float(s)) + z, 0, 255)
    q = q.astype(np.uint8)
    return q.reshape(len(q), -1)
