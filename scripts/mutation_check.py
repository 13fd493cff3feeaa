#!/usr/bin/env python3
"""Mutation audit: plant realistic bugs one at a time and see which tests catch them.

Each mutation is a small text edit (one or more files) of the kind a real change could
make: an off-by-one in a cost table, a floor that became a ceil in both the kernel and its
twin, a catalog figure, a sign in a rounding offset.  For every mutation the repository is
copied to a temporary directory (shutil.copytree, without .git and caches), the edit is
applied there, and a targeted selection of tests runs against the copy (PYTHONPATH points
at the copy, MCUSIM_CACHE_DIR at a temporary build cache shared by the runs: the build
cache is keyed by source content, so a mutated kernel is rebuilt and an unchanged one is
reused).  The source tree is never modified.  Nothing is installed.

    python scripts/mutation_check.py                 # table on stdout, progress on stderr
    python scripts/mutation_check.py --json          # the same as JSON
    python scripts/mutation_check.py --only topk-ceil --only m7-mispredict-7
    python scripts/mutation_check.py --list          # the mutations, without running

A baseline run (no mutation) of every selected test comes first: a mutation only counts as
caught when the unmutated copy passes the same tests.  Tests run with -k "not zig" (the
zig toolchain is slow to rebuild a mutated kernel with; gcc builds are enough to see a
difference) and HYPOTHESIS_PROFILE=ci (derandomized).

Exit status: 0 when every mutation was caught, 1 when some were not (or did not apply),
2 on a usage error or a failing baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", ".hypothesis",
                                ".ruff_cache", ".mypy_cache", "build", "dist", "*.egg-info",
                                ".ci-venv*")
NEW_TESTS = ("tests/test_quant_definitions.py", "tests/test_catalog_pins.py",
             "tests/test_m7_pins.py", "tests/test_callgrind_inclusive.py",
             "tests/test_energy_rows.py")


@dataclass(frozen=True)
class Edit:
    path: str  # relative to the repository
    old: str
    new: str


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]  # pytest node ids / files, relative to the repository
    origin: str = "extra"  # "audit": one of the planted bugs the audit found passing


@dataclass
class Outcome:
    mutation: Mutation
    status: str  # caught | missed | not-applied | error
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    detail: str = ""

    @property
    def by_new(self) -> list[str]:
        return [t for t in self.failed if t.split("::")[0] in NEW_TESTS]

    @property
    def by_old(self) -> list[str]:
        return [t for t in self.failed if t.split("::")[0] not in NEW_TESTS]

    def to_dict(self) -> dict[str, object]:
        m = self.mutation
        return {"mutation": m.name, "origin": m.origin, "what": m.what,
                "files": sorted({e.path for e in m.edits}), "status": self.status,
                "caught": self.status == "caught", "failed_tests": self.failed,
                "caught_by_new_tests": self.by_new, "caught_by_existing_tests": self.by_old,
                "tests_run": list(m.tests), "seconds": round(self.seconds, 1),
                "detail": self.detail}


QD = "tests/test_quant_definitions.py"
TOPK_NEW = (f"{QD}::test_topk_k_is_the_floor_of_lambda_n",
            f"{QD}::test_topk_layer_error_epsilon_by_hand")
REQ_NEW = (f"{QD}::test_twin_requantize_error_against_exact_value",
           f"{QD}::test_kernel_requantize_error_against_exact_value",
           f"{QD}::test_kernel_fqt_requantize_direct", f"{QD}::test_requantize_by_hand",
           f"{QD}::test_quantized_forward_is_close_to_float_reference")
KERNEL_FC = ("tests/test_kernels.py", "tests/test_fqt_kernels.py::test_fc_forward_and_backward",
             "tests/test_fqt_kernels.py::test_requantize_all_modes")
CONFORMANCE = "tests/test_timing_conformance.py"

MUTATIONS: tuple[Mutation, ...] = (
    # ---------------------------------------------------------------- the audit's bugs
    Mutation(
        "topk-ceil", "k = ceil(lambda N) instead of floor, in the kernel AND the twin",
        (Edit("kernels/train/fqt_select_topk.c", "    int32_t k = (int32_t)t;\n",
              "    int32_t k = (int32_t)t;\n    if ((float)k < t) {\n        k++;\n    }\n"),
         Edit("mcusim/fqt/twin.py", "    k = min(max(int(t), 1), N)",
              "    k = min(max(int(np.ceil(t)), 1), N)")),
        ("tests/test_fqt_kernels.py::test_select_topk", *TOPK_NEW), "audit"),
    Mutation(
        "requant-offset-quarter", "nearest rounding adds 2^(t-2) instead of 2^(t-1) "
        "(a bias of -1/4 LSB), kernel AND twin",
        (Edit("kernels/common/fqt_requantize.c", "prod += (int64_t)1 << (total - 1);",
              "prod += (int64_t)1 << (total - 2);"),
         Edit("mcusim/fqt/quant.py", "prod = prod + (np.int64(1) << np.int64(total - 1))",
              "prod = prod + (np.int64(1) << np.int64(total - 2))")),
        (*KERNEL_FC, *REQ_NEW), "audit"),
    Mutation(
        "requant-floor-is-nearest", "floor rounding takes the nearest offset too (the "
        "paper's floor loses its -1/2 LSB bias), kernel AND twin",
        (Edit("kernels/common/fqt_requantize.c", "    if (rounding == FQT_ROUND_NEAREST) {\n"
              "        prod += (int64_t)1 << (total - 1);",
              "    if (rounding != FQT_ROUND_STOCHASTIC) {\n"
              "        prod += (int64_t)1 << (total - 1);"),
         Edit("mcusim/fqt/quant.py", "    if rounding == ROUND_NEAREST:\n"
              "        prod = prod + (np.int64(1) << np.int64(total - 1))",
              "    if rounding != ROUND_STOCHASTIC:\n"
              "        prod = prod + (np.int64(1) << np.int64(total - 1))")),
        (*KERNEL_FC, *REQ_NEW), "audit"),
    Mutation(
        "f411-sram-halved", "STM32F411 SRAM 128 KB -> 64 KB in the catalog",
        (Edit("cost_models/mcus.toml", 'name = "SRAM"\nkind = "sram"\nbase = 0x20000000\n'
              'size = 0x20000\n', 'name = "SRAM"\nkind = "sram"\nbase = 0x20000000\n'
              'size = 0x10000\n'),),
        ("tests/test_catalog.py", "tests/test_budget_messages.py",
         "tests/test_catalog_pins.py"), "audit"),
    Mutation(
        "m7-mispredict-7", "Cortex-M7 branch mispredict penalty 8 -> 7",
        (Edit("cost_models/cortex_m7.toml", "mispredict_penalty = 8",
              "mispredict_penalty = 7"),),
        (CONFORMANCE, "tests/test_timing.py", "tests/test_m7_pins.py"), "audit"),
    Mutation(
        "m7-l1-free-prefetch", "the M7 L1 I-cache prefetches the next line for free",
        (Edit("mcusim/timing/memory.py", 'prefetch = fc.kind != "l1"', "prefetch = True"),),
        (CONFORMANCE, "tests/test_timing.py", "tests/test_m7_pins.py"), "audit"),
    Mutation(
        "callgrind-incl-plus-1", "callgrind calls= inclusive costs +1",
        (Edit("mcusim/render/exports.py", 'out.append(f"{first} {cost}")',
              'out.append(f"{first} {cost + 1}")'),),
        ("tests/test_profile.py", "tests/test_callgrind_inclusive.py"), "audit"),
    Mutation(
        "energy-row-first-sample", "a layer row's energy from the first sample instead of "
        "the mean over the samples",
        (Edit("mcusim/analyze.py",
              "energy = sum(s[1].get(key, 0.0) for s in per_sample) / len(per_sample) + \\",
              "energy = per_sample[0][1].get(key, 0.0) + \\"),),
        ("tests/test_energy.py", "tests/test_analyze.py", "tests/test_energy_rows.py"),
        "audit"),
    # ---------------------------------------------------------------- more, realistic
    Mutation(
        "energy-overhead-rounded", "the driver-call rows' energy priced from their mean "
        "cycles rounded to whole cycles (the total moves by < 1e-6)",
        (Edit("mcusim/analyze.py", "mean * joules_per_cycle))",
              "round(mean) * joules_per_cycle))"),),
        ("tests/test_energy.py", "tests/test_analyze.py", "tests/test_energy_rows.py")),
    Mutation(
        "twin-rounding-sign", "the twin subtracts the rounding offset (twin only)",
        (Edit("mcusim/fqt/quant.py", "prod = prod + (np.int64(1) << np.int64(total - 1))",
              "prod = prod - (np.int64(1) << np.int64(total - 1))"),),
        (*KERNEL_FC, *REQ_NEW)),
    Mutation(
        "topk-no-clamp", "k >= 1 clamp dropped, kernel AND twin (k = 0 possible)",
        (Edit("kernels/train/fqt_select_topk.c", "    if (k < 1) {\n        k = 1;\n    }\n",
              ""),
         Edit("mcusim/fqt/twin.py", "    k = min(max(int(t), 1), N)",
              "    k = min(max(int(t), 0), N)")),
        ("tests/test_fqt_kernels.py::test_select_topk", *TOPK_NEW)),
    Mutation(
        "topk-signed-eps", "|eps| not taken (negative eps lowers lambda), kernel AND twin",
        (Edit("kernels/train/fqt_select_topk.c",
              "    if (eps < 0.0f) {\n        eps = 0.0f - eps;\n    }\n", ""),
         Edit("mcusim/fqt/twin.py", "    if eps < F(0):\n        eps = F(0) - eps\n", "")),
        ("tests/test_fqt_kernels.py::test_select_topk", *TOPK_NEW)),
    Mutation(
        "saturate-254", "outputs saturate at act_max - 1 (254), kernel AND twin",
        (Edit("kernels/common/fqt_internal.h",
              "return v < lo ? lo : (v > hi ? hi : v);",
              "return v < lo ? lo : (v >= hi ? hi - 1 : v);"),
         Edit("mcusim/fqt/twin.py",
              'np.clip(v, int(q["act_min"]), int(q["act_max"])).astype(np.uint8)',
              'np.clip(v, int(q["act_min"]), int(q["act_max"]) - 1).astype(np.uint8)')),
        (*KERNEL_FC, f"{QD}::test_saturation_at_0_and_255")),
    Mutation(
        "zero-point-floor", "z = floor(-fmin/s) instead of round, kernel AND twin",
        (Edit("kernels/train/fqt_range.c", "    t = t / s;\n    t = t + 0.5f;\n",
              "    t = t / s;\n"),
         Edit("mcusim/fqt/quant.py", "    t = t / s\n    t = t + F(0.5)\n", "    t = t / s\n")),
        ("tests/test_fqt_kernels.py::test_range_params_of_a_diverged_range",
         "tests/test_fqt_kernels.py::test_update_and_refresh", f"{QD}::test_scale_and_zero_point")),
    Mutation(
        "multiplier-shift-off-by-one", "Q31 shift one too small (M halved), kernel AND "
        "twin",
        (Edit("kernels/train/fqt_range.c", "    int32_t sh = e - 126;",
              "    int32_t sh = e - 127;"),
         Edit("mcusim/fqt/quant.py", "    sh = e - 126", "    sh = e - 127")),
        ("tests/test_kernels.py", "tests/test_fqt_kernels.py::test_update_and_refresh",
         f"{QD}::test_multiplier_represents_m_exactly", f"{QD}::test_requantize_by_hand")),
    Mutation(
        "m7-sdiv-8", "Cortex-M7 SDIV/UDIV 7 -> 8 cycles (cost table off by one)",
        (Edit("cost_models/cortex_m7.toml", "[class.div]\ncycles = 7\n",
              "[class.div]\ncycles = 8\n"),),
        (CONFORMANCE, "tests/test_timing.py", "tests/test_m7_pins.py")),
    Mutation(
        "m4-mul-2", "Cortex-M4 MUL 1 -> 2 cycles (cost table off by one)",
        (Edit("cost_models/cortex_m4.toml", "[class.mul]\ncycles = 1\n",
              "[class.mul]\ncycles = 2\n"),),
        (CONFORMANCE, "tests/test_timing.py")),
    Mutation(
        "m0plus-ldr-1", "Cortex-M0+ LDR 2 -> 1 cycle (cost table off by one)",
        (Edit("cost_models/cortex_m0plus.toml", "[class.load]\ncycles = 2\n",
              "[class.load]\ncycles = 1\n"),),
        (CONFORMANCE, "tests/test_timing.py")),
    Mutation(
        "f746-wait-states-6", "STM32F746 flash wait states 7 -> 6",
        (Edit("cost_models/mcus.toml", "flash_wait_states = 7", "flash_wait_states = 6"),),
        ("tests/test_catalog.py", CONFORMANCE, "tests/test_catalog_pins.py",
         "tests/test_m7_pins.py")),
    Mutation(
        "nrf52840-clock-48", "nRF52840 clock 64 MHz -> 48 MHz",
        (Edit("cost_models/mcus.toml", 'core = "m4"\nclock_hz = 64_000_000',
              'core = "m4"\nclock_hz = 48_000_000'),),
        ("tests/test_catalog.py", "tests/test_energy.py", "tests/test_catalog_pins.py",
         "tests/test_energy_rows.py")),
    Mutation(
        # (ALIGN = 4 is an equivalent mutant: word alignment is all LDR/LDM/LDRD need)
        "planner-align-2", "memory planner aligns arena tensors to 2 bytes instead of 8 "
        "(an int32 buffer after an odd-sized one lands on a halfword)",
        (Edit("mcusim/fqt/planner.py", "ALIGN = 8\n", "ALIGN = 2\n"),),
        ("tests/test_planner.py", "tests/test_alignment.py")),
    Mutation(
        "planner-align-1", "memory planner does not align arena tensors at all",
        (Edit("mcusim/fqt/planner.py", "ALIGN = 8\n", "ALIGN = 1\n"),),
        ("tests/test_planner.py", "tests/test_alignment.py")),
    Mutation(
        "planner-lifetime-touch", "memory planner lets tensors whose lifetimes meet at one "
        "call share bytes (< instead of <=)",
        (Edit("mcusim/fqt/planner.py", "(firsts[:k] <= lt.last) & (lasts[:k] >= lt.first)",
              "(firsts[:k] < lt.last) & (lasts[:k] > lt.first)"),),
        ("tests/test_planner.py",)),
    Mutation(
        "art-no-prefetch", "the STM32 ART accelerator loses its sequential prefetch",
        (Edit("mcusim/timing/memory.py", 'prefetch = fc.kind != "l1"',
              'prefetch = fc.kind not in ("l1", "art")'),),
        (CONFORMANCE, "tests/test_m7_pins.py")),
    Mutation(
        "callgrind-self-line-plus-1", "callgrind self-cost lines +1 cycle",
        (Edit("mcusim/render/exports.py", 'out.append(f"{r.line or 0} {r.cycles}")',
              'out.append(f"{r.line or 0} {r.cycles + 1}")'),),
        ("tests/test_profile.py", "tests/test_callgrind_inclusive.py")),
    Mutation(
        "f411-run-current", "STM32F411 run current 11.6 mA -> 1.16 mA (a decimal slip)",
        (Edit("cost_models/mcus.toml", "run_current_ma = 11.6\n", "run_current_ma = 1.16\n"),),
        ("tests/test_catalog.py", "tests/test_energy.py", "tests/test_catalog_pins.py",
         "tests/test_energy_rows.py")),
    # ---------------------------------------------------------------- graphs (issue 14)
    Mutation(
        "fork-drops-a-branch", "at a fork the error of the first consumer is copied instead "
        "of summed with the others (the same program in C and twin: bit-exact anyway)",
        (Edit("mcusim/fqt/network.py",
              'p.op("backward", "fqt_add_u8", a, b, y, L.out_size, q, f"{yr}:acc_min",\n'
              '                     layer=L.name, phase="backward", seed=self._seed(q))',
              'p.op("backward", "fqt_copy_u8", a, y, L.out_size,\n'
              '                     layer=L.name, phase="backward")'),),
        ("tests/test_graph_models.py",)),
    Mutation(
        "add-backward-masks-both", "a residual add's input that masks its error in place "
        "shares the add's error instead of a copy (its relu mask leaks into the shortcut)",
        (Edit("mcusim/fqt/network.py",
              "            if not (self._masks_error(j) and others):",
              "            if True:"),),
        ("tests/test_graph_models.py",)),
    Mutation(
        "mse-gradient-halved", "the mse error is (y - t) / n instead of 2 (y - t) / n, in "
        "the kernel AND the twin",
        (Edit("kernels/loss/fqt_mse.c", "d * 2.0f", "d * 1.0f"),
         Edit("mcusim/fqt/twin_graph.py", "g = d * F(2)", "g = d * F(1)")),
        ("tests/test_graph_kernels.py",)),
)


# ---------------------------------------------------------------------------- running

def log(msg: str) -> None:
    print(f"[mutation_check] {msg}", file=sys.stderr, flush=True)


def copy_repo(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, ignore=IGNORE, symlinks=True)
    return dest


def apply(m: Mutation, root: Path) -> str:
    """Apply a mutation's edits under root; '' on success, else why it does not apply."""
    for e in m.edits:
        p = root / e.path
        if not p.is_file():
            return f"{e.path} is missing"
        text = p.read_text()
        n = text.count(e.old)
        if n != 1:
            return f"{e.path}: the text to mutate occurs {n} times (expected once)"
        p.write_text(text.replace(e.old, e.new, 1))
    return ""


