"""Cortex-M7 timing rules pinned exactly.

tests/test_timing_conformance.py compares M7 counts within max(1, 10 %) because Arm
publishes no M7 cycle table and the model's sources (LLVM ARMScheduleM7.td, jnk0le's
measurements) carry their own uncertainty.  That tolerance also hides a wrong *model*: a
mispredict penalty of 7 instead of 8, or an L1 cache that prefetches the next line for
free, passes it.  Here the model is held exactly to the rules it states
(cost_models/cortex_m7.toml), on programs written so that the quantity in question is
isolated and derived by hand:

  * branch mispredicts: two runs of the same instructions that differ only in the
    direction pattern of one conditional branch: their cycle difference is penalty x
    (difference in mispredicts), penalty = 8 (cortex_m7.toml [parameters.branch_prediction]
    mispredict_penalty, source J1: jnk0le's DWT measurements on an STM32H743, "mispredict
    8 (6 with flags set 3 cycles ahead)"; the flags here are set right before each branch).
    The mispredicts come from the rule cortex_m7.toml states (a 2-bit saturating counter
    per branch, weakly not taken when first seen; the fixture's warm-up call, then the
    measured call), simulated here by `_two_bit` below, written from that rule and not
    from mcusim's tracer.
  * L1 instruction cache misses from flash on the STM32F746 (7 wait states at 216 MHz;
    RM0385 Table 5) and STM32H743 (4 wait states, AXI clock 240 MHz; RM0433 Table 17):
    the L1 I-cache has 32-byte lines (Cortex-M7 TRM, DDI 0489, "L1 caches"; catalog S26,
    S27) and, unlike the STM32 ART or the RP2040 XIP cache, no sequential prefetch in the
    model (mcusim/timing/memory.py: prefetch only for kinds other than "l1"; the AXIM
    flash path's ART is not modelled).  A line miss costs the F746's flash wait states (no
    miss_cycles in mcus.toml: one flash access per line); on the H743 the wait states are
    AXI clock cycles at half the CPU clock and the 32-byte line then crosses the 64-bit AXI
    bus in 4 beats: (4 + 1) x 2 + 4 x 2 = 18 CPU cycles (mcus.toml's derivation).
  * the conformance suite's own hand derivations (tests/programs/timing_m7.S comments),
    exactly: the model is deterministic, so its rules either give the derived count or
    they do not (the tolerance stays in the conformance suite for the hardware claim).

The probe program is written to a temporary directory by this module (no file under
tests/programs is needed).
"""

from __future__ import annotations

import pytest

from tests.test_timing_conformance import CASES_M7

M7_ITCM = "MIMXRT1062"  # code in ITCM: core timing only, no flash
PENALTY = 8  # J1, see the module docstring: a number from the source, not from the model

