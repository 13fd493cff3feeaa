"""One group of the suite, run in a clean interpreter.

The pytest process may hold Unicorn engines of other tests (each reserves hundreds of MiB of
address space) and threads; a child forked from it would inherit them, and the 2 GiB
RLIMIT_AS would measure the test process, not mcusim.  So the test starts `group_main` with
multiprocessing's "spawn" (a fresh interpreter with the test process's sys.path, hence the
same mcusim), which imports mcusim, generates the group's cases and forks one child per
case from there.  The result is a JSON summary (runner.summary plus the failure report).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import catalog_cases, cli_cases, elf_cases, model_cases, npz_cases
from .runner import Case, preload, report, run_group, summary

GROUPS = ("elf", "model", "npz", "cli", "catalog")


def cases_of(group: str, params: dict[str, Any]) -> list[Case]:
    work = Path(params["work"])
    if group == "elf":
        return elf_cases.generate(work, params["elf_m4"], params["elf_m0"])
    if group == "model":
        return model_cases.generate(work)
    if group == "npz":
        return npz_cases.generate(work)
    if group == "cli":
        return cli_cases.generate(work, params["elf_m4"])
    if group == "catalog":
        return catalog_cases.generate(work)
    raise ValueError(f"unknown group {group!r}")


def group_main(group: str, params: dict[str, Any], out_path: str) -> None:
    """Generate, run and judge one group; write the summary to `out_path`."""
    preload()
    cases = cases_of(group, params)
    only = [s for s in params.get("only", "").split(",") if s]
    if only:
        cases = [c for c in cases if c.is_reference or any(s in c.name for s in only)]
    results = run_group(cases, cwd=params["cwd"], jobs=params["jobs"])
    s = summary(group, results)
    s["report"] = report(group, results)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(s, f, indent=2)
        f.write("\n")
    os.replace(tmp, out_path)
