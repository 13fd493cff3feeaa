"""Comparing two result sets point by point: what moved, and which `--fail-if` rules it
crossed (the gate `mcusim compare` puts into a user's CI).

A *result set* is a results database (optionally narrowed to one run: `FILE@RUN_ID`, or
`FILE@latest` for the newest run in it) or a file exported by `mcusim results` (.json,
.csv, .parquet).  Points of the two sets are paired by `match_key`, the hash of what a
person names (model, MCU, settings, ...) without file contents or versions, so a point
computed by a newer mcusim or from an edited model file still meets its old self.  When a
set holds several rows with one match_key, the newest (`created_at`) stands for it.

Nothing here prints: `compare()` returns a `Comparison`, mcusim.render.results shows it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mcusim.errors import UsageError
from mcusim.results.store import (
    COLUMNS,
    NAMES,
    NUMERIC,
    TABLE,
    Store,
    open_store,
    require_duckdb,
    rows_from_file,
)

#: the figures compared for every paired point (rules may name other numeric columns)
METRICS: tuple[str, ...] = ("cycles", "latency_ms", "energy_mj", "peak_ram_bytes",
                            "flash_bytes", "stack_bytes", "test_acc")
#: the suffixes read as exported files; anything else is opened as a DuckDB store
EXPORT_SUFFIXES = (".json", ".csv", ".parquet")
#: relative difference below which two floats are the same figure (exports round-trip
#: doubles exactly; this only absorbs a writer that prints one digit fewer)
SAME_REL = 1e-12

RULE_GRAMMAR = ("METRIC>+N%, METRIC>+N, METRIC<-N%, METRIC<-N (METRIC: a numeric column "
                "such as cycles, latency_ms, energy_mj, peak_ram_bytes, flash_bytes, "
                "test_acc; `>`: NEW exceeds BASE by more than N, `<`: NEW falls below BASE "
                "by more than N; N% relative, N absolute), `fits` or `missing`")
_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*([<>])\s*([+-]?)\s*"
                   r"((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(%?)\s*$")


# ----------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """One `--fail-if` expression."""

    text: str  # as the user wrote it (normalized spacing)
    kind: str  # "threshold", "fits" or "missing"
    metric: str | None = None
    direction: str = ">"  # ">": NEW above BASE; "<": NEW below BASE
    amount: float = 0.0  # >= 0
    relative: bool = False  # amount is a percentage of BASE

    def crossed(self, base: float, new: float) -> bool:
        """Whether moving from `base` to `new` crosses this threshold."""
        diff = new - base if self.direction == ">" else base - new
        if diff <= 0:
            return False
        if not self.relative:
            return diff > self.amount
        if base == 0:
            return True  # from nothing to something: more than any percentage
        return diff / abs(base) * 100 > self.amount


def parse_rule(text: str) -> Rule:
    """A `--fail-if` expression (RULE_GRAMMAR); UsageError naming the grammar otherwise."""
    t = text.strip()
    if t.lower() in ("fits", "missing"):
        return Rule(t.lower(), t.lower())
    m = _RULE.match(t)
    if not m:
        raise UsageError(f"--fail-if {text!r}: expected {RULE_GRAMMAR}")
    metric, direction, sign, number, pct = m.groups()
    if metric not in NUMERIC:
        raise UsageError(f"--fail-if {text!r}: {metric!r} is not a numeric column (numeric "
                         f"columns: {', '.join(sorted(NUMERIC))}); expected {RULE_GRAMMAR}")
    if (direction == ">" and sign == "-") or (direction == "<" and sign == "+"):
        raise UsageError(f"--fail-if {text!r}: the sign must follow the direction ('>+N' "
                         f"or '<-N'); expected {RULE_GRAMMAR}")
    amount = float(number)
    if not math.isfinite(amount):
        raise UsageError(f"--fail-if {text!r}: the threshold must be finite")
    sign = sign or ("+" if direction == ">" else "-")
    return Rule(f"{metric}{direction}{sign}{number}{pct}", "threshold", metric, direction,
                amount, bool(pct))


# ----------------------------------------------------------------------------- result sets


@dataclass
class ResultSet:
    """The points of one side of a comparison."""

    spec: str  # as given on the command line
    path: Path
    run: str | None  # the run it was narrowed to (FILE@RUN_ID; @latest resolved)
    rows: list[dict[str, Any]]  # every selected row
    points: dict[str, dict[str, Any]]  # match_key -> the newest row

    def describe(self) -> dict[str, Any]:
        return {"source": self.spec, "path": str(self.path), "run": self.run,
                "rows": len(self.rows), "points": len(self.points)}


def split_spec(spec: str) -> tuple[Path, str | None]:
    """FILE or FILE@RUN_ID (a file whose own name holds '@' is taken whole)."""
    if not spec.strip():
        raise UsageError("an empty result set: give a results file, FILE@RUN_ID or "
                         "FILE@latest")
    p = Path(spec).expanduser()
    if p.exists() or "@" not in spec:
        return p, None
    file, run = spec.rsplit("@", 1)
    if not file or not run:
        raise UsageError(f"{spec!r}: expected FILE, FILE@RUN_ID or FILE@latest")
    return Path(file).expanduser(), run


def load_result_set(spec: str, where: str | None = None) -> ResultSet:
    """The rows `spec` names (a store, FILE@RUN_ID, FILE@latest or an export), narrowed by
    the SQL condition `where`, and its points by match_key."""
    path, run = split_spec(spec)
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, not a results file")
    if not path.exists():
        raise UsageError(f"{path}: no such file (a results database, or a file written by "
                         "`mcusim results --format json|csv|parquet -o FILE`)")
    with _open_set(path) as store:
        if run == "latest":
            run = latest_run(store)
        cond = f"({where})" if where else None
        if run is not None:
            runs = {r["run_id"] for r in store.query(columns=["run_id"])}
            if run not in runs:
                known = ", ".join(sorted(str(r) for r in runs if r is not None)[:10])
                raise UsageError(f"{path}: no run {run!r} (runs: {known or 'none'})")
            by_run = "run_id = '" + run.replace("'", "''") + "'"
            cond = f"{cond} AND {by_run}" if cond else by_run
        rows = store.query(where=cond)
    return ResultSet(spec, path, run, rows, newest_by_match_key(rows, spec))


def latest_run(store: Store) -> str:
    """The run of the newest row (by created_at)."""
    rows = store.query(columns=["run_id", "created_at"],
                       order="created_at DESC NULLS LAST, key DESC")
    if not rows:
        raise UsageError(f"{store.path}: holds no points, so no latest run")
    run = rows[0]["run_id"]
    if run is None:
        raise UsageError(f"{store.path}: its newest point has no run_id")
    return str(run)


def _open_set(path: Path) -> Store:
    """A store opened read-only, or an export loaded into an in-memory store with the
    same schema (so --where and @RUN_ID work the same on both)."""
    if path.suffix.lower() not in EXPORT_SUFFIXES:
        return open_store(path, read_only=True)
    rows = rows_from_file(path)
    duckdb = require_duckdb()
    con = duckdb.connect()
    con.execute(f"CREATE TABLE {TABLE} ({', '.join(f'{n} {t}' for n, t, _ in COLUMNS)})")
    store = Store(path, con)
    if rows and "match_key" not in rows[0]:
        raise UsageError(f"{path}: its rows have no match_key column (export it with "
                         "`mcusim results` without --columns to compare it)")
    marks = ", ".join("?" for _ in NAMES)
    values = []
    for r in rows:
        row = {k: _import_value(k, v) for k, v in r.items() if k in NAMES}
        values.append([_export_value(n, row.get(n)) for n in NAMES])
    try:
        if values:
            con.executemany(f"INSERT OR REPLACE INTO {TABLE} VALUES ({marks})", values)
    except duckdb.Error as e:
        raise UsageError(f"{path}: its rows do not fit the results schema "
                         f"({str(e).splitlines()[0]})") from None
    return store


def _import_value(name: str, v: Any) -> Any:
    """A value read from an export as the store holds it (JSON columns decoded)."""
    if name in ("inputs", "detail") and isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _export_value(name: str, v: Any) -> Any:
    """A value as the INSERT takes it (JSON columns as text; created_at kept as it is,
    unknown included: Store.put would stamp it with the time of loading)."""
    if name in ("inputs", "detail"):
        return None if v is None else json.dumps(v, allow_nan=False, default=str)
    return v


def _when(row: dict[str, Any]) -> str:
    """created_at as sortable text ('' when unknown: older than any time)."""
    v = row.get("created_at")
    if v is None:
        return ""
    return v.isoformat() if isinstance(v, datetime) else str(v).replace(" ", "T")


def newest_by_match_key(rows: list[dict[str, Any]], what: str = "") -> dict[str, dict]:
    """match_key -> its newest row (ties: the later one in the rows' order)."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        mk = r.get("match_key")
        if mk is None:
            raise UsageError(f"{what}: a row without match_key (key {r.get('key')})")
        if mk not in out or _when(r) >= _when(out[mk]):
            out[mk] = r
    return out


# ----------------------------------------------------------------------------- comparing


@dataclass
class Change:
    """One figure of one paired point that moved."""

    match_key: str
    label: str
    metric: str  # a numeric column, or "status"
    base: Any
    new: Any

    @property
    def delta(self) -> float | None:
        if isinstance(self.base, (int, float)) and isinstance(self.new, (int, float)) \
                and not isinstance(self.base, bool):
            return self.new - self.base
        return None

    @property
    def rel(self) -> float | None:
        """(new - base) / |base|; inf from 0; None for status."""
        d = self.delta
        if d is None:
            return None
        if self.base == 0:
            return math.copysign(math.inf, d) if d else 0.0
        return d / abs(self.base)

    def order(self) -> float:
        """Sort key: status changes first, then the largest relative change."""
        r = self.rel
        return math.inf if r is None else abs(r)

    def to_dict(self) -> dict[str, Any]:
        return {"point": self.label, "match_key": self.match_key, "metric": self.metric,
                "base": self.base, "new": self.new, "change": self.delta,
                "relative": self.rel}


@dataclass
class Violation:
    """One crossing of a --fail-if rule."""

    rule: Rule
    match_key: str
    label: str
    metric: str | None = None
    base: Any = None
    new: Any = None

    @property
    def change(self) -> float | None:
        return Change(self.match_key, self.label, self.metric or "", self.base,
                      self.new).delta

    @property
    def rel(self) -> float | None:
        return Change(self.match_key, self.label, self.metric or "", self.base,
                      self.new).rel

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.text, "point": self.label, "match_key": self.match_key,
                "metric": self.metric, "base": self.base, "new": self.new,
                "change": self.change, "relative": self.rel}


