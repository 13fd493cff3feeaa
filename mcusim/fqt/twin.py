"""The numpy twin: the same integer maths as the C kernels, bit for bit."""

from __future__ import annotations

import numpy as np

from mcusim.fqt.quant import LayerQuant, requantize


def dot_u8(a: np.ndarray, a_zero: int, b: np.ndarray, b_zero: int) -> int:
    """Twin of fqt_dot_u8: sum (a - a_zero)(b - b_zero) in int32."""
    return int(np.sum((a.astype(np.int32) - a_zero) * (b.astype(np.int32) - b_zero),
                      dtype=np.int32))


def fc_forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, q: LayerQuant) -> np.ndarray:
    """Twin of fqt_fc_forward.  x: (in,) uint8; w: (out, in) uint8; bias: (out,) int32."""
    acc = (w.astype(np.int32) - q.w_zero) @ (x.astype(np.int32) - q.x_zero)
    if bias is not None:
        acc = acc + bias.astype(np.int32)
    y = requantize(acc, q.multiplier, q.shift, q.rounding).astype(np.int64) + q.y_zero
    return np.clip(y, q.act_min, q.act_max).astype(np.uint8)
