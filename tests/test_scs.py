"""Firmware that times itself: DWT CYCCNT, SysTick, CPUID (mcusim/scs.py), and the
start/stop windows of `Machine.set_window` (`mcusim run --from/--to`).

Each expected count is derived by hand in the probe's comment (tests/programs/timing_*.S)
from the cost tables' rules, never read from the simulator."""

from __future__ import annotations

import pytest

from mcusim.elf import ElfImage
from mcusim.machine import Machine

M4 = "nRF52840"
M0PLUS = "RP2040"


@pytest.fixture
def m4(build_probes, catalog):
    return Machine(catalog.mcu(M4), ElfImage.open(build_probes(M4, ("timing_m4.S",))))


@pytest.fixture
def m0(build_probes, catalog):
    return Machine(catalog.mcu(M0PLUS),
                   ElfImage.open(build_probes(M0PLUS, ("timing_m0plus.S",))))


@pytest.mark.parametrize("tracer", ["native", "python"])
def test_dwt_cyccnt_reads_the_modelled_cycles(build_probes, catalog, tracer):
    m = Machine(catalog.mcu(M4), ElfImage.open(build_probes(M4, ("timing_m4.S",))),
                tracer=tracer)
    assert m.call("dwt_probe", 0).return_value == 7  # LDR after STR 3 + 4 x ADDS
    assert m.scs.summary()["writes"]["DWT_CTRL"] == 1
    assert m.scs.summary()["reads"]["DWT_CYCCNT"] == 2


def test_cyccnt_stands_still_when_not_enabled(m4):
    assert m4.call("dwt_off", 0).return_value == 0


def test_cyccnt_runs_on_across_calls(m4):
    """The counter is a register of the part: enabled in one call, it keeps counting
    through the next (the machine's calls are back to back)."""
    m4.call("dwt_probe", 0)
    first = m4.scs._value(0xE0001004)
    r = m4.call("alu_chain")
    assert m4.scs._value(0xE0001004) - first == m4.cycles(r).cycles


def test_cpuid_is_the_cores(m4):
    assert m4.call("cpuid").return_value == 0x410FC241  # Cortex-M4 r0p1


def test_systick_counts_down_once_per_cycle(m0):
    assert m0.call("systick_probe", 0).return_value == 6  # LDR 2 + 4 x ADDS


def test_window_from_entry_to_the_return(m4):
    """timing_m4.S loop(10) costs 42 with its BX LR (2): the window from the function's
    first instruction to the BX is 40, once per call."""
    sym = m4.image.function("loop")
    bx = sym.address + sym.size - 2
    m4.set_window(sym.address, bx)
    r = m4.call("loop", 10)
    assert m4.cycles(r).cycles == 42
    assert m4.windows == [(0, 40)]
    m4.call("loop", 10)
    assert m4.windows == [(0, 40)]  # each call its own windows


def test_window_inside_a_loop(m4):
    """A window around the loop body [ADDS; SUBS; BNE], start at ADDS, stop at ADDS: one
    window per iteration but the last, each 1 + 1 + 2 (taken BNE: 1 + P) = 4 cycles."""
    sym = m4.image.function("loop")
    body = sym.address + 2  # MOVS r1, #0 is 2 bytes; the loop label follows
    m4.set_window(body, body)
    m4.call("loop", 10)
    assert [b - a for a, b in m4.windows] == [4] * 9


# ---------------------------------------------------------------- mcusim run --from/--to

def _run(capsys, *argv):
    import json

    from mcusim.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    data = json.loads(out) if code == 0 and "--json" in argv else None
    return code, data, err


def test_run_window_json(build_probes, capsys):
    elf = build_probes(M4, ("timing_m4.S",))
    code, data, _ = _run(capsys, "run", elf, "-f", "loop", "-m", M4, "--args", "10",
                         "--from", "loop+2", "--to", "loop+2", "--json")
    assert code == 0
    w = data["window"]
    assert (w["count"], w["first"], w["min"], w["max"], w["total"]) == (9, 4, 4, 4, 36)
    code, data, _ = _run(capsys, "run", elf, "-f", "dwt_probe", "-m", M4, "--args", "0",
                         "--json")
    assert data["return"] == 7
    assert data["system_control_space"] == {"reads": {"DWT_CYCCNT": 2},
                                            "writes": {"DWT_CTRL": 1}}


@pytest.mark.parametrize(("argv", "code", "says"), [
    (("--from", "loop"), 2, "go together"),
    (("--from", "loop", "--to", "nosuch"), 2, "no function 'nosuch'"),
    (("--from", "loop", "--to", "0x20000000"), 2, "not in the image's code"),
    (("--from", "loop", "--to", "loop+zz"), 2, "SYMBOL+OFFSET"),
    (("--from", "alu_chain", "--to", "loop"), 1, "never closed"),
])
def test_run_window_mistakes_are_one_line(build_probes, capsys, argv, code, says):
    elf = build_probes(M4, ("timing_m4.S",))
    got, _, err = _run(capsys, "run", elf, "-f", "loop", "-m", M4, "--args", "3", *argv)
    assert got == code
    lines = [ln for ln in err.splitlines() if ln.startswith("mcusim: error:")]
    assert len(lines) == 1 and says in lines[0], err
    assert "Traceback" not in err
