"""The emulated machine: AAPCS calls, stack painting, faults as typed one-line errors."""

from __future__ import annotations

import re
import shutil

import pytest

from mcusim.elf import ElfImage
from mcusim.errors import (
    BudgetExhausted,
    ElfError,
    EmulationFault,
    FlashWrite,
    InvalidInstruction,
    StackOverflow,
    UnknownNameError,
    UnmappedAccess,
    UsageError,
)
from mcusim.machine import Machine

from .conftest import PAPER_BOARDS, PROGRAMS


@pytest.fixture(params=PAPER_BOARDS)
def probe(request, catalog, build_probes):
    mcu = catalog.mcu(request.param)
    return Machine(mcu, ElfImage.open(build_probes(request.param)))


def _one_line(e: Exception) -> str:
    text = str(e)
    assert "\n" not in text
    return text


def test_stack_painting_matches_hand_computed_frame(probe):
    r = probe.call("frame_probe")
    assert r.return_value == 84  # the function's own statement of its frame
    assert r.stack_bytes == 84  # PUSH 5 words (20) + SUB SP #64, counted by hand


def test_stack_high_water_scales_with_depth(probe):
    for depth in (0, 1, 5):
        r = probe.call("recurse", depth)
        assert r.stack_bytes == 264 * (depth + 1)


def test_stack_arguments_follow_aapcs(probe):
    r = probe.call("sum6", 1, 2, 3, 4, 1000, 20000)
    assert r.return_value == 21010
    assert probe.call("sum6", -1, 0, 0, 0, 0, 0).return_signed == -1


def test_instruction_count_by_hand(probe):
    # sum6: 8 instructions; frame_probe: 7 (push, sub, movs, str, movs, add, pop)
    assert probe.call("sum6", 0, 0, 0, 0, 0, 0).instructions == 8
    assert probe.call("frame_probe").instructions == 7
    # recurse(n): n+1 frames.  The innermost runs push sub str cmp beq(taken) movs add pop
    # = 8; each outer one push sub str cmp beq(not taken) subs bl | movs add pop = 10.
    assert probe.call("recurse", 0).instructions == 8
    assert probe.call("recurse", 3).instructions == 8 + 3 * 10


def test_unmapped_read_is_a_typed_fault(probe):
    with pytest.raises(UnmappedAccess) as ei:
        probe.call("read_word", 0xA0000000)
    msg = _one_line(ei.value)
    assert "read of unmapped memory at 0xa0000000" in msg
    assert "read_word+0x0" in msg
    assert ei.value.address == 0xA0000000


def test_write_to_flash_is_a_typed_fault(probe):
    flash = probe.mcu.flash
    with pytest.raises(FlashWrite) as ei:
        probe.call("write_word", flash.base + 0x100, 0x12345678)
    msg = _one_line(ei.value)
    assert f"0x{flash.base + 0x100:08x}" in msg and flash.name in msg
    assert "write_word+0x0" in msg


def test_fetch_from_unmapped_memory(probe):
    with pytest.raises(UnmappedAccess) as ei:
        probe.call("jump_to", 0xA0000000)
    assert "instruction fetch from unmapped memory at 0xa000000" in _one_line(ei.value)


def test_budget_stops_runaway_code(probe):
    with pytest.raises(BudgetExhausted) as ei:
        probe.call("spin", budget=10_000)
    msg = _one_line(ei.value)
    assert "10,000" in msg and "spin" in msg


def test_stack_overflow_detected(probe):
    reserved = probe.stack_top - probe.stack_limit
    assert reserved == probe.mcu.stack_bytes
    fits = reserved // 264 - 1  # frames of 264 bytes (see probes.S)
    assert probe.call("recurse", fits - 1).stack_bytes == 264 * fits
    with pytest.raises(StackOverflow) as ei:
        probe.call("recurse", fits + 1)  # more than the reserved stack, less than the RAM
    msg = _one_line(ei.value)
    assert "stack overflow in recurse" in msg
    assert f"at least {264 * (fits + 2)} bytes" in msg and f"{reserved} are reserved" in msg


def test_m4_code_on_m0plus_is_invalid_instruction(catalog, build_probes):
    elf = build_probes("RP2040", sources=("m4_only.S",), core="m4")
    m = Machine(catalog.mcu("RP2040"), ElfImage.open(elf))
    with pytest.raises(InvalidInstruction) as ei:
        m.call("divide", 10, 2)
    msg = _one_line(ei.value)
    assert "sdiv" in msg and "divide+0x0" in msg and "Cortex-M0+" in msg
    # the same code runs on the M4
    elf4 = build_probes("nRF52840", sources=("m4_only.S",))
    assert Machine(catalog.mcu("nRF52840"), ElfImage.open(elf4)).call("divide", 10, 2) \
        .return_value == 5


