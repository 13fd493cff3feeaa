"""`--clock HZ`, `--wait-states N`, `--no-flash-cache`: the catalog's [mcu.clock] tables, the
run-current model, and what the options do to cycles, latency and energy (docs/clock.md).

The expected wait states are written down from the vendors' tables (named next to each
row), not copied from cost_models/mcus.toml; where the catalog marks a table unconfirmed
(it was read only through a secondary transcription) the comment says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re
from pathlib import Path

import pytest

from mcusim.catalog import load_catalog, mcu_template
from mcusim.cli import build_parser, main
from mcusim.errors import CatalogError, UsageError

MHZ = 1_000_000

# (MCU, CPU clock in Hz, flash wait states the vendor's table gives at that clock)
TABLE_ROWS = [
    # STM32F405/407 datasheet DS8626 Table 15 / RM0090 Table 10, VDD 2.7-3.6 V:
    # 0 WS 0 < HCLK <= 30 MHz, 1 WS <= 60, 2 WS <= 90, 3 WS <= 120, 4 WS <= 150, 5 WS <= 168.
    ("STM32F407", 16 * MHZ, 0), ("STM32F407", 30 * MHZ, 0), ("STM32F407", 30 * MHZ + 1, 1),
    ("STM32F407", 48 * MHZ, 1), ("STM32F407", 84 * MHZ, 2), ("STM32F407", 120 * MHZ, 3),
    ("STM32F407", 144 * MHZ, 4), ("STM32F407", 168 * MHZ, 5),
    # STM32F411xC/E datasheet DS10314 Table 15 / RM0383 Table 5, VDD 2.7-3.6 V:
    # 0 WS <= 30 MHz, 1 WS <= 64, 2 WS <= 90, 3 WS <= 100.
    ("STM32F411", 16 * MHZ, 0), ("STM32F411", 48 * MHZ, 1), ("STM32F411", 64 * MHZ, 1),
    ("STM32F411", 84 * MHZ, 2), ("STM32F411", 96 * MHZ, 3), ("STM32F411", 100 * MHZ, 3),
    # RM0351 (STM32L4) Table 12, Range 1: 0 WS <= 16 MHz, 1 <= 32, 2 <= 48, 3 <= 64, 4 <= 80.
    ("STM32L476", 16 * MHZ, 0), ("STM32L476", 24 * MHZ, 1), ("STM32L476", 48 * MHZ, 2),
    ("STM32L476", 72 * MHZ, 4), ("STM32L476", 80 * MHZ, 4),
    # RM0367 (STM32L0x3) §3.3 read access latency, Range 1: 0 WS <= 16 MHz, 1 WS <= 32 MHz.
    ("STM32L053", 8 * MHZ, 0), ("STM32L053", 16 * MHZ, 0), ("STM32L053", 24 * MHZ, 1),
    # RM0444 (STM32G0x1) FLASH_ACR LATENCY, Range 1: 0 WS <= 24 MHz, 1 <= 48, 2 <= 64.
    ("STM32G071", 16 * MHZ, 0), ("STM32G071", 32 * MHZ, 1), ("STM32G071", 56 * MHZ, 2),
    # RM0385 (STM32F74x) Table 5, VDD 2.7-3.6 V: 30 MHz per wait state, 7 WS up to 216 MHz
    # (catalog: unconfirmed, read through the LL thresholds and ChibiOS only).
    ("STM32F746", 96 * MHZ, 3), ("STM32F746", 200 * MHZ, 6), ("STM32F746", 216 * MHZ, 7),
    # RM0433 (STM32H743) Table 17, VOS0, by AXI clock: 0 WS <= 70 MHz, 1 <= 140, 2 <= 210,
    # 3 <= 225, 4 <= 240; the catalog takes AXI = CPU / 2 (HPRE = 2, as at 480 MHz).
    ("STM32H743", 100 * MHZ, 0), ("STM32H743", 240 * MHZ, 1), ("STM32H743", 400 * MHZ, 2),
    ("STM32H743", 480 * MHZ, 4),
    # SAM D21 datasheet, NVM Characteristics, VDD 2.7-3.63 V: 0 WS up to 24 MHz, 1 WS up to
    # 48 MHz (catalog: the 24 MHz limit unconfirmed, from a secondary quote).
    ("SAMD21G18", 8 * MHZ, 0), ("SAMD21G18", 24 * MHZ, 0), ("SAMD21G18", 48 * MHZ, 1),
    # RP2040 datasheet §2.6.3: XIP from QSPI has no wait-state setting at any clock.
    ("RP2040", 48 * MHZ, 0), ("RP2040", 133 * MHZ, 0),
]

# The catalog's figures before [mcu.clock] existed: (clock_hz, flash_wait_states,
# run_current_ma).  The default clock must give exactly these.
OLD = {"RP2040": (133_000_000, 0, 30.2), "STM32L053": (32_000_000, 1, 2.8),
       "STM32G071": (64_000_000, 2, 6.4), "SAMD21G18": (48_000_000, 1, 3.37),
       "nRF52840": (64_000_000, 0, 3.3), "STM32F411": (100_000_000, 3, 11.6),
       "STM32L476": (80_000_000, 4, 8.0), "STM32F407": (168_000_000, 5, 40.0),
       "STM32F746": (216_000_000, 7, 51.4), "STM32H743": (480_000_000, 4, 132.0),
       "MIMXRT1062": (600_000_000, 0, 100.0)}

COMMANDS_WITH_MCU = ("run", "step", "budget", "train", "profile", "verify")


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def run_cli(capsys, *argv):
    """Exit code, stdout, stderr; argparse's own errors exit through SystemExit."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- the tables


