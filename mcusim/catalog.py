"""Load the core and MCU catalogs (cost_models/*.toml) into validated, typed objects.

Every malformed or inconsistent entry raises CatalogError naming the file, the entry and
the field.  Nothing here prints.
"""

from __future__ import annotations

import difflib
import itertools
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from mcusim.errors import CatalogError, UnknownNameError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parent.parent
COST_MODELS_DIR = REPO_ROOT / "cost_models"
KERNELS_DIR = REPO_ROOT / "kernels"

CORE_KEYS = ("m0plus", "m4", "m7")
REGION_KINDS = ("flash", "sram", "itcm", "dtcm")
FPU_KINDS = ("none", "sp", "dp")
CACHE_KINDS = ("art", "icache", "nvm-buffer", "xip", "l1")
PAGE = 4096  # Unicorn maps memory in 4 KB pages


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
            },
            "sources": dict(self.sources),
            "notes": list(self.notes),
            "unconfirmed": list(self.unconfirmed),
        }


@dataclass
class Catalog:
    """Cores and MCUs, with the citation text of every source key."""

    cores: dict[str, Core]
    mcus: dict[str, Mcu]
    source_texts: dict[str, str] = field(default_factory=dict)

    def core(self, key: str) -> Core:
        k = key.lower().replace("-", "").replace("+", "plus").replace("cortex", "")
        if k in self.cores:
            return self.cores[k]
        raise UnknownNameError(
            f"unknown core {key!r}; known cores: {', '.join(self.cores)}")

    def mcu(self, name: str) -> Mcu:
        """Look up an MCU by name or board name, case-insensitively."""
        want = _norm(name)
        for m in self.mcus.values():
            if want in (_norm(m.name), _norm(m.board)):
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


class _Entry:
    """Typed field access on one TOML table with error messages naming file/entry/field."""

    def __init__(self, path: Path, what: str, table: Any) -> None:
        self.path = path
        self.what = what
        if not isinstance(table, dict):
            self.fail(None, "must be a table")
        self.table: dict[str, Any] = table
        self.used: set[str] = set()

    def fail(self, fieldname: str | None, problem: str) -> None:
        where = f"{self.path.name}: {self.what}"
        if fieldname:
            where += f" field {fieldname!r}"
        raise CatalogError(f"{where}: {problem}")

    def get(self, name: str, types: type | tuple[type, ...], *, required: bool = True,
            default: Any = None) -> Any:
        self.used.add(name)
        if name not in self.table:
            if required:
                self.fail(name, "is missing")
            return default
        value = self.table[name]
        allowed = types if isinstance(types, tuple) else (types,)
        if isinstance(value, bool) and bool not in allowed:
            self.fail(name, f"must be {_type_name(types)} (got {value!r})")
        if not isinstance(value, types):
            self.fail(name, f"must be {_type_name(types)} (got {value!r})")
        return value

    def positive_int(self, name: str, *, minimum: int = 1, required: bool = True,
                     default: int | None = None) -> int:
        v = self.get(name, int, required=required, default=default)
        if v is not None and v < minimum:
            self.fail(name, f"must be an integer >= {minimum} (got {v})")
        return v

    def positive_float(self, name: str) -> float:
        v = float(self.get(name, (int, float)))
        if not v > 0:
            self.fail(name, f"must be > 0 (got {v})")
        return v

    def choice(self, name: str, options: tuple[str, ...], *, required: bool = True) -> str | None:
        v = self.get(name, str, required=required)
        if v is not None and v not in options:
            self.fail(name, f"must be one of {', '.join(options)} (got {v!r})")
        return v

    def str_list(self, name: str) -> tuple[str, ...]:
        v = self.get(name, list, required=False, default=[])
        if not all(isinstance(x, str) for x in v):
            self.fail(name, "must be a list of strings")
        return tuple(v)

    def check_unknown(self) -> None:
        extra = sorted(set(self.table) - self.used)
        if extra:
            self.fail(extra[0], "is not a known field (typo?)")


