"""The graph kernels: residual Add (fqt_add_u8, fqt_add_refresh), ReLU6 (clip_hi of
fqt_layer_refresh, fqt_clip_backward) and the MSE loss (fqt_mse).

Two kinds of tests:
  * bit-exact: the compiled kernel (Unicorn; M0+, M4, M7; gcc and zig, as
    tests/test_fqt_kernels.py) against its numpy twin (mcusim/fqt/twin_graph.py), every byte
    of the arena compared after each call;
  * the maths against the definitions, independent of the twin (C-vs-twin agreement cannot
    see a mistake both share): small cases worked out by hand in the comments, and float64
    references with the error bound the integer arithmetic allows.

The Add's definition is TFLite's reference quantized ADD (tensorflow/lite/kernels/internal/
reference/add.h, parameters as tensorflow/lite/kernels/add.cc prepares them), restated in
kernels/fqt.h for uint8 asymmetric tensors real = s (q - z):
    y = clamp(R(My (R_nearest(Ma (a - za) 2^20) + R_nearest(Mb (b - zb) 2^20))) + zy, lo, hi)
with s2 = 2 max(sa, sb), Ma = sa / s2, Mb = sb / s2, My = s2 / (2^20 sy), so that
y ~ (sa (a - za) + sb (b - zb)) / sy + zy.
"""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcusim.fqt import twin
from mcusim.fqt.quant import (
    ADD_DTYPE,
    ADD_PARAMS_DTYPE,
    LAYER_DTYPE,
    LOSS_DTYPE,
    QP_DTYPE,
    RANGE_ACC,
    RANGE_DTYPE,
    RANGE_REAL,
    range_record,
    record,
)
from tests.test_fqt_kernels import HSET, Both

F4 = np.float32
ROUNDINGS = st.sampled_from([0, 1, 2])  # nearest, floor, stochastic
STATS = RANGE_DTYPE.fields["acc_min"][1]  # acc_min, acc_max: the stats pair of a range


def _random_range(rng: np.random.Generator, lo_dec: float = -3, hi_dec: float = 1,
                  **kw) -> np.ndarray:
    """A range record with a log-uniform extent, sometimes with zero point 0."""
    hi = 10 ** rng.uniform(lo_dec, hi_dec)
    lo = 0.0 if rng.random() < 0.25 else -(10 ** rng.uniform(lo_dec, hi_dec))
    return range_record(lo, hi, **kw)


def _rec(machine, addr: int, dtype: np.dtype) -> np.ndarray:
    return machine.read_array(addr, dtype, 1)[0]


def _add_setup(b: Both, ar: np.ndarray, br: np.ndarray, yr: np.ndarray, *, relu: bool = False,
               clip_hi: float = 0.0, rounding: int = 0, seed: int = 0) -> tuple[int, int, int]:
    """Ranges, params and fqt_add_t in the arena, refreshed; returns (add, params, y range)."""
    ya = b.put(yr)
    pa = b.put(record(ADD_PARAMS_DTYPE, rounding=rounding, seed=seed))
    add = b.put(record(ADD_DTYPE, a=b.put(ar), b=b.put(br), y=ya, p=pa, relu=int(relu),
                       clip_hi=clip_hi))
    b.run("fqt_add_refresh", add)
    return add, pa, ya


# ------------------------------------------------------------------ bit-exact: twin vs C

@HSET
@given(n=st.integers(0, 70), rounding=ROUNDINGS, relu=st.booleans(),
       clip=st.sampled_from([0.0, 6.0, 0.3, 1e30, -1.0]), same=st.booleans(),
       seed=st.integers(0, 2**31))
def test_add_bit_exact(machine, n, rounding, relu, clip, same, seed):
    """fqt_add_refresh (every byte of params and y's acc_scale), fqt_add_u8 with and without
    stats, and y's range commit from the stats."""
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    ar = _random_range(rng)
    br = ar.copy() if same else _random_range(rng)
    yr = _random_range(rng, -2, 1.5, alpha=0.1, mode=RANGE_ACC, relu=relu)
    _, pa, ya = _add_setup(b, ar, br, yr, relu=relu, clip_hi=clip, rounding=rounding,
                           seed=int(rng.integers(0, 2**32)))
    xa = b.put(rng.integers(0, 256, n, dtype=np.uint8))
    xb = b.put(rng.integers(0, 256, n, dtype=np.uint8))
    y = b.zeros(n)
    b.run("fqt_add_u8", xa, xb, y, n, pa, ya + STATS)
    if n:
        b.run("fqt_range_commit", ya)
    b.run("fqt_add_u8", xb, xa, y, n, pa, 0)  # stats NULL


