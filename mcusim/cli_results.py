"""`mcusim results` (query and export the results database) and `mcusim compare` (two
result sets point by point, with `--fail-if` thresholds: the CI gate).  The schema and
examples are in docs/results.md."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcusim.errors import UsageError

FORMATS = ("table", "csv", "parquet", "json", "markdown")


def register(add: Callable[..., Any]) -> None:
    """Add this module's commands to the parser (`add` is cli.build_parser's)."""
    from mcusim.cli import _path, _positive_int

    rp = add("results", cmd_results, "query and export the results database",
             "List the points of the results database (sweeps and commands run with "
             "--store write it): a table of the headline figures by default, or every "
             "column as CSV, Parquet, JSON or a Markdown table. The schema is in "
             "docs/results.md; the file is a DuckDB database you can also query directly.")
    store_args(rp, _path)
    rp.add_argument("--columns", metavar="A,B,...", default=None,
                    help="only these columns, in this order (default: the headline figures "
                         "for table and markdown, every column otherwise)")
    rp.add_argument("--format", choices=FORMATS, default=None,
                    help="table (default), csv, parquet (needs -o), json ({\"store\", "
                         "\"points\"}; the same as --json) or markdown (GitHub table)")
    rp.add_argument("-o", "--output", metavar="FILE", type=_path, default=None,
                    help="write to FILE instead of stdout")
    rp.add_argument("--limit", metavar="N", type=_positive_int, default=None,
                    help="only the N newest points (by created_at), listed oldest first")
    rp.add_argument("--detail", action="store_true",
                    help="also the `detail` column (each point's whole report as JSON; "
                         "large), left out by default")

    cp = add("compare", cmd_compare, "compare two result sets point by point (a CI gate)",
             "Pair the points of BASE and NEW by match_key (what you named: model, MCU, "
             "settings; not file contents or versions) and show what moved: cycles, "
             "latency, energy, peak RAM, flash, stack, test accuracy and fits/status, base "
             "-> new and the relative change, largest first; plus points only in BASE or "
             "only in NEW. BASE and NEW are each a results database (FILE; FILE@RUN_ID "
             "for one run; FILE@latest for its newest run) or a file written by `mcusim "
             "results --format json|csv|parquet -o FILE`. Where a set holds one point "
             "several times, its newest row counts. Exit 1 when a --fail-if rule is "
             "crossed (each crossing on one line on stderr), 0 otherwise.")
    cp.add_argument("base", metavar="BASE", help="the reference result set")
    cp.add_argument("new", metavar="NEW", help="the result set to check against BASE")
    cp.add_argument("--fail-if", metavar="RULE", action="append", default=[],
                    dest="fail_if",
                    help="exit 1 when crossed (repeatable): METRIC>+N%% (NEW above BASE by "
                         "more than N%%), METRIC>+N (by more than N, absolute), METRIC<-N%%, "
                         "METRIC<-N (below), e.g. 'cycles>+2%%', 'peak_ram_bytes>+0', "
                         "'test_acc<-0.01'; `fits` (a point that fit in BASE does not in "
                         "NEW); `missing` (a BASE point is not in NEW)")
    cp.add_argument("--where", metavar="SQL", default=None,
                    help="compare only the points matching this DuckDB SQL condition on the "
                         "columns, on both sides (e.g. \"kind = 'step' AND mcu = 'RP2040'\")")


def store_args(p: argparse.ArgumentParser, path_type: Callable[[str], str]) -> None:
    """--store and --where of the commands that read the results database."""
    p.add_argument("--store", metavar="FILE", type=path_type, default=None,
                   help="the results database (default: $MCUSIM_STORE, else "
                        "~/.local/share/mcusim/results.duckdb)")
    p.add_argument("--where", metavar="SQL", default=None,
                   help="a DuckDB SQL condition on the columns, e.g. \"mcu = 'RP2040' AND "
                        "fits\"")


# ----------------------------------------------------------------------------- results


def _columns(text: str | None) -> list[str] | None:
    from mcusim.results.store import NAMES

    if text is None:
        return None
    cols = [c.strip() for c in text.split(",") if c.strip()]
    if not cols:
        raise UsageError("--columns: no column named (columns: " + ", ".join(NAMES) + ")")
    bad = [c for c in cols if c not in NAMES]
    if bad:
        raise UsageError(f"--columns: unknown column(s) {', '.join(bad)} (columns: "
                         f"{', '.join(NAMES)})")
    return list(dict.fromkeys(cols))


def _limited(where: str | None, limit: int | None) -> str | None:
    """`where`, narrowed to the `limit` newest points."""
    from mcusim.results.store import TABLE

    if limit is None:
        return where
    inner = f"SELECT key FROM {TABLE}" + (f" WHERE ({where})" if where else "")
    return (f"key IN ({inner} ORDER BY created_at DESC NULLS LAST, key DESC "
            f"LIMIT {int(limit)})")


def cmd_results(args: argparse.Namespace) -> int:
    from mcusim.cli import _finite, stderr
    from mcusim.results.store import NAMES, default_store, open_store

    fmt = args.format or ("json" if args.json else "table")
    if args.json and fmt != "json":
        raise UsageError(f"--json and --format {fmt} ask for two formats: give one")
    if fmt == "parquet" and not args.output:
        raise UsageError("--format parquet writes a binary file: give -o FILE")
    columns = _columns(args.columns)
    path = Path(args.store).expanduser().absolute() if args.store else default_store()
    with open_store(path, read_only=True) as store:
        where = _limited(args.where, args.limit)
        if columns is None and fmt in ("csv", "parquet", "json"):
            columns = [n for n in NAMES if n != "detail" or args.detail]
        if fmt in ("csv", "parquet"):
            n = store.count(where)  # also checks --where before anything is written
            _export(store, fmt, where, columns, args.output)
            if args.output:
                _wrote(stderr, args.output, n)
            return 0
        query_cols = columns if fmt == "json" else [n for n in NAMES if n != "detail"]
        rows = store.query(where=where, columns=query_cols)
        total = store.count(args.where) if args.limit else len(rows)
    if fmt == "json":
        text = json.dumps(_finite({"store": str(path), "points": rows}), indent=2,
                          allow_nan=False, default=str) + "\n"
        _write_text(text, args.output)
    else:
        shown = columns or _summary(rows)
        if fmt == "markdown":
            from mcusim.render.results import markdown

            _write_text(markdown(rows, shown), args.output)
        else:
            _print_table(rows, shown, path, args, total)
    if args.output:
        _wrote(stderr, args.output, len(rows))
    return 0


def _summary(rows: list[dict[str, Any]]) -> list[str]:
    from mcusim.render.results import summary_columns

    return summary_columns(rows)


def _print_table(rows: list[dict[str, Any]], columns: list[str], path: Path,
                 args: argparse.Namespace, total: int) -> None:
    from rich.console import Console

    from mcusim.cli import stdout
    from mcusim.render.results import results_table, status_counts

    title = f"Results in {path}" + (f" where {args.where}" if args.where else "")
    footer = status_counts(rows)
    if args.limit and total > len(rows):
        footer += f" (the newest {len(rows)} of {total})"
    table = results_table(rows, columns, title, footer)
    if not args.output:
        stdout.print(table)
        return
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            Console(file=f, width=stdout.width, no_color=True, color_system=None,
                    force_terminal=False).print(table)
    except OSError as e:
        raise UsageError(f"-o {args.output}: cannot write it ({e.strerror})") from None


def _export(store: Any, fmt: str, where: str | None, columns: list[str] | None,
            output: str | None) -> None:
    """CSV or Parquet with DuckDB's COPY, to `output` or (CSV) to stdout."""
    if output:
        target = Path(output).expanduser()
        if target.is_dir():
            raise UsageError(f"-o {target}: is a directory")
        if not target.parent.is_dir():
            raise UsageError(f"-o {target}: no folder {target.parent}")
        store.export(target.absolute(), fmt, where=where, columns=columns)
        return
    with tempfile.TemporaryDirectory(prefix="mcusim-results-") as tmp:
        target = Path(tmp) / f"points.{fmt}"
        store.export(target, fmt, where=where, columns=columns)
        sys.stdout.flush()
        with open(target, encoding="utf-8") as f:
            shutil.copyfileobj(f, sys.stdout)
        sys.stdout.flush()


