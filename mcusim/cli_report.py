"""`mcusim plot pareto` and `mcusim report`: figures and a self-contained HTML page of the
results database (the maths and drawing are in mcusim.results.pareto and .report)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def register(add: Callable[..., Any]) -> None:
    """Add this module's commands to the parser (`add` is cli.build_parser's)."""
    from mcusim.cli import _path
    from mcusim.cli_results import store_args

    pp = add("plot", cmd_plot, "figures of the results database (pareto)",
             "`plot pareto`: the Pareto front of each MCU (latency vs peak RAM by default; "
             "test accuracy as a third objective when every point that fits has it), as PNG "
             "and SVG. A point is on the front when no other point of its MCU that fits is "
             "as good on every objective and better on one; accuracies are maximized, "
             "everything else minimized. Points that do not fit are drawn as red x and "
             "never on the front; failed points are skipped.")
    pp.add_argument("what", choices=("pareto",), help="the figure: pareto")
    store_args(pp, _path)
    pp.add_argument("-o", "--out", metavar="DIR", type=_path, default="pareto",
                    help="folder for pareto-<MCU>.png and .svg (default: pareto)")
    pp.add_argument("--x", metavar="COLUMN", default="latency_ms",
                    help="x objective: a numeric column (default: latency_ms)")
    pp.add_argument("--y", metavar="COLUMN", default="peak_ram_bytes",
                    help="y objective: a numeric column (default: peak_ram_bytes)")

    rp = add("report", cmd_report, "a self-contained HTML page of the results",
             "Write one HTML file (no network needed: inline CSS, JS and SVG) with the "
             "points' provenance, the sweep's table (click a header to sort, type to "
             "filter), the Pareto front of each MCU and, per point, its layer x phase "
             "breakdown and memory table.")
    store_args(rp, _path)
    rp.add_argument("-o", "--out", metavar="FILE", type=_path, default="report.html",
                    help="the HTML file to write (default: report.html)")
    rp.add_argument("--title", default=None,
                    help="the page's title (default: mcusim results: STORE FILE NAME)")


def _rows(args: argparse.Namespace) -> tuple[Path, list[dict[str, Any]]]:
    from mcusim.errors import UsageError
    from mcusim.results.store import open_store

    with open_store(args.store, read_only=True) as st:
        rows = st.query(where=args.where)
        path = st.path
    if not rows:
        where = f" matching --where {args.where}" if args.where else ""
        raise UsageError(f"no points in {path}{where}")
    return path, rows


def cmd_plot(args: argparse.Namespace) -> int:
    from mcusim.cli import emit_json, stderr, stdout
    from mcusim.errors import UsageError
    from mcusim.results.pareto import (
        check_axis,
        front_data,
        mcu_fronts,
        require_matplotlib,
        write_pareto,
    )

    x, y = check_axis(args.x, "--x"), check_axis(args.y, "--y")
    if x == y:
        raise UsageError(f"--x and --y are both {x}: give two different columns")
    require_matplotlib()
    _, rows = _rows(args)
    fronts = mcu_fronts(rows, x, y)
    paths = write_pareto(fronts, args.out)
    notes = [f"{f.mcu}: {n}" for f in fronts for n in f.notes]
    if args.json:
        emit_json({"files": [str(p) for p in paths], "front": front_data(fronts),
                   "notes": notes})
        return 0
    for n in notes:
        stderr.print(f"note: {n}", highlight=False, soft_wrap=True)
    for f in fronts:
        stdout.print(f"{f.mcu}: {len(f.front)} on the front of {len(f.points)} drawn "
                     f"({', '.join(f'{s} {c}' for c, s in f.objectives)})", highlight=False)
    for p in paths:
        stdout.print(str(p), highlight=False, soft_wrap=True)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from mcusim.cli import emit_json, stdout
    from mcusim.errors import UsageError
    from mcusim.results.pareto import require_matplotlib
    from mcusim.results.report import render_report

    require_matplotlib()
    store, rows = _rows(args)
    title = args.title or f"mcusim results: {store.name}"
    text = render_report(rows, title=title, store=str(store))
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"-o {out}: is a directory (give the HTML file's name)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"-o {out}: cannot write it: {e.strerror}") from None
    if args.json:
        emit_json({"report": str(out), "points": len(rows)})
    else:
        stdout.print(f"{out} ({len(rows)} points, {len(text.encode()) // 1024} KB)",
                     highlight=False, soft_wrap=True)
    return 0
