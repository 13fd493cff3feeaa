"""The numpy twin of the graph kernels: residual Add (kernels/graph/fqt_add.c), the clipped
activation's derivative (kernels/graph/fqt_clip.c) and the MSE loss (kernels/loss/fqt_mse.c).

Same conventions as twin.py (which registers these in its KERNELS): each `fqt_*` function
takes a `Memory` and the C function's integer arguments (pointers are addresses) and writes
the same bytes as the compiled kernel; float32 bookkeeping repeats the C code one IEEE
operation at a time.

The Add follows TFLite's reference quantized ADD (tensorflow/lite/kernels/internal/reference/
add.h, AddElementwise; parameters as tensorflow/lite/kernels/add.cc prepares them) in our
uint8 conventions and with our R(.) (see kernels/fqt.h).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mcusim.fqt.quant import (
    ADD_DTYPE,
    ADD_LEFT_SHIFT,
    ADD_PARAMS_DTYPE,
    LOSS_DTYPE,
    QP_DTYPE,
    RANGE_DTYPE,
    ROUND_NEAREST,
    ROUND_STOCHASTIC,
    multiplier_of,
    requantize,
)
from mcusim.fqt.twin import KERNELS, Memory, _stats, clip_act_max, noise, quant_f, seqsum

F = np.float32
I32 = np.int32


def _wrap32(v: np.ndarray) -> np.ndarray:
    """int64 -> int32 with two's complement wrap-around (the C code's uint32 arithmetic)."""
    return np.asarray(v, dtype=np.int64).astype(I32)


def add_u8(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fqt_add_u8 on arrays: (y bytes, int32 accumulators) of uint8 a, b under the
    fqt_add_params_t record p."""
    ls = int(p["left_shift"])
    va = _wrap32((a.astype(np.int64) - int(p["a_zero"])) << ls)
    vb = _wrap32((b.astype(np.int64) - int(p["b_zero"])) << ls)
    ra = requantize(va, int(p["a_mult"]), int(p["a_shift"]), ROUND_NEAREST)
    rb = requantize(vb, int(p["b_mult"]), int(p["b_shift"]), ROUND_NEAREST)
    acc = _wrap32(ra.astype(np.int64) + rb)
    rounding = int(p["rounding"])
    nz = noise(int(p["seed"]), np.arange(acc.size)) if rounding == ROUND_STOCHASTIC else None
    v = requantize(acc, int(p["y_mult"]), int(p["y_shift"]), rounding, nz)
    v = _wrap32(v.astype(np.int64) + int(p["y_zero"]))
    y = np.clip(v, int(p["act_min"]), int(p["act_max"])).astype(np.uint8)
    return y, acc


def fqt_add_u8(mem: Memory, a: int, b: int, y: int, n: int, params: int, stats: int) -> None:
    p = mem.rec(params, ADD_PARAMS_DTYPE)
    out, acc = add_u8(mem.view(a, np.uint8, n), mem.view(b, np.uint8, n), p)
    _stats(acc, stats, mem)
    mem.view(y, np.uint8, n)[:] = out


def fqt_add_refresh(mem: Memory, add: int) -> None:
    t = mem.rec(add, ADD_DTYPE)
    ar, br = mem.rec(int(t["a"]), RANGE_DTYPE), mem.rec(int(t["b"]), RANGE_DTYPE)
    yr, p = mem.rec(int(t["y"]), RANGE_DTYPE), mem.rec(int(t["p"]), ADD_PARAMS_DTYPE)
    sa, sb, sy = F(ar["scale"]), F(br["scale"]), F(yr["scale"])
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        sm = sa if sa > sb else sb
        s2 = sm + sm
        ma = sa / s2
        mb = sb / s2
        unit = s2 / F(1 << ADD_LEFT_SHIFT)
        my = unit / sy
    yr["acc_scale"] = unit
    yz = int(yr["zero"])
    p["a_zero"], p["b_zero"], p["y_zero"] = int(ar["zero"]), int(br["zero"]), yz
    p["a_mult"], p["a_shift"] = multiplier_of(ma)
    p["b_mult"], p["b_shift"] = multiplier_of(mb)
    p["y_mult"], p["y_shift"] = multiplier_of(my)
    p["act_min"] = yz if int(t["relu"]) else 0
    p["act_max"] = clip_act_max(F(t["clip_hi"]), sy, yz)
    p["left_shift"] = ADD_LEFT_SHIFT


def fqt_clip_backward(mem: Memory, y: int, e: int, n: int, q: int, er: int) -> None:
    qp = mem.rec(q, QP_DTYPE)
    ez = int(mem.rec(er, RANGE_DTYPE)["zero"])
    yv = mem.view(y, np.uint8, n).astype(I32)
    ev = mem.view(e, np.uint8, n)
    ev[(yv <= int(qp["act_min"])) | (yv >= int(qp["act_max"]))] = ez


def fqt_mse(mem: Memory, y: int, err: int, loss: int) -> None:
    lr = mem.rec(loss, LOSS_DTYPE)
    n = int(lr["n"])
    yrng = mem.rec(int(lr["logits"]), RANGE_DTYPE)
    er = mem.rec(int(lr["err"]), RANGE_DTYPE)
    if n <= 0:
        er["real_min"], er["real_max"] = F(0), F(0)
        lr["p_label"], lr["loss"], lr["argmax"] = F(0), F(0), 0
        return
    trng = mem.rec(int(lr["target_r"]), RANGE_DTYPE)
    q = mem.view(y, np.uint8, n).astype(I32)
    tq = mem.view(int(lr["target"]), np.uint8, n).astype(I32)
    yv = (q - int(yrng["zero"])).astype(F) * F(yrng["scale"])
    tv = (tq - int(trng["zero"])).astype(F) * F(trng["scale"])
    d = yv - tv
    total = seqsum(d * d)
    g = d * F(2)
    g = g / F(n)
    rounding = int(lr["rounding"])
    nz = noise(int(lr["seed"]), np.arange(n)) if rounding == ROUND_STOCHASTIC else None
    mem.view(err, np.uint8, n)[:] = quant_f(g, F(er["scale"]), int(er["zero"]), rounding, nz)
    er["real_min"] = min(F(0), F(g.min()))
    er["real_max"] = max(F(0), F(g.max()))
    lr["p_label"] = F(0)
    lr["loss"] = F(total) / F(n)
    lr["argmax"] = int(np.argmax(q))


def fqt_copy_u8(mem: Memory, src: int, dst: int, n: int) -> None:
    mem.view(dst, np.uint8, n)[:] = mem.view(src, np.uint8, n)


GRAPH_KERNELS: dict[str, Callable[..., object]] = {
    "fqt_copy_u8": fqt_copy_u8,
    "fqt_add_u8": fqt_add_u8,
    "fqt_add_refresh": fqt_add_refresh,
    "fqt_clip_backward": fqt_clip_backward,
    "fqt_mse": fqt_mse,
}
# twin.py registers these at its end; when this module is imported before twin.py, twin.py
# finishes first (with this module still partial) and the registration happens here
KERNELS.update(GRAPH_KERNELS)
