"""Rich tables for the terminal.  Pure functions: data in, renderable out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from mcusim.catalog import Mcu


def kib(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MB"
    if n % 1024 == 0:
        return f"{n >> 10} KB"
    return f"{n / 1024:.1f} KB"


def mhz(hz: int) -> str:
    return f"{hz / 1e6:g} MHz"


def _mark(mcu: Mcu, field: str, text: str) -> str:
    return f"{text}*" if mcu.is_unconfirmed(field) else text


SHORT_CORE = {"m0plus": "M0+", "m4": "M4", "m7": "M7"}


def mcu_table(mcus: Sequence[Mcu], wide: bool = False) -> Table:
    """The catalog; `wide` adds the board and the RAM regions."""
    t = Table(title="MCU catalog", header_style="bold")
    cols = [("MCU", "left"), ("core", "left"), ("clock", "right"), ("FPU", "left"),
            ("flash", "right"), ("RAM", "right"), ("WS", "right"), ("flash cache", "left"),
            ("V", "right"), ("I run", "right")]
    if wide:
        cols[1:1] = [("board", "left")]
        cols.append(("RAM regions", "left"))
    for col, just in cols:
        t.add_column(col, justify=just, no_wrap=col in ("MCU", "core", "clock"))  # type: ignore[arg-type]
    for m in mcus:
        core = SHORT_CORE.get(m.core.key, m.core.name)
        if m.multiplier == "small":
            core += " (32-cycle MUL)"
        cache = "-"
        if m.flash_cache:
            cache = f"{m.flash_cache.kind} {kib(m.flash_cache.size_bytes)}"
        row = [m.name, _mark(m, "core", core), _mark(m, "clock_hz", mhz(m.clock_hz)), m.fpu,
               kib(m.flash_bytes), kib(m.sram_bytes),
               _mark(m, "flash_wait_states", str(m.flash_wait_states)),
               _mark(m, "flash_cache", cache), _mark(m, "voltage_v", f"{m.voltage_v:g}"),
               _mark(m, "run_current_ma", f"{m.run_current_ma:.3g} mA")]
        if wide:
            row[1:1] = [m.board]
            row.append(", ".join(f"{r.name} {kib(r.size)}" for r in m.regions
                                 if r.kind != "flash"))
        t.add_row(*row)
    return t


def build_table(results: Sequence[Any], toolchain: Any) -> Table:
    t = Table(title=f"kernel images ({toolchain.kind} {toolchain.version})", header_style="bold")
    for col in ("core", "MCU", "text", "rodata", "data", "bss", "status"):
        t.add_column(col, justify="right" if col in ("text", "rodata", "data", "bss") else "left",
                     no_wrap=True)
    for r in results:
        t.add_row(SHORT_CORE.get(r.core, r.core), r.mcu, str(r.sizes["text"]),
                  str(r.sizes["rodata"]), str(r.sizes["data"]), str(r.sizes["bss"]),
                  "cached" if r.cached else "built")
    return t


def build_paths(results: Sequence[Any]) -> str:
    """Where the images are, one per line, plus the flags of the first."""
    lines = [f"{r.mcu}: {r.elf}" for r in results]
    if results:
        lines.append("flags: " + " ".join(results[0].cflags))
    return "\n".join(lines)


def run_table(data: dict[str, Any], mcu: Mcu) -> Table:
    t = Table(title=f"{data['function']} on {mcu.name} ({mcu.core.name})", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    ret = data["return"]
    t.add_row("return (r0)", f"{data['return_signed']}  (0x{ret:08x})")
    t.add_row("instructions", f"{data['instructions']:,}")
    if "cycles" in data:
        t.add_row("cycles", f"{data['cycles']:,}  (CPI {data['cpi']:.3f})")
        t.add_row("latency", f"{data['latency_ms']:.4g} ms at {mhz(mcu.clock_hz)}")
        t.add_row("energy", f"{data['energy_mj'] * 1e3:.4g} µJ  ({mcu.voltage_v:g} V, "
                  f"{mcu.run_current_ma:g} mA run current)")
        br = data["branches"]
        t.add_row("branches", f"{br['taken']:,} taken, {br['not_taken']:,} not taken"
                  + (f", {br['mispredicted']:,} mispredicted" if br["mispredicted"] else ""))
        for stream, st in data.get("cache", {}).items():
            t.add_row(f"flash {stream}", f"{st['accesses']:,} line accesses, "
                      f"{st['misses']:,} misses, {st['prefetched']:,} prefetched")
        model = data["model"]
        t.add_row("cost model", f"{model['name']} v{model['version']} ({model['table']})")
        t.add_row("memory", model["memory"]["description"])
        if data.get("unclassified"):
            t.add_row("unclassified", ", ".join(data["unclassified"][:8]))
    t.add_row("peak stack", f"{data['stack_bytes']} bytes")
    t.add_row("arguments", ", ".join(str(a) for a in data["args"]) or "-")
    t.add_row("image", str(data["elf"]))
    if data.get("producer"):
        t.add_row("compiler", data["producer"])
    return t


def class_table(data: dict[str, Any], top: int = 12) -> Table:
    """Cycles per instruction class of a run, largest first."""
    total = max(1, data["cycles"])
    t = Table(title="cycles by instruction class", header_style="bold")
    for col in ("class", "instructions", "cycles", "%"):
        t.add_column(col, justify="left" if col == "class" else "right", no_wrap=True)
    rows = list(data["cycles_by_class"].items())
    for cls, v in rows[:top]:
        t.add_row(cls, f"{v['count']:,}", f"{v['cycles']:,}", f"{100 * v['cycles'] / total:.1f}")
    if len(rows) > top:
        rest = sum(v["cycles"] for _, v in rows[top:])
        t.add_row(f"({len(rows) - top} more)", "", f"{rest:,}", f"{100 * rest / total:.1f}")
    n = len(data["model"]["assumptions"])
    t.caption = (f"{n} modelling assumptions are listed under model.assumptions of --json; "
                 f"the table: mcusim cost-model {data['core']}")
    return t


def cost_table(table: Any) -> Table:
    t = Table(title=f"{table.title} ({table.path.name}, v{table.version})",
              header_style="bold", show_lines=False)
    m7 = table.model == "m7"
    cols = ["class", "cycles"] + (["latency", "issue", "units"] if m7 else ["taken"]) + [
        "energy", "rule", "source", "status"]
    for col in cols:
        t.add_column(col, no_wrap=col in ("class", "cycles", "status"),
                     overflow="fold", ratio=3 if col == "rule" else None)
    for c in table.classes.values():
        cyc = f"{c.cycles:g}"
        if c.per_register:
            cyc = f"{c.cycles:g}+{c.per_register:g}N" if c.cycles else f"{c.per_register:g}N"
            if m7:
                cyc = "ceil(N/2)" if c.per_register == 0.5 else cyc
        row = [c.name, cyc]
        if m7:
            row += [str(c.latency), c.issue, ",".join(c.units)]
        else:
            row += [str(c.taken) if c.taken else "-"]
        status = c.status if c.status != "assumption" else "[yellow]assumption[/yellow]"
        row += [f"{c.energy:g}", c.rule, c.source, status]
        t.add_row(*row)
    return t


def parameter_table(table: Any) -> Table:
    t = Table(title="pipeline and memory rules", header_style="bold")
    for col in ("parameter", "value", "rule", "source", "status"):
        t.add_column(col, overflow="fold", no_wrap=col == "parameter")
    for name, p in table.parameters.items():
        if "value" in p:
            value = str(p["value"])
        else:
            value = ", ".join(f"{k}={v}" for k, v in p.items()
                              if k not in ("rule", "source", "status"))
        t.add_row(name, value, p["rule"], p["source"], p.get("status", ""))
    return t


def sources_table(table: Any) -> Table:
    t = Table(title="sources", header_style="bold", show_header=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    for key, text in table.sources.items():
        t.add_row(key, text)
    return t


def bench_table(rows: Sequence[Any], toolchain: Any) -> Table:
    t = Table(title="simulation speed: traced (cycle-counted) vs untraced Unicorn",
              header_style="bold")
    for col in ("MCU", "core", "workload", "instructions", "cycles", "untraced MIPS",
                "traced MIPS", "traced/untraced"):
        t.add_column(col, justify="left" if col in ("MCU", "core", "workload") else "right",
                     no_wrap=True)
    for r in rows:
        t.add_row(r.mcu, SHORT_CORE.get(r.core, r.core), r.workload, f"{r.instructions:,}",
                  f"{r.cycles:,}", f"{r.untraced_mips:.0f}", f"{r.traced_mips:.0f}",
                  f"{r.ratio:.2f}")
    t.caption = (f"{toolchain.kind} {toolchain.version}; best of {rows[0].repeats if rows else 0}"
                 f"; tracer: {rows[0].tracer if rows else '-'}; same binary, same run")
    return t


def demo_table(runs: Sequence[Any], toolchain: Any) -> Table:
    t = Table(title="uint8 fully connected forward: compiled Thumb code in Unicorn",
              header_style="bold")
    for col, just in (("MCU", "left"), ("core", "left"), ("clock", "right"), ("layer", "left"),
                      ("instructions", "right"), ("cycles", "right"), ("cycles/MAC", "right"),
                      ("latency", "right"), ("stack", "right"), ("vs numpy twin", "left")):
        t.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    for r in runs:
        t.add_row(r.mcu, SHORT_CORE.get(r.core, r.core), mhz(r.clock_hz), r.shape,
                  f"{r.instructions:,}", f"{r.cycles:,}", f"{r.cycles / r.macs:.2f}",
                  f"{r.latency_ms * 1e3:.1f} µs", f"{r.stack_bytes} B",
                  "[green]bit-exact[/green]" if r.bit_exact else "[red]MISMATCH[/red]")
    t.caption = (f"{toolchain.kind} {toolchain.version}; cycles from the per-core cost "
                 "models (`mcusim cost-model CORE`), cold flash caches")
    return t


def budget_table(model: str, results: Sequence[dict[str, Any]]) -> Table:
    t = Table(title=f"{model}: training-step memory budget", header_style="bold")
    for col in ("MCU", "core", "RAM needed", "RAM budget", "flash needed", "flash budget",
                "verdict"):
        t.add_column(col, justify="left" if col in ("MCU", "core", "verdict") else "right",
                     no_wrap=True)
    for o in results:
        verdict = "[green]fits[/green]" if o["fits"] else "[red]does not fit[/red]"
        t.add_row(o["mcu"], SHORT_CORE.get(o["core"], o["core"]), kib(o["peak_ram_bytes"]),
                  f"{kib(o['ram_budget_bytes'])} ({o['ram_region']})", kib(o["flash_bytes"]),
                  kib(o["flash_budget_bytes"]), verdict)
    t.caption = "RAM = kernel data + weights + gradients + statistics + records + planned " \
                "arena + measured stack (one sample and an update)"
    return t
