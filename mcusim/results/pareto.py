"""Pareto fronts of stored points, per MCU, and their figures.

A point is on the front of its MCU when no other eligible point of that MCU is at least as
good on every objective and strictly better on one (Pareto dominance).  The objectives are
two metric columns of the store (default: latency and peak RAM, both minimized) plus the
test accuracy (maximized) when every eligible point of the MCU has one (train points).
Accuracies are maximized, every other metric minimized.  Only points that ran and fit
(status "ok", fits true) are eligible; points that do not fit are drawn distinctly and never
on the front; failed points are skipped and counted.  Points with equal objectives do not
dominate one another: duplicates are all on the front.

Nothing here prints; matplotlib is imported only when a figure is drawn (an extra).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcusim.errors import UsageError
from mcusim.results.store import NUMERIC

ACCURACIES = frozenset({"test_acc", "train_acc", "baseline_test_acc"})
DEFAULT_X = "latency_ms"
DEFAULT_Y = "peak_ram_bytes"
ACCURACY = "test_acc"
DIRECT_LABELS = 5  # fronts with more points are numbered, with a key beside the plot
KEY_LINES = 40

# column -> (axis words, unit, divisor): how a figure shows a metric
_AXES: dict[str, tuple[str, str, float]] = {
    "latency_ms": ("latency per sample", "ms", 1.0),
    "batch_latency_ms": ("latency per mini-batch", "ms", 1.0),
    "epoch_device_ms": ("device time per epoch", "ms", 1.0),
    "energy_mj": ("energy per sample", "mJ", 1.0),
    "batch_energy_mj": ("energy per mini-batch", "mJ", 1.0),
    "peak_ram_bytes": ("peak RAM", "KB", 1024.0),
    "flash_bytes": ("flash", "KB", 1024.0),
    "clock_hz": ("clock", "MHz", 1e6),
    "cycles": ("cycles per sample", "cycles", 1.0),
}


def sense(column: str) -> str:
    """'max' for accuracies, 'min' for every other metric."""
    return "max" if column in ACCURACIES else "min"


def check_axis(column: str, flag: str) -> str:
    """The column if it is a numeric column of the store, else a one-line UsageError."""
    if column not in NUMERIC:
        raise UsageError(f"{flag} {column}: not a numeric column of the results (one of: "
                         f"{', '.join(sorted(NUMERIC))})")
    return column


def axis_label(column: str) -> str:
    """Axis words with the unit, e.g. 'peak RAM (KB)'."""
    if column in _AXES:
        words, unit, _ = _AXES[column]
        return f"{words} ({unit})"
    if column in ACCURACIES:
        return f"{column.replace('_acc', ' accuracy').replace('_', ' ')} (fraction)"
    for suffix, unit, div in (("_bytes", "KB", 1024.0), ("_ms", "ms", 1.0),
                              ("_mj", "mJ", 1.0), ("_hz", "MHz", 1e6)):
        if column.endswith(suffix):
            _AXES[column] = (column[: -len(suffix)].replace("_", " "), unit, div)
            return axis_label(column)
    return column.replace("_", " ")


def axis_scale(column: str) -> float:
    """What a stored value is divided by on the axis (bytes -> KB, Hz -> MHz)."""
    axis_label(column)
    return _AXES[column][2] if column in _AXES else 1.0


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a dominates b (both already turned into 'smaller is better')."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and \
        any(x < y for x, y in zip(a, b, strict=True))


def pareto_front(values: Sequence[Sequence[float]], senses: Sequence[str]) -> list[int]:
    """Indices (ascending) of the non-dominated vectors of `values`; senses[i] is 'min' or
    'max' for objective i.

    Sorted lexicographically (smaller is better), a vector can only be dominated by one
    that comes before it, and if any earlier vector dominates it, a front vector does
    (dominance is transitive): each vector is checked against the front so far only.
    """
    signs = [1.0 if s == "min" else -1.0 for s in senses]
    keyed = [tuple(s * float(v) for s, v in zip(signs, vec, strict=True)) for vec in values]
    order = sorted(range(len(keyed)), key=lambda i: keyed[i])
    front: list[int] = []
    for i in order:
        if not any(dominates(keyed[j], keyed[i]) for j in front):
            front.append(i)
    return sorted(front)


def eligible(row: dict[str, Any], columns: Sequence[str]) -> bool:
    """Whether a row may be on a front: it ran, fits and has every objective."""
    return row.get("status") == "ok" and row.get("fits") is True and \
        all(_num(row.get(c)) is not None for c in columns)


@dataclass
class McuFront:
    """One MCU's points and Pareto front."""

    mcu: str
    objectives: list[tuple[str, str]]  # (column, 'min' | 'max')
    points: list[dict[str, Any]] = field(default_factory=list)   # drawable (x and y known)
    front: list[dict[str, Any]] = field(default_factory=list)    # sorted by x
    failed: int = 0
    not_drawn: int = 0  # not failed, but x or y unknown (a run that could not happen)
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [c for c, _ in self.objectives]


