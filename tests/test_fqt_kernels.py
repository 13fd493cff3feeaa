"""Every training kernel against its numpy twin, byte for byte over the whole arena:
the compiled kernel runs in Unicorn, the twin on a copy of the same memory, and afterwards
every byte (outputs, statistics, scratch) must agree.  M0+ (generic C), M4 and M7 (DSP
path), both toolchains; hypothesis draws shapes, strides, paddings, zero points, rounding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcusim.fqt import twin
from mcusim.fqt.quant import (
    LAYER_DTYPE,
    LOSS_DTYPE,
    QP_DTYPE,
    RANGE_ACC,
    RANGE_DTYPE,
    RANGE_REAL,
    SELECT_DTYPE,
    SHAPE_DTYPE,
    UPDATE_DTYPE,
    quantize_multiplier,
    range_params,
    range_record,
    record,
)
from mcusim.machine import Machine

HSET = settings(max_examples=12, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

class Both:
    """Buffers in the machine's arena; run() calls kernel and twin on identical memory."""

    def __init__(self, m: Machine, rng: np.random.Generator) -> None:
        m.reset_arena()
        self.m = m
        self.rng = rng
        self.lo = m.alloc(0)
        m.write(self.lo, rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())  # no stale zeros

    def put(self, arr: np.ndarray) -> int:
        return self.m.put(np.array(arr, copy=True))

    def zeros(self, nbytes: int) -> int:
        return self.put(np.zeros(max(nbytes, 4), np.uint8))

    def run(self, kernel: str, *args: int):
        hi = self.m.alloc(0)  # above: free RAM the machine paints for stack measurement
        mem = twin.Memory([(self.lo, hi - self.lo)])
        mem.write(self.lo, self.m.read(self.lo, hi - self.lo))
        r = self.m.call(kernel, *args)
        twin.KERNELS[kernel](mem, *args)
        got, want = self.m.read(self.lo, hi - self.lo), mem.read(self.lo, hi - self.lo)
        if got != want:
            diff = [i for i in range(len(got)) if got[i] != want[i]]
            pytest.fail(f"{kernel} on {self.m.mcu.name}: {len(diff)} bytes differ, first at "
                        f"arena+{diff[0]}: device {got[diff[0]]} twin {want[diff[0]]}")
        return r


def _qp(rng, real, relu=False, rounding=0):
    mult, shift = quantize_multiplier(real)
    zy = int(rng.integers(0, 256))
    return record(QP_DTYPE, x_zero=int(rng.integers(0, 256)), w_zero=int(rng.integers(0, 256)),
                  y_zero=zy, multiplier=mult, shift=shift, act_min=zy if relu else 0,
                  act_max=255, rounding=rounding, seed=int(rng.integers(0, 2**32)))


def _selection(b: Both, rng: np.random.Generator, n: int, k: int | None) -> tuple[int, np.ndarray]:
    """A selection record (fqt_select_t) keeping k random structures of n, as
    fqt_select_topk leaves it (kept ascending, k set), and the kept indices; k None: (0,
    all) -- no selection."""
    if k is None:
        return 0, np.arange(n)
    kept = np.sort(rng.choice(n, size=k, replace=False)).astype(np.uint16)
    room = np.full(n, 0xBEEF, np.uint16)  # entries from k on: never read
    room[:k] = kept
    rec = record(SELECT_DTYPE, n_struct=n, n_pix=1, k=k, kept=b.put(room))
    return b.put(rec), kept.astype(np.int64)


def _geometry(draw_h, draw_w, kh, kw, sh, sw, pt, pl, pb, pr):
    oh = (draw_h + pt + pb - kh) // sh + 1
    ow = (draw_w + pl + pr - kw) // sw + 1
    return oh, ow


conv_shapes = st.tuples(st.integers(1, 7), st.integers(1, 7), st.integers(1, 5),
                        st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
                        st.integers(1, 3), st.integers(1, 3), st.integers(0, 2),
                        st.integers(0, 2), st.integers(0, 2), st.integers(0, 2))


def _shape_rec(h, w, cin, cout, kh, kw, sh, sw, pt, pl, pb, pr):
    pt, pb, pl, pr = min(pt, kh - 1), min(pb, kh - 1), min(pl, kw - 1), min(pr, kw - 1)
    oh, ow = _geometry(h, w, kh, kw, sh, sw, pt, pl, pb, pr)
    if oh < 1 or ow < 1:
        return None
    return record(SHAPE_DTYPE, in_h=h, in_w=w, in_c=cin, out_h=oh, out_w=ow, out_c=cout,
                  k_h=kh, k_w=kw, stride_h=sh, stride_w=sw, pad_top=pt, pad_left=pl)


@HSET
@given(shape=conv_shapes, rounding=st.sampled_from([0, 1, 2]), relu=st.booleans(),
       bias=st.booleans(), depthwise=st.booleans(), seed=st.integers(0, 2**31))
def test_conv_forward(machine, shape, rounding, relu, bias, depthwise, seed):
    rng = np.random.default_rng(seed)
    h, w, cin, cout, kh, kw, *rest = shape
    if depthwise:
        cout = cin
    s = _shape_rec(h, w, cin, cout, kh, kw, *rest)
    if s is None:
        return
    b = Both(machine, rng)
    nout = int(s["out_h"] * s["out_w"] * cout)
    nw = cin * kh * kw if depthwise else cout * kh * kw * cin
    x = b.put(rng.integers(0, 256, h * w * cin, dtype=np.uint8))
    wt = b.put(rng.integers(0, 256, nw, dtype=np.uint8))
    bq = b.put(rng.integers(-5000, 5000, cout).astype(np.int32)) if bias else 0
    y, sh_, q = b.zeros(nout), b.put(s), b.put(_qp(rng, 30.0 / (4000 * np.sqrt(nw)), relu,
                                                    rounding))
    stats = b.zeros(8)
    if depthwise:
        b.run("fqt_dwconv2d_forward", x, wt, bq, y, sh_, q, stats)
    else:
        patch = b.zeros(twin.conv2d_forward_scratch(kh, kw, cin, cout))
        b.run("fqt_conv2d_forward", x, wt, bq, y, sh_, q, patch, stats)


