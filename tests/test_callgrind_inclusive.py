"""The callgrind export's call costs, parsed back and checked against the profile.

Format (valgrind.org/docs/manual/cl-format.html): after `fn=F` come F's self-cost lines
`<line> <cost>`; each call F makes is `cfn=G`, `calls=<count> <target line>` and one cost
line whose cost is the INCLUSIVE cost of those calls of G from F.  tests/test_profile.py
checks the totals (callgrind_annotate's PROGRAM TOTALS and self costs); nothing checked
the `calls=` costs, so an off-by-one there went unnoticed.

What must hold, from the definitions (no recursion in these programs, checked):
  * F's self lines add up to F's exclusive cycles;
  * every cycle of F's inclusive cost is either F's own or spent in exactly one of F's
    direct callees below F on the call path, so
        self(F) + sum over F's calls= costs  ==  inclusive(F)            (per function)
  * a callee G that only F ever calls, and that is never a root of a call path (a kernel
    the driver calls), spends all its inclusive cycles under F:  cost(F -> G) == incl(G);
  * the calls= count is the number of calls (BL edges) from F to G (the call tree also
    records tail calls, B into another function, e.g. __aeabi_idivmod's `b __divsi3`,
    which are not BL edges: those pairs only appear in the tree).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mcusim.elf import ElfImage
from mcusim.machine import Machine
from mcusim.profile import profile_call, profile_step
from mcusim.render.exports import DRIVER, callgrind


def parse(text: str) -> tuple[int, dict[str, int], dict[tuple[str, str], tuple[int, int]]]:
    """(summary, self cost per fn, (caller, callee) -> (calls, inclusive cost))."""
    summary = 0
    self_cost: dict[str, int] = {}
    calls: dict[tuple[str, str], tuple[int, int]] = {}
    fn = None
    callee = None
    pending: int | None = None
    for line in text.splitlines():
        if line.startswith("summary:"):
            summary = int(line.split()[1])
        elif line.startswith("fn="):
            fn = line[3:]
            assert fn not in self_cost, f"two sections for {fn}"
            self_cost[fn] = 0
            callee = None
        elif line.startswith("cfn="):
            callee = line[4:]
        elif line.startswith("calls="):
            pending = int(line[6:].split()[0])
        elif line and line[0].isdigit():
            _pos, cost = line.split()
            if pending is not None:
                assert callee is not None and (fn, callee) not in calls
                calls[(fn, callee)] = (pending, int(cost))
                pending = None
            else:
                assert fn is not None
                self_cost[fn] += int(cost)
    return summary, self_cost, calls


def check(p) -> dict[tuple[str, str], tuple[int, int]]:
    summary, self_cost, calls = parse(callgrind(p))
    # the (driver) section: no cycles of its own, and its calls are the whole profile
    assert self_cost.pop(DRIVER) == 0
    assert sum(cost for (a, _b), (_n, cost) in calls.items() if a == DRIVER) == p.total
    calls = {k: v for k, v in calls.items() if k[0] != DRIVER}
    assert summary == p.total == sum(self_cost.values())
    for fn, c in self_cost.items():
        assert c == p.functions[fn].exclusive, fn
    assert p.tree, "the profile has a call tree (exact inclusive costs)"
    assert all(len(set(path)) == len(path) for path in p.tree), "recursion: rules differ"
    roots = {path[0] for path in p.tree}
    for fn, c in self_cost.items():
        out = sum(cost for (a, _b), (_n, cost) in calls.items() if a == fn)
        assert c + out == p.functions[fn].inclusive, \
            f"{fn}: self {c} + calls {out} != inclusive {p.functions[fn].inclusive}"
    callers: dict[str, set[str]] = {}
    for (a, b) in p.calls:
        callers.setdefault(b, set()).add(a)
    for (a, b), (n, cost) in calls.items():
        if (a, b) in p.calls:  # BL edges; a tail call (B into a function) is not one
            assert n == p.calls[(a, b)], (a, b)
        assert n > 0 and cost >= 0
        if callers.get(b) == {a} and b not in roots:
            assert cost == p.functions[b].inclusive, (a, b)
    return calls


@pytest.fixture(scope="module")
def step_profile():
    return profile_step("digits-cnn", "RP2040")[0]


def test_step_profile_call_costs(step_profile):
    calls = check(step_profile)
    assert calls, "the step's kernels call helpers (fqt_dot_u8, fqt_requantize, ...)"


@pytest.mark.parametrize("board", ["RP2040", "nRF52840", "MIMXRT1062"])
def test_probe_call_costs(catalog, build_probes, board):
    """profile_probe.c: probe_main calls hot() and cold() once each; neither is called
    from anywhere else, so each calls= cost is that function's inclusive cost, and
    probe_main's self cost plus the two is the whole run."""
    elf = build_probes(board, ("profile_probe.c",))
    p = profile_call(Machine(catalog.mcu(board), ElfImage.open(elf)), "probe_main", 1000)
    calls = check(p)
    for g in ("hot", "cold"):
        n, cost = calls[("probe_main", g)]
        assert n == 1
        assert cost == p.functions[g].inclusive
    _s, self_cost, _c = parse(callgrind(p))
    assert self_cost["probe_main"] + sum(c for (a, _b), (_n, c) in calls.items()
                                         if a == "probe_main") == p.total


def test_callgrind_annotate_inclusive_agrees(step_profile, tmp_path):
    """callgrind_annotate --inclusive=yes computes inclusive costs from our self lines and
    calls= lines: a function's entry under its own file (fl=; an inlined header's lines,
    fi=, are listed as a separate file:function entry with their self cost) must be the
    profile's inclusive cycles.

    callgrind_annotate takes a called function's inclusive cost as the sum of its incoming
    calls= costs.  The export therefore has a "(driver)" section calling every top-level
    function: a kernel that the driver calls directly AND another kernel calls
    (fqt_range_commit: a per-sample kernel, and called by fqt_update) must show its whole
    inclusive cost too, not only its nested share."""
    if shutil.which("callgrind_annotate") is None:
        pytest.skip("callgrind_annotate (Debian package valgrind) is not installed")
    p = step_profile
    f = tmp_path / "callgrind.out.mcusim"
    text = callgrind(p)
    f.write_text(text)
    home: dict[str, str] = {}  # function -> the file of its section (fl=)
    fl = None
    for line in text.splitlines():
        if line.startswith("fl="):
            fl = line[3:]
        elif line.startswith("fn="):
            home[line[3:]] = fl
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(f)],
                         capture_output=True, text=True, check=True).stdout
    incl: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].replace(",", "").isdigit() or "PROGRAM" in line:
            continue
        file, _, name = parts[-1].rpartition(":")  # "cost (pct%)  file:function"
        if name in p.functions and file == home.get(name):
            incl[name] = int(parts[0].replace(",", ""))
    roots = {path[0] for path in p.tree}
    called = {b for (_a, b) in p.calls} | {path[-1] for path in p.tree if len(path) > 1}
    assert roots & called  # fqt_range_commit at least: the case the driver section is for
    for name, v in incl.items():
        assert v == p.functions[name].inclusive, name
    assert len(incl) >= 10
