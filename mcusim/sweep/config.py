"""A sweep file (TOML): the grid of points a sweep runs.

    [sweep]
    name = "mcus"                  # stored with every point (default: the file's stem)
    run = ["budget", "step"]       # what to run at every point: budget, step, train
    catalog = ["my-mcus.toml"]     # optional: your MCUs (paths relative to this file)

    [grid]                         # every combination of these lists is one point
    model = ["digits-cnn", "my-model.toml", "net.onnx"]
    mcu = ["RP2040", "nRF52840"]   # or ["all"]: every MCU of the catalog
    lambda_min = [1.0, 0.1]        # optional axes; absent: the model's own value
    rounding = ["nearest", "stochastic"]

    [train]                        # settings of `train` points
    dataset = "digits"
    epochs = 2

Optional [grid] axes: lambda_min, lambda_max, rounding, update_rounding, batch, fc_gradient,
train_last, trainable, input_shape, clock, wait_states, flash_cache, toolchain, seed,
energy.  [step] dataset = ... takes the step's samples from a data set.  Every problem is a
one-line UsageError naming the file and the key.  Nothing here prints.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcusim.catalog import Catalog, Mcu, load_catalog
from mcusim.errors import McusimError, UsageError
from mcusim.sweep.points import KINDS, Point, make_point
from mcusim.toolchain import find_toolchain
from mcusim.userfiles import check_regular, shown

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

MAX_SWEEP_BYTES = 1 << 20
MAX_POINTS = 100_000

# axis -> (what it is, converter of one value); the converters raise ValueError
AXES: dict[str, str] = {
    "model": "zoo names, model TOML files or .onnx / .tflite files",
    "mcu": "MCU names of the catalog, or \"all\"",
    "lambda_min": "numbers in (0, 1]", "lambda_max": "numbers in (0, 1]",
    "rounding": "nearest, floor or stochastic",
    "update_rounding": "nearest, floor or stochastic",
    "batch": "mini-batch sizes", "fc_gradient": "accumulate or pairs",
    "train_last": "numbers of trailing weighted layers to train",
    "trainable": "comma-separated layer names",
    "input_shape": "[H, W, C] of a .onnx / .tflite model with dynamic dimensions",
    "clock": "clocks in Hz (or strings such as \"48MHz\")",
    "wait_states": "flash wait states", "flash_cache": "true / false",
    "toolchain": "gcc or zig", "seed": "seeds 0 .. 2**32-1", "energy": "chip or board",
}
ROUNDINGS = ("nearest", "floor", "stochastic")


@dataclass
class Sweep:
    """A parsed sweep file: its points, in grid order."""

    name: str
    path: Path
    run: tuple[str, ...]
    points: list[Point] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. MCUs left out at a clock


def load_sweep(path: str | Path, *, catalogs: Sequence[str] = (),
               progress: Callable[[str], None] | None = None) -> Sweep:
    """Parse and expand a sweep file; the models are loaded and every setting checked here,
    before anything runs."""
    p = Path(path)
    check_regular(p, "a sweep file (TOML)", MAX_SWEEP_BYTES)
    where = shown(p)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{where}: not UTF-8 text (a sweep file is TOML)") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{where}: not valid TOML: {e}") from None
    _only(doc, ("sweep", "grid", "step", "train"), where, "top level")
    head = _table(doc, "sweep", where)
    _only(head, ("name", "run", "catalog"), where, "[sweep]")
    grid = _table(doc, "grid", where, required=True)
    _only(grid, tuple(AXES), where, "[grid]")
    step_t = _table(doc, "step", where)
    _only(step_t, ("dataset",), where, "[step]")
    train_t = _table(doc, "train", where)
    _only(train_t, ("dataset", "epochs", "baseline"), where, "[train]")

    name = head.get("name", p.stem)
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"{where}: [sweep] name: expected a non-empty string")
    run = head.get("run", ["step"])
    if isinstance(run, str):
        run = [run]
    if not isinstance(run, list) or not run or any(r not in KINDS for r in run):
        raise UsageError(f"{where}: [sweep] run: expected a list of {', '.join(KINDS)} "
                         f"(got {run!r})")
    files = head.get("catalog", [])
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise UsageError(f"{where}: [sweep] catalog: expected a list of file paths")
    cat = load_catalog(user_catalogs=[*catalogs, *(str(_rel(p, f)) for f in files)])

    for key in ("model", "mcu"):
        if key not in grid:
            raise UsageError(f"{where}: [grid] needs {key} = [...] ({AXES[key]})")
    axes = {k: _values(grid[k], k, where) for k in grid}
    models = [_model_ref(p, v, where) for v in axes.pop("model")]
    mcus = _mcus(cat, axes.pop("mcu"), where)
    step_dataset = _dataset(p, _opt_str(step_t, "dataset", where, "[step]"))
    train_dataset = _dataset(p, _opt_str(train_t, "dataset", where, "[train]"))
    epochs = train_t.get("epochs", 1)
    if not _int(epochs) or not 1 <= epochs <= 100_000:
        raise UsageError(f"{where}: [train] epochs: expected an integer 1..100000")
    baseline = train_t.get("baseline", True)
    if not isinstance(baseline, bool):
        raise UsageError(f"{where}: [train] baseline: expected true or false")
    if "train" in run and not train_dataset:
        raise UsageError(f"{where}: run has \"train\": [train] needs dataset = \"...\" "
                         "(digits, basicmotions, gunpoint, ... or a .npz file)")

    clocks = _axis(axes, "clock", lambda v: _clock(v, where))
    wait_states = _axis(axes, "wait_states", lambda v: _ws(v, where))
    caches = _axis(axes, "flash_cache", lambda v: _bool(v, "flash_cache", where))
    toolchains = {}
    for kind in axes.pop("toolchain", [None]):
        if kind not in (None, "gcc", "zig"):
            raise UsageError(f"{where}: [grid] toolchain: expected gcc or zig (got {kind!r})")
        if kind not in toolchains:
            toolchains[kind] = find_toolchain(kind)
    seeds = [_seed(v, where) for v in axes.pop("seed", [0])]
    energies = axes.pop("energy", ["chip"])
    for e in energies:
        if e not in ("chip", "board"):
            raise UsageError(f"{where}: [grid] energy: expected chip or board (got {e!r})")
    shapes = _axis(axes, "input_shape", lambda v: _shape(v, where))
    tails = _axis(axes, "train_last", lambda v: _tail(v, where))
    trainables = _axis(axes, "trainable", lambda v: _trainable(v, where))
    if len(tails) > 1 or tails[0] is not None:
        if len(trainables) > 1 or trainables[0] is not None:
            raise UsageError(f"{where}: [grid] has train_last and trainable: give one")
    settings_axes = {
        "lambda_min": _axis(axes, "lambda_min", lambda v: _lam(v, "lambda_min", where)),
        "lambda_max": _axis(axes, "lambda_max", lambda v: _lam(v, "lambda_max", where)),
        "rounding": _axis(axes, "rounding", lambda v: _choice(v, "rounding", ROUNDINGS, where)),
        "update_rounding": _axis(axes, "update_rounding",
                                 lambda v: _choice(v, "update_rounding", ROUNDINGS, where)),
        "batch_size": _axis(axes, "batch", lambda v: _batch(v, where)),
        "fc_gradient": _axis(axes, "fc_gradient",
                             lambda v: _choice(v, "fc_gradient", ("accumulate", "pairs"), where)),
    }
    assert not axes, axes  # every AXES key is handled above

    sweep = Sweep(name=name, path=p, run=tuple(run))
    combos = list(itertools.product(models, mcus, clocks, wait_states, caches, toolchains,
                                    seeds, energies, shapes, tails, trainables,
                                    *settings_axes.values()))
    if len(combos) * len(run) > MAX_POINTS:
        raise UsageError(f"{where}: {len(combos) * len(run):,} points: more than the "
                         f"{MAX_POINTS:,} a sweep may have")
    left_out: dict[str, str] = {}
    seen: set[str] = set()
    n_sets = 0
    for combo in combos:
        (model, (mcu, named), hz, ws, fc, tck, seed, energy, shape, tail,
         trainable) = combo[:11]
        settings = dict(zip(settings_axes, combo[11:], strict=True))
        if hz is not None and not mcu.supports_clock(hz):
            lo, hi = mcu.clock_range()
            if named:
                raise UsageError(f"{where}: {mcu.name} does not run at {hz / 1e6:g} MHz "
                                 f"(its range: {lo / 1e6:g}..{hi / 1e6:g} MHz)")
            left_out[mcu.name] = f"{hz / 1e6:g} MHz"
            continue
        m = mcu if (hz is None and ws is None and fc is None) else mcu.at_clock(
            hz, wait_states=ws, flash_cache=True if fc is None else fc)
        if energy == "board" and not _has_board(m):
            if named:
                raise UsageError(f"{where}: energy \"board\": {mcu.name} has no board-level "
                                 "figures")
            left_out[mcu.name] = "board energy"
            continue
        m = m.with_energy(energy)
        for kind in run:
            n_sets += 1
            if progress and n_sets % 50 == 0:
                progress(f"sweep: expanding the grid ({n_sets:,} points)")
            try:
                pt = make_point(kind, model, m, toolchains[tck], settings=settings,
                                train_last=tail, trainable=trainable, input_shape=shape,
                                seed=seed, energy=energy, sweep=name,
                                dataset=train_dataset if kind == "train" else
                                step_dataset if kind == "step" else None,
                                epochs=epochs if kind == "train" else None,
                                baseline=baseline)
            except McusimError as e:
                raise type(e)(f"{where}: {e}") from None
            if pt.key not in seen:  # e.g. λ_max given twice the same effective value
                seen.add(pt.key)
                sweep.points.append(pt)
    if left_out:
        sweep.notes.append("left out: " + ", ".join(f"{k} ({v})" for k, v in
                                                    left_out.items()))
    if not sweep.points:
        raise UsageError(f"{where}: the grid has no point to run"
                         + (f" ({sweep.notes[0]})" if sweep.notes else ""))
    return sweep


# ----------------------------------------------------------------------------- helpers


def _axis(axes: dict[str, list[Any]], key: str, conv: Callable[[Any], Any]) -> list[Any]:
    """The checked values of an optional [grid] axis; [None] (the default) when absent."""
    return [conv(v) for v in axes.pop(key)] if key in axes else [None]


def _only(table: dict[str, Any], allowed: Sequence[str], where: str, what: str) -> None:
    for k in table:
        if k not in allowed:
            raise UsageError(f"{where}: {what}: unknown key {k!r} (known: "
                             f"{', '.join(allowed)})")


def _table(doc: dict[str, Any], key: str, where: str, required: bool = False) -> dict:
    t = doc.get(key)
    if t is None:
        if required:
            raise UsageError(f"{where}: needs a [{key}] table")
        return {}
    if not isinstance(t, dict):
        raise UsageError(f"{where}: {key}: expected a table [{key}]")
    return t


def _values(v: Any, key: str, where: str) -> list[Any]:
    vals = v if isinstance(v, list) else [v]
    if not vals:
        raise UsageError(f"{where}: [grid] {key}: an empty list (expected {AXES[key]})")
    return vals


def _rel(sweep_file: Path, name: str) -> Path:
    q = Path(name).expanduser()
    return q if q.is_absolute() else sweep_file.parent / q


def _model_ref(sweep_file: Path, v: Any, where: str) -> str:
    from mcusim.model.zoo import zoo_names

    if not isinstance(v, str) or not v.strip():
        raise UsageError(f"{where}: [grid] model: expected {AXES['model']} (got {v!r})")
    if v.lower() in {n.lower() for n in zoo_names()} and not (sweep_file.parent / v).is_file():
        return v
    return str(_rel(sweep_file, v).absolute())


def _dataset(sweep_file: Path, name: str | None) -> str | None:
    """A built-in data set's name as it is; a file relative to the sweep file."""
    from mcusim.fqt.datasets import is_builtin

    if name is None or is_builtin(name):
        return name
    return str(_rel(sweep_file, name).absolute())