def mcu_fronts(rows: Sequence[dict[str, Any]], x: str = DEFAULT_X,
               y: str = DEFAULT_Y) -> list[McuFront]:
    """The front of each MCU (sorted by name) on x and y, plus test accuracy when every
    eligible point of the MCU has one."""
    by_mcu: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_mcu.setdefault(str(r.get("mcu")), []).append(r)
    out = []
    for mcu in sorted(by_mcu):
        group = by_mcu[mcu]
        cand = [r for r in group if eligible(r, (x, y))]
        objectives = [(x, sense(x)), (y, sense(y))]
        notes = []
        with_acc = [r for r in cand if _num(r.get(ACCURACY)) is not None]
        if ACCURACY not in (x, y) and with_acc:
            if len(with_acc) == len(cand):
                objectives.append((ACCURACY, "max"))
            else:
                notes.append(f"{ACCURACY} not an objective: {len(with_acc)} of {len(cand)} "
                             "points have it (select train points, e.g. --where "
                             "\"kind = 'train'\", for the 3-objective front)")
        cols = [c for c, _ in objectives]
        vecs = [[float(r[c]) for c in cols] for r in cand]
        front = [cand[i] for i in pareto_front(vecs, [s for _, s in objectives])]
        front.sort(key=lambda r: (float(r[x]), float(r[y])))
        f = McuFront(mcu, objectives, front=front, notes=notes)
        for r in group:
            if r.get("status") == "failed":
                f.failed += 1
            elif _num(r.get(x)) is None or _num(r.get(y)) is None:
                f.not_drawn += 1
            else:
                f.points.append(r)
        if f.failed:
            f.notes.append(f"{f.failed} failed point(s) skipped")
        if f.not_drawn:
            f.notes.append(f"{f.not_drawn} point(s) without {x} or {y} not drawn (e.g. does "
                           "not fit and could not even run hypothetically)")
        out.append(f)
    return out


def point_label(row: dict[str, Any], with_acc: bool = False) -> str:
    """What a point is, short: model, kind, λ, rounding (and accuracy)."""
    lam = row.get("lambda_min")
    parts = [str(row.get("model")), str(row.get("kind") or "")]
    if lam is not None:
        parts.append(f"λ={float(lam):g}")
    if row.get("rounding"):
        parts.append(str(row["rounding"]))
    if with_acc and _num(row.get(ACCURACY)) is not None:
        parts.append(f"acc {float(row[ACCURACY]):.3f}")
    return " ".join(p for p in parts if p)


def front_data(fronts: Sequence[McuFront]) -> list[dict[str, Any]]:
    """The fronts as JSON-able data (one entry per front point)."""
    out = []
    for f in fronts:
        for r in f.front:
            d = {k: r.get(k) for k in ("mcu", "key", "kind", "model", "lambda_min",
                                       "rounding", "latency_ms", "peak_ram_bytes",
                                       "test_acc")}
            for c in f.columns:
                d[c] = r.get(c)
            d["objectives"] = [f"{s} {c}" for c, s in f.objectives]
            out.append(d)
    return out


# ---------------------------------------------------------------------------- figures

def require_matplotlib():
    """pyplot on the Agg backend, or a one-line UsageError naming the extra."""
    from mcusim.render.plots import pyplot

    return pyplot("plots", "sweep")


