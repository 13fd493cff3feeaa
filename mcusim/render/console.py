"""Rich tables for the terminal.  Pure functions: data in, renderable out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from mcusim.catalog import Mcu
from mcusim.render.layout import Stack, esc, unbroken
from mcusim.render.units import (
    fmt_bytes,
    fmt_count,
    fmt_energy,
    fmt_hz,
    fmt_int32,
    fmt_ms,
    fmt_time,
)


def kib(n: int) -> str:
    """Bytes in B, KB or MB (see mcusim.render.units.fmt_bytes)."""
    return fmt_bytes(n)


def mhz(hz: int) -> str:
    return fmt_hz(hz)


def _mark(mcu: Mcu, field: str, text: str) -> str:
    return f"{text}*" if mcu.is_unconfirmed(field) else text


SHORT_CORE = {"m0plus": "M0+", "m4": "M4", "m7": "M7"}


def _tc(toolchain: Any) -> str:
    """'gcc 12.2.1', kept on one line (cycles and flash depend on the compiler)."""
    return unbroken(f"{toolchain.kind} {toolchain.version}")


def mcu_table(mcus: Sequence[Mcu], wide: bool = False) -> Stack:
    """The catalog; `wide` adds the board and the RAM regions."""
    t = Stack(title="MCU catalog")
    cols = [("MCU", "left"), ("core", "left"), ("clock", "right"), ("FPU", "left"),
            ("flash", "right"), ("RAM", "right"), ("wait\nstates", "right"),
            ("flash\ncache", "left"), ("supply", "right"), ("run\ncurrent", "right")]
    if wide:
        cols[1:1] = [("board", "left")]
        cols.append(("RAM regions", "left"))
    for col, just in cols:
        t.add_column(col, justify=just, wrap=col in ("board", "RAM regions"))
    for m in mcus:
        core = SHORT_CORE.get(m.core.key, m.core.name)
        if m.multiplier == "small":
            core += "\n32-cycle MUL"
        cache = "-"
        if m.flash_cache:
            cache = f"{m.flash_cache.kind}\n{kib(m.flash_cache.size_bytes)}"
        row = [esc(m.name), esc(_mark(m, "core", core)), _mark(m, "clock_hz", mhz(m.clock_hz)),
               esc(m.fpu), kib(m.flash_bytes), kib(m.sram_bytes),
               _mark(m, "flash_wait_states", str(m.flash_wait_states)),
               esc(_mark(m, "flash_cache", cache)), _mark(m, "voltage_v", f"{m.voltage_v:g} V"),
               _mark(m, "run_current_ma", f"{m.run_current_ma:.3g} mA")]
        if wide:
            row[1:1] = [esc(m.board)]
            row.append(esc(", ".join(f"{r.name} {kib(r.size)}" for r in m.regions
                                     if r.kind != "flash")))
        t.add_row(*row)
    t.caption = ("supply, run current: energy basis chip supply (the MCU's own supply pins at "
                 "its typical voltage, datasheet run mode at the clock, peripherals off; "
                 "--json: pins, conditions and sources of each)")
    return t


def build_table(results: Sequence[Any], toolchain: Any) -> Stack:
    t = Stack(title=f"kernel images ({_tc(toolchain)})", key=2)
    for col in ("core", "MCU", "text", "rodata", "data", "bss", "status"):
        t.add_column(col, justify="right" if col in ("text", "rodata", "data", "bss")
                     else "left")
    for r in results:
        t.add_row(SHORT_CORE.get(r.core, esc(r.core)), esc(r.mcu), fmt_count(r.sizes["text"]),
                  fmt_count(r.sizes["rodata"]), fmt_count(r.sizes["data"]),
                  fmt_count(r.sizes["bss"]), "cached" if r.cached else "built")
    return t


def build_paths(results: Sequence[Any]) -> Text:
    """Where the images are, one per line, plus the flags of the first (plain text)."""
    lines = [f"{r.mcu}: {r.elf}" for r in results]
    if results:
        lines.append("flags: " + " ".join(results[0].cflags))
    return Text("\n".join(lines))


def run_table(data: dict[str, Any], mcu: Mcu) -> Table:
    t = Table(title=f"{esc(data['function'])} on {esc(mcu.name)} ({esc(mcu.core.name)})",
              show_header=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    t.add_row("return (r0)", fmt_int32(data["return"]))
    t.add_row("instructions", fmt_count(data["instructions"]))
    if "cycles" in data:
        t.add_row("cycles", f"{fmt_count(data['cycles'])} (CPI {data['cpi']:.3f})")
        t.add_row("latency", f"{fmt_ms(data['latency_ms'])} at {mhz(mcu.clock_hz)}")
        t.add_row("energy", f"{fmt_energy(data['energy_mj'])} ({mcu.voltage_v:g} V × "
                  f"{mcu.run_current_ma:g} mA, {esc(mcu.energy_label)})")
        br = data["branches"]
        t.add_row("branches", f"{br['taken']:,} taken, {br['not_taken']:,} not taken"
                  + (f", {br['mispredicted']:,} mispredicted" if br["mispredicted"] else ""))
        for stream, st in data.get("cache", {}).items():
            t.add_row(f"flash {esc(stream)}", f"{st['accesses']:,} line accesses, "
                      f"{st['misses']:,} misses, {st['prefetched']:,} prefetched")
        acc = data.get("data_accesses") or {}
        if acc.get("followed", 0) + acc.get("not_followed", 0):
            n = acc["followed"] + acc["not_followed"]
            t.add_row("data accesses",
                      f"{acc['unaligned']:,} unaligned, {acc['bank_conflicts']:,} paired "
                      f"loads in one bank: {acc['cycles']:,} cycles ({acc['followed']:,} of "
                      f"{n:,} loads/stores followed; the rest taken aligned)")
        win = data.get("window")
        if win is not None:
            if win["count"]:
                t.add_row("window", f"{fmt_count(win['first'])} cycles "
                          f"({fmt_ms(win['latency_ms'])}) from 0x{win['from']:08x} to "
                          f"0x{win['to']:08x}" + (
                              f"; {win['count']:,} times, {fmt_count(win['min'])} to "
                              f"{fmt_count(win['max'])}" if win["count"] > 1 else ""))
            else:
                t.add_row("window", f"never closed (0x{win['from']:08x} → "
                          f"0x{win['to']:08x})")
        scs = data.get("system_control_space")
        if scs:
            t.add_row("system regs", esc(", ".join(
                [f"{k} read {v}x" for k, v in scs["reads"].items()]
                + [f"{k} written {v}x" for k, v in scs["writes"].items()])))
        model = data["model"]
        t.add_row("cost model",
                  esc(f"{model['name']} v{model['version']} ({model['table']})"))
        t.add_row("memory", esc(model["memory"]["description"]))
        if data.get("unclassified"):
            t.add_row("unclassified", esc(", ".join(data["unclassified"][:8])))
    t.add_row("peak stack", f"{fmt_count(data['stack_bytes'])} bytes")
    t.add_row("arguments", esc(", ".join(str(a) for a in data["args"])) or "-")
    t.add_row("image", esc(data["elf"]))
    if data.get("producer"):
        t.add_row("compiler", esc(data["producer"]))
    return t


def class_table(data: dict[str, Any], top: int = 12) -> Stack:
    """Cycles per instruction class of a run, largest first."""
    total = max(1, data["cycles"])
    t = Stack(title="cycles by instruction class")
    for col in ("class", "instructions", "cycles", "%"):
        t.add_column(col, justify="left" if col == "class" else "right")
    rows = list(data["cycles_by_class"].items())
    for cls, v in rows[:top]:
        t.add_row(esc(cls), fmt_count(v["count"]), fmt_count(v["cycles"]),
                  f"{100 * v['cycles'] / total:.1f}")
    if len(rows) > top:
        rest = sum(v["cycles"] for _, v in rows[top:])
        t.add_row(f"({len(rows) - top} more)", "", fmt_count(rest), f"{100 * rest / total:.1f}")
    n = len(data["model"]["assumptions"])
    t.caption = (f"{n} modelling assumptions are listed under model.assumptions of --json; "
                 f"the table: mcusim cost-model {esc(data['core'])}")
    return t


def cost_table(table: Any) -> Stack:
    t = Stack(title=esc(f"{table.title} ({table.path.name}, v{table.version})"))
    m7 = table.model == "m7"
    cols = ["class", "cycles"] + (["latency", "issue", "units"] if m7 else ["taken"]) + [
        "energy", "status", "rule", "source"]
    for col in cols:
        t.add_column(col, wrap=col in ("rule", "source", "units"),
                     min_width={"rule": 30, "source": 16}.get(col, 12))
    for c in table.classes.values():
        cyc = f"{c.cycles:g}"
        if c.per_register:
            cyc = f"{c.cycles:g}+{c.per_register:g}N" if c.cycles else f"{c.per_register:g}N"
            if m7:
                cyc = "ceil(N/2)" if c.per_register == 0.5 else cyc
        row = [esc(c.name), cyc]
        if m7:
            row += [str(c.latency), esc(c.issue), esc(", ".join(c.units))]
        else:
            row += [str(c.taken) if c.taken else "-"]
        status = esc(c.status) if c.status != "assumption" else "[yellow]assumption[/yellow]"
        row += [f"{c.energy:g}", status, esc(c.rule), esc(c.source)]
        t.add_row(*row)
    legend = ["cycles: of one instruction of the class (N = registers or floats "
              "transferred)"]
    if m7:
        legend += ["latency: cycles until a dependent instruction can use the result",
                   "issue: which of the two issue slots the class may use (any, slot0 = "
                   "the older slot only, single = alone in its cycle)",
                   "units: the functional units it occupies in its issue cycle"]
    else:
        legend += ["taken: extra cycles when a branch is taken (P = the pipeline refill, "
                   "1-3 cycles by the target's alignment and width; see the rules below)"]
    legend += ["energy: weight of its cycles in the energy estimate (1 = a cycle at the "
               "MCU's run current)",
               "status: primary = read in Arm's manual; secondary = a copy or another "
               "vendor's document; measured = published measurements; assumption = ours, "
               "stated in the rule",
               "source: a key of the sources table below"]
    t.caption = "; ".join(legend)
    return t


def parameter_table(table: Any) -> Stack:
    t = Stack(title="pipeline and memory rules")
    for col in ("parameter", "value", "rule", "source", "status"):
        t.add_column(col, wrap=col != "parameter")
    for name, p in table.parameters.items():
        if "value" in p:
            value = str(p["value"])
        else:
            value = ", ".join(f"{k}={v}" for k, v in p.items()
                              if k not in ("rule", "source", "status"))
        t.add_row(esc(name), esc(value), esc(p["rule"]), esc(p["source"]),
                  esc(p.get("status", "")))
    return t


def sources_table(table: Any) -> Table:
    t = Table(title="sources", header_style="bold", show_header=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    for key, text in table.sources.items():
        t.add_row(esc(key), esc(text))
    return t


def bench_table(rows: Sequence[Any], toolchain: Any) -> Stack:
    t = Stack(title=f"simulation speed: traced (cycle-counted) vs untraced Unicorn "
                    f"({_tc(toolchain)})")
    for col in ("MCU", "core", "workload", "instructions", "cycles", "untraced\nMIPS",
                "traced\nMIPS", "traced /\nuntraced"):
        t.add_column(col, justify="left" if col in ("MCU", "core", "workload") else "right",
                     wrap=col == "workload")
    for r in rows:
        t.add_row(esc(r.mcu), SHORT_CORE.get(r.core, esc(r.core)), esc(r.workload),
                  fmt_count(r.instructions), fmt_count(r.cycles), f"{r.untraced_mips:,.0f}",
                  f"{r.traced_mips:,.0f}", f"{r.ratio:.2f}")
    t.caption = (f"{_tc(toolchain)}; best of "
                 f"{rows[0].repeats if rows else 0}; tracer: "
                 f"{esc(rows[0].tracer) if rows else '-'}; same binary, same run")
    return t


def demo_table(runs: Sequence[Any], toolchain: Any) -> Stack:
    """One column per MCU (the demo's three boards side by side)."""
    t = Stack(title="uint8 fully connected forward: compiled Thumb code in Unicorn "
                    f"({_tc(toolchain)})")
    t.add_column("", style="bold")
    for r in runs:
        t.add_column(f"{esc(r.mcu)}\n{SHORT_CORE.get(r.core, esc(r.core))} {mhz(r.clock_hz)}",
                     justify="right")
    for label, cells in (
            ("layer", [esc(r.shape) for r in runs]),
            ("instructions", [fmt_count(r.instructions) for r in runs]),
            ("cycles", [fmt_count(r.cycles) for r in runs]),
            ("cycles / MAC", [f"{r.cycles / r.macs:.2f}" for r in runs]),
            ("latency", [fmt_ms(r.latency_ms) for r in runs]),
            ("stack", [f"{fmt_count(r.stack_bytes)} B" for r in runs]),
            ("vs numpy twin", ["[green]bit-exact[/green]" if r.bit_exact
                               else "[red]MISMATCH[/red]" for r in runs])):
        t.add_row(label, *cells)
    t.caption = (f"{_tc(toolchain)}; cycles from the per-core "
                 "cost models (mcusim cost-model CORE), cold flash caches")
    return t


def budget_table(model: str, results: Sequence[dict[str, Any]],
                 toolchain: str | None = None) -> Stack:
    tc = f" ({unbroken(toolchain)})" if toolchain else ""
    t = Stack(title=f"{esc(model)}: training-step memory budget{tc}")
    for col in ("MCU", "core", "RAM\nneeded", "RAM budget", "flash\nneeded", "flash\nbudget",
                "verdict"):
        t.add_column(col, justify="left" if col in ("MCU", "core", "verdict") else "right")
    for o in results:
        verdict = "[green]fits[/green]" if o["fits"] else "[red]does not fit[/red]"
        banks = "\n".join(esc(b) for b in str(o["ram_region"]).split(" + "))
        t.add_row(esc(o["mcu"]), SHORT_CORE.get(o["core"], esc(o["core"])),
                  kib(o["peak_ram_bytes"]), f"{kib(o['ram_budget_bytes'])}\n{banks}",
                  kib(o["flash_bytes"]), kib(o["flash_budget_bytes"]), verdict)
    t.caption = ((f"{unbroken(toolchain)}; " if toolchain else "")
                 + "RAM = kernel data + weights + gradients + statistics + records + planned "
                 "arena + measured stack (one sample and an update)")
    return t


def verify_table(rep: Any, mcu: Mcu, lambda_min: float, lambda_max: float,
                 toolchain: str | None = None) -> Table:
    """`mcusim verify`: device vs numpy twin, what was compared, where time went."""
    t = Table(title=f"verify {esc(rep.model)} on {esc(mcu.name)} ({esc(mcu.core.name)}), "
                    f"built with {unbroken(toolchain or rep.toolchain)}")
    t.add_column("check", overflow="fold")
    t.add_column("result", overflow="fold")
    verdict = "[green]bit-exact[/]" if rep.bit_exact else "[red]MISMATCH[/]"
    t.add_row("device vs numpy twin", verdict)
    t.add_row("samples / weight updates", f"{fmt_count(rep.steps)} / {fmt_count(rep.updates)} "
              f"(batch {rep.batch_size})")
    t.add_row("partial updates / rounding",
              f"{'on' if rep.partial else 'off'} "
              f"(λ {lambda_min:g}..{lambda_max:g}) / {esc(rep.rounding)}")
    t.add_row("tensors compared after every phase",
              f"{fmt_count(rep.buffers_compared)} ({fmt_count(rep.bytes_compared)} bytes)")
    for ph, n in rep.instructions_by_phase.items():
        c = rep.cycles_by_phase.get(ph, 0)
        t.add_row(f"{esc(ph)}: instructions / cycles",
                  f"{fmt_count(n)} / {fmt_count(c)} "
                  f"({fmt_count(c / max(rep.steps, 1))} cycles per sample)")
    t.add_row("host time twin / device",
              f"{fmt_time(rep.wall_s['twin'])} / {fmt_time(rep.wall_s['device'])}")
    if rep.first_mismatch:
        m = rep.first_mismatch
        t.add_row("first mismatch", esc(f"sample {m.step}, after {m.phase}: layer {m.layer}, "
                                        f"tensor {m.tensor}[{m.index}]: twin {m.twin}, "
                                        f"device {m.device}"))
    return t


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(v) for v in shape)


