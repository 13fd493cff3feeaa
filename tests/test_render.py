"""What a person reads must be what the tool knows: renderers show code and names literally
(no rich markup eaten), numbers in human units, and every table whole at 80 columns."""

from __future__ import annotations

import dataclasses
import io
import math
import re

import pytest
from rich.console import Console

from mcusim.analyze import simulate_step
from mcusim.profile import BlockStats, FunctionStats, LineStats, Profile
from mcusim.render import console as render
from mcusim.render import profile as render_profile
from mcusim.render import step as render_step
from mcusim.render import train as render_train
from mcusim.render.layout import Stack, esc
from mcusim.render.units import (
    fmt_bytes,
    fmt_count,
    fmt_cycles_time,
    fmt_energy,
    fmt_int32,
    fmt_ms,
    fmt_time,
    fmt_time_range,
    sig,
)
from mcusim.timing.table import load_table

BOARDS = ("RP2040", "nRF52840", "MIMXRT1062")
NASTY = ("a[i]", "[/bold]", "[red]", "x[/]", "b[i][j]", "back\\")


def show(renderable, width: int = 80) -> str:
    con = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    con.print(renderable)
    # esc's zero-width guard after a trailing backslash; no-break spaces in names
    return con.export_text().replace("\u2060", "").replace("\u00a0", " ")


def assert_readable(text: str, whole=(), width: int = 80) -> None:
    """No ellipsis anywhere, no line wider than the console, every name/figure whole."""
    assert "…" not in text, text
    for line in text.splitlines():
        assert len(line) <= width, line
    lines = text.splitlines()
    for s in whole:
        assert any(s in line for line in lines), f"{s!r} not shown whole in\n{text}"


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize("seconds, text", [
    (0.0118, "11.8 ms"), (0.000509, "509 µs"), (6.67e-8, "66.7 ns"), (1.1, "1.10 s"),
    (0.9996, "1.00 s"), (0.0999996, "100 ms"), (34.56, "34.6 s"), (0, "0 s"),
    (1234, "20.6 min"), (50_000, "13.9 h"),
])
def test_fmt_time(seconds, text):
    assert fmt_time(seconds) == text


@pytest.mark.parametrize("mj, text", [
    (392.9, "393 mJ"), (0.0807, "80.7 µJ"), (1100.0, "1.10 J"), (3.929e-4, "393 nJ"),
    (0, "0 J"),
])
def test_fmt_energy(mj, text):
    assert fmt_energy(mj) == text


def test_no_exponent_and_three_significant_digits_over_18_decades():
    for k in range(-120, 60):
        x = 1.234567 * 10 ** (k / 10)
        for s in (fmt_time(x), fmt_energy(x), fmt_ms(x), sig(x)):
            assert not re.search(r"\de[+-]?\d", s), s
        m = fmt_time(x).split()[0].replace(",", "")
        if 1e-9 <= x < 600:  # ns .. s: mantissa in [1, 1000), 3 significant digits
            assert 1 <= float(m) < 1000, (x, fmt_time(x))
            assert len(m.replace(".", "").lstrip("0")) == 3, (x, m)
    assert fmt_count(1564563) == "1,564,563" and fmt_count(None) == "-"
    assert fmt_cycles_time(1_564_563, 133_000_000) == "11.8 ms"
    assert fmt_time_range(0.00699, 0.00709) == "6.99–7.09 ms"
    assert fmt_time_range(0.000471, 0.00048) == "471–480 µs"
    assert fmt_bytes(264 * 1024) == "264 KB" and fmt_bytes(7936 * 1024) == "7,936 KB"
    assert fmt_bytes(13210) == "12.9 KB" and fmt_bytes(int(2030.8 * 1024)) == "1.98 MB"
    assert fmt_bytes(212) == "212 B" and fmt_bytes(2 << 20) == "2 MB"
    assert not math.isnan(float(sig(9.996))) and sig(9.996) == "10.0"


def test_r0_unsigned_with_int32_beside_only_when_different():
    assert fmt_int32(0xFFFFFFFB) == "4294967291 (-5 as int32), 0xfffffffb"
    assert fmt_int32(25) == "25, 0x00000019"
    assert fmt_int32(0x80000000) == "2147483648 (-2147483648 as int32), 0x80000000"


# --------------------------------------------------------------------------- markup