# (s_a, s_b, s_y): equal scales, a tiny or a huge ratio (multipliers at their clamps,
# My > 1), the narrowest range fqt_range_params makes (2^-20 / 255)
ADD_EXTREMES = [(0.01, 0.01, 0.02), (1e-12, 1.0, 1e-3), (3.0, 1e-7, 1e5),
                (2.0**-20 / 255, 2.0**-20 / 255, 2.0**-20 / 255), (1.0, 2.0**-20 / 255, 1e-6),
                (5.0, 0.5, 1e-9), (1e30, 1.0, 1.0)]


@pytest.mark.parametrize("sa,sb,sy", ADD_EXTREMES)
def test_add_extreme_scales_bit_exact(machine, sa, sb, sy):
    rng = np.random.default_rng(17)
    b = Both(machine, rng)
    ar = record(RANGE_DTYPE, scale=sa, zero=3)
    br = record(RANGE_DTYPE, scale=sb, zero=250)
    yr = record(RANGE_DTYPE, scale=sy, zero=128)
    _, pa, _ = _add_setup(b, ar, br, yr, clip_hi=6.0, rounding=2, seed=99)
    n = 64
    y, st_ = b.zeros(n), b.zeros(8)
    b.run("fqt_add_u8", b.put(rng.integers(0, 256, n, dtype=np.uint8)),
          b.put(rng.integers(0, 256, n, dtype=np.uint8)), y, n, pa, st_)


@HSET
@given(n=st.integers(0, 70), lo=st.integers(0, 255), hi=st.integers(0, 255),
       seed=st.integers(0, 2**31))
def test_clip_backward_bit_exact(machine, n, lo, hi, seed):
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    q = record(QP_DTYPE, act_min=min(lo, hi), act_max=max(lo, hi), y_zero=min(lo, hi))
    er = range_record(-float(rng.uniform(0.01, 2)), float(rng.uniform(0.01, 2)))
    y = b.put(rng.integers(0, 256, n, dtype=np.uint8))
    e = b.put(rng.integers(0, 256, n, dtype=np.uint8))
    b.run("fqt_clip_backward", y, e, n, b.put(q), b.put(er))


@HSET
@given(n=st.integers(0, 40), rounding=ROUNDINGS, shared=st.booleans(),
       seed=st.integers(0, 2**31))
def test_mse_bit_exact(machine, n, rounding, shared, seed):
    """fqt_mse, then the error range's commit (real_min/real_max) as training does."""
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    yr = _random_range(rng)
    tr = yr if shared else _random_range(rng)  # autoencoder: target = input, one range
    ya, ta = b.put(yr), b.put(tr)
    ea = b.put(_random_range(rng, -4, 0, alpha=0.1, mode=RANGE_REAL))
    t = b.put(rng.integers(0, 256, max(n, 1), dtype=np.uint8))
    loss = b.put(record(LOSS_DTYPE, n=n, label=int(rng.integers(0, 9)), logits=ya, err=ea,
                        rounding=rounding, seed=int(rng.integers(0, 2**32)), target=t,
                        target_r=ta, p_label=0.5, argmax=-1))
    y, e = b.put(rng.integers(0, 256, n, dtype=np.uint8)), b.zeros(n)
    b.run("fqt_mse", y, e, loss)
    b.run("fqt_range_commit", ea)


@HSET
@given(clip=st.sampled_from([0.0, 6.0, 1.0, 0.05, 1e30, -2.0]), relu=st.booleans(),
       rounding=ROUNDINGS, n_in=st.integers(1, 20), n_out=st.integers(1, 10),
       seed=st.integers(0, 2**31))
