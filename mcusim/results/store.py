"""The results database: one embedded DuckDB file, one row per point.

A *point* is one question answered once: a kind of run (budget, step or train) of one model
on one MCU with one set of settings, toolchain and seed.  Sweeps store every point they run;
the single commands store theirs with `--store FILE`.  The schema is `COLUMNS` below (and
docs/results.md); a row holds the point's inputs, every figure it reported, its provenance,
and the whole report as JSON (`detail`) for the layer x phase and memory breakdowns.

DuckDB admits one writing process: the client (the `mcusim` process) writes, Dask workers
only return results.  Nothing here prints.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mcusim.errors import UsageError

SCHEMA_VERSION = 1
TABLE = "points"

# (name, DuckDB type, meaning): the table, in column order.  docs/results.md documents the
# same columns (tests/test_results_store.py checks that it names each one).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    # identity
    ("key", "VARCHAR PRIMARY KEY", "hash of the point's normalized inputs, including the "
     "content of the model file, the MCU's catalog entry, the toolchain and its version and "
     "mcusim's version: a point is stored once per key"),
    ("match_key", "VARCHAR", "hash of the inputs a person names (kind, model name, MCU, "
     "settings, toolchain kind, seed, data set, epochs), without file contents or versions: "
     "`mcusim compare` pairs points of two result sets by it"),
    ("run_id", "VARCHAR", "the invocation that stored the row (one per sweep or command)"),
    ("sweep", "VARCHAR", "the sweep's name, or the single command (step, budget, train)"),
    ("kind", "VARCHAR", "what ran: budget, step or train"),
    ("status", "VARCHAR", "ok, does-not-fit (stored with its budget figures and the "
     "hypothetical cost) or failed (with `error`)"),
    ("error", "VARCHAR", "the one-line error of a failed point"),
    # inputs
    ("model", "VARCHAR", "the model's name"),
    ("model_ref", "VARCHAR", "the model as the sweep or command named it (zoo name or path)"),
    ("mcu", "VARCHAR", "the MCU's catalog name"),
    ("core", "VARCHAR", "m0plus, m4 or m7"),
    ("clock_hz", "BIGINT", "CPU clock of the point (the catalog's, or --clock)"),
    ("wait_states", "INTEGER", "flash wait states at that clock"),
    ("flash_cache", "BOOLEAN", "whether the flash accelerator / cache was on"),
    ("lambda_min", "DOUBLE", "partial updates: λ_min (1 = full training)"),
    ("lambda_max", "DOUBLE", "partial updates: λ_max"),
    ("rounding", "VARCHAR", "requantization rounding"),
    ("update_rounding", "VARCHAR", "the weight update's rounding"),
    ("batch_size", "INTEGER", "mini-batch size"),
    ("fc_gradient", "VARCHAR", "accumulate or pairs"),
    ("trainable", "VARCHAR", "the trainable layers, comma-separated"),
    ("toolchain", "VARCHAR", "gcc or zig"),
    ("toolchain_version", "VARCHAR", "the compiler's version"),
    ("energy_basis", "VARCHAR", "chip or board"),
    ("seed", "BIGINT", "weights and data seed"),
    ("dataset", "VARCHAR", "train: the data set; step: where the samples came from "
     "(empty: seeded random inputs)"),
    ("epochs", "INTEGER", "train: epochs"),
    # figures
    ("fits", "BOOLEAN", "whether the training step fits the MCU's RAM and flash"),
    ("hypothetical", "BOOLEAN", "the costs were simulated as if the missing RAM existed"),
    ("cycles", "DOUBLE", "cycles per sample, the update's share included"),
    ("latency_ms", "DOUBLE", "time per sample at the clock, ms"),
    ("energy_mj", "DOUBLE", "energy per sample, mJ"),
    ("batch_cycles", "DOUBLE", "cycles of one mini-batch (samples and update)"),
    ("batch_latency_ms", "DOUBLE", "time of one mini-batch, ms"),
    ("batch_energy_mj", "DOUBLE", "energy of one mini-batch, mJ"),
    ("update_cycles", "DOUBLE", "cycles of one mini-batch's weight update"),
    ("peak_ram_bytes", "BIGINT", "peak RAM: buffers, arena, kernel data and measured stack"),
    ("ram_budget_bytes", "BIGINT", "the RAM the layout may use"),
    ("ram_headroom_bytes", "BIGINT", "RAM left (negative: short by that much)"),
    ("flash_bytes", "BIGINT", "flash: kernel code, initial state, frozen weights"),
    ("flash_budget_bytes", "BIGINT", "the MCU's flash"),
    ("stack_bytes", "BIGINT", "measured stack peak"),
    ("arena_bytes", "BIGINT", "the activation/error arena"),
    ("train_loss", "DOUBLE", "train: last epoch's training loss"),
    ("train_acc", "DOUBLE", "train: last epoch's training accuracy"),
    ("test_acc", "DOUBLE", "train: last epoch's test accuracy"),
    ("baseline_test_acc", "DOUBLE", "train: the float32 baseline's last test accuracy"),
    ("epoch_device_ms", "DOUBLE", "train: simulated on-device time of one epoch, ms"),
    # provenance
    ("mcusim_version", "VARCHAR", "mcusim's version"),
    ("git_commit", "VARCHAR", "mcusim's git commit, when installed from a checkout"),
    ("model_hash", "VARCHAR", "SHA-256 of the model file (and its weights file)"),
    ("catalog_hash", "VARCHAR", "SHA-256 of the MCU's catalog entry as used"),
    ("cost_model_hash", "VARCHAR", "SHA-256 of the core's cost model file"),
    ("created_at", "TIMESTAMP", "when the point was stored (UTC)"),
    ("wall_s", "DOUBLE", "host seconds the point took on its worker"),
    ("worker", "VARCHAR", "where it ran (host and process)"),
    ("inputs", "JSON", "the normalized inputs the key hashes"),
    ("detail", "JSON", "the whole report (`mcusim step/budget/train --json`)"),
)
NAMES: tuple[str, ...] = tuple(c[0] for c in COLUMNS)
NUMERIC = frozenset(n for n, t, _ in COLUMNS if t.split()[0] in ("DOUBLE", "BIGINT", "INTEGER"))
STATUSES = ("ok", "does-not-fit", "failed")


def default_store() -> Path:
    """$MCUSIM_STORE, else $XDG_DATA_HOME/mcusim/results.duckdb, else
    ~/.local/share/mcusim/results.duckdb."""
    env = os.environ.get("MCUSIM_STORE")
    if env:
        return Path(env).expanduser().absolute()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return (Path(base) / "mcusim" / "results.duckdb").absolute()


def require_duckdb():
    try:
        import duckdb
    except ImportError:
        raise UsageError("the results database needs DuckDB: pip install 'mcusim[sweep]'") \
            from None
    return duckdb


@dataclass
class Store:
    """An open results database."""

    path: Path
    con: Any  # duckdb.DuckDBPyConnection

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def put(self, row: dict[str, Any]) -> None:
        """Insert a point, replacing a stored one with the same key (a failed point that
        ran again)."""
        unknown = set(row) - set(NAMES)
        if unknown:
            raise ValueError(f"not columns of {TABLE}: {sorted(unknown)}")
        if row.get("created_at") is None:
            row = {**row, "created_at": datetime.now(timezone.utc).replace(tzinfo=None)}
        vals = [_sql_value(n, row.get(n)) for n in NAMES]
        marks = ", ".join("?" for _ in NAMES)
        self.con.execute(f"INSERT OR REPLACE INTO {TABLE} VALUES ({marks})", vals)

    # ------------------------------------------------------------------ reading

    def keys(self, statuses: Sequence[str] = ("ok", "does-not-fit")) -> set[str]:
        """Keys of the stored points with these statuses."""
        marks = ", ".join("?" for _ in statuses)
        rows = self.con.execute(f"SELECT key FROM {TABLE} WHERE status IN ({marks})",
                                list(statuses)).fetchall()
        return {r[0] for r in rows}

    def query(self, where: str | None = None, columns: Sequence[str] | None = None,
              order: str = "created_at, key") -> list[dict[str, Any]]:
        """Rows as dicts (JSON columns decoded); `where` is a DuckDB SQL condition on the
        columns (e.g. "mcu = 'RP2040' AND fits")."""
        cols = list(columns) if columns else list(NAMES)
        bad = [c for c in cols if c not in NAMES]
        if bad:
            raise UsageError(f"unknown column(s) {', '.join(bad)} (columns: "
                             f"{', '.join(NAMES)})")
        sql = f"SELECT {', '.join(cols)} FROM {TABLE}"
        sql += f" WHERE {where}" if where else ""
        sql += f" ORDER BY {order}"
        cur = self._execute(sql)
        out = []
        for r in cur.fetchall():
            d = dict(zip(cols, r, strict=True))
            for c in ("inputs", "detail"):
                if c in d and isinstance(d[c], str):
                    d[c] = json.loads(d[c])
            if "created_at" in d and d["created_at"] is not None:
                d["created_at"] = d["created_at"].isoformat(timespec="seconds")
            out.append(d)
        return out

    def count(self, where: str | None = None) -> int:
        sql = f"SELECT count(*) FROM {TABLE}" + (f" WHERE {where}" if where else "")
        return int(self._execute(sql).fetchone()[0])

    def export(self, target: Path, fmt: str, where: str | None = None,
               columns: Sequence[str] | None = None) -> None:
        """Write the (selected) rows as csv or parquet with DuckDB's own writer."""
        cols = list(columns) if columns else list(NAMES)
        sql = f"SELECT {', '.join(cols)} FROM {TABLE}"
        sql += f" WHERE {where}" if where else ""
        sql += " ORDER BY created_at, key"
        opts = "FORMAT csv, HEADER" if fmt == "csv" else "FORMAT parquet"
        path = str(target).replace("'", "''")
        self._execute(f"COPY ({sql}) TO '{path}' ({opts})")

    def _execute(self, sql: str):
        duckdb = require_duckdb()
        try:
            return self.con.execute(sql)
        except (duckdb.ParserException, duckdb.BinderException,
                duckdb.ConversionException, duckdb.CatalogException) as e:
            first = str(e).splitlines()[0]
            raise UsageError(f"--where: {first}") from None