def _nasty_profile(tmp_path) -> Profile:
    src = tmp_path / "dot[i].c"
    src.write_text("int f(void) {\n    acc += a[i] * b[i];\n    x = [/bold] + [red];\n}\n")
    p = Profile(title="probe [i] [red]", mcu="RP2040", core="m0plus", clock_hz=133_000_000)
    p.paths = {"dot[i].c": str(src)}
    for k, name in enumerate(NASTY):
        p.functions[name] = FunctionStats(exclusive=100 + k, inclusive=200 + k, calls=1,
                                          instructions=50)
        p.lines[(name, "dot[i].c", 2 + (k % 2))] = LineStats(name, "dot[i].c", 2 + (k % 2),
                                                             cycles=100 + k)
        p.blocks[(0x1000 + 16 * k, 16)] = BlockStats(
            name, 0x1000 + 16 * k, 16, cycles=100 + k, executions=3,
            text=["1000: ldr r1, [r2, #4]", "1002: str r1, [r0]", "1004: bl [red]"])
        p.tree[(name,)] = [100 + k, 1]
        p.tree[(name, NASTY[0])] = [5, 1]
    p.total = sum(f.exclusive for f in p.functions.values()) + 5 * len(NASTY)
    return p


def test_profile_tables_show_code_and_names_literally(tmp_path):
    p = _nasty_profile(tmp_path)
    lines = show(render_profile.line_table(p, 10, "gcc [1]"), width=200)
    assert "acc += a[i] * b[i];" in lines and "x = [/bold] + [red];" in lines
    assert "dot[i].c:2" in lines and "gcc [1]" in lines and "probe [i] [red]" in lines
    blocks = show(render_profile.block_table(p, 10), width=200)
    assert "ldr r1, [r2, #4]; str r1, [r0]; bl [red]" in blocks
    funcs = show(render_profile.function_table(p, 10), width=200)
    tree = show(render_profile.call_tree(p, 10), width=200)
    blocks_fn = show(render_profile.block_table(p, 10), width=200)
    for name in NASTY:
        assert f"│ {name} " in funcs, name
        assert f"── {name}  " in tree, name
        assert f" {name} " in blocks_fn, name
    annotated = show(render_profile.annotate(p, "a[i]"), width=200)
    assert "acc += a[i] * b[i];" in annotated and "dot[i].c" in annotated


def test_catalog_and_step_tables_show_names_literally(catalog):
    mcu = dataclasses.replace(catalog.mcu("nRF52840"), name="nRF[i]52840",
                              board="[red]board[/red] [/bold]")
    text = show(render.mcu_table([mcu], wide=True), width=250)
    assert "nRF[i]52840" in text and "[red]board[/red] [/bold]" in text
    r = simulate_step("digits-cnn", catalog.mcu("nRF52840"))
    odd = dataclasses.replace(r, mcu="[bold]X[/bold]", model="m[i]", toolchain="gcc [red]")
    for table in (render_step.summary_table([odd]), render_step.memory_table([odd]),
                  render_step.phase_table([odd, odd])):
        assert "[bold]X[/bold]" in show(table, width=200)
    assert "m[i]" in show(render_step.summary_table([odd]), width=200)
    assert "gcc [red]" in show(render_step.summary_table([odd]), width=200)
    out = [{"mcu": "[red]", "core": "m4", "fits": False, "peak_ram_bytes": 1, "ram_budget_bytes": 2,
            "ram_region": "SRAM[0] + [i]", "flash_bytes": 3, "flash_budget_bytes": 4}]
    text = show(render.budget_table("net[i]", out, "zig [x]"), width=200)
    for s in ("[red]", "SRAM[0]", "[i]", "net[i]", "zig [x]"):
        assert s in text, s


def test_run_table_shows_unsigned_return_and_literal_names(catalog):
    mcu = catalog.mcu("RP2040")
    data = {"function": "f[i]", "return": 0xFFFFFFFB, "return_signed": -5, "instructions": 8,
            "stack_bytes": 0, "args": [1, -5], "elf": "/tmp/[red]x.elf",
            "producer": "GCC: [bold]"}
    text = show(render.run_table(data, mcu), width=120)
    assert "4294967291 (-5 as int32), 0xfffffffb" in text
    for s in ("f[i]", "/tmp/[red]x.elf", "GCC: [bold]", "1, -5"):
        assert s in text, s


def test_esc_is_literal():
    for s in NASTY:
        assert show(esc(s)).strip() == s


# --------------------------------------------------------------------------- 80 columns


