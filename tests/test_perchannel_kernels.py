"""Per-output-channel requantization of the forward kernels (fqt_conv2d_forward,
fqt_dwconv2d_forward, fqt_fc_forward): fqt_quant_params_t.ch_mult / ch_shift (fqt.h).

Output channel c is requantized with its own M_c = ch_mult[c] * 2^(ch_shift[c] - 31)
instead of the tensor's multiplier / shift; both pointers NULL (a zeroed record) is the
per-tensor behaviour every other caller relies on.  Checked here:

  * the compiled kernels against the numpy twin, byte for byte over the whole arena, on the
    three paper boards (M0+ generic C, M4 and M7 DSP path) with both toolchains
    (conftest's `machine`): random per-channel multipliers with extreme shifts (-31 and 30,
    both sides of the stochastic noise alignment at 31 - shift = 32), every rounding mode,
    fused ReLU, act_max < 255, with and without stats and bias; and with NULL pointers;
  * per-channel arrays that all hold the tensor's (multiplier, shift) give exactly the
    per-tensor (NULL) bytes, stochastic noise included (same element index);
  * against the definition, independently of the twin: one small case per kernel worked out
    by hand below (M_0 = 1/2, M_1 = 1/4), and random cases where the accumulator is
    computed here in int64 from sum (w - w_zero)(x - x_zero) + bias and the output checked
    against clamp(R(M_c acc) + y_zero, act_min, act_max): within 1 LSB of round(M_c acc) in
    float64, and exactly per rounding mode from the exact rational value (nearest: half up;
    floor; stochastic: floor or floor + 1).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcusim.fqt import twin
from mcusim.fqt.quant import (
    QP_DTYPE,
    SHAPE_DTYPE,
    LayerQuant,
    quantize_multiplier,
    record,
    requantize,
)
from tests.test_fqt_kernels import HSET, Both, _shape_rec, conv_shapes

HALF = (1 << 30, 0)     # M = 2^30 * 2^(0 - 31) = 1/2
QUARTER = (1 << 30, -1)  # M = 2^30 * 2^(-1 - 31) = 1/4
ONE = (1 << 30, 1)       # M = 1: the tensor's M in the hand cases (never the right one)


def test_record_layout():
    """fqt_quant_params_t is 11 words: the two pointers are appended at offsets 36 and 40;
    a zeroed record (and LayerQuant's defaults) means per tensor."""
    assert QP_DTYPE.itemsize == 44
    assert QP_DTYPE.names[:9] == ("x_zero", "w_zero", "y_zero", "multiplier", "shift",
                                  "act_min", "act_max", "rounding", "seed")
    assert QP_DTYPE.fields["ch_mult"][1] == 36 and QP_DTYPE.fields["ch_shift"][1] == 40
    r = LayerQuant(1, 2, 3, 1 << 30, 0).record()
    assert r["ch_mult"] == 0 and r["ch_shift"] == 0 and r["act_max"] == 255
    assert record(QP_DTYPE)["ch_mult"] == 0


def test_requantize_per_element_matches_scalar():
    """quant.requantize with array multipliers / shifts equals the scalar one per element,
    every rounding mode, shifts -31..30."""
    rng = np.random.default_rng(1)
    n = 4000
    acc = rng.integers(-(1 << 31), 1 << 31, n, dtype=np.int64).astype(np.int32)
    acc[:8] = [-(1 << 31), (1 << 31) - 1, 0, 1, -1, 2, -2, 1 << 30]
    mult = rng.integers(1 << 30, 1 << 31, n, dtype=np.int64)
    mult[:4] = [1 << 30, (1 << 31) - 1, 1 << 30, (1 << 31) - 1]
    shift = rng.integers(-31, 31, n, dtype=np.int64)
    shift[:4] = [-31, -31, 30, 30]
    nz = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    for rounding in (0, 1, 2):
        got = requantize(acc, mult, shift, rounding, nz)
        want = [int(requantize(np.int32(a), int(m), int(s), rounding, np.uint32(z)))
                for a, m, s, z in zip(acc, mult, shift, nz, strict=True)]
        assert got.tolist() == want


# ------------------------------------------------------------------ helpers

def _qp(rng, real, *, relu, rounding, act_max=255, ch=(0, 0)):
    """A random per-tensor record (as tests/test_fqt_kernels.py) with the given pointers."""
    mult, shift = quantize_multiplier(real)
    zy = int(rng.integers(0, 256))
    lo = zy if relu else 0
    return record(QP_DTYPE, x_zero=int(rng.integers(0, 256)), w_zero=int(rng.integers(0, 256)),
                  y_zero=zy, multiplier=mult, shift=shift, act_min=lo,
                  act_max=max(lo, min(act_max, 255)), rounding=rounding,
                  seed=int(rng.integers(0, 2**32)), ch_mult=ch[0], ch_shift=ch[1])


def _multipliers(rng, n: int, real: float, wild: float) -> tuple[np.ndarray, np.ndarray]:
    """n per-channel (multiplier, shift): M_c = real * a factor in [1/8, 8] (log-uniform),
    and with probability `wild` an arbitrary multiplier in [2^30, 2^31) with an arbitrary
    shift in [-31, 30], often one of the extremes -31 / 30 / -1 (31 - shift = 32)."""
    mult, shift = np.zeros(n, np.int32), np.zeros(n, np.int32)
    for c in range(n):
        if rng.random() < wild:
            m = int(rng.choice([1 << 30, (1 << 31) - 1, int(rng.integers(1 << 30, 1 << 31))]))
            s = int(rng.choice([-31, 30, -1, 0, int(rng.integers(-31, 31))]))
        else:
            m, s = quantize_multiplier(real * 2.0 ** rng.uniform(-3, 3))
        mult[c], shift[c] = m, s
    return mult, shift


def _conv_shape(shape, depthwise):
    h, w, cin, cout, kh, kw, *rest = shape
    if depthwise:
        cout = cin
    return _shape_rec(h, w, cin, cout, kh, kw, *rest)


def _put_conv(b, rng, s, depthwise, bias):
    """Input, weights, bias of a conv2d / dwconv2d call; returns (arrays, addresses)."""
    h, w, cin, cout = int(s["in_h"]), int(s["in_w"]), int(s["in_c"]), int(s["out_c"])
    kh, kw = int(s["k_h"]), int(s["k_w"])
    xv = rng.integers(0, 256, (h, w, cin), dtype=np.uint8)
    wv = rng.integers(0, 256, (cin, kh, kw) if depthwise else (cout, kh, kw, cin),
                      dtype=np.uint8)
    bv = rng.integers(-5000, 5000, cout).astype(np.int32) if bias else None
    x, wt = b.put(xv.reshape(-1)), b.put(wv.reshape(-1))
    bq = b.put(bv) if bias else 0
    return (xv, wv, bv), (x, wt, bq)


def _run_conv(b, depthwise, x, wt, bq, y, sa, qa, stats, K):
    if depthwise:
        b.run("fqt_dwconv2d_forward", x, wt, bq, y, sa, qa, stats)
    else:
        r = np.frombuffer(b.m.read(sa, SHAPE_DTYPE.itemsize), SHAPE_DTYPE)[0]
        patch = b.zeros(twin.conv2d_forward_scratch(int(r["k_h"]), int(r["k_w"]),
                                                    int(r["in_c"]), int(r["out_c"])))
        b.run("fqt_conv2d_forward", x, wt, bq, y, sa, qa, patch, stats)


# ------------------------------------------------------------------ definitions

def _acc_conv(xv, wv, bv, s, xz, wz, depthwise) -> np.ndarray:
    """acc[oh, ow, c] = sum over the window of (w - w_zero)(x - x_zero) + bias[c], int64,
    straight from the definition (padding holds x_zero: contributes 0)."""
    oh_n, ow_n, cout = int(s["out_h"]), int(s["out_w"]), int(s["out_c"])
    xs = xv.astype(np.int64) - xz
    ws = wv.astype(np.int64) - wz
    acc = np.zeros((oh_n, ow_n, cout), np.int64)
    for oh in range(oh_n):
        for ow in range(ow_n):
            for kh in range(int(s["k_h"])):
                ih = oh * int(s["stride_h"]) - int(s["pad_top"]) + kh
                for kw in range(int(s["k_w"])):
                    iw = ow * int(s["stride_w"]) - int(s["pad_left"]) + kw
                    if not (0 <= ih < int(s["in_h"]) and 0 <= iw < int(s["in_w"])):
                        continue
                    if depthwise:  # w: [C][kh][kw]
                        acc[oh, ow] += ws[:, kh, kw] * xs[ih, iw]
                    else:          # w: [Cout][kh][kw][Cin]
                        acc[oh, ow] += ws[:, kh, kw, :] @ xs[ih, iw]
    if bv is not None:
        acc += bv.astype(np.int64)
    return acc.reshape(-1, cout)


def _check_definition(y: np.ndarray, acc: np.ndarray, mult, shift, q) -> int:
    """y (pixels x channels) against clamp(R(M_c acc) + y_zero, act_min, act_max); returns
    how many outputs lie strictly inside the clamp range."""
    zy, lo, hi, rounding = (int(q["y_zero"]), int(q["act_min"]), int(q["act_max"]),
                            int(q["rounding"]))
    y = y.reshape(acc.shape).astype(np.int64)
    inside = 0
    for (p, c), a in np.ndenumerate(acc):
        m, sh = int(mult[c]), int(shift[c])
        # the float check: within 1 LSB of round(M_c acc) + y_zero, clamped
        approx = min(max(math.floor(m * 2.0 ** (sh - 31) * int(a) + 0.5) + zy, lo), hi)
        assert abs(int(y[p, c]) - approx) <= 1, (p, c, int(a), int(y[p, c]), approx)
        # exactly, per rounding mode, from the exact value acc * M_c
        v = Fraction(int(a) * m, 1 << (31 - sh))
        fl = math.floor(v)
        allowed = {0: {math.floor(v + Fraction(1, 2))}, 1: {fl},
                   2: {fl, fl + 1} if v != fl else {fl}}[rounding]
        want = {min(max(r + zy, lo), hi) for r in allowed}
        assert int(y[p, c]) in want, (p, c, int(a), int(y[p, c]), want)
        inside += lo < int(y[p, c]) < hi
    return inside


# ------------------------------------------------------------------ twin vs device

@HSET
@given(shape=conv_shapes, relu=st.booleans(), bias=st.booleans(), stats=st.booleans(),
       act_max=st.sampled_from([255, 254, 200, 140]), wild=st.sampled_from([0.0, 0.3, 1.0]),
       seed=st.integers(0, 2**31))
def test_conv_forward_per_channel_matches_twin(machine, shape, relu, bias, stats, act_max,
                                               wild, seed):
    """conv2d and dwconv2d, every rounding mode: per-channel pointers, then NULL."""
    rng = np.random.default_rng(seed)
    for depthwise in (False, True):
        s = _conv_shape(shape, depthwise)
        if s is None:
            return
        cout, K = int(s["out_c"]), int(s["k_h"] * s["k_w"] * (1 if depthwise else s["in_c"]))
        nout = int(s["out_h"] * s["out_w"]) * cout
        for rounding in (0, 1, 2):
            b = Both(machine, rng)
            _, (x, wt, bq) = _put_conv(b, rng, s, depthwise, bias)
            real = 30.0 / (4000 * np.sqrt(K))
            mult, shift = _multipliers(rng, cout, real, wild)
            ch = (b.put(mult), b.put(shift))
            q = _qp(rng, real, relu=relu, rounding=rounding, act_max=act_max, ch=ch)
            y, sa, st_ = b.zeros(nout), b.put(s), b.zeros(8) if stats else 0
            _run_conv(b, depthwise, x, wt, bq, y, sa, b.put(q), st_, K)
            q["ch_mult"] = q["ch_shift"] = 0  # NULL: per tensor, as before
            _run_conv(b, depthwise, x, wt, bq, b.zeros(nout), sa, b.put(q), st_, K)


@HSET
@given(n_in=st.integers(1, 70), n_out=st.integers(1, 24), relu=st.booleans(),
       bias=st.booleans(), stats=st.booleans(), act_max=st.sampled_from([255, 254, 200, 140]),
       wild=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 2**31))
