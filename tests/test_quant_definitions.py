"""The quantization maths against its *definitions*, not against the other implementation.

tests/test_fqt_kernels.py checks that every compiled kernel and its numpy twin agree byte
for byte; a mistake made in both (say k = ceil(lambda N) in fqt_select_topk.c and in
twin.py) passes there.  Here every expected value comes from the method's definitions
(/work/shared/docs/fqt-method.md, "Quantization" and "Dynamic partial gradient updates";
kernels/fqt.h restates them) and is worked out by hand in the comments, then checked through
the twin AND through the compiled kernel on the emulated paper boards (one per core).

Definitions used (fqt-method.md):
  * real = s (q - z), q in [0, 255]; s = (fmax - fmin)/255, z = round(-fmin/s) clamped to
    [0, 255], with fmin <= 0 <= fmax enforced.
  * y = clamp(R(M acc) + z_y, lo, 255), lo = z_y with a fused ReLU, else 0; M is applied
    integer-only as M = multiplier * 2^(shift - 31) (fqt.h: "R(M * acc) with M = multiplier
    * 2^(shift - 31)"), so the exact real value before rounding is
    acc * multiplier / 2^(31 - shift).
  * R: round to nearest (the default, "ours"), floor (the paper's) or stochastic.
  * k = floor(min(lambda_min + |eps| (lambda_max - lambda_min), 1) N), k >= 1: the paper's
    formula is written with the floor brackets (fqt-method.md "Dynamic partial gradient
    updates"), and fqt.h says "k = floor(min(...) * N), at least 1".
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from mcusim.catalog import load_catalog
from mcusim.elf import ElfImage
from mcusim.fqt import twin
from mcusim.fqt.network import Program, Trainer, TwinExecutor
from mcusim.fqt.quant import (
    QP_DTYPE,
    RANGE_DTYPE,
    ROUND_FLOOR,
    ROUND_NEAREST,
    ROUND_STOCHASTIC,
    SELECT_DTYPE,
    multiplier_of,
    quantize_multiplier,
    range_params,
    record,
    requantize,
)
from mcusim.fqt.reference import FloatNet
from mcusim.machine import Machine
from mcusim.model.zoo import load_model
from mcusim.toolchain import Builder, find_toolchain

BOARDS = ("RP2040", "nRF52840", "MIMXRT1062")  # one per core: M0+, M4, M7
_MACHINES: dict[str, Machine] = {}


@pytest.fixture(scope="module", params=BOARDS)
def device(request):
    """The kernel image (default toolchain) loaded on a paper board, arena reset."""
    name = request.param
    if name not in _MACHINES:
        mcu = load_catalog().mcu(name)
        elf = Builder(find_toolchain()).build(mcu.core, [mcu])[0].elf
        _MACHINES[name] = Machine(mcu, ElfImage.open(elf))
    m = _MACHINES[name]
    m.reset_arena()
    return m


def _run_twin(m: Machine, lo: int, kernel: str, *args: int) -> twin.Memory:
    """The twin of `kernel` on a copy of the machine's arena [lo, current top)."""
    hi = m.alloc(0)
    mem = twin.Memory([(lo, hi - lo)])
    mem.write(lo, m.read(lo, hi - lo))
    twin.KERNELS[kernel](mem, *args)
    return mem


# ------------------------------------------------------------------ top-k selection