def _write_text(text: str, output: str | None) -> None:
    if not output:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(output).expanduser().write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"-o {output}: cannot write it ({e.strerror})") from None


def _wrote(console: Any, output: str, n: int) -> None:
    from rich.text import Text

    console.print(Text(f"mcusim: wrote {output} ({n} point{'s' if n != 1 else ''})"),
                  highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------- compare


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.text import Text

    from mcusim.cli import emit_json, stderr, stdout
    from mcusim.render.results import compare_view, violation_line
    from mcusim.results.compare import compare, load_result_set, parse_rule

    rules = [parse_rule(t) for t in args.fail_if]  # bad rules fail before any reading
    base = load_result_set(args.base, args.where)
    new = load_result_set(args.new, args.where)
    cmp = compare(base, new, rules)
    if args.json:
        emit_json(cmp.to_dict())
    else:
        stdout.print(compare_view(cmp))
    if base.points and not cmp.paired:
        stderr.print(Text("mcusim: warning: no point of BASE is in NEW (points pair by "
                          "match_key: same kind, model, MCU and settings)", style="yellow"),
                     highlight=False, soft_wrap=True)
    for v in cmp.violations:
        stderr.print(Text(f"mcusim: compare: {violation_line(v)}"), highlight=False,
                     soft_wrap=True)
    return 0 if cmp.ok else 1
