"""The numpy twin: every kernel of kernels/fqt.h, bit for bit, over a byte-addressed memory.

Each `fqt_*` function here takes a `Memory` and the same integer arguments as the C
function (pointers are addresses), reads and writes the same bytes, and so can be checked
against the compiled kernel running in Unicorn byte for byte.  Integer maths is exact in
numpy; float32 bookkeeping repeats the C code one IEEE operation at a time (numpy float32
arithmetic is IEEE single precision, and the kernels are built with -ffp-contract=off).
Sums whose order matters are taken in the C order (np.cumsum is sequential).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mcusim.fqt.quant import (
    LAYER_DTYPE,
    LOSS_DTYPE,
    PAIRS_DTYPE,
    QP_DTYPE,
    RANGE_ACC,
    RANGE_DTYPE,
    RANGE_REAL,
    ROUND_NEAREST,
    ROUND_STOCHASTIC,
    SELECT_DTYPE,
    SHAPE_DTYPE,
    UPDATE_DTYPE,
    LayerQuant,
    multiplier_of,
    range_params,
    requantize,
)

F = np.float32
I32 = np.int32
GOLDEN = 0x9E3779B9
_M32 = 0xFFFFFFFF


class Memory:
    """Flat little-endian memory regions (base, bytearray) the twin kernels work on."""

    def __init__(self, regions: list[tuple[int, int]]) -> None:
        self.regions = [(base, bytearray(size)) for base, size in regions]

    def _locate(self, addr: int, nbytes: int) -> tuple[bytearray, int]:
        for base, buf in self.regions:
            if base <= addr and addr + nbytes <= base + len(buf):
                return buf, addr - base
        raise IndexError(f"twin memory: 0x{addr:08x}+{nbytes} is outside every region")

    def view(self, addr: int, dtype: np.dtype | str | type, count: int = 1) -> np.ndarray:
        """A writable view of `count` items of `dtype` at `addr`."""
        dt = np.dtype(dtype)
        buf, off = self._locate(addr, dt.itemsize * count)
        return np.frombuffer(buf, dtype=dt, count=count, offset=off)

    def rec(self, addr: int, dtype: np.dtype) -> np.ndarray:
        """A writable 0-d view of one struct."""
        return self.view(addr, dtype, 1)[0:1].reshape(())

    def write(self, addr: int, data: bytes) -> None:
        buf, off = self._locate(addr, len(data))
        buf[off:off + len(data)] = data

    def read(self, addr: int, nbytes: int) -> bytes:
        buf, off = self._locate(addr, nbytes)
        return bytes(buf[off:off + nbytes])


# ---------------------------------------------------------------------------- arithmetic

def hash32(x: np.ndarray) -> np.ndarray:
    """fqt_hash32 (lowbias32), vectorized over uint32."""
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):  # uint32 wrap-around is the point
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
        return x ^ (x >> np.uint32(16))


def noise(seed: int, index: np.ndarray) -> np.ndarray:
    """Element noise: fqt_hash32(seed + index * 0x9E3779B9) in uint32 arithmetic."""
    idx = np.asarray(index, dtype=np.uint64)
    return hash32(((np.uint64(seed) + idx * np.uint64(GOLDEN)) & np.uint64(_M32))
                  .astype(np.uint32))


def out_u8(acc: np.ndarray, q: np.ndarray | LayerQuant, index: np.ndarray,
           mult: np.ndarray | None = None, shift: np.ndarray | None = None) -> np.ndarray:
    """clamp(R(M acc) + y_zero, act_min, act_max) per element (fqt_out_u8); with `mult` and
    `shift` (int arrays broadcasting against acc) each element's own M (fqt_out_u8_ch)."""
    if isinstance(q, LayerQuant):
        q = q.record()
    rounding = int(q["rounding"])
    nz = noise(int(q["seed"]), index) if rounding == ROUND_STOCHASTIC else None
    if mult is None:
        mult, shift = int(q["multiplier"]), int(q["shift"])
    v = requantize(acc, mult, shift, rounding, nz).astype(np.int64)
    v = v + int(q["y_zero"])
    return np.clip(v, int(q["act_min"]), int(q["act_max"])).astype(np.uint8)


