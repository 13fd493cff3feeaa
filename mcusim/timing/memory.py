"""The memory side of the timing model: flash wait states and the flash accelerator/cache.

Instruction fetches from flash go through the MCU's flash cache (STM32 ART, M7 I-cache,
RP2040 XIP cache, NVM buffers), simulated line by line per executed block; data reads from
flash (frozen weights, constants) go through its data side when the machine models them.
SRAM and TCM have no wait states.  Parameters come from cost_models/mcus.toml.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mcusim.catalog import Mcu
from mcusim.trace.blocks import CacheSpec

# The accelerator kinds whose one cache serves both instruction fetch and data reads.
UNIFIED = frozenset(("xip", "nvm-buffer"))


@dataclass(frozen=True)
class MemoryModel:
    """What instruction fetch and flash data reads cost on one MCU."""

    fetch: CacheSpec | None
    data: CacheSpec | None
    unified: bool
    fetch_penalty: int  # cycles per fetch-line miss
    data_penalty: int  # cycles per data-line miss
    description: str
    assumptions: tuple[str, ...] = field(default=())
    # the M7's D-cache over RAM outside the TCMs, and its (lo, hi, miss cycles) ranges
    ram: CacheSpec | None = None
    ram_ranges: tuple[tuple[int, int, int], ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        def spec(s: CacheSpec | None) -> dict[str, object] | None:
            if s is None:
                return None
            return {"base": s.lo, "end": s.hi, "line_bytes": s.line_bytes, "sets": s.sets,
                    "ways": s.ways, "prefetch": s.prefetch}
        return {"description": self.description, "fetch_cache": spec(self.fetch),
                "data_cache": spec(self.data), "unified": self.unified,
                "fetch_miss_cycles": self.fetch_penalty, "data_miss_cycles": self.data_penalty,
                "ram_dcache": spec(self.ram),
                "ram_dcache_ranges": [{"base": lo, "end": hi, "miss_cycles": c}
                                      for lo, hi, c in self.ram_ranges],
                "assumptions": list(self.assumptions)}


def _geometry(size: int, line: int, ways: int) -> tuple[int, int]:
    lines = max(1, size // line)
    if ways <= 0 or ways > lines:
        ways = lines  # fully associative
    sets = max(1, lines // ways)
    while sets & (sets - 1):  # round down to a power of two
        sets &= sets - 1
    return sets, ways


def _m7_dcache(mcu: Mcu, model: MemoryModel) -> MemoryModel:
    """The Cortex-M7's L1 data cache: one cache over flash (its line fill: the flash
    model's miss cost) and the RAM regions outside the TCMs ([mcu.dcache]), fed by the
    load addresses the tracer follows (no memory hook: the M7's flash data reads are
    charged by default, and Unicorn's IT-block bug is never armed).  Other cores keep the
    flash data path of `_memory_model`."""
    if mcu.core.key != "m7":
        return model
    fc, dc = mcu.flash_cache, mcu.dcache
    ranges: list[tuple[int, int, int]] = []
    if fc is not None and fc.kind == "l1" and model.data_penalty and model.fetch is not None:
        ranges.append((mcu.flash.base, mcu.flash.end, model.data_penalty))
    names = ["FLASH"] if ranges else []
    if dc is not None:
        for r in dc.ranges:
            ranges.append((mcu.region(r.region).base, mcu.region(r.region).end, r.miss_cycles))
            names.append(r.region)
    if not ranges:
        return replace(model, data=None, unified=False)
    if dc is not None:
        size, line, ways_ = dc.size_bytes, dc.line_bytes, dc.ways
    else:
        size = fc.data_size_bytes or fc.size_bytes  # type: ignore[union-attr]
        line, ways_ = fc.line_bytes, fc.ways  # type: ignore[union-attr]
    sets, ways = _geometry(size, line, ways_)
    spec = CacheSpec(min(r[0] for r in ranges), max(r[1] for r in ranges), line, sets, ways,
                     False)
    note = (f"D-cache ({size} B, {line} B lines, {ways}-way, FIFO replacement, enabled as "
            "firmware usually enables it) over "
            + ", ".join(f"{n} ({c} cycles per line fill)"
                        for n, (_lo, _hi, c) in zip(names, ranges, strict=True))
            + ": loads whose address the tracer follows (LDR/LDRB/LDRH/VLDR.32; LDM, LDRD "
            "and loads whose address it cannot follow count as hits; stores drain through "
            "the store buffer)")
    return replace(model, data=None, unified=False, ram=spec, ram_ranges=tuple(ranges),
                   assumptions=(*model.assumptions, note))


def memory_model(mcu: Mcu, flash_data: bool) -> MemoryModel:
    """The memory model of an MCU; `flash_data` models data reads from flash as well.
    What `Mcu.at_clock` changed (--clock, --wait-states, --no-flash-cache) is listed with
    the model's assumptions."""
    model = _memory_model(mcu, flash_data)
    model = _m7_dcache(mcu, model)
    extra = mcu.clock_assumptions
    if not extra:
        return model
    return replace(model, assumptions=(*model.assumptions, *extra))


def _memory_model(mcu: Mcu, flash_data: bool) -> MemoryModel:
    flash = mcu.flash
    fc = mcu.flash_cache
    ws = mcu.flash_wait_states
    notes: list[str] = []
    code_in_flash = mcu.code.kind == "flash"
    off = mcu.flash_cache_off
    if fc is None and off is not None and off.miss_cycles is not None:
        # a cache switched off (--no-flash-cache) whose miss cost is not the wait states
        # (RP2040 XIP): every new flash word is one uncached access to the flash behind it
        miss = off.miss_cycles
        fetch = CacheSpec(flash.base, flash.end, 4, 1, 1, False)
        data = CacheSpec(flash.base, flash.end, 4, 1, 1, False) if flash_data else None
        notes.append(f"{off.kind} cache off (--no-flash-cache): every new flash word costs "
                     f"one uncached access, the cache's miss cost ({miss} cycles; "
                     "assumption), with no prefetch")
        return MemoryModel(fetch, data, False, miss, miss,
                           f"{off.kind} cache off: {miss} cycles per flash word",
                           tuple(notes))
    if fc is None:
        if ws == 0:
            return MemoryModel(None, None, False, 0, 0,
                               f"flash with 0 wait states at {mcu.clock_hz / 1e6:g} MHz, no "
                               "cache modelled: every access is single-cycle")
        # no accelerator: every new 32-bit fetch word waits (prefetch covers straight code)
        line = 4
        fetch = CacheSpec(flash.base, flash.end, line, 1, 1, True)
        data = CacheSpec(flash.base, flash.end, line, 1, 1, False) if flash_data else None
        notes.append("no flash accelerator: a 1-word buffer with sequential prefetch")
        return MemoryModel(fetch, data, False, ws, ws,
                           f"{ws} wait states, no cache", tuple(notes))
    penalty = fc.line_fill_cycles(ws)
    if fc.clock_divider:
        notes.append(f"a {fc.kind} line fill costs ({ws} wait states + 1) x "
                     f"{fc.clock_divider} (flash interface at CPU clock / "
                     f"{fc.clock_divider}) + {fc.bus_cycles} bus cycles = {penalty} CPU "
                     "cycles (mcus.toml)")
    elif fc.miss_cycles is None:
        notes.append(f"a {fc.kind} line miss costs the {ws} flash wait states "
                     "(one wide flash access per line; bus beats not counted): assumption")
    if penalty == 0:
        return MemoryModel(None, None, False, 0, 0,
                           f"{fc.kind} cache in front of 0-wait flash: not modelled "
                           "(no miss cost known)",
                           (f"{mcu.name}: flash misses cost 0 cycles (no wait states and no "
                            "miss_cycles in mcus.toml): assumption",))
    sets, ways = _geometry(fc.size_bytes, fc.line_bytes, fc.ways)
    # The M7's L1 caches have no sequential prefetch; nor has the RP2040's XIP cache: a miss
    # is one serial flash access through the SSI (RP2040 datasheet §2.6.3.1: "If the data is
    # not found in the cache, an external serial access is generated via the SSI, and the
    # resulting data is stored in the cache"; no prefetch is described)
    prefetch = fc.kind not in ("l1", "xip")
    if not prefetch and fc.kind == "xip":
        notes.append("XIP cache without prefetch: every line not in the cache is one serial "
                     "flash access (RP2040 datasheet §2.6.3.1)")
    if prefetch:
        notes.append("sequential prefetch: the line after the previous one is filled while "
                     "that one executes; it waits for the part of the fill that the "
                     "previous line's execution (the block's cycles per line) does not "
                     "cover (assumption: cycles spread evenly over a block's bytes); a ")
        notes[-1] += "fetch on any other line is a miss"
    fetch = CacheSpec(flash.base, flash.end, fc.line_bytes, sets, ways, prefetch)
    unified = fc.kind in UNIFIED or (fc.kind == "xip")
    data: CacheSpec | None = None
    if flash_data:
        if unified:
            data = fetch
        elif fc.data_size_bytes:
            dsets, dways = _geometry(fc.data_size_bytes, fc.line_bytes, fc.ways)
            data = CacheSpec(flash.base, flash.end, fc.line_bytes, dsets, dways, False)
        else:
            data = CacheSpec(flash.base, flash.end, 4, 1, 1, False)
            notes.append("data reads from flash are not cached: each new word waits")
    else:
        notes.append("data reads from flash (literal pools, constants) are not traced: they "
                     "are taken to hit the flash buffer (assumption)")
    where = "code in flash" if code_in_flash else f"code in {mcu.code_region}"
    desc = (f"{where}; {ws} wait states at {mcu.clock_hz / 1e6:g} MHz; {fc.kind} "
            f"{fc.size_bytes} B, {fc.line_bytes} B lines, {ways}-way; miss {penalty} cycles")
    return MemoryModel(fetch, data, unified and data is not None, penalty, penalty, desc,
                       tuple(notes))
