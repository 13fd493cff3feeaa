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
    t.add_row("peak stack", f"{data['stack_bytes']} bytes")
    t.add_row("arguments", ", ".join(str(a) for a in data["args"]) or "-")
    t.add_row("image", str(data["elf"]))
    if data.get("producer"):
        t.add_row("compiler", data["producer"])
    return t


def demo_table(runs: Sequence[Any], toolchain: Any) -> Table:
    t = Table(title="uint8 fully connected forward: compiled Thumb code in Unicorn",
              header_style="bold")
    for col, just in (("MCU", "left"), ("core", "left"), ("clock", "right"), ("layer", "left"),
                      ("instructions", "right"), ("instr/MAC", "right"), ("stack", "right"),
                      ("vs numpy twin", "left")):
        t.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    for r in runs:
        t.add_row(r.mcu, SHORT_CORE.get(r.core, r.core), mhz(r.clock_hz), r.shape,
                  f"{r.instructions:,}", f"{r.instructions_per_mac:.2f}", f"{r.stack_bytes} B",
                  "[green]bit-exact[/green]" if r.bit_exact else "[red]MISMATCH[/red]")
    t.caption = (f"{toolchain.kind} {toolchain.version}; cycles, latency and energy come "
                 "with the timing models")
    return t