def test_fc_forward_per_channel_matches_twin(machine, n_in, n_out, relu, bias, stats, act_max,
                                             wild, seed):
    """fc, every rounding mode: per-channel pointers, then NULL."""
    rng = np.random.default_rng(seed)
    for rounding in (0, 1, 2):
        b = Both(machine, rng)
        x = b.put(rng.integers(0, 256, n_in, dtype=np.uint8))
        wt = b.put(rng.integers(0, 256, n_in * n_out, dtype=np.uint8))
        bq = b.put(rng.integers(-5000, 5000, n_out).astype(np.int32)) if bias else 0
        real = 30.0 / (4000 * np.sqrt(n_in))
        mult, shift = _multipliers(rng, n_out, real, wild)
        q = _qp(rng, real, relu=relu, rounding=rounding, act_max=act_max,
                ch=(b.put(mult), b.put(shift)))
        st_ = b.zeros(8) if stats else 0
        b.run("fqt_fc_forward", x, wt, bq, b.zeros(n_out), n_in, n_out, b.put(q), st_)
        q["ch_mult"] = q["ch_shift"] = 0
        b.run("fqt_fc_forward", x, wt, bq, b.zeros(n_out), n_in, n_out, b.put(q), st_)


@HSET
@given(shape=conv_shapes, kind=st.sampled_from(["conv", "dw", "fc"]),
       rounding=st.sampled_from([0, 1, 2]), relu=st.booleans(), seed=st.integers(0, 2**31))