@HSET
@given(shape=conv_shapes, rounding=st.sampled_from([0, 1, 2]), bias=st.booleans(),
       depthwise=st.booleans(), sparsity=st.floats(0, 0.9), keep=st.none() | st.floats(0, 1),
       seed=st.integers(0, 2**31))
def test_conv_backward(machine, shape, rounding, bias, depthwise, sparsity, keep, seed):
    """keep: the fraction of output channels a selection keeps (None: no selection)."""
    rng = np.random.default_rng(seed)
    h, w, cin, cout, kh, kw, *rest = shape
    if depthwise:
        cout = cin
    if keep is not None:
        cout = cout + 4  # room for 4 or more kept filters (the patch path of the gradients)
        if depthwise:
            cin = cout
    s = _shape_rec(h, w, cin, cout, kh, kw, *rest)
    if s is None:
        return
    b = Both(machine, rng)
    sel, _ = _selection(b, rng, cout, None if keep is None else max(1, int(keep * cout)))
    nout = int(s["out_h"] * s["out_w"] * cout)
    nw = cin * kh * kw if depthwise else cout * kh * kw * cin
    q = _qp(rng, 20.0 / (4000 * np.sqrt(nw)), False, rounding)
    e = rng.integers(0, 256, nout, dtype=np.uint8)
    e[rng.random(nout) < sparsity] = q["x_zero"]  # pruned errors are skipped: same result
    x = b.put(rng.integers(0, 256, h * w * cin, dtype=np.uint8))
    wt = b.put(rng.integers(0, 256, nw, dtype=np.uint8))
    ea, ei, sh_, qa = b.put(e), b.zeros(h * w * cin), b.put(s), b.put(q)
    qw = q.copy()
    qw["w_zero"] = q["x_zero"]
    qwa = b.put(qw)
    gw = b.put(rng.integers(-1000, 1000, nw).astype(np.int32))
    gb = b.put(rng.integers(-1000, 1000, cout).astype(np.int32)) if bias else 0
    stats = b.zeros(8)
    if depthwise:
        b.run("fqt_dwconv2d_backward_error", wt, ea, ei, sh_, qa, stats, sel)
        b.run("fqt_dwconv2d_backward_weights", x, ea, gw, gb, sh_, qwa, sel)
    else:
        acc = b.zeros(4 * w * cin)
        patch = b.zeros(kh * kw * cin)
        b.run("fqt_conv2d_backward_error", wt, ea, ei, sh_, qa, acc, stats, sel)
        b.run("fqt_conv2d_backward_weights", x, ea, gw, gb, sh_, qwa, patch, sel)


@pytest.mark.parametrize("shape", [(9, 11, 1, 5, 1, 1, 1, 1), (8, 13, 1, 9, 1, 2, 1, 2),
                                   (7, 6, 8, 6, 1, 1, 1, 1), (6, 9, 3, 5, 2, 1, 0, 2)])
def test_conv_backward_interior(machine, shape):
    """Inputs large enough for interior windows (the gradients' register-blocked lists),
    Cin = 1 3x3 among them, which the small hypothesis shapes rarely reach."""
    h, w, cin, cout, sh, sw, pt, pl = shape
    rng = np.random.default_rng(h * 100 + w)
    s = _shape_rec(h, w, cin, cout, 3, 3, sh, sw, pt, pl, 1, 1)
    b = Both(machine, rng)
    nout, nw = int(s["out_h"] * s["out_w"] * cout), cout * 9 * cin
    q = _qp(rng, 20.0 / (4000 * np.sqrt(nw)), False, 0)
    e = rng.integers(0, 256, nout, dtype=np.uint8)
    e[rng.random(nout) < 0.6] = q["x_zero"]
    qw = q.copy()
    qw["w_zero"] = q["x_zero"]
    x = b.put(rng.integers(0, 256, h * w * cin, dtype=np.uint8))
    wt = b.put(rng.integers(0, 256, nw, dtype=np.uint8))
    ea, ei, sh_, qa, qwa = b.put(e), b.zeros(h * w * cin), b.put(s), b.put(q), b.put(qw)
    gw = b.put(rng.integers(-1000, 1000, nw).astype(np.int32))
    gb = b.put(rng.integers(-1000, 1000, cout).astype(np.int32))
    b.run("fqt_conv2d_backward_error", wt, ea, ei, sh_, qa, b.zeros(4 * w * cin), b.zeros(8),
          0)
    b.run("fqt_conv2d_backward_weights", x, ea, gw, gb, sh_, qwa, b.zeros(9 * cin), 0)


@HSET
@given(n_in=st.integers(1, 70), n_out=st.integers(1, 12), rounding=st.sampled_from([0, 1, 2]),
       relu=st.booleans(), sparsity=st.floats(0, 0.9), keep=st.none() | st.floats(0, 1),
       seed=st.integers(0, 2**31))
