"""The hot-spot profiler: totals add up, lines are the right ones, exports are readable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mcusim.cli import main
from mcusim.elf import ElfImage
from mcusim.machine import Machine
from mcusim.profile import profile_call, profile_step
from mcusim.render.exports import SPEEDSCOPE_SCHEMA, callgrind, chrome_trace, speedscope

PROBE = Path(__file__).parent / "programs" / "profile_probe.c"


def _line_of(marker: str) -> int:
    return next(i for i, t in enumerate(PROBE.read_text().splitlines(), 1) if marker in t)


@pytest.fixture(scope="module")
def step_profile():
    return profile_step("digits-cnn", "RP2040")


def _sums(p):
    assert sum(f.exclusive for f in p.functions.values()) == p.total
    assert sum(r.cycles for r in p.lines.values()) == p.total
    assert sum(b.cycles for b in p.blocks.values()) == p.total
    assert sum(c for c, _n in p.classes.values()) == p.total
    assert sum(s.cycles for s in p.slices) == p.total


def test_step_profile_totals(step_profile):
    p, report = step_profile
    _sums(p)
    assert sum(excl for excl, _calls in p.tree.values()) == p.total  # every path charged
    # the traced kernel calls; the step's total adds only the modelled driver-call rows
    overhead = sum(r.cycles for r in report.rows if r.layer == "(kernel calls)")
    assert p.total == pytest.approx(report.batch_cycles - overhead * report.batch_size)
    assert p.top_functions(1)[0][1].exclusive > 0
    assert all(s.phase in ("forward", "loss", "backward", "update") for s in p.slices)


def test_phase_filter(step_profile):
    fwd, _ = profile_step("digits-cnn", "RP2040", phase="forward")
    _sums(fwd)
    assert {s.phase for s in fwd.slices} == {"forward"}
    assert fwd.total < step_profile[0].total


@pytest.mark.parametrize("board", ["RP2040", "nRF52840", "MIMXRT1062"])
def test_known_program_lines(catalog, build_probes, board):
    elf = build_probes(board, ("profile_probe.c",))
    p = profile_call(Machine(catalog.mcu(board), ElfImage.open(elf)), "probe_main", 1000)
    _sums(p)
    hot = p.functions["hot"]
    assert hot.exclusive > 0.95 * p.total
    assert p.functions["probe_main"].inclusive == p.total
    assert p.calls[("probe_main", "hot")] == 1 and p.calls[("probe_main", "cold")] == 1
    top = p.top_lines(1)[0]
    assert top.function == "hot" and top.file == "profile_probe.c"
    hot_line, loop_line = _line_of("HOT_LINE"), _line_of("for (uint32_t i")
    assert top.line in (hot_line, loop_line)
    assert sum(r.cycles for r in p.lines.values()
               if r.function == "hot" and r.line in (hot_line, loop_line)) > 0.9 * hot.exclusive


def test_callgrind_annotate_reads_our_file(step_profile, tmp_path):
    if shutil.which("callgrind_annotate") is None:
        if os.environ.get("MCUSIM_REQUIRE_GCC") == "1":  # CI installs valgrind
            pytest.fail("callgrind_annotate is missing (Debian package valgrind)")
        pytest.skip("callgrind_annotate (Debian package valgrind) is not installed")
    p, _ = step_profile
    f = tmp_path / "callgrind.out.mcusim"
    f.write_text(callgrind(p))
    out = subprocess.run(["callgrind_annotate", str(f)], capture_output=True, text=True,
                         check=True).stdout
    total_line = next(line for line in out.splitlines() if "PROGRAM TOTALS" in line)
    assert int(total_line.split()[0].replace(",", "")) == p.total
    # its per-function self costs add up to ours
    top = p.top_functions(1)[0]
    assert any(top[0] in line and f"{top[1].exclusive:,}" in line for line in out.splitlines())


def test_speedscope_file_format(step_profile):
    """The structure speedscope's file-format schema requires (SPEEDSCOPE_SCHEMA)."""
    p, _ = step_profile
    d = json.loads(json.dumps(speedscope(p)))
    assert d["$schema"] == SPEEDSCOPE_SCHEMA
    frames = d["shared"]["frames"]
    assert frames and all(isinstance(f["name"], str) for f in frames)
    (prof,) = d["profiles"]
    assert prof["type"] == "sampled" and isinstance(prof["name"], str)
    assert prof["unit"] in ("none", "nanoseconds", "microseconds", "milliseconds", "seconds",
                            "bytes")
    assert len(prof["samples"]) == len(prof["weights"]) > 0
    assert all(isinstance(i, int) and 0 <= i < len(frames) for s in prof["samples"] for i in s)
    assert prof["startValue"] == 0 and prof["endValue"] == sum(prof["weights"]) == p.total
    assert d["activeProfileIndex"] == 0