def test_uniform_per_channel_equals_per_tensor(machine, shape, kind, rounding, relu, seed):
    """ch_mult / ch_shift all equal to the tensor's (multiplier, shift): the same bytes as
    NULL pointers (today's per-tensor output), stochastic noise included."""
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    m = machine
    if kind == "fc":
        n_in, n_out = int(rng.integers(1, 50)), int(rng.integers(1, 20))
        nout, n_ch = n_out, n_out
        x = b.put(rng.integers(0, 256, n_in, dtype=np.uint8))
        wt = b.put(rng.integers(0, 256, n_in * n_out, dtype=np.uint8))
        bq = b.put(rng.integers(-5000, 5000, n_out).astype(np.int32))
        real = 30.0 / (4000 * np.sqrt(n_in))

        def call(y, qa):
            b.run("fqt_fc_forward", x, wt, bq, y, n_in, n_out, qa, 0)
    else:
        s = _conv_shape(shape, kind == "dw")
        if s is None:
            return
        n_ch = int(s["out_c"])
        K = int(s["k_h"] * s["k_w"] * (1 if kind == "dw" else s["in_c"]))
        nout = int(s["out_h"] * s["out_w"]) * n_ch
        _, (x, wt, bq) = _put_conv(b, rng, s, kind == "dw", True)
        sa = b.put(s)
        real = 30.0 / (4000 * np.sqrt(K))

        def call(y, qa):
            _run_conv(b, kind == "dw", x, wt, bq, y, sa, qa, 0, K)
    q = _qp(rng, real, relu=relu, rounding=rounding)
    y0, y1 = b.zeros(nout), b.zeros(nout)
    call(y0, b.put(q))
    q["ch_mult"] = b.put(np.full(n_ch, q["multiplier"], np.int32))
    q["ch_shift"] = b.put(np.full(n_ch, q["shift"], np.int32))
    call(y1, b.put(q))
    got0, got1 = m.read_array(y0, np.uint8, nout), m.read_array(y1, np.uint8, nout)
    assert np.array_equal(got0, got1)


