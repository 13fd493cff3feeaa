"""Tables of the results database: `mcusim results` (the stored points) and `mcusim
compare` (what moved between two result sets).  Figures in human units (render.units);
the tables stack their columns (render.layout.Stack) so they stay readable at 80 columns.
JSON, CSV and Parquet keep the raw figures; these functions only make text for people.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from mcusim.render.layout import Stack, esc
from mcusim.render.units import DASH, fmt_bytes, fmt_count, fmt_energy, fmt_ms, sig
from mcusim.results.compare import Comparison, Violation, label
from mcusim.results.store import STATUSES

#: what `mcusim results` shows by default (test_acc joins when a row has it)
SUMMARY: tuple[str, ...] = ("key", "kind", "model", "mcu", "lambda_min", "rounding",
                            "batch_size", "status", "latency_ms", "energy_mj",
                            "peak_ram_bytes", "flash_bytes", "fits")
HEADERS = {"lambda_min": "λ_min", "lambda_max": "λ_max", "batch_size": "batch",
           "latency_ms": "latency", "energy_mj": "energy", "peak_ram_bytes": "peak RAM",
           "flash_bytes": "flash", "stack_bytes": "stack", "test_acc": "test acc",
           "train_acc": "train acc", "clock_hz": "clock"}
KEY_HEX = 12  # the key as the tables show it
_RIGHT = ("lambda_min", "lambda_max", "batch_size")
#: columns of prose or long names, wrapped at spaces rather than widening the table
FREE_TEXT = frozenset({"error", "model_ref", "trainable", "worker", "inputs"})


def summary_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The default columns: SUMMARY, plus test_acc when any row has one."""
    cols = list(SUMMARY)
    if any(r.get("test_acc") is not None for r in rows):
        cols.append("test_acc")
    return cols


def header(column: str) -> str:
    return HEADERS.get(column, column)


