"""The `mcusim` command: parses arguments, calls the library, renders the results.

Conventions for every command: `--json` prints JSON and only JSON on stdout instead of
tables; progress, warnings and errors go to stderr.  Exit codes: 0 success, 1 the emulated
program faulted (or a check failed), 2 bad input or environment (one line on stderr), 3 an
internal error (mcusim's own bug, one line; MCUSIM_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from mcusim import __version__
from mcusim.catalog import (
    CORE_KEYS,
    ENERGY_BASES,
    ENERGY_BASIS_CHIP,
    MAX_CLOCK_HZ,
    MAX_WAIT_STATES,
    Catalog,
    Mcu,
    load_catalog,
    mcu_template,
)
from mcusim.errors import CheckFailed, InternalError, McusimError, ToolchainError, UsageError
from mcusim.render import console as render
from mcusim.render.layout import esc
from mcusim.resources import check_installation


def _console(err: bool = False) -> Console:
    """Tables at their natural width when piped (rich assumes 80 columns there)."""
    probe = Console(stderr=err)
    if probe.is_terminal or os.environ.get("COLUMNS"):
        return probe
    return Console(stderr=err, width=160)


stdout = _console()
stderr = _console(err=True)


PROGRESS_INTERVAL_S = 5.0


class PlainProgress:
    """Progress for a stderr that is not a terminal (a log, a CI job, `2> file`): plain
    lines, no spinner.  A message is printed when its kind (first word: compile, link,
    epoch, ...) differs from the last printed one, else at most every `interval` seconds."""

    def __init__(self, console: Console, interval: float = PROGRESS_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.interval = interval
        self.clock = clock
        self.start = clock()
        self.last_time: float | None = None
        self.last_kind: str | None = None

    def __call__(self, msg: str) -> None:
        now = self.clock()
        kind = msg.split(" ", 1)[0]
        if (self.last_time is not None and kind == self.last_kind
                and now - self.last_time < self.interval):
            return
        self.last_time, self.last_kind = now, kind
        self.line(msg)

    def line(self, msg: str) -> None:
        """Print unconditionally (elapsed host time in front)."""
        self.console.print(Text(f"mcusim: [{self.clock() - self.start:4.0f} s] {msg}"),
                           highlight=False, soft_wrap=True)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """Progress on stderr (also with --json: stdout stays pure JSON): a spinner showing the
    latest step on a terminal, rate-limited plain lines otherwise; no-op when disabled."""
    if not enabled:
        yield lambda _msg: None
        return
    if not stderr.is_terminal:
        yield PlainProgress(stderr)
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=stderr, transient=True) as prog:
        task = prog.add_task("starting", total=None)
        yield lambda msg: prog.update(task, description=msg)


def _prebuild(tc: Any, mcus: Sequence[Any], progress: Callable[[str], None]) -> None:
    """Build (or find in the cache) the kernel images the command will use, reporting each
    compile and link step: a cold build takes seconds with gcc and longer with zig."""
    from mcusim.toolchain import Builder

    builder = Builder(tc, progress=progress)
    for mcu in mcus:
        builder.build(mcu.core, [mcu])


def emit_json(data: Any) -> None:
    """Valid JSON always: NaN and infinities (a diverged loss, say) become null."""
    sys.stdout.write(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _finite(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if hasattr(x, "item") and getattr(x, "shape", None) == ():  # numpy scalars
        return _finite(x.item())
    return x


_NEGATIVE_ARGS = re.compile(r"-[0-9][0-9a-fA-FxXbB_]*(\s*,\s*-?[0-9][0-9a-fA-FxXbB_]*)*")


def _join_negative_values(argv: list[str]) -> list[str]:
    """`--args -5,-1`: argparse takes a value starting with '-' for an option unless it is
    one plain negative number; join such lists to `--args=-5,-1` first."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--args" and i + 1 < len(argv) and _NEGATIVE_ARGS.fullmatch(argv[i + 1]):
            out.append(f"--args={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def catalog_files(args: argparse.Namespace) -> list[str]:
    """Every --catalog FILE, before and after the command, in command-line order."""
    return [*(getattr(args, "catalog", None) or []),
            *(getattr(args, "catalog_after", None) or [])]


def _catalog(args: argparse.Namespace) -> Catalog:
    """The built-in catalog extended by every --catalog FILE, in command-line order."""
    return load_catalog(user_catalogs=catalog_files(args))


# --------------------------------------------------------------------------- commands


def cmd_mcus(args: argparse.Namespace) -> int:
    if args.template:  # plain text: rich would eat the [[mcu]] headers as markup
        if args.json:
            emit_json({"template": mcu_template()})
        else:
            sys.stdout.write(mcu_template())
        return 0
    cat = _catalog(args)
    mcus = list(cat.mcus.values())
    if args.core:
        mcus = [m for m in mcus if m.core.key == args.core]
    mcus = _at_clock(args, mcus, skip_unsupported=True)
    if args.json:
        emit_json({"mcus": [{**m.to_dict(), "user_file": cat.user_files.get(m.name)}
                            for m in mcus], "sources": cat.source_texts,
                   "energy_basis": ENERGY_BASIS_CHIP})
    else:
        from dataclasses import replace

        shown = [replace(m, name=f"{m.name} (user)" if m.name in cat.user_files else m.name)
                 for m in mcus]  # the renderer escapes names and boards
        stdout.print(render.mcu_table(shown, wide=args.wide or stdout.width >= 150))
        stdout.print("[dim]* unconfirmed figure (see `mcusim mcus --json` for sources and "
                     "notes)[/dim]")
        files = sorted({cat.user_files[m.name] for m in mcus if m.name in cat.user_files})
        if files:
            stdout.print(Text(f"(user) figures provided by you, in {', '.join(files)}: "
                              "not checked against a datasheet", style="dim"), soft_wrap=True)
    return 0


def _region_hint(msg: str, mcus: list, cat) -> str:
    """A link error that overflows a region of an MCU from the user's catalog file: the
    message names the file (the region's size is the user's to change)."""
    if "overflowed by" not in msg and "will not fit in region" not in msg:
        return msg
    for m in mcus:
        if f"for {m.name} " in msg and m.name in cat.user_files:
            return (f"{msg} ({m.name} from {cat.user_files[m.name]}: its code region "
                    f"{m.code_region} is too small for mcusim's kernels)")
    return msg


def cmd_build(args: argparse.Namespace) -> int:
    from mcusim.toolchain import Builder, find_toolchain

    cat = _catalog(args)
    tc = find_toolchain(args.toolchain)
    cores = list(CORE_KEYS) if args.core == "all" else [args.core]
    targets = [cat.mcu(n) for n in args.mcu] if args.mcu else None
    results = []
    with progress_bar() as progress:
        builder = Builder(tc, progress=progress)
        for key in cores:
            core = cat.core(key)
            mcus = [m for m in (targets or cat.mcus_of_core(key)) if m.core.key == key]
            if mcus:
                try:
                    results += builder.build(core, mcus)
                except ToolchainError as e:
                    raise ToolchainError(_region_hint(str(e), mcus, cat)) from None
    if not results:
        raise UsageError("nothing to build: the chosen MCUs do not have the chosen core")
    if args.print_path:
        for r in results:
            sys.stdout.write(r.elf + "\n")
        return 0
    if args.json:
        emit_json({"toolchain": tc.kind, "toolchain_version": tc.version,
                   "cache_dir": str(builder.cache_dir),
                   "images": [r.to_dict() for r in results]})
    else:
        stdout.print(render.build_table(results, tc))
        stdout.print(render.build_paths(results), soft_wrap=True, highlight=False)
    return 0


def parse_args_list(text: str | None) -> list[int]:
    """'1,2,0x20000000,-5' -> ints; a clear UsageError for anything else."""
    if text is None or not text.strip():
        return []
    out = []
    for i, tok in enumerate(text.split(","), start=1):
        tok = tok.strip()
        try:
            value = int(tok, 0)
        except ValueError:
            raise UsageError(f"--args: argument {i} ({tok!r}) is not an integer "
                             "(decimal, 0x hex, 0b binary)") from None
        if not -(1 << 31) <= value < (1 << 32):
            raise UsageError(f"--args: argument {i} ({tok}) does not fit in 32 bits")
        out.append(value)
    from mcusim.machine import MAX_ARGS

    if len(out) > MAX_ARGS:
        raise UsageError(f"--args: too many arguments ({len(out)}; at most {MAX_ARGS})")
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from mcusim.elf import ElfImage
    from mcusim.machine import Machine

    cat = _catalog(args)
    call_args = parse_args_list(args.args)
    mcu = _at_clock(args, [cat.mcu(args.mcu).with_energy(args.energy)])[0]
    image = ElfImage.open(args.elf)
    image.function(args.function)  # unknown names fail before any set-up
    if (args.window_from is None) != (args.window_to is None):
        raise UsageError("--from and --to go together: the window starts at one and ends at "
                         "the other")
    window = None
    if args.window_from is not None:
        window = (_code_address(image, args.window_from, "--from"),
                  _code_address(image, args.window_to, "--to"))
    machine = Machine(mcu, image, budget=args.budget, flash_data=args.flash_data or None)
    if window is not None:
        machine.set_window(*window)
    if args.warm:
        machine.call(args.function, *call_args)
    result = machine.call(args.function, *call_args)
    timing = machine.cycles(result)
    data = {
        "elf": str(args.elf),
        "function": result.function,
        "address": result.address,
        "args": call_args,
        "mcu": mcu.name,
        "core": mcu.core.key,
        "clock_hz": mcu.clock_hz,
        "return": result.return_value,
        "return_signed": result.return_signed,
        "instructions": result.instructions,
        "stack_bytes": result.stack_bytes,
        "budget": args.budget,
        "producer": image.producer,
        "warm": bool(args.warm),
        "tracer": result.tracer,
    }
    data.update(timing.to_dict())
    if machine.scs is not None and (machine.scs.state.reads or machine.scs.state.writes):
        data["system_control_space"] = machine.scs.summary()
    if window is not None:
        spans = [b - a for a, b in machine.windows]
        data["window"] = {
            "from": window[0], "to": window[1], "count": len(spans),
            "cycles": spans[:1000], "first": spans[0] if spans else None,
            "min": min(spans, default=None), "max": max(spans, default=None),
            "total": sum(spans),
            "latency_ms": spans[0] / mcu.clock_hz * 1e3 if spans else None}
    if args.json:
        emit_json(data)
    else:
        stdout.print(render.run_table(data, mcu))
        stdout.print(render.class_table(data))
    if window is not None and not machine.windows:
        raise CheckFailed(f"the window never closed: {args.window_from} (0x{window[0]:08x}) "
                          f"was not followed by {args.window_to} (0x{window[1]:08x}) in "
                          f"{result.function}")
    return 0


def _code_address(image: Any, text: str, option: str) -> int:
    """SYMBOL, SYMBOL+OFFSET or an address (0x hex or decimal) of an instruction of the
    image's code."""
    name, _, off = text.partition("+")
    try:
        if off:
            offset = int(off, 0)
        else:
            offset = 0
        address = int(name, 0) if name[:1].isdigit() else image.function(name).address
    except ValueError:
        raise UsageError(f"{option} {text!r}: give a function symbol, SYMBOL+OFFSET or an "
                         "address (0x...)") from None
    address = (address + offset) & ~1
    if not any(seg.vaddr <= address < seg.end and seg.flags & 1  # PF_X
               for seg in image.segments):
        raise UsageError(f"{option} {text!r}: 0x{address:08x} is not in the image's code")
    return address


def cmd_cost_model(args: argparse.Namespace) -> int:
    from mcusim.timing.table import load_table

    table = load_table(_core_key(args.core))
    if args.json:
        emit_json({"core": table.core, "title": table.title, "version": table.version,
                   "file": str(table.path), "classes": [c.to_dict()
                                                        for c in table.classes.values()],
                   "parameters": table.parameters, "sources": table.sources})
        return 0
    stdout.print(render.cost_table(table))
    stdout.print(render.parameter_table(table))
    stdout.print(render.sources_table(table))
    return 0


def _core_key(text: str) -> str:
    """m0plus / m4 / m7, also from 'M0+', 'cortex-m4', 'Cortex-M7'."""
    t = text.strip().lower().replace("cortex-", "").replace("cortex_", "").replace("+", "plus")
    if t in ("m0plus", "m4", "m7"):
        return t
    raise UsageError(f"unknown core {text!r}: choose m0plus, m4 or m7")


def cmd_bench(args: argparse.Namespace) -> int:
    from mcusim.bench import run_bench
    from mcusim.toolchain import find_toolchain

    cat = _catalog(args)
    tc = find_toolchain(args.toolchain)
    with progress_bar() as progress:
        rows = run_bench(cat, tc, repeats=args.repeat, progress=progress)
    if args.json:
        emit_json({"toolchain": f"{tc.kind} {tc.version}", "repeats": args.repeat,
                   "rows": [r.to_dict() for r in rows],
                   "cores": {r.core: {"mcu": r.mcu, "untraced_mips": r.untraced_mips,
                                      "traced_mips": r.traced_mips, "ratio": r.ratio}
                             for r in rows if not r.flash_data}})  # code-only rows
    else:
        stdout.print(render.bench_table(rows, tc))
    return 0


DEMO_TRAIN_MCU = "nRF52840"
DEMO_EPOCHS = 3


def cmd_demo(args: argparse.Namespace) -> int:
    from mcusim.analyze import simulate_step
    from mcusim.demo import PAPER_BOARDS, run_demo
    from mcusim.fqt.datasets import load_dataset
    from mcusim.fqt.train import train_fqt
    from mcusim.model.zoo import load_model
    from mcusim.render import step as render_step
    from mcusim.render import train as render_train
    from mcusim.toolchain import find_toolchain

    cat = _catalog(args)
    boards = {n: cat.mcu(n).with_energy(args.energy) for n in (*PAPER_BOARDS, DEMO_TRAIN_MCU)}
    tc = find_toolchain(args.toolchain)
    with progress_bar() as progress:
        runs = run_demo(cat, tc, progress)
        reports = []
        for name in PAPER_BOARDS:
            progress(f"digits-cnn training step on {name}")
            reports.append(simulate_step("digits-cnn", boards[name], toolchain=tc))
        progress(f"training digits-cnn on digits for {DEMO_EPOCHS} epochs")
        training = train_fqt(load_model("digits-cnn"), load_dataset("digits"),
                             boards[DEMO_TRAIN_MCU], tc, epochs=DEMO_EPOCHS,
                             progress=lambda what, done, total: progress(
                                 f"training digits-cnn: {what} {done:,}/{total:,} samples"))
    ok = all(r.bit_exact for r in runs)
    if args.json:
        emit_json({"toolchain": tc.kind, "toolchain_version": tc.version, "bit_exact": ok,
                   "model": "digits-cnn", "reports": [r.to_dict() for r in reports],
                   "training": training.to_dict(), "runs": [r.to_dict() for r in runs]})
    else:
        stdout.print(render_step.summary_table(reports))
        stdout.print(render_step.phase_table(reports))
        stdout.print(render_step.memory_table(reports))
        stdout.print(render_train.summary_table(training, f"{tc.kind} {tc.version}"))
        stdout.print(render.demo_table(runs, tc))
    return 0 if ok else 1


def _load_spec(args: argparse.Namespace):
    """MODEL: a zoo name, a model TOML, or an ONNX / TFLite file (imported on the fly into
    the cache), with --train-last / --trainable applied."""
    from mcusim.model.select import load_spec

    return load_spec(args.model, input_shape=getattr(args, "input_shape", None),
                     train_last=getattr(args, "train_last", None),
                     trainable=getattr(args, "trainable", None))


def _spec_with(args: argparse.Namespace):
    """The model with the command line's training settings applied."""
    from mcusim.model.select import apply_train

    return apply_train(_load_spec(args), lambda_min=getattr(args, "lambda_min", None),
                       lambda_max=getattr(args, "lambda_max", None),
                       rounding=getattr(args, "rounding", None),
                       update_rounding=getattr(args, "update_rounding", None),
                       fc_gradient=getattr(args, "fc_gradient", None),
                       batch_size=getattr(args, "batch", None))


def cmd_step(args: argparse.Namespace) -> int:
    from mcusim.analyze import simulate_step
    from mcusim.cli_sweep import check_store, store_results
    from mcusim.render import step as render_step
    from mcusim.toolchain import find_toolchain

    check_store(args)
    cat = _catalog(args)
    # unknown names and missing board figures fail before any work
    mcus = _at_clock(args, [cat.mcu(n).with_energy(args.energy) for n in args.mcu])
    spec = _spec_with(args)
    data = None
    if args.dataset:
        from mcusim.fqt.datasets import check_fits, load_dataset

        data = load_dataset(args.dataset, seed=args.seed, value_range=spec.input_range)
        check_fits(data, spec.input_shape, spec.classes, spec.name)
    tc = find_toolchain(args.toolchain)
    reports = []
    with progress_bar() as progress:
        _prebuild(tc, mcus, progress)
        for mcu in mcus:
            progress(f"{spec.name}: one training step on {mcu.name}")
            reports.append(simulate_step(spec, mcu, toolchain=tc, seed=args.seed, data=data,
                                         hypothetical=True))
    store_results(args, "step", mcus, reports, dataset=args.dataset)
    if args.json:
        emit_json(reports[0].to_dict() if len(reports) == 1 else
                  {"reports": [r.to_dict() for r in reports]})
    else:
        stdout.print(render_step.summary_table(reports))
        if any(r.rows for r in reports):
            stdout.print(render_step.phase_table([r for r in reports if r.rows]))
        stdout.print(render_step.memory_table(reports))
        for r in reports:
            for problem in r.problems:
                stderr.print(f"[red]{esc(r.mcu)}: does not fit[/red]: {esc(problem)}",
                             soft_wrap=True, highlight=False)
            if r.hypothetical:
                stderr.print(Text(f"{r.mcu}: {r.assumptions[0]}", style="yellow"),
                             soft_wrap=True, highlight=False)
    return 0 if all(r.fits for r in reports) else 1


def cmd_train(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from mcusim.cli_sweep import check_store
    from mcusim.fqt.datasets import check_fits, load_dataset
    from mcusim.fqt.train import parse_classes, pretrain_float, train_fqt
    from mcusim.render import train as render_train
    from mcusim.toolchain import find_toolchain

    check_store(args)
    cat = _catalog(args)
    mcu = _at_clock(args, [cat.mcu(_one_mcu(args, "train")).with_energy(args.energy)])[0]
    spec = _spec_with(args)
    if spec.loss == "mse":
        raise UsageError(f"train: {spec.name} has loss \"mse\" (an autoencoder); train "
                         "reports classification accuracy and needs a classifier. step, "
                         "budget, verify and profile take it")
    lr = {k: v for k, v in (("learning_rate", args.lr), ("lr_final", args.lr_final))
          if v is not None}
    if lr:
        spec = spec.with_train(**lr)
    if args.plot:  # an extra: say so before training, not after
        from mcusim.render.plots import require_matplotlib

        require_matplotlib()
    data = load_dataset(args.dataset, seed=args.seed, value_range=spec.input_range)
    check_fits(data, spec.input_shape, spec.classes, spec.name)
    tc = find_toolchain(args.toolchain)
    net = pretrain = None
    # progress and the per-epoch lines go to stderr also with --json or a pipe: a bar on a
    # terminal, rate-limited plain lines otherwise
    plain = None if stderr.is_terminal else PlainProgress(stderr)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=stderr, transient=True,
                  disable=plain is not None) as prog:
        task = prog.add_task("starting", total=None)

        def progress(what: str, done: int, total: int) -> None:
            desc = f"epoch {state['epoch']}: {what}"
            if plain is not None:
                plain(f"{desc} {done:,}/{total:,} samples")
            else:
                prog.update(task, description=desc, completed=done, total=total)

        state = {"epoch": 1}
        if plain is not None:
            _prebuild(tc, [mcu], plain)
        else:
            _prebuild(tc, [mcu], lambda msg: prog.update(task, description=msg))
        if args.pretrain:
            classes = parse_classes(args.pretrain_classes, spec.classes)
            what = f"float32 pre-training on classes {classes}"
            if plain is not None:
                plain(what)
            else:
                prog.update(task, description=what)
            net, pretrain = pretrain_float(spec, data, args.pretrain, classes, seed=args.seed)

        def on_epoch(rec) -> None:
            state["epoch"] = rec.epoch + 1
            stderr.print(Text(render_train.epoch_line(rec, mcu)), highlight=False,
                         soft_wrap=True)

        report = train_fqt(spec, data, mcu, tc, epochs=args.epochs, engine=args.engine,
                           seed=args.seed, baseline=args.baseline, net=net, pretrain=pretrain,
                           baseline_update=args.baseline_update,
                           baseline_lr=args.baseline_lr or None, progress=progress,
                           on_epoch=on_epoch)
    if getattr(args, "store", None):  # the row's memory and step figures: one step
        from mcusim.analyze import simulate_step
        from mcusim.cli_sweep import store_results

        step = simulate_step(spec, mcu, toolchain=tc, seed=args.seed, hypothetical=True)
        store_results(args, "train", [mcu], [step], dataset=args.dataset,
                      train_reports=[report])
    paths = []
    if args.plot:
        from mcusim.render.plots import training_plots

        paths = training_plots(report, args.plot)
    if args.json:
        d = report.to_dict()
        d["plots"] = [str(p) for p in paths]
        emit_json(d)
    else:
        stdout.print(render_train.summary_table(report, f"{tc.kind} {tc.version}"))
        for p in paths:
            stdout.print(Text(f"plot: {p}"), highlight=False, soft_wrap=True)
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from mcusim.profile import profile_call, profile_step, resolve_source_dirs
    from mcusim.render import profile as render_profile
    from mcusim.render.exports import write_exports

    dirs = resolve_source_dirs(args.source_dir)
    cat = _catalog(args)
    mcu = _at_clock(args, [cat.mcu(_one_mcu(args, "profile"))])[0]
    if args.elf:
        from mcusim.elf import ElfImage
        from mcusim.machine import Machine

        if not args.function:
            raise UsageError("profile --elf needs --function NAME")
        image = ElfImage.open(args.elf)
        image.function(args.function)
        machine = Machine(mcu, image, budget=args.budget)
        prof = profile_call(machine, args.function, *parse_args_list(args.args),
                            warm=args.warm, source_dirs=dirs)
        compiler = image.producer or None
    else:
        if not args.model:
            raise UsageError("profile: give MODEL (zoo name or TOML) or --elf FILE")
        from mcusim.toolchain import find_toolchain

        spec = _spec_with(args)
        data = None
        if args.dataset:
            from mcusim.fqt.datasets import check_fits, load_dataset

            data = load_dataset(args.dataset, value_range=spec.input_range)
            check_fits(data, spec.input_shape, spec.classes, spec.name)
        tc = find_toolchain(args.toolchain)
        compiler = f"{tc.kind} {tc.version}"
        with progress_bar() as progress:
            _prebuild(tc, [mcu], progress)
            progress(f"profiling {spec.name} on {mcu.name}")
            prof, _report = profile_step(spec, mcu, toolchain=tc, phase=args.phase, data=data,
                                         source_dirs=dirs)
    if args.annotate and args.annotate not in prof.functions:
        raise UsageError(f"--annotate: {args.annotate!r} ran no cycles in this profile "
                         f"(hot functions: {', '.join(f for f, _ in prof.top_functions(5))})")
    for note in prof.notes:  # e.g. an unreadable DWARF line table: the profile goes on
        stderr.print(Text(f"mcusim: warning: {note}", style="yellow"), highlight=False,
                     soft_wrap=True)
    paths = write_exports(prof, args.callgrind, args.speedscope, args.chrome_trace)
    if args.json:
        d = prof.to_dict(args.top)
        d["exports"] = [str(p) for p in paths]
        emit_json(d)
        return 0
    view = {"function": render_profile.function_table, "line": render_profile.line_table,
            "block": render_profile.block_table, "class": render_profile.class_table}
    stdout.print(view[args.by](prof, args.top, compiler))
    if args.by == "function" and prof.tree:
        stdout.print(render_profile.call_tree(prof, min(args.top, 8), compiler))
    if args.annotate:
        stdout.print(render_profile.annotate(prof, args.annotate))
    for p in paths:
        stdout.print(Text(f"wrote {p}"), highlight=False, soft_wrap=True)
    return 0


def cmd_budget(args: argparse.Namespace) -> int:
    from mcusim.analyze import simulate_step
    from mcusim.cli_sweep import check_store, store_results
    from mcusim.toolchain import find_toolchain

    check_store(args)
    cat = _catalog(args)
    if args.all_mcus:
        mcus = _at_clock(args, list(cat.mcus.values()), skip_unsupported=True)
    elif args.mcu:
        mcus = _at_clock(args, [cat.mcu(n) for n in args.mcu])
    else:
        raise UsageError("budget: give --mcu MCU (repeatable) or --all-mcus")
    from mcusim.model.select import budget_spec

    spec = budget_spec(_spec_with(args))
    tc = find_toolchain(args.toolchain)
    out = []
    reports = []
    with progress_bar() as progress:
        _prebuild(tc, mcus, progress)
        for mcu in mcus:
            progress(f"{spec.name}: budget on {mcu.name}")
            r = simulate_step(spec, mcu, toolchain=tc, hypothetical=True)
            reports.append(r)
            short_flash = max(0, r.flash_bytes - r.flash_budget)
            out.append({"mcu": mcu.name, "core": mcu.core.key, "fits": r.fits,
                        "peak_ram_bytes": r.peak_ram_bytes, "ram_budget_bytes": r.ram_budget,
                        "ram_region": r.ram_region, "flash_bytes": r.flash_bytes,
                        "flash_budget_bytes": r.flash_budget,
                        "ram_shortfall_bytes": r.ram_shortfall,
                        "ram_headroom_bytes": r.ram_headroom,
                        "flash_shortfall_bytes": short_flash, "reason": r.reason,
                        "unplaced": [u.to_dict() for u in r.unplaced],
                        "placement": [b.to_dict() for b in r.placement.banks]
                        if r.placement else [],
                        "hypothetical": r.hypothetical,
                        "virtual_bank_bytes": r.virtual_bank_bytes, "cycles": r.cycles,
                        "latency_ms": r.latency_ms, "energy_mj": r.energy_mj,
                        "stack_bytes": r.stack_bytes, "ram": r.ram, "flash": r.flash,
                        "biggest": [{"part": p, "bytes": n}
                                    for p, n in r.biggest_consumers()],
                        "problems": r.problems, "hints": r.hints})
    store_results(args, "budget", mcus, reports)
    fits = [o for o in out if o["fits"]]
    if args.json:
        emit_json({"model": spec.name, "fits_any": bool(fits), "results": out}
                  if len(out) > 1 else {"model": spec.name, **out[0]})
    else:
        stdout.print(render.budget_table(spec.name, out, f"{tc.kind} {tc.version}"))
        for o in out:
            if not o["fits"]:  # one line each: why, and the cost as if the RAM existed
                why = o["reason"] or "; ".join(o["problems"])
                if o["hypothetical"]:
                    ms = o["latency_ms"]
                    why += (f"; hypothetical, as if RAM existed (+{o['virtual_bank_bytes']:,} "
                            "B virtual bank): "
                            + (f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.3g} ms")
                            + f", {o['energy_mj']:.3g} mJ per sample")
                stderr.print(Text(f"{spec.name} does not fit {o['mcu']}: {why}"),
                             highlight=False, soft_wrap=True)
    if len(out) == 1:
        return 0 if out[0]["fits"] else 1
    return 0 if fits else 1


def cmd_import(args: argparse.Namespace) -> int:
    from mcusim.model.writer import check_source, import_file, write_imported

    check_source(args.source)  # a wrong file: its one line, before any progress
    with progress_bar() as progress:
        progress(f"importing {Path(args.source).name}")
        imp = import_file(args.source, input_shape=args.input_shape)
        written = write_imported(imp, args.output, args.name, train_last=args.train_last,
                                 trainable=args.trainable, input_range=args.input_range,
                                 calibration=args.calibration)
        quality = None
        if args.check:
            progress(f"{written.spec.name}: FQT forward vs the reference on {args.check} "
                     "random inputs")
            quality = _import_quality(args.source, written.spec, args.check)
    data = written.to_dict()
    data["quality"] = quality.to_dict() if quality else None
    if args.json:
        emit_json(data)
    else:
        stdout.print(render.import_table(data))
        if quality:
            stdout.print(Text(render.quality_line(data["quality"], written.spec.loss,
                                                  imp.quantized)),
                         highlight=False, soft_wrap=True)
        stdout.print(Text(f"wrote {written.toml} and {written.weights}; try: mcusim budget "
                          f"{written.toml} --mcu nRF52840 --train-last 1"),
                     highlight=False, soft_wrap=True)
    return 0


def _import_quality(source: str, spec, n: int):
    """FQT forward of the imported model vs the original file in its reference runtime
    (onnxruntime / LiteRT) on n random inputs over the input range; vs mcusim's float
    reference when the runtime is not installed."""
    from mcusim.model.quality import forward_quality, random_inputs

    runtime = None
    try:
        from mcusim.model.reference_runtime import run_reference

        run_reference(source, random_inputs(spec, 1)[0])
        runtime = lambda x: run_reference(source, x)  # noqa: E731
    except UsageError:  # the runtime is not installed: compare with the float reference
        pass
    return forward_quality(spec, random_inputs(spec, n), runtime=runtime)


def cmd_verify(args: argparse.Namespace) -> int:
    from mcusim.fqt.verify import run_verify
    from mcusim.toolchain import find_toolchain

    cat = _catalog(args)
    mcu = _at_clock(args, [cat.mcu(_one_mcu(args, "verify"))])[0]
    spec = _spec_with(args)
    tc = find_toolchain(args.toolchain)
    steps = args.steps if args.steps is not None else 2 * spec.train.batch_size
    with progress_bar() as progress:
        _prebuild(tc, [mcu], progress)
        rep = run_verify(spec, mcu, tc, steps, seed=args.seed,
                         progress=lambda done, total: progress(
                             f"verify {spec.name} on {mcu.name}: sample {done}/{total}"))
    data = rep.to_dict()
    if args.json:
        emit_json(data)
    else:
        stdout.print(render.verify_table(rep, mcu, spec.train.lambda_min,
                                         spec.train.lambda_max, f"{tc.kind} {tc.version}"))
    return 0 if rep.bit_exact else 1


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `mcusim step: error: …` and where to read more."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mcusim",
        description="Simulate fully quantized on-device training on Cortex-M MCUs: real "
                    "compiled Thumb-2 kernels in Unicorn, on the MCU's memory map.",
        epilog="`mcusim COMMAND --help` explains each command. Exit codes: 0 ok, 1 the "
               "emulated code faulted or a check failed, 2 bad input, 3 internal error "
               "(mcusim's own bug: please report it).")
    p.add_argument("--version", action="version", version=f"mcusim {__version__}")
    p.add_argument("--catalog", metavar="FILE", action="append", default=None, type=_path,
                   help="your MCUs (TOML, `mcusim mcus --template`): extend the built-in "
                        "catalog, same names replace built-in entries; repeatable (later "
                        "files win), also after the command")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str,
            desc: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=desc)
        sp.add_argument("--json", action="store_true",
                        help="print JSON (only JSON) on stdout instead of tables")
        # also after the command; its own dest, or the subparser would drop earlier files
        sp.add_argument("--catalog", metavar="FILE", action="append", dest="catalog_after",
                        type=_path,
                        default=argparse.SUPPRESS,
                        help="your MCUs (TOML): extend the built-in catalog (repeatable)")
        sp.set_defaults(func=fn)
        return sp

    from mcusim.cli_sweep import store_arg

    dp = add("demo", cmd_demo, "a digits-cnn training step on the paper's three boards",
        "Build the FQT kernels for Cortex-M0+, M4 and M7 and simulate one training step "
        "(a mini-batch) of digits-cnn on RP2040, nRF52840 and i.MX RT1062 side by side: "
        "latency, energy, peak RAM and flash with the budget verdicts; then a short FQT "
        "training run on scikit-learn's digits with the float32 baseline and the device "
        "time per epoch; plus a uint8 FC layer checked byte for byte against the numpy "
        "twin.")
    dp.add_argument(
        "--toolchain", choices=("gcc", "zig"), default=None,
        help="cross compiler (default: gcc if arm-none-eabi-gcc is on PATH, else zig)")
    _energy_arg(dp)

    mp = add("mcus", cmd_mcus, "list the MCU catalog",
             "List the MCUs of the catalog: core, clock, memory, wait states, energy "
             "figures. `--json` includes every figure's source.")
    mp.add_argument("--core", choices=CORE_KEYS, help="only MCUs with this core")
    mp.add_argument("--wide", action="store_true",
                    help="also show the board and the RAM regions")
    mp.add_argument("--template", action="store_true",
                    help="print a commented [[mcu]] entry to start your own catalog from "
                         "(use it with --catalog FILE)")
    _clock_args(mp)

    bp = add("build", cmd_build, "compile kernels/ for cores and link them per MCU",
             "Compile kernels/ for the core(s) and link one image per MCU of that core "
             "(or per --mcu) with a linker script made from its memory map. Results are "
             "cached by sources + toolchain + flags + memory map; only changes rebuild.")
    bp.add_argument("--core", choices=(*CORE_KEYS, "all"), default="all",
                    help="core to build for (default: all)")
    bp.add_argument("--mcu", action="append", metavar="MCU",
                    help="link only for this MCU (repeatable; default: every MCU of the core)")
    bp.add_argument("--toolchain", choices=("gcc", "zig"), default=None,
                    help="cross compiler (default: gcc if on PATH, else zig)")
    bp.add_argument("--print-path", action="store_true",
                    help="print only the path of each linked ELF, one per line (for "
                         "scripts: mcusim run \"$(mcusim build --mcu RP2040 --print-path)\" "
                         "...)")

    rp = add("run", cmd_run, "run one function of any Cortex-M ELF on an MCU",
             "Load a little-endian ARM ELF (mcusim's kernels or your own firmware) into "
             "the MCU's memory map, call FUNCTION with --args per the AAPCS and report r0, "
             "instructions executed, peak stack use (stack painting), cycles and latency at "
             "the MCU's clock from the core's cost model, and cycles per instruction class.")
    rp.add_argument("elf", metavar="ELF", help="the ELF file")
    rp.add_argument("--function", "-f", required=True, metavar="NAME",
                    help="function symbol to call")
    rp.add_argument("--mcu", "-m", required=True, metavar="MCU",
                    help="MCU from the catalog (`mcusim mcus`)")
    rp.add_argument("--args", metavar="A,B,...", default=None,
                    help="comma-separated integer arguments (decimal or 0x hex), up to 16")
    rp.add_argument("--budget", type=_instructions, default=RUN_BUDGET, metavar="N",
                    help="stop after N instructions (runaway protection; default 5e8)")
    rp.add_argument("--warm", action="store_true",
                    help="call once before measuring (warm flash caches); default: cold")
    rp.add_argument("--flash-data", action="store_true",
                    help="also model data reads from flash through the flash cache "
                         "(a memory hook: slower); default: code fetch only")
    rp.add_argument("--from", dest="window_from", metavar="SYMBOL_OR_ADDR", default=None,
                    help="also time the stretches from this instruction (a function symbol, "
                         "SYMBOL+OFFSET or 0x address) to the next --to: the start/stop "
                         "triggers of a benchmark harness; every stretch of the run is "
                         "reported (JSON: window)")
    rp.add_argument("--to", dest="window_to", metavar="SYMBOL_OR_ADDR", default=None,
                    help="where a --from stretch ends (that instruction not included)")
    _energy_arg(rp)
    _clock_args(rp)

    cp = add("cost-model", cmd_cost_model, "print a core's cycle cost table with sources",
             "Print the cycle cost model of a core: every instruction class with its "
             "cycles, the rule and its source, then the pipeline parameters and the "
             "sources. Data: cost_models/cortex_<core>.toml.")
    cp.add_argument("core", metavar="CORE", help="m0plus, m4 or m7")

    bn = add("bench", cmd_bench, "measure simulation speed: traced vs untraced Unicorn",
             "On the same kernel binaries and in the same run: untraced Unicorn MIPS, "
             "cycle-counted (traced) MIPS and their ratio, for Cortex-M0+, M4 and M7 code "
             "(a uint8 FC layer 1024->128 on RP2040, nRF52840 and i.MX RT1062). A traced "
             "call includes the tracer, stack painting and the cycle model.")
    bn.add_argument("--repeat", type=_repeats, default=5, metavar="N",
                    help="best of N timings (default 5)")
    bn.add_argument("--toolchain", choices=("gcc", "zig"), default=None,
                    help="cross compiler (default: gcc if on PATH, else zig)")
    sp = add("step", cmd_step, "what one training step costs: time, energy, RAM, flash",
             "Simulate one training step of MODEL (zoo name or TOML): every sample of one "
             "mini-batch (forward, loss, backward, range bookkeeping) and the weight update, "
             "as compiled kernels on each MCU with the memory planner's layout. Reports "
             "cycles, latency and energy per sample and per mini-batch, a layer x phase "
             "table, peak RAM and flash by part against the MCU's budgets. Exit 1 if it "
             "does not fit an MCU.")
    _train_args(sp, many=True)
    _energy_arg(sp)
    sp.add_argument("--seed", type=_seed, default=0, help="weights and data seed")
    sp.add_argument("--dataset", "-d", default=None, metavar="NAME|FILE.npz",
                    help="take the step's samples from this data set's training set "
                         "(default: seeded random inputs)")
    store_arg(sp, single=True)
    bg = add("budget", cmd_budget, "does the model fit the MCU? (exit 0 yes, 1 no)",
             "Check a model's training step against the SRAM and flash budgets of one or "
             "more MCUs (--all-mcus: the whole catalog) with the planned arena and the "
             "measured stack. Exit 0 when it fits (with several MCUs: fits at least one), "
             "1 when not (naming the biggest consumers and the shortfall), 2 on error.")
    _train_args(bg, many=True, required=False)
    bg.add_argument("--all-mcus", action="store_true", help="check every MCU of the catalog")
    store_arg(bg, single=True)
    tp = add("train", cmd_train, "train a model with FQT on real data; accuracy and device cost",
             "Train MODEL with fully quantized training on a data set (digits; with "
             "mcusim[imu] the UCR/UEA time series basicmotions, gunpoint, italypowerdemand, "
             "japanesevowels; or your .npz with x_train, y_train, x_test, y_test) and report "
             "per epoch: train loss, train and test accuracy, and the simulated on-device "
             "time and energy of the epoch on the MCU (from per-sample costs measured on the "
             "emulator, partial-update aware), next to a float32 baseline of the same "
             "architecture, initialisation and schedule.")
    _train_args(tp, many=False)
    _energy_arg(tp)
    tp.add_argument("--dataset", "-d", required=True, metavar="NAME|FILE.npz",
                    help="digits, basicmotions, gunpoint, italypowerdemand, japanesevowels "
                         "(the last four need mcusim[imu]) or a .npz file")
    tp.add_argument("--epochs", type=_epochs, default=10, metavar="N",
                    help="training epochs (default 10)")
    tp.add_argument("--lr", type=_learning_rate, default=None, metavar="X",
                    help="learning rate of the first epoch (default: the model's)")
    tp.add_argument("--lr-final", type=_learning_rate_or_0, default=None, metavar="X",
                    help="cosine decay to this by the last epoch; 0 = constant "
                         "(default: the model's)")
    tp.add_argument("--baseline-update", choices=("sgd", "standardized"), default="sgd",
                    help="float32 baseline's update rule (default sgd; standardized = "
                         "FQT's rule in float)")
    tp.add_argument("--baseline-lr", type=_learning_rate_or_0, default=0.1, metavar="X",
                    help="float32 baseline's first learning rate, same cosine shape as FQT's "
                         "(default 0.1, tuned for SGD on digits; 0 = the model's)")
    tp.add_argument("--engine", choices=("twin", "emulator"), default="twin",
                    help="twin: numpy twin, emulator sampled for costs (default); emulator: "
                         "every step in Unicorn (slow, exact)")
    tp.add_argument("--seed", type=_seed, default=0, help="init, split and order seed")
    tp.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                    help="also train the float32 baseline (default: on)")
    store_arg(tp, single=True)
    tp.add_argument("--plot", metavar="DIR", default=None, type=_path,
                    help="write PNG plots (accuracy, accuracy vs device time, phase time)")
    tp.add_argument("--pretrain", type=_epochs, default=None, metavar="EPOCHS",
                    help="transfer learning: first pre-train in float32 for EPOCHS on "
                         "--pretrain-classes, then fine-tune with FQT")
    tp.add_argument("--pretrain-classes", default=None, metavar="0-4",
                    help="classes to pre-train on (default: the first half)")
    pp = add("profile", cmd_profile, "where the cycles go: functions, lines, blocks, classes",
             "Profile one training step of MODEL (or one call of any ELF's function with "
             "--elf) on the MCU: exclusive and inclusive cycles per function, cycles per "
             "source line (DWARF), per basic block (with disassembly) and per instruction "
             "class, from the exact per-instruction attribution of the cycle model. Exports "
             "to speedscope, callgrind (callgrind_annotate, KCachegrind) and Chrome trace.")
    pp.add_argument("model", metavar="MODEL", nargs="?",
                    help="zoo name, .toml file, or .onnx / .tflite file")
    _model_args(pp)
    pp.add_argument("--mcu", "-m", action="append", required=True, metavar="MCU",
                    help="MCU from the catalog (`mcusim mcus`)")
    _clock_args(pp)
    pp.add_argument("--phase", choices=("forward", "loss", "backward", "update", "all"),
                    default="all", help="which phase of the step to profile (default all)")
    pp.add_argument("--by", choices=("function", "line", "block", "class"),
                    default="function", help="the table to show (default function)")
    pp.add_argument("--top", type=_positive_int, default=15, metavar="N",
                    help="rows per table (default 15)")
    pp.add_argument("--annotate", metavar="FUNCTION", default=None,
                    help="show FUNCTION's source (or disassembly) with cycles per line")
    pp.add_argument("--speedscope", metavar="FILE", default=None, type=_path,
                    help="write a speedscope profile (open at speedscope.app)")
    pp.add_argument("--callgrind", metavar="FILE", default=None, type=_path,
                    help="write a callgrind profile (callgrind_annotate, KCachegrind)")
    pp.add_argument("--chrome-trace", metavar="FILE", default=None, type=_path,
                    help="write a Chrome trace of the kernel calls (chrome://tracing, "
                         "ui.perfetto.dev)")
    pp.add_argument("--elf", metavar="FILE", default=None, type=_path,
                    help="profile a function of any ELF instead of a model's step")
    pp.add_argument("--function", "-f", metavar="NAME", default=None,
                    help="--elf: the function symbol to call")
    pp.add_argument("--args", metavar="A,B,...", default=None,
                    help="--elf: comma-separated integer arguments (decimal or 0x hex)")
    pp.add_argument("--warm", action="store_true", help="--elf: call once before profiling")
    pp.add_argument("--budget", type=_instructions, default=RUN_BUDGET, metavar="N",
                    help="--elf: stop after N instructions (default 5e8)")
    pp.add_argument("--source-dir", metavar="DIR", action="append", default=None, type=_path,
                    help="also show source text of files under DIR (repeatable); by default "
                         "only files under the compilation directories the ELF's DWARF "
                         "names (not /, system directories or your home directory itself) "
                         "and mcusim's own kernels are read")
    pp.add_argument("--dataset", "-d", default=None, metavar="NAME|FILE.npz",
                    help="the step's samples from this data set (default: seeded random)")
    for opt, kw in (("--lambda-min", {"type": _finite_float, "metavar": "X",
                                      "help": LAMBDA_MIN_HELP}),
                    ("--lambda-max", {"type": _finite_float, "metavar": "X",
                                      "help": LAMBDA_MAX_HELP}),
                    ("--rounding", {"choices": ("nearest", "floor", "stochastic"),
                                    "help": "requantization rounding (default: the model's)"}),
                    ("--update-rounding", {"choices": ("nearest", "floor", "stochastic"),
                                           "help": UPDATE_ROUNDING_HELP}),
                    ("--fc-gradient", {"choices": ("accumulate", "pairs"),
                                       "help": FC_GRADIENT_HELP}),
                    ("--batch", {"type": _batch, "metavar": "N",
                                 "help": "mini-batch size (default: the model's)"}),
                    ("--toolchain", {"choices": ("gcc", "zig"),
                                     "help": "cross compiler (default: gcc if on PATH, "
                                             "else zig)"})):
        pp.add_argument(opt, default=None, **kw)
    ip = add("import", cmd_import, "turn an ONNX or TFLite model into a model TOML + weights",
             "Import a pretrained model from ONNX (.onnx, e.g. from torch.onnx.export) or "
             "TFLite (.tflite, float32 or int8): writes NAME.toml and NAME.npz (float32 "
             "weights; an int8 model's activation ranges) into the output directory, which "
             "every command (step, budget, train, verify, profile) accepts, and prints one "
             "row per layer: the source ops it came from, shapes, parameters, trained or "
             "frozen, what was folded or dropped. Supported ops and how quantization ranges "
             "are set: docs/models.md.")
    ip.add_argument("source", metavar="MODEL.onnx|MODEL.tflite", type=_path,
                    help="the model file: ONNX (opset 13-28) or TFLite (float32 or int8)")
    ip.add_argument("-o", "--output", metavar="DIR", default=".", type=_path,
                    help="directory to write NAME.toml and NAME.npz into (default: .)")
    ip.add_argument("--name", default=None, metavar="NAME",
                    help="model name and file stem (default: the source file's stem)")
    _model_args(ip)  # --train-last / --trainable mark the TOML's layers (default: all)
    ip.add_argument("--check", type=_check_count, default=16, metavar="N",
                    help="compare the FQT forward with the reference runtime on N random "
                         "inputs over the input range (default 16; 0: skip)")
    ip.add_argument("--calibration", type=_path, default=None, metavar="FILE.npz",
                    help="set every layer's output range from these samples (x_train of a "
                         ".npz data set, in the model's input units; default: an int8 "
                         "model's own ranges, else random inputs over the input range)")
    ip.add_argument("--input-range", type=_range, default=None, metavar="LO,HI",
                    help="real range of the input (default: an int8 model's input "
                         "quantization; else 0,1)")
    vp = add("verify", cmd_verify, "train a model on the MCU and in numpy; compare every byte",
             "Run N training samples (forward, loss, backward, range tracking, and a weight "
             "update after every mini-batch) of MODEL (zoo name or TOML) both as compiled "
             "kernels on the emulated MCU and in the numpy twin, on seeded random data, and "
             "compare every tensor, gradient and quantization record after every phase. "
             "Exit 0 only when all matched bit for bit.")
    _train_args(vp, many=False)
    vp.add_argument("--steps", type=_steps, default=None, metavar="N",
                    help="training samples (default: two mini-batches)")
    vp.add_argument("--seed", type=_seed, default=0, help="data and initialisation seed")
    # sweeps, the results database and what reads it (mcusim[sweep])
    from mcusim import cli_report, cli_results, cli_sweep

    cli_sweep.register(add)
    cli_results.register(add)
    cli_report.register(add)
    return p


