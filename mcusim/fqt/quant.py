"""uint8 asymmetric per-tensor quantization and integer-only requantization.

The numpy twin of kernels/common/fqt_requantize.c and the parameter maths the host does
for the kernels (fqt-method.md, "Quantization").  Bit-exact with the kernels by
construction: the same int64 product, the same rounding offset, the same arithmetic shift.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import numpy as np

ROUND_NEAREST = 0
ROUND_FLOOR = 1
ROUNDING = {"nearest": ROUND_NEAREST, "floor": ROUND_FLOOR}


@dataclass(frozen=True)
class QuantParams:
    """Scale and zero point of one uint8 tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int

    @classmethod
    def from_range(cls, fmin: float, fmax: float) -> QuantParams:
        """s = (fmax - fmin)/255, z = round(-fmin/s) clamped to [0, 255]; fmin <= 0 <= fmax."""
        fmin = min(float(fmin), 0.0)
        fmax = max(float(fmax), 0.0)
        if fmax == fmin:
            fmax = fmin + 1e-8
        scale = (fmax - fmin) / 255.0
        zero = int(np.clip(round(-fmin / scale), 0, 255))
        return cls(float(np.float32(scale)), zero)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(multiplier, shift) with real ≈ multiplier * 2^(shift - 31), multiplier in [2^30, 2^31)."""
    if not real > 0 or not math.isfinite(real):
        raise ValueError(f"requantization multiplier must be positive and finite, got {real}")
    mant, exp = math.frexp(real)  # real = mant * 2^exp, mant in [0.5, 1)
    q = round(mant * (1 << 31))
    if q == 1 << 31:
        q //= 2
        exp += 1
    if not -31 <= exp <= 30:
        raise ValueError(f"requantization multiplier {real} is out of range")
    return int(q), int(exp)


def requantize(acc: np.ndarray | int, multiplier: int, shift: int,
               rounding: int = ROUND_NEAREST) -> np.ndarray:
    """R(M * acc): the twin of fqt_requantize (int64 product, rounding offset, >> 31-shift)."""
    prod = np.asarray(acc, dtype=np.int64) * np.int64(multiplier)
    total = 31 - shift
    if rounding == ROUND_NEAREST:
        prod = prod + (np.int64(1) << np.int64(total - 1))
    return (prod >> np.int64(total)).astype(np.int32)


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

    def pack(self) -> np.ndarray:
        """The struct as it lies in MCU memory: eight little-endian int32."""
        return np.array(astuple(self), dtype="<i4")