def round_u(rounding: int, nz: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if rounding == ROUND_NEAREST:
        return np.full(shape, F(0.5), dtype=F)
    if rounding == ROUND_STOCHASTIC:
        return (nz >> np.uint32(8)).astype(I32).astype(F) * F(2.0 ** -24)
    return np.zeros(shape, dtype=F)


def quant_f(v: np.ndarray, s: np.float32, z: int, rounding: int,
            nz: np.ndarray | None = None) -> np.ndarray:
    """fqt_quant_f: clamp(trunc(v / s + z + u), 0, 255), float32 op by op."""
    v = np.asarray(v, dtype=F)
    return _quant_t(v / F(s), z, rounding, nz)


def quant_inv(v: np.ndarray, inv_s: np.float32, z: int, rounding: int,
              nz: np.ndarray | None = None) -> np.ndarray:
    """fqt_quant_inv: as quant_f with the scale's reciprocal (a multiply, not a divide)."""
    v = np.asarray(v, dtype=F)
    return _quant_t(v * F(inv_s), z, rounding, nz)


def _quant_t(t: np.ndarray, z: int, rounding: int, nz: np.ndarray | None) -> np.ndarray:
    """fqt_quant_t: clamp(trunc(t + z + u), 0, 255) of the scaled value t."""
    t = t + F(z)
    t = t + round_u(rounding, nz, t.shape)
    with np.errstate(invalid="ignore"):
        return np.where(~(t >= F(0)), 0, np.where(t >= F(255), 255, np.trunc(t))) \
            .astype(np.uint8)


def sqrtf(x: np.ndarray) -> np.ndarray:
    """Correctly rounded float32 square root (VSQRT, or the M0+ integer root)."""
    x = np.asarray(x, dtype=F)
    return np.sqrt(np.maximum(x, F(0)))


def expf(x: np.ndarray) -> np.ndarray:
    """fqt_expf, op by op."""
    x = np.asarray(x, dtype=F)
    small = x < F(-87.0)
    x = np.where(x > F(88.0), F(88.0), x)
    t = x * F(1.44269502)
    t = t + np.where(t >= F(0), F(0.5), F(-0.5))
    k = t.astype(I32)
    kf = k.astype(F)
    hi = kf * F(0.693145752)
    lo = kf * F(1.42860677e-06)
    r = x - hi
    r = r - lo
    p = np.full(x.shape, F(8.33333333e-3), dtype=F)
    for c in (4.16666667e-2, 1.66666667e-1, 0.5, 1.0, 1.0):
        p = p * r
        p = p + F(c)
    kk = np.where(small, 0, k) + 127
    scale = (kk.astype(np.uint32) << np.uint32(23)).view(F)
    return np.where(small, F(0), p * scale).astype(F)


def logf(x: np.ndarray) -> np.ndarray:
    """fqt_logf, op by op."""
    x = np.asarray(x, dtype=F)
    x = np.where(~(x >= F(1.17549435e-38)), F(1.17549435e-38), x).astype(F)
    b = x.view(np.uint32)
    e = (b >> np.uint32(23)).astype(I32) - 127
    m = ((b & np.uint32(0x7FFFFF)) | np.uint32(0x3F800000)).view(F)
    big = m > F(1.41421354)
    m = np.where(big, m * F(0.5), m)
    e = e + big.astype(I32)
    f = m - F(1.0)
    d = f + F(2.0)
    s = f / d
    s2 = s * s
    p = np.full(x.shape, F(1.11111111e-1), dtype=F)
    for c in (1.42857143e-1, 2.0e-1, 3.33333333e-1, 1.0):
        p = p * s2
        p = p + F(c)
    p = p * s
    p = p + p
    r = e.astype(F) * F(0.693147182)
    return (r + p).astype(F)


def seqsum(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """float32 sum in index order (as a C loop adds), along `axis`."""
    a = np.asarray(a, dtype=F)
    if a.shape[axis] == 0:
        return np.zeros(np.delete(a.shape, axis), dtype=F)
    return np.take(np.cumsum(a, axis=axis, dtype=F), -1, axis=axis)


def _stats(acc: np.ndarray, stats_addr: int, mem: Memory) -> None:
    if stats_addr:
        st = mem.view(stats_addr, "<i4", 2)
        if acc.size:
            st[0], st[1] = int(acc.min()), int(acc.max())
        else:
            st[0], st[1] = np.iinfo(I32).max, np.iinfo(I32).min


def _qp(mem: Memory, addr: int) -> np.ndarray:
    return mem.rec(addr, QP_DTYPE)


def _out_ch(mem: Memory, qp: np.ndarray, acc: np.ndarray, n_ch: int) -> np.ndarray:
    """out_u8 of a forward kernel's accumulators, channels last (acc.size = pixels * n_ch):
    per-channel multipliers and shifts from qp's ch_mult / ch_shift arrays when set
    (fqt_out_u8_ch), else the tensor's.  Noise index: the flat output index."""
    index = np.arange(acc.size)
    if not int(qp["ch_mult"]) or acc.size == 0:
        return out_u8(acc, qp, index)
    mult = mem.view(int(qp["ch_mult"]), "<i4", n_ch).astype(np.int64)
    shift = mem.view(int(qp["ch_shift"]), "<i4", n_ch).astype(np.int64)
    return out_u8(acc.reshape(-1, n_ch), qp, index.reshape(-1, n_ch), mult, shift).reshape(-1)


def _shape(mem: Memory, addr: int) -> dict[str, int]:
    r = mem.rec(addr, SHAPE_DTYPE)
    return {k: int(r[k]) for k in SHAPE_DTYPE.names}


# ---------------------------------------------------------------------------- im2col helpers

def _padded(x: np.ndarray, s: dict[str, int], pad_value: int) -> np.ndarray:
    """x (H, W, C) padded so that every window of the output grid is in range."""
    hp = max(s["in_h"] + s["pad_top"], (s["out_h"] - 1) * s["stride_h"] + s["k_h"])
    wp = max(s["in_w"] + s["pad_left"], (s["out_w"] - 1) * s["stride_w"] + s["k_w"])
    out = np.full((hp, wp, x.shape[2]), pad_value, dtype=x.dtype)
    out[s["pad_top"]:s["pad_top"] + s["in_h"], s["pad_left"]:s["pad_left"] + s["in_w"]] = x
    return out


def _windows(xp: np.ndarray, s: dict[str, int]) -> np.ndarray:
    """(out_h, out_w, k_h, k_w, C) view of the padded input's windows."""
    sh, sw = s["stride_h"], s["stride_w"]
    st = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, shape=(s["out_h"], s["out_w"], s["k_h"], s["k_w"], xp.shape[2]),
        strides=(st[0] * sh, st[1] * sw, st[0], st[1], st[2]), writeable=False)


def _scatter(cols: np.ndarray, s: dict[str, int], c: int) -> np.ndarray:
    """Sum window contributions cols (out_h, out_w, k_h, k_w, C) back onto the input grid."""
    hp = max(s["in_h"] + s["pad_top"], (s["out_h"] - 1) * s["stride_h"] + s["k_h"])
    wp = max(s["in_w"] + s["pad_left"], (s["out_w"] - 1) * s["stride_w"] + s["k_w"])
    acc = np.zeros((hp, wp, c), dtype=np.int64)
    sh, sw, oh, ow = s["stride_h"], s["stride_w"], s["out_h"], s["out_w"]
    for kh in range(s["k_h"]):
        for kw in range(s["k_w"]):
            acc[kh:kh + sh * (oh - 1) + 1:sh, kw:kw + sw * (ow - 1) + 1:sw] += cols[:, :, kh, kw]
    return acc[s["pad_top"]:s["pad_top"] + s["in_h"], s["pad_left"]:s["pad_left"] + s["in_w"]]


# ---------------------------------------------------------------------------- kernels

def fqt_requantize(mem: Memory, acc: int, multiplier: int, shift: int, rounding: int,
                   nz: int) -> int:
    return int(requantize(np.int32(acc), multiplier, shift, rounding, nz))


def fqt_dot_u8(mem: Memory, a: int, a_zero: int, b: int, b_zero: int, n: int) -> int:
    va = mem.view(a, np.uint8, n).astype(I32) - a_zero
    vb = mem.view(b, np.uint8, n).astype(I32) - b_zero
    return int(np.sum(va * vb, dtype=I32))


def fqt_rowacc_u8(mem: Memory, acc: int, row: int, row_zero: int, scale: int, n: int) -> None:
    a = mem.view(acc, "<i4", n)
    a += (scale * (mem.view(row, np.uint8, n).astype(I32) - row_zero)).astype(I32)


def fqt_fc_forward(mem: Memory, x: int, w: int, bias: int, y: int, n_in: int, n_out: int,
                   q: int, stats: int) -> None:
    qp = _qp(mem, q)
    xv = mem.view(x, np.uint8, n_in).astype(I32) - int(qp["x_zero"])
    wv = mem.view(w, np.uint8, n_in * n_out).reshape(n_out, n_in).astype(I32) - int(qp["w_zero"])
    acc = (wv @ xv).astype(I32)
    if bias:
        acc = acc + mem.view(bias, "<i4", n_out)
    _stats(acc, stats, mem)
    mem.view(y, np.uint8, n_out)[:] = _out_ch(mem, qp, acc, n_out)


def _conv_acc(mem: Memory, x: int, w: int, bias: int, s: dict[str, int], qp: np.ndarray
              ) -> np.ndarray:
    cin, cout = s["in_c"], s["out_c"]
    xv = mem.view(x, np.uint8, s["in_h"] * s["in_w"] * cin).reshape(s["in_h"], s["in_w"], cin)
    win = _windows(_padded(xv, s, int(qp["x_zero"])), s)
    K = s["k_h"] * s["k_w"] * cin
    patches = win.reshape(-1, K).astype(I32) - int(qp["x_zero"])
    wv = mem.view(w, np.uint8, cout * K).reshape(cout, K).astype(I32) - int(qp["w_zero"])
    acc = (patches @ wv.T).astype(I32)
    if bias:
        acc = acc + mem.view(bias, "<i4", cout)
    return acc.reshape(-1)


def conv2d_forward_scratch(k_h: int, k_w: int, in_c: int, out_c: int) -> int:
    """Bytes of fqt_conv2d_forward's `patch` scratch (fqt.h): two int16 patches of Kp = K
    rounded up to even values, and for in_c == 1 the out_c repacked filters of Kp values."""
    K = k_h * k_w * in_c
    Kp = (K + 1) & ~1
    return 4 * Kp + (2 * Kp * out_c if in_c == 1 else 0)


def fqt_conv2d_forward(mem: Memory, x: int, w: int, bias: int, y: int, shape: int, q: int,
                       patch: int, stats: int) -> None:
    s, qp = _shape(mem, shape), _qp(mem, q)
    acc = _conv_acc(mem, x, w, bias, s, qp)
    _stats(acc, stats, mem)
    mem.view(y, np.uint8, acc.size)[:] = _out_ch(mem, qp, acc, s["out_c"])
    if not patch:
        return
    # What the kernel leaves in its scratch (int16 values; fqt_conv2d_forward.c): two
    # patch slots, p = x - x_zero (padding 0), of the last pixel pair -- an odd last pixel in
    # slot 0 alone, slot 1 then keeping the pixel before it -- interleaved word by word:
    # position h of slot t at 4 (h >> 1) + (h & 1) + 2 t.  in_c > 1: groups of 4 below
    # K & ~3 at positions 0 2 1 3, an odd K's pad not written; in_c == 1: in order, pads 0,
    # then from 2 Kp the filters w - w_zero padded to Kp, pairs interleaved word by word, an
    # odd last filter in order.
    cin, cout = s["in_c"], s["out_c"]
    K = s["k_h"] * s["k_w"] * cin
    Kp = (K + 1) & ~1
    xz = int(qp["x_zero"])
    xv = mem.view(x, np.uint8, s["in_h"] * s["in_w"] * cin).reshape(s["in_h"], s["in_w"], cin)
    win = _windows(_padded(xv, s, xz), s).reshape(-1, K).astype(I32) - xz
    npix = win.shape[0]
    k = np.arange(K)
    h = k if cin == 1 else np.where(k < (K & ~3), (k & ~3) | ((k & 1) << 1) | ((k >> 1) & 1), k)
    at = 4 * (h >> 1) + (h & 1)
    P = mem.view(patch, "<i2", 2 * Kp + (cout * Kp if cin == 1 else 0))
    if cin == 1:
        wv = mem.view(w, np.uint8, cout * K).reshape(cout, K).astype(I32) - int(qp["w_zero"])
        kk = np.arange(Kp)
        for co in range(cout):
            m = co & 1
            wq = np.zeros(Kp, I32)
            wq[:K] = wv[co]
            if m or co + 1 < cout:
                P[2 * Kp + (co - m) * Kp + 4 * (kk >> 1) + 2 * m + (kk & 1)] = wq
            else:
                P[2 * Kp + co * Kp + kk] = wq
        if K & 1:
            P[2 * K - 1] = P[2 * K + 1] = 0
    last = [(0, npix - 1), (1, npix - 2)] if npix & 1 else [(0, npix - 2), (1, npix - 1)]
    for slot, pix in last:
        if pix >= 0:
            P[at + 2 * slot] = win[pix]


def fqt_dwconv2d_forward(mem: Memory, x: int, w: int, bias: int, y: int, shape: int, q: int,
                         stats: int) -> None:
    s, qp = _shape(mem, shape), _qp(mem, q)
    C = s["in_c"]
    xv = mem.view(x, np.uint8, s["in_h"] * s["in_w"] * C).reshape(s["in_h"], s["in_w"], C)
    win = _windows(_padded(xv, s, int(qp["x_zero"])), s).astype(I32) - int(qp["x_zero"])
    wv = mem.view(w, np.uint8, C * s["k_h"] * s["k_w"]).reshape(C, s["k_h"], s["k_w"])
    wv = wv.astype(I32) - int(qp["w_zero"])
    acc = np.einsum("hwijc,cij->hwc", win, wv).astype(I32)
    if bias:
        acc = acc + mem.view(bias, "<i4", C)
    acc = acc.reshape(-1)
    _stats(acc, stats, mem)
    mem.view(y, np.uint8, acc.size)[:] = _out_ch(mem, qp, acc, C)


def _pool_windows(mem: Memory, x: int, s: dict[str, int]) -> np.ndarray:
    C = s["in_c"]
    xv = mem.view(x, np.uint8, s["in_h"] * s["in_w"] * C).reshape(s["in_h"], s["in_w"], C)
    return _windows(xv, s)


def fqt_maxpool_forward(mem: Memory, x: int, y: int, shape: int) -> None:
    s = _shape(mem, shape)
    m = _pool_windows(mem, x, s).max(axis=(2, 3))
    mem.view(y, np.uint8, m.size)[:] = m.reshape(-1)


def fqt_avgpool_forward(mem: Memory, x: int, y: int, shape: int, q: int) -> None:
    s, qp = _shape(mem, shape), _qp(mem, q)
    acc = (_pool_windows(mem, x, s).astype(I32) - int(qp["x_zero"])).sum(axis=(2, 3))
    acc = acc.reshape(-1).astype(I32)
    mem.view(y, np.uint8, acc.size)[:] = out_u8(acc, qp, np.arange(acc.size))


def fqt_maxpool_backward(mem: Memory, x: int, e_out: int, e_in: int, shape: int,
                         er: int) -> None:
    s = _shape(mem, shape)
    C, oh, ow, kh, kw = s["in_c"], s["out_h"], s["out_w"], s["k_h"], s["k_w"]
    ein = mem.view(e_in, np.uint8, s["in_h"] * s["in_w"] * C).reshape(s["in_h"], s["in_w"], C)
    ein[:] = int(mem.rec(er, RANGE_DTYPE)["zero"])
    win = _pool_windows(mem, x, s).reshape(oh, ow, kh * kw, C)
    first = win.argmax(axis=2)  # first maximum in row-major window order, as the kernel
    eo = mem.view(e_out, np.uint8, oh * ow * C).reshape(oh, ow, C)
    gh, gw_, gc = np.meshgrid(np.arange(oh), np.arange(ow), np.arange(C), indexing="ij")
    ih = gh * s["stride_h"] + first // kw
    iw = gw_ * s["stride_w"] + first % kw
    ein[ih, iw, gc] = eo


def fqt_avgpool_backward(mem: Memory, e_out: int, e_in: int, shape: int, er: int) -> None:
    s = _shape(mem, shape)
    C, oh, ow = s["in_c"], s["out_h"], s["out_w"]
    ein = mem.view(e_in, np.uint8, s["in_h"] * s["in_w"] * C).reshape(s["in_h"], s["in_w"], C)
    ein[:] = int(mem.rec(er, RANGE_DTYPE)["zero"])
    eo = mem.view(e_out, np.uint8, oh * ow * C).reshape(oh, ow, C)
    for kh in range(s["k_h"]):
        for kw in range(s["k_w"]):
            ein[kh:kh + s["stride_h"] * (oh - 1) + 1:s["stride_h"],
                kw:kw + s["stride_w"] * (ow - 1) + 1:s["stride_w"]] = eo


def fqt_softmax_xent(mem: Memory, logits: int, err: int, loss: int) -> None:
    lr = mem.rec(loss, LOSS_DTYPE)
    n, label = int(lr["n"]), int(lr["label"])
    lg = mem.rec(int(lr["logits"]), RANGE_DTYPE)
    er = mem.rec(int(lr["err"]), RANGE_DTYPE)
    q = mem.view(logits, np.uint8, n).astype(I32)
    qmax = int(q.max())
    d = (q - qmax).astype(F) * F(lg["scale"])
    e = expf(d)
    total = seqsum(e)
    p = e / total
    g = p.copy()
    g[label] = p[label] - F(1.0)
    rounding = int(lr["rounding"])
    nz = noise(int(lr["seed"]), np.arange(n)) if rounding == ROUND_STOCHASTIC else None
    mem.view(err, np.uint8, n)[:] = quant_f(g, F(er["scale"]), int(er["zero"]), rounding, nz)
    er["real_min"] = min(F(0), F(g.min()))
    er["real_max"] = max(F(0), F(g.max()))
    lr["p_label"] = p[label]
    lr["loss"] = F(0) - logf(np.array([p[label]], dtype=F))[0]
    lr["argmax"] = int(np.argmax(q))


def _visited(mem: Memory, sel: int) -> np.ndarray | None:
    """The structures a backward kernel visits: the selection's kept list (kept[0 .. k-1])
    or None (sel NULL: every structure)."""
    if not sel:
        return None
    sr = mem.rec(sel, SELECT_DTYPE)
    return mem.view(int(sr["kept"]), "<u2", int(sr["k"])).astype(np.int64)


def _pruned_to_zero(ev: np.ndarray, kept: np.ndarray | None) -> np.ndarray:
    """ev (..., N) zero-point-corrected errors with every structure but the kept ones set to
    zero: a selection's definition (fqt.h, "Backward")."""
    if kept is None:
        return ev
    out = np.zeros_like(ev)
    out[..., kept] = ev[..., kept]
    return out


def fqt_relu_backward(mem: Memory, y: int, e: int, n: int, yr: int, er: int,
                      sel: int = 0) -> None:
    yz = int(mem.rec(yr, RANGE_DTYPE)["zero"])
    ez = int(mem.rec(er, RANGE_DTYPE)["zero"])
    ev = mem.view(e, np.uint8, n)
    yv = mem.view(y, np.uint8, n)
    if sel:
        sr = mem.rec(sel, SELECT_DTYPE)
        N, k = int(sr["n_struct"]), int(sr["k"])
        if k < N:  # the kept structures' elements only (element i: structure i % N)
            P = n // N
            cols = _visited(mem, sel)
            e2 = ev[:P * N].reshape(P, N)
            sub = e2[:, cols]
            sub[yv[:P * N].reshape(P, N)[:, cols].astype(I32) <= yz] = ez
            e2[:, cols] = sub
            return
    ev[yv.astype(I32) <= yz] = ez


def fqt_fc_backward_error(mem: Memory, w: int, e_out: int, e_in: int, n_in: int, n_out: int,
                          q: int, acc: int, stats: int, sel: int = 0) -> None:
    qp = _qp(mem, q)
    ev = mem.view(e_out, np.uint8, n_out).astype(I32) - int(qp["x_zero"])
    ev = _pruned_to_zero(ev, _visited(mem, sel))
    wv = mem.view(w, np.uint8, n_in * n_out).reshape(n_out, n_in).astype(I32) - int(qp["w_zero"])
    a = (ev @ wv).astype(I32)
    mem.view(acc, "<i4", n_in)[:] = a
    _stats(a, stats, mem)
    mem.view(e_in, np.uint8, n_in)[:] = out_u8(a, qp, np.arange(n_in))


def fqt_fc_backward_weights(mem: Memory, x: int, e_out: int, gw: int, gb: int, n_in: int,
                            n_out: int, q: int, sel: int = 0) -> None:
    qp = _qp(mem, q)
    ev = mem.view(e_out, np.uint8, n_out).astype(I32) - int(qp["w_zero"])
    ev = _pruned_to_zero(ev, _visited(mem, sel))
    xv = mem.view(x, np.uint8, n_in).astype(I32) - int(qp["x_zero"])
    g = mem.view(gw, "<i4", n_in * n_out).reshape(n_out, n_in)
    g += np.outer(ev, xv).astype(I32)
    if gb:
        mem.view(gb, "<i4", n_out)[:] += ev


def fqt_conv2d_backward_error(mem: Memory, w: int, e_out: int, e_in: int, shape: int, q: int,
                              acc: int, stats: int, sel: int = 0) -> None:
    s, qp = _shape(mem, shape), _qp(mem, q)
    cin, cout = s["in_c"], s["out_c"]
    K = s["k_h"] * s["k_w"] * cin
    ev = mem.view(e_out, np.uint8, s["out_h"] * s["out_w"] * cout).reshape(-1, cout)
    ev = _pruned_to_zero(ev.astype(I32) - int(qp["x_zero"]), _visited(mem, sel))
    wv = mem.view(w, np.uint8, cout * K).reshape(cout, K).astype(I32) - int(qp["w_zero"])
    cols = (ev @ wv).reshape(s["out_h"], s["out_w"], s["k_h"], s["k_w"], cin)
    a = _scatter(cols, s, cin).astype(I32).reshape(-1)
    _stats(a, stats, mem)
    mem.view(e_in, np.uint8, a.size)[:] = out_u8(a, qp, np.arange(a.size))
    if acc:  # the kernel leaves the last input row's accumulators in its scratch
        row = s["in_w"] * cin
        mem.view(acc, "<i4", row)[:] = a[-row:]


def fqt_conv2d_backward_weights(mem: Memory, x: int, e_out: int, gw: int, gb: int, shape: int,
                                q: int, patch: int, sel: int = 0) -> None:
    s, qp = _shape(mem, shape), _qp(mem, q)
    cin, cout = s["in_c"], s["out_c"]
    K = s["k_h"] * s["k_w"] * cin
    kept = _visited(mem, sel)
    ev = mem.view(e_out, np.uint8, s["out_h"] * s["out_w"] * cout).reshape(-1, cout)
    ev = _pruned_to_zero(ev.astype(I32) - int(qp["w_zero"]), kept)
    xv = mem.view(x, np.uint8, s["in_h"] * s["in_w"] * cin).reshape(s["in_h"], s["in_w"], cin)
    win = _windows(_padded(xv, s, int(qp["x_zero"])), s).reshape(-1, K)
    patches = win.astype(I32) - int(qp["x_zero"])
    g = mem.view(gw, "<i4", cout * K).reshape(cout, K)
    g += (ev.T @ patches).astype(I32)
    if gb:
        mem.view(gb, "<i4", cout)[:] += ev.sum(axis=0).astype(I32)
    # the kernel reads the windows straight from x: its patch scratch is left alone


def fqt_dwconv2d_backward_error(mem: Memory, w: int, e_out: int, e_in: int, shape: int, q: int,
                                stats: int, sel: int = 0) -> None:
    s, qp = _shape(mem, shape), _qp(mem, q)
    C = s["in_c"]
    ev = mem.view(e_out, np.uint8, s["out_h"] * s["out_w"] * C).reshape(s["out_h"], s["out_w"], C)
    ev = _pruned_to_zero(ev.astype(I32) - int(qp["x_zero"]), _visited(mem, sel))
    wv = mem.view(w, np.uint8, C * s["k_h"] * s["k_w"]).reshape(C, s["k_h"], s["k_w"])
    wv = wv.astype(I32) - int(qp["w_zero"])
    cols = np.einsum("hwc,cij->hwijc", ev, wv)
    a = _scatter(cols, s, C).astype(I32).reshape(-1)
    _stats(a, stats, mem)
    mem.view(e_in, np.uint8, a.size)[:] = out_u8(a, qp, np.arange(a.size))


def fqt_dwconv2d_backward_weights(mem: Memory, x: int, e_out: int, gw: int, gb: int,
                                  shape: int, q: int, sel: int = 0) -> None:
    s, qp = _shape(mem, shape), _qp(mem, q)
    C = s["in_c"]
    ev = mem.view(e_out, np.uint8, s["out_h"] * s["out_w"] * C).reshape(s["out_h"], s["out_w"], C)
    ev = _pruned_to_zero(ev.astype(I32) - int(qp["w_zero"]), _visited(mem, sel))
    xv = mem.view(x, np.uint8, s["in_h"] * s["in_w"] * C).reshape(s["in_h"], s["in_w"], C)
    win = _windows(_padded(xv, s, int(qp["x_zero"])), s).astype(I32) - int(qp["x_zero"])
    g = mem.view(gw, "<i4", C * s["k_h"] * s["k_w"]).reshape(C, s["k_h"], s["k_w"])
    g += np.einsum("hwc,hwijc->cij", ev, win).astype(I32)
    if gb:
        mem.view(gb, "<i4", C)[:] += ev.sum(axis=(0, 1)).astype(I32)


def fqt_select_topk(mem: Memory, e: int, sel: int) -> None:
    sr = mem.rec(sel, SELECT_DTYPE)
    N, P = int(sr["n_struct"]), int(sr["n_pix"])
    z = int(mem.rec(int(sr["er"]), RANGE_DTYPE)["zero"])
    ev = mem.view(e, np.uint8, N * P).reshape(P, N)
    d = np.abs(ev.astype(I32) - z)
    if int(sr["y"]):  # the ReLU mask, applied on the fly: positions with y > y_zero count
        yz = int(mem.rec(int(sr["yr"]), RANGE_DTYPE)["zero"])
        yv = mem.view(int(sr["y"]), np.uint8, N * P).reshape(P, N)
        d = np.where(yv.astype(I32) > yz, d, 0)
    mag = d.sum(axis=0, dtype=np.int64).astype(np.uint32)
    mem.view(int(sr["mag"]), "<u4", N)[:] = mag
    total = int(mag.sum(dtype=np.uint64)) & _M32
    eps = F(sr["eps"])
    if int(sr["eps_mode"]) == 0:
        mean = F(np.int32(np.uint32(total).view(np.int32))) / F(N * P)
        if mean > F(sr["max_mean"]):
            sr["max_mean"] = mean
        mm = F(sr["max_mean"])
        eps = mean / mm if mm > F(0) else F(0)
        sr["eps"] = eps
    if eps < F(0):
        eps = F(0) - eps
    t = F(sr["lambda_max"]) - F(sr["lambda_min"])
    t = eps * t
    t = F(sr["lambda_min"]) + t
    if not t <= F(1):  # also NaN (a diverged loss): keep every channel
        t = F(1)
    t = t * F(N)
    k = min(max(int(t), 1), N)
    sr["k"] = k
    order = np.lexsort((np.arange(N), -mag.astype(np.int64)))  # by magnitude desc, index asc
    kept = np.sort(order[:k])
    mem.view(int(sr["kept"]), "<u2", k)[:] = kept
    if int(sr["touched"]):
        mem.view(int(sr["touched"]), np.uint8, N)[kept] = 1


def fqt_loss_eps(mem: Memory, loss: int, max_loss: int, sel: int) -> None:
    lv = F(mem.rec(loss, LOSS_DTYPE)["loss"])
    m = mem.view(max_loss, "<f4", 1)
    if lv > m[0]:
        m[0] = lv
    mm = F(m[0])
    mem.rec(sel, SELECT_DTYPE)["eps"] = lv / mm if mm > F(0) else F(0)


def fqt_range_params(mem: Memory, r: int) -> None:
    _range_params(mem.rec(r, RANGE_DTYPE))


def _range_params(rec: np.ndarray) -> None:
    rec["scale"], rec["zero"] = range_params(rec["fmin"], rec["fmax"])


def _range_observe(rec: np.ndarray) -> bool:
    """fqt_range_observe; False for a fixed range (nothing folded in)."""
    mode = int(rec["mode"])
    if mode == RANGE_ACC:
        lo = F(int(rec["acc_min"])) * F(rec["acc_scale"])
        hi = F(int(rec["acc_max"])) * F(rec["acc_scale"])
    elif mode == RANGE_REAL:
        lo, hi = F(rec["real_min"]), F(rec["real_max"])
    else:
        return False
    if int(rec["relu"]):
        lo = lo if lo > F(0) else F(0)
        hi = hi if hi > F(0) else F(0)
    h = F(rec["headroom"])
    if h > F(0):
        lo = lo * h
        hi = hi * h
    a = F(rec["alpha"])
    b = F(1) - a
    rec["fmin"] = b * F(rec["fmin"]) + a * lo
    rec["fmax"] = b * F(rec["fmax"]) + a * hi
    return True


def _range_commit(rec: np.ndarray) -> None:
    if _range_observe(rec):
        _range_params(rec)


def fqt_range_observe(mem: Memory, r: int) -> None:
    _range_observe(mem.rec(r, RANGE_DTYPE))


def fqt_range_commit(mem: Memory, r: int) -> None:
    _range_commit(mem.rec(r, RANGE_DTYPE))


def fqt_range_derive(mem: Memory, dst: int, src: int) -> None:
    d, s = mem.rec(dst, RANGE_DTYPE), mem.rec(src, RANGE_DTYPE)
    d["scale"] = F(s["scale"]) * F(d["derive"])
    d["zero"] = int(s["zero"])


def fqt_multiplier(mem: Memory, m: int, mult: int, shift: int) -> None:
    mu, sh = multiplier_of(mem.view(m, "<f4", 1)[0])
    mem.view(mult, "<i4", 1)[0] = mu
    mem.view(shift, "<i4", 1)[0] = sh


def _set_params(q: np.ndarray, x_zero: int, w_zero: int, y_zero: int, m: np.float32,
                act_min: int) -> None:
    q["x_zero"], q["w_zero"], q["y_zero"] = x_zero, w_zero, y_zero
    q["multiplier"], q["shift"] = multiplier_of(m)
    q["act_min"], q["act_max"] = act_min, 255


def clip_act_max(clip_hi: np.float32, s_y: np.float32, y_zero: int) -> int:
    """Upper clamp of a clipped activation (clip_act_max of fqt_range.c and fqt_add.c):
    min(255, y_zero + round-half-up(clip_hi / s_y)) in float32, 255 without a clip."""
    if not F(clip_hi) > F(0):
        return 255
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        t = F(clip_hi) / F(s_y)
        t = t + F(0.5)
    if not t < F(255):
        return 255
    return min(255, y_zero + (int(t) if t > F(0) else 0))


def fqt_layer_refresh(mem: Memory, layer: int) -> None:
    L = mem.rec(layer, LAYER_DTYPE)

    def rng(field: str) -> np.ndarray | None:
        a = int(L[field])
        return mem.rec(a, RANGE_DTYPE) if a else None

    x, w, y, eo, ei = rng("x"), rng("w"), rng("y"), rng("e_out"), rng("e_in")
    sw = F(w["scale"])
    acc_scale = sw * F(x["scale"])
    y["acc_scale"] = acc_scale
    m = acc_scale / F(y["scale"])
    fwd = mem.rec(int(L["fwd"]), QP_DTYPE)
    _set_params(fwd, int(x["zero"]), int(w["zero"]), int(y["zero"]), m,
                int(y["zero"]) if int(L["relu"]) else 0)
    fwd["act_max"] = clip_act_max(F(L["clip_hi"]), F(y["scale"]), int(y["zero"]))
    if int(L["bwd_err"]) and eo is not None and ei is not None:
        es = sw * F(eo["scale"])
        ei["acc_scale"] = es
        _set_params(mem.rec(int(L["bwd_err"]), QP_DTYPE), int(eo["zero"]), int(w["zero"]),
                    int(ei["zero"]), es / F(ei["scale"]), 0)
    if int(L["bwd_w"]) and eo is not None:
        q = mem.rec(int(L["bwd_w"]), QP_DTYPE)
        q["x_zero"], q["w_zero"] = int(x["zero"]), int(eo["zero"])
    n = int(L["n_bias"])
    if int(L["bias"]) and int(L["bias_q"]):
        t = mem.view(int(L["bias"]), "<f4", n) / acc_scale
        t = t + np.where(t >= F(0), F(0.5), F(-0.5))
        with np.errstate(invalid="ignore"):
            # in int64: a float32 np.where would round the saturation value 2^31 - 1 to 2^31
            # (which wraps to -2^31 in int32)
            tr = np.trunc(np.clip(t, F(-2.2e9), F(2.2e9))).astype(np.int64)
            q = np.where(t >= F(2147483520.0), np.int64(2147483647),
                         np.where(t <= F(-2147483520.0), np.int64(-2147483647), tr))
        mem.view(int(L["bias_q"]), "<i4", n)[:] = q.astype(I32)


def _grad_stats(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of g (rows, S): mean and sd in float32, sums in index order."""
    gf = g.astype(F)
    n = F(g.shape[1])
    mean = seqsum(gf, axis=1) / n
    d = gf - mean[:, None]
    d = d * d
    sq = seqsum(d, axis=1) / n
    return mean.astype(F), sqrtf(sq)


def _ema(mu: np.ndarray, sigma: np.ndarray, mean: np.ndarray, sd: np.ndarray, a: np.float32,
         lr: np.float32) -> np.ndarray:
    """In place on mu, sigma (1-D views); returns step = lr / sigma (0 where sigma == 0)."""
    b = F(1) - a
    first = sigma == F(0)
    new_mu = np.where(first, mean, a * mu + b * mean).astype(F)
    new_sigma = np.where(first, sd, a * sigma + b * sd).astype(F)
    mu[:] = new_mu
    sigma[:] = new_sigma
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(new_sigma > F(0), lr / new_sigma, F(0)).astype(F)


def _nan_ignoring(r: np.ndarray, fn: Callable[[np.ndarray], np.floating]) -> np.float32:
    """fn (min or max) of r's non-NaN values, F(0) when there are none."""
    v = r[~np.isnan(r)]
    return F(fn(v)) if v.size else F(0)


def _pairs_gradient(mem: Memory, pairs: int, N: int, S: int) -> np.ndarray:
    """The (N, S) int32 gradient the batch's stored pairs stand for (fqt_update with
    pairs): sum_b (e_b - ze_b) outer (x_b - zx_b), exact in int64, then int32."""
    pr = mem.rec(pairs, PAIRS_DTYPE)
    n = int(pr["count"])
    g = np.zeros((N, S), np.int64)
    if n:
        x = mem.view(int(pr["x"]), np.uint8, n * S).reshape(n, S).astype(np.int64)
        e = mem.view(int(pr["e"]), np.uint8, n * N).reshape(n, N).astype(np.int64)
        z = mem.view(int(pr["zeros"]), "<i4", 2 * n).reshape(n, 2).astype(np.int64)
        g = (e - z[:, 1:2]).T @ (x - z[:, 0:1])
    return g.astype(np.int32)


def fqt_fc_pairs_store(mem: Memory, x: int, e_out: int, pairs: int, q: int, gb: int,
                       sel: int = 0) -> None:
    pr = mem.rec(pairs, PAIRS_DTYPE)
    b, S, N = int(pr["count"]), int(pr["in_features"]), int(pr["out_features"])
    if b >= int(pr["capacity"]):
        return
    qp = _qp(mem, q)
    ze = int(qp["w_zero"])
    mem.view(int(pr["x"]) + b * S, np.uint8, S)[:] = mem.view(x, np.uint8, S)
    mem.view(int(pr["zeros"]) + 8 * b, "<i4", 2)[:] = (int(qp["x_zero"]), ze)
    ev = mem.view(e_out, np.uint8, N).astype(I32)
    visited = _visited(mem, sel)
    es = mem.view(int(pr["e"]) + b * N, np.uint8, N)
    if visited is None:
        es[:] = ev
    else:
        es[:] = ze
        es[visited] = ev[visited]
    if gb:
        d = ev - ze
        if visited is not None:
            d = _pruned_to_zero(d, visited)
        mem.view(gb, "<i4", N)[:] += d.astype(I32)
    pr["count"] = b + 1


def _bitlen(v: int) -> int:
    return int(v).bit_length()


def _float_parts(a: np.float32) -> tuple[int, int]:
    """fqt_update.c float_parts: (unbiased exponent, 24-bit significand) of a float32;
    exponent -200 for zero / subnormal, 200 for inf, 300 for NaN or a negative sign."""
    b = int(np.array([a], F).view(np.uint32)[0])
    ef = (b >> 23) & 0xFF
    mant = (b & 0x7FFFFF) | 0x800000
    if (b >> 31) or (ef == 0xFF and b & 0x7FFFFF):
        return 300, mant
    if ef == 0xFF:
        return 200, mant
    return (-200 if ef == 0 else ef - 127), mant


def _upd_shift_bits(S: int) -> int:
    """b of fqt.h's weight update: |g >> k| <= 2^b keeps S^2 2^(2b) < 2^64."""
    return min(15, 32 - _bitlen(S))


def _upd_stats(g: np.ndarray, S: int) -> tuple[np.float32, np.float32, int]:
    """int_stats (fqt_update.c) of one gradient row (not all zero): mean, sd, k."""
    g64 = g.astype(np.int64)
    any_ = int(np.max(np.abs(g64)))
    k = max(0, _bitlen(any_) - _upd_shift_bits(S))
    h = g64 >> k
    g1, a1, a2 = int(g64.sum()), int(h.sum()), int((h * h).sum())
    d = (S * a2 - a1 * a1) % (1 << 64)  # the kernel's uint64 (>= 0, < 2^64 by the bound)
    fs = F(S)
    mean = F(np.int64(g1)) / fs
    var = F(np.uint64(d)) / fs
    var = var / fs
    sd = sqrtf(np.array([var], F))[0] * F(1 << k)
    return F(mean), F(sd), k


def _upd_consts(step: np.float32, mu: np.float32, s_old: np.float32, z_old: int, k: int
                ) -> tuple[int, int, int, int]:
    """upd_consts (fqt_update.c): (k, A, e, c0) with V = 256 w + c0 - ((g >> k) A >> e)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        cs = F(step) / F(s_old)
        cs = cs * F(256)
        a = cs * F(1 << k)
        bb = F(mu) * cs
    ex, mant = _float_parts(F(-a) if a < F(0) else F(a))
    if 14 < ex < 300:
        A, e = 0x7FFF, 0
    elif ex < -48 or ex == 300:
        A, e = 0, 0
    else:
        A, e = mant >> 9, 14 - ex
    if a < F(0):
        A = -A
    if bb != bb:
        B = 0
    elif not bb > F(-536870912.0):
        B = -536870912
    elif not bb < F(536870912.0):
        B = 536870912
    else:
        B = int(np.trunc(bb))
    return k, A, min(e, 31), B - 256 * z_old


def _upd_v(w: np.ndarray, g: np.ndarray, c: tuple[int, int, int, int]) -> np.ndarray:
    k, A, e, c0 = c
    return (w.astype(np.int64) << 8) + c0 - (((g.astype(np.int64) >> k) * A) >> e)


def _upd_q(v: np.ndarray, ratio: np.float32, z_new: int, rounding: int,
           nz: np.ndarray | None) -> np.ndarray:
    """upd_q (fqt_update.c): clamp(((V m + U) >> f) + z_new, 0, 255) as uint8."""
    ex, mant = _float_parts(F(ratio))
    if ex == 300:
        return np.zeros(v.shape, np.uint8)
    if ex == 200 or 23 < ex < 300:
        m, f = 0xFFFF, 0
    elif ex < -39:
        m, f = 0, 0
    else:
        m, f = mant >> 8, 23 - ex
    p = v.astype(np.int64) * m
    if rounding == ROUND_NEAREST and f > 0:
        p = p + (1 << (f - 1))
    if rounding == ROUND_STOCHASTIC:
        u = (nz.astype(np.int64) >> 8)
        p = p + (u << (f - 24) if f >= 24 else u >> (24 - f))
    t = (p >> f) + z_new
    return np.clip(t, 0, 255).astype(np.uint8)


def fqt_update(mem: Memory, upd: int) -> None:
    u = mem.rec(upd, UPDATE_DTYPE)
    N, S = int(u["n_struct"]), int(u["struct_size"])
    wr = mem.rec(int(u["wr"]), RANGE_DTYPE)
    s_old, z_old = F(wr["scale"]), int(wr["zero"])
    w = mem.view(int(u["w"]), np.uint8, N * S).reshape(N, S)
    pairs = int(u["pairs"])
    gw = _pairs_gradient(mem, pairs, N, S) if pairs else \
        mem.view(int(u["gw"]), "<i4", N * S).reshape(N, S)
    mu = mem.view(int(u["mu"]), "<f4", N)
    sigma = mem.view(int(u["sigma"]), "<f4", N)
    step = mem.view(int(u["step"]), "<f4", N)
    lr, a = F(u["lr"]), F(u["alpha_norm"])
    touched = mem.view(int(u["touched"]), np.uint8, N) if int(u["touched"]) else None
    looked = np.ones(N, bool) if touched is None else touched != 0  # gradient rows read
    step[:] = F(0)
    v = (w.astype(np.int64) - z_old) << 8  # the still structures' V
    for j in np.flatnonzero(looked & np.any(gw != 0, axis=1)):
        mean, sd, k = _upd_stats(gw[j], S)
        m1, s1 = mu[j:j + 1].copy(), sigma[j:j + 1].copy()
        st = _ema(m1, s1, np.array([mean], F), np.array([sd], F), a, lr)
        mu[j], sigma[j], step[j] = m1[0], s1[0], st[0]
        if step[j] != F(0):
            v[j] = _upd_v(w[j], gw[j], _upd_consts(step[j], mu[j], s_old, z_old, k))
    moving = step != F(0)
    lo, hi = F(0), F(0)
    if v.size:
        with np.errstate(over="ignore", invalid="ignore"):
            t = F(int(v.min())) * s_old
            t = t * F(0.00390625)
            lo = t if t < F(0) else F(0)
            t = F(int(v.max())) * s_old
            t = t * F(0.00390625)
            hi = t if t > F(0) else F(0)
    wr["real_min"], wr["real_max"] = lo, hi
    _range_commit(wr)
    rounding = int(u["rounding"])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        inv = F(1.0) / F(wr["scale"])
        ratio = s_old * inv
    z_new = int(wr["zero"])
    nz = noise(int(u["seed"]), np.arange(N * S)).reshape(N, S) \
        if rounding == ROUND_STOCHASTIC else None
    w[:] = _upd_q(v, ratio, z_new, rounding, nz)
    if pairs:
        mem.rec(pairs, PAIRS_DTYPE)["count"] = 0
        mem.view(int(u["row"]), "<i4", S)[:] = 0
    else:
        gw[looked] = 0
    still = int(np.count_nonzero(~moving))
    if int(u["lut"]) and rounding != ROUND_STOCHASTIC and still * S > 256:
        # the kernel's table of the still structures' new bytes
        table = (np.arange(256, dtype=np.int64) - z_old) << 8
        mem.view(int(u["lut"]), np.uint8, 256)[:] = _upd_q(table, ratio, z_new, rounding, None)
    if touched is not None:
        touched[:] = 0
    if int(u["gb"]) and int(u["bias"]):
        gb = mem.view(int(u["gb"]), "<i4", N)
        if np.any(gb != 0):
            bias = mem.view(int(u["bias"]), "<f4", N)
            bs = mem.view(int(u["bias_stats"]), "<f4", 2)
            mean, sd = _grad_stats(gb[None, :])
            m1, s1 = bs[0:1].copy(), bs[1:2].copy()
            stp = _ema(m1, s1, mean, sd, a, lr)[0]
            bs[0], bs[1] = m1[0], s1[0]
            upd_mask = (step != F(0)) | (gb != 0)
            d = gb.astype(F) - F(bs[0])
            d = d * stp
            bias[:] = np.where(upd_mask, bias - d, bias)
            gb[:] = 0


def fqt_requantize_v(mem: Memory, acc: int, out: int, n: int, q: int, stats: int) -> None:
    qp = _qp(mem, q)
    a = mem.view(acc, "<i4", n).copy()
    mem.view(out, np.uint8, n)[:] = out_u8(a, qp, np.arange(n))
    _stats(a, stats, mem)


def fqt_mathf_v(mem: Memory, op: int, x: int, y: int, n: int) -> None:
    xv = mem.view(x, "<f4", n)
    fn = {0: sqrtf, 1: expf, 2: logf}[op]
    mem.view(y, "<f4", n)[:] = fn(xv)


def fqt_quantize_f(mem: Memory, v: int, s: int, z: int, rounding: int, nz: int) -> int:
    vv = mem.view(v, "<f4", 1)
    sv = F(mem.view(s, "<f4", 1)[0])
    return int(quant_f(vv, sv, z, rounding, np.array([nz], dtype=np.uint32))[0])


KERNELS: dict[str, Callable[..., object]] = {
    name: fn for name, fn in globals().items() if name.startswith("fqt_") and callable(fn)}


# ---------------------------------------------------------------------------- array API

def dot_u8(a: np.ndarray, a_zero: int, b: np.ndarray, b_zero: int) -> int:
    """sum (a - a_zero)(b - b_zero) in int32."""
    return int(np.sum((a.astype(I32) - a_zero) * (b.astype(I32) - b_zero), dtype=I32))


def fc_forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, q: LayerQuant
               ) -> np.ndarray:
    """fqt_fc_forward on arrays.  x: (in,) uint8; w: (out, in) uint8; bias: (out,) int32.
    Per tensor only (q.ch_mult is an MCU address; the memory twin fqt_fc_forward reads it)."""
    acc = (w.astype(I32) - q.w_zero) @ (x.astype(I32) - q.x_zero)
    if bias is not None:
        acc = acc + bias.astype(I32)
    return out_u8(acc.astype(I32), q, np.arange(acc.size))


# ---------------------------------------------------------------------------- graph kernels

def _register_graph_kernels() -> None:
    """The twins of kernels/graph/ and fqt_mse (residual Add, clip, MSE) live in
    twin_graph.py, which imports helpers from this module: imported here, at the very end,
    when they all exist.  (Imported first, twin_graph is still partial at this point; it
    then registers itself when it finishes.)"""
    from mcusim.fqt import twin_graph

    KERNELS.update(getattr(twin_graph, "GRAPH_KERNELS", {}))


_register_graph_kernels()