PROBE = r"""
    .syntax unified
    .thumb
    .text

/* m7x_pattern(bits, n): n loop iterations; iteration i takes path B when bit i of `bits`
 * is 1 (BCS taken), else path A.  Both paths are one ADDS + one B to the loop tail, so they
 * cost the same, and the taken/not-taken split only changes the BCS's mispredicts.  The
 * loop head is entered by a branch so that every BCS execution belongs to the same basic
 * block [LSRS; BCS] (the model counts directions per block).
 * Block costs (cortex_m7.toml: dual issue; a branch pairs with its flag setter, as in
 * timing_m7.S's m7_loop):
 *   [MOVS; B]            MOVS @0, B pairs @0             1
 *   [LSRS; BCS]          @0 @0                           1  per iteration
 *   [ADDS; B] (A or B)   @0 @0                           1  per iteration
 *   [SUBS; BNE]          @0 @0                           1  per iteration
 *   [BX]                                                 1
 * n = 16: 1 + 16 x 3 + 1 = 50 cycles of issue, plus 8 per mispredict: the BNE is taken
 * 15 times and falls through once (1 mispredict once warm); the BCS mispredicts as a
 * 2-bit counter does on the 16 low bits (the test's _two_bit). */
    .global m7x_pattern
    .type m7x_pattern, %function
    .thumb_func
    .balign 32
m7x_pattern:
    movs r2, #0
    b 1f
1:  lsrs r0, r0, #1
    bcs 2f
    adds r2, r2, #1
    b 3f
2:  adds r3, r3, #1
    b 3f
3:  subs r1, r1, #1
    bne 1b
    bx lr
    .size m7x_pattern, . - m7x_pattern

/* m7x_lines: 48 dependent ADDS + BX LR = 98 bytes from a 32-byte boundary: four 32-byte
 * lines (0-31, 32-63, 64-95, 96-97).  Core: ADDS @0..@47, BX pairs @47: 48 cycles. */
    .global m7x_lines
    .type m7x_lines, %function
    .thumb_func
    .balign 32
m7x_lines:
    .rept 48
    adds r0, r0, #1
    .endr
    bx lr
    .size m7x_lines, . - m7x_lines

/* m7x_loop_in_line(n): MOVS; [ADDS; SUBS; BNE] n times; BX: 10 bytes inside one 32-byte
 * line.  Cold, the first block misses that line once; every later fetch hits. */
    .global m7x_loop_in_line
    .type m7x_loop_in_line, %function
    .thumb_func
    .balign 32
m7x_loop_in_line:
    movs r1, #0
1:  adds r1, r1, #1
    subs r0, r0, #1
    bne 1b
    bx lr
    .size m7x_loop_in_line, . - m7x_loop_in_line

/* m7x_loop_two_lines(n): the loop body straddles a line boundary: 12 ADDS (24 bytes) from
 * offset 0, then the loop [ADDS x 8; SUBS; BNE] from offset 24 to 44: lines 0 and 1.
 * Cold: line 0 misses once, line 1 misses once (no prefetch), then n - 1 more iterations
 * hit both lines: 2 misses whatever n. */
    .global m7x_loop_two_lines
    .type m7x_loop_two_lines, %function
    .thumb_func
    .balign 32
m7x_loop_two_lines:
    .rept 12
    adds r2, r2, #1
    .endr
1:
    .rept 8
    adds r1, r1, #1
    .endr
    subs r0, r0, #1
    bne 1b
    bx lr
    .size m7x_loop_two_lines, . - m7x_loop_two_lines
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("m7pins") / "m7pins.S"
    p.write_text(PROBE)
    return str(p)  # absolute: build_probes joins it onto tests/programs unchanged


def _ones(bits: int, n: int) -> int:
    return bin(bits & ((1 << n) - 1)).count("1")


def _two_bit(directions: list[bool], calls: int = 2) -> int:
    """Mispredicts in the last of `calls` runs of one branch's direction sequence under a
    2-bit saturating counter (0, 1 predict not taken; 2, 3 taken) that starts at 1."""
    state = 1
    misses = 0
    for _ in range(calls):
        misses = 0
        for taken in directions:
            if (state >= 2) != taken:
                misses += 1
            state = min(3, state + 1) if taken else max(0, state - 1)
    return misses


# ------------------------------------------------------------------ mispredicts

PATTERNS = [0x0000, 0xFFFF, 0x5555, 0x000F, 0x0001, 0x00FF, 0x3333, 0x7FFF]


@pytest.mark.parametrize("mcu", [M7_ITCM, "STM32H743", "STM32F746"])
@pytest.mark.parametrize("bits", PATTERNS, ids=[f"{b:#06x}" for b in PATTERNS])
def test_mispredict_penalty_exactly(timed, probe, mcu, bits):
    """cycles(bits) - cycles(0) = 8 x the BCS's mispredicts under the 2-bit counter (its
    directions: the 16 low bits, bit 0 first); both runs warm (flash parts: every line
    already in the L1 cache).  The BNE (taken 15 times, then not) mispredicts once."""
    n = 16
    base = timed(mcu, probe, "m7x_pattern", 0, n)
    r = timed(mcu, probe, "m7x_pattern", bits, n)
    misses = _two_bit([bool(bits >> i & 1) for i in range(n)])
    assert _two_bit([True] * 15 + [False]) == 1 and _two_bit([False] * n) == 0
    assert base.mispredicts == 1  # the loop exit only
    assert r.mispredicts == 1 + misses
    assert r.cycles - base.cycles == PENALTY * misses, \
        f"{r.cycles} - {base.cycles} for {misses} extra mispredicts"
    assert base.cycles == 50 + PENALTY  # issue cycles derived above + the loop exit
    assert r.instructions == base.instructions


def test_mispredict_count_of_a_loop_exit(timed):
    """timing_m7.S's m7_loop(n): n = 1 never takes the BNE (0 mispredicts); n = 3 takes it
    twice and falls through once (1 mispredict); cycles(3) - cycles(1) is two more
    iterations [ADDS; SUBS; BNE] (2 cycles each: ADDS and SUBS @0, BNE @1) plus 8."""
    one = timed(M7_ITCM, "timing_m7.S", "m7_loop", 1)
    three = timed(M7_ITCM, "timing_m7.S", "m7_loop", 3)
    assert (one.mispredicts, three.mispredicts) == (0, 1)
    assert three.cycles - one.cycles == 2 * 2 + PENALTY


def test_mispredicts_are_per_branch_instruction(timed):
    """cortex_m7.toml: one 2-bit counter per branch.  m7_loop(2): the BNE runs twice, taken
    then not taken, in the warm-up call and in the measured one: T N T N from 1 mispredicts
    every time (_two_bit: 2 in the measured call), so cycles(2) - cycles(1) = one iteration
    (2) + 2 x 8.  The first BNE ends the entry block [MOVS; ADDS; SUBS; BNE], the second
    the loop block [ADDS; SUBS; BNE]: one branch, one counter (a counter per block would
    see T, T in the first and N, N in the second: 0 mispredicts in the measured call)."""
    one = timed(M7_ITCM, "timing_m7.S", "m7_loop", 1)
    two = timed(M7_ITCM, "timing_m7.S", "m7_loop", 2)
    assert _two_bit([True, False]) == 2
    assert two.mispredicts == 2
    assert two.cycles - one.cycles == 2 + 2 * PENALTY


# ------------------------------------------------------------------ L1 cold misses

# mcu -> flash wait states = cycles per L1 line miss (see the module docstring)
FLASH_M7 = {"STM32F746": 7, "STM32H743": (4 + 1) * 2 + 4 * 2}


@pytest.mark.parametrize("mcu", sorted(FLASH_M7))
def test_cold_lines_each_miss_once_without_prefetch(timed, probe, mcu):
    """m7x_lines spans 4 lines: cold = 48 + 4 x wait states; warm = 48."""
    ws = FLASH_M7[mcu]
    cold = timed(mcu, probe, "m7x_lines", cold=True)
    warm = timed(mcu, probe, "m7x_lines")
    assert warm.cycles == 48
    assert cold.cache["fetch"].misses == 4
    assert cold.cache["fetch"].prefetched == 0
    assert cold.cycles == 48 + 4 * ws, cold.to_dict()["cycles_by_class"]


def test_h743_line_fill_follows_the_axi_wait_states(timed, probe):
    """STM32H743 at 0 wait states (140 MHz CPU, 70 MHz AXI: RM0433 Table 17 VOS0): a line
    fill is (0 + 1) x 2 + 4 x 2 = 10 CPU cycles; 4 lines: 48 + 40."""
    cold = timed("STM32H743", probe, "m7x_lines", cold=True, flash_wait_states=0)
    assert cold.cycles == 48 + 4 * 10


def test_miss_cost_is_the_wait_states(timed, probe):
    """The same 4 misses on an STM32F746 configured with 5 wait states (180 MHz-class
    setting: RM0385 Table 5, 150 < HCLK <= 180 at 2.7-3.6 V) cost 4 x 5."""
    cold = timed("STM32F746", probe, "m7x_lines", cold=True, flash_wait_states=5)
    assert cold.cycles == 48 + 4 * 5


@pytest.mark.parametrize("mcu", sorted(FLASH_M7))
@pytest.mark.parametrize("n", [1, 10])
def test_cold_loop_in_one_line(timed, probe, mcu, n):
    """m7x_loop_in_line(n): core cycles as timing_m7.S's m7_loop (the same code): n = 1:
    4, n = 10: 30 (3 + 9 x 2 + 1 + 8); cold adds one line miss and, for n = 10, the cold
    predictor's first taken BNE (the counter starts weakly not taken: _two_bit with one
    call gives 2 mispredicts, warm 1)."""
    core = {1: 4, 10: 30}[n]
    directions = [True] * (n - 1) + [False]
    cold_extra = PENALTY * (_two_bit(directions, calls=1) - _two_bit(directions))
    assert cold_extra == {1: 0, 10: PENALTY}[n]
    warm = timed(mcu, probe, "m7x_loop_in_line", n)
    cold = timed(mcu, probe, "m7x_loop_in_line", n, cold=True)
    assert warm.cycles == core
    assert cold.cycles == core + FLASH_M7[mcu] + cold_extra
    assert cold.cache["fetch"].misses == 1


@pytest.mark.parametrize("mcu", sorted(FLASH_M7))
def test_cold_loop_across_two_lines(timed, probe, mcu):
    """Two lines miss once each, whatever the iteration count: cold - warm = 2 x ws, plus
    the cold predictor's extra mispredict of the BNE when the loop runs more than once."""
    for n in (1, 5):
        directions = [True] * (n - 1) + [False]
        cold_extra = PENALTY * (_two_bit(directions, calls=1) - _two_bit(directions))
        warm = timed(mcu, probe, "m7x_loop_two_lines", n)
        cold = timed(mcu, probe, "m7x_loop_two_lines", n, cold=True)
        assert cold.cache["fetch"].misses == 2
        assert cold.cycles - warm.cycles == 2 * FLASH_M7[mcu] + cold_extra