def value_text(column: str, v: Any) -> str:
    """One figure as a table cell: human units, '-' when unknown."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return DASH
    if column in ("key", "match_key") and isinstance(v, str):
        return v[:KEY_HEX]
    if isinstance(v, bool):
        return "yes" if v else "no"
    if column.endswith("_ms") and isinstance(v, (int, float)):
        return fmt_ms(v)
    if column.endswith("_mj") and isinstance(v, (int, float)):
        return fmt_energy(v)
    if column.endswith("_bytes") and isinstance(v, (int, float)):
        return fmt_bytes(int(v))
    if column.endswith("cycles") and isinstance(v, (int, float)):
        return fmt_count(v)
    if column.endswith("_acc") and isinstance(v, (int, float)):
        return f"{100 * v:.1f}%"
    if column.startswith("lambda_") and isinstance(v, (int, float)):
        return f"{v:g}"
    if isinstance(v, float):
        return sig(v) if abs(v) >= 1 or v == 0 else f"{v:g}"
    if isinstance(v, (dict, list)):
        return f"({len(v)} entries)"
    return str(v)


def _justify(column: str, rows: Sequence[dict[str, Any]]) -> str:
    if column in _RIGHT:
        return "right"
    nums = [r.get(column) for r in rows if r.get(column) is not None]
    return "right" if nums and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                   for v in nums) else "left"


def status_counts(rows: Sequence[dict[str, Any]]) -> str:
    """'18 points: 15 ok, 2 does-not-fit, 1 failed' (statuses in their usual order)."""
    counts = Counter(str(r.get("status")) for r in rows)
    order = [s for s in STATUSES if counts[s]] + sorted(s for s in counts if s not in STATUSES)
    parts = ", ".join(f"{counts[s]} {s}" for s in order)
    n = len(rows)
    return f"{n} point{'s' if n != 1 else ''}" + (f": {parts}" if parts else "")


def results_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str,
                  footer: str) -> Stack:
    """The stored points, one row each, `columns` in human units; `footer` under it."""
    t = Stack(title=esc(title), caption=esc(footer), key=1)
    for c in columns:
        t.add_column(header(c), justify=_justify(c, rows), wrap=c in FREE_TEXT)
    status_style = {"does-not-fit": "yellow", "failed": "red"}
    for r in rows:
        t.add_row(*[esc(value_text(c, r.get(c))) for c in columns],
                  style=status_style.get(str(r.get("status"))))
    return t


def markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-flavoured table: a header row, the alignment row, one line per point."""

    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(header(c)) for c in columns) + " |",
             "|" + "|".join("---:" if _justify(c, rows) == "right" else "---"
                            for c in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(cell(value_text(c, r.get(c))) for c in columns)
                     + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- compare


def rel_text(rel: float | None) -> str:
    """A relative change: '+5.00%', '-0.3%', 'from 0' (from a zero BASE)."""
    if rel is None:
        return ""
    if math.isinf(rel):
        return "from 0"
    pct = 100 * rel
    digits = 2 if abs(pct) < 10 else 1
    return f"{pct:+.{digits}f}%"


def compare_view(cmp: Comparison) -> RenderableType:
    """What moved (sorted by the largest relative change), what is missing and added,
    and the counts: the table `mcusim compare` prints."""
    parts: list[RenderableType] = []
    if cmp.changed:
        t = Stack(title="What moved (BASE → NEW)", key=1)
        t.add_column("point", wrap=True, min_width=24)
        t.add_column("figure")
        t.add_column("BASE", justify="right")
        t.add_column("NEW", justify="right")
        t.add_column("change", justify="right")
        for i, c in enumerate(cmp.changed):
            first = i == 0 or cmp.changed[i - 1].match_key != c.match_key
            last = i + 1 == len(cmp.changed) or cmp.changed[i + 1].match_key != c.match_key
            style = "red" if c.metric == "status" else None
            t.add_row(esc(c.label) if first else "", header(c.metric),
                      esc(value_text(c.metric, c.base)), esc(value_text(c.metric, c.new)),
                      rel_text(c.rel), style=style, end_section=last)
        parts.append(t)
    for rows, title in ((cmp.missing, "Only in BASE (missing in NEW)"),
                        (cmp.added, "Only in NEW (added)")):
        if not rows:
            continue
        t = Stack(title=title, key=1)
        t.add_column("point", wrap=True, min_width=24)
        for col in ("status", "latency_ms", "peak_ram_bytes"):
            t.add_column(header(col), justify="left" if col == "status" else "right")
        for r in rows:
            t.add_row(esc(label(r)), *[esc(value_text(c, r.get(c)))
                                       for c in ("status", "latency_ms", "peak_ram_bytes")])
        parts.append(t)
    parts.append(Text(summary_text(cmp)))
    return Group(*parts)


def summary_text(cmp: Comparison) -> str:
    """The counts, including the figures not compared for want of a value."""
    changed = cmp.changed_points()
    text = (f"{cmp.paired} paired point{'s' if cmp.paired != 1 else ''}: "
            f"{cmp.identical} identical, {changed} changed; {len(cmp.missing)} only in BASE "
            f"(missing in NEW), {len(cmp.added)} only in NEW (added).")
    if cmp.not_compared:
        skipped = ", ".join(f"{header(m)} {n}" for m, n in cmp.not_compared.items())
        text += f" Not compared, no value in BASE or NEW: {skipped}."
    if cmp.rules:
        rules = ", ".join(r.text for r in cmp.rules)
        text += (f" --fail-if {rules}: " + ("passed." if cmp.ok else
                                           f"{len(cmp.violations)} crossing(s)."))
    return text


def violation_line(v: Violation) -> str:
    """One crossing of a --fail-if rule, on one line."""
    who = f"{v.label} (match_key {v.match_key[:KEY_HEX]})"
    if v.rule.kind == "missing":
        return f"{who}: missing in NEW, crosses --fail-if missing"
    if v.rule.kind == "fits":
        return f"{who}: fits: {v.base} → {v.new}, crosses --fail-if fits"
    metric = v.metric or ""
    d = v.change
    change = (f"{d:+.4g}" if metric.endswith("_acc") or d is None else
              ("+" if d > 0 else "") + value_text(metric, d))
    return (f"{who}: {metric} {value_text(metric, v.base)} → {value_text(metric, v.new)} "
            f"({rel_text(v.rel)}, {change}), crosses --fail-if {v.rule.text}")