@dataclass
class Comparison:
    """What moved from BASE to NEW, and the rules it crossed."""

    base: ResultSet
    new: ResultSet
    rules: list[Rule]
    metrics: tuple[str, ...]
    paired: int = 0
    identical: int = 0
    changed: list[Change] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)  # BASE rows not in NEW
    added: list[dict[str, Any]] = field(default_factory=list)  # NEW rows not in BASE
    #: metric -> paired points where BASE or NEW has no value (not compared)
    not_compared: dict[str, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def changed_points(self) -> int:
        return len({c.match_key for c in self.changed})

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base.describe(), "new": self.new.describe(),
                "metrics": list(self.metrics), "rules": [r.text for r in self.rules],
                "paired": self.paired, "identical": self.identical,
                "changed_points": self.changed_points(),
                "changed": [c.to_dict() for c in self.changed],
                "missing": [point_summary(r) for r in self.missing],
                "added": [point_summary(r) for r in self.added],
                "not_compared": self.not_compared,
                "violations": [v.to_dict() for v in self.violations], "ok": self.ok}


def label(row: dict[str, Any]) -> str:
    """A point as a person names it: 'step digits-cnn RP2040 λ=0.1 stochastic b8'."""
    parts = [str(row.get(k)) for k in ("kind", "model", "mcu") if row.get(k) is not None]
    lam = row.get("lambda_min")
    if isinstance(lam, (int, float)):
        parts.append(f"λ={lam:g}")
    if row.get("rounding"):
        parts.append(str(row["rounding"]))
    if row.get("batch_size") is not None:
        parts.append(f"b{row['batch_size']}")
    return " ".join(parts) or str(row.get("match_key", "?"))[:12]


