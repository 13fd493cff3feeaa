"""Load the core and MCU catalogs (cost_models/*.toml) into validated, typed objects.

Every malformed or inconsistent entry raises CatalogError naming the file, the entry and
the field.  Nothing here prints.
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
import re
import sys
import warnings
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from mcusim.errors import CatalogError, UnknownNameError, UsageError
from mcusim.resources import data_dir
from mcusim.userfiles import check_regular, read_bytes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

COST_MODELS_DIR = data_dir("cost_models")
KERNELS_DIR = data_dir("kernels")

CORE_KEYS = ("m0plus", "m4", "m7")
REGION_KINDS = ("flash", "sram", "itcm", "dtcm")
FPU_KINDS = ("none", "sp", "dp")
CACHE_KINDS = ("art", "icache", "nvm-buffer", "xip", "l1")
CACHE_MAX_BYTES = 1 << 20  # a flash accelerator or L1 cache is KBs; 1 MiB bounds the model
MAX_WAIT_STATES = 15  # FLASH_ACR LATENCY / NVMCTRL RWS are 4-bit fields
MAX_CLOCK_HZ = 2_000_000_000  # a Cortex-M clock above 2 GHz is a typo
PAGE = 4096  # Unicorn maps memory in 4 KB pages
# MCU names, region names and core keys end up in cache paths and linker scripts: a safe
# character set only, never starting with '-' (an option) or '.' (a hidden or parent
# directory), never containing '..', at most 64 characters (`is_safe_name`).
NAME_RE = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,63}")
NAME_RULE = ("may only use letters, digits, '_', '+', '-' and '.' (not first: '-' or '.'; "
             "no path separators, no '..', at most 64 characters)")
CATALOG_LIMIT = 4 << 20  # bytes: a catalog file is a few KB; anything larger is a mistake
CATALOG_WHAT = "a catalog TOML file"


def is_safe_name(name: object) -> bool:
    """Whether `name` may become part of a cache path or a linker script (NAME_RULE)."""
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None and ".." not in name

# Energy bases.  "chip" (the default, the whole catalog's voltage_v x run_current_ma) and
# "board" (the optional board_voltage_v x board_current_ma of an MCU's [mcu.energy] table).
# ENERGY_BASIS_CHIP is also mcus.toml's `energy_basis` text (a test keeps them equal).
ENERGY_BASES = ("chip", "board")
ENERGY_BASIS_CHIP = (
    "chip supply: typical current into all of the MCU's supply pins (every rail the chip "
    "draws from; a core rail fed by an on-chip regulator counted at the regulator's input) at "
    "the datasheet's typical supply voltage, run mode at clock_hz, code running from the "
    "part's code memory, peripherals off, I/O idle, 25 °C, as the datasheet's run-mode table "
    "gives it. Board-level figures (board input, including regulators, LEDs and other parts) "
    "are a separate option, never mixed in.")
ENERGY_BASIS_BOARD = (
    "board-level: current into the board's power input (USB or VIN) at that input's voltage, "
    "including its regulators, LEDs, external flash and other parts; not comparable with the "
    "chip figures of other MCUs.")


@dataclass(frozen=True)
class Core:
    """A Cortex-M core: ISA, Unicorn CPU model, compiler settings."""

    key: str
    name: str
    arch: str
    unicorn_cpu: str
    dsp: bool
    fpu: str
    gcc_flags: tuple[str, ...]
    zig_target: str
    zig_cpu: str


@dataclass(frozen=True)
class Region:
    """One memory region of an MCU, as on the part."""

    name: str
    kind: str
    base: int
    size: int
    note: str = ""

    @property
    def end(self) -> int:
        return self.base + self.size

    @property
    def writable(self) -> bool:
        """Writable by the program (flash is read-only at run time)."""
        return self.kind != "flash"

    def contains(self, address: int, length: int = 1) -> bool:
        return self.base <= address and address + length <= self.end


@dataclass(frozen=True)
class FlashCache:
    """The flash accelerator / cache in front of instruction (and data) fetches."""

    kind: str
    size_bytes: int
    line_bytes: int
    ways: int
    data_size_bytes: int = 0
    miss_cycles: int | None = None
    # a line fill from a flash interface clocked at CPU / clock_divider: (wait states + 1)
    # x clock_divider + bus_cycles CPU cycles (instead of miss_cycles or the wait states)
    clock_divider: int | None = None
    bus_cycles: int = 0

    def line_fill_cycles(self, wait_states: int) -> int:
        """CPU cycles of one line miss at `wait_states`."""
        if self.clock_divider:
            return (wait_states + 1) * self.clock_divider + self.bus_cycles
        return self.miss_cycles if self.miss_cycles is not None else wait_states


@dataclass(frozen=True)
class DCacheRange:
    """A RAM region behind the M7's D-cache and what a line fill from it costs."""

    region: str
    miss_cycles: int


@dataclass(frozen=True)
class DCache:
    """The M7's L1 data cache over RAM outside the TCMs (which bypass it)."""

    size_bytes: int
    line_bytes: int
    ways: int
    ranges: tuple[DCacheRange, ...]


def _dcache(e: Any, regions: Any) -> DCache | None:
    """[mcu.dcache] (optional): size_bytes, line_bytes, ways and [[mcu.dcache.ranges]]
    (region = a RAM region's name, miss_cycles = CPU cycles per line fill from it)."""
    raw = e.get("dcache", dict, required=False)
    if raw is None:
        return None
    de = _Entry(e.path, f"{e.what} dcache", raw)
    size = de.positive_int("size_bytes")
    line = de.positive_int("line_bytes")
    ways = de.positive_int("ways")
    names = {r.name: r for r in regions}
    out = []
    for i, rr in enumerate(de.get("ranges", list, required=True) or []):
        if not isinstance(rr, dict):
            de.fail(f"ranges[{i}]", "must be a table (region, miss_cycles)")
            continue
        re_ = _Entry(e.path, f"{e.what} dcache.ranges[{i}]", rr)
        name = re_.get("region", str)
        miss = re_.positive_int("miss_cycles", minimum=0)
        re_.check_unknown()
        if name is not None and name not in names:
            re_.fail("region", f"names no region of the MCU ({', '.join(names)})")
        elif name is not None and names[name].kind in ("itcm", "dtcm", "flash"):
            re_.fail("region", f"{name} is {names[name].kind}: the D-cache covers RAM "
                               "outside the TCMs (flash has flash_cache)")
        elif name is not None and miss is not None:
            out.append(DCacheRange(name, miss))
    de.check_unknown()
    if line is not None and (line & (line - 1) or not 4 <= line <= 256):
        de.fail("line_bytes", f"must be a power of two from 4 to 256 (got {line})")
    if size is not None and line is not None and ways is not None and \
            (size % (line * ways) or size > CACHE_MAX_BYTES):
        de.fail("size_bytes", "must be a multiple of line_bytes x ways, at most "
                              f"{CACHE_MAX_BYTES}")
    return DCache(size, line, ways, tuple(out))


def _hz_text(hz: float) -> str:
    """A clock for a message: '168 MHz', '32.768 kHz' (no import of the renderers here)."""
    if hz >= 1e6:
        return f"{hz / 1e6:g} MHz"
    if hz >= 1e3:
        return f"{hz / 1e3:g} kHz"
    return f"{hz:g} Hz"