# ------------------------------------------------------------------ by hand

def _hand_q(b, rounding, relu):
    """x_zero = 10, w_zero = 128, y_zero = 100; the tensor's M = 1 (ignored: pointers set);
    channel 0: M_0 = 1/2, channel 1: M_1 = 1/4."""
    ch = (b.put(np.array([HALF[0], QUARTER[0]], np.int32)),
          b.put(np.array([HALF[1], QUARTER[1]], np.int32)))
    return b.put(record(QP_DTYPE, x_zero=10, w_zero=128, y_zero=100, multiplier=ONE[0],
                        shift=ONE[1], act_min=100 if relu else 0, act_max=255,
                        rounding=rounding, seed=777, ch_mult=ch[0], ch_shift=ch[1]))


def _hand_check(got, want_nearest, want_floor, rounding, relu):
    """nearest / floor: exactly; stochastic: floor or floor + 1 (the callers check the
    exact values separately).  ReLU clamps at y_zero = 100."""
    lo = 100 if relu else 0
    for g, n, f in zip(got, want_nearest, want_floor, strict=True):
        allowed = {0: {n}, 1: {f}, 2: {f, f + 1}}[rounding]
        assert g in {max(v, lo) for v in allowed}, (got, want_nearest, want_floor)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("rounding", [0, 1, 2])