@pytest.mark.parametrize("name, hz, ws", TABLE_ROWS)
def test_wait_states_from_the_vendor_tables(cat, name, hz, ws):
    m = cat.mcu(name).at_clock(hz)
    assert (m.clock_hz, m.flash_wait_states) == (hz, ws)
    assert m.overrides["flash_wait_states"] == {"value": ws, "table": ws,
                                                "source": "the part's wait-state table"}


def test_every_mcu_has_a_clock_model_with_sources(cat):
    assert set(cat.mcus) == set(OLD)
    for m in cat.mcus.values():
        cm = m.clock_model
        assert cm is not None and cm.given, m.name
        assert cm.conditions.strip(), m.name
        for key in ("clock.wait_states", "clock.static_ma"):
            assert m.sources[key].strip(), (m.name, key)
        rows = cm.wait_states
        assert all(a[0] < b[0] and a[1] <= b[1] for a, b in itertools.pairwise(rows))
        assert 0 <= cm.static_ma <= m.run_current_ma


@pytest.mark.parametrize("name", sorted(OLD))
def test_the_default_clock_gives_exactly_the_old_values(cat, name):
    m = cat.mcu(name)
    assert (m.clock_hz, m.flash_wait_states, m.run_current_ma) == OLD[name]
    cm = m.clock_model
    assert cm.wait_states_at(m.clock_hz) == m.flash_wait_states
    assert cm.current_at(m.clock_hz) == m.run_current_ma  # exactly, not approximately
    assert m.at_clock() is m and not m.overrides and m.clock_assumptions == ()
    at = m.at_clock(m.clock_hz)  # --clock at the catalog's own clock: the same figures
    assert (at.clock_hz, at.flash_wait_states, at.run_current_ma) == OLD[name]
    assert at.flash_cache == m.flash_cache


def test_the_maximum_is_the_last_row_and_bad_clocks_are_usage_errors(cat):
    f407 = cat.mcu("STM32F407")
    assert f407.clock_range() == (1, 168_000_000)
    for hz in (0, -1, 168_000_001):
        with pytest.raises(UsageError, match="168 MHz") as ei:
            f407.at_clock(hz)
        assert "\n" not in str(ei.value)
    nrf = cat.mcu("nRF52840")  # the CPU clock is fixed at 64 MHz (min_hz = max)
    assert nrf.clock_range() == (64_000_000, 64_000_000)
    with pytest.raises(UsageError, match="64 MHz only"):
        nrf.at_clock(32_000_000)
    with pytest.raises(UsageError, match=r"0\.\.15"):
        f407.at_clock(wait_states=16)