@dataclass(frozen=True)
class ClockModel:
    """How an MCU's flash wait states and run current follow its CPU clock ([mcu.clock]).

    wait_states: (up to Hz, wait states) rows, ascending: a clock f needs the wait states
    of the first row with f <= its "up to" (the reference manual's table at `conditions`);
    the last row's "up to" is the part's maximum clock.
    Run current: I(f) = static_ma + (ref_current_ma - static_ma) * f / ref_clock_hz, the
    line through the catalog's point (clock_hz, run_current_ma) and static_ma at 0 Hz
    (static_ma = 0: proportional to the clock; static_ma = run_current_ma: constant).
    """

    wait_states: tuple[tuple[int, int], ...]
    conditions: str
    static_ma: float
    ref_clock_hz: int  # the catalog's clock_hz and run_current_ma: the model's anchor
    ref_current_ma: float
    min_hz: int = 1
    given: bool = True  # False: a user entry without [mcu.clock] (one point, constant I)

    @property
    def max_hz(self) -> int:
        return self.wait_states[-1][0]

    @property
    def ua_per_mhz(self) -> float:
        """The run current's slope, µA per MHz: (run_current_ma - static_ma) / clock."""
        return (self.ref_current_ma - self.static_ma) * 1000 / (self.ref_clock_hz / 1e6)

    def wait_states_at(self, hz: int) -> int:
        for up_to, ws in self.wait_states:
            if hz <= up_to:
                return ws
        raise UsageError(f"{_hz_text(hz)} is above the wait-state table "
                         f"(up to {_hz_text(self.max_hz)})")

    def current_at(self, hz: int) -> float:
        """Run current in mA at `hz` (exactly run_current_ma at the catalog's clock)."""
        if hz == self.ref_clock_hz:
            return self.ref_current_ma
        return self.static_ma + (self.ref_current_ma - self.static_ma) * (hz / self.ref_clock_hz)

    def to_dict(self) -> dict[str, Any]:
        return {"wait_states": [list(r) for r in self.wait_states],
                "conditions": self.conditions, "max_hz": self.max_hz, "min_hz": self.min_hz,
                "static_ma": self.static_ma, "ua_per_mhz": round(self.ua_per_mhz, 3),
                "run_current_formula": "static_ma + ua_per_mhz * MHz / 1000",
                "from_catalog": self.given}