def test_stack_splits_columns_instead_of_truncating():
    t = Stack(title="many MCUs")
    t.add_column("")
    names = [f"MCU-NUMBER-{k}" for k in range(9)]
    for n in names:
        t.add_column(n, justify="right")
    t.add_row("latency / mini-batch", *[f"{k},234,567.8 ms" for k in range(9)])
    text = show(t)
    assert_readable(text, whole=[*names, *[f"{k},234,567.8 ms" for k in range(9)],
                                 "latency / mini-batch"])
    assert "(continued)" in text
    wide = show(t, width=300)
    assert "(continued)" not in wide  # one table when it fits


@pytest.fixture(scope="module")
def three_reports(catalog):
    return [simulate_step("digits-cnn", catalog.mcu(n)) for n in BOARDS]


def _figures(r) -> list[str]:
    return [r.mcu, fmt_count(r.cycles), fmt_cycles_time(r.cycles, r.clock_hz),
            fmt_energy(r.energy_mj), fmt_cycles_time(r.batch_cycles, r.clock_hz),
            fmt_bytes(r.peak_ram_bytes), fmt_bytes(r.ram_budget), fmt_bytes(r.flash_bytes),
            fmt_bytes(r.flash_budget), r.toolchain]


def test_step_tables_at_80_columns(three_reports):
    whole = [f for r in three_reports for f in _figures(r)]
    text = show(render_step.summary_table(three_reports))
    assert_readable(text, whole)
    assert "6.99 ms … 7.09" not in text and "–" in text  # a range in one unit
    phase = show(render_step.phase_table(three_reports))
    assert_readable(phase, [*BOARDS, "(kernel calls)", "backward"])
    for r in three_reports:
        for row in r.rows:
            cell = fmt_cycles_time(row.cycles, r.clock_hz)
            assert cell in phase, cell
    mem = show(render_step.memory_table(three_reports))
    assert_readable(mem, [*BOARDS, *[fmt_bytes(r.peak_ram_bytes) for r in three_reports]])
    single = show(render_step.phase_table(three_reports[:1]))
    assert_readable(single, [fmt_count(row.cycles) for row in three_reports[0].rows])


def test_step_tables_with_many_mcus_stack(three_reports):
    six = three_reports + [dataclasses.replace(r, mcu=r.mcu + "-B") for r in three_reports]
    for table in (render_step.summary_table(six), render_step.phase_table(six),
                  render_step.memory_table(six)):
        assert_readable(show(table), [r.mcu for r in six])


def test_catalog_cost_model_tables_at_80_columns(catalog):
    mcus = list(catalog.mcus.values())
    text = show(render.mcu_table(mcus))
    assert_readable(text, [m.name for m in mcus] + [fmt_bytes(m.sram_bytes) for m in mcus])
    for core in ("m0plus", "m4", "m7"):
        table = load_table(core)
        for view in (render.cost_table(table), render.parameter_table(table),
                     render.sources_table(table)):
            text = show(view)
            assert_readable(text)
        assert all(c in show(render.cost_table(table)) for c in table.classes)


def test_budget_table_at_80_columns(three_reports):
    out = [{"mcu": r.mcu, "core": r.core, "fits": r.fits, "peak_ram_bytes": r.peak_ram_bytes,
            "ram_budget_bytes": r.ram_budget, "ram_region": r.ram_region,
            "flash_bytes": r.flash_bytes, "flash_budget_bytes": r.flash_budget}
           for r in three_reports]
    text = show(render.budget_table("digits-cnn", out, three_reports[0].toolchain))
    assert_readable(text, [*BOARDS, three_reports[0].toolchain, "fits"]
                    + [fmt_bytes(r.ram_budget) for r in three_reports])


def _subscripted(p, n: int) -> str:
    """The start of the hottest of the top n source lines that has a subscript, up to its
    first ']' ("" if none has one)."""
    for r in p.top_lines(n):
        text = (p.source_text(r.file, r.line) or "").strip()
        if "[" in text and "]" in text[text.index("["):]:
            return text[:text.index("]", text.index("[")) + 1]
    return ""


