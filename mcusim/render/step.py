"""Rich tables for training-step reports (mcusim.analyze.StepReport).  Data in, tables out.

Every table is a `Stack` (mcusim.render.layout): at 80 columns the MCU columns are stacked
into several tables rather than shortened."""

from __future__ import annotations

from collections.abc import Sequence

from mcusim.analyze import OVERHEAD_LAYER, PHASES, StepReport
from mcusim.render.console import SHORT_CORE, kib, mhz
from mcusim.render.layout import Stack, esc, unbroken
from mcusim.render.units import fmt_count, fmt_cycles_time, fmt_energy, fmt_time_range


def _ms(cycles: float | None, clock: int) -> str:
    return fmt_cycles_time(cycles, clock)


def _verdict(r: StepReport) -> str:
    return "[green]fits[/green]" if r.fits else "[red]does not fit[/red]"


def _mcu_header(r: StepReport) -> str:
    return f"{esc(r.mcu)}\n{SHORT_CORE.get(r.core, esc(r.core))} {mhz(r.clock_hz)}"


def toolchains(reports: Sequence[StepReport]) -> str:
    """The compiler(s) behind the reports: 'gcc 12.2.1' (cycles and flash depend on it)."""
    names: list[str] = []
    for r in reports:
        if r.toolchain not in names:
            names.append(r.toolchain)
    return ", ".join(unbroken(n) for n in names)


def summary_table(reports: Sequence[StepReport]) -> Stack:
    """One column per MCU: time, energy, memory and the budget verdict."""
    first = reports[0]
    t = Stack(title=f"{esc(first.model)}: one training step (batch {first.batch_size}, "
                    f"λ {first.lambda_min:g}..{first.lambda_max:g}, {esc(first.rounding)}), "
                    f"built with {toolchains(reports)}")
    t.add_column("", style="bold")
    for r in reports:
        t.add_column(_mcu_header(r), justify="right")

    def row(label: str, values: list[str], **kw: object) -> None:
        t.add_row(label, *values, **kw)  # type: ignore[arg-type]

    if any(r.hypothetical for r in reports):
        row("costs", [_hypothetical(r) if r.hypothetical else
                      "simulated" if r.cycles is not None else "-" for r in reports])
    row("cycles / sample", [fmt_count(r.cycles) for r in reports])
    row("latency / sample", [_ms(r.cycles, r.clock_hz) for r in reports])
    row("  range (no update)", [
        fmt_time_range(min(r.sample_cycles) / r.clock_hz, max(r.sample_cycles) / r.clock_hz)
        if r.sample_cycles else "-" for r in reports])
    row("energy / sample", [fmt_energy(r.energy_mj) for r in reports])
    row("  energy basis", [_basis(r) for r in reports])
    row("latency / mini-batch", [_ms(r.batch_cycles, r.clock_hz) for r in reports],
        end_section=True)
    row("peak RAM", [kib(r.peak_ram_bytes) for r in reports])
    row("  budget", [kib(r.ram_budget) for r in reports])
    row("  headroom", [_ram_headroom(r) for r in reports])
    row("flash", [kib(r.flash_bytes) for r in reports])
    row("  budget", [kib(r.flash_budget) for r in reports])
    row("  headroom", [_signed(r.flash_budget - r.flash_bytes) for r in reports],
        end_section=True)
    row("budget", [_verdict(r) for r in reports])
    n = max(r.samples for r in reports)
    src = f"the {esc(first.dataset)} training set" if first.dataset else "seeded random data"
    t.caption = (f"averaged over {n} samples of {src}; " if n else
                 "not simulated: it does not fit; ") + (
                 f"compiler {toolchains(reports)}; per sample = forward + loss + backward "
                 "+ bookkeeping + update / batch; energy on "
                 + "; ".join(f"{esc(r.mcu)}: {esc(r.energy_basis.get('label', '?'))}"
                             for r in reports))
    return t


def _basis(r: StepReport) -> str:
    """The energy figure's basis, short: chip or board, * when V or I is unconfirmed."""
    b = r.energy_basis
    return str(b.get("basis", "?")) + ("*" if b.get("unconfirmed") else "")


def _signed(n: int) -> str:
    return kib(n) if n >= 0 else f"[red]-{kib(-n)}[/red]"


def _hypothetical(r: StepReport) -> str:
    """The label of costs simulated with a virtual bank for what fits no real one."""
    return (f"[yellow]hypothetical:\nas if RAM existed\n(+{kib(r.virtual_bank_bytes)} "
            "virtual bank)[/yellow]")


def _ram_headroom(r: StepReport) -> str:
    """RAM headroom, never positive when the RAM does not fit: then why, in short."""
    if r.ram_fits:
        return _signed(r.ram_headroom)
    unplaced = r.unplaced
    if not unplaced:  # the measured stack overflows the space kept for it
        return f"[red]stack over by {kib(-r.ram_headroom)}[/red]"
    why = ("RAM short" if r.ram_shortfall else
           f"no bank holds {esc(unplaced[0].name)}" if len(unplaced) == 1 else
           f"{len(unplaced)} buffers\nfit no bank")
    return f"[red]-{kib(-r.ram_headroom)}:\n{why}[/red]"