def test_layer_refresh_clip_bit_exact(machine, clip, relu, rounding, n_in, n_out, seed):
    """fqt_layer_refresh with clip_hi, then the clipped forward and its backward mask."""
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    xr, wr = b.put(_random_range(rng)), b.put(_random_range(rng))
    yr = b.put(_random_range(rng, -2, 1, alpha=0.1, mode=RANGE_ACC, relu=relu))
    qf = b.put(record(QP_DTYPE, rounding=rounding, seed=int(rng.integers(0, 2**32))))
    b.run("fqt_layer_refresh", b.put(record(LAYER_DTYPE, x=xr, w=wr, y=yr, fwd=qf,
                                            relu=int(relu), clip_hi=clip)))
    y = b.zeros(n_out)
    b.run("fqt_fc_forward", b.put(rng.integers(0, 256, n_in, dtype=np.uint8)),
          b.put(rng.integers(0, 256, n_in * n_out, dtype=np.uint8)), 0, y, n_in, n_out, qf,
          yr + STATS)
    e = b.put(rng.integers(0, 256, n_out, dtype=np.uint8))
    b.run("fqt_clip_backward", y, e, n_out, qf, b.put(range_record(-1.0, 1.0)))


def test_softmax_with_the_longer_loss_struct(machine):
    """fqt_loss_t grew two fields at its end (target, target_r): the softmax kernel and its
    twin still agree, and ignore them."""
    rng = np.random.default_rng(4)
    b = Both(machine, rng)
    la, ea = b.put(range_record(-2.0, 3.0)), b.put(range_record(-1.0, 1.0, mode=RANGE_REAL))
    loss = b.put(record(LOSS_DTYPE, n=10, label=3, logits=la, err=ea, target=0xDEADBEEC,
                        target_r=0xDEADBEEC))
    b.run("fqt_softmax_xent", b.put(rng.integers(0, 256, 10, dtype=np.uint8)), b.zeros(10),
          loss)


def test_struct_layouts():
    """The dtypes against the C structs of fqt.h, counted by hand (ILP32, 4-byte fields):
    fqt_add_params_t 14 words; fqt_add_t 4 pointers, relu, clip_hi; fqt_layer_t 10 pointers,
    n_bias, relu, then the appended clip_hi; fqt_loss_t 9 words, then target, target_r.
    (The bit-exact tests read every field through both; this pins the order.)"""
    assert ADD_PARAMS_DTYPE.names == (
        "a_zero", "b_zero", "y_zero", "a_mult", "a_shift", "b_mult", "b_shift", "y_mult",
        "y_shift", "act_min", "act_max", "left_shift", "rounding", "seed")
    assert ADD_PARAMS_DTYPE.itemsize == 56
    assert ADD_DTYPE.names == ("a", "b", "y", "p", "relu", "clip_hi")
    assert ADD_DTYPE.itemsize == 24
    assert LAYER_DTYPE.fields["clip_hi"][1] == 48 and LAYER_DTYPE.itemsize == 52
    assert LOSS_DTYPE.fields["target"][1] == 36 and LOSS_DTYPE.fields["target_r"][1] == 40
    assert LOSS_DTYPE.itemsize == 44