def _labels(rows: list[dict[str, Any]]) -> dict[str, str]:
    """match_key -> label, with the match_key's first hex digits where labels collide."""
    raw = {r["match_key"]: label(r) for r in rows}
    counts: dict[str, int] = {}
    for text in raw.values():
        counts[text] = counts.get(text, 0) + 1
    return {mk: text if counts[text] == 1 else f"{text} #{mk[:8]}" for mk, text in raw.items()}


def point_summary(row: dict[str, Any]) -> dict[str, Any]:
    """A missing or added point in the JSON: who it is and its headline figures."""
    return {"point": label(row), "match_key": row.get("match_key"), "key": row.get("key"),
            "status": row.get("status"), "fits": row.get("fits"),
            **{m: row.get(m) for m in METRICS}}


def _number(v: Any) -> float | int | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return v if math.isfinite(v) else None
    return None


def _same(a: float, b: float) -> bool:
    return a == b or math.isclose(a, b, rel_tol=SAME_REL, abs_tol=0.0)


def compare(base: ResultSet, new: ResultSet, rules: list[Rule] | None = None) -> Comparison:
    """Pair BASE and NEW by match_key and list what moved and what crossed `rules`."""
    rules = list(rules or [])
    metrics = tuple(dict.fromkeys([*METRICS, *(r.metric for r in rules if r.metric)]))
    out = Comparison(base, new, rules, metrics)
    names = _labels([*base.points.values(), *new.points.values()])
    for mk, b in base.points.items():
        n = new.points.get(mk)
        if n is None:
            out.missing.append(b)
            for r in rules:
                if r.kind == "missing":
                    out.violations.append(Violation(r, mk, names[mk]))
            continue
        out.paired += 1
        moved = False
        if (b.get("status"), b.get("fits")) != (n.get("status"), n.get("fits")):
            moved = True
            out.changed.append(Change(mk, names[mk], "status", _status(b), _status(n)))
        for r in rules:
            if r.kind == "fits" and b.get("fits") is True and n.get("fits") is not True:
                out.violations.append(Violation(r, mk, names[mk], "fits", _status(b),
                                                _status(n)))
        for m in metrics:
            bv, nv = _number(b.get(m)), _number(n.get(m))
            if bv is None or nv is None:
                out.not_compared[m] = out.not_compared.get(m, 0) + 1
                continue
            if not _same(bv, nv):
                moved = True
                out.changed.append(Change(mk, names[mk], m, bv, nv))
            for r in rules:
                if r.kind == "threshold" and r.metric == m and r.crossed(bv, nv):
                    out.violations.append(Violation(r, mk, names[mk], m, bv, nv))
        if not moved:
            out.identical += 1
    out.added = [r for mk, r in new.points.items() if mk not in base.points]
    # points by their largest relative change; within a point, status then the metrics
    worst: dict[str, float] = {}
    for c in out.changed:
        worst[c.match_key] = max(worst.get(c.match_key, 0.0), c.order())
    rank = {m: i for i, m in enumerate(("status", *metrics))}
    out.changed.sort(key=lambda c: (-worst[c.match_key], c.label, c.match_key,
                                    rank[c.metric]))
    out.not_compared = {m: out.not_compared[m] for m in metrics if m in out.not_compared}
    out.missing.sort(key=label)
    out.added.sort(key=label)
    return out


def _status(row: dict[str, Any]) -> str:
    s = row.get("status") or "?"
    fits = row.get("fits")
    return s if fits is None or (fits is True) == (s == "ok") else f"{s} (fits={fits})"
