"""The integer weight update (fqt_update, kernels/fqt.h "Weight update") against its
definition in real numbers.

The kernel and the twin agree bit for bit (tests/test_fqt_kernels.py); this checks what
both compute against the float64 maths they approximate: the statistics (mean exactly, sd
within the 2^k of dropping g's low k bits), the weight range (within a 1/256 of a
quantization step of s_old per weight) and every new weight byte: equal to
clamp(round(r / s_new) + z_new) of r = (w - z_old) s_old - (g - mu) step, except where that
real value lies within 0.05 of a rounding boundary (the fixed-point error is far smaller:
1/256 of s_old per weight, 2^-14 of the step, 2^-15 of the rescale), where the two may
differ by one.
"""

from __future__ import annotations

import numpy as np
import pytest

from mcusim.fqt import twin
from mcusim.fqt.quant import RANGE_DTYPE, RANGE_REAL, UPDATE_DTYPE, range_record, record

F = np.float32
BASE = 0x2000_0000


def _run(w: np.ndarray, g: np.ndarray, *, rounding: int, lr: float, s: float,
         mu0: np.ndarray | None = None, sigma0: np.ndarray | None = None):
    """One fqt_update over N structures (rows of w, g) in twin memory: returns the new
    bytes, step, mu, sigma and the weight range record after the update."""
    N, S = w.shape
    mem = twin.Memory([(BASE, 0x100000)])
    off, addrs = BASE, {}
    for name, arr in (("w", w.reshape(-1)), ("gw", g.reshape(-1).astype(np.int32)),
                      ("mu", np.zeros(N, F) if mu0 is None else mu0),
                      ("sigma", np.zeros(N, F) if sigma0 is None else sigma0),
                      ("bias_stats", np.zeros(2, F)), ("step", np.zeros(N, F)),
                      ("wr", range_record(-s * 128, s * 127, alpha=0.5, mode=RANGE_REAL))):
        mem.write(off, np.ascontiguousarray(arr).tobytes())
        addrs[name] = off
        off += (arr.nbytes + 7) & ~7
    wr_before = np.frombuffer(mem.read(addrs["wr"], RANGE_DTYPE.itemsize), RANGE_DTYPE)[0].copy()
    u = record(UPDATE_DTYPE, n_struct=N, struct_size=S, lr=lr, alpha_norm=0.8,
               rounding=rounding, seed=12345, **addrs)
    mem.write(off, u.tobytes())
    twin.fqt_update(mem, off)

    def view(name, dtype, n):
        return np.frombuffer(mem.read(addrs[name], np.dtype(dtype).itemsize * n), dtype).copy()

    wr = np.frombuffer(mem.read(addrs["wr"], RANGE_DTYPE.itemsize), RANGE_DTYPE)[0]
    return (view("w", np.uint8, N * S).reshape(N, S), view("step", F, N), view("mu", F, N),
            view("sigma", F, N), wr_before, wr, view("gw", np.int32, N * S))


@pytest.mark.parametrize("mag", [3, 1 << 10, 1 << 20, (1 << 31) - 1])
@pytest.mark.parametrize("S", [1, 9, 72, 784])
def test_statistics_are_the_rows_mean_and_sd(mag, S):
    rng = np.random.default_rng(S + mag % 1000)
    g = rng.integers(-mag, mag, (4, S), dtype=np.int64).astype(np.int32)
    g[:, 0] = mag  # every row reaches the magnitude: k as large as it gets
    for row in g:
        mean, sd, k = twin._upd_stats(row, S)
        g64 = row.astype(np.float64)
        assert mean == F(g64.sum() / S) or abs(float(mean) - g64.mean()) <= \
            abs(g64.mean()) * 2.0 ** -23
        # |h 2^k - g| < 2^k per entry and sd does not see a common shift: |sd - sd_f| < 2^k
        assert abs(float(sd) - g64.std()) <= 2.0 ** k + 1e-6 * g64.std()
        assert k == max(0, int(np.abs(row.astype(np.int64)).max()).bit_length() - 15)


@pytest.mark.parametrize("rounding", [0, 1])  # nearest, floor
@pytest.mark.parametrize("seed", range(6))
def test_new_weights_are_the_requantized_update(rounding, seed):
    rng = np.random.default_rng(seed)
    N, S = 6, int(rng.choice([9, 72, 300]))
    w = rng.integers(0, 256, (N, S), dtype=np.uint8)
    g = rng.integers(-(1 << int(rng.integers(4, 24))), 1 << 20, (N, S)).astype(np.int32)
    g[0] = 0  # a still structure
    s_old = F(rng.choice([0.001, 0.02, 0.5]))
    lr = float(rng.choice([0.001, 0.01, 0.1]))
    mu0 = rng.normal(0, 1000, N).astype(F)
    sigma0 = rng.uniform(100, 1e5, N).astype(F)
    new, step, mu, _, before, wr, gw = _run(w, g, rounding=rounding, lr=lr, s=float(s_old),
                                            mu0=mu0, sigma0=sigma0)
    assert float(before["scale"]) == pytest.approx(float(s_old), rel=1e-6)
    assert step[0] == 0 and np.all(step[1:] > 0) and not gw.any()
    z_old = int(before["zero"])
    # the update in real numbers, from the twin's step and mu (checked above)
    r = (w.astype(np.float64) - z_old) * float(s_old) - \
        (g.astype(np.float64) - mu.astype(np.float64)[:, None]) * step.astype(np.float64)[:, None]
    r[0] = (w[0].astype(np.float64) - z_old) * float(s_old)
    # V's resolution is s_old / 256; the step's multiplier A has 15 significant bits
    steps = np.abs((g.astype(np.float64) - mu[:, None]) * step[:, None])
    tol = 2 * float(s_old) / 256 + steps.max() * 2.0 ** -13 + 1e-9
    assert float(wr["real_min"]) == pytest.approx(min(0.0, r.min()), abs=tol)
    assert float(wr["real_max"]) == pytest.approx(max(0.0, r.max()), abs=tol)
    t = r / float(wr["scale"]) + int(wr["zero"]) + (0.5 if rounding == 0 else 0.0)
    want = np.clip(np.floor(t), 0, 255)
    frac = t - np.floor(t)
    clear = (frac > 0.05) & (frac < 0.95)
    assert clear.mean() > 0.3  # not vacuous (tiny steps with floor sit near integers)
    assert np.array_equal(new[clear], want[clear].astype(np.uint8))
    assert np.abs(new.astype(int) - want.astype(int)).max() <= 1


def test_stochastic_rounding_is_unbiased():
    """Stochastic rounding of the update: the mean new byte over many weights with the same
    real value t is t (the noise is uniform in [0, 1) at 2^-24 resolution)."""
    N, S = 1, 4096
    w = np.full((N, S), 100, np.uint8)
    g = np.full((N, S), 1000, np.int32)
    g[0, ::2] = 1001  # sd > 0
    new, step, mu, _, before, wr, _ = _run(w, g, rounding=2, lr=0.01, s=0.01)
    z_old = int(before["zero"])
    r = (w.astype(np.float64) - z_old) * 0.01 - (g - float(mu[0])) * float(step[0])
    t = r / float(wr["scale"]) + int(wr["zero"])
    assert abs(new.astype(float).mean() - t.mean()) < 0.03
    assert set(np.unique(new)) <= {int(np.floor(t.min())), int(np.floor(t.max())) + 1} | \
        set(range(int(np.floor(t.min())), int(np.floor(t.max())) + 2))