# --------------------------------------------------------------------------- run current


def test_run_current_scales_with_the_clock(cat):
    # static_ma = 0: in proportion to the clock.  STM32F407: 40 mA at 168 MHz (DS8626
    # Table 20) -> 20 mA at 84 MHz.
    f407 = cat.mcu("STM32F407").at_clock(84 * MHZ)
    assert f407.run_current_ma == pytest.approx(20.0)
    assert f407.is_unconfirmed("run_current_ma")  # the static part is an assumption
    # STM32F411: DS10314 Table 23 gives 11.6 mA at 100 MHz and 9.7 mA at 84 MHz; the
    # proportional model is within 0.5 % of the 84 MHz row.
    f411 = cat.mcu("STM32F411").at_clock(84 * MHZ)
    assert f411.run_current_ma == pytest.approx(9.7, rel=0.005)
    assert not f411.is_unconfirmed("run_current_ma")
    # A static part: I(f) = static + (I0 - static) * f / f0 = static + ua_per_mhz * MHz / 1000
    base = cat.mcu("STM32F407")
    cm = dataclasses.replace(base.clock_model, static_ma=10.0)
    m = dataclasses.replace(base, clock_model=cm).at_clock(84 * MHZ)
    assert cm.ua_per_mhz == pytest.approx((40.0 - 10.0) * 1000 / 168)
    assert m.run_current_ma == pytest.approx(10.0 + (40.0 - 10.0) * 84 / 168)
    assert m.run_current_ma == pytest.approx(10.0 + cm.ua_per_mhz * 84 / 1000)


def test_board_figures_are_not_scaled(cat):
    rt = cat.mcu("MIMXRT1062").with_energy("board").at_clock(300 * MHZ)
    assert rt.run_current_ma == 100.0 and rt.voltage_v == 5.0
    assert "board-level figure, not scaled" in rt.clock_assumptions[0]


# --------------------------------------------------------------------------- overrides


def test_overrides_are_recorded_and_stated(cat):
    m = cat.mcu("STM32F407").at_clock(48 * MHZ, wait_states=3, flash_cache=False)
    assert (m.clock_hz, m.flash_wait_states, m.flash_cache) == (48 * MHZ, 3, None)
    assert m.flash_cache_off is not None and m.flash_cache_off.kind == "art"
    d = m.to_dict()
    assert set(d["overrides"]) == {"clock_hz", "flash_wait_states", "run_current_ma",
                                   "flash_cache"}
    assert d["overrides"]["flash_wait_states"] == {"value": 3, "table": 1,
                                                   "source": "--wait-states"}
    assert d["overrides"]["clock_hz"]["catalog"] == 168 * MHZ
    assert d["clock"]["max_hz"] == 168 * MHZ and d["clock"]["static_ma"] == 0.0
    assert m.is_unconfirmed("flash_wait_states")  # the user's setting, not a datasheet's
    lines = m.clock_assumptions
    assert any(line.startswith("flash wait states 3: set by --wait-states") and
               "gives 1 at 48 MHz" in line for line in lines)
    assert any("flash cache off (--no-flash-cache)" in line for line in lines)
    from mcusim.timing.memory import memory_model

    mem = memory_model(m, flash_data=False)
    assert set(lines) <= set(mem.assumptions)
    assert mem.fetch_penalty == 3 and mem.description == "3 wait states, no cache"
    # the default model is unchanged (no extra assumption lines)
    base = cat.mcu("STM32F407")
    assert not set(memory_model(base, False).assumptions) & set(lines)