# (lambda_min, lambda_max, eps, N, k by hand).  eps is given (eps_mode 1); with
# lambda_min == lambda_max it does not matter.  Every product is at least 1e-3 away from an
# integer, so float32 rounding (~1e-7 relative) cannot move the floor.
TOPK_CASES = [
    # 0.1 * 25 = 2.5: floor 2 (ceil and round-half-up would give 3)
    (0.1, 0.1, 0.0, 25, 2),
    # 0.01 * 10 = 0.1: floor 0, clamped to k >= 1
    (0.01, 0.01, 0.0, 10, 1),
    # 0.0 * 5 = 0: clamped to 1
    (0.0, 0.0, 0.0, 5, 1),
    # N = 1: 0.05 -> 0 -> 1 (k = N = 1)
    (0.05, 0.05, 0.0, 1, 1),
    # lambda = 1: full training, k = N
    (1.0, 1.0, 0.0, 7, 7),
    # 0.305 * 10 = 3.05, just above the integer 3: floor 3 (ceil 4)
    (0.305, 0.305, 0.0, 10, 3),
    # 0.2999 * 10 = 2.999, just below 3: floor 2 (round-to-nearest would give 3)
    (0.2999, 0.2999, 0.0, 10, 2),
    # 0.5 * 9 = 4.5: floor 4 (round-half-up and ceil give 5)
    (0.5, 0.5, 0.0, 9, 4),
    # 0.1 + 0.5 (0.9 - 0.1) = 0.5; 0.5 * 21 = 10.5: floor 10
    (0.1, 0.9, 0.5, 21, 10),
    # |eps| is used: eps = -0.5 gives the same 10
    (0.1, 0.9, -0.5, 21, 10),
    # 0.1 + 3.0 * 0.8 = 2.5, min(., 1) = 1: k = N = 21
    (0.1, 0.9, 3.0, 21, 21),
    # 0.2 + 0.25 * 0.6 = 0.35; 0.35 * 30 = 10.5: floor 10
    (0.2, 0.8, 0.25, 30, 10),
    # 0.25 * 8 = 2 exactly: 2 (no off-by-one at an exact integer)
    (0.25, 0.25, 0.0, 8, 2),
]

Z_ERR = 100  # zero point of the error tensor in these tests