def test_fc_by_hand(machine, rounding, relu):
    """fc, 2 inputs, 2 outputs.  x - 10 = [4, -3].
    Row 0: w - 128 = [5, -2]: 20 + 6 = 26, bias 4: acc 30; x 1/2 = 15 -> 115.
    Row 1: w - 128 = [3, 7]: 12 - 21 = -9, bias -5: acc -14; x 1/4 = -3.5: nearest (half up)
    -3 -> 97, floor -4 -> 96.  (Channel 0's M for both would give 93 / 93; M = 1 from the
    record 130, 86.)  ReLU: act_min = 100 clamps row 1 to 100."""
    rng = np.random.default_rng(1)
    b = Both(machine, rng)
    x = b.put(np.array([14, 7], np.uint8))
    wt = b.put(np.array([133, 126, 131, 135], np.uint8))
    bq = b.put(np.array([4, -5], np.int32))
    y, st_ = b.zeros(2), b.zeros(8)
    b.run("fqt_fc_forward", x, wt, bq, y, 2, 2, _hand_q(b, rounding, relu), st_)
    got = machine.read_array(y, np.uint8, 2).tolist()
    _hand_check(got, [115, 97], [115, 96], rounding, relu)
    assert got[0] == 115  # 15 is exact: every rounding mode
    assert machine.read_array(st_, np.int32, 2).tolist() == [-14, 30]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("rounding", [0, 1, 2])
def test_conv2d_by_hand(machine, rounding, relu):
    """conv2d, input 1x2x2, 1x1 kernel, 2 filters: output 1x2x2 (channels last, so the
    channel of y[i] is i % 2, not the pixel).  x - 10: pixel 0 [2, 1], pixel 1 [-1, 3];
    w - 128: filter 0 [3, 4], filter 1 [5, -2]; no bias.
      p0 f0: 6 + 4 = 10,   x 1/2 = 5      -> 105
      p0 f1: 10 - 2 = 8,   x 1/4 = 2      -> 102
      p1 f0: -3 + 12 = 9,  x 1/2 = 4.5    -> nearest 105, floor 104
      p1 f1: -5 - 6 = -11, x 1/4 = -2.75  -> nearest 97, floor 97
    (M_0 everywhere: 105 104 105 95.)"""
    rng = np.random.default_rng(2)
    b = Both(machine, rng)
    s = record(SHAPE_DTYPE, in_h=1, in_w=2, in_c=2, out_h=1, out_w=2, out_c=2, k_h=1, k_w=1,
               stride_h=1, stride_w=1)
    x = b.put(np.array([12, 11, 9, 13], np.uint8))
    wt = b.put(np.array([131, 132, 133, 126], np.uint8))
    y, st_ = b.zeros(4), b.zeros(8)
    b.run("fqt_conv2d_forward", x, wt, 0, y, b.put(s), _hand_q(b, rounding, relu),
          b.zeros(twin.conv2d_forward_scratch(1, 1, 2, 2)), st_)
    got = machine.read_array(y, np.uint8, 4).tolist()
    _hand_check(got, [105, 102, 105, 97], [105, 102, 104, 97], rounding, relu)
    assert got[:2] == [105, 102]  # exact
    assert machine.read_array(st_, np.int32, 2).tolist() == [-11, 10]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("rounding", [0, 1, 2])
def test_dwconv2d_by_hand(machine, rounding, relu):
    """dwconv2d, input 1x3x2, 1x2 kernel, stride 1, no padding: output 1x2x2.
    x - 10: pixels [1, 2], [3, -1], [-2, 4]; w - 128: channel 0 [2, 1], channel 1 [1, 3]
    (the kernel's two columns); bias [0, 0].
      o0 c0: 2*1 + 1*3 = 5,     x 1/2 = 2.5   -> nearest 103, floor 102
      o0 c1: 1*2 + 3*(-1) = -1, x 1/4 = -0.25 -> nearest 100, floor 99
      o1 c0: 2*3 + 1*(-2) = 4,  x 1/2 = 2     -> 102
      o1 c1: 1*(-1) + 3*4 = 11, x 1/4 = 2.75  -> nearest 103, floor 102
    (M_0 everywhere: 103 100 102 106 nearest.)"""
    rng = np.random.default_rng(3)
    b = Both(machine, rng)
    s = record(SHAPE_DTYPE, in_h=1, in_w=3, in_c=2, out_h=1, out_w=2, out_c=2, k_h=1, k_w=2,
               stride_h=1, stride_w=1)
    x = b.put(np.array([11, 12, 13, 9, 8, 14], np.uint8))
    wt = b.put(np.array([130, 129, 129, 131], np.uint8))
    bq = b.put(np.zeros(2, np.int32))
    y, st_ = b.zeros(4), b.zeros(8)
    b.run("fqt_dwconv2d_forward", x, wt, bq, y, b.put(s), _hand_q(b, rounding, relu), st_)
    got = machine.read_array(y, np.uint8, 4).tolist()
    _hand_check(got, [103, 100, 102, 103], [102, 99, 102, 102], rounding, relu)
    assert got[2] == 102  # exact
    assert machine.read_array(st_, np.int32, 2).tolist() == [-1, 11]