def test_fc_forward_and_backward(machine, n_in, n_out, rounding, relu, sparsity, keep, seed):
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    sel, _ = _selection(b, rng, n_out, None if keep is None else max(1, int(keep * n_out)))
    q = _qp(rng, 30.0 / (4000 * np.sqrt(n_in)), relu, rounding)
    x = b.put(rng.integers(0, 256, n_in, dtype=np.uint8))
    wt = b.put(rng.integers(0, 256, n_in * n_out, dtype=np.uint8))
    bq = b.put(rng.integers(-5000, 5000, n_out).astype(np.int32))
    y, qa, stats = b.zeros(n_out), b.put(q), b.zeros(8)
    b.run("fqt_fc_forward", x, wt, bq, y, n_in, n_out, qa, stats)
    e = rng.integers(0, 256, n_out, dtype=np.uint8)
    e[rng.random(n_out) < sparsity] = q["x_zero"]
    ea, ei, acc = b.put(e), b.zeros(n_in), b.zeros(4 * n_in)
    b.run("fqt_fc_backward_error", wt, ea, ei, n_in, n_out, qa, acc, stats, sel)
    gw = b.put(rng.integers(-1000, 1000, n_in * n_out).astype(np.int32))
    gb = b.put(rng.integers(-1000, 1000, n_out).astype(np.int32))
    b.run("fqt_fc_backward_weights", x, ea, gw, gb, n_in, n_out, qa, sel)


@HSET
@given(h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 4), ph=st.integers(1, 3),
       pw=st.integers(1, 3), rounding=st.sampled_from([0, 1, 2]), seed=st.integers(0, 2**31))
