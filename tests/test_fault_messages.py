"""Each way a program stops that is not "an instruction of another core" has its own
one-line message: WFE/WFI/YIELD (waiting, not modelled), SVC (at the SVC itself), BKPT and
semihosting, UDF (a trap), an undecodable word, a BX/BLX to an even address (INVSTATE) and
a call through a NULL function pointer, also where the flash (and the vector table) is at
address 0.  The probes are hand-written (tests/programs/fault_probes.S) or plain C
(fault_calls.c); every address in an expected message comes from the ELF's symbols and
the offsets stated in the probe's source, never from the code under test.

What Unicorn 2.1.4 does in each case (measured on its M0, M4 and M7 models, the reason
for each rule in Machine._raise_fault):
  WFE, YIELD      UC_ERR_INSN_INVALID, PC after the instruction
  WFI             emu_start returns without an error, PC after the instruction
  SEV             a NOP
  SVC             UC_ERR_EXCEPTION, PC after the SVC
  BKPT            UC_ERR_EXCEPTION, PC at the BKPT
  UDF, 0xffffffff UC_ERR_INSN_INVALID, PC at it
  BX/BLX to even  UC_ERR_INSN_INVALID at the target, xPSR.T clear
  BLX to NULL     as above at 0 where memory is mapped there (nRF52840, MIMXRT1062);
                  UC_ERR_FETCH_UNMAPPED at 0 where it is not (RP2040)
"""

from __future__ import annotations

import numpy as np
import pytest

from mcusim.elf import ElfImage
from mcusim.errors import EmulationFault, InvalidInstruction, UnmappedAccess
from mcusim.machine import Machine

from .conftest import PAPER_BOARDS

ANOTHER_CORE = "another core"


def _one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text
    return text


@pytest.fixture(params=PAPER_BOARDS)
def fm(request, catalog, build_probes):
    """The fault probes (assembly and C) on each paper board."""
    name = request.param
    elf = build_probes(name, ("fault_probes.S", "fault_calls.c"))
    return Machine(catalog.mcu(name), ElfImage.open(elf))


def _addr(m: Machine, function: str, offset: int = 0) -> int:
    return (m.image.function(function).address & ~1) + offset


def _fault(m: Machine, function: str, *args: int) -> EmulationFault:
    with pytest.raises(EmulationFault) as ei:
        m.call(function, *args, budget=10_000)
    e = ei.value
    assert e.exit_code == 1
    _one_line(e)
    return e


# ------------------------------------------------------------------ waiting for events


@pytest.mark.parametrize("function, mnemonic", [
    ("do_wfe", "WFE"), ("do_wfi", "WFI"),
])
def test_wait_for_event_or_interrupt_is_named_at_the_instruction(fm, function, mnemonic):
    e = _fault(fm, function)
    at = _addr(fm, function, 2)  # NOP, then the instruction (fault_probes.S)
    msg = str(e)
    assert msg.startswith(f"{mnemonic} at 0x{at:08x} ({function}+0x2, fault_probes.S:")
    assert msg.endswith("the program waits for an event/interrupt, which mcusim does not "
                        "model")
    assert ANOTHER_CORE not in msg and "invalid instruction" not in msg
    assert not isinstance(e, InvalidInstruction)
    assert e.pc == at


def test_yield_is_named_at_the_instruction(fm):
    e = _fault(fm, "do_yield")
    at = _addr(fm, "do_yield", 2)
    assert str(e).startswith(f"YIELD at 0x{at:08x} (do_yield+0x2")
    assert "does not model" in str(e) and ANOTHER_CORE not in str(e)


def test_sev_runs_as_the_nop_it_is_without_other_cores(fm):
    assert fm.call("do_sev").instructions == 3  # nop, sev, bx lr


# ------------------------------------------------------------------ SVC, BKPT


def test_svc_is_reported_at_the_svc_not_after_it(fm):
    e = _fault(fm, "do_svc")
    svc = _addr(fm, "do_svc", 2)
    assert str(e).startswith(f"SVC #5 at 0x{svc:08x} (do_svc+0x2, fault_probes.S:")
    assert str(e).endswith(": supervisor calls are not modelled")
    assert e.pc == svc and e.address == svc


@pytest.mark.parametrize("function, imm, text", [
    ("do_bkpt", 0x12, "a breakpoint"),
    ("do_semihost", 0xAB, "a semihosting call"),
])
def test_bkpt_and_semihosting(fm, function, imm, text):
    e = _fault(fm, function)
    at = _addr(fm, function, 2)
    assert str(e).startswith(f"BKPT #0x{imm:02x} at 0x{at:08x} ({function}+0x2")
    assert text in str(e) and "CPU exception" not in str(e)


# ------------------------------------------------------------------ undefined instructions


def test_udf_is_a_trap_not_code_for_another_core(fm):
    e = _fault(fm, "do_udf")
    at = _addr(fm, "do_udf", 2)
    assert isinstance(e, InvalidInstruction)
    assert str(e).startswith(f"UDF #7 at 0x{at:08x} (do_udf+0x2")
    assert "permanently undefined" in str(e) and ANOTHER_CORE not in str(e)


def test_a_word_no_core_decodes_is_not_blamed_on_another_core(fm):
    e = _fault(fm, "do_garbage")
    at = _addr(fm, "do_garbage", 2)
    assert isinstance(e, InvalidInstruction)
    assert str(e).startswith(f"undefined instruction (ffff ffff) at 0x{at:08x} "
                             "(do_garbage+0x2")
    assert ANOTHER_CORE not in str(e)


