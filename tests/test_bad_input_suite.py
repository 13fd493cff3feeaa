"""The generated bad-input suite: about a thousand malformed inputs, 0 tracebacks, 0 hangs,
0 silent wrong results.

Groups (generators in tests/badinput/, each module's docstring lists its mutations):
elf (a built image truncated, its headers and sections corrupted, non-regular paths), model
(zoo model TOML mutated), npz (user data sets), cli (every numeric option with -1, 0, 1,
1e400, nan, inf, 2**32, 2**64, '', 'abc', '-', '--x'; names, paths, environment variables),
catalog (user MCU catalogs).

Every case runs `mcusim.cli.main(argv)` in a child forked from a clean interpreter that has
imported mcusim (tests/badinput/suite.py; no Unicorn engine started there), under a 2 GiB
RLIMIT_AS and a 20 s wall-clock limit.  The oracle per case (tests/badinput/runner.py
`check`): exit code in the case's expected set (0 ok, 1 emulated fault or failed check, 2
bad input; 3, the internal-error catch-all, never); no traceback, no "internal error", no
hang, no blow-up (a signal, MemoryError, or a native exit() that never returned from main);
on failure exactly one `mcusim: error:` line (argparse's `mcusim CMD: error:` counts) and
with exit 2 nothing else on stderr but progress/warning lines, naming the culprit where the
case says which; with --json strict JSON on stdout (no NaN); and where a result exists and
the case has a reference (the unmutated ELF's run, the zoo model's step, the base data
set's training, the template catalog's entry), the same result.

One test per group; a failure lists every failing case with a repro command and the first
stderr line.  Counts per group are printed and written, with every case's outcome, to
<tmp>/badinput/summary-<group>.json.  Environment: MCUSIM_BADINPUT_JOBS (children at a
time, default 2), MCUSIM_BADINPUT_DIR (write the generated files there and keep them, for
the repro commands; by default pytest's tmp dir, kept for three runs), MCUSIM_BADINPUT_ONLY
(comma-separated case-name substrings: run only those, plus the references).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from mcusim.toolchain import Builder

from .badinput.suite import GROUPS, group_main

GROUP_TIMEOUT_S = 900


@pytest.fixture(scope="session")
def badinput_params(tmp_path_factory, build_probes, catalog, default_toolchain) -> dict[str, Any]:
    keep = os.environ.get("MCUSIM_BADINPUT_DIR")
    work = Path(keep) if keep else tmp_path_factory.mktemp("badinput")
    work.mkdir(parents=True, exist_ok=True)
    cwd = work / "cwd"
    cwd.mkdir(exist_ok=True)
    # the images the cases use, built here once: the children find them in the build cache
    elf_m4 = build_probes("nRF52840", ("profile_probe.c",))
    elf_m0 = build_probes("RP2040", ("profile_probe.c",))
    builder = Builder(default_toolchain)
    for name in ("nRF52840", "RP2040"):
        mcu = catalog.mcu(name)
        builder.build(mcu.core, [mcu])
    jobs = int(os.environ.get("MCUSIM_BADINPUT_JOBS") or min(2, os.cpu_count() or 1))
    return {"work": str(work), "cwd": str(cwd), "jobs": max(1, jobs), "elf_m4": elf_m4,
            "elf_m0": elf_m0, "only": os.environ.get("MCUSIM_BADINPUT_ONLY", "")}


@pytest.mark.parametrize("group", GROUPS)
def test_bad_input_group(group: str, badinput_params: dict[str, Any], capsys) -> None:
    out = Path(badinput_params["work"]) / f"summary-{group}.json"
    out.unlink(missing_ok=True)
    proc = multiprocessing.get_context("spawn").Process(
        target=group_main, args=(group, badinput_params, str(out)), name=f"badinput-{group}")
    proc.start()
    proc.join(GROUP_TIMEOUT_S)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail(f"bad-input group {group!r} did not finish in {GROUP_TIMEOUT_S} s")
    assert proc.exitcode == 0 and out.exists(), (
        f"the bad-input runner for {group!r} itself failed (exit {proc.exitcode}); "
        "its traceback is in the captured stderr")
    s = json.loads(out.read_text())
    with capsys.disabled():
        print(f"\nbad-input {group}: {s['cases']} cases, {s['outcomes']}, "
              f"{s['failures']} failing ({out})")
    assert s["failures"] == 0, s["report"]