@dataclass(frozen=True)
class Mcu:
    """One microcontroller of the catalog, with the source of each figure."""

    name: str
    board: str
    vendor: str
    core: Core
    clock_hz: int
    fpu: str
    multiplier: str | None
    flash_wait_states: int
    voltage_v: float
    run_current_ma: float
    code_region: str
    data_region: str
    stack_bytes: int
    regions: tuple[Region, ...]
    flash_cache: FlashCache | None
    sources: dict[str, str]
    notes: tuple[str, ...] = ()
    unconfirmed: tuple[str, ...] = ()
    # energy basis ([mcu.energy]): the pins/rail voltage_v and run_current_ma refer to, the
    # datasheet's conditions, and optional board-level figures (`--energy board`)
    supply: str = ""
    energy_conditions: str = ""
    board_voltage_v: float | None = None
    board_current_ma: float | None = None
    board_supply: str = ""
    energy_basis: str = "chip"  # which pair voltage_v/run_current_ma hold: chip or board
    # [mcu.clock]: wait states and run current at other clocks (None: only clock_hz known)
    clock_model: ClockModel | None = None
    # what at_clock() changed from the catalog entry (--clock, --wait-states,
    # --no-flash-cache): field -> {"value", "catalog", "source", ...}; empty by default
    overrides: dict[str, Any] = field(default_factory=dict)
    flash_cache_off: FlashCache | None = None  # the flash cache --no-flash-cache turned off
    dcache: DCache | None = None  # [mcu.dcache]: the M7's D-cache over RAM outside the TCMs

    def clock_range(self) -> tuple[int, int]:
        """(lowest, highest) CPU clock in Hz the part runs at (the table's last row)."""
        cm = self._clock_model()
        return cm.min_hz, cm.max_hz

    def _clock_model(self) -> ClockModel:
        if self.clock_model is not None:
            return self.clock_model
        return ClockModel(((self.clock_hz, self.flash_wait_states),), "", self.run_current_ma,
                          self.clock_hz, self.run_current_ma, given=False)

    def supports_clock(self, hz: int) -> bool:
        lo, hi = self.clock_range()
        return lo <= hz <= hi

    def at_clock(self, hz: int | None = None, wait_states: int | None = None,
                 flash_cache: bool = True) -> Mcu:
        """This MCU at CPU clock `hz` (None: its catalog clock): the flash wait states from
        its [mcu.clock] table (or `wait_states`, the user's setting), the run current from
        the clock model, and the flash cache off when `flash_cache` is False (every flash
        fetch then pays the wait states, as on a part without an accelerator).

        What changed is recorded in `overrides` (and `clock_assumptions`, which the timing
        model lists).  A clock <= 0 or outside the part's range, or wait states outside
        0..15, raise UsageError (exit 2) naming the part's range.
        """
        cm = self._clock_model()
        changes: dict[str, Any] = {}
        overrides = dict(self.overrides)
        sources = dict(self.sources)
        unconfirmed = list(self.unconfirmed)
        lo, hi = cm.min_hz, cm.max_hz
        if hz is not None:
            if isinstance(hz, bool) or not isinstance(hz, int) or hz <= 0:
                raise UsageError(f"--clock: must be a positive number of Hz (got {hz!r}); "
                                 f"{self.name} runs at up to {_hz_text(hi)}")
            if hz > hi or hz < lo:
                if lo == hi:
                    what = f"runs its CPU at {_hz_text(hi)} only"
                elif hz > hi:
                    what = f"runs at most at {_hz_text(hi)}"
                else:
                    what = f"runs at {_hz_text(lo)} to {_hz_text(hi)}"
                extra = "" if cm.given else " (no [mcu.clock] table in its catalog entry)"
                raise UsageError(f"--clock {_hz_text(hz)}: {self.name} {what}{extra}")
            table_ws = cm.wait_states_at(hz)
            changes["clock_hz"] = hz
            changes["flash_wait_states"] = table_ws
            overrides["clock_hz"] = {"value": hz, "catalog": cm.ref_clock_hz,
                                     "source": "--clock"}
            sources["clock_hz"] = (f"--clock (the catalog's clock: {_hz_text(cm.ref_clock_hz)}; "
                                   f"{self.sources.get('clock_hz', '')})")
            overrides["flash_wait_states"] = {"value": table_ws, "table": table_ws,
                                              "source": "the part's wait-state table"}
            sources["flash_wait_states"] = self.sources.get("clock.wait_states") or \
                self.sources.get("flash_wait_states", "")
            if self.is_unconfirmed("clock.wait_states") and hz != cm.ref_clock_hz:
                unconfirmed.append("flash_wait_states")
            if self.energy_basis == "chip":
                current = cm.current_at(hz)
                overrides["run_current_ma"] = {
                    "value": current, "catalog": cm.ref_current_ma,
                    "source": "clock model: static_ma + ua_per_mhz * MHz / 1000",
                    "static_ma": cm.static_ma, "ua_per_mhz": cm.ua_per_mhz}
                if hz != cm.ref_clock_hz:
                    sources["run_current_ma"] = (
                        f"scaled to {_hz_text(hz)}: {cm.static_ma:g} mA + "
                        f"{cm.ua_per_mhz:.4g} µA/MHz (clock.static_ma: "
                        f"{self.sources.get('clock.static_ma', 'constant current')}; at "
                        f"{_hz_text(cm.ref_clock_hz)}: {self.sources.get('run_current_ma', '')})")
                    if self.is_unconfirmed("clock.static_ma"):
                        unconfirmed.append("run_current_ma")
            else:  # board-level figures have no clock model: held at the catalog's value
                current = self.run_current_ma
                overrides["run_current_ma"] = {
                    "value": current, "catalog": current,
                    "source": "board-level figure, not scaled with the clock"}
            changes["run_current_ma"] = current
        if wait_states is not None:
            if isinstance(wait_states, bool) or not isinstance(wait_states, int) or \
                    not 0 <= wait_states <= MAX_WAIT_STATES:
                raise UsageError(f"--wait-states: must be an integer 0..{MAX_WAIT_STATES} "
                                 f"(got {wait_states!r})")
            at = changes.get("clock_hz", self.clock_hz)
            table_ws = cm.wait_states_at(at)
            changes["flash_wait_states"] = wait_states
            overrides["flash_wait_states"] = {"value": wait_states, "table": table_ws,
                                              "source": "--wait-states"}
            sources["flash_wait_states"] = (f"--wait-states {wait_states} (yours; the part's "
                                            f"table gives {table_ws} at {_hz_text(at)})")
            unconfirmed.append("flash_wait_states")
        if not flash_cache:
            off = self.flash_cache if self.flash_cache is not None else self.flash_cache_off
            overrides["flash_cache"] = {
                "value": "off", "catalog": None if off is None else off.kind,
                "source": "--no-flash-cache"}
            changes["flash_cache"] = None
            changes["flash_cache_off"] = off
        if not changes:
            return self
        return replace(self, overrides=overrides, sources=sources,
                       unconfirmed=tuple(dict.fromkeys(unconfirmed)), **changes)

    @property
    def clock_assumptions(self) -> tuple[str, ...]:
        """One line per override (for the timing model's assumptions); () by default."""
        o = self.overrides
        cm = self._clock_model()
        out = []
        if "clock_hz" in o:
            c = o["clock_hz"]
            i = o.get("run_current_ma", {})
            line = (f"clock {_hz_text(c['value'])} (--clock; the catalog's clock is "
                    f"{_hz_text(c['catalog'])})")
            if o.get("flash_wait_states", {}).get("source") != "--wait-states":
                n = self.flash_wait_states
                line += (f": {n} flash wait state{'' if n == 1 else 's'} from the part's table"
                         + (f" ({cm.conditions})" if cm.conditions else ""))
            if self.energy_basis == "chip" and i:
                line += (f"; run current {i['value']:.4g} mA = {cm.static_ma:g} mA + "
                         f"{cm.ua_per_mhz:.4g} µA/MHz x {c['value'] / 1e6:g} MHz")
            elif i:
                line += f"; run current {i['value']:g} mA: board-level figure, not scaled"
            if not cm.given:
                line += (" (no [mcu.clock] table in the catalog entry: wait states and run "
                         "current held at the catalog's values)")
            out.append(line)
        w = o.get("flash_wait_states")
        if w and w.get("source") == "--wait-states":
            out.append(f"flash wait states {w['value']}: set by --wait-states, not the "
                       f"part's table (which gives {w['table']} at "
                       f"{_hz_text(self.clock_hz)})")
        f = o.get("flash_cache")
        if f:
            out.append("flash cache off (--no-flash-cache): " + (
                f"the {f['catalog']} cache is not modelled; every new flash word waits"
                if f["catalog"] else f"{self.name} has no flash cache modelled anyway"))
        return tuple(out)

    @property
    def has_board_energy(self) -> bool:
        return self.board_voltage_v is not None and self.board_current_ma is not None

    def with_energy(self, basis: str) -> Mcu:
        """This MCU with voltage_v x run_current_ma on `basis` ("chip" or "board").

        "board" swaps in board_voltage_v x board_current_ma (with their sources and
        unconfirmed marks); an MCU without board figures raises UsageError (exit 2).
        """
        if basis not in ENERGY_BASES:
            raise UsageError(f"--energy: unknown basis {basis!r} (chip or board)")
        if basis == self.energy_basis:
            return self
        if basis == "chip":
            raise UsageError(f"{self.name}: the chip figures of a board-basis MCU are gone; "
                             "take the MCU from the catalog again")
        if not self.has_board_energy:
            raise UsageError(f"--energy board: {self.name} has no board-level energy figures "
                             "in the catalog (board_voltage_v, board_current_ma); use the "
                             "default --energy chip")
        board = {"energy.board_voltage_v": "voltage_v", "energy.board_current_ma":
                 "run_current_ma"}
        unconfirmed = tuple(u for u in self.unconfirmed
                            if u not in ("voltage_v", "run_current_ma") and u not in board)
        unconfirmed += tuple(board[u] for u in self.unconfirmed if u in board)
        sources = dict(self.sources)
        for chip_key, board_key in (("voltage_v", "board_voltage_v"),
                                    ("run_current_ma", "board_current_ma")):
            sources[chip_key] = sources.get(board_key, "")
        return replace(self, voltage_v=self.board_voltage_v,
                       run_current_ma=self.board_current_ma, energy_basis="board",
                       unconfirmed=unconfirmed, sources=sources)

    @property
    def energy_unconfirmed(self) -> list[str]:
        """Which of voltage_v, run_current_ma (of the active basis) are unconfirmed."""
        return [f for f in ("voltage_v", "run_current_ma") if self.is_unconfirmed(f)]

    @property
    def energy_label(self) -> str:
        """The basis, printed with every energy figure: 'chip supply (VDD 3.3 V)'."""
        if self.energy_basis == "board":
            text = f"board-level ({self.board_supply or 'board input'}, includes regulators, " \
                   "LEDs…)"
        else:
            text = f"chip supply ({self.supply})" if self.supply else "chip supply"
        return text + (", unconfirmed" if self.energy_unconfirmed else "")

    def energy_info(self) -> dict[str, Any]:
        """The energy basis as JSON: basis, label, definition, supply, V, I, conditions."""
        board = self.energy_basis == "board"
        return {
            "basis": self.energy_basis,
            "label": self.energy_label,
            "definition": ENERGY_BASIS_BOARD if board else ENERGY_BASIS_CHIP,
            "supply": self.board_supply if board else self.supply,
            "conditions": self.energy_conditions if not board else
            "board input current at the clock (see notes and sources)",
            "voltage_v": self.voltage_v,
            "run_current_ma": self.run_current_ma,
            "voltage_source": self.sources.get("voltage_v", ""),
            "current_source": self.sources.get("run_current_ma", ""),
            "unconfirmed": self.energy_unconfirmed,
        }

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise UnknownNameError(f"MCU {self.name} has no memory region {name!r}")

    @property
    def flash(self) -> Region:
        """The (first) flash region: read-only data such as frozen weights lives here."""
        return next(r for r in self.regions if r.kind == "flash")

    @property
    def code(self) -> Region:
        return self.region(self.code_region)

    @property
    def data(self) -> Region:
        return self.region(self.data_region)

    @property
    def sram_bytes(self) -> int:
        """All RAM of the part: SRAM banks and TCMs."""
        return sum(r.size for r in self.regions if r.kind != "flash")

    @property
    def flash_bytes(self) -> int:
        return sum(r.size for r in self.regions if r.kind == "flash")

    def region_at(self, address: int, length: int = 1) -> Region | None:
        for r in self.regions:
            if r.contains(address, length):
                return r
        return None

    def is_unconfirmed(self, fieldname: str) -> bool:
        return any(u == fieldname or u.startswith(fieldname + ".") for u in self.unconfirmed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "board": self.board,
            "vendor": self.vendor,
            "core": self.core.key,
            "core_name": self.core.name,
            "clock_hz": self.clock_hz,
            "fpu": self.fpu,
            "multiplier": self.multiplier,
            "flash_wait_states": self.flash_wait_states,
            "voltage_v": self.voltage_v,
            "run_current_ma": self.run_current_ma,
            "code_region": self.code_region,
            "data_region": self.data_region,
            "stack_bytes": self.stack_bytes,
            "sram_bytes": self.sram_bytes,
            "flash_bytes": self.flash_bytes,
            "regions": [
                {"name": r.name, "kind": r.kind, "base": r.base, "size": r.size, "note": r.note}
                for r in self.regions
            ],
            "flash_cache": None if self.flash_cache is None else {
                "kind": self.flash_cache.kind,
                "size_bytes": self.flash_cache.size_bytes,
                "line_bytes": self.flash_cache.line_bytes,
                "ways": self.flash_cache.ways,
                "data_size_bytes": self.flash_cache.data_size_bytes,
                "miss_cycles": self.flash_cache.miss_cycles,
                "clock_divider": self.flash_cache.clock_divider,
                "bus_cycles": self.flash_cache.bus_cycles,
            },
            "dcache": None if self.dcache is None else {
                "size_bytes": self.dcache.size_bytes, "line_bytes": self.dcache.line_bytes,
                "ways": self.dcache.ways,
                "ranges": [{"region": r.region, "miss_cycles": r.miss_cycles}
                           for r in self.dcache.ranges]},
            "sources": dict(self.sources),
            "notes": list(self.notes),
            "unconfirmed": list(self.unconfirmed),
            "energy_basis": self.energy_info(),
            "energy": {"supply": self.supply, "conditions": self.energy_conditions,
                       "board_voltage_v": self.board_voltage_v,
                       "board_current_ma": self.board_current_ma,
                       "board_supply": self.board_supply},
            "clock": self._clock_model().to_dict(),
            "overrides": {k: dict(v) for k, v in self.overrides.items()},
        }