def test_fault_names_source_line(catalog, build_probes):
    elf = build_probes("nRF52840", sources=("with_lines.c",))
    m = Machine(catalog.mcu("nRF52840"), ElfImage.open(elf))
    line = next(i for i, t in enumerate((PROGRAMS / "with_lines.c").read_text().splitlines(), 1)
                if "LOAD_LINE" in t)
    with pytest.raises(UnmappedAccess) as ei:
        m.call("load_through", 0xA0000000)
    assert re.search(rf"load_through\+0x[0-9a-f]+ \(with_lines\.c:{line}\)", str(ei.value))
    assert m.call("add3", 1, 2, 3).return_value == 6


def test_elf_linked_for_another_mcu_is_rejected(catalog, build_probes):
    elf = build_probes("nRF52840")  # flash at 0x0, RP2040 has none there
    with pytest.raises(ElfError, match="outside the memory map of RP2040"):
        Machine(catalog.mcu("RP2040"), ElfImage.open(elf))


def test_unknown_function_suggests_near_names(catalog, build_probes):
    image = ElfImage.open(build_probes("RP2040"))
    with pytest.raises(UnknownNameError, match="did you mean frame_probe"):
        image.function("frame_prob")


def test_bad_arguments(probe):
    with pytest.raises(UsageError, match="at most 16"):
        probe.call("sum6", *range(17))
    with pytest.raises(UsageError, match="does not fit in 32 bits"):
        probe.call("sum6", 1 << 32)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b"hello world, not an elf", "not an ELF file"),
    (lambda b: b[:4] + b"\x02" + b[5:], "64-bit"),
    (lambda b: b[:5] + b"\x02" + b[6:], "big-endian"),
    (lambda b: b[:18] + (62).to_bytes(2, "little") + b[20:], "not an ARM ELF"),
    (lambda b: b[:30], "truncated|malformed"),
])
def test_bad_elf_files(tmp_path, build_probes, mutate, message):
    good = open(build_probes("RP2040"), "rb").read()
    bad = tmp_path / "bad.elf"
    bad.write_bytes(mutate(good))
    with pytest.raises(ElfError, match=message):
        ElfImage.open(bad)


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(ElfError, match="no such file"):
        ElfImage.open(tmp_path / "nope.elf")
    with pytest.raises(ElfError, match="directory"):
        ElfImage.open(tmp_path)


def test_host_executable_is_not_arm():
    exe = shutil.which("ls") or "/bin/sh"
    with pytest.raises(ElfError):
        ElfImage.open(exe)


def test_fault_is_emulation_fault_with_exit_code_1(probe):
    with pytest.raises(EmulationFault) as ei:
        probe.call("read_word", 0xA0000000)
    assert ei.value.exit_code == 1


def test_native_and_python_tracers_count_identically(catalog, build_probes):
    """Both tracers give the same blocks, edges and instructions, budget stops included."""
    from mcusim.demo import sample_fc_layer
    from mcusim.toolchain import Builder, find_toolchain
    from mcusim.trace.native import load_error

    if load_error() is not None:
        pytest.skip(load_error())
    for name in PAPER_BOARDS:
        mcu = catalog.mcu(name)
        elf = Builder(find_toolchain()).build(mcu.core, [mcu])[0].elf
        results = {}
        for kind in ("native", "python"):
            m = Machine(mcu, ElfImage.open(elf), tracer=kind)
            x, w, b, q = sample_fc_layer(100, 7)
            args = (m.put(x), m.put(w), m.put(b), m.alloc(7), 100, 7, m.put(q.pack()))
            r = m.call("fqt_fc_forward", *args)
            assert r.tracer == kind
            exact = r.instructions
            with pytest.raises(BudgetExhausted):
                m.call("fqt_fc_forward", *args, budget=exact - 1)
            again = m.call("fqt_fc_forward", *args, budget=exact)  # resumes, same counts
            assert (again.blocks, again.edges) == (r.blocks, r.edges)
            results[kind] = r
        assert results["native"].blocks == results["python"].blocks
        assert results["native"].edges == results["python"].edges
        assert results["native"].instructions == results["python"].instructions


# ---------------------------------------------------------------- stack reservation only

