"""Rich tables for training-step reports (mcusim.analyze.StepReport).  Data in, tables out."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from mcusim.analyze import OVERHEAD_LAYER, PHASES, StepReport
from mcusim.render.console import SHORT_CORE, kib, mhz


def _ms(cycles: float | None, clock: int) -> str:
    if cycles is None:
        return "-"
    ms = cycles / clock * 1e3
    return f"{ms:.3g} ms" if ms >= 0.1 else f"{ms * 1e3:.3g} µs"


def _verdict(r: StepReport) -> str:
    return "[green]fits[/green]" if r.fits else "[red]does not fit[/red]"


def summary_table(reports: Sequence[StepReport]) -> Table:
    """One column per MCU: time, energy, memory and the budget verdict."""
    first = reports[0]
    t = Table(title=f"{first.model}: one training step (batch {first.batch_size}, "
                    f"λ {first.lambda_min:g}..{first.lambda_max:g}, {first.rounding})",
              header_style="bold")
    t.add_column("", style="bold", no_wrap=True)
    for r in reports:
        t.add_column(f"{r.mcu}\n{SHORT_CORE.get(r.core, r.core)} {mhz(r.clock_hz)}",
                     justify="right", no_wrap=True)

    def row(label: str, values: list[str]) -> None:
        t.add_row(label, *values)

    row("cycles / sample", [f"{r.cycles:,.0f}" if r.cycles is not None else "-"
                            for r in reports])
    row("latency / sample", [_ms(r.cycles, r.clock_hz) for r in reports])
    row("  min … max (no update)", [
        f"{_ms(min(r.sample_cycles), r.clock_hz)} … {_ms(max(r.sample_cycles), r.clock_hz)}"
        if r.sample_cycles else "-" for r in reports])
    row("energy / sample", [f"{r.energy_mj:.3g} mJ" if r.energy_mj is not None else "-"
                            for r in reports])
    row("latency / mini-batch", [_ms(r.batch_cycles, r.clock_hz) for r in reports])
    row("peak RAM", [f"{kib(r.peak_ram_bytes)} of {kib(r.ram_budget)}" for r in reports])
    row("  headroom", [_signed(r.ram_budget - r.peak_ram_bytes) for r in reports])
    row("flash", [f"{kib(r.flash_bytes)} of {kib(r.flash_budget)}" for r in reports])
    row("  headroom", [_signed(r.flash_budget - r.flash_bytes) for r in reports])
    row("budget", [_verdict(r) for r in reports])
    n = max(r.samples for r in reports)
    src = f"the {first.dataset} training set" if first.dataset else "seeded random data"
    t.caption = (f"averaged over {n} samples of {src}; " if n else
                 "not simulated: it does not fit; ") + (
                 f"{first.toolchain}; per sample = forward + loss + backward + bookkeeping "
                 "+ update / batch")
    return t


def _signed(n: int) -> str:
    return kib(n) if n >= 0 else f"[red]-{kib(-n)}[/red]"


def phase_table(reports: Sequence[StepReport]) -> Table:
    """Layer x phase rows: cycles and ms per sample (one MCU) or ms and % per MCU."""
    single = len(reports) == 1
    t = Table(title="where the time goes, per sample", header_style="bold")
    t.add_column("phase", no_wrap=True)
    t.add_column("layer", no_wrap=True)
    if single:
        for col in ("cycles", "min … max", "time", "%"):
            t.add_column(col, justify="right", no_wrap=True)
    else:
        for r in reports:
            t.add_column(r.mcu, justify="right", no_wrap=True)
    keys: list[tuple[str, str]] = []
    for r in reports:
        for row in r.rows:
            if (row.phase, row.layer) not in keys:
                keys.append((row.phase, row.layer))
    order = {p: i for i, p in enumerate(PHASES)}
    keys.sort(key=lambda k: (order.get(k[0], 9), k[1] == OVERHEAD_LAYER))
    for phase, layer in keys:
        cells = []
        for r in reports:
            row = next((x for x in r.rows if x.phase == phase and x.layer == layer), None)
            total = r.cycles or 1.0
            if row is None:
                cells.append("-")
                continue
            pct = 100 * row.cycles / total
            if single:
                spread = "" if row.cycles_max - row.cycles_min < 0.5 else \
                    f"{row.cycles_min:,.0f} … {row.cycles_max:,.0f}"
                cells += [f"{row.cycles:,.0f}", spread, _ms(row.cycles, r.clock_hz),
                          f"{pct:.1f}"]
            else:
                cells.append(f"{_ms(row.cycles, r.clock_hz)} ({pct:.0f} %)")
        style = "dim" if layer == OVERHEAD_LAYER else None
        t.add_row(phase, layer, *cells, style=style)
    t.caption = (f"{OVERHEAD_LAYER}: the driver's argument loads and BL per kernel call "
                 "(modelled); update = per-sample bookkeeping + the batch's update / batch")
    return t


def memory_table(reports: Sequence[StepReport]) -> Table:
    t = Table(title="memory", header_style="bold")
    t.add_column("", no_wrap=True)
    t.add_column("part", no_wrap=True)
    for r in reports:
        t.add_column(r.mcu, justify="right", no_wrap=True)
    for kind, attr in (("RAM", "ram"), ("flash", "flash")):
        parts: list[str] = []
        for r in reports:
            for p in getattr(r, attr):
                if p not in parts:
                    parts.append(p)
        for i, part in enumerate(parts):
            t.add_row(kind if i == 0 else "", part,
                      *[kib(getattr(r, attr).get(part, 0)) for r in reports])
        total = "peak_ram_bytes" if attr == "ram" else "flash_bytes"
        budget = "ram_budget" if attr == "ram" else "flash_budget"
        t.add_row("", "[bold]total[/bold]",
                  *[f"[bold]{kib(getattr(r, total))}[/bold]" for r in reports])
        t.add_row("", "budget", *[
            f"{kib(getattr(r, budget))}" + (f" ({r.ram_region})" if attr == "ram" else "")
            for r in reports], end_section=True)
    if any(len(r.ram_by_region) > 1 for r in reports):
        t.add_row("", "RAM by bank", *[", ".join(f"{k} {kib(v)}" for k, v in
                                                 r.ram_by_region.items()) for r in reports])
    t.add_row("", "arena planned / measured", *[
        f"{kib(r.arena_predicted)} / " + (kib(r.arena_measured) if r.arena_measured
                                          is not None else "-") for r in reports])
    return t