@dataclass
class Catalog:
    """Cores and MCUs, with the citation text of every source key."""

    cores: dict[str, Core]
    mcus: dict[str, Mcu]
    source_texts: dict[str, str] = field(default_factory=dict)
    # MCU name -> the user catalog file (as given) its entry comes from (built-ins: absent)
    user_files: dict[str, str] = field(default_factory=dict)

    def core(self, key: str) -> Core:
        k = key.lower().replace("-", "").replace("+", "plus").replace("cortex", "")
        if k in self.cores:
            return self.cores[k]
        raise UnknownNameError(
            f"unknown core {key!r}; known cores: {', '.join(self.cores)}")

    def mcu(self, name: str) -> Mcu:
        """Look up an MCU by name or board name, case-insensitively."""
        want = _norm(name)
        for m in self.mcus.values():  # names first: a user MCU may be called like a board
            if want == _norm(m.name):
                return m
        for m in self.mcus.values():
            if want == _norm(m.board):
                return m
        if len(want) >= 3:  # a unique part of a name or board: "pico", "teensy", "h743"
            hits = [m.name for m in self.mcus.values()
                    if want in _norm(m.name) or want in _norm(m.board)]
            if len(hits) == 1:
                return self.mcus[hits[0]]
            if len(hits) > 1:
                raise UnknownNameError(
                    f"MCU {name!r} is ambiguous: it matches {', '.join(hits)}")
        choices = {_norm(m.name): m.name for m in self.mcus.values()}
        choices.update({_norm(m.board): m.name for m in self.mcus.values()})
        near = difflib.get_close_matches(want, list(choices), n=3, cutoff=0.5)
        hint = sorted({choices[n] for n in near})
        msg = f"unknown MCU {name!r}"
        if hint:
            msg += f"; did you mean {', '.join(hint)}?"
        else:
            msg += "; `mcusim mcus` lists the catalog"
        raise UnknownNameError(msg)

    def mcus_of_core(self, core_key: str) -> list[Mcu]:
        return [m for m in self.mcus.values() if m.core.key == core_key]


def _norm(s: str) -> str:
    return "".join(ch for ch in s.lower() if ch.isalnum())


# --------------------------------------------------------------------------- parsing


@dataclass
class _Problems:
    """The problems found in one file: (entry, field, problem), reported together."""

    label: str
    items: list[tuple[str, str | None, str]] = field(default_factory=list)

    def message(self) -> str:
        return _format_problems(self.label, self.items)


# While a file is parsed, _Entry.fail records here instead of raising (see parse_mcus)
_COLLECT: ContextVar[_Problems | None] = ContextVar("mcusim_catalog_problems", default=None)


class _EntryAbort(Exception):
    """Stop parsing one entry: the rest would only repeat its recorded problems."""


# Missing fields are named in this (the template's) order
_FIELD_ORDER = ("schema", "mcu", "name", "board", "vendor", "core", "clock_hz", "fpu",
                "multiplier", "flash_wait_states", "voltage_v", "run_current_ma",
                "code_region", "data_region", "stack_bytes", "notes", "unconfirmed",
                "regions", "kind", "base", "size", "flash_cache", "size_bytes", "line_bytes",
                "ways", "energy", "clock", "wait_states", "conditions", "static_ma",
                "min_hz", "dcache", "ranges", "region", "miss_cycles")


def _format_problems(label: str, items: Sequence[tuple[str, str | None, str]]) -> str:
    """One line: `file: entry: fields 'a', 'b': are missing; field 'c': ...; entry2: ...`."""
    groups: dict[str, list[tuple[str | None, str]]] = {}
    for what, fieldname, problem in items:
        groups.setdefault(what, []).append((fieldname, problem))
    parts = []
    for what, probs in groups.items():
        missing = sorted((f for f, p in probs if f and p == "is missing"),
                         key=lambda f: _FIELD_ORDER.index(f) if f in _FIELD_ORDER else 99)
        texts = []
        if len(missing) == 1:
            texts.append(f"field {missing[0]!r}: is missing")
        elif missing:
            texts.append(f"fields {', '.join(repr(f) for f in missing)}: are missing")
        texts += [f"field {f!r}: {p}" if f else p for f, p in probs
                  if not (f and p == "is missing")]
        parts.append(f"{what}: {'; '.join(texts)}" if what else "; ".join(texts))
    return f"{label}: {'; '.join(parts)}"


class _Entry:
    """Typed field access on one TOML table with error messages naming file/entry/field.

    Outside parse_mcus the first problem raises CatalogError; inside, every problem is
    recorded (the accessors then return the default, None for a required field) and the
    file's problems are raised together.
    """

    def __init__(self, path: Path, what: str, table: Any) -> None:
        self.path = path
        self.what = what
        self.table: dict[str, Any] = table if isinstance(table, dict) else {}
        self.used: set[str] = set()
        if not isinstance(table, dict):
            self.abort(None, "must be a table")

    def fail(self, fieldname: str | None, problem: str) -> None:
        sink = _COLLECT.get()
        if sink is None:
            raise CatalogError(_format_problems(self.path.name, [(self.what, fieldname,
                                                                  problem)]))
        sink.items.append((self.what, fieldname, problem))

    def abort(self, fieldname: str | None, problem: str) -> None:
        """Record the problem and give up on this entry."""
        self.fail(fieldname, problem)
        raise _EntryAbort

    def get(self, name: str, types: type | tuple[type, ...], *, required: bool = True,
            default: Any = None) -> Any:
        self.used.add(name)
        if name not in self.table:
            if required:
                self.fail(name, "is missing")
            return default
        value = self.table[name]
        allowed = types if isinstance(types, tuple) else (types,)
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, types):
            self.fail(name, f"must be {_type_name(types)} (got {_shown(value)})")
            return default
        return value

    def positive_int(self, name: str, *, minimum: int = 1, required: bool = True,
                     default: int | None = None) -> int:
        v = self.get(name, int, required=required, default=default)
        if v is not None and v < minimum:
            self.fail(name, f"must be an integer >= {minimum} (got {v})")
            return default  # type: ignore[return-value]
        return v

    def positive_float(self, name: str) -> float:
        v = self.get(name, (int, float))
        if v is None:
            return None  # type: ignore[return-value]
        v = float(v)
        if not (v > 0 and math.isfinite(v)):
            self.fail(name, f"must be a finite number > 0 (got {v})")
            return None  # type: ignore[return-value]
        return v

    def choice(self, name: str, options: tuple[str, ...], *, required: bool = True) -> str | None:
        v = self.get(name, str, required=required)
        if v is not None and v not in options:
            self.fail(name, f"must be one of {', '.join(options)} (got {_shown(v)})")
            return None
        return v

    def str_list(self, name: str) -> tuple[str, ...]:
        v = self.get(name, list, required=False, default=[])
        if not all(isinstance(x, str) for x in v):
            self.fail(name, "must be a list of strings")
            return ()
        return tuple(v)

    def safe_name(self, name: str, what: str) -> str | None:
        """A string field that becomes part of file paths and linker scripts."""
        v = self.get(name, str)
        if v is not None and not is_safe_name(v):
            self.fail(name, f"{what} {NAME_RULE}; got {_shown(v)}")
            return None
        return v

    def check_unknown(self) -> None:
        for extra in sorted(set(self.table) - self.used):
            near = difflib.get_close_matches(extra, sorted(self.used), n=1, cutoff=0.6)
            hint = f"did you mean {near[0]!r}?" if near else "typo?"
            self.fail(extra, f"is not a known field ({hint})")