# ------------------------------------------------------------------ the derivations, exactly

@pytest.mark.parametrize(("function", "args", "expected"), CASES_M7,
                         ids=[f"{c[0]}{list(c[1]) if c[1] else ''}" for c in CASES_M7])
def test_m7_conformance_derivations_exactly(timed, function, args, expected):
    assert timed(M7_ITCM, "timing_m7.S", function, *args).cycles == expected


# ------------------------------------------------------------------ D-cache over RAM


def _sum_bytes_cycles(build_probes, catalog, region, tracer=None):
    from mcusim.elf import ElfImage
    from mcusim.machine import Machine

    mcu = catalog.mcu("STM32H743")
    m = Machine(mcu, ElfImage.open(build_probes("STM32H743", ("timing_probes.S",))),
                tracer=tracer)
    where = mcu.region(region).base + 0x4000
    data = bytes(range(1, 65))
    m.write(where, data)
    m.flush_caches()
    cold = m.cycles(m.call("sum_bytes", where, 64))
    warm = m.cycles(m.call("sum_bytes", where, 64))
    assert m.call("sum_bytes", where, 64).return_value == sum(data)
    return cold, warm


@pytest.mark.parametrize(("region", "fill"), [("AXI_SRAM", (1 + 4) * 2), ("SRAM1", (1 + 8) * 2)])
def test_h743_dcache_line_fills(build_probes, catalog, region, fill):
    """timing_probes.S sum_bytes over 64 bytes starting a 32-byte line: two lines.  From
    AXI SRAM a cold line fill is (1 address + 4 64-bit beats) x 2 (AXI at half the CPU
    clock) = 10 cycles, from SRAM1 (32-bit AHB) (1 + 8) x 2 = 18 (mcus.toml's derivation);
    the DTCM bypasses the D-cache, so the same run from DTCM (cold code fetch and
    predictor alike) is the baseline.  Warm (the lines cached), no fill: as from DTCM."""
    cold, warm = _sum_bytes_cycles(build_probes, catalog, region)
    base_cold, base_warm = _sum_bytes_cycles(build_probes, catalog, "DTCM")
    assert cold.cycles - base_cold.cycles == 2 * fill
    assert warm.cycles == base_warm.cycles
    assert cold.cache["dcache"].misses == 2 and warm.cache["dcache"].misses == 0
    assert base_cold.cache["dcache"].accesses == 0