def test_store_through_a_pointer_is_not_stack_use(probe):
    """Only the stack reservation (and a guard band just below it) is the stack: a store
    anywhere else in RAM, e.g. through a pointer argument, is the program's own."""
    from mcusim.machine import STACK_GUARD

    data = probe.mcu.data
    assert probe.stack_top - probe.stack_limit == probe.mcu.stack_bytes
    below_guard = probe.stack_limit - STACK_GUARD - 4
    for addr in (data.base, data.base + 0x100, data.base + data.size // 2, below_guard):
        r = probe.call("write_word", addr, 0x5A5A0000 + (addr & 0xFFFF))
        assert r.stack_bytes == 0, hex(addr)  # write_word: str, bx lr: no stack
        assert probe.read_array(addr, "<u4", 1)[0] == 0x5A5A0000 + (addr & 0xFFFF)


@pytest.mark.parametrize("mcu", ["nRF52840", "RP2040"])
def test_cli_write_through_pointer_argument_exit_0(capsys, build_probes, mcu):
    """The issue's case: one store through a pointer argument at the bottom of RAM."""
    import json

    from mcusim.cli import main

    elf = build_probes(mcu)
    code = main(["run", elf, "-f", "write_word", "-m", mcu, "--args", "0x20000000,5",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["stack_bytes"] == 0 and data["instructions"] == 2


@pytest.fixture(params=PAPER_BOARDS)
def stack_probe(request, catalog, build_probes):
    mcu = catalog.mcu(request.param)
    return Machine(mcu, ElfImage.open(build_probes(request.param, ("stack_use.S",))))


def test_exact_stack_use_up_to_the_whole_reservation(stack_probe):
    m = stack_probe
    reserved = m.stack_top - m.stack_limit
    # use_stack(n): SP drops by n, one word is stored at the new SP: exactly n bytes
    for n in (8, 64, 1000, reserved - 8, reserved):
        assert m.call("use_stack", n, 0x12345678).stack_bytes == n


def test_stack_growing_past_the_limit_is_an_overflow(stack_probe):
    from mcusim.machine import STACK_GUARD

    m = stack_probe
    reserved = m.stack_top - m.stack_limit
    # into the guard band (seen by painting) and far past it (seen by the SP write)
    for n in (reserved + 8, reserved + STACK_GUARD, reserved + 4 * STACK_GUARD):
        with pytest.raises(StackOverflow) as ei:
            m.call("use_stack", n, 0x12345678)
        msg = _one_line(ei.value)
        assert f"used at least {n} bytes" in msg and f"{reserved} are reserved" in msg
        assert ei.value.exit_code == 1


def test_stack_limit_without_symbols_is_the_catalog_reservation(catalog, build_probes):
    """An image without __stack_limit (e.g. a user's ELF) keeps the MCU's stack_bytes at
    the top of the data RAM; the rest is free for the program."""
    mcu = catalog.mcu("nRF52840")
    image = ElfImage.open(build_probes("nRF52840"))
    plain = image.symbol_value
    image.symbol_value = lambda n: None if n in ("__stack_limit", "__StackLimit") \
        else plain(n)
    m = Machine(mcu, image)
    assert m.stack_limit == m.stack_top - mcu.stack_bytes
    assert m.call("write_word", mcu.data.base, 1).stack_bytes == 0


def test_runaway_recursion_is_a_stack_overflow(probe):
    """Recursion that runs off the bottom of RAM faults there with SP far below the limit:
    reported as the stack overflow it is."""
    with pytest.raises(StackOverflow) as ei:
        probe.call("recurse", 1_000_000)
    msg = _one_line(ei.value)
    assert "stack overflow in recurse" in msg and "recurse+0x" in msg


@pytest.mark.parametrize("mcu", ["nRF52840", "RP2040"])
def test_cli_recursion_overflow_exit_1(capsys, catalog, build_probes, mcu):
    from mcusim.cli import main

    reserved = catalog.mcu(mcu).stack_bytes
    fits = reserved // 264 - 1  # frames of 264 bytes (probes.S)
    elf = build_probes(mcu)
    assert main(["run", elf, "-f", "recurse", "-m", mcu, "--args", str(fits - 1)]) == 0
    capsys.readouterr()
    assert main(["run", elf, "-f", "recurse", "-m", mcu, "--args", str(fits + 1)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "stack overflow in recurse" in err
    assert f"at least {264 * (fits + 2)} bytes" in err


def test_an_engine_reserves_a_bounded_translation_buffer(catalog):
    """Unicorn's default reserves 1 GiB of address space per engine; two engines alive at
    once then break a 2 GiB RLIMIT_AS.  A Machine's engine reserves TCG_BUFFER_BYTES."""
    from unicorn import arm_const

    from mcusim.machine import TCG_BUFFER_BYTES, new_engine

    assert new_engine(arm_const.UC_CPU_ARM_CORTEX_M4).ctl_get_tcg_buffer_size() == \
        TCG_BUFFER_BYTES <= 256 << 20
