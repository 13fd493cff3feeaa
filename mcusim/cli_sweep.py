"""`mcusim sweep`: run a grid of points on Dask into the results database; and `--store` of
the single commands (step, budget, train)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text


def _interval() -> float:
    """Seconds between plain progress lines (a log, a CI job): 5, or
    $MCUSIM_PROGRESS_INTERVAL (0: a line per point)."""
    try:
        v = float(os.environ.get("MCUSIM_PROGRESS_INTERVAL", "5"))
    except ValueError:
        return 5.0
    return v if v >= 0 else 5.0


def register(add: Callable[..., Any]) -> None:
    """Add `sweep` to the parser (`add` is cli.build_parser's)."""
    from mcusim.cli import _bounded_int, _path

    sp = add("sweep", cmd_sweep, "run a grid of models x MCUs x settings on Dask, store it",
             "Run every point of the grid a sweep file (TOML) declares: models (zoo names, "
             "model TOML, .onnx / .tflite), MCUs, --clock, λ, rounding, batch, toolchain, "
             "trainable layers, seeds, and what to run at each point (budget, step, train). "
             "Runs on Dask: a local cluster of processes (one per core) by default, or the "
             "cluster whose scheduler --scheduler names. Each kernel image is built once per "
             "toolchain x MCU and shipped to the workers. Every point goes into the results "
             "database as it finishes (one row per point: inputs, figures, provenance); "
             "points already stored are skipped, so an interrupted sweep continues where it "
             "stopped. A point that does not fit is stored as such with its budget figures; "
             "a point that fails is stored with its one-line error and the sweep goes on "
             "(exit 1 at the end). Example: examples/sweep.toml; docs/sweeps.md.")
    sp.add_argument("sweep_file", metavar="SWEEP.toml", type=_path, nargs="?",
                    help="the sweep file")
    sp.add_argument("--example", action="store_true",
                    help="print the example sweep file (commented) to start yours from: "
                         "mcusim sweep --example > my-sweep.toml")
    sp.add_argument("--scheduler", metavar="ADDRESS", default=None,
                    help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (its workers "
                         "need the same mcusim installed); default: a local cluster")
    sp.add_argument("--workers", type=_bounded_int(1024, "workers"), default=None,
                    metavar="N", help="local cluster: worker processes (default: one per "
                    "core); with --scheduler: wait for N workers (default 1)")
    store_arg(sp)
    sp.add_argument("--dry-run", action="store_true",
                    help="list the points (and which are already stored) without running")


def store_arg(p: argparse.ArgumentParser, single: bool = False) -> None:
    from mcusim.cli import _path

    p.add_argument("--store", metavar="FILE", default=None, type=_path,
                   help=("also store the result in this results database (DuckDB; `mcusim "
                         "results` reads it)" if single else
                         "the results database (DuckDB) to write; default: "
                         "$MCUSIM_STORE, else ~/.local/share/mcusim/results.duckdb"))


def cmd_sweep(args: argparse.Namespace) -> int:
    from mcusim.cli import PlainProgress, catalog_files, emit_json, stderr, stdout
    from mcusim.render.sweep import sweep_summary, sweep_table
    from mcusim.results.store import open_store
    from mcusim.sweep.config import load_sweep
    from mcusim.sweep.runner import new_run_id, require_dask

    if args.example:
        from mcusim.resources import data_dir

        sys.stdout.write((data_dir("examples") / "sweep.toml").read_text())
        return 0
    if not args.sweep_file:
        from mcusim.errors import UsageError

        raise UsageError("sweep: give SWEEP.toml (`mcusim sweep --example` prints one)")
    require_dask()  # the extra is missing: say so before the grid is expanded
    if args.scheduler:
        from mcusim.sweep.runner import check_scheduler

        check_scheduler(args.scheduler)
    plain = PlainProgress(stderr, interval=_interval())
    sweep = load_sweep(args.sweep_file, catalogs=catalog_files(args),
                       progress=None if stderr.is_terminal else plain)
    for note in sweep.notes:
        stderr.print(Text(f"mcusim: note: {note}", style="yellow"), highlight=False,
                     soft_wrap=True)
    run_id = new_run_id()
    with open_store(args.store) as store:
        if args.dry_run:
            stored = store.keys()
            rows = [{**_point_row(p), "status": "stored" if p.key in stored else "to run"}
                    for p in sweep.points]
            if args.json:
                emit_json({"sweep": sweep.name, "store": str(store.path), "points": rows})
            else:
                stdout.print(sweep_table(rows, f"sweep {sweep.name}: {len(rows)} points "
                                               "(dry run)"))
            return 0
        try:
            run = _run(sweep, store, args, run_id, plain)
        except KeyboardInterrupt:
            n = store.count(f"key IN ({_keys_sql(sweep.points)})")
            stderr.print(Text(f"mcusim: interrupted: {n} of {len(sweep.points)} points are "
                              f"stored in {store.path}; run the same command again to "
                              "continue (stored points are skipped)"), highlight=False,
                         soft_wrap=True)
            return 130
        rows = store.query(where=f"key IN ({_keys_sql(sweep.points)})",
                           columns=list(_TABLE_COLUMNS))
    order = {p.key: i for i, p in enumerate(sweep.points)}
    rows.sort(key=lambda r: order[r["key"]])  # the grid's order
    failed = [r for r in rows if r["status"] == "failed"]
    if args.json:
        d = run.to_dict()
        d.update(sweep=sweep.name, file=str(sweep.path), notes=sweep.notes, points=rows)
        emit_json(d)
    else:
        stdout.print(sweep_table(rows, f"sweep {sweep.name}: {len(rows)} points"))
        stdout.print(Text(sweep_summary(run)), highlight=False, soft_wrap=True)
    for r in failed:
        stderr.print(Text(f"mcusim: failed: {r['kind']} {r['model']} on {r['mcu']}: "
                          f"{r['error']}", style="red"), highlight=False, soft_wrap=True)
    return 1 if failed else 0


_TABLE_COLUMNS = ("key", "run_id", "kind", "model", "mcu", "core", "clock_hz", "lambda_min",
                  "lambda_max", "rounding", "batch_size", "toolchain", "seed", "status",
                  "error", "fits", "hypothetical", "cycles", "latency_ms", "energy_mj",
                  "peak_ram_bytes", "flash_bytes", "test_acc", "wall_s", "created_at")


def _keys_sql(points: Sequence[Any]) -> str:
    return ", ".join(f"'{p.key}'" for p in points)  # hex digests: nothing to escape


def _point_row(p: Any) -> dict[str, Any]:
    i = p.inputs
    return {"key": p.key, "kind": p.kind, "model": i["model"], "mcu": p.mcu.name,
            "clock_hz": i["clock_hz"], "lambda_min": i["lambda_min"],
            "lambda_max": i["lambda_max"], "rounding": i["rounding"],
            "batch_size": i["batch_size"], "toolchain": p.toolchain.kind, "seed": p.seed}


def _run(sweep: Any, store: Any, args: argparse.Namespace, run_id: str,
         plain: Any) -> Any:
    """The sweep with progress on stderr: a bar on a terminal, else `plain` lines (a
    PlainProgress: at most one per interval, and always for a phase and the last point)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from mcusim.cli import stderr
    from mcusim.render.sweep import progress_line
    from mcusim.sweep.runner import run_sweep

    if not stderr.is_terminal:

        def on_plain(state: Any) -> None:
            forced = state.message or state.remaining == 0
            (plain.line if forced else plain)(progress_line(state))

        return run_sweep(sweep.points, store, run_id=run_id, scheduler=args.scheduler,
                         workers=args.workers, progress=on_plain, build_progress=plain)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=stderr, transient=True) as prog:
        task = prog.add_task("starting", total=None)

        def on_tty(state: Any) -> None:
            prog.update(task, description=progress_line(state), total=state.to_run,
                        completed=state.done)

        return run_sweep(sweep.points, store, run_id=run_id, scheduler=args.scheduler,
                         workers=args.workers, progress=on_tty,
                         build_progress=lambda msg: prog.update(task, description=msg))


# ------------------------------------------------------------------ --store of single commands


def check_store(args: argparse.Namespace) -> None:
    """With `--store FILE`: open it (creating it) before any work, so a bad path or a file
    that is not a results database is one line at once, not after the simulation."""
    if getattr(args, "store", None):
        from mcusim.results.store import open_store

        open_store(args.store).close()


def store_results(args: argparse.Namespace, kind: str, mcus: Sequence[Any],
                  reports: Sequence[Any], *, dataset: str | None = None,
                  train_reports: Sequence[Any] | None = None) -> str | None:
    """With `--store FILE`: one row per MCU of a step / budget / train command (sweep =
    the command's name).  Returns the run id (None without --store)."""
    if not getattr(args, "store", None):
        return None
    from pathlib import Path

    from mcusim.results.store import open_store
    from mcusim.sweep.points import base_row, make_point, step_figures, train_figures
    from mcusim.sweep.runner import new_run_id
    from mcusim.toolchain import find_toolchain

    tc = find_toolchain(args.toolchain)
    model = str(Path(args.model).absolute()) if Path(args.model).is_file() else args.model
    settings = {"lambda_min": args.lambda_min, "lambda_max": args.lambda_max,
                "rounding": args.rounding, "update_rounding": args.update_rounding,
                "fc_gradient": args.fc_gradient, "batch_size": args.batch}
    run_id = new_run_id()
    with open_store(args.store) as store:
        for i, (mcu, report) in enumerate(zip(mcus, reports, strict=True)):
            pt = make_point(kind, model, mcu, tc, settings=settings,
                            train_last=args.train_last,
                            trainable=tuple(args.trainable) if args.trainable else None,
                            input_shape=getattr(args, "input_shape", None),
                            seed=getattr(args, "seed", 0), dataset=dataset,
                            epochs=getattr(args, "epochs", None),
                            baseline=getattr(args, "baseline", True),
                            energy=getattr(args, "energy", "chip"), sweep=kind)
            row = base_row(pt)
            step = step_figures(report)
            row.update(train_figures(train_reports[i], step) if train_reports else step)
            row.update(run_id=run_id, worker="this process")
            store.put(row)
    return run_id