def _one_mcu(args: argparse.Namespace, command: str) -> str:
    """The one --mcu of a command that runs on one MCU."""
    if len(args.mcu) > 1:
        raise UsageError(f"{command}: one --mcu at a time")
    return args.mcu[0]


FC_GRADIENT_HELP = ("how FC layers keep their weight gradient until the update: "
                    "accumulate (int32 per weight) or pairs (each sample's input and error "
                    "bytes, the gradient formed at the update: the same training for "
                    "batch x (in + out) bytes instead of 4 x in x out; default: the model's)")
UPDATE_ROUNDING_HELP = ("rounding of the weight update's requantization (default: the "
                        "model's, nearest): independent of --rounding because floor in the "
                        "update is a ratchet (every update moves weights down) and "
                        "stochastic rounding turns sub-LSB steps into a random walk")
LAMBDA_MIN_HELP = ("partial updates: per sample each trainable layer updates only its "
                   "k = floor(min(λ_min + |ε|·(λ_max − λ_min), 1)·N) structures (filters or "
                   "rows) with the largest error, ε = the layer's error relative to the "
                   "largest seen; λ_min is the share for the least surprising sample, 1 = "
                   "full training (default: the model's)")
LAMBDA_MAX_HELP = "partial updates: the share for the most surprising sample (default: the model's)"