def test_pools(machine, h, w, c, ph, pw, rounding, seed):
    if ph > h or pw > w:
        return
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    s = record(SHAPE_DTYPE, in_h=h, in_w=w, in_c=c, out_h=h // ph, out_w=w // pw, out_c=c,
               k_h=ph, k_w=pw, stride_h=ph, stride_w=pw)
    nout = (h // ph) * (w // pw) * c
    xv = rng.integers(0, 6, h * w * c, dtype=np.uint8) * 40  # many ties in the max
    x, y, sa = b.put(xv), b.zeros(nout), b.put(s)
    q = _qp(rng, 1.0 / (ph * pw), False, rounding)
    q["y_zero"] = q["x_zero"]
    b.run("fqt_maxpool_forward", x, y, sa)
    b.run("fqt_avgpool_forward", x, y, sa, b.put(q))
    er = b.put(range_record(-0.3, 0.7))
    e, ei = b.put(rng.integers(0, 256, nout, dtype=np.uint8)), b.zeros(h * w * c)
    b.run("fqt_maxpool_backward", x, e, ei, sa, er)
    b.run("fqt_avgpool_backward", e, ei, sa, er)
    b.run("fqt_relu_backward", x, ei, h * w * c, b.put(range_record(-1, 1)), er, 0)


@pytest.mark.parametrize("rounding,want", [(0, [14, 11, 1]), (1, [13, 10, 0]),
                                            (2, None)])
def test_avgpool_by_hand(machine, rounding, want):
    """Average pooling against its definition, computed by hand: 2x7x1 input, x_zero =
    y_zero = 10, 2x2 windows (the last column is not covered), M = 1/4.
    Windows of x - 10: [0, 4, 10, 1] mean 3.75; [2, 0, 0, 0] mean 0.5; [-10, -10, -10, -8]
    mean -9.5.  Nearest rounds half up: 4, 1, -9; floor: 3, 0, -10; stochastic: one of the
    two.  Backward: each window position gets its output's error byte, the uncovered column
    the error's zero point (the 1/4 is in e_in's scale, not in the bytes)."""
    rng = np.random.default_rng(5)
    b = Both(machine, rng)
    x = np.array([[10, 14, 12, 10, 0, 0, 99],
                  [20, 11, 10, 10, 0, 2, 250]], np.uint8)
    s = record(SHAPE_DTYPE, in_h=2, in_w=7, in_c=1, out_h=1, out_w=3, out_c=1, k_h=2, k_w=2,
               stride_h=2, stride_w=2)
    mult, shift = quantize_multiplier(0.25)
    q = record(QP_DTYPE, x_zero=10, y_zero=10, multiplier=mult, shift=shift, act_min=0,
               act_max=255, rounding=rounding, seed=12345)
    y, sa = b.zeros(3), b.put(s)
    b.run("fqt_avgpool_forward", b.put(x.reshape(-1)), y, sa, b.put(q))
    got = list(machine.read_array(y, np.uint8, 3))
    if want is None:
        assert all(v in (lo, lo + 1) for v, lo in zip(got, [13, 10, 0], strict=True)), got
    else:
        assert got == want
    er = record(RANGE_DTYPE, scale=0.01, zero=77)
    ei = b.zeros(14)
    b.run("fqt_avgpool_backward", b.put(np.array([200, 7, 128], np.uint8)), ei, sa, b.put(er))
    row = [200, 200, 7, 7, 128, 128, 77]
    assert list(machine.read_array(ei, np.uint8, 14)) == row + row


@HSET
@given(h=st.integers(1, 8), w=st.integers(1, 8), c=st.integers(1, 3), ph=st.integers(1, 4),
       pw=st.integers(1, 4), glob=st.booleans(), rounding=st.sampled_from([0, 1, 2]),
       lo=st.floats(-3, 0), hi=st.floats(1e-3, 3), seed=st.integers(0, 2**31))
def test_avgpool_matches_float_mean(machine, h, w, c, ph, pw, glob, rounding, lo, hi, seed):
    """The average pool as the network sets it up (fqt_layer_refresh with the constant
    weight range 1/(ph pw) and y's range derived from x's by fqt_range_derive), against the
    float mean of the dequantized window: within half a step (nearest) or one step (floor,
    stochastic; floor never above the mean)."""
    ph, pw = (h, w) if glob else (min(ph, h), min(pw, w))
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    oh, ow = h // ph, w // pw
    xr = b.put(range_record(lo, hi))
    yr = b.put(range_record(0.0, 1.0, derive=1.0))
    wr = b.put(record(RANGE_DTYPE, scale=np.float32(1.0) / np.float32(ph * pw)))
    qf = b.put(record(QP_DTYPE, rounding=rounding, act_max=255,
                      seed=int(rng.integers(0, 2**32))))
    b.run("fqt_range_derive", yr, xr)
    b.run("fqt_layer_refresh", b.put(record(LAYER_DTYPE, x=xr, w=wr, y=yr, fwd=qf)))
    xv = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    s = record(SHAPE_DTYPE, in_h=h, in_w=w, in_c=c, out_h=oh, out_w=ow, out_c=c, k_h=ph,
               k_w=pw, stride_h=ph, stride_w=pw)
    y = b.zeros(oh * ow * c)
    b.run("fqt_avgpool_forward", b.put(xv.reshape(-1)), y, b.put(s), qf)
    rx = machine.read_array(xr, RANGE_DTYPE, 1)[0]
    ry = machine.read_array(yr, RANGE_DTYPE, 1)[0]
    assert ry["scale"] == rx["scale"] and ry["zero"] == rx["zero"]
    scale, zero = float(rx["scale"]), int(rx["zero"])
    real = (xv.astype(np.float64) - zero) * scale
    mean = real[:oh * ph, :ow * pw].reshape(oh, ph, ow, pw, c).mean(axis=(1, 3))
    got = (machine.read_array(y, np.uint8, oh * ow * c).astype(np.float64) - zero) * scale
    err = got.reshape(oh, ow, c) - mean
    # the mean lies in x's range, which is y's: no clipping; 1e-5 covers float32 M
    tol = 1e-5 * scale
    if rounding == 0:
        assert np.all(np.abs(err) <= 0.5 * scale + tol), err / scale
    elif rounding == 1:
        assert np.all(err <= tol) and np.all(err > -scale - tol), err / scale
    else:
        assert np.all(np.abs(err) < scale + tol), err / scale


@HSET
@given(n=st.integers(2, 12), scale=st.floats(1e-3, 0.5), rounding=st.sampled_from([0, 1, 2]),
       seed=st.integers(0, 2**31))
def test_softmax_xent(machine, n, scale, rounding, seed):
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    lr = range_record(-scale * 100, scale * 155)
    err = range_record(-1.0, 1.0, alpha=0.1, mode=RANGE_REAL)
    la, ea = b.put(lr), b.put(err)
    loss = record(LOSS_DTYPE, n=n, label=int(rng.integers(0, n)), logits=la, err=ea,
                  rounding=rounding, seed=int(rng.integers(0, 2**32)))
    logits, e = b.put(rng.integers(0, 256, n, dtype=np.uint8)), b.zeros(n)
    b.run("fqt_softmax_xent", logits, e, b.put(loss))
    b.run("fqt_range_commit", ea)


@HSET
@given(N=st.integers(1, 20), P=st.integers(1, 9), lmin=st.floats(0, 1), lmax=st.floats(0, 1),
       mask=st.booleans(), touched=st.booleans(), seed=st.integers(0, 2**31))
def test_select_topk(machine, N, P, lmin, lmax, mask, touched, seed):
    """mask: the ReLU mask applied on the fly (y, yr set); touched: the batch's record."""
    lmin, lmax = min(lmin, lmax), max(lmin, lmax)
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    er = b.put(range_record(-0.5, 0.5))
    mag = b.zeros(4 * N)
    y = b.put(rng.integers(0, 256, N * P, dtype=np.uint8)) if mask else 0
    yr = b.put(range_record(-float(rng.uniform(0, 2)), 1.0)) if mask else 0
    tb = b.put((rng.random(N) < 0.3).astype(np.uint8)) if touched else 0
    sel = b.put(record(SELECT_DTYPE, n_struct=N, n_pix=P, er=er, lambda_min=lmin,
                       lambda_max=lmax, max_mean=float(rng.uniform(0, 100)), mag=mag,
                       kept=b.zeros(2 * N), y=y, yr=yr, touched=tb))
    e = b.put(rng.integers(100, 160, N * P, dtype=np.uint8))  # small range: ties
    b.run("fqt_select_topk", e, sel)


def test_bias_requantization_saturates(machine):
    """bias_q = round(bias / (s_w s_x)) saturates at +-(2^31 - 1) when a range has collapsed
    (an all-zero input after a frozen ReLU: x's scale is 2^-20 / 255).  The twin once
    rounded 2^31 - 1 to 2^31 in float32 and wrapped to -2^31."""
    rng = np.random.default_rng(11)
    b = Both(machine, rng)
    xr = b.put(range_record(0.0, 0.0))
    wr = b.put(range_record(0.0, 2.0))
    yr = b.put(range_record(-1.0, 1.0))
    bias = b.put(np.array([0.1, -0.1, 0.0, 1e-12, 2e-8], np.float32))
    bq = b.zeros(20)
    layer = record(LAYER_DTYPE, x=xr, w=wr, y=yr, fwd=b.zeros(QP_DTYPE.itemsize), bias=bias,
                   bias_q=bq, n_bias=5)
    b.run("fqt_layer_refresh", b.put(layer))
    acc_scale = machine.read_array(yr, RANGE_DTYPE, 1)[0]["acc_scale"]
    assert abs(acc_scale / (2.0**-19 / 255**2) - 1) < 1e-6  # (2^-20 / 255) (2 / 255)
    # 2e-8 / acc_scale = 2e-8 * 65025 * 2^19 = 681.8: 682; 1e-12: 0.03: 0
    assert list(machine.read_array(bq, np.int32, 5)) == [2**31 - 1, -(2**31 - 1), 0, 0, 682]


def test_loss_eps_by_hand(machine):
    """ε of epsilon = "loss": the loss over the largest loss seen so far (0 before any)."""
    rng = np.random.default_rng(9)
    b = Both(machine, rng)
    mx = b.put(np.zeros(1, np.float32))
    sel = b.put(record(SELECT_DTYPE, n_struct=4, n_pix=1, eps_mode=1))
    for loss, want_max, want_eps in ((0.0, 0.0, 0.0), (2.0, 2.0, 1.0), (0.5, 2.0, 0.25),
                                     (3.0, 3.0, 1.0), (1.5, 3.0, 0.5)):
        b.run("fqt_loss_eps", b.put(record(LOSS_DTYPE, n=4, loss=loss)), mx, sel)
        assert machine.read_array(mx, np.float32, 1)[0] == want_max
        assert machine.read_array(sel, SELECT_DTYPE, 1)[0]["eps"] == want_eps


@HSET
@given(N=st.integers(1, 8), S=st.integers(1, 90), rounding=st.sampled_from([0, 1, 2]),
       inactive=st.floats(0, 1), first=st.booleans(), touched=st.booleans(),
       lut=st.booleans(), seed=st.integers(0, 2**31))
def test_update_and_refresh(machine, N, S, rounding, inactive, first, touched, lut, seed):
    """touched: the partial updates' record (untouched rows: zero, never read); lut: the
    table of the still structures' new bytes."""
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    f4 = np.float32
    w = b.put(rng.integers(0, 256, N * S, dtype=np.uint8))
    g = rng.integers(-(1 << 20), 1 << 20, (N, S)).astype(np.int32)
    g[rng.random(N) < inactive] = 0
    tb = 0
    if touched:  # every row with a gradient is touched, and some without
        marks = (np.any(g != 0, axis=1) | (rng.random(N) < 0.3)).astype(np.uint8)
        tb = b.put(marks)
    gw, gb = b.put(g.reshape(-1)), b.put(rng.integers(-3000, 3000, N).astype(np.int32))
    bias = b.put(rng.normal(0, 0.1, N).astype(f4))
    mu = b.put(np.zeros(N, f4) if first else rng.normal(0, 100, N).astype(f4))
    sigma = b.put(np.zeros(N, f4) if first else rng.uniform(1, 1e5, N).astype(f4))
    bst, step = b.put(np.array([0.0, 0.0] if first else [3.0, 40.0], f4)), b.zeros(4 * N)
    wr = b.put(range_record(-0.4, 0.5, alpha=0.01, mode=RANGE_REAL))
    u = b.put(record(UPDATE_DTYPE, w=w, gw=gw, gb=gb, bias=bias, mu=mu, sigma=sigma,
                     bias_stats=bst, step=step, wr=wr, n_struct=N, struct_size=S, lr=0.01,
                     alpha_norm=0.8, rounding=rounding, seed=int(rng.integers(0, 2**32)),
                     touched=tb, lut=b.zeros(1024) if lut else 0))
    b.run("fqt_update", u)
    xr = b.put(range_record(0, 1.0))
    yr = b.put(range_record(-2.0, 3.0, alpha=0.1, mode=RANGE_ACC, relu=True))
    eo, ei = b.put(range_record(-1.0, 1.0)), b.put(range_record(-0.2, 0.3, mode=RANGE_ACC))
    qf, qbe, qbw = b.zeros(QP_DTYPE.itemsize), b.zeros(QP_DTYPE.itemsize), b.zeros(QP_DTYPE.itemsize)
    bq = b.zeros(4 * N)
    layer = b.put(record(LAYER_DTYPE, x=xr, w=wr, y=yr, e_out=eo, e_in=ei, fwd=qf,
                         bwd_err=qbe, bwd_w=qbw, bias=bias, bias_q=bq, n_bias=N, relu=1))
    b.run("fqt_layer_refresh", layer)
    b.run("fqt_fc_forward", b.put(rng.integers(0, 256, S, dtype=np.uint8)), w, bq,
          b.zeros(N), S, N, qf, yr + 24)
    assert machine.read_array(yr + 24, np.int32, 2)[0] <= machine.read_array(yr + 24,
                                                                            np.int32, 2)[1]
    b.run("fqt_range_commit", yr)


def test_float_helpers(machine):
    """sqrt / exp / ln of the kernels (M0+: integer sqrt and soft-float) equal the twin's."""
    rng = np.random.default_rng(3)
    f4 = np.float32
    special = np.array([0.0, 1e-45, 1e-40, 1.17549435e-38, 0.25, 1.0, 2.0, 3.0, 1e30,
                        3.4e38], f4)
    xs = np.concatenate([special, rng.uniform(0, 1e6, 300).astype(f4),
                         (10 ** rng.uniform(-40, 38, 300)).astype(f4)])
    b = Both(machine, rng)
    x, y = b.put(xs), b.zeros(4 * xs.size)
    b.run("fqt_mathf_v", 0, x, y, xs.size)
    got = machine.read_array(y, np.float32, xs.size)
    assert np.array_equal(got, np.sqrt(xs))  # correctly rounded, as numpy's
    ex = np.concatenate([rng.uniform(-90, 0, 400), [-87.0, -0.0, 0.0]]).astype(f4)
    x2 = b.put(ex)
    b.run("fqt_mathf_v", 1, x2, y, ex.size)
    assert np.allclose(machine.read_array(y, np.float32, ex.size), np.exp(ex.astype(np.float64)),
                       rtol=5e-6, atol=1e-37)  # degree-5 polynomial: |rel. error| < 3e-6
    b.run("fqt_mathf_v", 2, x, y, xs.size)
    lg = machine.read_array(y, np.float32, xs.size)
    normal = xs >= np.float32(2.0 ** -126)  # ln of 0 and subnormals is clamped at ln 2^-126
    assert np.allclose(lg[normal], np.log(xs[normal].astype(np.float64)), rtol=2e-6, atol=5e-7)
    assert np.all(lg[~normal] == lg[3])


@HSET
@given(acc=st.integers(-(1 << 31), (1 << 31) - 1), mult=st.integers(1 << 30, (1 << 31) - 1),
       shift=st.integers(-31, 30), rounding=st.sampled_from([0, 1, 2]),
       nz=st.integers(0, 2**32 - 1))
def test_requantize_all_modes(machine, acc, mult, shift, rounding, nz):
    r = machine.call("fqt_requantize", acc, mult, shift, rounding, nz)
    assert r.return_signed == twin.fqt_requantize(None, acc, mult, shift, rounding, nz)
    h = machine.call("fqt_hash32", nz)
    assert h.return_value == int(twin.hash32(np.uint32(nz)))


@HSET
@given(shift=st.integers(-31, 30), mult=st.integers(1, (1 << 31) - 1),
       rounding=st.sampled_from([0, 1, 2]), clamp=st.booleans(), seed=st.integers(0, 2**31))
def test_backward_requantization(machine, shift, mult, rounding, clamp, seed):
    """The backward kernels' requantization of a run of accumulators (one decision of
    rounding mode and shift per call; ARMv6-M: the 64-bit product from 16-bit halves) is
    fqt_out_u8 per element, over the int32 range of accumulators (where R(M acc) + y_zero
    fits int32)."""
    rng = np.random.default_rng(seed)
    b = Both(machine, rng)
    # |M| < 2^shift: R(M acc) + y_zero must fit int32 (C adds in int32, as every kernel)
    top = 2**31 if shift < 0 else 2**(30 - shift)
    acc = np.concatenate([
        np.array([0, 1, -1, top - 1, -top, top // 2, -top // 2, 65535, -65536], np.int64),
        rng.integers(-top, top, 40), rng.integers(-70000, 70000, 40)])
    acc = np.clip(acc, -top, top - 1).astype(np.int32)
    zy = int(rng.integers(0, 256))
    lo, hi = (int(rng.integers(0, 128)), int(rng.integers(128, 256))) if clamp else (0, 255)
    q = record(QP_DTYPE, y_zero=zy, multiplier=mult, shift=shift, act_min=lo, act_max=hi,
               rounding=rounding, seed=int(rng.integers(0, 2**32)))
    b.run("fqt_requantize_v", b.put(acc), b.zeros(acc.size), acc.size, b.put(q), b.zeros(8))


# fmin, fmax -> scale, zero, derived by hand in float32 from fqt_range_params:
# lo = min(fmin, 0), hi = max(fmax, 0) (NaN compares false: 0), width = hi - lo (at least
# 2^-20), s = width / 255, z = (0 - lo) / s + 0.5, clamped to [0, 255] in float before the
# conversion (NaN: 0)
DIVERGED_RANGES = [
    (-np.inf, 1.0, np.inf, 0),      # inf / inf = NaN -> 0
    (0.0, np.inf, np.inf, 0),       # 0 / inf = 0, + 0.5 -> 0
    (-3e38, 0.0, np.float32(3e38) / np.float32(255), 255),  # (3e38 / s) + 0.5 >= 255
    (np.nan, np.nan, np.float32(2.0**-20) / np.float32(255), 0),  # width 0 -> 2^-20
    (-1.0, np.nan, np.float32(1.0) / np.float32(255), 255),  # 255 + 0.5
]


@pytest.mark.parametrize("fmin,fmax,scale,zero", DIVERGED_RANGES)
def test_range_params_of_a_diverged_range(machine, fmin, fmax, scale, zero):
    """A range that overflowed (a training run with a far too large learning rate) gets a
    defined scale and zero point on the part and in the twin: converting NaN or inf to
    int32_t is undefined in C, so the kernel clamps in float first."""
    rng = np.random.default_rng(3)
    b = Both(machine, rng)
    rec = range_record(-1.0, 1.0)
    rec["fmin"], rec["fmax"] = fmin, fmax
    r = b.put(rec)
    b.run("fqt_range_params", r)
    got = machine.read_array(r, RANGE_DTYPE, 1)[0]
    assert got["zero"] == zero
    assert got["scale"] == np.float32(scale)


def test_select_topk_keeps_everything_on_a_nan_epsilon(machine):
    """ε = NaN (a diverged loss, eps_mode 1): λ = λ_min + NaN (λ_max - λ_min) is NaN, which
    the kernel treats as λ = 1: k = N, nothing pruned (the error bytes stay as they are)."""
    rng = np.random.default_rng(5)
    b = Both(machine, rng)
    N, P = 6, 3
    er = b.put(range_record(-0.5, 0.5))
    kept = b.zeros(2 * N)
    sel = b.put(record(SELECT_DTYPE, n_struct=N, n_pix=P, er=er, lambda_min=0.1,
                       lambda_max=0.5, eps_mode=1, eps=np.nan, mag=b.zeros(4 * N),
                       kept=kept))
    errors = rng.integers(0, 256, N * P, dtype=np.uint8)
    e = b.put(errors)
    b.run("fqt_select_topk", e, sel)
    assert machine.read_array(sel, SELECT_DTYPE, 1)[0]["k"] == N
    assert list(machine.read_array(kept, np.uint16, N)) == list(range(N))
    assert list(machine.read_array(e, np.uint8, N * P)) == list(errors)


@pytest.mark.parametrize("mode,relu,headroom", [(RANGE_ACC, True, 2.0), (RANGE_ACC, False, 1.0),
                                                (RANGE_REAL, False, 1.5), (RANGE_REAL, True, 0.0)])
def test_range_observe_folds_the_ema_and_keeps_the_scale(machine, mode, relu, headroom):
    """fqt_range_observe moves fmin/fmax by the EMA of the (clamped, widened) observation
    and leaves scale/zero alone; fqt_range_params then derives them.  Checked against the
    definition in float32 by hand, and C against twin."""
    f4 = np.float32
    b = Both(machine, np.random.default_rng(1))
    r = range_record(-0.5, 2.0, alpha=0.25, mode=mode, relu=relu, headroom=headroom)
    r["acc_min"], r["acc_max"], r["acc_scale"] = -300, 1000, f4(0.01)
    r["real_min"], r["real_max"] = f4(-0.8), f4(4.0)
    addr = b.put(r)
    scale0, zero0 = f4(r["scale"]), int(r["zero"])
    b.run("fqt_range_observe", addr)
    got = np.frombuffer(machine.read(addr, RANGE_DTYPE.itemsize), RANGE_DTYPE)[0]
    lo, hi = (f4(-300) * f4(0.01), f4(1000) * f4(0.01)) if mode == RANGE_ACC else \
        (f4(-0.8), f4(4.0))
    if relu:
        lo, hi = max(lo, f4(0)), max(hi, f4(0))
    if headroom > 0:
        lo, hi = lo * f4(headroom), hi * f4(headroom)
    assert got["fmin"] == f4(0.75) * f4(r["fmin"]) + f4(0.25) * lo
    assert got["fmax"] == f4(0.75) * f4(r["fmax"]) + f4(0.25) * hi
    assert got["scale"] == scale0 and got["zero"] == zero0  # not yet in effect
    b.run("fqt_range_params", addr)
    got = np.frombuffer(machine.read(addr, RANGE_DTYPE.itemsize), RANGE_DTYPE)[0]
    assert (got["scale"], int(got["zero"])) == range_params(got["fmin"], got["fmax"])


# ------------------------------------------------------------------ partial updates

def _by_definition_kept(e: np.ndarray, z: int, k: int, y: np.ndarray | None = None,
                        yz: int = 0) -> list[int]:
    """fqt.h's definition: m_c = sum_p |e[p][c] - z| over the positions where y[p][c] > yz
    (all without y); the k largest, ties to the lower index, in ascending order."""
    d = np.abs(e.astype(np.int64) - z)
    if y is not None:
        d = np.where(y.astype(np.int64) > yz, d, 0)
    mag = d.sum(axis=0)
    return sorted(int(c) for c in np.argsort(-mag, kind="stable")[:k])


# (magnitude pattern per structure, k): ties, k = 1, k = N
KEPT_CASES = [
    ([5, 9, 9, 1, 9, 0], 1),        # three-way tie at the top: the lowest index
    ([5, 9, 9, 1, 9, 0], 2),
    ([5, 9, 9, 1, 9, 0], 4),        # 9, 9, 9, then 5
    ([5, 9, 9, 1, 9, 0], 6),        # k = N: everything
    ([3, 3, 3, 3], 2),              # all equal: the first k
    ([0, 0, 7], 1),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], 5),
    ([17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1], 5),
    ([4] * 9 + [5] + [4] * 7, 3),   # one larger, then ties in index order
]


@pytest.mark.parametrize("mags,k", KEPT_CASES)
@pytest.mark.parametrize("mask", [False, True])
def test_select_kept_list_by_definition(machine, mags, k, mask):
    """The kept list against its definition (numpy: magnitudes by hand, a stable argsort,
    ties to the lower index), with and without the ReLU mask applied on the fly; the error
    tensor is only read; touched marks exactly the kept structures."""
    rng = np.random.default_rng(len(mags) * 31 + k)
    b = Both(machine, rng)
    N, P, z = len(mags), 3, 90
    # the magnitude m_c split over 3 positions, signs alternating; with the mask a 4th
    # position p carries a large error that y masks (y <= yz there)
    e = np.full((P + 1, N), z, np.int64)
    for c, m in enumerate(mags):
        parts = [m // 3, m // 3, m - 2 * (m // 3)]
        for p_, v in enumerate(parts):
            e[p_, c] = z + (v if (p_ + c) % 2 == 0 else -v)
    e[P] = z + 60  # masked out when mask, else it adds 60 to every structure
    e = e.astype(np.uint8)
    yz = 40
    y = np.full((P + 1, N), yz + 1, np.uint8)
    y[P] = yz  # not active: masked
    y[0, ::2] = 0  # position 0 masked for even structures (their magnitude drops)
    er = b.put(record(RANGE_DTYPE, zero=z))
    yr = b.put(record(RANGE_DTYPE, zero=yz))
    kept, touched = b.zeros(2 * N), b.zeros(N)
    lam = (k + 0.5) / N if k < N else 1.0
    sel = b.put(record(SELECT_DTYPE, n_struct=N, n_pix=P + 1, er=er, lambda_min=lam,
                       lambda_max=lam, eps_mode=1, mag=b.zeros(4 * N), kept=kept,
                       y=b.put(y.reshape(-1)) if mask else 0, yr=yr if mask else 0,
                       touched=touched))
    ea = b.put(e.reshape(-1))
    b.run("fqt_select_topk", ea, sel)
    want = _by_definition_kept(e, z, k, y if mask else None, yz)
    assert int(machine.read_array(sel, SELECT_DTYPE, 1)[0]["k"]) == k
    assert list(machine.read_array(kept, np.uint16, k)) == want
    marks = machine.read_array(touched, np.uint8, N)
    assert [c for c in range(N) if marks[c]] == want
    assert machine.read_array(ea, np.uint8, e.size).tobytes() == e.tobytes()


@HSET
@given(shape=conv_shapes, kind=st.sampled_from(["conv2d", "dwconv2d", "fc"]),
       keep=st.floats(0, 1), rounding=st.sampled_from([0, 1, 2]), bias=st.booleans(),
       seed=st.integers(0, 2**31))
def test_selection_is_zeroed_pruned_errors(machine, shape, kind, keep, rounding, bias, seed):
    """The definition of a selection (fqt.h, "Backward"): every backward kernel with a
    selection computes what it computes without one on an error tensor whose pruned
    structures hold the zero point -- here the pruned bytes hold random values that must
    not be read.  fqt_relu_backward with a selection masks the kept structures exactly as
    without one and leaves the pruned bytes alone."""
    rng = np.random.default_rng(seed)
    h, w, cin, cout, kh, kw, *rest = shape
    if kind == "fc":
        h, w, kh, kw, rest = 1, 1, 1, 1, [1, 1, 0, 0, 0, 0]
        cin = cin * 7
    if kind == "dwconv2d":
        cout = cin
    s = _shape_rec(h, w, cin, cout, kh, kw, *rest)
    if s is None:
        return
    b = Both(machine, rng)
    P = int(s["out_h"] * s["out_w"])
    N = cout
    k = max(1, int(keep * N))
    sel, kept = _selection(b, rng, N, k)
    nw = cin * kh * kw if kind == "dwconv2d" else cout * kh * kw * cin
    q = _qp(rng, 20.0 / (4000 * np.sqrt(nw)), False, rounding)
    qw = q.copy()
    qw["w_zero"] = q["x_zero"]
    e = rng.integers(0, 256, (P, N), dtype=np.uint8)
    e[rng.random((P, N)) < 0.3] = q["x_zero"]
    zeroed = e.copy()
    pruned = np.setdiff1d(np.arange(N), kept)
    zeroed[:, pruned] = q["x_zero"]
    x = b.put(rng.integers(0, 256, h * w * cin, dtype=np.uint8))
    wt = b.put(rng.integers(0, 256, nw, dtype=np.uint8))
    sh_, qa, qwa = b.put(s), b.put(q), b.put(qw)
    g0 = rng.integers(-1000, 1000, nw).astype(np.int32)
    gb0 = rng.integers(-1000, 1000, N).astype(np.int32)
    outs = []
    for err, sl in ((e, sel), (zeroed, 0)):
        ea, ei, stats = b.put(err.reshape(-1)), b.zeros(h * w * cin), b.zeros(8)
        gw, gb = b.put(g0), b.put(gb0) if bias else 0
        if kind == "fc":
            b.run("fqt_fc_backward_error", wt, ea, ei, cin, N, qa, b.zeros(4 * cin), stats, sl)
            b.run("fqt_fc_backward_weights", x, ea, gw, gb, cin, N, qwa, sl)
        elif kind == "conv2d":
            b.run("fqt_conv2d_backward_error", wt, ea, ei, sh_, qa, b.zeros(4 * w * cin),
                  stats, sl)
            b.run("fqt_conv2d_backward_weights", x, ea, gw, gb, sh_, qwa,
                  b.zeros(kh * kw * cin), sl)
        else:
            b.run("fqt_dwconv2d_backward_error", wt, ea, ei, sh_, qa, stats, sl)
            b.run("fqt_dwconv2d_backward_weights", x, ea, gw, gb, sh_, qwa, sl)
        outs.append((machine.read(ei, h * w * cin), machine.read(stats, 8),
                     machine.read(gw, 4 * nw), machine.read(gb, 4 * N) if bias else b""))
    assert outs[0] == outs[1]
    # the ReLU mask with a selection: the kept structures as without one, the rest untouched
    y = rng.integers(0, 256, (P, N), dtype=np.uint8)
    yr, er = b.put(range_record(-1.0, 1.0)), b.put(range_record(-0.5, 0.7))
    ez = int(range_record(-0.5, 0.7)["zero"])
    ya, ea, ea_all = b.put(y.reshape(-1)), b.put(e.reshape(-1)), b.put(e.reshape(-1))
    b.run("fqt_relu_backward", ya, ea, P * N, yr, er, sel)
    b.run("fqt_relu_backward", ya, ea_all, P * N, yr, er, 0)
    got = machine.read_array(ea, np.uint8, P * N).reshape(P, N)
    full = machine.read_array(ea_all, np.uint8, P * N).reshape(P, N)
    np.testing.assert_array_equal(got[:, kept], full[:, kept])
    np.testing.assert_array_equal(got[:, pruned], e[:, pruned])
    yz = int(range_record(-1.0, 1.0)["zero"])
    assert np.all(full[y <= yz] == ez) and np.all(full[y > yz] == e[y > yz])


def test_maxpool_backward_by_hand(machine):
    """Max pooling's error routing, by hand.  x is 3x5 with 2 channels (the last row and
    column are not covered by a 2x2 window); e_in holds e_out at each window's first
    maximum in row-major window order (a tie goes to the earlier position), the error's
    zero point (7) everywhere else.
      channel 0: window (0,0) = [1 4; 4 2]: the first 4, position (0,1)
                 window (0,1) = [3 3; 3 3]: all tied, position (0,2)
      channel 1: window (0,0) = [9 0; 0 9]: position (0,0)
                 window (0,1) = [0 0; 0 5]: position (1,3)
    Then 4 channels (the 4-lane path of DSP cores), channel c of x = channel (c % 2)."""
    rng = np.random.default_rng(2)
    b = Both(machine, rng)
    x0 = np.array([[1, 4, 3, 3, 200], [4, 2, 3, 3, 200], [255, 255, 255, 255, 255]])
    x1 = np.array([[9, 0, 0, 0, 200], [0, 9, 0, 5, 200], [255, 255, 255, 255, 255]])
    er = b.put(record(RANGE_DTYPE, zero=7))
    for C in (2, 4, 5):
        x = np.stack([x0 if c % 2 == 0 else x1 for c in range(C)], axis=-1).astype(np.uint8)
        s = record(SHAPE_DTYPE, in_h=3, in_w=5, in_c=C, out_h=1, out_w=2, out_c=C, k_h=2,
                   k_w=2, stride_h=2, stride_w=2)
        eo = (100 + np.arange(2 * C)).astype(np.uint8)  # e_out[0][ow][c] = 100 + 2 ow + c..
        ei = b.zeros(15 * C)
        b.run("fqt_maxpool_backward", b.put(x.reshape(-1)), b.put(eo), ei, b.put(s), er)
        want = np.full((3, 5, C), 7, np.uint8)
        for c in range(C):
            e0, e1 = eo[c], eo[C + c]  # windows ow = 0, 1
            if c % 2 == 0:
                want[0, 1, c], want[0, 2, c] = e0, e1
            else:
                want[0, 0, c], want[1, 3, c] = e0, e1
        got = machine.read_array(ei, np.uint8, 15 * C).reshape(3, 5, C)
        np.testing.assert_array_equal(got, want, err_msg=f"C = {C}")