def open_store(path: str | Path | None = None, *, read_only: bool = False,
               create: bool = True) -> Store:
    """Open (or create) the results database at `path` (default: default_store())."""
    duckdb = require_duckdb()
    p = Path(path).expanduser().absolute() if path else default_store()
    if p.is_dir():
        raise UsageError(f"--store {p}: is a directory, not a results file")
    if not p.exists():
        if read_only or not create:
            raise UsageError(f"no results database at {p} (a sweep or `--store` creates it)")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--store {p}: cannot create its folder: {e.strerror}") from None
    try:
        con = duckdb.connect(str(p), read_only=read_only)
    except duckdb.IOException as e:
        msg = str(e).splitlines()[0]
        if "lock" in msg.lower():
            raise UsageError(f"{p} is in use by another process (DuckDB allows one writer: "
                             "wait for it or use another --store)") from None
        raise UsageError(f"{p}: not a results database DuckDB can open ({msg})") from None
    except duckdb.Error as e:
        raise UsageError(f"{p}: not a results database DuckDB can open "
                         f"({str(e).splitlines()[0]})") from None
    store = Store(p, con)
    _ensure_schema(store, read_only)
    return store


def _ensure_schema(store: Store, read_only: bool) -> None:
    con = store.con
    have = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables").fetchall()}
    if TABLE not in have:
        if read_only:
            raise UsageError(f"{store.path}: has no table {TABLE!r}: not an mcusim results "
                             "database")
        cols = ", ".join(f"{n} {t}" for n, t, _ in COLUMNS)
        con.execute(f"CREATE TABLE {TABLE} ({cols})")
        con.execute("CREATE TABLE IF NOT EXISTS meta (name VARCHAR PRIMARY KEY, "
                    "value VARCHAR)")
        con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                    [str(SCHEMA_VERSION)])
        return
    got = [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position", [TABLE]).fetchall()]
    if got != list(NAMES):
        raise UsageError(f"{store.path}: its {TABLE!r} table is not the one this mcusim "
                         f"writes (schema version {SCHEMA_VERSION}); use another --store")


def _sql_value(name: str, v: Any) -> Any:
    if name in ("inputs", "detail"):
        return None if v is None else json.dumps(v, allow_nan=False, default=_json_default)
    if isinstance(v, float) and v != v:  # NaN: unknown
        return None
    return v


def _json_default(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON: {type(x).__name__}")


def rows_from_file(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an exported result set: .json (`mcusim results --format json`), .csv or
    .parquet (read with DuckDB), or a .duckdb store."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"{p}: not JSON ({e})") from None
        rows = data.get("points") if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise UsageError(f"{p}: expected `mcusim results --format json` output (an "
                             "object with a \"points\" list)")
        return rows
    if suffix in (".csv", ".parquet"):
        duckdb = require_duckdb()
        reader = "read_csv_auto" if suffix == ".csv" else "read_parquet"
        try:
            con = duckdb.connect()
            cur = con.execute(f"SELECT * FROM {reader}(?)", [str(p)])
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        except duckdb.Error as e:
            raise UsageError(f"{p}: cannot read it ({str(e).splitlines()[0]})") from None
        return rows
    with open_store(p, read_only=True) as st:
        return st.query()