def _energy_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--energy", choices=ENERGY_BASES, default="chip",
                   help="energy basis: chip (default: the MCU's own supply pins at its typical "
                        "voltage, datasheet run current; the same basis for every MCU) or "
                        "board (board-level figures: the board's USB/VIN input, including "
                        "regulators, LEDs...; only MCUs that have them, else exit 2)")


def _clock_args(p: argparse.ArgumentParser) -> None:
    """--clock, --wait-states, --no-flash-cache: the MCU as the user's board runs it
    (applied by _at_clock; docs/clock.md)."""
    p.add_argument("--clock", type=_clock_hz, default=None, metavar="HZ",
                   help="run the MCU at this CPU clock: Hz, or 48e6, 48M, 120MHz, 32.768kHz "
                        "(default: the catalog's clock); the flash wait states come from the "
                        "part's table and the run current scales with the clock "
                        "(`mcusim mcus --json`: clock)")
    p.add_argument("--wait-states", type=_wait_states, default=None, metavar="N",
                   help=f"flash wait states 0..{MAX_WAIT_STATES}, instead of the part's table "
                        "at the clock (marked as your setting in the results)")
    p.add_argument("--no-flash-cache", action="store_true",
                   help="turn the flash accelerator / cache off: every new flash word pays the "
                        "wait states (as on a part without one); default: as in the catalog")