def test_dcache_tracers_agree(build_probes, catalog):
    native = _sum_bytes_cycles(build_probes, catalog, "SRAM1", "native")
    python = _sum_bytes_cycles(build_probes, catalog, "SRAM1", "python")
    assert [r.to_dict() for r in native] == [r.to_dict() for r in python]


def test_rt1062_qspi_flash_misses(build_probes, catalog):
    """Frozen weights in the RT1062's QSPI flash (0x60000000): sum_bytes over 64 bytes there
    reads two 32-byte lines through the M7's D-cache, each a miss of 240 cycles (400 ns
    measured on a Teensy, mcus.toml S34) on a cold cache, nothing warm; the code runs from
    ITCM.  No memory hook is involved (the followed load addresses feed the D-cache)."""
    from mcusim.elf import ElfImage
    from mcusim.machine import Machine

    mcu = catalog.mcu("MIMXRT1062")
    m = Machine(mcu, ElfImage.open(build_probes("MIMXRT1062", ("timing_probes.S",))))
    where = mcu.flash.base + 0x10000
    data = bytes(range(1, 65))
    m.write(where, data)  # host data in flash: its reads are modelled from now on
    m.flush_caches()
    cold = m.cycles(m.call("sum_bytes", where, 64))
    warm = m.cycles(m.call("sum_bytes", where, 64))
    assert cold.cache["dcache"].misses == 2 and warm.cache["dcache"].misses == 0
    assert cold.by_class["dcache_miss"].cycles == 2 * 240
    assert "dcache_miss" not in warm.by_class
    assert "data" not in cold.cache and m.counter.it_repairs == 0