def test_rp2040_without_its_xip_cache_pays_the_miss_per_word(cat):
    from mcusim.timing.memory import memory_model

    mem = memory_model(cat.mcu("RP2040").at_clock(flash_cache=False), flash_data=False)
    # RP2040 XIP: no wait states, but an uncached QSPI access costs miss_cycles (53)
    assert mem.fetch_penalty == 53 and mem.fetch is not None and not mem.fetch.prefetch


# --------------------------------------------------------------------------- user catalogs


def test_template_shows_the_clock_fields():
    text = mcu_template()
    for field in ("[mcu.clock]", "wait_states =", "conditions =", "static_ma =", "min_hz =",
                  '"clock.wait_states"', '"clock.static_ma"'):
        assert field in text, field


def _uncomment_clock(text: str) -> str:
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("# [mcu.clock]"):
            inside = True
        if inside:
            line = line[2:] if line.startswith("# ") else line.lstrip("#")
        if inside and line.startswith("min_hz"):
            inside = False
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_user_catalog_without_clock_table_keeps_working(tmp_path):
    p = tmp_path / "my.toml"
    p.write_text(mcu_template())
    m = load_catalog(user_catalogs=[p]).mcu("MyChip")
    assert not m.clock_model.given and m.clock_model.wait_states == ((168 * MHZ, 5),)
    low = m.at_clock(84 * MHZ)  # one point: the wait states and the current stay
    assert (low.flash_wait_states, low.run_current_ma) == (5, 40.0)
    assert "no [mcu.clock] table" in low.clock_assumptions[0]
    with pytest.raises(UsageError, match=r"at most at 168 MHz \(no \[mcu.clock\] table"):
        m.at_clock(200 * MHZ)


def test_user_catalog_with_clock_table(tmp_path):
    p = tmp_path / "my.toml"
    p.write_text(_uncomment_clock(mcu_template()))
    m = load_catalog(user_catalogs=[p]).mcu("MyChip")
    assert m.clock_model.given and m.clock_model.conditions == "VDD 2.7-3.6 V"
    assert m.sources["clock.wait_states"].startswith("user-provided")
    assert m.at_clock(84 * MHZ).flash_wait_states == 2
    # a table that disagrees with flash_wait_states at clock_hz is refused, in one line
    bad = tmp_path / "bad.toml"
    bad.write_text(_uncomment_clock(mcu_template()).replace("[168_000_000, 5]",
                                                            "[168_000_000, 6]"))
    with pytest.raises(CatalogError, match=r"gives 6 wait states at clock_hz") as ei:
        load_catalog(user_catalogs=[bad])
    assert "\n" not in str(ei.value)


# --------------------------------------------------------------------------- the CLI


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", [*COMMANDS_WITH_MCU, "mcus"])
def test_every_command_with_an_mcu_takes_the_options(command):
    opts = {o for a in _subparsers()[command]._actions for o in a.option_strings}
    assert {"--clock", "--wait-states", "--no-flash-cache"} <= opts


PROBE = """\
    .syntax unified
    .thumb
    .text
    .macro FUNC name
    .global \\name
    .type \\name, %function
    .thumb_func
    .balign 16
\\name:
    .endm

    FUNC straight
    .rept 16
    adds r0, r0, #1
    .endr
    bx lr
    .size straight, . - straight

    FUNC far
    b 1f
    .rept 31
    nop
    .endr
1:  adds r0, r0, #1
    bx lr
    .size far, . - far
"""


@pytest.fixture(scope="module")
def probe_elf(tmp_path_factory, cat):
    """A small probe of our own (tests/programs/ is not ours to change), linked for the
    STM32F407."""
    from mcusim.toolchain import Builder, find_toolchain

    src = tmp_path_factory.mktemp("clock") / "clock_probe.S"
    src.write_text(PROBE)
    builder = Builder(find_toolchain())
    mcu = cat.mcu("STM32F407")
    objects, _ = builder.compile(mcu.core, [src], name="clock-probe")
    elf, _ = builder.link(mcu, objects, name="clock-probe")
    return str(elf)