def _shown(value: Any) -> str:
    """A value for a one-line message: repr, shortened."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(types: type | tuple[type, ...]) -> str:
    ts = types if isinstance(types, tuple) else (types,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(t, t.__name__) for t in ts)


def _check_file(path: Path) -> None:
    """A catalog file must exist and be a regular file of sensible size: a device, FIFO,
    directory or socket is a one-line CatalogError saying what it is (never read)."""
    if not os.path.lexists(path):
        raise CatalogError(f"catalog file not found: {path}")
    check_regular(path, CATALOG_WHAT, CATALOG_LIMIT, CatalogError)


_CITATION = re.compile(r"([A-Za-z]+)(\d+)")


def _read_toml(path: Path, label: str | None = None) -> dict[str, Any]:
    """The TOML document of a catalog file.  An empty file (or one of only blanks and
    comments) is an error: it is always a mistake (e.g. a failed redirection), never a
    catalog, and saying so beats "no [[mcu]] entry" or a list of missing fields."""
    label = label or path.name
    if not os.path.lexists(path):
        raise CatalogError(f"catalog file not found: {path}")
    data = read_bytes(path, CATALOG_WHAT, CATALOG_LIMIT, CatalogError)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CatalogError(f"{label}: not a TOML file (not UTF-8 text)") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CatalogError(f"{label}: malformed TOML: {e}") from None
    except RecursionError:
        raise CatalogError(f"{label}: malformed TOML: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise CatalogError(f"{label}: malformed TOML: {str(e)[:120]}") from None
    if not doc:
        what = "is empty" if not text.strip() else "has no settings (only comments)"
        raise CatalogError(f"{label}: {what}: a catalog file needs [[mcu]] entries "
                           "(`mcusim mcus --template` prints one to start from)")
    return doc


def parse_cores(path: Path) -> dict[str, Core]:
    doc = _read_toml(path)
    top = _Entry(path, "file", doc)
    if top.get("schema", int) != 1:
        top.fail("schema", "unsupported schema version (expected 1)")
    table = top.get("core", dict)
    top.check_unknown()
    cores: dict[str, Core] = {}
    for key, raw in table.items():
        e = _Entry(path, f"core {_shown(key)}", raw)
        if not is_safe_name(key):
            e.fail(None, f"core key {NAME_RULE}")
        elif key not in CORE_KEYS:
            e.fail(None, f"unknown core key (expected one of {', '.join(CORE_KEYS)})")
        flags = e.get("gcc_flags", list)
        if not all(isinstance(f, str) for f in flags):
            e.fail("gcc_flags", "must be a list of strings")
        cores[key] = Core(
            key=key,
            name=e.get("name", str),
            arch=e.choice("arch", ("armv6-m", "armv7-m", "armv7e-m")),
            unicorn_cpu=e.choice("unicorn_cpu", ("CORTEX_M0", "CORTEX_M3", "CORTEX_M4",
                                                 "CORTEX_M7", "CORTEX_M33")),
            dsp=e.get("dsp", bool),
            fpu=e.choice("fpu", FPU_KINDS),
            gcc_flags=tuple(flags),
            zig_target=e.get("zig_target", str),
            zig_cpu=e.get("zig_cpu", str),
        )
        e.check_unknown()
    return cores


_REQUIRED_SOURCES = ("core", "clock_hz", "memory", "flash_wait_states", "voltage_v",
                     "run_current_ma", "fpu")


def parse_mcus(path: Path, cores: dict[str, Core], *, user: str | None = None,
               builtin_sources: dict[str, str] | None = None
               ) -> tuple[dict[str, Mcu], dict[str, str]]:
    """Parse an MCU catalog file; every problem of every entry is raised in one CatalogError.

    `user`: the file as the user named it, for a user catalog: `schema` and `[sources]` are
    optional there, and so are an entry's `sources` (figures without one are
    "user-provided (FILE)").  `builtin_sources`: source keys a user entry may cite too.
    """
    label = user or path.name
    doc = _read_toml(path, label)
    sink = _Problems(label)
    token = _COLLECT.set(sink)
    mcus: dict[str, Mcu] = {}
    source_texts: dict[str, str] = {}
    try:
        top = _Entry(path, "", doc)
        schema = top.get("schema", int, required=user is None)
        if schema is not None and schema != 1:
            top.fail("schema", f"unsupported schema version {schema} (expected 1)")
        source_texts = dict(top.get("sources", dict, required=user is None, default={}) or {})
        for k, v in source_texts.items():
            if not isinstance(v, str) or not v.strip():
                top.fail(f"sources.{k}", "must be a non-empty citation string")
            elif builtin_sources and builtin_sources.get(k, v) != v:
                top.fail(f"sources.{k}", "is defined differently by the built-in catalog "
                                         "or an earlier file: use another key (U1, U2, ...)")
        known = {**(builtin_sources or {}), **source_texts}
        basis = top.get("energy_basis", str, required=user is None)  # the catalog's basis
        if basis is not None and not basis.strip():
            top.fail("energy_basis", "must name the energy basis of the catalog's figures")
        if isinstance(doc.get("mcu"), dict):
            top.abort("mcu", "must be [[mcu]] entries (double brackets), not one [mcu] table")
        entries = top.get("mcu", list, required=user is None)
        top.check_unknown()
        if user is not None and "mcu" not in doc:
            top.fail(None, "no [[mcu]] entry (`mcusim mcus --template` prints one to start "
                           "from)")
        elif entries is not None and not entries:
            top.fail("mcu", "the catalog lists no MCU")
        for i, raw in enumerate(entries or []):
            name = raw.get("name") if isinstance(raw, dict) else None
            what = f"mcu {_shown(name)}" if isinstance(name, str) else f"mcu #{i + 1}"
            before = len(sink.items)
            try:
                mcu = _parse_mcu(_Entry(path, what, raw), cores, known, user)
            except _EntryAbort:
                continue
            except (TypeError, ValueError, KeyError, AttributeError, IndexError):
                if len(sink.items) > before:
                    continue  # a consequence of a problem already recorded
                raise
            if len(sink.items) > before:
                continue
            if any(_norm(m.name) == _norm(mcu.name) for m in mcus.values()):
                sink.items.append((what, None, "duplicate MCU name"))
                continue
            mcus[mcu.name] = mcu
    except _EntryAbort:
        pass
    finally:
        _COLLECT.reset(token)
    if sink.items:
        raise CatalogError(sink.message())
    return mcus, source_texts


def _parse_mcu(e: _Entry, cores: dict[str, Core], source_texts: dict[str, str],
               user: str | None = None) -> Mcu:
    """One [[mcu]] entry; `user`: the user catalog file it comes from (sources optional).

    Problems are recorded on `e` (see _Entry); the returned Mcu is only meaningful when
    none were recorded.
    """
    name = e.safe_name("name", "MCU name")
    core_key = e.choice("core", tuple(cores))
    core = cores.get(core_key)  # type: ignore[arg-type]
    fpu = e.choice("fpu", FPU_KINDS)
    if core_key == "m0plus" and fpu not in (None, "none"):
        e.fail("fpu", "a Cortex-M0+ has no FPU")
    multiplier = e.choice("multiplier", ("fast", "small"), required=core_key == "m0plus")
    if core_key not in (None, "m0plus") and multiplier is not None:
        e.fail("multiplier", "is an option of the Cortex-M0+ only")

    regions: list[Region] = []
    raw_regions = e.get("regions", list)
    regions_ok = raw_regions is not None
    for j, rr in enumerate(raw_regions or []):
        rname = rr.get("name") if isinstance(rr, dict) else None
        shown = _shown(rname) if isinstance(rname, str) else repr(f"#{j + 1}")
        re_ = _Entry(e.path, f"{e.what} region {shown}", rr if isinstance(rr, dict) else {})
        if not isinstance(rr, dict):
            re_.fail(None, "must be a table ([[mcu.regions]])")
            regions_ok = False
            continue
        region = Region(
            name=re_.safe_name("name", "region name"),  # type: ignore[arg-type]
            kind=re_.choice("kind", REGION_KINDS),  # type: ignore[arg-type]
            base=re_.positive_int("base", minimum=0),
            size=re_.positive_int("size"),
            note=re_.get("note", str, required=False, default=""),
        )
        re_.check_unknown()
        if None in (region.name, region.kind, region.base, region.size):
            regions_ok = False
            continue
        if region.base % PAGE or region.size % PAGE:
            re_.fail("base" if region.base % PAGE else "size",
                     f"must be a multiple of 4 KB (base 0x{region.base:X}, size 0x{region.size:X})")
        if region.end > 1 << 32:
            re_.fail("size", "region ends beyond the 4 GB address space")
        regions.append(region)
    if len({r.name for r in regions}) != len(regions):
        e.fail("regions", "region names must be unique")
    ordered = sorted(regions, key=lambda r: r.base)
    for a, b in itertools.pairwise(ordered):
        if b.base < a.end:
            e.fail("regions", f"regions {a.name} and {b.name} overlap")
    if regions_ok and not any(r.kind == "flash" for r in regions):
        e.fail("regions", "needs at least one region of kind flash")
    if regions_ok and not any(r.kind != "flash" for r in regions):
        e.fail("regions", "needs at least one RAM region (sram, itcm or dtcm)")

    code_region = e.get("code_region", str)
    data_region = e.get("data_region", str)
    by_name = {r.name: r for r in regions}
    if regions_ok and code_region is not None and code_region not in by_name:
        e.fail("code_region", f"names no region of this MCU (got {_shown(code_region)})")
    if regions_ok and data_region is not None and data_region not in by_name:
        e.fail("data_region", f"names no region of this MCU (got {_shown(data_region)})")
    data = by_name.get(data_region)  # type: ignore[arg-type]
    if data is not None and data.kind == "flash":
        e.fail("data_region", "must be a RAM region, not flash")
    stack_bytes = e.positive_int("stack_bytes", minimum=256)
    if stack_bytes is not None and stack_bytes % 8:
        e.fail("stack_bytes", "must be a multiple of 8 (AAPCS stack alignment)")
    if stack_bytes is not None and data is not None and stack_bytes >= data.size:
        e.fail("stack_bytes", f"does not fit the data region {data_region}")

    cache = None
    raw_cache = e.get("flash_cache", dict, required=False)
    if raw_cache is not None:
        ce = _Entry(e.path, f"{e.what} flash_cache", raw_cache)
        cache = FlashCache(
            kind=ce.choice("kind", CACHE_KINDS),  # type: ignore[arg-type]
            size_bytes=ce.positive_int("size_bytes", minimum=0),
            line_bytes=ce.positive_int("line_bytes"),
            ways=ce.positive_int("ways", minimum=0),
            data_size_bytes=ce.positive_int("data_size_bytes", minimum=0, required=False,
                                            default=0),
            miss_cycles=ce.positive_int("miss_cycles", minimum=0, required=False),
            clock_divider=ce.positive_int("clock_divider", minimum=1, required=False),
            bus_cycles=ce.positive_int("bus_cycles", minimum=0, required=False, default=0),
        )
        ce.check_unknown()
        if cache.line_bytes is not None and (cache.line_bytes & (cache.line_bytes - 1)
                                             or not 4 <= cache.line_bytes <= 256):
            ce.fail("line_bytes", f"must be a power of two from 4 to 256 (got "
                                  f"{cache.line_bytes})")
        for field_name in ("size_bytes", "data_size_bytes"):
            v = getattr(cache, field_name)
            if v is not None and v > CACHE_MAX_BYTES:
                ce.fail(field_name, f"must be at most {CACHE_MAX_BYTES:,} bytes (a flash "
                                    f"cache or L1 cache of a Cortex-M part; got {v:,})")
        if cache.ways is not None and cache.ways > 64:
            ce.fail("ways", f"must be 0 (fully associative) or at most 64 (got {cache.ways})")

    energy = _parse_energy(e, user)
    clock_hz = e.positive_int("clock_hz", minimum=1_000_000)
    flash_wait_states = e.positive_int("flash_wait_states", minimum=0)
    run_current_ma = e.positive_float("run_current_ma")
    clock_model, clock_given = _parse_clock(e, user, clock_hz, flash_wait_states,
                                            run_current_ma)
    sources = dict(e.get("sources", dict, required=user is None, default={}) or {})
    required = list(_REQUIRED_SOURCES)
    if clock_given:
        required += ["clock.wait_states", "clock.static_ma"]
    if energy.get("board_voltage_v") is not None:
        required += ["board_voltage_v", "board_current_ma"]
    if core_key == "m0plus":
        required.append("multiplier")
    if cache is not None:
        required.append("flash_cache")
    for k in required:
        if not isinstance(sources.get(k), str) or not sources[k].strip():
            if user is None:
                e.fail(f"sources.{k}", "is missing: every figure needs its source")
            else:  # a user's own part: the figures are theirs
                sources[k] = f"user-provided ({user})"
    # a citation is a key of [sources] (S12, or a user's U3): a token shaped like the keys
    # defined there (same letters, then digits) that is not defined is a dangling citation
    prefixes = {"S"} | {m.group(1) for m in map(_CITATION.fullmatch, source_texts) if m}
    for k, v in sources.items():
        if not isinstance(v, str):
            e.fail(f"sources.{k}", "must be a string")
            continue
        keys = [tok.strip("(),;:") for tok in v.split()]
        for tok in keys:
            m = _CITATION.fullmatch(tok)
            if m and m.group(1) in prefixes and tok not in source_texts:
                e.fail(f"sources.{k}", f"cites {tok}, which [sources] does not define")

    mcu = Mcu(
        name=name,  # type: ignore[arg-type]
        board=e.get("board", str, required=user is None, default=""),
        vendor=e.get("vendor", str, required=user is None, default=""),
        core=core,  # type: ignore[arg-type]
        clock_hz=clock_hz,
        fpu=fpu,  # type: ignore[arg-type]
        multiplier=multiplier,
        flash_wait_states=flash_wait_states,
        voltage_v=e.positive_float("voltage_v"),
        run_current_ma=run_current_ma,
        code_region=code_region,
        data_region=data_region,
        stack_bytes=stack_bytes,
        regions=tuple(regions),
        flash_cache=cache,
        dcache=_dcache(e, regions),
        sources=sources,
        notes=e.str_list("notes"),
        unconfirmed=e.str_list("unconfirmed"),
        clock_model=clock_model,
        **energy,
    )
    e.check_unknown()
    if mcu.clock_hz is not None and mcu.clock_hz > MAX_CLOCK_HZ:
        e.fail("clock_hz", f"is implausible for a Cortex-M ({mcu.clock_hz} Hz)")
    for fieldname in ("board", "vendor"):
        text = getattr(mcu, fieldname)
        if isinstance(text, str) and (not text.isprintable() or len(text) > 100):
            e.fail(fieldname, "must be one line of printable text (at most 100 characters)")
    return mcu


def _parse_clock(e: _Entry, user: str | None, clock_hz: int | None,
                 flash_wait_states: int | None, run_current_ma: float | None
                 ) -> tuple[ClockModel | None, bool]:
    """[mcu.clock]: the flash wait-state table by clock and the run current's static part.
    Required in the built-in catalog; optional in a user catalog, where an entry without it
    has the one point (clock_hz, flash_wait_states) and a constant run current.  Returns
    (model, whether the table was given); the model is None when the entry's own figures
    are broken (their problems are recorded already)."""
    raw = e.get("clock", dict, required=user is None)
    basics_ok = None not in (clock_hz, flash_wait_states, run_current_ma)
    if raw is None:
        if not basics_ok:
            return None, False
        return ClockModel(((clock_hz, flash_wait_states),), "", run_current_ma,  # type: ignore
                          clock_hz, run_current_ma, given=False), False  # type: ignore
    ce = _Entry(e.path, f"{e.what} clock", raw)
    rows_raw = ce.get("wait_states", list, required=user is None)
    conditions = ce.get("conditions", str, required=user is None, default="") or ""
    static = ce.get("static_ma", (int, float), required=user is None)
    min_hz = ce.positive_int("min_hz", minimum=1, required=False, default=1)
    ce.check_unknown()
    if not conditions.isprintable() or len(conditions) > 100:
        ce.fail("conditions", "must be one line of printable text (at most 100 characters)")
    rows: list[tuple[int, int]] = []
    ok = True
    if rows_raw is not None:
        if not rows_raw:
            ce.fail("wait_states", "needs at least one [up to Hz, wait states] row")
            ok = False
        for i, row in enumerate(rows_raw, start=1):
            if (not isinstance(row, list) or len(row) != 2
                    or any(isinstance(v, bool) or not isinstance(v, int) for v in row)):
                ce.fail("wait_states", f"row {i} must be [up to Hz, wait states], two "
                                       f"integers (got {_shown(row)})")
                ok = False
                continue
            hz, ws = row
            if not 0 < hz <= MAX_CLOCK_HZ:
                ce.fail("wait_states", f"row {i}: the clock must be 1 Hz .. "
                                       f"{MAX_CLOCK_HZ:,} Hz (got {hz})")
                ok = False
            if not 0 <= ws <= MAX_WAIT_STATES:
                ce.fail("wait_states", f"row {i}: wait states must be 0..{MAX_WAIT_STATES} "
                                       f"(got {ws})")
                ok = False
            rows.append((hz, ws))
        for (h1, w1), (h2, w2) in itertools.pairwise(rows):
            if h2 <= h1 or w2 < w1:
                ce.fail("wait_states", "rows must rise: each clock above the one before, "
                                       f"wait states never fewer ({[h1, w1]} then {[h2, w2]})")
                ok = False
                break
    if static is not None and not (math.isfinite(static) and static >= 0):
        ce.fail("static_ma", f"must be a finite number >= 0 (got {static})")
        static = None
    if not basics_ok:
        return None, True
    if rows_raw is None:  # a user's [mcu.clock] without a table: the catalog point
        rows = [(clock_hz, flash_wait_states)]  # type: ignore[list-item]
    if static is None:  # a user's [mcu.clock] without static_ma: constant current
        static = run_current_ma
    if not ok or not rows:
        return None, True
    model = ClockModel(tuple(rows), conditions, float(static), clock_hz,  # type: ignore
                       run_current_ma, min_hz=min_hz or 1)  # type: ignore[arg-type]
    if clock_hz > model.max_hz:  # type: ignore[operator]
        ce.fail("wait_states", f"ends at {model.max_hz:,} Hz, below clock_hz "
                               f"({clock_hz:,} Hz): the last row's clock is the part's maximum")
        return None, True
    if clock_hz < model.min_hz:  # type: ignore[operator]
        ce.fail("min_hz", f"is above clock_hz ({model.min_hz:,} > {clock_hz:,} Hz)")
        return None, True
    at = model.wait_states_at(clock_hz)  # type: ignore[arg-type]
    if at != flash_wait_states:
        ce.fail("wait_states", f"gives {at} wait states at clock_hz ({clock_hz:,} Hz) but "
                               f"flash_wait_states is {flash_wait_states}: make them agree")
    if static > run_current_ma:  # type: ignore[operator]
        ce.fail("static_ma", f"must be at most run_current_ma ({static:g} > "
                             f"{run_current_ma:g} mA): the part of the run current that does "
                             "not scale with the clock")
    return model, True


def _parse_energy(e: _Entry, user: str | None) -> dict[str, Any]:
    """[mcu.energy]: supply and conditions of the chip figures, optional board figures.
    Required in the built-in catalog; optional in a user catalog."""
    raw = e.get("energy", dict, required=user is None)
    if raw is None:
        return {}
    ee = _Entry(e.path, f"{e.what} energy", raw)
    out: dict[str, Any] = {
        "supply": ee.get("supply", str, required=user is None, default="") or "",
        "energy_conditions": ee.get("conditions", str, required=user is None,
                                    default="") or "",
    }
    for key in ("board_voltage_v", "board_current_ma"):
        v = ee.get(key, (int, float), required=False)
        if v is not None and not (v > 0 and math.isfinite(v)):
            ee.fail(key, f"must be a finite number > 0 (got {v})")
            v = None
        out[key] = None if v is None else float(v)
    board_supply = ee.get("board_supply", str, required=False, default="") or ""
    if (out["board_voltage_v"] is None) != (out["board_current_ma"] is None):
        ee.fail("board_current_ma" if out["board_current_ma"] is None else "board_voltage_v",
                "is missing: board-level figures come as a pair (board_voltage_v and "
                "board_current_ma)")
        out["board_voltage_v"] = out["board_current_ma"] = None
    if out["board_voltage_v"] is not None and not board_supply.strip():
        ee.fail("board_supply", "is missing: name the board input the board figures are "
                                "measured at (e.g. 'USB 5 V input')")
    out["board_supply"] = board_supply
    for key in ("supply", "board_supply"):
        if not out[key].isprintable() or len(out[key]) > 60:
            ee.fail(key, "must be one short line (at most 60 characters)")
    ee.check_unknown()
    return out


@lru_cache(maxsize=8)
def _load_cached(cores_path: Path, mcus_path: Path, stamp: tuple[float, float]) -> Catalog:
    cores = parse_cores(cores_path)
    mcus, texts = parse_mcus(mcus_path, cores)
    return Catalog(cores=cores, mcus=mcus, source_texts=texts)


def load_catalog(mcus_path: Path | str | None = None,
                 cores_path: Path | str | None = None, *,
                 user_catalogs: Sequence[Path | str] = ()) -> Catalog:
    """Load and validate the catalog (default: cost_models/ of this checkout).

    `mcus_path` replaces the built-in MCU catalog (a complete one, with sources).
    `user_catalogs`: the user's MCU files, in order (`--catalog FILE`): each extends the
    catalog; an entry named like an earlier one replaces it, with a warning.
    """
    cp = Path(cores_path) if cores_path else COST_MODELS_DIR / "cores.toml"
    mp = Path(mcus_path) if mcus_path else COST_MODELS_DIR / "mcus.toml"
    for p in (cp, mp):
        _check_file(p)
    base = _load_cached(cp.resolve(), mp.resolve(), (cp.stat().st_mtime, mp.stat().st_mtime))
    if not user_catalogs:
        return base
    mcus, texts, user_files = dict(base.mcus), dict(base.source_texts), {}
    for f in user_catalogs:
        shown = str(f)
        new, new_texts = parse_mcus(Path(f), base.cores, user=shown, builtin_sources=texts)
        texts.update(new_texts)
        for name, mcu in new.items():
            old = next((k for k in mcus if _norm(k) == _norm(name)), None)
            if old is None:
                mcus[name] = mcu
            else:
                if mcus[old] == mcu:  # the same entry as before (e.g. a copied catalog)
                    continue
                by = f"the entry from {user_files[old]}" if old in user_files else \
                    "the built-in entry"
                warnings.warn(f"{shown}: MCU {name!r} overrides {by} {old!r}", stacklevel=2)
                mcus = {(name if k == old else k): (mcu if k == old else v)
                        for k, v in mcus.items()}
                user_files.pop(old, None)
            user_files[name] = shown
    return Catalog(cores=base.cores, mcus=mcus, source_texts=texts, user_files=user_files)


# --------------------------------------------------------------------------- template

MCU_TEMPLATE = '''\
# An MCU of your own for mcusim: edit the figures, then use it with
#   mcusim --catalog my-mcus.toml mcus
#   mcusim step digits-cnn --mcu MyChip --catalog my-mcus.toml
# Your entries extend the built-in catalog; an entry named like a built-in MCU replaces
# it (with a warning).  Copy the [[mcu]] block for more parts.  Numbers may use "_" and
# hex (0x2000_0000).  The figures below are an example (an STM32F4-like Cortex-M4 part):
# replace them with your part's datasheet and reference-manual values.

schema = 1                      # optional: the catalog format version, 1

# [sources]                     # optional: citations your entries' sources can cite by
# U1 = "MyChip datasheet rev 3"  # key ("U1 Table 15"); S1, S2, ... are the built-in ones

[[mcu]]
name = "MyChip"                 # letters, digits, _ + - . only (it names cache directories)
board = "MyChip eval board"     # optional: free text, the board or package
vendor = "Example Semiconductor"  # optional: free text
core = "m4"                     # m0plus (Cortex-M0+), m4 (Cortex-M4) or m7 (Cortex-M7)
clock_hz = 168_000_000          # CPU clock in Hz (what you run the part at)
fpu = "sp"                      # none, sp (single precision) or dp (double); none on an M0+
# multiplier = "fast"           # Cortex-M0+ only, and required there: fast (1-cycle MULS)
#                               # or small (32-cycle MULS); leave out on M4/M7
flash_wait_states = 5           # flash wait states at clock_hz (reference manual's table)
voltage_v = 3.3                 # supply voltage in V at which run_current_ma is given
run_current_ma = 40.0           # typical run current in mA at clock_hz, code from flash;
#                               # energy = cycles / clock_hz * voltage_v * run_current_ma
code_region = "FLASH"           # region the code runs from: a flash region or an ITCM
data_region = "SRAM"            # RAM region of .data, .bss, the stack and the arena
stack_bytes = 4096              # stack in bytes: a multiple of 8, at least 256
notes = ["Example figures: replace them with your part's."]  # optional: free text
unconfirmed = ["run_current_ma"]  # optional: fields whose value is a guess (marked *)

# Memory: one [[mcu.regions]] per bank, at least one flash and one RAM region; base and
# size in bytes, multiples of 4 KB, no overlaps.  Other RAM banks take what does not fit
# the data region.
[[mcu.regions]]
name = "FLASH"                  # letters, digits, _ + - . only (it goes into linker scripts)
kind = "flash"                  # flash, sram, itcm or dtcm
base = 0x0800_0000              # start address
size = 0x10_0000                # size in bytes: 1 MB
note = "main flash"             # optional: free text

[[mcu.regions]]
name = "SRAM"
kind = "sram"
base = 0x2000_0000
size = 0x2_0000                 # 128 KB

[[mcu.regions]]
name = "CCM"
kind = "sram"
base = 0x1000_0000
size = 0x1_0000                 # 64 KB
note = "core-coupled RAM: data only"

# Flash accelerator or cache in front of the flash: optional (leave the table out when
# the part has none; then every flash fetch word pays the wait states).
[mcu.flash_cache]
kind = "art"                    # art (ST ART accelerator), icache, nvm-buffer, xip (external
#                               # flash with a cache), l1 (Cortex-M7 L1 caches)
size_bytes = 1024               # instruction (or unified) cache size in bytes
line_bytes = 16                 # line size in bytes, a power of two
ways = 0                        # associativity; 0 = fully associative
data_size_bytes = 128           # optional: a separate data-side cache in bytes (default 0)
# miss_cycles = 6               # optional: CPU cycles per line miss (default: the wait states)
# clock_divider = 2             # optional: flash interface at CPU / 2: a miss costs
# bus_cycles = 8                #   (wait states + 1) x 2 + bus_cycles CPU cycles

# How the part behaves at other clocks (`--clock HZ`): optional.  Without it the part has
# one clock, clock_hz: --clock may only go lower, keeping flash_wait_states and a constant
# run current.  To use it, remove the "# " in front of the [mcu.clock] lines.
# [mcu.clock]
# wait_states = [               # [up to Hz, flash wait states] rows, rising: the
#     [30_000_000, 0], [60_000_000, 1], [90_000_000, 2],     # reference manual's table at
#     [120_000_000, 3], [150_000_000, 4], [168_000_000, 5],  # your supply voltage; the last
# ]                             # row's Hz is the maximum clock; it must give
#                               # flash_wait_states at clock_hz
# conditions = "VDD 2.7-3.6 V"  # the supply range / voltage scaling the table is for
# static_ma = 0.0               # run current (mA) that does not scale with the clock:
#                               # I(f) = static_ma + (run_current_ma - static_ma) * f / clock_hz
#                               # (0: in proportion to the clock; = run_current_ma: constant)
# min_hz = 1_000_000            # optional: the lowest CPU clock the part runs at

# Cortex-M7 parts: the L1 data cache over RAM outside the TCMs (optional; the TCMs bypass
# it).  Each range names one of the regions and what a line fill from it costs.
# [mcu.dcache]
# size_bytes = 16384
# line_bytes = 32
# ways = 4
# ranges = [{ region = "AXI_SRAM", miss_cycles = 10 }]

# What voltage_v and run_current_ma are: optional (shown next to every energy figure).
[mcu.energy]
supply = "VDD"                  # the supply pins/rail the chip figures are for (short)
conditions = "run mode at 168 MHz, code from flash, peripherals off, 25 C"  # the datasheet's
# board_voltage_v = 5.0         # optional: board-level figures (`--energy board`), a pair:
# board_current_ma = 60.0       # V and mA at the board's input, regulators and LEDs included
# board_supply = "USB 5 V input"  # required with the board figures: where they are measured

# Where each figure comes from: optional.  Figures without a source are shown as
# "user-provided (this file)".  Keys: core, clock_hz, memory, flash_wait_states,
# voltage_v, run_current_ma, fpu, multiplier (M0+), flash_cache, with board figures
# board_voltage_v and board_current_ma, and with [mcu.clock] "clock.wait_states" and
# "clock.static_ma" (quoted: the dot is part of the key).
[mcu.sources]
clock_hz = "MyChip datasheet, Features (168 MHz max)"
'''


def mcu_template() -> str:
    """A commented [[mcu]] entry that loads as-is as a user catalog (`mcusim mcus --template`)."""
    return MCU_TEMPLATE