def test_chrome_trace(step_profile):
    p, _ = step_profile
    d = chrome_trace(p)
    kernels = [e for e in d["traceEvents"] if e["cat"] == "kernel"]
    assert len(kernels) == len(p.slices)
    assert all(e["ph"] == "X" and e["dur"] >= 0 for e in d["traceEvents"])
    assert sum(e["dur"] for e in kernels) == pytest.approx(p.total / p.clock_hz * 1e6)
    phases = [e for e in d["traceEvents"] if e["cat"] == "phase"]
    for k in kernels:  # every kernel slice nests in a phase slice
        assert any(ph["ts"] <= k["ts"] + 1e-9 and k["ts"] + k["dur"] <= ph["ts"] + ph["dur"]
                   + 1e-6 for ph in phases)


def test_cli_profile(capsys, tmp_path, catalog, build_probes):
    cg, ss, ct = tmp_path / "cg.out", tmp_path / "p.speedscope.json", tmp_path / "trace.json"
    assert main(["profile", "digits-cnn", "--mcu", "nRF52840", "--phase", "backward",
                 "--callgrind", str(cg), "--speedscope", str(ss), "--chrome-trace", str(ct),
                 "--json", "--top", "5"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["cycles"] > 0 and len(d["functions"]) == 5 and d["lines"] and d["blocks"]
    assert cg.exists() and ss.exists() and ct.exists()
    elf = build_probes("nRF52840", ("profile_probe.c",))
    for by in ("function", "line", "block", "class"):
        assert main(["profile", "--elf", elf, "-f", "probe_main", "--args", "50",
                     "--mcu", "nRF52840", "--by", by]) == 0
    assert main(["profile", "--elf", elf, "-f", "probe_main", "--args", "50",
                 "--mcu", "nRF52840", "--annotate", "hot"]) == 0
    out = capsys.readouterr().out
    assert "HOT_LINE" in out
    assert main(["profile", "--elf", elf, "-f", "probe_main", "--mcu", "nRF52840",
                 "--annotate", "nope"]) == 2
    assert main(["profile", "--mcu", "nRF52840"]) == 2
    assert "--elf" in capsys.readouterr().err


@pytest.mark.parametrize("board", ["RP2040", "MIMXRT1062"])
def test_call_tree_native_equals_python(catalog, build_probes, board):
    elf = build_probes(board, ("profile_probe.c",))
    trees = []
    for tracer in ("native", "python"):
        m = Machine(catalog.mcu(board), ElfImage.open(elf), tracer=tracer)
        m.enable_call_tree()
        r = m.call("probe_main", 20)
        trees.append((r.tree_nodes, r.tree_counts))
    assert trees[0] == trees[1]
    p = profile_call(Machine(catalog.mcu(board), ElfImage.open(elf)), "probe_main", 20)
    assert p.tree[("probe_main", "hot")][1] == 1 and p.tree[("probe_main", "cold")][1] == 1
    assert p.functions["probe_main"].inclusive == p.total
    assert p.functions["hot"].inclusive == p.functions["hot"].exclusive


def test_exact_inclusive_beats_call_count_sharing(step_profile):
    """A kernel's inclusive cycles are its own plus exactly what its callees spent under it."""
    p, _ = step_profile
    for fn, f in p.functions.items():
        under = sum(e for path, (e, _c) in p.tree.items() if fn in path)
        assert f.inclusive == under
        assert f.inclusive >= f.exclusive


def test_without_dwarf_falls_back_to_symbols(catalog, build_probes, tmp_path, capsys):
    elf = build_probes("nRF52840", ("profile_probe.c",))
    stripped = tmp_path / "probe-nodebug.elf"
    strip = shutil.which("arm-none-eabi-strip")
    if strip is None:
        pytest.skip("arm-none-eabi-strip not installed")
    subprocess.run([strip, "--strip-debug", "-o", str(stripped), elf], check=True)
    p = profile_call(Machine(catalog.mcu("nRF52840"), ElfImage.open(stripped)), "probe_main",
                     30)
    _sums(p)
    assert not p.has_lines and any("no DWARF" in a for a in p.assumptions)
    assert p.functions["hot"].exclusive > 0  # symbols still name the functions
    assert main(["profile", "--elf", str(stripped), "-f", "probe_main", "--args", "30",
                 "--mcu", "nRF52840", "--annotate", "hot"]) == 0
    assert "disassembly" in capsys.readouterr().out