def test_double_precision_on_the_m4_is_code_for_another_core(catalog, build_probes):
    """vadd.f64 decodes (FPv5-D16, e.g. a Cortex-M7) but the M4's FPv4-SP lacks it."""
    elf = build_probes("nRF52840", ("dp_only.S",))
    m = Machine(catalog.mcu("nRF52840"), ElfImage.open(elf))
    e = _fault(m, "dp_add")
    assert isinstance(e, InvalidInstruction)
    assert "`vadd.f64 d0, d0, d1` at dp_add+0x0" in str(e)
    assert "Cortex-M4 (nRF52840); was the code built for another core?" in str(e)


# ------------------------------------------------------------------ lost Thumb bit


def test_bx_to_an_even_address_is_invstate(fm):
    target = _addr(fm, "even_target")
    assert fm.call("bx_to", target | 1).return_value == 42  # with bit 0: runs
    e = _fault(fm, "bx_to", target)
    msg = str(e)
    assert msg.startswith(f"BX to 0x{target:08x} with bit 0 clear: INVSTATE UsageFault "
                          "(Cortex-M runs Thumb only; a function pointer lost its Thumb "
                          "bit?)")
    assert f"at 0x{_addr(fm, 'bx_to', 2):08x} (bx_to+0x2" in msg
    assert "target even_target+0x0" in msg
    assert ANOTHER_CORE not in msg and not isinstance(e, InvalidInstruction)
    assert e.address == target


def test_blx_through_a_pointer_without_its_thumb_bit(fm):
    # even_call: PUSH, LDR, MOVS, BICS, then BLX r0 at +8 (fault_probes.S)
    e = _fault(fm, "even_call")
    target = _addr(fm, "even_target")
    assert str(e).startswith(f"BLX to 0x{target:08x} with bit 0 clear: INVSTATE")
    assert "(even_call+0x8" in str(e)


def test_c_callback_without_its_thumb_bit(fm):
    fn = _addr(fm, "plus_one")
    assert fm.call("call_callback", fn | 1, 41).return_value == 43
    e = _fault(fm, "call_callback", fn, 41)
    assert str(e).startswith(f"BLX to 0x{fn:08x} with bit 0 clear: INVSTATE UsageFault")
    assert "call_callback+0x" in str(e) and ANOTHER_CORE not in str(e)


# ------------------------------------------------------------------ NULL function pointers


def _null(m: Machine, function: str, *args: int) -> str:
    e = _fault(m, function, *args)
    msg = str(e)
    assert msg.startswith("call through a NULL function pointer (from ")
    assert ANOTHER_CORE not in msg and "invalid instruction" not in msg
    assert e.address == 0
    region = m.mcu.region_at(0)
    if region is None:  # RP2040: nothing at 0
        assert isinstance(e, UnmappedAccess)
        assert msg.endswith(": instruction fetch from unmapped memory at 0x00000000")
    else:
        assert msg.endswith("branch to 0x00000000 (an INVSTATE UsageFault on a Cortex-M)")
    return msg


def test_null_call_where_the_vector_table_is_at_address_0(fm):
    """nRF52840 and MIMXRT1062 have memory at 0 (the vector table of this image on the
    nRF52840); the RP2040 has nothing mapped there."""
    if fm.mcu.name == "nRF52840":
        assert fm.mcu.flash.base == 0 and fm.image.symbol_value("vectors") == 0
    msg = _null(fm, "call_ptr", 0)
    assert "(from call_ptr+0x2, fault_probes.S:" in msg  # PUSH, then BLX r0 at +2


def test_null_call_through_another_register(fm):
    # call_via_r3: PUSH, MOV r3, r0, MOVS r0, #0, BLX r3 at +6 (r0 is 0 too: not the one)
    assert "(from call_via_r3+0x6, fault_probes.S:" in _null(fm, "call_via_r3", 0)


@pytest.mark.parametrize("function", ["call_callback", "tail_callback"])
def test_null_c_callback(fm, function):
    """gcc and clang call through the pointer with BLX Rm; a tail call (M4/M7) is BX Rm
    with LR still the caller's: its site comes from the block that branched."""
    assert fm.call(function, _addr(fm, "plus_one") | 1, 1).return_value >= 2
    assert f"(from {function}+0x" in _null(fm, function, 0, 1)


def test_null_callback_in_a_struct(fm):
    handler = fm.put(np.array([7, 0], dtype="<u4"))  # tag 7, on_event NULL
    assert "(from dispatch+0x" in _null(fm, "dispatch", handler, 5)
    fm.write(handler + 4, np.array([_addr(fm, "plus_one") | 1], dtype="<u4"))
    assert fm.call("dispatch", handler, 5).return_value == 12


# ------------------------------------------------------------------ the CLI


@pytest.mark.parametrize("function, args, start", [
    ("do_svc", [], "SVC #5 at 0x"),
    ("do_wfe", [], "WFE at 0x"),
    ("call_ptr", ["--args", "0"], "call through a NULL function pointer (from call_ptr+0x2"),
])
def test_cli_fault_is_one_line_exit_1(capsys, build_probes, function, args, start):
    from mcusim.cli import main

    elf = build_probes("nRF52840", ("fault_probes.S", "fault_calls.c"))
    code = main(["run", elf, "-f", function, "-m", "nRF52840", *args])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert "\n" not in err and start in err, err