def _at_clock(args: argparse.Namespace, mcus: Sequence[Mcu], *,
              skip_unsupported: bool = False) -> list[Mcu]:
    """The MCUs with --clock / --wait-states / --no-flash-cache applied (unchanged without
    them).  A clock outside a named MCU's range is an error (exit 2); with
    `skip_unsupported` (a whole-catalog listing) such MCUs are left out, with a note."""
    hz = getattr(args, "clock", None)
    ws = getattr(args, "wait_states", None)
    no_cache = bool(getattr(args, "no_flash_cache", False))
    if hz is None and ws is None and not no_cache:
        return list(mcus)
    if skip_unsupported and hz is not None:
        left_out = [m for m in mcus if not m.supports_clock(hz)]
        mcus = [m for m in mcus if m.supports_clock(hz)]
        if not mcus:
            raise UsageError(f"--clock {render.mhz(hz)}: no MCU of the catalog runs at that clock")
        if left_out:
            names = ", ".join(f"{m.name} ({_clock_range_text(m)})" for m in left_out)
            stderr.print(Text(f"mcusim: note: --clock {render.mhz(hz)} leaves out {names}",
                              style="yellow"), highlight=False, soft_wrap=True)
    return [m.at_clock(hz, wait_states=ws, flash_cache=not no_cache) for m in mcus]