def _run(capsys, elf, function, *opts):
    code, out, err = run_cli(capsys, "run", elf, "-f", function, "-m", "STM32F407", "--json",
                             *opts)
    assert code == 0, err
    return json.loads(out)


def test_clock_changes_flash_cycles_as_the_wait_states_say(capsys, probe_elf):
    """`straight`: 16 ADDS + BX LR, 34 bytes from a 16-byte boundary, one basic block of
    18 core cycles.  Without the flash cache each new 32-bit flash word waits: word 0 (a
    cold call) misses; words 1..8 are the sequential prefetch's, which fills a word while
    the one before executes, so each waits what the fill takes beyond the block's cycles
    per word, int(18 x 4 / 34) = 2 (mcusim/timing/memory.py).
    168 MHz: 5 wait states (DS8626 Table 15): 5 + 8 x (5 - 2) = 29 cycles;
    16 MHz: 0 wait states: none.  The core's cycles are the same at every clock, so the
    difference is 29.  At 48 MHz (1 WS): 1 + 8 x max(0, 1 - 2) = 1.
    `far`: B over 62 bytes of NOPs to ADDS; BX: two misses (word 0 and the branch target,
    which is not the next word), so 2 x 5 = 10 more cycles at 168 MHz than at 16 MHz, and
    2 x 1 = 2 at 48 MHz."""
    for function, at168, at48 in (("straight", 5 + 8 * (5 - 2), 1), ("far", 2 * 5, 2 * 1)):
        runs = {hz: _run(capsys, probe_elf, function, "--no-flash-cache", "--clock", hz)
                for hz in ("16M", "48MHz", "168e6")}
        c16, c48, c168 = (runs[h]["cycles"] for h in ("16M", "48MHz", "168e6"))
        assert c168 - c16 == at168, (function, c16, c168)
        assert c48 - c16 == at48, (function, c16, c48)
        for hz, ws in (("16M", 0), ("48MHz", 1), ("168e6", 5)):
            d = runs[hz]
            assert d["model"]["flash_wait_states"] == ws
            assert d["clock_hz"] == d["model"]["clock_hz"]
            assert d["latency_ms"] == pytest.approx(d["cycles"] / d["clock_hz"] * 1e3)
        assert [runs[h]["clock_hz"] for h in ("16M", "48MHz", "168e6")] == \
            [16 * MHZ, 48 * MHZ, 168 * MHZ]
        # a lower clock: longer latency even though it needs fewer cycles
        assert runs["16M"]["latency_ms"] > runs["48MHz"]["latency_ms"] > \
            runs["168e6"]["latency_ms"]


def test_no_flash_cache_loses_the_warm_cache(capsys, probe_elf):
    """Warm `straight` at 168 MHz: with the ART accelerator its three 16-byte lines stay
    cached (no flash cycles); without it the 1-word buffer holds only the last word, so
    word 0 misses again (5) and the 8 prefetched words wait 5 - 2 each (see above):
    exactly 29 cycles more."""
    art = _run(capsys, probe_elf, "straight", "--warm")
    off = _run(capsys, probe_elf, "straight", "--warm", "--no-flash-cache")
    assert off["cycles"] - art["cycles"] == 5 + 8 * (5 - 2)
    assert off["model"]["memory"]["description"] == "5 wait states, no cache"
    assert any("--no-flash-cache" in a for a in off["model"]["assumptions"])
    assert not any("--no-flash-cache" in a for a in art["model"]["assumptions"])


def test_energy_changes_only_through_the_current(capsys, probe_elf, cat):
    """The same wait states at two clocks: the same cycles; latency x 168/16; energy x
    (I(16)/16) / (I(168)/168) = 1 with the F407's proportional current model."""
    fast = _run(capsys, probe_elf, "far", "--no-flash-cache")
    slow = _run(capsys, probe_elf, "far", "--no-flash-cache", "--clock", "16M",
                "--wait-states", "5")
    assert slow["cycles"] == fast["cycles"]
    assert slow["latency_ms"] == pytest.approx(fast["latency_ms"] * 168 / 16)
    assert slow["energy_mj"] == pytest.approx(fast["energy_mj"])
    assert slow["model"]["run_current_ma"] == pytest.approx(40.0 * 16 / 168)
    assert any("set by --wait-states" in a for a in slow["model"]["assumptions"])