_FAILED = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$")


def run_tests(root: Path, tests: tuple[str, ...], cache: Path, timeout: float
              ) -> tuple[int, list[str], str]:
    """pytest on the copy: (exit code, failed/errored node ids, output tail)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    env["MCUSIM_CACHE_DIR"] = str(cache)
    env["HYPOTHESIS_PROFILE"] = "ci"
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "--no-header", "-p",
           "no:cacheprovider", "-k", "not zig", "--rootdir", str(root), *tests]
    try:
        r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, [], f"timeout after {timeout:.0f} s"
    out = r.stdout + r.stderr
    failed = []
    for line in out.splitlines():
        hit = _FAILED.match(line)
        if hit and hit.group(1) not in failed:
            failed.append(hit.group(1))
    return r.returncode, failed, out


def check_import(root: Path) -> str:
    """The copy's mcusim is the one imported (not the installed one)."""
    env = dict(os.environ, PYTHONPATH=str(root))
    r = subprocess.run([sys.executable, "-c", "import mcusim; print(mcusim.__file__)"],
                       cwd=root, env=env, capture_output=True, text=True)
    got = r.stdout.strip()
    return "" if got.startswith(str(root)) else f"mcusim imports from {got or r.stderr}"


def run(mutations: list[Mutation], source: Path, timeout: float, keep: bool
        ) -> tuple[list[Outcome], dict[str, object]]:
    work = Path(tempfile.mkdtemp(prefix="mcusim-mutation-"))
    cache = work / "cache"
    outcomes: list[Outcome] = []
    baseline: dict[str, object] = {}
    try:
        tests = tuple(dict.fromkeys(t for m in mutations for t in m.tests))
        # one snapshot of the source, so that every run sees the same tree even while
        # the source is being edited; each run gets its own copy of the snapshot
        log(f"snapshot: copying {source} to {work / 'source'}")
        snapshot = copy_repo(source, work / "source")
        base = copy_repo(snapshot, work / "baseline")
        bad = check_import(base)
        if bad:
            raise SystemExit(f"mutation_check: {bad}")
        t0 = time.monotonic()
        log(f"baseline: {len(tests)} test selections (builds the kernels once)")
        code, failed, tail = run_tests(base, tests, cache, timeout * 3)
        baseline = {"exit": code, "failed": failed, "seconds": round(time.monotonic() - t0, 1)}
        if code != 0:
            log(f"baseline FAILS (exit {code}): {failed or tail[-2000:]}")
            return outcomes, baseline
        # the baseline copy stays until the end: objects in the shared build cache carry
        # the path they were compiled from (DWARF), and a later run that reuses them reads
        # source lines from there (profile --annotate)
        for i, m in enumerate(mutations, 1):
            log(f"[{i}/{len(mutations)}] {m.name}: {m.what}")
            root = copy_repo(snapshot, work / f"m{i:02d}-{m.name}")
            why = apply(m, root)
            if why:
                outcomes.append(Outcome(m, "not-applied", detail=why))
                log(f"    not applied: {why}")
                continue
            t0 = time.monotonic()
            code, failed, tail = run_tests(root, m.tests, cache, timeout)
            dt = time.monotonic() - t0
            if code == 0:
                o = Outcome(m, "missed", [], dt)
            elif failed:
                o = Outcome(m, "caught", failed, dt)
            else:
                o = Outcome(m, "error", [], dt, "\n".join(tail.splitlines()[-15:]))
            outcomes.append(o)
            (work / f"m{i:02d}-{m.name}.log").write_text(tail)
            log(f"    {o.status} in {dt:.0f} s"
                + (f" by {len(failed)} test(s), e.g. {failed[0]}" if failed else ""))
            if not keep:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
    return outcomes, baseline