def _clock_range_text(m: Mcu) -> str:
    lo, hi = m.clock_range()
    return f"{hi / 1e6:g} MHz only" if lo == hi else f"up to {hi / 1e6:g} MHz"


_CLOCK_RE = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([kmg]?)(?:hz)?",
                       re.IGNORECASE)


def _clock_hz(text: str) -> int:
    """--clock: a whole number of Hz > 0, also as 120e6, 48M, 120MHz, 32.768kHz."""
    from decimal import Decimal, InvalidOperation

    m = _CLOCK_RE.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a clock in Hz such as 48000000, 48e6, 48M "
                                         f"or 48MHz (got {text!r})")
    try:
        value = Decimal(m.group(1)) * (10 ** {"": 0, "k": 3, "m": 6, "g": 9}[m.group(2).lower()])
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a clock: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 Hz (got {text!r})")
    if value > MAX_CLOCK_HZ:
        raise argparse.ArgumentTypeError(f"{text!r} is above {MAX_CLOCK_HZ / 1e9:g} GHz, more "
                                         "than any Cortex-M runs at")
    if value != value.to_integral_value():
        raise argparse.ArgumentTypeError(f"must be a whole number of Hz (got {text!r})")
    return int(value)


def _wait_states(text: str) -> int:
    """--wait-states: an integer 0..15."""
    try:
        v = int(text.strip(), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= v <= MAX_WAIT_STATES:
        raise argparse.ArgumentTypeError(f"must be 0..{MAX_WAIT_STATES} (got {text!r})")
    return v


def _model_args(p: argparse.ArgumentParser) -> None:
    """Which layers train, and the input shape of an ONNX / TFLite file with dynamic
    dimensions."""
    p.add_argument("--train-last", type=_positive_int, default=None, metavar="K",
                   help="train only the last K weighted layers (the rest frozen, in flash)")
    p.add_argument("--trainable", type=_names, default=None, metavar="LAYER,...",
                   help="train exactly these weighted layers (the last ones of the model)")
    p.add_argument("--input-shape", type=_shape, default=None, metavar="H,W,C",
                   help="input shape of a .onnx / .tflite MODEL whose input has dynamic "
                        "dimensions")


def _train_args(p: argparse.ArgumentParser, many: bool, required: bool = True) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="zoo name (digits-cnn, ...), a .toml file, or a .onnx / .tflite file")
    _model_args(p)
    p.add_argument("--mcu", "-m", action="append", required=required, metavar="MCU",
                   help="MCU from the catalog" + (" (repeatable: side by side)" if many else ""))
    _clock_args(p)
    p.add_argument("--lambda-min", type=_finite_float, default=None, metavar="X",
                   help=LAMBDA_MIN_HELP)
    p.add_argument("--lambda-max", type=_finite_float, default=None, metavar="X",
                   help=LAMBDA_MAX_HELP)
    p.add_argument("--rounding", choices=("nearest", "floor", "stochastic"), default=None,
                   help="requantization rounding (default: the model's)")
    p.add_argument("--update-rounding", choices=("nearest", "floor", "stochastic"),
                   default=None, help=UPDATE_ROUNDING_HELP)
    p.add_argument("--fc-gradient", choices=("accumulate", "pairs"), default=None,
                   help=FC_GRADIENT_HELP)
    p.add_argument("--batch", type=_batch, default=None, metavar="N",
                   help="mini-batch size (default: the model's)")
    p.add_argument("--toolchain", choices=("gcc", "zig"), default=None,
                   help="cross compiler (default: gcc if on PATH, else zig)")