def import_table(data: dict[str, Any]) -> Stack:
    """`mcusim import`: one row per layer of the imported model (Written.to_dict())."""
    t = Stack(title=f"{esc(data['model'])}: imported from {esc(Path(data['source']).name)} "
                    f"({esc(data['format'])}{', int8' if data['quantized_source'] else ''})")
    for col in ("layer", "type", "from ops", "in → out", "params", "train", "notes"):
        t.add_column(col, justify="right" if col == "params" else "left",
                     wrap=col in ("notes", "from ops"))
    for r in data["layers"]:
        train = "trained" if r["trainable"] else ("frozen" if r["frozen"] else "")
        typ = r["type"] + (f"+{r['activation']}" if r["activation"] != "none" else "")
        src = ", ".join(r["ops"])
        if r["type"] == "add":
            src += f" ({' + '.join(r['inputs'])})"
        t.add_row(esc(r["layer"]), esc(typ), esc(src),
                  f"{_shape_text(r['in_shape'])} → {_shape_text(r['out_shape'])}",
                  fmt_count(r["params"]) if r["params"] else "", train,
                  esc("; ".join(r["notes"])))
    rng = data["input_range"]
    t.caption = (f"{fmt_count(data['n_params'])} parameters "
                 f"({fmt_count(data['n_trainable_params'])} trained), "
                 f"{fmt_count(data['macs'])} MACs per forward pass; loss {data['loss']}; "
                 f"input range [{rng[0]:.4g}, {rng[1]:.4g}]"
                 + (" (assumed: the file does not state it; --input-range sets it)"
                    if data["input_range_assumed"] else "")
                 + (f"; dropped: {esc('; '.join(data['dropped']))}" if data["dropped"] else ""))
    return t


def quality_line(q: dict[str, Any], loss: str, quantized: bool = False) -> str:
    """One line: the imported model's FQT forward against the reference."""
    def db(v: float | None) -> str:
        return "exact" if v is None else f"{v:.1f} dB"

    layers = {k: v for k, v in q["layer_sqnr_db"].items() if v is not None}
    worst = min(layers.items(), key=lambda kv: kv[1]) if layers else None
    text = (f"FQT forward vs {q['reference']} on {q['samples']} random inputs over the input "
            f"range: {'output' if loss == 'mse' else 'logits'} SQNR {db(q['logits_sqnr_db'])}")
    if q["top1_agreement"] is not None:
        text += f", top-1 agreement {100 * q['top1_agreement']:.0f} %"
    if worst:
        text += f"; lowest layer SQNR {worst[1]:.1f} dB ({worst[0]})"
    if q["float_vs_runtime_max_rel"] is not None:
        text += (f"; mcusim's float forward vs the runtime: max error "
                 f"{100 * q['float_vs_runtime_max_rel']:.2g} % of the largest output"
                 + (" (the runtime computes in int8)" if quantized else ""))
    return text