def short(ids: list[str], n: int = 2) -> str:
    """Failing tests by file::function (parameters folded into a count)."""
    if not ids:
        return "-"
    groups: dict[str, int] = {}
    for i in ids:
        key = i.split("/")[-1].split("[")[0]
        groups[key] = groups.get(key, 0) + 1
    names = [f"{k}" + (f" x{v}" if v > 1 else "") for k, v in groups.items()]
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def table(outcomes: list[Outcome]) -> str:
    rows = [("mutation", "file(s)", "caught", "by new tests", "by existing tests")]
    for o in outcomes:
        m = o.mutation
        files = ", ".join(sorted({e.path.split("/")[-1] for e in m.edits}))
        caught = {"caught": "yes", "missed": "NO", "not-applied": "n/a",
                  "error": "error"}[o.status]
        rows.append((m.name + (" *" if m.origin == "audit" else ""), files, caught,
                     short(o.by_new), short(o.by_old)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("* = one of the planted bugs the audit found passing the suite")
    for o in outcomes:
        if o.status in ("not-applied", "error"):
            lines.append(f"{o.mutation.name}: {o.status}: {o.detail.splitlines()[-1:]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="JSON on stdout")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only this mutation (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--source", type=Path, default=REPO,
                    help=f"the repository to copy (default {REPO}); never modified")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds per mutation's test run (default 900)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copies")
    args = ap.parse_args(argv)
    names = {m.name for m in MUTATIONS}
    unknown = [n for n in args.only if n not in names]
    if unknown:
        print(f"mutation_check: unknown mutation {unknown[0]!r} (see --list)", file=sys.stderr)
        return 2
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list:
        for m in chosen:
            files = ", ".join(sorted({e.path for e in m.edits}))
            print(f"{m.name:30s} {files}\n    {m.what}\n    tests: {' '.join(m.tests)}")
        return 0
    source = args.source.resolve()
    if not (source / "mcusim" / "__init__.py").is_file():
        print(f"mutation_check: {source} is not an mcusim checkout", file=sys.stderr)
        return 2
    outcomes, baseline = run(chosen, source, args.timeout, args.keep)
    if baseline.get("exit") != 0:
        if args.json:
            print(json.dumps({"baseline": baseline, "mutations": []}, indent=2))
        else:
            print(f"baseline failed: {baseline}")
        return 2
    if args.json:
        print(json.dumps({"source": str(source), "baseline": baseline,
                          "mutations": [o.to_dict() for o in outcomes]}, indent=2))
    else:
        print(table(outcomes))
    return 0 if all(o.status == "caught" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