def _range(text: str) -> tuple[float, float]:
    """LO,HI: finite numbers with LO <= 0 <= HI and LO < HI."""
    try:
        lo, hi = (float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (got {text!r})") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= 0.0 <= hi and lo < hi):
        raise argparse.ArgumentTypeError(f"expected LO,HI, finite, LO <= 0 <= HI, LO < HI "
                                         f"(got {text!r})")
    return lo, hi


def _check_count(text: str) -> int:
    """0 (no check) or 1..1024 inputs."""
    return 0 if text.strip() in ("0", "0x0") else _bounded_int(1024, "inputs")(text)


def _names(text: str) -> list[str]:
    """LAYER,LAYER,...: non-empty layer names."""
    names = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise argparse.ArgumentTypeError(f"expected LAYER,LAYER,... (got {text!r})")
    return names


def _shape(text: str) -> tuple[int, int, int]:
    """H,W,C: three positive integers of at most 65,535."""
    parts = text.replace("x", ",").split(",")
    try:
        vals = tuple(int(t) for t in parts)
    except ValueError:
        vals = ()
    if len(vals) != 3 or not all(1 <= v <= 65_535 for v in vals):
        raise argparse.ArgumentTypeError(f"expected H,W,C, three integers in 1..65535 (got "
                                         f"{text!r})")
    return vals  # type: ignore[return-value]


def _finite_float(text: str) -> float:
    """A finite number: nan and inf are refused by the parser, before any work."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
    return v


# `run`/`profile --elf` of a user's program: runaway code stops within seconds (measured:
# `run` of an endless loop stops after 5e8 instructions in 7.9 s on this 2-core machine;
# 2e9, the old default, took 17.6-31 s); --budget N raises it
RUN_BUDGET = 500_000_000


def _path(text: str) -> str:
    """A file or directory path: not empty (an empty value would silently mean "none")."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return text


FLOAT32_MAX = 3.4028234663852886e38


def _learning_rate(text: str) -> float:
    """A learning rate: > 0 and a float32 (the kernels keep it in one)."""
    v = _finite_float(text)
    if not 0 < v <= FLOAT32_MAX:
        raise argparse.ArgumentTypeError(f"must be > 0 and at most {FLOAT32_MAX:.4g} (the "
                                         f"largest float32): {text!r}")
    return v


def _learning_rate_or_0(text: str) -> float:
    """--baseline-lr: a learning rate, or 0 for the model's own."""
    v = _finite_float(text)
    if not 0 <= v <= FLOAT32_MAX:
        raise argparse.ArgumentTypeError(f"must be 0 or > 0 and at most {FLOAT32_MAX:.4g} "
                                         f"(the largest float32): {text!r}")
    return v


def _bounded_int(maximum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer 1..maximum (decimal, 0x hex or 1e6 notation)."""

    def parse(text: str) -> int:
        t = text.strip().lower()
        try:
            if "e" in t and not t.startswith(("0x", "-0x")):
                f = float(t)
                if not math.isfinite(f) or f != int(f):
                    raise ValueError
                v = int(f)
            else:
                v = int(t, 0)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        if v > maximum:
            raise argparse.ArgumentTypeError(f"{text!r} is more than the {maximum:,} {what} "
                                             "mcusim accepts")
        return v

    return parse


_positive_int = _bounded_int(10**12, "allowed")
_instructions = _bounded_int(10**12, "instructions")
_batch = _bounded_int(1_024, "samples per mini-batch")
_epochs = _bounded_int(100_000, "epochs")
_steps = _bounded_int(10_000_000, "samples")
_repeats = _bounded_int(1_000, "repeats")


def _seed(text: str) -> int:
    """A random seed: 0 .. 2**32 - 1 (numpy's and the kernels' seed range)."""
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= v < 1 << 32:
        raise argparse.ArgumentTypeError(f"must be 0 .. 4294967295: {text!r}")
    return v


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    stderr.print(Text(f"mcusim: warning: {message}", style="yellow"), soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(list(sys.argv[1:] if argv is None
                                                        else argv)))
    if not getattr(args, "command", None):
        commands = next(a for a in parser._actions
                        if isinstance(a, argparse._SubParsersAction)).choices
        line = Text("mcusim: error: ", style="bold red")
        line.append(f"no command given (one of: {', '.join(commands)}; `mcusim --help` "
                    "explains them, `mcusim demo` runs the main job)")
        stderr.print(line, highlight=False, soft_wrap=True)
        return 2
    try:
        check_installation()
        return args.func(args)
    except InternalError as e:
        _internal(str(e))
        return e.exit_code
    except McusimError as e:
        line = Text("mcusim: error: ", style="bold red")
        line.append(_one_line(str(e)))
        stderr.print(line, highlight=False, soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        stderr.print("mcusim: interrupted")
        return 130
    except Exception as e:  # mcusim's own bug: one line, exit 3 (MCUSIM_DEBUG=1: traceback)
        if os.environ.get("MCUSIM_DEBUG"):
            raise
        _internal(f"{type(e).__name__}: {e}")
        return InternalError.exit_code


def _one_line(message: str) -> str:
    """An error message as the one line it must be (a name from a file may hold a line
    break; the messages themselves have none)."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def _internal(message: str) -> None:
    line = Text("mcusim: internal error: ", style="bold red")
    line.append(f"{_one_line(message)} (this is a bug in mcusim, not in your input: please "
                "report it; MCUSIM_DEBUG=1 shows the traceback)")
    stderr.print(line, highlight=False, soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