def test_default_run_is_unchanged(capsys, probe_elf):
    plain = _run(capsys, probe_elf, "straight")
    same = _run(capsys, probe_elf, "straight", "--clock", "168MHz")
    assert plain["clock_hz"] == same["clock_hz"] == 168 * MHZ
    for key in ("cycles", "latency_ms", "energy_mj"):
        assert plain[key] == same[key]
    assert not any("--clock" in a for a in plain["model"]["assumptions"])


def test_step_json_carries_the_clock(capsys):
    code, out, err = run_cli(capsys, "step", "digits-cnn", "--mcu", "STM32F407", "--clock",
                             "48M", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["clock_hz"] == 48 * MHZ
    assert d["latency_ms"] == pytest.approx(d["cycles"] / (48 * MHZ) * 1e3)
    assert d["energy_basis"]["run_current_ma"] == pytest.approx(40.0 * 48 / 168)
    assert any(a.startswith("clock 48 MHz (--clock") and "1 flash wait state " in a
               for a in d["assumptions"])


def test_mcus_lists_the_catalog_at_a_clock(capsys):
    code, out, err = run_cli(capsys, "mcus", "--clock", "48M", "--json")
    assert code == 0, err
    got = {m["name"]: m for m in json.loads(out)["mcus"]}
    # parts whose range excludes 48 MHz are left out with one note on stderr
    assert "STM32L053" not in got and "nRF52840" not in got
    assert "leaves out STM32L053 (up to 32 MHz), nRF52840 (64 MHz only)" in err
    assert all(m["clock_hz"] == 48 * MHZ for m in got.values())
    assert got["STM32F407"]["flash_wait_states"] == 1 and got["SAMD21G18"][
        "flash_wait_states"] == 1


@pytest.mark.parametrize("argv, message", [
    (["--clock", "0"], "must be more than 0 Hz"),
    (["--clock", "-5"], "must be more than 0 Hz"),
    (["--clock", "abc"], "expected a clock in Hz"),
    (["--clock", "1.5"], "whole number of Hz"),
    (["--clock", "3GHz"], "above 2 GHz"),
    (["--clock", "200M"], "STM32F407 runs at most at 168 MHz"),
    (["--wait-states", "16"], "must be 0..15"),
    (["--wait-states", "x"], "not an integer"),
])
def test_bad_values_exit_2_with_one_line(capsys, probe_elf, argv, message):
    code, out, err = run_cli(capsys, "run", probe_elf, "-f", "straight", "-m", "STM32F407",
                             *argv)
    assert code == 2 and out == ""
    assert message in err and err.strip().count("\n") == 0 and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["step", "digits-cnn", "--mcu", "nRF52840", "--clock", "32M"],
     "nRF52840 runs its CPU at 64 MHz only"),
    (["budget", "digits-cnn", "--mcu", "STM32L053", "--clock", "48M"],
     "STM32L053 runs at most at 32 MHz"),
    (["mcus", "--clock", "1GHz"], "no MCU of the catalog runs at that clock"),
])
def test_clock_out_of_range_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and err.strip().count("\n") == 0


def test_docs_describe_the_options():
    doc = Path(__file__).resolve().parents[1] / "docs" / "clock.md"
    if not doc.is_file():  # .ci/run's wheel stage copies the tests alone, without docs/
        pytest.skip("docs/ is not beside the tests (a copy of tests/ outside the checkout)")
    text = doc.read_text()
    for word in ("--clock", "--wait-states", "--no-flash-cache", "static_ma", "wait_states"):
        assert word in text
    assert re.search(r"energy-weighted cycles / clock", text)