def test_profile_tables_at_80_columns(catalog, default_toolchain):
    from mcusim.profile import profile_step

    p, _ = profile_step("digits-cnn", catalog.mcu("RP2040"), toolchain=default_toolchain)
    tc = f"{default_toolchain.kind} {default_toolchain.version}"
    top = p.top_functions(8)
    funcs = show(render_profile.function_table(p, 8, tc))
    assert_readable(funcs, [fn for fn, _ in top] + [fmt_count(f.exclusive) for _, f in top]
                    + [fmt_count(f.instructions) for _, f in top] + [tc])
    lines = show(render_profile.line_table(p, 30, tc))
    assert_readable(lines, [r.function for r in p.top_lines(30)])
    # a hot source line with a subscript is shown with it (rich markup would eat "[...]")
    sub = _subscripted(p, 30)
    assert sub and sub in lines
    blocks = show(render_profile.block_table(p, 6, tc))
    assert_readable(blocks, [b.function for b in p.top_blocks(6)])
    assert re.search(r"ldr\w* r\d+, \[r\d+", blocks)  # addressing modes kept
    assert_readable(show(render_profile.class_table(p, 10, tc)))
    assert_readable(show(render_profile.annotate(p, top[0][0])))
    tree = show(render_profile.call_tree(p, 4, tc))
    assert "…" not in tree and tc in tree


def test_train_and_demo_tables_at_80_columns(catalog, default_toolchain):
    import numpy as np

    from mcusim.demo import run_demo
    from mcusim.fqt.datasets import load_dataset
    from mcusim.fqt.train import train_fqt
    from mcusim.model.zoo import load_model

    data = load_dataset("digits")
    small = dataclasses.replace(data, x_train=data.x_train[:96], y_train=data.y_train[:96],
                                x_test=data.x_test[:48], y_test=data.y_test[:48]) \
        if dataclasses.is_dataclass(data) else data
    rep = train_fqt(load_model("digits-cnn"), small, catalog.mcu("nRF52840"),
                    default_toolchain, epochs=2)
    tc = f"{default_toolchain.kind} {default_toolchain.version}"
    text = show(render_train.summary_table(rep, tc))
    e = rep.epochs[-1]
    assert_readable(text, [f"{e.test_acc:.3f}", fmt_ms(e.device_ms), fmt_energy(e.device_mj),
                           "nRF52840", tc])
    assert "host time" in text and "simulated on this host at" in text
    assert "s simulated)" not in text
    line = render_train.epoch_line(e, catalog.mcu("nRF52840"))
    assert "host time" in line and "simulated" not in line
    assert np.isfinite(e.device_ms)
    runs = run_demo(catalog, default_toolchain)
    demo = show(render.demo_table(runs, default_toolchain))
    assert_readable(demo, [*BOARDS, *[fmt_count(r.cycles) for r in runs], tc])


def test_run_and_class_tables_at_80_columns(catalog, build_probes):
    from mcusim.elf import ElfImage
    from mcusim.machine import Machine

    mcu = catalog.mcu("RP2040")
    image = ElfImage.open(build_probes("RP2040"))
    m = Machine(mcu, image)
    res = m.call("sum6", 0, 0, 0, 0, 0, -5)
    data = {"function": res.function, "return": res.return_value,
            "return_signed": res.return_signed, "instructions": res.instructions,
            "stack_bytes": res.stack_bytes, "args": [0, 0, 0, 0, 0, -5], "elf": "probes.elf",
            "core": mcu.core.key}
    data.update(m.cycles(res).to_dict())
    text = show(render.run_table(data, mcu))
    assert_readable(text, ["4294967291 (-5 as int32), 0xfffffffb", "RP2040",
                           fmt_count(data["cycles"])])
    assert_readable(show(render.class_table(data)))


def test_unplaced_buffers_are_summarised():
    """Thousands of buffers that fit no bank: the 8 largest by name, the rest as a count
    and their total (a 4,000-layer model listed 47,900 rows before)."""
    from types import SimpleNamespace

    from mcusim.render.step import UNPLACED_SHOWN, _unplaced_cell

    bufs = [SimpleNamespace(name=f"b{i}", nbytes=1024 * (i + 1)) for i in range(20)]
    cell = _unplaced_cell(bufs)
    lines = cell.splitlines()
    assert len(lines) == UNPLACED_SHOWN + 1
    assert "b19 " in lines[0] and "b12 " in lines[UNPLACED_SHOWN - 1]  # largest first
    # the other 12: b0..b11, (1 + ... + 12) KiB = 78 KiB
    assert "12 more" in lines[-1] and "78" in lines[-1]
    assert _unplaced_cell([]) == "-"
    assert len(_unplaced_cell(bufs[:3]).splitlines()) == 3
