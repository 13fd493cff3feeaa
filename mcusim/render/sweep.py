"""Rich tables and lines for `mcusim sweep`.  Pure functions: data in, renderable out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcusim.render.layout import Stack, esc
from mcusim.render.units import fmt_bytes, fmt_energy, fmt_hz, fmt_ms, fmt_time

STATUS_STYLE = {"ok": "green", "does-not-fit": "red", "failed": "bold red",
                "stored": "dim", "to run": ""}


def sweep_table(rows: Sequence[dict[str, Any]], title: str) -> Stack:
    """One line per point: what it is, and what it cost."""
    # a column whose value every point shares goes into the title instead
    same = {c: len({r.get(c) for r in rows}) == 1 for c in ("kind", "model", "batch_size")}
    shared = [str(rows[0][c]) if c != "batch_size" else f"batch {rows[0][c]}"
              for c in ("kind", "model", "batch_size") if rows and same[c]]
    t = Stack(title=esc(title + (f" ({', '.join(shared)})" if shared else "")),
              key=1 + (not same["kind"]) + (not same["model"]))
    ran = any("latency_ms" in r for r in rows)
    acc = any(r.get("test_acc") is not None for r in rows)
    cols = [c for c, k in (("kind", "kind"), ("model", "model")) if not same[k]]
    cols += ["MCU", "clock", "λ", "rounding"] + ([] if same["batch_size"] else ["batch"])
    cols += ["status"]
    if ran:
        cols += ["time/\nsample", "energy/\nsample", "peak\nRAM", "flash"]
    if acc:
        cols += ["test\nacc"]
    for c in cols:
        t.add_column(c, justify="right" if c in ("clock", "λ", "batch") or "\n" in c
                     else "left")
    for r in rows:
        lam = r.get("lambda_min")
        lam_text = "" if lam is None else (f"{lam:g}" if lam == r.get("lambda_max", lam)
                                           else f"{lam:g}–{r['lambda_max']:g}")
        status = r.get("status", "")
        style = STATUS_STYLE.get(status, "")
        hypo = "*" if r.get("hypothetical") else ""
        status = status.replace("-", " ")
        cells = [esc(r[c]) for c in ("kind", "model") if not same[c]]
        cells += [esc(r["mcu"]), fmt_hz(r["clock_hz"]) if r.get("clock_hz") else "",
                  lam_text, esc(r.get("rounding") or "")]
        cells += [] if same["batch_size"] else [str(r.get("batch_size") or "")]
        cells += [f"[{style}]{esc(status)}[/{style}]" if style else esc(status)]
        if ran:
            cells += [fmt_ms(r["latency_ms"]) + hypo if r.get("latency_ms") is not None
                      else "",
                      fmt_energy(r["energy_mj"]) + hypo if r.get("energy_mj") is not None
                      else "",
                      fmt_bytes(r["peak_ram_bytes"]) if r.get("peak_ram_bytes") else "",
                      fmt_bytes(r["flash_bytes"]) if r.get("flash_bytes") else ""]
        if acc:
            cells.append("" if r.get("test_acc") is None else f"{100 * r['test_acc']:.1f} %")
        t.add_row(*cells)
    if any(r.get("hypothetical") for r in rows):
        t.caption = ("* does not fit: the cost as if the missing RAM existed (the buffers "
                     "without room in a virtual bank with the data bank's timing)")
    return t


def progress_line(state: Any) -> str:
    """`sweep: 12/100 done (1 failed, 3 do not fit), 88 remaining, ETA 4 min` or the phase."""
    if state.message:
        return f"sweep: {state.message}"
    eta = state.eta_s()
    text = f"sweep: {state.done}/{state.to_run} done"
    extra = [f"{state.failed} failed"] if state.failed else []
    if state.does_not_fit:
        extra.append(f"{state.does_not_fit} do not fit")
    if extra:
        text += f" ({', '.join(extra)})"
    text += f", {state.remaining} remaining"
    if state.skipped:
        text += f", {state.skipped} already stored"
    if eta is not None and state.remaining:
        text += f", ETA {fmt_time(eta)}"
    return text


def sweep_summary(run: Any) -> str:
    """The run in one line: counts, where it is stored, and the throughput."""
    p = run.progress
    if not p.done:
        return (f"{p.total} points, all already stored: nothing to run (run {run.run_id}, "
                f"{run.store})")
    parts = [f"{p.total} points: {p.done} ran ({p.failed} failed, {p.does_not_fit} do not "
             f"fit), {p.skipped} already stored"]
    if p.done:
        rate = p.done / max(run.wall_s, 1e-9) * 60
        parts.append(f"{run.workers} worker(s) on {run.scheduler}, {fmt_time(run.wall_s)} "
                     f"({rate:.1f} points/min, images built in {fmt_time(run.build_s)})")
    parts.append(f"run {run.run_id} in {run.store}")
    return "; ".join(parts)