def _type_name(types: type | tuple[type, ...]) -> str:
    ts = types if isinstance(types, tuple) else (types,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(t, t.__name__) for t in ts)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise CatalogError(f"catalog file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise CatalogError(f"{path.name}: malformed TOML: {e}") from None


def parse_cores(path: Path) -> dict[str, Core]:
    doc = _read_toml(path)
    top = _Entry(path, "file", doc)
    if top.get("schema", int) != 1:
        top.fail("schema", "unsupported schema version (expected 1)")
    table = top.get("core", dict)
    top.check_unknown()
    cores: dict[str, Core] = {}
    for key, raw in table.items():
        e = _Entry(path, f"core {key!r}", raw)
        if key not in CORE_KEYS:
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


def parse_mcus(path: Path, cores: dict[str, Core]) -> tuple[dict[str, Mcu], dict[str, str]]:
    doc = _read_toml(path)
    top = _Entry(path, "file", doc)
    if top.get("schema", int) != 1:
        top.fail("schema", "unsupported schema version (expected 1)")
    source_texts = top.get("sources", dict)
    for k, v in source_texts.items():
        if not isinstance(v, str) or not v.strip():
            top.fail(f"sources.{k}", "must be a non-empty citation string")
    entries = top.get("mcu", list)
    top.check_unknown()
    if not entries:
        top.fail("mcu", "the catalog lists no MCU")
    mcus: dict[str, Mcu] = {}
    for i, raw in enumerate(entries):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = f"mcu {name!r}" if isinstance(name, str) else f"mcu #{i + 1}"
        mcu = _parse_mcu(_Entry(path, label, raw), cores, source_texts)
        if any(_norm(m.name) == _norm(mcu.name) for m in mcus.values()):
            raise CatalogError(f"{path.name}: {label}: duplicate MCU name")
        mcus[mcu.name] = mcu
    return mcus, dict(source_texts)


def _parse_mcu(e: _Entry, cores: dict[str, Core], source_texts: dict[str, str]) -> Mcu:
    name = e.get("name", str)
    core_key = e.choice("core", tuple(cores))
    core = cores[core_key]
    fpu = e.choice("fpu", FPU_KINDS)
    if core_key == "m0plus" and fpu != "none":
        e.fail("fpu", "a Cortex-M0+ has no FPU")
    multiplier = e.choice("multiplier", ("fast", "small"), required=core_key == "m0plus")
    if core_key != "m0plus" and multiplier is not None:
        e.fail("multiplier", "is an option of the Cortex-M0+ only")

    regions: list[Region] = []
    raw_regions = e.get("regions", list)
    for j, rr in enumerate(raw_regions):
        rname = rr.get("name") if isinstance(rr, dict) else None
        re_ = _Entry(e.path, f"{e.what} region {rname or '#' + str(j + 1)!r}", rr)
        region = Region(
            name=re_.get("name", str),
            kind=re_.choice("kind", REGION_KINDS),
            base=re_.positive_int("base", minimum=0),
            size=re_.positive_int("size"),
            note=re_.get("note", str, required=False, default=""),
        )
        re_.check_unknown()
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
    if not any(r.kind == "flash" for r in regions):
        e.fail("regions", "needs at least one region of kind flash")
    if not any(r.kind != "flash" for r in regions):
        e.fail("regions", "needs at least one RAM region (sram, itcm or dtcm)")

    code_region = e.get("code_region", str)
    data_region = e.get("data_region", str)
    by_name = {r.name: r for r in regions}
    if code_region not in by_name:
        e.fail("code_region", f"names no region of this MCU (got {code_region!r})")
    if data_region not in by_name:
        e.fail("data_region", f"names no region of this MCU (got {data_region!r})")
    if by_name[data_region].kind == "flash":
        e.fail("data_region", "must be a RAM region, not flash")
    stack_bytes = e.positive_int("stack_bytes", minimum=256)
    if stack_bytes % 8:
        e.fail("stack_bytes", "must be a multiple of 8 (AAPCS stack alignment)")
    if stack_bytes >= by_name[data_region].size:
        e.fail("stack_bytes", f"does not fit the data region {data_region}")

    cache = None
    raw_cache = e.get("flash_cache", dict, required=False)
    if raw_cache is not None:
        ce = _Entry(e.path, f"{e.what} flash_cache", raw_cache)
        cache = FlashCache(
            kind=ce.choice("kind", CACHE_KINDS),
            size_bytes=ce.positive_int("size_bytes", minimum=0),
            line_bytes=ce.positive_int("line_bytes"),
            ways=ce.positive_int("ways", minimum=0),
            data_size_bytes=ce.positive_int("data_size_bytes", minimum=0, required=False,
                                            default=0),
            miss_cycles=ce.positive_int("miss_cycles", minimum=0, required=False),
        )
        ce.check_unknown()
        if cache.line_bytes & (cache.line_bytes - 1):
            ce.fail("line_bytes", "must be a power of two")

    sources = e.get("sources", dict)
    required = list(_REQUIRED_SOURCES)
    if core_key == "m0plus":
        required.append("multiplier")
    if cache is not None:
        required.append("flash_cache")
    for k in required:
        if not isinstance(sources.get(k), str) or not sources[k].strip():
            e.fail(f"sources.{k}", "is missing: every figure needs its source")
    for k, v in sources.items():
        if not isinstance(v, str):
            e.fail(f"sources.{k}", "must be a string")
        keys = [tok.strip("(),;:") for tok in v.split()]
        for tok in keys:
            if tok[:1] == "S" and tok[1:].isdigit() and tok not in source_texts:
                e.fail(f"sources.{k}", f"cites {tok}, which [sources] does not define")

    mcu = Mcu(
        name=name,
        board=e.get("board", str),
        vendor=e.get("vendor", str),
        core=core,
        clock_hz=e.positive_int("clock_hz", minimum=1_000_000),
        fpu=fpu,
        multiplier=multiplier,
        flash_wait_states=e.positive_int("flash_wait_states", minimum=0),
        voltage_v=e.positive_float("voltage_v"),
        run_current_ma=e.positive_float("run_current_ma"),
        code_region=code_region,
        data_region=data_region,
        stack_bytes=stack_bytes,
        regions=tuple(regions),
        flash_cache=cache,
        sources=dict(sources),
        notes=e.str_list("notes"),
        unconfirmed=e.str_list("unconfirmed"),
    )
    e.check_unknown()
    if mcu.clock_hz > 2_000_000_000:
        e.fail("clock_hz", f"is implausible for a Cortex-M ({mcu.clock_hz} Hz)")
    return mcu


@lru_cache(maxsize=8)
def _load_cached(cores_path: Path, mcus_path: Path, stamp: tuple[float, float]) -> Catalog:
    cores = parse_cores(cores_path)
    mcus, texts = parse_mcus(mcus_path, cores)
    return Catalog(cores=cores, mcus=mcus, source_texts=texts)


def load_catalog(mcus_path: Path | str | None = None,
                 cores_path: Path | str | None = None) -> Catalog:
    """Load and validate the catalog (default: cost_models/ of this checkout)."""
    cp = Path(cores_path) if cores_path else COST_MODELS_DIR / "cores.toml"
    mp = Path(mcus_path) if mcus_path else COST_MODELS_DIR / "mcus.toml"
    for p in (cp, mp):
        if not p.is_file():
            raise CatalogError(f"catalog file not found: {p}")
    return _load_cached(cp.resolve(), mp.resolve(), (cp.stat().st_mtime, mp.stat().st_mtime))