# ------------------------------------------------------------------ random, vs definition

@HSET
@given(shape=conv_shapes, kind=st.sampled_from(["conv", "dw", "fc"]),
       rounding=st.sampled_from([0, 1, 2]), relu=st.booleans(), bias=st.booleans(),
       per_channel=st.sampled_from([True, True, False]), act_max=st.sampled_from([255, 200]),
       seed=st.integers(0, 2**31))
def test_forward_against_definition(machine, shape, kind, rounding, relu, bias, per_channel,
                                    act_max, seed):
    """Random layers with per-channel M_c (or NULL pointers: M_c = the tensor's M): every
    output byte against the definition (see _check_definition), the stats against the int64
    accumulators.  The accumulators come from the definition sum, not from the twin; M_c is
    chosen from them so that |M_c acc| reaches ~15..60 steps, a different scale per channel
    (the channels' accumulator ranges differ), so swapping channels' M shows."""
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    q = _qp(rng, 1.0, relu=relu, rounding=rounding, act_max=act_max)
    q["y_zero"] = zy = int(rng.integers(70, 180))
    q["act_min"] = zy if relu else 0
    q["act_max"] = max(q["act_min"], act_max)
    xz, wz = int(q["x_zero"]), int(q["w_zero"])
    if kind == "fc":
        n_in, n_ch = int(rng.integers(1, 60)), int(rng.integers(1, 16))
        xv = rng.integers(0, 256, n_in, dtype=np.uint8)
        wv = rng.integers(0, 256, (n_ch, n_in), dtype=np.uint8)
        bv = rng.integers(-5000, 5000, n_ch).astype(np.int32) if bias else None
        x, wt = b.put(xv), b.put(wv.reshape(-1))
        bq = b.put(bv) if bias else 0
        acc = (wv.astype(np.int64) - wz) @ (xv.astype(np.int64) - xz)
        acc = (acc + (bv if bias else 0)).reshape(1, n_ch)
    else:
        s = _conv_shape(shape, kind == "dw")
        if s is None:
            return
        n_ch = int(s["out_c"])
        K = int(s["k_h"] * s["k_w"] * (1 if kind == "dw" else s["in_c"]))
        (xv, wv, bv), (x, wt, bq) = _put_conv(b, rng, s, kind == "dw", bias)
        acc = _acc_conv(xv, wv, bv, s, xz, wz, kind == "dw")
    top = np.maximum(np.abs(acc).max(axis=0), 1)  # per channel
    if per_channel:
        ms = [quantize_multiplier(float(t)) for t in 2.0 ** rng.uniform(4, 6, n_ch) / top]
        mult = np.array([m for m, _ in ms], np.int32)
        shift = np.array([sh for _, sh in ms], np.int32)
        q["ch_mult"], q["ch_shift"] = b.put(mult), b.put(shift)
    else:
        q["multiplier"], q["shift"] = quantize_multiplier(40.0 / float(top.max()))
        mult, shift = np.full(n_ch, q["multiplier"]), np.full(n_ch, q["shift"])
    st_ = b.zeros(8)
    y = b.zeros(acc.size)
    if kind == "fc":
        b.run("fqt_fc_forward", x, wt, bq, y, n_in, n_ch, b.put(q), st_)
    else:
        _run_conv(b, kind == "dw", x, wt, bq, y, b.put(s), b.put(q), st_, K)
    got = machine.read_array(y, np.uint8, acc.size)
    inside = _check_definition(got, acc, mult, shift, q)
    assert machine.read_array(st_, np.int32, 2).tolist() == [int(acc.min()), int(acc.max())]
    # the test can tell multipliers apart: not everything is clamped (without ReLU and with
    # act_max 255, each channel's largest |acc| lands 16..64 steps from y_zero in 70..179)
    if not relu and act_max == 255:
        assert inside >= n_ch