@pytest.mark.parametrize("first", ["mcusim.fqt.twin_graph", "mcusim.fqt.twin"])
def test_twin_registers_graph_kernels_in_either_import_order(first):
    code = (f"import {first}\nfrom mcusim.fqt import twin\n"
            "assert {'fqt_add_u8', 'fqt_add_refresh', 'fqt_clip_backward', 'fqt_mse'} "
            "<= set(twin.KERNELS)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ the maths, by hand

# Ranges set directly: a: s 0.5 z 10; b: s 0.25 z 20; y: s 1 z 30.  Then s2 = 2 * 0.5 = 1,
# Ma = 0.5, Mb = 0.25, My = 2^-20 / 1 = 2^-20: every intermediate is exact, y = sum + 30
# where sum = 0.5 (a - 10) + 0.25 (b - 20) (the real result, in units of s_y = 1):
HAND_A = [14, 13, 0, 255, 255, 0, 9, 9]
HAND_B = [24, 21, 0, 0, 255, 255, 18, 20]
# 2 + 1, 1.5 + 0.25, -5 - 5, 122.5 - 5, 122.5 + 58.75, -5 + 58.75, -0.5 - 0.5, -0.5 + 0
HAND_SUM = [3.0, 1.75, -10.0, 117.5, 181.25, 53.75, -1.0, -0.5]
# nearest (half up): 3, 2, -10, 118, 181, 54, -1, 0;  + 30
HAND_NEAREST = [33, 32, 20, 148, 211, 84, 29, 30]
# floor: 3, 1, -10, 117, 181, 53, -1, -1;  + 30
HAND_FLOOR = [33, 31, 20, 147, 211, 83, 29, 29]


@pytest.mark.parametrize("relu,clip_hi,lo,hi", [
    (False, 0.0, 0, 255),
    (True, 0.0, 30, 255),    # ReLU: act_min = y_zero
    (False, 6.0, 0, 36),     # clip at 6: act_max = 30 + round(6 / 1)
    (True, 6.0, 30, 36),     # ReLU6
    (False, 2.6, 0, 33),     # 2.6 / 1 + 0.5 = 3.1: act_max = 30 + 3
    (False, 1000.0, 0, 255),  # beyond the uint8 range: 255
])
@pytest.mark.parametrize("rounding", [0, 1, 2])
def test_add_by_hand(machine, rounding, relu, clip_hi, lo, hi):
    rng = np.random.default_rng(1)
    b = Both(machine, rng)
    ar = record(RANGE_DTYPE, scale=0.5, zero=10)
    br = record(RANGE_DTYPE, scale=0.25, zero=20)
    yr = record(RANGE_DTYPE, scale=1.0, zero=30)
    _, pa, ya = _add_setup(b, ar, br, yr, relu=relu, clip_hi=clip_hi, rounding=rounding,
                           seed=7)
    p = _rec(machine, pa, ADD_PARAMS_DTYPE)
    # M = multiplier 2^(shift - 31): 0.5 = 2^30 2^-31, 0.25 = 2^30 2^-32, 2^-20 = 2^30 2^-50
    assert (p["a_mult"], p["a_shift"]) == (2**30, 0)
    assert (p["b_mult"], p["b_shift"]) == (2**30, -1)
    assert (p["y_mult"], p["y_shift"]) == (2**30, -19)
    assert (p["a_zero"], p["b_zero"], p["y_zero"], p["left_shift"]) == (10, 20, 30, 20)
    assert (p["act_min"], p["act_max"]) == (lo, hi)
    assert (p["rounding"], p["seed"]) == (rounding, 7)  # left alone
    assert _rec(machine, ya, RANGE_DTYPE)["acc_scale"] == 2.0**-20
    n = len(HAND_A)
    y, stats = b.zeros(n), b.zeros(8)
    b.run("fqt_add_u8", b.put(np.array(HAND_A, np.uint8)), b.put(np.array(HAND_B, np.uint8)),
          y, n, pa, stats)
    got = machine.read_array(y, np.uint8, n).astype(int)
    # the accumulators are sum * 2^20 exactly (unit 2^-20): min -10, max 181.25
    assert list(machine.read_array(stats, np.int32, 2)) == [-10 * 2**20, int(181.25 * 2**20)]
    nearest, floor = np.clip(HAND_NEAREST, lo, hi), np.clip(HAND_FLOOR, lo, hi)
    if rounding == 0:
        assert list(got) == list(nearest)
    elif rounding == 1:
        assert list(got) == list(floor)
    else:  # stochastic: floor or floor + 1, exact where the sum is an integer
        assert all(f <= g <= f + 1 for g, f in zip(got, floor, strict=True))
        exact = [i for i, s in enumerate(HAND_SUM) if s == int(s)]
        assert [got[i] for i in exact] == [nearest[i] for i in exact]


def test_add_input_rescale_rounds_to_nearest(machine):
    """The two input rescales round to nearest whatever p->rounding says (TFLite's
    MultiplyByQuantizedMultiplierSmallerThanOneExp rounds to nearest too).  a: s 1 z 0,
    b: s 2^-21 z 100, y: s 2^-19 z 100: s2 = 2, Ma = 1/2, Mb = 2^-22, unit = 2 / 2^20 =
    2^-19, My = 1.  With a = 0: acc = R_nearest((b - 100) 2^20 2^-22) = R_nearest(k / 4),
    y = acc + 100 exactly (floor output rounding changes nothing with My = 1)."""
    rng = np.random.default_rng(2)
    b = Both(machine, rng)
    _, pa, _ = _add_setup(b, record(RANGE_DTYPE, scale=1.0, zero=0),
                          record(RANGE_DTYPE, scale=2.0**-21, zero=100),
                          record(RANGE_DTYPE, scale=2.0**-19, zero=100), rounding=1)
    k = [1, 2, -2, 3, -3, 5, 6, -6, 0]
    # k / 4 = .25, .5, -.5, .75, -.75, 1.25, 1.5, -1.5, 0 -> half up: 0, 1, 0, 1, -1, 1, 2, -1, 0
    # (floor would give 0, 0, -1, 0, -1, 1, 1, -2, 0)
    want = [100, 101, 100, 101, 99, 101, 102, 99, 100]
    n = len(k)
    y = b.zeros(n)
    b.run("fqt_add_u8", b.put(np.zeros(n, np.uint8)), b.put((np.array(k) + 100).astype(np.uint8)),
          y, n, pa, 0)
    assert list(machine.read_array(y, np.uint8, n)) == want


def _act_max_reference(clip_hi: float, sy: np.float32, zy: int) -> tuple[int, int]:
    """[low, high] of min(255, zy + floor(clip_hi / sy + 1/2)) in exact arithmetic, widened
    by 1e-5 for float32's rounding of the quotient."""
    if clip_hi <= 0:
        return 255, 255
    t = Fraction(clip_hi) / Fraction(float(sy)) + Fraction(1, 2)
    lo, hi = int(t - Fraction(1, 10**5) * t), int(t + Fraction(1, 10**5) * t)
    return min(255, zy + lo), min(255, zy + hi)


@HSET
@given(n=st.integers(1, 64), rounding=ROUNDINGS, relu=st.booleans(),
       clip=st.sampled_from([0.0, 6.0, 0.5, 2.0]), seed=st.integers(0, 2**31))
def test_add_matches_float_reference(machine, n, rounding, relu, clip, seed):
    """y against the float64 value v = (sa (a - za) + sb (b - zb)) / sy + zy clamped to the
    activation bounds: within 1 LSB of round(v) in every mode, and tighter: nearest within
    half an LSB, floor in (v - 1, v], stochastic in (v - 1, v + 1) (plus 2e-3 LSB for the
    rescales' rounding at 2^-20 and float32 multipliers)."""
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    ar, br = _random_range(rng, -1.3, 0.7), _random_range(rng, -1.3, 0.7)
    yr = _random_range(rng, -1.3, 0.7)
    _, pa, _ = _add_setup(b, ar, br, yr, relu=relu, clip_hi=clip, rounding=rounding,
                          seed=int(rng.integers(0, 2**32)))
    a, bb = rng.integers(0, 256, n, dtype=np.uint8), rng.integers(0, 256, n, dtype=np.uint8)
    y = b.zeros(n)
    b.run("fqt_add_u8", b.put(a), b.put(bb), y, n, pa, 0)
    got = machine.read_array(y, np.uint8, n).astype(np.float64)
    p = _rec(machine, pa, ADD_PARAMS_DTYPE)
    sa, sb, sy = (float(r["scale"]) for r in (ar, br, yr))
    za, zb, zy = (int(r["zero"]) for r in (ar, br, yr))
    lo = zy if relu else 0
    amax_lo, amax_hi = _act_max_reference(clip, F4(sy), zy)
    assert p["act_min"] == lo and amax_lo <= p["act_max"] <= amax_hi
    hi = int(p["act_max"])
    v = (sa * (a.astype(np.float64) - za) + sb * (bb.astype(np.float64) - zb)) / sy + zy
    vc = np.clip(v, lo, hi)
    assert np.all(np.abs(got - np.clip(np.floor(v + 0.5), lo, hi)) <= 1)
    tol = 2e-3
    if rounding == 0:
        assert np.all(np.abs(got - vc) <= 0.5 + tol), got - vc
    elif rounding == 1:
        assert np.all((got <= vc + tol) & (got > vc - 1 - tol)), got - vc
    else:
        assert np.all(np.abs(got - vc) < 1 + tol), got - vc


def test_clip_backward_by_hand(machine):
    """Errors pass only strictly inside (act_min, act_max) = (10, 202); on either bound, and
    outside, they become the error's zero point 77."""
    rng = np.random.default_rng(3)
    b = Both(machine, rng)
    y = [10, 11, 42, 201, 202, 255, 0, 9, 203]
    e = [50, 51, 52, 53, 54, 55, 56, 57, 58]
    want = [77, 51, 52, 53, 77, 77, 77, 77, 77]
    q = record(QP_DTYPE, y_zero=10, act_min=10, act_max=202)
    ea = b.put(np.array(e, np.uint8))
    b.run("fqt_clip_backward", b.put(np.array(y, np.uint8)), ea, len(y), b.put(q),
          b.put(record(RANGE_DTYPE, scale=0.01, zero=77)))
    assert list(machine.read_array(ea, np.uint8, len(y))) == want


@pytest.mark.parametrize("clip_hi,relu,want", [
    # y real = w x with x = 1.0: [1, 7, -1, 0.0625]; y bytes = 10 + 32 y (s_y = 1/32)
    (6.0, True, [42, 202, 10, 12]),     # ReLU6: 7 -> 6 (10 + 192), -1 -> 0
    (0.0, True, [42, 234, 10, 12]),     # ReLU only: 7 -> 10 + 224
    (6.0, False, [42, 202, 0, 12]),     # clip without the ReLU: -1 -> 10 - 32 = -22 -> 0
    (100.0, True, [42, 234, 10, 12]),   # clip beyond the range: act_max 255
])
def test_relu6_forward_by_hand(machine, clip_hi, relu, want):
    """fqt_layer_refresh with clip_hi, then fqt_fc_forward.  x: s 1/16 z 0, w: s 1/16
    z 128, y: s 1/32 z 10.  acc scale 1/256, M = (1/256) / (1/32) = 1/8, all exact.
    act_max = 10 + round(6 / (1/32)) = 10 + 192 = 202: the real value 6.0 exactly."""
    rng = np.random.default_rng(8)
    b = Both(machine, rng)
    xr = b.put(record(RANGE_DTYPE, scale=1 / 16, zero=0))
    wr = b.put(record(RANGE_DTYPE, scale=1 / 16, zero=128))
    yr = b.put(record(RANGE_DTYPE, scale=1 / 32, zero=10))
    qf = b.put(record(QP_DTYPE))
    b.run("fqt_layer_refresh", b.put(record(LAYER_DTYPE, x=xr, w=wr, y=yr, fwd=qf,
                                            relu=int(relu), clip_hi=clip_hi)))
    q = _rec(machine, qf, QP_DTYPE)
    assert q["act_min"] == (10 if relu else 0)
    assert q["act_max"] == (202 if clip_hi == 6.0 else 255)
    w = [128 + 16, 128 + 7 * 16, 128 - 16, 128 + 1]  # real 1, 7, -1, 1/16
    y = b.zeros(4)
    b.run("fqt_fc_forward", b.put(np.array([16], np.uint8)), b.put(np.array(w, np.uint8)), 0,
          y, 1, 4, qf, 0)
    assert list(machine.read_array(y, np.uint8, 4)) == want


@pytest.mark.parametrize("sy,zy,clip_hi,want", [
    (6.0 / 255, 0, 6.0, 255),       # a [0, 6] range: 6 is its top byte (255 +- float error)
    (0.05, 0, 6.0, 120),            # 6 / 0.05 = 120 (float32 0.05 is 0.0500000007)
    (0.08, 3, 6.0, 78),             # 6 / 0.08 = 75 (float32: 75.0000017), + 3
    (0.1, 200, 6.0, 255),           # 200 + 60 > 255
    (0.25, 5, 0.3, 6),              # 0.3 / 0.25 = 1.2: rounds to 1
    (0.25, 5, 0.4, 7),              # 1.6: rounds to 2
])
def test_clip_act_max_by_hand(machine, sy, zy, clip_hi, want):
    rng = np.random.default_rng(6)
    b = Both(machine, rng)
    r = b.put(record(RANGE_DTYPE, scale=1.0, zero=0))
    yr = b.put(record(RANGE_DTYPE, scale=sy, zero=zy))
    qf = b.put(record(QP_DTYPE))
    b.run("fqt_layer_refresh", b.put(record(LAYER_DTYPE, x=r, w=r, y=yr, fwd=qf,
                                            clip_hi=clip_hi)))
    assert _rec(machine, qf, QP_DTYPE)["act_max"] == want
    # the Add's refresh derives the same bound from the same helper definition
    _, pa, _ = _add_setup(b, record(RANGE_DTYPE, scale=1.0), record(RANGE_DTYPE, scale=1.0),
                          record(RANGE_DTYPE, scale=sy, zero=zy), clip_hi=clip_hi)
    assert _rec(machine, pa, ADD_PARAMS_DTYPE)["act_max"] == want


def _mse_setup(b: Both, y, t, yr, tr, er, rounding=0, seed=0):
    n = len(y)
    ya, ta, ea = b.put(yr), b.put(tr), b.put(er)
    tgt = b.put(np.array(t, np.uint8))
    loss = b.put(record(LOSS_DTYPE, n=n, logits=ya, err=ea, rounding=rounding, seed=seed,
                        target=tgt, target_r=ta, p_label=0.75, argmax=-1))
    e = b.zeros(n)
    b.run("fqt_mse", b.put(np.array(y, np.uint8)), e, loss)
    return loss, e, ea


def test_mse_by_hand(machine):
    """y: s 0.5 z 10, y = [14, 10, 14] -> [2, 0, 2]; t: s 0.25 z 0, t = [4, 8, 8] -> [1, 2, 2];
    d = [1, -2, 0]; loss = (1 + 4 + 0) / 3 = 5/3; g = 2 d / 3 = [2/3, -4/3, 0].
    err: s 1/96 z 128: g / s = [64, -128, 0] -> [192, 0, 128]; real_min -4/3, real_max 2/3;
    argmax 0 (the first 14), p_label 0."""
    rng = np.random.default_rng(10)
    b = Both(machine, rng)
    loss, e, ea = _mse_setup(b, [14, 10, 14], [4, 8, 8],
                             record(RANGE_DTYPE, scale=0.5, zero=10),
                             record(RANGE_DTYPE, scale=0.25, zero=0),
                             record(RANGE_DTYPE, scale=1 / 96, zero=128, mode=RANGE_REAL))
    lr = _rec(machine, loss, LOSS_DTYPE)
    assert lr["loss"] == F4(5.0) / F4(3.0)  # one float32 division of an exact sum
    assert lr["p_label"] == 0 and lr["argmax"] == 0
    assert list(machine.read_array(e, np.uint8, 3)) == [192, 0, 128]
    er = _rec(machine, ea, RANGE_DTYPE)
    assert er["real_min"] == F4(-4.0) / F4(3.0) and er["real_max"] == F4(2.0) / F4(3.0)


@HSET
@given(n=st.integers(1, 40), rounding=ROUNDINGS, seed=st.integers(0, 2**31))
def test_mse_matches_float_reference(machine, n, rounding, seed):
    """The loss against numpy float64 mean((y - t)^2) of the dequantized tensors; the error
    bytes against g = 2 (y - t) / n quantized with the err range (nearest within half an LSB,
    floor in (v - 1, v], stochastic within 1, v = g / s_e + z_e clamped to [0, 255])."""
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    yr, tr = _random_range(rng, -2, 1), _random_range(rng, -2, 1)
    y, t = rng.integers(0, 256, n), rng.integers(0, 256, n)
    yv = (y - int(yr["zero"])) * float(yr["scale"])
    tv = (t - int(tr["zero"])) * float(tr["scale"])
    g = 2 * (yv - tv) / n
    span = max(float(np.abs(g).max()), 1e-6) * rng.uniform(0.3, 1.5)  # clipping sometimes
    er = range_record(-span, span, mode=RANGE_REAL)
    loss, e, ea = _mse_setup(b, y.astype(np.uint8), t.astype(np.uint8), yr, tr, er, rounding,
                             int(rng.integers(0, 2**32)))
    lr = _rec(machine, loss, LOSS_DTYPE)
    want = float(np.mean((yv - tv) ** 2))
    # float32 sums: relative 1e-5; plus the rounding of y and t themselves (2^-24 of their
    # size) where y - t cancels
    assert abs(float(lr["loss"]) - want) <= 1e-5 * want + 1e-6 * float(np.mean(yv**2 + tv**2))
    assert lr["argmax"] == int(np.argmax(y)) and lr["p_label"] == 0
    got = machine.read_array(e, np.uint8, n).astype(np.float64)
    v = np.clip(g / float(er["scale"]) + int(er["zero"]), 0, 255)
    tol = 1e-3
    if rounding == 0:
        assert np.all(np.abs(got - v) <= 0.5 + tol), got - v
    elif rounding == 1:
        assert np.all((got <= v + tol) & (got > v - 1 - tol)), got - v
    else:
        assert np.all(np.abs(got - v) < 1 + tol), got - v
    rr = _rec(machine, ea, RANGE_DTYPE)
    atol = 1e-5 * float(np.abs(g).max())
    assert np.isclose(rr["real_min"], min(0.0, g.min()), rtol=1e-5, atol=atol)
    assert np.isclose(rr["real_max"], max(0.0, g.max()), rtol=1e-5, atol=atol)


def test_twin_module_is_registered():
    """twin.KERNELS (what tests and the network's twin executor call) has the graph twins."""
    from mcusim.fqt import twin_graph

    for name, fn in twin_graph.GRAPH_KERNELS.items():
        assert twin.KERNELS[name] is fn
