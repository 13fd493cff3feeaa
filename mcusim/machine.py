"""The emulated MCU: Unicorn with the core's CPU model and the part's memory map.

- Flash is mapped read + execute (a store to it faults), RAM regions read/write/execute.
- ELF images load at their PT_LOAD addresses (a real start-up copies .data and ITCM code
  there from flash; the image's flash footprint is unchanged by this).
- `call()` follows the AAPCS: r0-r3, further arguments on the 8-byte-aligned stack, the
  return address a mapped "magic" page; the instruction budget stops runaway code.
- Stack high-water mark by stack painting: the stack reservation (the MCU's `stack_bytes`
  at the top of the data RAM, or the image's __stack_limit..__stack_top) and a guard band
  of free RAM just below it are filled with a pattern before the call and scanned for the
  lowest changed word after it; a changed word in the band is a stack overflow.  The rest
  of RAM is the program's: stores through pointers there are never stack use.
- Timing: the tracer runs the MCU's flash cache model and records divide operands while
  the code runs; `cycles(result)` turns a call's counts into cycles (mcusim.timing).
- Faults become typed errors from mcusim.errors with one line naming the fault, the
  address and the faulting function (symbol + offset, source line from DWARF).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import capstone
import numpy as np
import unicorn
from unicorn import arm_const

from mcusim import scs as scs_mod
from mcusim.align import AlignmentCheck, find_align_sites, find_stack_sites
from mcusim.catalog import Mcu, Region
from mcusim.elf import ElfImage
from mcusim.errors import (
    BudgetExhausted,
    ElfError,
    EmulationFault,
    FlashWrite,
    InvalidInstruction,
    StackOverflow,
    UnmappedAccess,
    UsageError,
)
from mcusim.scs import SystemControlSpace
from mcusim.timing.memory import memory_model
from mcusim.trace import make_counter
from mcusim.trace.access import M4_POLICY, M7_POLICY
from mcusim.trace.blocks import START, CacheStats, DivideSite

if TYPE_CHECKING:
    from mcusim.timing.model import CycleReport, TimingModel

DEFAULT_BUDGET = 2_000_000_000  # instructions per call
MAX_ARGS = 16
PAINT = 0xA5C3E1F7  # stack paint word
STACK_GUARD = 1024  # bytes of free RAM painted below the stack limit: overflow detection
_PAINT_BYTES = PAINT.to_bytes(4, "little")
_MAGIC_CANDIDATES = (0x0FFFF000, 0x1FFFF000, 0x5FFFF000, 0x9FFFF000, 0x3FFFF000)
_XPSR_T = 1 << 24  # the Thumb bit of xPSR: clear after a BX/BLX to an even address
_ARG_REGS = (arm_const.UC_ARM_REG_R0, arm_const.UC_ARM_REG_R1, arm_const.UC_ARM_REG_R2,
             arm_const.UC_ARM_REG_R3)


@dataclass(frozen=True)
class CallResult:
    """What one call did."""

    function: str
    address: int
    return_value: int  # r0 as unsigned 32-bit
    return_value_r1: int  # r1 (upper half of 64-bit results)
    instructions: int
    stack_bytes: int  # high-water mark below the SP at entry, from stack painting
    blocks: dict[tuple[int, int], int]  # (block address, size) -> executions
    edges: dict[tuple[int, int], int]  # (previous block or trace.START, block) -> count
    tracer: str  # "native" or "python"
    divides: dict[int, tuple[int, ...]] = field(default_factory=dict)  # address -> buckets
    cache: dict[str, CacheStats] = field(default_factory=dict)  # "fetch"/"data" line stats
    block_misses: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    # D-cache misses of followed loads into RAM outside the TCMs: (misses, cycles) per block
    ram_misses: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    # fetch lines the accelerator's prefetch supplied, per block
    prefetches: dict[tuple[int, int], int] = field(default_factory=dict)
    # the branch predictor's misses per block: (direction, target)
    branches: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    # followed load/store addresses per block: (plan, counts) (mcusim.trace.access)
    accesses: dict[tuple[int, int], tuple[Any, list[int]]] = field(default_factory=dict)
    # with Machine.enable_call_tree(): nodes (parent, function entry, calls) and executions
    # per (node, block address)
    tree_nodes: list[tuple[int, int, int]] = field(default_factory=list)
    tree_counts: dict[tuple[int, int], int] = field(default_factory=dict)

    @property
    def return_signed(self) -> int:
        v = self.return_value
        return v - (1 << 32) if v & 0x80000000 else v


# Which loads/stores the tracer follows, per core (mcusim.trace.access): the M0+ faults on
# an unaligned access and has no banked memory, so it follows none.
ACCESS_POLICIES = {"m4": M4_POLICY, "m7": M7_POLICY}


# Unicorn reserves 1 GiB of address space per engine for translated code by default: two
# engines alive at once then exceed a 2 GiB RLIMIT_AS (the bad-input suite's limit, and a
# user's ulimit -v).  Cortex-M code is at most a few MB, and a full buffer only makes
# Unicorn flush and retranslate (measured: an emnist-cnn step on the STM32F746 gives the
# same cycles in the same time, 1.5-1.8 s, with 16 MiB, 256 MiB and 1 GiB buffers).
TCG_BUFFER_BYTES = 256 << 20


def new_engine(cpu: int) -> unicorn.Uc:
    """A Thumb engine for the CPU model `cpu` with a TCG buffer of TCG_BUFFER_BYTES (set
    before anything initialises the engine, else it has no effect)."""
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB, cpu=cpu)
    uc.ctl_set_tcg_buffer_size(TCG_BUFFER_BYTES)
    return uc


class Machine:
    """One MCU with a loaded ELF image, ready to call functions."""

    def __init__(self, mcu: Mcu, image: ElfImage | None = None, *,
                 budget: int = DEFAULT_BUDGET, tracer: str | None = None,
                 flash_data: bool | None = None, check_alignment: bool = True) -> None:
        """`flash_data`: model data reads from flash through the flash cache (a memory
        hook: slower).  None = automatically, as soon as the host writes data into flash
        (frozen weights); constants of the image itself are then taken to hit.
        `check_alignment`: fault unaligned LDRD/STRD/LDM/STM/… as an ARMv7-M part does
        (code hooks on those instructions; see `kernel_alignment_checks()`)."""
        self.mcu = mcu
        self.check_alignment = check_alignment
        self.budget = budget
        cpu = getattr(arm_const, f"UC_CPU_ARM_{mcu.core.unicorn_cpu}")
        # Never UC_MODE_MCLASS: it forces a Cortex-M33 whatever cpu= says (unicorn-notes.md).
        self.uc = new_engine(cpu)
        for r in mcu.regions:
            perms = (unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC if r.kind == "flash"
                     else unicorn.UC_PROT_ALL)
            self.uc.mem_map(r.base, r.size, perms)
        self.magic = self._map_magic_page()
        self._fault: tuple[str, int, int] | None = None
        self._entry_sp = 0
        self.uc.hook_add(unicorn.UC_HOOK_MEM_INVALID, self._on_mem_invalid)
        self.counter = make_counter(self.uc, mcu.core, tracer)
        policy = ACCESS_POLICIES.get(mcu.core.key)
        if policy is not None:
            self.counter.enable_access_plans(policy)
        if mcu.core.key == "m7":  # the only model with a branch predictor
            self.counter.enable_predictor()
        self.memory = memory_model(mcu, flash_data=False)
        if self.memory.fetch is not None:
            self.counter.set_fetch_cache(self.memory.fetch)
        if self.memory.ram is not None and self.counter.access_policy is not None:
            self.counter.set_ram_cache(self.memory.ram, list(self.memory.ram_ranges))
        self.flash_data = False
        self._flash_data_auto = flash_data is None
        self._timing: TimingModel | None = None
        if flash_data:
            self.enable_flash_data()
        self.image: ElfImage | None = None
        self.scs: SystemControlSpace | None = None
        if all(r.end <= scs_mod.BASE or r.base >= scs_mod.BASE + scs_mod.SIZE
               for r in mcu.regions):
            self.scs = SystemControlSpace(self, self._cycles_at_access)
        self._probes: dict[int, str] = {}  # code address -> "start"/"stop" (time windows)
        self.windows: list[tuple[int, int]] = []  # (start, stop) cycles of this call
        self._window_start: int | None = None
        self._align: AlignmentCheck | None = None
        self.stack_top = self.mcu.data.end
        self.stack_limit = self.mcu.data.base
        self._arena_start = self.mcu.data.base
        self._arena_next = self._arena_start
        if image is not None:
            self.load(image)

    # ------------------------------------------------------------------ memory map

    def _map_magic_page(self) -> int:
        for cand in _MAGIC_CANDIDATES:
            if all(cand + 0x1000 <= r.base or cand >= r.end for r in self.mcu.regions):
                self.uc.mem_map(cand, 0x1000, unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)
                self.uc.mem_write(cand, b"\xfe\xe7" * 0x800)  # b . (never reached: until=)
                return cand
        raise EmulationFault("no free page for the return trampoline in this memory map")

    def load(self, image: ElfImage) -> None:
        """Load every PT_LOAD segment; each must lie inside one region of the MCU."""
        for seg in image.segments:
            region = self.mcu.region_at(seg.vaddr, seg.memsz)
            if region is None:
                raise ElfError(
                    f"{image.path.name}: segment 0x{seg.vaddr:08x}-0x{seg.end:08x} lies outside "
                    f"the memory map of {self.mcu.name} ({self._map_text()}); "
                    f"was the ELF linked for this MCU?")
            self.uc.mem_write(seg.vaddr, seg.data)
            if seg.memsz > len(seg.data):
                self.uc.mem_write(seg.vaddr + len(seg.data), bytes(seg.memsz - len(seg.data)))
        self.image = image
        self._layout_stack(image)
        if mcu_has_divide(self.mcu):
            self.counter.add_divides(find_divides(image))
        if self._align is None:
            self._align = AlignmentCheck(self.uc, native=self.counter.kind == "native")
        self._align.add(find_stack_sites(image))
        # ARMv6-M: Unicorn itself faults every unaligned access
        if self.check_alignment and self.mcu.core.arch != "armv6-m":
            self._align.add(find_align_sites(image, fpu=self.mcu.core.fpu != "none"))

    # ------------------------------------------------------------------ time inside a call

    def cycles_before(self, index: int) -> int:
        """The cycles of the running call up to instruction `index` of the block running
        now (that instruction excluded): the blocks completed so far, as `cycles` counts
        them, plus the static cost of the running block's first `index` instructions
        (its followed accesses are already counted in full: they are evaluated at the
        block's start)."""
        c = self.counter
        cur = c.current_block()
        if cur is None:
            return 0
        blocks = c.blocks()
        if blocks.get(cur, 0) <= 1:
            blocks.pop(cur, None)
        else:
            blocks[cur] -= 1
        rep = self.timing.evaluate(blocks, c.edges(), c.divide_histograms(),
                                   c.cache_stats(), exit_target=None,
                                   branches=c.block_branches(),
                                   accesses=c.access_stats(blocks),
                                   prefetches=c.block_prefetches(),
                                   ram_misses=c.block_ram_misses())
        bc = self.timing.block(*cur)
        return rep.cycles + sum(bc.cycles[:index])

    def _cycles_at_access(self, load: bool, k: int) -> int:
        """For the System Control Space: cycles up to the k-th load (or store) of the
        running block whose address register is not SP or PC (see mcusim.scs)."""
        from capstone import arm_const as ac

        cur = self.counter.current_block()
        if cur is None:
            return 0
        bc = self.timing.block(*cur)
        kinds = ("load", "load_narrow", "load_double", "ldm") if load else \
            ("store", "store_reg", "store_double", "stm")
        at = [i for i, ins in enumerate(bc.insns)
              if ins.cls in kinds and ins.address_regs
              and not ins.address_regs & {ac.ARM_REG_SP, ac.ARM_REG_PC}]
        index = at[min(k, len(at) - 1)] if at else len(bc.insns)
        return self.cycles_before(index)

    def set_window(self, start: int, stop: int) -> None:
        """Time the stretches from instruction `start` to instruction `stop` (the first
        `stop` after each `start`), as a benchmark harness's start/stop triggers do: each
        call's stretches land in `windows` as (start, stop) cycles."""
        for address, what in ((start, "start"), (stop, "stop")):
            address &= ~1
            if address in self._probes:
                self._probes[address] = "both"
                continue
            self._probes[address] = what
            self.uc.hook_add(unicorn.UC_HOOK_CODE, self._on_probe, None, address, address)
        self.uc.ctl_flush_tb()

    def _on_probe(self, uc: unicorn.Uc, address: int, size: int, _user: object) -> None:
        what = self._probes.get(address)
        cur = self.counter.current_block()
        if what is None or cur is None:
            return
        bc = self.timing.block(*cur)
        index = next((i for i, ins in enumerate(bc.insns) if ins.address == address), 0)
        now = self.cycles_before(index)
        if self._window_start is not None and what in ("stop", "both"):
            self.windows.append((self._window_start, now))
            self._window_start = None
            if what == "stop":
                return
        if what in ("start", "both") and self._window_start is None:
            self._window_start = now

    @staticmethod
    def kernel_alignment_checks() -> bool:
        """Whether runs of mcusim's own kernel images (step, train, budget, profile of a
        model, the demo, bench) check alignment: on unless MCUSIM_CHECK_ALIGNMENT=0.  The
        hooks cost about 9 % of a training step on the M4/M7 (measured side by side:
        scripts/bench_alignment.py) and change no result; switching them off (e.g. for long
        sweeps) skips only the detection of mcusim's own unaligned accesses, which
        `verify`, user ELFs (`run`, `profile --elf`) and the test suite always check."""
        return os.environ.get("MCUSIM_CHECK_ALIGNMENT", "1") != "0"

    def _map_text(self) -> str:
        return ", ".join(f"{r.name} 0x{r.base:08x}-0x{r.end:08x}" for r in self.mcu.regions)

    def _layout_stack(self, image: ElfImage) -> None:
        """Stack top/limit and arena from the image's symbols, else from the memory map."""
        top = _first(image.symbol_value(n) for n in ("__stack_top", "_estack", "__StackTop"))
        stack_region: Region | None = None
        if top is not None:
            stack_region = self.mcu.region_at(top - 4, 4)
        if stack_region is None or stack_region.kind == "flash":
            stack_region = self.mcu.data
            top = stack_region.end
        used_end = stack_region.base
        for seg in image.segments:
            if stack_region.contains(seg.vaddr) and seg.end <= top:
                used_end = max(used_end, seg.end)
        limit = _first(image.symbol_value(n) for n in ("__stack_limit", "__StackLimit"))
        if limit is None or not (used_end <= limit < top):
            # the MCU's stack reservation; all that is left when the image leaves less
            limit = max(top - self.mcu.stack_bytes, (used_end + 7) & ~7)
        arena = image.symbol_value("__arena_start")
        if arena is None or not (used_end <= arena <= limit):
            arena = (used_end + 7) & ~7
        self.stack_top, self.stack_limit = top, limit
        self._arena_start = self._arena_next = arena

    # ------------------------------------------------------------------ data

    @property
    def arena_free(self) -> int:
        return self.stack_limit - self._arena_next

    def alloc(self, nbytes: int, align: int = 8) -> int:
        """Reserve bytes in the arena (between .bss and the stack); no free, see reset_arena."""
        addr = (self._arena_next + align - 1) & ~(align - 1)
        if addr + nbytes > self.stack_limit:
            raise UsageError(
                f"{nbytes} bytes do not fit the arena of {self.mcu.name} "
                f"({self.stack_limit - addr} bytes free below the stack)")
        self._arena_next = addr + nbytes
        return addr

    def reset_arena(self) -> None:
        self._arena_next = self._arena_start

    def put(self, data: np.ndarray | bytes, align: int = 8) -> int:
        """Copy an array (little-endian, C order) into the arena; returns its address."""
        raw = _as_bytes(data)
        addr = self.alloc(len(raw), align)
        self.uc.mem_write(addr, raw)
        return addr

    def write(self, address: int, data: np.ndarray | bytes) -> None:
        raw = _as_bytes(data)
        if self._flash_data_auto and not self.flash_data and raw:
            region = self.mcu.region_at(address)
            if region is not None and region.kind == "flash":
                self.enable_flash_data()
        self.uc.mem_write(address, raw)

    # ------------------------------------------------------------------ timing

    def enable_flash_data(self) -> None:
        """Model data reads from flash from now on (idempotent)."""
        if self.flash_data:
            return
        mem = memory_model(self.mcu, flash_data=True)
        if mem.data is not None:
            self.counter.set_data_cache(mem.data, mem.unified)
        self.memory = mem
        self.flash_data = True
        if self._timing is not None:
            self._timing.memory = mem

    def enable_call_tree(self) -> None:
        """Record the call tree of every call from now on (the profiler's)."""
        entries = sorted({s.address & ~1 for s in self.image.symbols.values()
                          if s.kind == "func"}) if self.image else []
        self.counter.enable_call_tree(entries)

    def flush_caches(self) -> None:
        """Invalidate the simulated flash caches and forget the branch predictor's state:
        the next call starts cold."""
        self.counter.flush_caches()

    def flush_predictor(self) -> None:
        """Forget the branch predictor's state only (the caches stay warm)."""
        self.counter.flush_predictor()

    @property
    def timing(self) -> TimingModel:
        if self._timing is None:
            from mcusim.timing.model import TimingModel

            self._timing = TimingModel(self.mcu, self.memory,
                                       lambda a, n: bytes(self.uc.mem_read(a, n)))
        return self._timing

    def attribution(self, result: CallResult):
        """Every cycle of a call charged to an instruction (mcusim.timing.model.attribute)."""
        from mcusim.timing.model import attribute

        return attribute(self.timing, result.blocks, result.edges, result.divides,
                         result.block_misses, self.magic, branches=result.branches,
                         accesses=result.accesses, prefetches=result.prefetches,
                         ram_misses=result.ram_misses)

    def cycles(self, result: CallResult) -> CycleReport:
        """The cycles of a call made on this machine."""
        return self.timing.evaluate(result.blocks, result.edges, result.divides, result.cache,
                                    exit_target=self.magic, branches=result.branches,
                                    accesses=result.accesses, prefetches=result.prefetches,
                         ram_misses=result.ram_misses)

    def read(self, address: int, nbytes: int) -> bytes:
        return bytes(self.uc.mem_read(address, nbytes))

    def read_array(self, address: int, dtype: np.dtype | type | str, count: int) -> np.ndarray:
        dt = np.dtype(dtype).newbyteorder("<")
        return np.frombuffer(self.read(address, dt.itemsize * count), dtype=dt).copy()

    # ------------------------------------------------------------------ calls

    def resolve(self, function: str | int) -> tuple[str, int]:
        """(name, address with the Thumb bit) of a function name or address."""
        if isinstance(function, int):
            name = self.image.describe(function & ~1) if self.image else f"0x{function:08x}"
            return name, function | 1
        if self.image is None:
            raise UsageError("no ELF image loaded")
        sym = self.image.function(function)
        return sym.name, sym.address | 1

    def call(self, function: str | int, *args: int, budget: int | None = None) -> CallResult:
        """Call a function with integer/pointer arguments (AAPCS) and run it to its return."""
        name, entry = self.resolve(function)
        if len(args) > MAX_ARGS:
            raise UsageError(f"too many arguments: {len(args)} (at most {MAX_ARGS})")
        words = [_to_word(a, i) for i, a in enumerate(args)]
        budget = self.budget if budget is None else budget
        uc = self.uc

        sp = self.stack_top
        stack_args = words[4:]
        if stack_args:
            sp -= 4 * len(stack_args)
        sp &= ~7
        entry_sp = sp
        if sp - 64 < self.stack_limit:
            raise UsageError("no room on the stack for the call's arguments")
        for i, w in enumerate(stack_args):
            uc.mem_write(sp + 4 * i, w.to_bytes(4, "little"))
        for reg, w in zip(_ARG_REGS, words[:4], strict=False):
            uc.reg_write(reg, w)
        uc.reg_write(arm_const.UC_ARM_REG_SP, sp)
        uc.reg_write(arm_const.UC_ARM_REG_LR, self.magic | 1)
        # Paint the stack reservation and a guard band of free RAM below it (never the
        # host's allocations): a stack that grows past its limit writes into the band.
        paint_lo = max(self.stack_limit - STACK_GUARD,
                       min((self._arena_next + 3) & ~3, self.stack_limit))
        uc.mem_write(paint_lo, _PAINT_BYTES * ((sp - paint_lo) // 4))
        self._entry_sp = entry_sp

        self._fault = None
        if self._align is not None:
            self._align.reset()
        counter = self.counter
        counter.reset()
        self.windows = []
        self._window_start = None
        executed = 0
        pc = entry
        while True:
            counter.arm(budget, executed)
            try:
                uc.emu_start(pc, self.magic)
            except unicorn.UcError as e:
                self._raise_fault(e, name)
            if self._align is not None and (bad := self._align.fault()) is not None:
                self._raise_unaligned(*bad)
            pending = counter.pending()
            if pending is None:
                break
            executed = counter.instructions()
            pc = uc.reg_read(arm_const.UC_ARM_REG_PC) | 1
            if pc & ~1 != pending[0]:
                raise EmulationFault(f"tracer lost its place at {self._where(pc)}", pc=pc)
            if executed + counter.block_instructions(*pending) > budget:
                raise BudgetExhausted(
                    f"instruction budget exhausted: {budget:,} instructions executed in "
                    f"{name} without returning (now at {self._where(pc)}); runaway code? "
                    f"(a longer program: --budget N)",
                    pc=pc & ~1)
        pc = uc.reg_read(arm_const.UC_ARM_REG_PC)
        if pc & ~1 != self.magic:
            self._raise_hint(pc & ~1)  # WFI: Unicorn stops after it, without an error
            raise EmulationFault(f"{name} stopped at {self._where(pc)} without returning", pc=pc)

        blocks = counter.blocks()
        lowest = self._lowest_touched(paint_lo, sp)
        if self._align is not None and self._align.min_sp() < self.stack_limit:
            lowest = min(self._align.min_sp(), lowest or sp)  # dropped past the guard band
        stack_bytes = 0 if lowest is None else entry_sp - lowest
        if lowest is not None and lowest < self.stack_limit:
            raise StackOverflow(
                f"stack overflow in {name}: it used at least {stack_bytes} bytes of stack, "
                f"{entry_sp - self.stack_limit} are reserved (stack limit "
                f"0x{self.stack_limit:08x})", address=lowest)
        result = CallResult(
            function=name, address=entry & ~1,
            return_value=uc.reg_read(arm_const.UC_ARM_REG_R0) & 0xFFFFFFFF,
            return_value_r1=uc.reg_read(arm_const.UC_ARM_REG_R1) & 0xFFFFFFFF,
            instructions=counter.instructions(blocks), stack_bytes=stack_bytes,
            blocks=blocks, edges=counter.edges(), tracer=counter.kind,
            divides=counter.divide_histograms(), cache=counter.cache_stats(),
            block_misses=counter.block_misses(), branches=counter.block_branches(),
            prefetches=counter.block_prefetches(), ram_misses=counter.block_ram_misses(),
            accesses=counter.access_stats(blocks),
            **self._tree())
        if self.scs is not None and self.scs.counting:
            self.scs.end_call(self.cycles(result).cycles)  # the firmware's clock runs on
        return result

    def _tree(self) -> dict:
        if not self.counter.call_tree_enabled:
            return {}
        nodes, counts = self.counter.call_tree()
        return {"tree_nodes": nodes, "tree_counts": counts}

    def _lowest_touched(self, lo: int, hi: int) -> int | None:
        """Lowest address in [lo, hi) whose painted word changed."""
        if hi <= lo:
            return None
        words = np.frombuffer(self.uc.mem_read(lo, hi - lo), dtype="<u4")
        changed = np.argmax(words != PAINT)  # first True, or 0 when none
        if changed == 0 and words.size and words[0] == PAINT:
            return None
        return lo + 4 * int(changed)

    # ------------------------------------------------------------------ faults

    def _on_mem_invalid(self, uc: unicorn.Uc, access: int, address: int, size: int,
                        value: int, user_data: object) -> bool:
        kind = {
            unicorn.UC_MEM_READ_UNMAPPED: "read of unmapped memory",
            unicorn.UC_MEM_WRITE_UNMAPPED: "write to unmapped memory",
            unicorn.UC_MEM_FETCH_UNMAPPED: "instruction fetch from unmapped memory",
            unicorn.UC_MEM_WRITE_PROT: "write to flash (read-only)",
            unicorn.UC_MEM_READ_PROT: "read of protected memory",
            unicorn.UC_MEM_FETCH_PROT: "instruction fetch from non-executable memory",
        }.get(access, "invalid memory access")
        self._fault = (kind, address, uc.reg_read(arm_const.UC_ARM_REG_PC))
        return False

    def _where(self, pc: int) -> str:
        pc &= ~1
        if self.image is not None:
            return self.image.describe(pc)
        return f"0x{pc:08x}"

    def _raise_fault(self, err: unicorn.UcError, name: str) -> None:
        """Turn Unicorn's stop into the fault the program has, in one line.

        What Unicorn 2.1.4 does (measured with tests/programs/fault_probes.S on its M0, M4
        and M7 models; see tests/test_fault_messages.py):
        - WFE, YIELD (and WFE.W, YIELD.W): UC_ERR_INSN_INVALID with the PC *after* them;
          WFI: emu_start returns without an error, PC after it (see `call`); SEV: a NOP.
        - SVC: UC_ERR_EXCEPTION with the PC after it; BKPT: UC_ERR_EXCEPTION at it.
        - BX/BLX to an even address: UC_ERR_INSN_INVALID at the target with xPSR.T clear
          (the INVSTATE UsageFault); a call through a NULL pointer is one of these at 0,
          or UC_ERR_FETCH_UNMAPPED at 0 where nothing is mapped there.
        - UDF, an undecodable word, an instruction of another core (SDIV on the M0, VFP
          double precision on the M4): UC_ERR_INSN_INVALID at it.
        """
        uc = self.uc
        pc = uc.reg_read(arm_const.UC_ARM_REG_PC) & ~1
        code = err.errno
        sp = uc.reg_read(arm_const.UC_ARM_REG_SP)
        if sp < self.stack_limit <= self._entry_sp:  # e.g. runaway recursion ran off RAM
            raise StackOverflow(
                f"stack overflow in {name}: it used at least {self._entry_sp - sp} bytes of "
                f"stack (SP reached 0x{sp:08x}), {self._entry_sp - self.stack_limit} are "
                f"reserved (stack limit "
                f"0x{self.stack_limit:08x}); it then faulted at {self._where(pc)}",
                pc=pc, address=sp)
        if self._fault is not None:
            kind, address, fpc = self._fault
            fpc &= ~1
            if code == unicorn.UC_ERR_FETCH_UNMAPPED or "fetch" in kind:
                if address & ~1 == 0:
                    self._raise_null_call(name, f"{kind} at 0x00000000", UnmappedAccess)
                where = f"jump from {name}"
                cls: type[EmulationFault] = UnmappedAccess
                msg = f"{kind} at 0x{address:08x} ({where})"
            else:
                cls = FlashWrite if "flash" in kind else UnmappedAccess
                region = self.mcu.region_at(address)
                in_region = f" in {region.name}" if region else ""
                msg = f"{kind} at 0x{address:08x}{in_region}, by {self._where(fpc)}"
            raise cls(msg, pc=fpc, address=address, location=self._where(fpc))
        if code == unicorn.UC_ERR_INSN_INVALID:
            if not uc.reg_read(arm_const.UC_ARM_REG_XPSR) & _XPSR_T:
                self._raise_invstate(pc, name)
            self._raise_hint(pc)
            self._raise_invalid(pc)
        if code == unicorn.UC_ERR_EXCEPTION and self.mcu.region_at(pc) is None:
            # ARMv7-M: a fetch from an execute-never or unmapped address is a MemManage /
            # HardFault, which Unicorn reports as an exception
            raise UnmappedAccess(
                f"instruction fetch from unmapped memory at 0x{pc:08x} (jump from {name})",
                pc=pc, address=pc)
        if code == unicorn.UC_ERR_EXCEPTION:
            at = self._decode(pc)
            if at is not None and at.mnemonic == "bkpt":
                imm = self._halfword(pc) & 0xFF
                what = ("a semihosting call (printf, exit, file I/O through a debugger), "
                        "which mcusim does not model" if imm == 0xAB else
                        "a breakpoint: mcusim runs no debugger")
                raise EmulationFault(f"BKPT #0x{imm:02x} at {self._at(pc)}: {what}",
                                     pc=pc, address=pc, location=self._where(pc))
            before = self._executed_before(pc)
            if before is not None and before[1].mnemonic == "svc":
                svc = before[0]
                raise EmulationFault(
                    f"SVC #{self._halfword(svc) & 0xFF} at {self._at(svc)}: supervisor calls "
                    "are not modelled", pc=svc, address=svc, location=self._where(svc))
            insn = self._disasm_at(pc)
            raise EmulationFault(
                f"CPU exception at {self._where(pc)}{insn} (UsageFault/HardFault, SVC or BKPT: "
                f"e.g. an FPU instruction on a core without FPU)", pc=pc, address=pc,
                location=self._where(pc))
        if code in (unicorn.UC_ERR_READ_UNALIGNED, unicorn.UC_ERR_WRITE_UNALIGNED,
                    unicorn.UC_ERR_FETCH_UNALIGNED):
            raise EmulationFault(f"unaligned access (HardFault) at {self._where(pc)}", pc=pc)
        raise EmulationFault(f"emulation stopped at {self._where(pc)}: {err}", pc=pc)

    def _raise_invalid(self, pc: int) -> None:
        """UC_ERR_INSN_INVALID in Thumb state at `pc`: a trap (UDF), a word no Cortex-M
        decodes, or an instruction of another core (only then "built for another core?")."""
        where = self._where(pc)
        ins = self._decode(pc)
        if ins is None:
            ins = next(_a_profile_disassembler().disasm(self._code(pc), pc, 1), None)
        if ins is None:
            raw = self._code(pc)
            words = " ".join(f"{int.from_bytes(raw[i:i + 2], 'little'):04x}"
                             for i in range(0, len(raw) - 1, 2))
            raise InvalidInstruction(
                f"undefined instruction ({words or 'unreadable'}) at {self._at(pc)}: not a "
                "Thumb instruction of any Cortex-M or Arm core (data, or a corrupted code "
                "pointer or return address, executed as code?)",
                pc=pc, address=pc, location=where)
        if ins.mnemonic.startswith("udf"):
            raise InvalidInstruction(
                f"UDF {ins.op_str} at {self._at(pc)}: a permanently undefined instruction, "
                "a trap (__builtin_trap(), or a path the compiler proved unreachable)",
                pc=pc, address=pc, location=where)
        insn = f" `{ins.mnemonic} {ins.op_str}`".rstrip("` ") + "`"
        raise InvalidInstruction(
            f"invalid instruction{insn} at {where}: not in the "
            f"{self.mcu.core.arch.upper()} instruction set of the {self.mcu.core.name} "
            f"({self.mcu.name}); was the code built for another core?",
            pc=pc, address=pc, location=where)

    def _raise_hint(self, pc: int) -> None:
        """WFE/WFI/YIELD that Unicorn stopped after (PC already past it): say so."""
        before = self._executed_before(pc)
        if before is None:
            return
        addr, ins = before
        mn = ins.mnemonic.split(".")[0]
        if mn in ("wfe", "wfi"):
            raise EmulationFault(
                f"{mn.upper()} at {self._at(addr)}: the program waits for an "
                "event/interrupt, which mcusim does not model", pc=addr, address=addr,
                location=self._where(addr))
        if mn == "yield":
            raise EmulationFault(
                f"YIELD at {self._at(addr)}: the program yields to other threads (an RTOS "
                "hint), which mcusim does not model", pc=addr, address=addr,
                location=self._where(addr))

    def _raise_invstate(self, target: int, name: str) -> None:
        """Execution reached `target` with xPSR.T clear: an interworking branch (BX, BLX,
        POP/LDR PC) to an even address.  At 0: a call through a NULL function pointer."""
        site = self._branch_site(target)
        if target == 0:
            self._raise_null_call(name, "branch to 0x00000000 (an INVSTATE UsageFault on a "
                                        "Cortex-M)", EmulationFault, site)
        mn, frm = "BX", f" (in a call of {name})"
        if site is not None:
            mn, frm = site[1].split(".")[0].upper(), f" at {self._at(site[0])}"
        raise EmulationFault(
            f"{mn} to 0x{target:08x} with bit 0 clear: INVSTATE UsageFault (Cortex-M runs "
            f"Thumb only; a function pointer lost its Thumb bit?){frm}; target "
            f"{self._loc(target) or 'outside any function'}", pc=target, address=target,
            location=self._where(site[0]) if site else None)

    def _raise_null_call(self, name: str, what: str, cls: type[EmulationFault],
                         site: tuple[int, str] | None = None) -> None:
        site = site or self._branch_site(0)
        frm = f"from {self._loc(site[0]) or self._at(site[0])}" if site else \
            f"in a call of {name}"
        raise cls(f"call through a NULL function pointer ({frm}): {what}", pc=0, address=0,
                  location=self._where(site[0]) if site else None)

    def _branch_site(self, target: int) -> tuple[int, str] | None:
        """(address, mnemonic) of the BX/BLX Rm that just branched to `target` (Rm holds
        it, with or without bit 0), or None when it cannot be told.  First the BLX before
        LR's return address, then the one predecessor block of `target`, then the one block
        of the call that ends in such a branch."""
        uc = self.uc
        regs = [uc.reg_read(arm_const.UC_ARM_REG_R0 + i) for i in range(13)]
        regs += [uc.reg_read(arm_const.UC_ARM_REG_SP), uc.reg_read(arm_const.UC_ARM_REG_LR)]

        def branch(addr: int, hw: int | None) -> str | None:
            if hw is None or hw & 0xFF00 != 0x4700 or hw & 7:
                return None
            rm = (hw >> 3) & 0xF
            if rm >= len(regs) or regs[rm] & ~1 != target:
                return None
            return "blx" if hw & 0x80 else "bx"

        lr = regs[14]
        if lr & 1 and lr & ~1 != self.magic:
            site = (lr & ~1) - 2
            if branch(site, self._halfword(site)) == "blx":
                return site, "blx"
        blocks = self.counter.blocks()
        preds = {a for (a, b) in self.counter.edges() if b == target and a != START}
        candidates = [(a, n) for (a, n) in blocks if a in preds] if len(preds) == 1 else \
            list(blocks)
        found = []
        for a, n in candidates:
            last = self._last_insn(a, n)
            if last is not None and (mn := branch(last[0], self._halfword(last[0]))):
                found.append((last[0], mn))
            if len(found) > 1:
                return None
        return found[0] if found else None

    def _executed_before(self, pc: int) -> tuple[int, capstone.CsInsn] | None:
        """The instruction that ends at `pc` as the last of a block that ran (Unicorn
        stops *after* WFE, WFI, YIELD and SVC), or None."""
        for a, n in self.counter.blocks():
            if a + n == pc:
                return self._last_insn(a, n)
        return None

    def _last_insn(self, address: int, size: int) -> tuple[int, capstone.CsInsn] | None:
        try:
            code = self.read(address, size)
        except unicorn.UcError:
            return None
        last = None
        for ins in self.counter.disassembler.disasm(code, address):
            last = ins
        if last is None or last.address + last.size != address + size:
            return None
        return last.address, last

    def _loc(self, address: int) -> str | None:
        """'do_svc+0x2, probes.S:51' (function, offset, source line), or None."""
        fn = self.image.function_at(address) if self.image is not None else None
        if fn is None:
            return None
        where = f"{fn[0].name}+0x{fn[1]:x}"
        line = self.image.source_line(address)
        if line:
            where += f", {line[0]}:{line[1]}"
        return where

    def _at(self, address: int) -> str:
        """'0x0000001a (do_svc+0x2, probes.S:51)': an address and where it is."""
        loc = self._loc(address)
        return f"0x{address:08x}" + (f" ({loc})" if loc else "")

    def _code(self, pc: int) -> bytes:
        for n in (4, 2):
            try:
                return self.read(pc, n)
            except unicorn.UcError:
                continue
        return b""

    def _halfword(self, address: int) -> int | None:
        try:
            return int.from_bytes(self.read(address, 2), "little")
        except unicorn.UcError:
            return None

    def _decode(self, pc: int) -> capstone.CsInsn | None:
        return next(self.counter.disassembler.disasm(self._code(pc), pc, 1), None)

    def _raise_unaligned(self, pc: int, address: int) -> None:
        site = self._align.sites[pc]
        insn = self._disasm_at(pc) or f" {site.kind}"
        raise EmulationFault(
            f"unaligned {site.kind} (UsageFault){insn} at 0x{address:08x}, by "
            f"{self._where(pc)}: the {self.mcu.core.name} allows unaligned addresses only "
            "for LDR/STR/LDRH/STRH", pc=pc, address=address, location=self._where(pc))

    def _disasm_at(self, pc: int) -> str:
        try:
            code = self.read(pc, 4)
        except unicorn.UcError:
            return ""
        ins = next(self.counter.disassembler.disasm(code, pc, 1), None)
        if ins is None:
            return f" (0x{int.from_bytes(code[:2], 'little'):04x})"
        return f" `{ins.mnemonic} {ins.op_str}`".rstrip("` ") + "`"


@cache
def _a_profile_disassembler() -> capstone.Cs:
    """Thumb-2 as the A and R profiles have it: what a Cortex-M decoder rejects but an
    Arm core runs is code built for another core."""
    return capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB)


def mcu_has_divide(mcu: Mcu) -> bool:
    return mcu.core.arch != "armv6-m"


def find_divides(image: ElfImage) -> list[DivideSite]:
    """Every SDIV/UDIV (T1 encodings) at any halfword of the executable segments.  A
    match that is really data or the middle of another instruction never executes as an
    instruction, so its hook never fires."""
    sites = []
    for seg in image.segments:
        if not seg.flags & 1:  # PF_X
            continue
        hw = np.frombuffer(seg.data[: len(seg.data) // 2 * 2], dtype="<u2")
        if len(hw) < 2:
            continue
        first, second = hw[:-1], hw[1:]
        hit = (((first & 0xFFF0) == 0xFB90) | ((first & 0xFFF0) == 0xFBB0)) & \
            ((second & 0xF0F0) == 0xF0F0)
        for i in np.nonzero(hit)[0]:
            rn, rm = int(first[i] & 0xF), int(second[i] & 0xF)
            if rn > 12 or rm > 12:
                continue  # SP/LR/PC operands are UNPREDICTABLE: not a real divide
            sites.append(DivideSite(seg.vaddr + 2 * int(i), arm_const.UC_ARM_REG_R0 + rn,
                                    arm_const.UC_ARM_REG_R0 + rm,
                                    (int(first[i]) & 0xFFF0) == 0xFB90))
    return sites


def _first(values: Iterable[int | None]) -> int | None:
    for v in values:
        if v is not None:
            return v
    return None


def _to_word(value: int, index: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UsageError(f"argument {index + 1} must be an integer, got {value!r}")
    v = int(value)
    if not -(1 << 31) <= v < (1 << 32):
        raise UsageError(f"argument {index + 1} ({v}) does not fit in 32 bits")
    return v & 0xFFFFFFFF


def _as_bytes(data: np.ndarray | bytes) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    arr = np.ascontiguousarray(data)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr.tobytes()
