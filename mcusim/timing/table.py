"""Per-core cycle cost tables (cost_models/cortex_<core>.toml) as validated objects."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import tomllib

from mcusim.catalog import COST_MODELS_DIR
from mcusim.errors import CatalogError, UnknownNameError
from mcusim.timing.decode import CLASSES

TABLE_FILES = {"m0plus": "cortex_m0plus.toml", "m4": "cortex_m4.toml", "m7": "cortex_m7.toml"}
MODELS = ("m0plus", "m4", "m7")
STATUSES = ("primary", "secondary", "measured", "assumption")
ISSUE = ("dual", "slot0", "single")


@dataclass(frozen=True)
class ClassCost:
    """One instruction class of one core."""

    name: str
    cycles: float
    per_register: float = 0.0
    taken: int | str = 0  # extra cycles when the block is left through it; "P" = refill rule
    latency: int = 1  # result latency (dual-issue model)
    issue: str = "dual"
    units: tuple[str, ...] = ()
    early: bool = False
    acc_advance: int = 0
    energy: float = 1.0
    rule: str = ""
    source: str = ""
    status: str = "primary"

    def issue_cycles(self, nregs: int) -> int:
        """Base cycles including the per-register part (rounded up)."""
        return math.ceil(self.cycles + self.per_register * nregs - 1e-9)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"class": self.name, "cycles": self.cycles}
        if self.per_register:
            d["per_register"] = self.per_register
        if self.taken:
            d["taken"] = self.taken
        d.update(latency=self.latency, issue=self.issue, units=list(self.units),
                 energy=self.energy, rule=self.rule, source=self.source, status=self.status)
        return d


@dataclass(frozen=True)
class CostTable:
    """A core's classes, parameters and sources."""

    core: str
    model: str
    version: str
    title: str
    path: Path
    classes: dict[str, ClassCost]
    parameters: dict[str, dict[str, Any]]
    sources: dict[str, str]
    energy_source: str = ""
    assumptions: tuple[str, ...] = field(default=())

    def cls(self, name: str) -> ClassCost:
        c = self.classes.get(name)
        if c is None:
            raise UnknownNameError(
                f"the {self.core} cost model has no instruction class {name!r}: "
                "the code uses an instruction this core lacks")
        return c

    def param(self, name: str, key: str = "value") -> Any:
        return self.parameters[name][key]


def _fail(path: Path, where: str, problem: str) -> None:
    raise CatalogError(f"{path.name}: {where}: {problem}")


def parse_table(path: Path) -> CostTable:
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as e:
        raise CatalogError(f"cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise CatalogError(f"{path.name}: not valid TOML: {e}") from None
    for key in ("core", "model", "version", "title"):
        if not isinstance(raw.get(key), str):
            _fail(path, key, "missing or not a string")
    if raw["model"] not in MODELS:
        _fail(path, "model", f"must be one of {', '.join(MODELS)}")
    sources = raw.get("sources", {})
    classes: dict[str, ClassCost] = {}
    for name, row in raw.get("class", {}).items():
        where = f"class.{name}"
        if name not in CLASSES:
            _fail(path, where, "unknown instruction class (mcusim/timing/decode.py CLASSES)")
        unknown = set(row) - {"cycles", "per_register", "taken", "latency", "issue", "units",
                              "early", "acc_advance", "energy", "rule", "source", "status"}
        if unknown:
            _fail(path, where, f"unknown field(s) {', '.join(sorted(unknown))}")
        for key in ("cycles", "rule", "source", "status"):
            if key not in row:
                _fail(path, where, f"missing {key}")
        if not isinstance(row["cycles"], int | float) or row["cycles"] < 0:
            _fail(path, where, "cycles must be a number >= 0")
        if row["status"] not in STATUSES:
            _fail(path, where, f"status must be one of {', '.join(STATUSES)}")
        taken = row.get("taken", 0)
        if not ((isinstance(taken, int) and taken >= 0) or taken == "P"):
            _fail(path, where, "taken must be an integer >= 0 or \"P\"")
        if row.get("issue", "dual") not in ISSUE:
            _fail(path, where, f"issue must be one of {', '.join(ISSUE)}")
        units = tuple(row.get("units", ()))
        cap = raw.get("parameters", {}).get("units", {})
        for u in units:
            if cap and u not in cap:
                _fail(path, where, f"unit {u!r} not in parameters.units")
        classes[name] = ClassCost(
            name=name, cycles=float(row["cycles"]), per_register=float(row.get("per_register", 0)),
            taken=taken, latency=int(row.get("latency", 1)), issue=row.get("issue", "dual"),
            units=units, early=bool(row.get("early", False)),
            acc_advance=int(row.get("acc_advance", 0)),
            energy=float(row.get("energy", raw.get("energy", {}).get("default", 1.0))),
            rule=row["rule"], source=row["source"], status=row["status"])
    if "unclassified" not in classes:
        _fail(path, "class.unclassified", "missing (the fallback class)")
    params = raw.get("parameters", {})
    for name, p in params.items():
        if not isinstance(p, dict) or "rule" not in p or "source" not in p:
            _fail(path, f"parameters.{name}", "needs a rule and a source")
    assumptions = tuple(
        f"{name}: {p['rule']}" for name, p in params.items() if p.get("status") == "assumption")
    energy = raw.get("energy", {})
    return CostTable(core=raw["core"], model=raw["model"], version=raw["version"],
                     title=raw["title"], path=path, classes=classes, parameters=params,
                     sources=dict(sources), energy_source=str(energy.get("source", "")),
                     assumptions=assumptions)


@cache
def _load(path: Path, mtime: float) -> CostTable:
    return parse_table(path)


def load_table(core: str, directory: Path | None = None) -> CostTable:
    """The cost table of a core key (m0plus, m4, m7)."""
    fname = TABLE_FILES.get(core)
    if fname is None:
        raise UnknownNameError(f"no cost model for core {core!r} (known: "
                               f"{', '.join(TABLE_FILES)})")
    path = (directory or COST_MODELS_DIR) / fname
    try:
        mtime = path.stat().st_mtime
    except OSError:
        raise CatalogError(f"cost model {path} is missing") from None
    return _load(path, mtime)