def _mcus(cat: Catalog, vals: list[Any], where: str) -> list[tuple[Mcu, bool]]:
    out: list[tuple[Mcu, bool]] = []
    for v in vals:
        if not isinstance(v, str):
            raise UsageError(f"{where}: [grid] mcu: expected {AXES['mcu']} (got {v!r})")
        if v.lower() == "all":
            out += [(m, False) for m in cat.mcus.values()]
        else:
            try:
                out.append((cat.mcu(v), True))
            except McusimError as e:
                raise UsageError(f"{where}: [grid] mcu: {e}") from None
    seen: set[str] = set()
    return [(m, named) for m, named in out if not (m.name in seen or seen.add(m.name))]


def _has_board(mcu: Mcu) -> bool:
    return mcu.energy_basis == "board" or mcu.has_board_energy


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _opt_str(t: dict[str, Any], key: str, where: str, what: str) -> str | None:
    v = t.get(key)
    if v is not None and (not isinstance(v, str) or not v.strip()):
        raise UsageError(f"{where}: {what} {key}: expected a string")
    return v


def _clock(v: Any, where: str) -> int | None:
    from mcusim.cli import _clock_hz

    try:
        return _clock_hz(str(v)) if not isinstance(v, bool) else _clock_hz("x")
    except Exception as e:  # argparse.ArgumentTypeError
        raise UsageError(f"{where}: [grid] clock: {e}") from None


