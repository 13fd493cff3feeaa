"""Sample kernels run as compiled Thumb code and match the numpy twin bit for bit:
all three cores (M0+ generic C path, M4/M7 DSP path), both toolchains."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcusim.fqt import twin
from mcusim.fqt.quant import (
    ROUND_FLOOR,
    ROUND_NEAREST,
    LayerQuant,
    quantize_multiplier,
    requantize,
)
from mcusim.machine import Machine
from mcusim.toolchain import Builder


def _fc_on_machine(m: Machine, x, w, b, q: LayerQuant) -> np.ndarray:
    m.reset_arena()
    out_f, in_f = w.shape
    ax, aw = m.put(x), m.put(w)
    ab = m.put(b) if b is not None else 0
    ay, aq = m.alloc(out_f), m.put(q.pack())
    m.call("fqt_fc_forward", ax, aw, ab, ay, in_f, out_f, aq, 0)
    return m.read_array(ay, np.uint8, out_f)


def test_fc_forward_matches_twin(machine):
    rng = np.random.default_rng(42)
    for in_f, out_f in ((1, 1), (3, 5), (64, 10), (257, 33)):
        x = rng.integers(0, 256, in_f, dtype=np.uint8)
        w = rng.integers(0, 256, (out_f, in_f), dtype=np.uint8)
        b = rng.integers(-20000, 20000, out_f).astype(np.int32)
        # scale the accumulator's spread (~5500 sqrt(n) + bias) onto about +-40 output steps
        mult, shift = quantize_multiplier(40.0 / (5500 * np.sqrt(in_f) + 20000))
        q = LayerQuant(int(rng.integers(100, 156)), int(rng.integers(100, 156)),
                       int(rng.integers(64, 192)), mult, shift, act_min=0, act_max=255)
        got = _fc_on_machine(machine, x, w, b, q)
        want = twin.fc_forward(x, w, b, q)
        assert np.array_equal(got, want), (in_f, out_f, got, want)
        # the outputs are not trivially saturated: the test can tell kernels apart
        assert len(set(want.tolist())) > 1 or out_f == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(in_f=st.integers(1, 40), out_f=st.integers(1, 6), zx=st.integers(0, 255),
       zw=st.integers(0, 255), zy=st.integers(0, 255), real=st.floats(1e-6, 0.5),
       relu=st.booleans(), rounding=st.sampled_from([ROUND_NEAREST, ROUND_FLOOR]),
       bias=st.booleans(), seed=st.integers(0, 2**31))
def test_fc_forward_property(machine, in_f, out_f, zx, zw, zy, real, relu, rounding, bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, in_f, dtype=np.uint8)
    w = rng.integers(0, 256, (out_f, in_f), dtype=np.uint8)
    b = rng.integers(-(1 << 20), 1 << 20, out_f).astype(np.int32) if bias else None
    mult, shift = quantize_multiplier(real)
    q = LayerQuant(zx, zw, zy, mult, shift, act_min=zy if relu else 0, act_max=255,
                   rounding=rounding)
    assert np.array_equal(_fc_on_machine(machine, x, w, b, q), twin.fc_forward(x, w, b, q))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(acc=st.integers(-(1 << 31), (1 << 31) - 1), mult=st.integers(1 << 30, (1 << 31) - 1),
       shift=st.integers(-31, 0), rounding=st.sampled_from([ROUND_NEAREST, ROUND_FLOOR]))
def test_requantize_matches_twin(machine, acc, mult, shift, rounding):
    r = machine.call("fqt_requantize", acc, mult, shift, rounding, 0)
    assert r.return_signed == int(requantize(acc, mult, shift, rounding))


def test_requantize_rounding_by_hand(machine):
    # M = 2^30 * 2^(0-31) = 0.5: 3 * 0.5 = 1.5 -> nearest 2 (half up), floor 1; -3 -> -1 / -2
    half = 1 << 30
    assert machine.call("fqt_requantize", 3, half, 0, ROUND_NEAREST, 0).return_signed == 2
    assert machine.call("fqt_requantize", 3, half, 0, ROUND_FLOOR, 0).return_signed == 1
    assert machine.call("fqt_requantize", -3, half, 0, ROUND_NEAREST, 0).return_signed == -1
    assert machine.call("fqt_requantize", -3, half, 0, ROUND_FLOOR, 0).return_signed == -2


def test_dot_u8_unaligned_and_tails(machine):
    rng = np.random.default_rng(7)
    buf_a = rng.integers(0, 256, 80, dtype=np.uint8)
    buf_b = rng.integers(0, 256, 80, dtype=np.uint8)
    aa, ab = machine.put(buf_a), machine.put(buf_b)
    for off_a, off_b, n in ((0, 0, 0), (1, 3, 17), (2, 1, 64), (3, 3, 5), (0, 2, 75)):
        r = machine.call("fqt_dot_u8", aa + off_a, 200, ab + off_b, 17, n)
        a, b = buf_a[off_a:off_a + n], buf_b[off_b:off_b + n]
        assert r.return_signed == twin.dot_u8(a, 200, b, 17)
        assert r.return_signed == int(np.dot(a.astype(np.int64) - 200, b.astype(np.int64) - 17))


def test_dsp_path_is_used_on_m4_m7_only(machine):
    """The M4/M7 images run SMLAD; the M0+ image cannot contain it."""
    image = machine.image
    sym = image.function("fqt_dot_u8")
    code = machine.read(sym.address, sym.size)
    mnemonics = {i.mnemonic for i in machine.counter.disassembler.disasm(code, sym.address)}
    if machine.mcu.core.dsp:
        assert "smlad" in mnemonics
    else:
        assert "smlad" not in mnemonics


def test_instructions_per_mac_dsp_beats_generic(catalog, default_toolchain):
    """Same layer, same toolchain: the M4's DSP path needs fewer instructions per MAC."""
    from mcusim.demo import run_fc_sample

    per_mac = {}
    for name in ("RP2040", "nRF52840"):
        mcu = catalog.mcu(name)
        elf = Builder(default_toolchain).build(mcu.core, [mcu])[0].elf
        run = run_fc_sample(mcu, elf, default_toolchain)
        assert run.bit_exact
        per_mac[name] = run.instructions_per_mac
    assert per_mac["nRF52840"] < per_mac["RP2040"]
