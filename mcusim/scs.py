"""The System Control Space as firmware that times itself sees it.

Firmware measures itself with the DWT cycle counter (Cortex-M3 and up) or SysTick (every
Cortex-M).  mcusim maps the Private Peripheral Bus 0xE0000000-0xE000FFFF (ITM, DWT, FPB
and the SCS with SysTick, NVIC, SCB and CoreDebug) with Unicorn's `mmio_map` (a callback
per access; no memory hook, so Unicorn 2.1.4's IT-block bug is not triggered):

  - DWT_CYCCNT (0xE0001004) reads return the cycles the timing model charges from the
    start of the call up to the reading instruction (the blocks completed so far, plus
    the static cost of the reading block's instructions before the load), while
    DWT_CTRL.CYCCNTENA is set; it wraps at 2^32, a write sets it.  As on the part,
    DWT_CTRL resets with CYCCNTENA clear: the firmware enables it (DEMCR.TRCENA and
    DWT_CTRL.CYCCNTENA writes are accepted; the DWT lock access register too).
  - SysTick (0xE000E010-0xE000E01C): with ENABLE and CLKSOURCE (processor clock) set,
    SYST_CVR counts down from SYST_RVR once per cycle and SYST_CSR.COUNTFLAG reports a
    wrap; no exception is taken (mcusim runs no interrupts).
  - CPUID reads the core's reset value; every other register reads what was last written
    to it, else 0 (its reset value for the registers firmware reads back: the ITM, FPB,
    NVIC and SCB control registers reset to 0 except those listed in RESET).

Unicorn does not tell a memory callback which instruction made the access (its PC is the
block's start), so the reading instruction is taken to be the k-th load of the running
block with a register base other than SP and PC, for the block's k-th read of this region
(a DWT read is `LDR Rt, [Rn, #imm]` with Rn pointing into the DWT).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import unicorn

if TYPE_CHECKING:
    from mcusim.machine import Machine

BASE = 0xE0000000
SIZE = 0x10000

DWT_CTRL = 0xE0001000
DWT_CYCCNT = 0xE0001004
DWT_LAR = 0xE0001FB0
SYST_CSR = 0xE000E010
SYST_RVR = 0xE000E014
SYST_CVR = 0xE000E018
SYST_CALIB = 0xE000E01C
CPUID = 0xE000ED00
DEMCR = 0xE000EDFC

# CPUID by core: implementer Arm (0x41), variant, architecture 0xF (0xC for ARMv6-M),
# part number and revision as the cores' TRMs give them (r0p1 M0+, r0p1 M4, r1p2 M7).
CPUID_OF = {"m0plus": 0x410CC601, "m4": 0x410FC241, "m7": 0x411FC272}
NAMES = {DWT_CTRL: "DWT_CTRL", DWT_CYCCNT: "DWT_CYCCNT", DWT_LAR: "DWT_LAR",
         SYST_CSR: "SYST_CSR", SYST_RVR: "SYST_RVR", SYST_CVR: "SYST_CVR",
         SYST_CALIB: "SYST_CALIB", CPUID: "CPUID", DEMCR: "DEMCR"}


@dataclass
class ScsState:
    """Register state (kept for the machine's lifetime, like the part's registers)."""

    regs: dict[int, int] = field(default_factory=dict)  # last written values
    cyccnt_at: int = 0  # CYCCNT's value at cycle `cyccnt_from` of the run
    cyccnt_from: int | None = None  # None: not counting (CYCCNTENA clear)
    systick_from: int | None = None  # cycle when SysTick was enabled
    reads: dict[str, int] = field(default_factory=dict)
    writes: dict[str, int] = field(default_factory=dict)


class SystemControlSpace:
    """The PPB of one machine: DWT CYCCNT, SysTick, CPUID and plain registers."""

    def __init__(self, machine: Machine, cycles_now: Callable[[bool, int], int]) -> None:
        """`cycles_now(load, k)`: the run's cycles up to the k-th load (load=True) or
        store of the running block whose address register is not SP or PC (k from 0)."""
        self.machine = machine
        self.cycles_now = cycles_now
        self.state = ScsState()
        self.has_cyccnt = machine.mcu.core.arch != "armv6-m"  # ARMv6-M's DWT has none
        # (block executions, loads, stores) of this region seen in the running block
        self._block: tuple[int, int, int] | None = None
        self._base_cycles = 0  # cycles of earlier calls (CYCCNT runs on across calls)
        machine.uc.mmio_map(BASE, SIZE, self._read, None, self._write, None)

    # ---------------------------------------------------------------- time

    def _now(self, load: bool = True) -> int:
        """Cycles since the machine's first call up to the accessing instruction."""
        n = self.machine.counter.block_executions()
        loads = stores = 0
        if self._block is not None and self._block[0] == n:
            loads, stores = self._block[1], self._block[2]
        k = loads if load else stores
        self._block = (n, loads + load, stores + (not load))
        return self._base_cycles + self.cycles_now(load, k)

    @property
    def counting(self) -> bool:
        """Does the firmware's clock (CYCCNT or SysTick) run?"""
        return self.state.cyccnt_from is not None or self.state.systick_from is not None

    def end_call(self, cycles: int) -> None:
        """A call ended after `cycles`: later calls continue the timeline."""
        self._base_cycles += cycles
        self._block = None

    # ---------------------------------------------------------------- access

    def _read(self, uc: unicorn.Uc, offset: int, size: int, _user: Any) -> int:
        addr = BASE + offset
        word = addr & ~3
        v = self._value(word)
        name = NAMES.get(word, f"0x{word:08x}")
        self.state.reads[name] = self.state.reads.get(name, 0) + 1
        return (v >> (8 * (addr & 3))) & ((1 << (8 * size)) - 1)

    def _value(self, word: int) -> int:
        st = self.state
        if word in (DWT_CTRL, DWT_CYCCNT) and not self.has_cyccnt:
            return 0
        if word == DWT_CYCCNT:
            if st.cyccnt_from is None:
                return st.cyccnt_at & 0xFFFFFFFF
            return (st.cyccnt_at + self._now() - st.cyccnt_from) & 0xFFFFFFFF
        if word == CPUID:
            return CPUID_OF.get(self.machine.mcu.core.key, 0)
        if word in (SYST_CVR, SYST_CSR):
            return self._systick(word)
        if word == SYST_CALIB:
            return 1 << 31  # NOREF: no reference clock modelled; TENMS unknown (0)
        return st.regs.get(word, 0)

    def _systick(self, word: int) -> int:
        st = self.state
        csr = st.regs.get(SYST_CSR, 0)
        rvr = st.regs.get(SYST_RVR, 0) & 0xFFFFFF
        if st.systick_from is None or not csr & 1 or not csr & 4:
            return csr & 0x7 if word == SYST_CSR else st.regs.get(SYST_CVR, 0) & 0xFFFFFF
        elapsed = self._now() - st.systick_from
        period = rvr + 1
        start = st.regs.get(SYST_CVR, 0) & 0xFFFFFF  # counts down from here, then reloads
        if word == SYST_CVR:
            if elapsed <= start:
                return start - elapsed
            return 0 if rvr == 0 else rvr - ((elapsed - start - 1) % period)
        wrapped = elapsed > start  # COUNTFLAG: the counter reached 0 since it was last read
        if wrapped:  # reading CSR clears it: count on from the value it has now
            st.regs[SYST_CVR] = 0 if rvr == 0 else rvr - ((elapsed - start - 1) % period)
            st.systick_from += elapsed
        return (csr & 0x7) | (wrapped << 16)

    def _write(self, uc: unicorn.Uc, offset: int, size: int, value: int, _user: Any) -> None:
        addr = BASE + offset
        word = addr & ~3
        shift = 8 * (addr & 3)
        mask = ((1 << (8 * size)) - 1) << shift
        st = self.state
        old = self._value(word) if word in (DWT_CYCCNT, SYST_CVR) else st.regs.get(word, 0)
        new = (old & ~mask) | ((value << shift) & mask)
        name = NAMES.get(word, f"0x{word:08x}")
        st.writes[name] = st.writes.get(name, 0) + 1
        if word in (DWT_CTRL, DWT_CYCCNT) and not self.has_cyccnt:
            return
        if word == DWT_CTRL:
            was = st.regs.get(DWT_CTRL, 0) & 1
            if new & 1 and not was:
                st.cyccnt_from = self._now(load=False)
            elif was and not new & 1:
                st.cyccnt_at = self._value(DWT_CYCCNT)
                st.cyccnt_from = None
        elif word == DWT_CYCCNT:
            st.cyccnt_at = new
            if st.cyccnt_from is not None:
                st.cyccnt_from = self._now(load=False)
            return
        elif word == SYST_CVR:  # any write clears the counter (it reloads from RVR)
            st.regs[SYST_CVR] = 0
            if st.systick_from is not None:
                st.systick_from = self._now(load=False)
            return
        elif word == SYST_CSR:
            if new & 1 and not st.regs.get(SYST_CSR, 0) & 1:
                st.systick_from = self._now(load=False)
            elif not new & 1:
                st.systick_from = None
        st.regs[word] = new

    def summary(self) -> dict[str, Any]:
        """What the firmware read and wrote (for reports)."""
        return {"reads": dict(self.state.reads), "writes": dict(self.state.writes)}