def pareto_figure(f: McuFront):
    """One MCU's figure: every point faint, does-not-fit as red x, the front highlighted,
    joined as a step line (2 objectives) and annotated."""
    plt = require_matplotlib()
    x, y = f.objectives[0][0], f.objectives[1][0]
    sx, sy = axis_scale(x), axis_scale(y)
    three = len(f.objectives) == 3
    numbered = len(f.front) > DIRECT_LABELS  # dense fronts: numbers and a key at the side
    fig, ax = plt.subplots(figsize=(10.0 if numbered else 7.2, 4.8))
    fits = [r for r in f.points if r.get("fits") is not False and r.get("status") == "ok"]
    nofit = [r for r in f.points if not (r.get("fits") is not False
                                         and r.get("status") == "ok")]
    if fits:
        ax.scatter([r[x] / sx for r in fits], [r[y] / sy for r in fits], s=28,
                   color="0.55", alpha=0.45, label=f"points ({len(fits)})", zorder=2)
    if nofit:
        ax.scatter([r[x] / sx for r in nofit], [r[y] / sy for r in nofit], s=48,
                   marker="x", color="#d62728", linewidths=1.5,
                   label=f"does not fit ({len(nofit)})", zorder=3)
    if f.front:
        fx = [r[x] / sx for r in f.front]
        fy = [r[y] / sy for r in f.front]
        if three:
            sc = ax.scatter(fx, fy, s=60, c=[r[ACCURACY] for r in f.front], cmap="viridis",
                            edgecolors="black", label=f"Pareto front ({len(fx)})", zorder=4)
            fig.colorbar(sc, ax=ax, label="test accuracy")
        else:
            ax.step(fx, fy, where="post", color="#1f77b4", linewidth=1.5, zorder=3)
            ax.scatter(fx, fy, s=60, color="#1f77b4", edgecolors="black",
                       label=f"Pareto front ({len(fx)})", zorder=4)
        key = []
        for i, (r, px, py) in enumerate(zip(f.front, fx, fy, strict=True)):
            label = point_label(r, with_acc=three)
            if numbered:
                ax.annotate(str(i + 1), (px, py), xytext=(5, 4), textcoords="offset points",
                            fontsize=7, color="#0b3d66", weight="bold")
                key.append(f"{i + 1:>2}  {label}")
            else:
                ax.annotate(label, (px, py), xytext=(6, 6 if i % 2 == 0 else -12),
                            textcoords="offset points", fontsize=7, color="#0b3d66")
        if numbered:
            if len(key) > KEY_LINES:
                key = [*key[:KEY_LINES], f"    ... {len(key) - KEY_LINES} more (--json)"]
            fig.text(0.665, 0.93, "front, by " + axis_label(x).split(" (")[0] + ":\n" +
                     "\n".join(key), fontsize=6.5, va="top", ha="left", family="monospace",
                     color="#0b3d66")
    if not f.points:
        ax.text(0.5, 0.5, "no point to draw", transform=ax.transAxes, ha="center")
    better = ", ".join(f"{'higher' if s == 'max' else 'lower'} {axis_label(c).split(' (')[0]}"
                       for c, s in f.objectives)
    ax.set_title(f"{f.mcu}: Pareto front\n({better} is better)", fontsize=10)
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.12)  # room for the front's labels
    if f.points:
        ax.legend(fontsize=8, loc="best")
    if f.notes:
        fig.text(0.01, 0.005, "; ".join(f.notes), fontsize=6.5, color="0.35", ha="left",
                 va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.03 if f.notes else 0, 0.66 if numbered else 1, 1))
    return fig


def file_stem(mcu: str) -> str:
    """A file name part from an MCU name (user catalogs may name MCUs freely)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", mcu).strip("._") or "mcu"


def write_pareto(fronts: Sequence[McuFront], directory: str | Path) -> list[Path]:
    """pareto-<MCU>.png and .svg per MCU in `directory` (created)."""
    plt = require_matplotlib()
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"-o {out}: cannot create it: {e.strerror}") from None
    paths: list[Path] = []
    used: set[str] = set()
    for f in fronts:
        stem = f"pareto-{file_stem(f.mcu)}"
        while stem in used:  # two MCU names that sanitize alike
            stem += "_"
        used.add(stem)
        fig = pareto_figure(f)
        try:
            for ext in ("png", "svg"):
                p = out / f"{stem}.{ext}"
                fig.savefig(p, dpi=120)
                paths.append(p)
        except OSError as e:
            raise UsageError(f"-o {out}: cannot write: {e.strerror}") from None
        finally:
            plt.close(fig)
    return paths


def pareto_svg(f: McuFront) -> str:
    """The figure as an inline <svg> element (text as text: small, no fonts embedded)."""
    plt = require_matplotlib()
    import matplotlib

    fig = pareto_figure(f)
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f.mcu}):
        fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]