def phase_table(reports: Sequence[StepReport]) -> Stack:
    """Layer x phase rows: cycles and time per sample (one MCU) or time and % per MCU."""
    single = len(reports) == 1
    title = "where the time goes, per sample"
    if single and reports[0].hypothetical:
        title += (" (hypothetical: as if RAM existed, "
                  f"+{kib(reports[0].virtual_bank_bytes)} virtual bank)")
    t = Stack(title=title, key=2)
    t.add_column("phase")
    t.add_column("layer")
    if single:
        for col in ("cycles", "range", "time", "%", "cycles/MAC"):
            t.add_column(col, justify="right")
    else:
        for r in reports:
            t.add_column(esc(r.mcu) + ("\n(hypothetical)" if r.hypothetical else ""),
                         justify="right")
    keys: list[tuple[str, str]] = []
    for r in reports:
        for row in r.rows:
            if (row.phase, row.layer) not in keys:
                keys.append((row.phase, row.layer))
    order = {p: i for i, p in enumerate(PHASES)}
    keys.sort(key=lambda k: (order.get(k[0], 9), k[1] == OVERHEAD_LAYER))
    for n, (phase, layer) in enumerate(keys):
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
                    f"{fmt_count(row.cycles_min)}–{fmt_count(row.cycles_max)}"
                per_mac = f"{row.cycles / row.macs:.2f}" if row.macs else ""
                cells += [fmt_count(row.cycles), spread, _ms(row.cycles, r.clock_hz),
                          f"{pct:.1f}", per_mac]
            else:
                cells.append(f"{_ms(row.cycles, r.clock_hz)} ({pct:.0f} %)")
        style = "dim" if layer == OVERHEAD_LAYER else None
        first_of_phase = n == 0 or keys[n - 1][0] != phase
        last_of_phase = n == len(keys) - 1 or keys[n + 1][0] != phase
        t.add_row(esc(phase) if first_of_phase else "", esc(layer), *cells, style=style,
                  end_section=last_of_phase)
    t.caption = (f"{esc(OVERHEAD_LAYER)}: the driver's argument loads and BL per kernel call "
                 "(modelled); update = per-sample bookkeeping + the batch's update / batch; "
                 + ("cycles/MAC: per multiply-accumulate at λ = 1 (backward: error "
                    "propagation + weight gradients); " if single else "")
                 + f"compiler {toolchains(reports)}")
    return t


def memory_table(reports: Sequence[StepReport]) -> Stack:
    t = Stack(title="memory", key=2)
    t.add_column("")
    t.add_column("part", wrap=True)
    for r in reports:
        t.add_column(esc(r.mcu), justify="right")
    for kind, attr in (("RAM", "ram"), ("flash", "flash")):
        parts: list[str] = []
        for r in reports:
            for p in getattr(r, attr):
                if p not in parts:
                    parts.append(p)
        for i, part in enumerate(parts):
            t.add_row(kind if i == 0 else "", esc(part),
                      *[kib(getattr(r, attr).get(part, 0)) for r in reports])
        total = "peak_ram_bytes" if attr == "ram" else "flash_bytes"
        budget = "ram_budget" if attr == "ram" else "flash_budget"
        t.add_row("", "[bold]total[/bold]",
                  *[f"[bold]{kib(getattr(r, total))}[/bold]" for r in reports])
        t.add_row("", "budget", *[kib(getattr(r, budget)) for r in reports],
                  end_section=attr == "flash")
        if attr == "ram":
            t.add_row("", "RAM banks", *[
                "\n".join(esc(b) for b in r.ram_region.split(" + ")) for r in reports],
                end_section=True)
    if any(len(r.ram_by_region) > 1 for r in reports):
        t.add_row("", "RAM by bank", *["\n".join(
            f"{esc(k)} {kib(v)}" + (" (hypothetical)" if r.virtual_bank is not None and
                                   k == r.virtual_bank.name else "")
            for k, v in r.ram_by_region.items()) for r in reports])
    if any(r.unplaced for r in reports):
        t.add_row("", "fits no RAM bank", *[_unplaced_cell(r.unplaced) for r in reports])
    t.add_row("", "arena planned / measured", *[
        f"{kib(r.arena_predicted)} / " + (kib(r.arena_measured) if r.arena_measured
                                          is not None else "-") for r in reports])
    return t


UNPLACED_SHOWN = 8  # the largest buffers that fit no bank; the rest as a count (--json: all)


def _unplaced_cell(unplaced) -> str:
    if not unplaced:
        return "-"
    big = sorted(unplaced, key=lambda u: -u.nbytes)
    lines = [f"[red]{esc(u.name)} {kib(u.nbytes)}[/red]" for u in big[:UNPLACED_SHOWN]]
    rest = big[UNPLACED_SHOWN:]
    if rest:
        lines.append(f"[red]{len(rest):,} more, {kib(sum(u.nbytes for u in rest))}[/red] "
                     "(--json lists all)")
    return "\n".join(lines)