def _errors(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Errors of N structures (P = 1) with distinct magnitudes |e - z| = 2 (c + 1),
    alternating sign, in shuffled order; returns (e, magnitude)."""
    mag = 2 * (rng.permutation(n) + 1)
    sign = np.where(np.arange(n) % 2 == 0, 1, -1)
    e = (Z_ERR + sign * mag).astype(np.uint8)
    return e, mag


def _selection_by_hand(mag: np.ndarray, k: int) -> list[int]:
    """The structures of the k largest magnitudes, in ascending order (the kept list)."""
    return sorted(int(c) for c in np.argsort(-mag, kind="stable")[:k])


def _put_select(m: Machine, e: np.ndarray, n: int, lmin: float, lmax: float, eps: float,
                eps_mode: int = 1, max_mean: float = 0.0) -> tuple[int, int, int]:
    """The selection record, the error tensor and the kept list's buffer."""
    er = m.put(record(RANGE_DTYPE, zero=Z_ERR))
    magbuf = m.put(np.zeros(max(n, 1), np.uint32))
    kept = m.put(np.zeros(max(n, 2), np.uint16))
    sel = m.put(record(SELECT_DTYPE, n_struct=n, n_pix=1, er=er, lambda_min=lmin,
                       lambda_max=lmax, eps_mode=eps_mode, eps=eps, max_mean=max_mean,
                       mag=magbuf, kept=kept))
    ebuf = m.put(e)
    return sel, ebuf, kept


@pytest.mark.parametrize(("lmin", "lmax", "eps", "n", "k"), TOPK_CASES,
                         ids=[f"l{c[0]}-{c[1]}-eps{c[2]}-N{c[3]}-k{c[4]}" for c in TOPK_CASES])
def test_topk_k_is_the_floor_of_lambda_n(device, lmin, lmax, eps, n, k):
    rng = np.random.default_rng(n * 7 + k)
    e, mag = _errors(n, rng)
    lo = device.alloc(0)
    sel, ebuf, kept = _put_select(device, e, n, lmin, lmax, eps)
    mem = _run_twin(device, lo, "fqt_select_topk", ebuf, sel)
    device.call("fqt_select_topk", ebuf, sel)
    want = _selection_by_hand(mag, k)
    for who, k_got, kept_got, e_got in (
            ("twin", int(mem.rec(sel, SELECT_DTYPE)["k"]), mem.view(kept, np.uint16, n),
             mem.view(ebuf, np.uint8, n)),
            ("kernel", int(device.read_array(sel, SELECT_DTYPE, 1)[0]["k"]),
             device.read_array(kept, np.uint16, n), device.read_array(ebuf, np.uint8, n))):
        assert k_got == k, f"{who} on {device.mcu.name}: k = {k_got}, by hand {k}"
        assert list(kept_got[:k]) == want, f"{who}: the kept structures"
        np.testing.assert_array_equal(e_got, e, err_msg=f"{who}: the error is only read")


def test_topk_layer_error_epsilon_by_hand(device):
    """eps_mode 0 (ours, the default): eps = the mean error magnitude / the largest mean
    seen.  N = 20, P = 1, magnitudes 2, 4, ..., 40: sum 2 * 210 = 420, mean 21.
    lambda_min = 0.1, lambda_max = 0.46 (products kept 0.2 away from integers):
      max_mean 0 (first sample): max_mean becomes 21, eps = 1 -> t = lambda_max = 0.46,
        0.46 * 20 = 9.2 -> k = 9.
      max_mean 42: eps = 0.5 -> t = 0.1 + 0.5 * 0.36 = 0.28, 0.28 * 20 = 5.6 -> k = 5."""
    n = 20
    for max_mean, want_eps, want_k, want_max in ((0.0, 1.0, 9, 21.0), (42.0, 0.5, 5, 42.0)):
        device.reset_arena()
        e, mag = _errors(n, np.random.default_rng(5))
        assert int(mag.sum()) == 420
        lo = device.alloc(0)
        sel, ebuf, kept = _put_select(device, e, n, 0.1, 0.46, 0.0, eps_mode=0,
                                      max_mean=max_mean)
        mem = _run_twin(device, lo, "fqt_select_topk", ebuf, sel)
        device.call("fqt_select_topk", ebuf, sel)
        for who, rec, kept_got in (
                ("twin", mem.rec(sel, SELECT_DTYPE), mem.view(kept, np.uint16, n)),
                ("kernel", device.read_array(sel, SELECT_DTYPE, 1)[0],
                 device.read_array(kept, np.uint16, n))):
            assert float(rec["max_mean"]) == want_max, who
            assert float(rec["eps"]) == want_eps, who
            assert int(rec["k"]) == want_k, (who, device.mcu.name)
            assert list(kept_got[:want_k]) == _selection_by_hand(mag, want_k), who


# ------------------------------------------------------------------ requantization

def _exact(acc: int, mult: int, shift: int) -> Fraction:
    """acc * M exactly, M = multiplier * 2^(shift - 31) (fqt.h)."""
    return Fraction(acc * mult, 1 << (31 - shift))


def _random_multipliers(rng: np.random.Generator, count: int) -> list[tuple[int, int]]:
    """(multiplier, shift) of float32 M drawn log-uniformly in [2^-16, 2): generic
    mantissas, so acc * M has well-spread fractional parts."""
    out = []
    for _ in range(count):
        m = np.float32(2.0 ** rng.uniform(-16, 1))
        out.append(quantize_multiplier(float(m)))
    return out


def _error_stats(values: list[int], exact: list[Fraction]) -> tuple[float, float, float]:
    err = [v - x for v, x in zip(values, exact, strict=True)]
    return float(min(err)), float(max(err)), float(sum(err) / len(err))


# Derivations (in LSB of the output):
#   nearest:  R = floor(x + 1/2)  =>  x - 1/2 < R <= x + 1/2: error in (-1/2, +1/2], and
#             with fractional parts spread evenly over [0, 1) its mean is 0 (within a few
#             standard errors: sd of a uniform error is 1/sqrt(12) = 0.29, so with 4000
#             samples the standard error is 0.0046 and 0.02 is > 4 of them).
#   floor:    R = floor(x)  =>  x - 1 < R <= x: error in (-1, 0], mean -1/2 (same margin).
#   stochastic: R = floor(x + u), u uniform in [0, 1)  =>  error in (-1, 1), E[R] = x:
#             mean 0 (sd of the error <= 1/2: standard error 0.008, bound 0.04).
BOUNDS = {ROUND_NEAREST: (-0.5, 0.5, 0.0, 0.02), ROUND_FLOOR: (-1.0, 0.0, -0.5, 0.02),
          ROUND_STOCHASTIC: (-1.0, 1.0, 0.0, 0.04)}


def _check(values, exact, rounding, who):
    lo, hi, mean_want, tol = BOUNDS[rounding]
    emin, emax, mean = _error_stats(values, exact)
    err = [v - x for v, x in zip(values, exact, strict=True)]
    if rounding == ROUND_NEAREST:
        assert all(Fraction(-1, 2) < d <= Fraction(1, 2) for d in err), (who, emin, emax)
    elif rounding == ROUND_FLOOR:
        assert all(-1 < d <= 0 for d in err), (who, emin, emax)
    else:
        assert all(-1 < d < 1 for d in err), (who, emin, emax)
    assert lo <= emin and emax <= hi
    assert abs(mean - mean_want) < tol, f"{who}: mean error {mean:+.4f} LSB, want " \
        f"{mean_want:+.1f} +- {tol}"


@pytest.mark.parametrize("rounding", [ROUND_NEAREST, ROUND_FLOOR, ROUND_STOCHASTIC])
def test_twin_requantize_error_against_exact_value(rounding):
    rng = np.random.default_rng(100 + rounding)
    values, exact = [], []
    for mult, shift in _random_multipliers(rng, 40):
        total = 31 - shift
        accs = rng.integers(-(1 << 22), 1 << 22, 100, dtype=np.int64)
        # keep |acc * M| < 2^24 so the result is far from int32 overflow
        accs = [int(a) for a in accs if abs(_exact(int(a), mult, shift)) < 1 << 24]
        noise = rng.integers(0, 1 << 32, len(accs), dtype=np.uint64)
        got = requantize(np.array(accs, np.int64).astype(np.int32), mult, shift, rounding,
                         noise.astype(np.uint32) if rounding == ROUND_STOCHASTIC else None)
        values += [int(v) for v in got]
        exact += [_exact(a, mult, shift) for a in accs]
        assert 1 <= total <= 62
    assert len(values) > 3000
    _check(values, exact, rounding, "twin requantize")


def _fc_requantize(m: Machine, accs: np.ndarray, mult: int, shift: int, rounding: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """R(M acc) for many acc in one fqt_fc_forward call, on the device and in the twin.
    n_in = 1, x = [x_zero + 0], so every dot product is 0 and acc = bias[o]; y_zero = 128
    and |R| <= 100, so y - 128 = R exactly (no clamp)."""
    m.reset_arena()
    lo = m.alloc(0)
    n = len(accs)
    x = m.put(np.array([7], np.uint8))
    w = m.put(np.full(n, 3, np.uint8))
    bias = m.put(accs.astype(np.int32))
    y = m.put(np.zeros(n, np.uint8))
    q = m.put(record(QP_DTYPE, x_zero=7, w_zero=0, y_zero=128, multiplier=mult, shift=shift,
                     act_min=0, act_max=255, rounding=rounding, seed=seed))
    mem = _run_twin(m, lo, "fqt_fc_forward", x, w, bias, y, 1, n, q, 0)
    m.call("fqt_fc_forward", x, w, bias, y, 1, n, q, 0)
    dev = m.read_array(y, np.uint8, n).astype(np.int64) - 128
    tw = mem.view(y, np.uint8, n).astype(np.int64) - 128
    return dev, tw


@pytest.mark.parametrize("rounding", [ROUND_NEAREST, ROUND_FLOOR, ROUND_STOCHASTIC])
def test_kernel_requantize_error_against_exact_value(device, rounding):
    """The same bounds through the compiled fqt_fc_forward (its fqt_out_u8 path)."""
    rng = np.random.default_rng(200 + rounding)
    values, twin_values, exact = [], [], []
    for mult, shift in _random_multipliers(rng, 12):
        # acc with |acc * M| <= 100: acc in +-100 / M
        bound = int(100 * (1 << (31 - shift)) // mult)
        accs = rng.integers(-bound, bound + 1, 400, dtype=np.int64)
        dev, tw = _fc_requantize(device, accs, mult, shift, rounding,
                                 int(rng.integers(0, 1 << 32)))
        values += [int(v) for v in dev]
        twin_values += [int(v) for v in tw]
        exact += [_exact(int(a), mult, shift) for a in accs]
    _check(values, exact, rounding, f"kernel on {device.mcu.name}")
    _check(twin_values, exact, rounding, "twin")


@pytest.mark.parametrize("shift", [-20, -5, 0, 1, 5])
def test_kernel_fqt_requantize_direct(device, shift):
    """fqt_requantize itself over shifts -20..5 (total 31 - shift = 26..51 bits, both sides
    of 32 for the stochastic noise alignment): nearest within (-1/2, 1/2], floor within
    (-1, 0]."""
    rng = np.random.default_rng(300 + shift)
    mult = int(rng.integers(1 << 30, 1 << 31))
    bound = min((1 << 31) - 1, int(1000 * (1 << (31 - shift)) // mult))
    for rounding in (ROUND_NEAREST, ROUND_FLOOR):
        accs = [int(a) for a in rng.integers(-bound, bound + 1, 60, dtype=np.int64)]
        got = [device.call("fqt_requantize", a, mult, shift, rounding, 0).return_signed
               for a in accs]
        exact = [_exact(a, mult, shift) for a in accs]
        err = [g - x for g, x in zip(got, exact, strict=True)]
        if rounding == ROUND_NEAREST:
            assert all(Fraction(-1, 2) < d <= Fraction(1, 2) for d in err)
        else:
            assert all(-1 < d <= 0 for d in err)


def test_requantize_by_hand():
    """A few values worked by hand.  M = 0.5 is multiplier 2^30, shift 0 (2^30 * 2^-31).
      nearest: 0.5 * 7 = 3.5 -> 4 (ties go up: floor(3.5 + 0.5)); 0.5 * -7 = -3.5 -> -3;
               0.5 * 6 = 3 -> 3.
      floor:   3.5 -> 3; -3.5 -> -4; 3 -> 3.
    M = 0.75 (3 * 2^29, shift 0): 0.75 * 10 = 7.5 -> nearest 8, floor 7; 0.75 * -10 = -7.5 ->
    nearest -7, floor -8."""
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(0.75) == (3 << 29, 0)
    assert multiplier_of(np.float32(0.375)) == (3 << 29, -1)  # 0.75 * 2^-1
    cases = [((1 << 30, 0), 7, 4, 3), ((1 << 30, 0), -7, -3, -4), ((1 << 30, 0), 6, 3, 3),
             ((3 << 29, 0), 10, 8, 7), ((3 << 29, 0), -10, -7, -8)]
    for (mult, shift), acc, nearest, floor in cases:
        assert int(requantize(acc, mult, shift, ROUND_NEAREST)) == nearest
        assert int(requantize(acc, mult, shift, ROUND_FLOOR)) == floor


# ------------------------------------------------------------------ saturation

# M = 0.5 (multiplier 2^30, shift 0), y_zero = 10, nearest rounding, act_max 255:
#   acc   R(0.5 acc)   + 10   clamp [0, 255]
#   490      245        255     255   (the largest unclamped value)
#   491      246 (245.5 rounds up)  256 -> 255
#   492      246        256     255
#   10^6   500000    500010     255
#   -20      -10          0       0
#   -21      -10 (-10.5 rounds up)   0 -> 0
#   -22      -11         -1       0
#   -10^6  -500000   -499990      0
#   0          0         10      10
# with a fused ReLU (act_min = y_zero = 10): -4 -> -2 + 10 = 8 -> 10; 6 -> 3 + 10 = 13.
SAT_ACCS = [490, 491, 492, 10**6, -20, -21, -22, -10**6, 0]
SAT_WANT = [255, 255, 255, 255, 0, 0, 0, 0, 10]
RELU_ACCS = [-4, 6, -10**6, 10**6]
RELU_WANT = [10, 13, 10, 255]


@pytest.mark.parametrize(("relu", "accs", "want"), [(False, SAT_ACCS, SAT_WANT),
                                                     (True, RELU_ACCS, RELU_WANT)])
def test_saturation_at_0_and_255(device, relu, accs, want):
    n = len(accs)
    device.reset_arena()
    lo = device.alloc(0)
    x = device.put(np.array([0], np.uint8))
    w = device.put(np.zeros(n, np.uint8))
    bias = device.put(np.array(accs, np.int32))
    y = device.put(np.zeros(n, np.uint8))
    q = device.put(record(QP_DTYPE, x_zero=0, w_zero=0, y_zero=10, multiplier=1 << 30,
                          shift=0, act_min=10 if relu else 0, act_max=255,
                          rounding=ROUND_NEAREST))
    mem = _run_twin(device, lo, "fqt_fc_forward", x, w, bias, y, 1, n, q, 0)
    device.call("fqt_fc_forward", x, w, bias, y, 1, n, q, 0)
    assert list(device.read_array(y, np.uint8, n)) == want, device.mcu.name
    assert list(mem.view(y, np.uint8, n)) == want
    qp = record(QP_DTYPE, x_zero=0, w_zero=0, y_zero=10, multiplier=1 << 30, shift=0,
                act_min=10 if relu else 0, act_max=255, rounding=ROUND_NEAREST)
    assert list(twin.out_u8(np.array(accs, np.int32), qp, np.arange(n))) == want


# ------------------------------------------------------------------ scale and zero point

# (fmin, fmax) -> (s, z) by the definition s = (fmax - fmin)/255, z = round(-fmin/s):
#   [-0.25, 0.75]: s = 1/255, -fmin/s = 63.75 -> 64 (floor would give 63)
#   [-1, 3]:       s = 4/255, 63.75 -> 64
#   [-0.2, 0.8]:   s = 1/255, 51 -> 51
#   [0.5, 2]:      fmin <= 0 enforced: [0, 2], s = 2/255, z = 0
#   [-2, -1]:      fmax >= 0 enforced: [-2, 0], s = 2/255, z = 255
#   [-3, 1]:       s = 4/255, 191.25 -> 191
ZERO_CASES = [(-0.25, 0.75, 1 / 255, 64), (-1.0, 3.0, 4 / 255, 64), (-0.2, 0.8, 1 / 255, 51),
              (0.5, 2.0, 2 / 255, 0), (-2.0, -1.0, 2 / 255, 255), (-3.0, 1.0, 4 / 255, 191)]


@pytest.mark.parametrize(("fmin", "fmax", "s", "z"), ZERO_CASES)
def test_scale_and_zero_point(device, fmin, fmax, s, z):
    got_s, got_z = range_params(fmin, fmax)
    assert got_z == z and float(got_s) == pytest.approx(s, rel=1e-6)
    device.reset_arena()
    lo = device.alloc(0)
    r = device.put(record(RANGE_DTYPE, fmin=fmin, fmax=fmax))
    mem = _run_twin(device, lo, "fqt_range_params", r)
    device.call("fqt_range_params", r)
    for who, rec in (("kernel", device.read_array(r, RANGE_DTYPE, 1)[0]),
                     ("twin", mem.rec(r, RANGE_DTYPE))):
        assert int(rec["zero"]) == z, (who, device.mcu.name)
        assert float(rec["scale"]) == pytest.approx(s, rel=1e-6), who


@pytest.mark.parametrize("m", [0.5, 0.75, 1 / 3, 3.0e-4, 1.7])
def test_multiplier_represents_m_exactly(device, m):
    """fqt_multiplier: multiplier in [2^30, 2^31) and multiplier * 2^(shift - 31) equals the
    float32 M exactly (its 24-bit mantissa shifted left by 7)."""
    f = np.float32(m)
    device.reset_arena()
    mp = device.put(np.array([f], np.float32))
    out = device.put(np.zeros(2, np.int32))
    device.call("fqt_multiplier", mp, out, out + 4)
    mult, shift = (int(v) for v in device.read_array(out, np.int32, 2))
    assert (1 << 30) <= mult < (1 << 31)
    assert Fraction(mult) * Fraction(2) ** (shift - 31) == Fraction(float(f))
    assert multiplier_of(f) == (mult, shift)


# ------------------------------------------------------------------ a network's forward

def _net_with(net: FloatNet, weights: dict) -> FloatNet:
    """The same layers with other weights and zero biases (to propagate error bounds)."""
    return FloatNet(net.spec, {k: (weights[k], np.zeros_like(b))
                               for k, (_w, b) in net.params.items()})


def test_quantized_forward_is_close_to_float_reference():
    """digits-cnn's forward pass in the twin (nearest rounding) against the float32
    reference (mcusim/fqt/reference.py) on the same (dequantized) inputs, 8 inputs.

    1. Worst case, every element of every layer (rigorous).  With W~ = W + dW the
    quantized weights (|dW| <= s_w: rounding s_w/2, plus up to s_w/2 where the
    representable range s_w [-z, 255 - z] misses [wmin, wmax] because z was rounded) and
    x~ = x + dx the layer's quantized input:
        W~ x~ - W x = W~ dx + dW x  =>  |err_pre| <= |W~| |dx| + s_w |x|   (elementwise)
    (conv: the same per im2col patch, zero padding in both).  Requantizing adds at most
    s_y (s_y/2 rounding to nearest, s_y/2 for a calibrated endpoint the rounded zero point
    misses), M (float32 s_w s_x / s_y, two roundings, exact 24-bit mantissa) adds under
    |y| 2^-21, and ReLU and max pooling are 1-Lipschitz (max pooling: the window's largest
    input error).  The ranges are calibrated on these very inputs, so no true value lies
    outside them.

    2. Typical size (relative error).  The worst case adds every rounding error with the
    same sign (about 6 per logit here: useless as a relative bound).  Rounding errors are
    independent and uniform, variance s^2/12, so to first order the variances propagate
    linearly:  var_out = W^2 var_in + (s_w^2/12) x^2 + s_y^2/12, ReLU does not increase
    an error, max pooling is bounded by the sum of its window's variances (4 x the
    largest).  This predicted RMS error of the logits is an over-estimate (ReLU zeroes
    the error of inactive units).  Asserted: the observed RMS error over 8 inputs x 10
    logits is at most 1.5 x the prediction (slack for sampling 80 errors), and the
    relative error |y_q - y_f| / |y_f| is at most 1.5 x predicted RMS / RMS of the logits
    (about 2 % for this network)."""
    spec = load_model("digits-cnn")
    rng = np.random.default_rng(42)
    x_all = (rng.integers(0, 256, (8, *spec.input_shape)) / 255.0).astype(np.float32)
    net = FloatNet.init(spec, seed=3)
    program = Program.build(spec, net, calibration=x_all)
    program.layout((0x2000_0000, 0x2100_0000), (0x1000_0000, 0x1100_0000))
    ex = TwinExecutor(program)
    trainer = Trainer(program, ex)
    trainer.initialise()

    def rng_of(name):
        return np.frombuffer(ex.read(program.buffers[name].addr, RANGE_DTYPE.itemsize),
                             RANGE_DTYPE)[0]

    s_w = {L.name: float(program.buffers[f"{L.name}.w.r"].data["scale"])
           for L in spec.layers if L.has_weights}
    params = net.params
    net_abs = _net_with(net, {k: np.abs(w) + s_w[k] for k, (w, _b) in params.items()})
    net_sw = _net_with(net, {k: np.full_like(w, s_w[k]) for k, (w, _b) in params.items()})
    net_w2 = _net_with(net, {k: w * w for k, (w, _b) in params.items()})
    net_v = _net_with(net, {k: np.full_like(w, s_w[k] ** 2 / 12) for k, (w, _b)
                            in params.items()})
    obs, pred, logits = [], [], []
    for x in x_all:
        xq = np.round(x.reshape(-1) * 255).astype(np.uint8)  # input range [0, 1]: s 1/255
        trainer.set_input(xq, 0)
        trainer._run("forward")
        ref = net.forward(x)
        bound = np.zeros(spec.input_shape, np.float32)  # the input is exact
        var = np.zeros(spec.input_shape, np.float32)
        a_in = x.reshape(spec.input_shape)
        got = None
        for i, L in enumerate(spec.layers):
            if L.type == "flatten":
                bound, var = bound.reshape(1, 1, -1), var.reshape(1, 1, -1)
                a_in = ref[i]
                continue
            if L.type == "maxpool":
                bound = net._layer(L, bound)  # the window's largest input error
                var = net._layer(L, var) * (L.kernel[0] * L.kernel[1])
                rr = rng_of(_range_of_input(program, spec, i))
            else:
                rr = rng_of(f"{L.name}.y.r")
                s_y = float(rr["scale"])
                bound = net_abs._layer(L, bound) + net_sw._layer(L, np.abs(a_in)) + s_y \
                    + np.abs(ref[i]) * 2.0 ** -21
                var = net_w2._layer(L, var) + net_v._layer(L, a_in * a_in) + s_y * s_y / 12
            q = np.frombuffer(ex.read(program.buffers[f"{L.name}.y"].addr, L.out_size),
                              np.uint8)
            got = ((q.astype(np.float64) - int(rr["zero"])) * float(rr["scale"])) \
                .reshape(ref[i].shape)
            over = np.abs(got - ref[i]) - bound
            assert over.max() <= 1e-6, f"{L.name}: error exceeds its bound by {over.max():.4g}"
            a_in = ref[i]
        obs.append(got.reshape(-1) - ref[-1].reshape(-1))
        pred.append(var.reshape(-1))
        logits.append(ref[-1].reshape(-1))
    obs_rms = float(np.sqrt(np.mean(np.square(obs))))
    pred_rms = float(np.sqrt(np.mean(pred)))
    logit_rms = float(np.sqrt(np.mean(np.square(logits))))
    assert obs_rms <= 1.5 * pred_rms, (obs_rms, pred_rms)
    rel = float(np.linalg.norm(obs) / np.linalg.norm(logits))
    assert rel <= 1.5 * pred_rms / logit_rms, (rel, pred_rms / logit_rms)
    assert 1.5 * pred_rms / logit_rms < 0.05  # the bound itself is a meaningful one


def _range_of_input(program: Program, spec, i: int) -> str:
    """The range record of layer i's input (a max pool keeps its input's range)."""
    for j in range(i - 1, -1, -1):
        name = f"{spec.layers[j].name}.y.r"
        if name in program.buffers:
            return name
    return "input.r"