def _ws(v: Any, where: str) -> int:
    from mcusim.catalog import MAX_WAIT_STATES

    if not _int(v) or not 0 <= v <= MAX_WAIT_STATES:
        raise UsageError(f"{where}: [grid] wait_states: expected integers 0..{MAX_WAIT_STATES} "
                         f"(got {v!r})")
    return v


def _bool(v: Any, key: str, where: str) -> bool:
    if not isinstance(v, bool):
        raise UsageError(f"{where}: [grid] {key}: expected true or false (got {v!r})")
    return v


def _seed(v: Any, where: str) -> int:
    if not _int(v) or not 0 <= v < 1 << 32:
        raise UsageError(f"{where}: [grid] seed: expected integers 0..4294967295 (got {v!r})")
    return v


def _shape(v: Any, where: str) -> tuple[int, int, int]:
    if not (isinstance(v, list) and len(v) == 3 and all(_int(x) and 1 <= x <= 65535
                                                        for x in v)):
        raise UsageError(f"{where}: [grid] input_shape: expected [H, W, C] lists of integers "
                         f"1..65535 (got {v!r})")
    return (v[0], v[1], v[2])


def _tail(v: Any, where: str) -> int:
    if not _int(v) or v < 1:
        raise UsageError(f"{where}: [grid] train_last: expected positive integers (got {v!r})")
    return v


def _trainable(v: Any, where: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in v.split(",")) if isinstance(v, str) else ()
    if not names or not all(names):
        raise UsageError(f"{where}: [grid] trainable: expected strings \"LAYER,LAYER\" "
                         f"(got {v!r})")
    return names


def _lam(v: Any, key: str, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise UsageError(f"{where}: [grid] {key}: expected {AXES[key]} (got {v!r})")
    return float(v)


def _choice(v: Any, key: str, allowed: Sequence[str], where: str) -> str:
    if v not in allowed:
        raise UsageError(f"{where}: [grid] {key}: expected {', '.join(allowed)} (got {v!r})")
    return v


def _batch(v: Any, where: str) -> int:
    if not _int(v) or not 1 <= v <= 1024:
        raise UsageError(f"{where}: [grid] batch: expected integers 1..1024 (got {v!r})")
    return v
