"""The hot-spot profile: where the cycles of a call or a training step go.

One data model (`Profile`) collects, from the exact per-instruction attribution of the
timing model (mcusim.timing.model.attribute), cycles per function (exclusive, and
inclusive through the call graph), per source line (DWARF, via mcusim.elf), per basic
block (with its disassembly) and per instruction class, plus the kernel calls of a training
step as slices on a timeline of simulated time.  Renderers (terminal tables, callgrind,
speedscope, Chrome trace) are separate modules over this model (mcusim/render/).

Inclusive cycles come from the call tree the tracer records (Machine.enable_call_tree: the
native hook keeps a shadow stack from BL/BLX, BX LR, POP/LDM/LDR with PC and tail calls):
every block execution is counted under its call path, so a function's inclusive cycles are
the exclusive cycles of every path through it — exact.  A block that runs under several
paths shares its dynamic extras (taken-branch refills, cache misses) in proportion to its
executions there.  Without a call tree the profile falls back to gprof's assumption (a
callee's cycles shared among callers by call counts), and says so in `assumptions`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from mcusim.errors import McusimError, UsageError
from mcusim.machine import CallResult, Machine
from mcusim.userfiles import MiB, read_bytes

UNKNOWN = "(unknown)"

# A source file shown next to the profile is read whole; no real C file is near this size.
MAX_SOURCE_BYTES = 4 * MiB
# Directories a DWARF compilation directory may never open up for reading: an ELF is
# untrusted input and can name any DW_AT_comp_dir (--source-dir still allows them).
_SYSTEM_DIRS = ("/etc", "/proc", "/sys", "/dev", "/boot", "/run", "/var")


class SourceFile(str):
    """A source file's path as compiled (a str), carrying the directories it may be read
    from (`roots`): the values of `Profile.paths`, so `source_text(file, line,
    profile.paths[file])` reads only what the profile allows."""

    roots: tuple[str, ...]

    def __new__(cls, path: str, roots: Iterable[str]) -> SourceFile:
        s = super().__new__(cls, path)
        s.roots = tuple(roots)
        return s


def resolve_source_dirs(dirs: Sequence[str | Path] | None) -> tuple[str, ...]:
    """The --source-dir directories, resolved (realpath); UsageError for one that is not
    a directory."""
    out: list[str] = []
    for d in dirs or ():
        try:
            real = os.path.realpath(d)
            ok = os.path.isdir(real)
        except (OSError, ValueError):
            ok = False
        if not ok:
            raise UsageError(f"--source-dir {d}: not a directory")
        out.append(real)
    return tuple(dict.fromkeys(out))


def _dwarf_roots(dirs: Iterable[str]) -> list[str]:
    """The compilation directories an ELF's DWARF names, resolved, that may serve its
    sources: absolute, existing, and not the file system root, a system directory or the
    home directory itself."""
    home = os.path.realpath(os.path.expanduser("~"))
    out = []
    for d in dirs:
        try:
            if not os.path.isabs(d):
                continue
            real = os.path.realpath(d)
            if not os.path.isdir(real):
                continue
        except (OSError, ValueError):
            continue
        if real in ("/", home) or any(_under(real, sd) for sd in _SYSTEM_DIRS):
            continue
        out.append(real)
    return out


def _under(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


@dataclass
class FunctionStats:
    exclusive: int = 0
    inclusive: int = 0
    calls: int = 0  # times entered through a call edge (or as the called kernel)
    instructions: int = 0


@dataclass
class LineStats:
    function: str
    file: str | None
    line: int | None
    cycles: int = 0
    instructions: int = 0


@dataclass
class BlockStats:
    function: str
    address: int
    size: int
    cycles: int = 0
    executions: int = 0
    text: list[str] = field(default_factory=list)  # "addr: insn" lines


@dataclass
class Slice:
    """One kernel call on the timeline of simulated time (cycles from the step's start)."""

    name: str
    layer: str
    phase: str
    start: int
    cycles: int
    functions: dict[str, int] = field(default_factory=dict)  # function -> exclusive cycles
    callers: dict[str, str] = field(default_factory=dict)  # callee -> a caller in this call

    def stack(self, fn: str) -> list[str]:
        """The call path from the kernel to fn within this call (shortest known)."""
        path = [fn]
        while path[-1] != self.name and path[-1] in self.callers and len(path) < 32:
            nxt = self.callers[path[-1]]
            if nxt in path:
                break
            path.append(nxt)
        if path[-1] != self.name:
            path.append(self.name)
        return path[::-1]


@dataclass
class Profile:
    title: str
    mcu: str
    core: str
    clock_hz: int
    total: int = 0
    functions: dict[str, FunctionStats] = field(default_factory=dict)
    lines: dict[tuple[str, str | None, int | None], LineStats] = field(default_factory=dict)
    blocks: dict[tuple[int, int], BlockStats] = field(default_factory=dict)
    classes: dict[str, list[int]] = field(default_factory=dict)  # class -> [cycles, count]
    calls: dict[tuple[str, str], int] = field(default_factory=dict)  # (caller, callee) -> n
    slices: list[Slice] = field(default_factory=list)
    insns: dict[int, list] = field(default_factory=dict)  # address -> [cycles, count, text, fn]
    paths: dict[str, str] = field(default_factory=dict)  # source file name -> full path
    tree: dict[tuple[str, ...], list[int]] = field(default_factory=dict)  # path -> [excl, calls]
    has_lines: bool = True
    assumptions: list[str] = field(default_factory=list)
    # directories the user allows sources to be read from (--source-dir), besides the
    # compilation directories of the DWARF and mcusim's kernels directory
    source_dirs: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)  # e.g. an unreadable DWARF line table

    def source_text(self, file: str | None, line: int | None) -> str | None:
        """The text of a line of one of the profile's source files (None when the file
        is unknown, not allowed, unreadable or too short)."""
        return source_text(file, line, self.paths.get(file or ""))

    # ------------------------------------------------------------------ building

    def add_call(self, machine: Machine, result: CallResult, layer: str = "",
                 phase: str = "", group: str = "") -> int:
        """Charge one traced call; returns its cycles."""
        image = machine.image
        attribution = machine.attribution(result)
        note = image.line_info_note if image else None
        if note and note not in self.notes:
            self.notes.append(note)
        cycles = 0
        per_fn: dict[str, int] = {}
        names: dict[int, str] = {}

        def fname(address: int) -> str:
            n = names.get(address)
            if n is None:
                hit = image.function_at(address) if image else None
                n = names[address] = hit[0].name if hit else UNKNOWN
            return n

        for (a, sz), bcy in attribution.items():
            fn = fname(a)
            f = self.functions.setdefault(fn, FunctionStats())
            total = bcy.total
            cycles += total
            f.exclusive += total
            f.instructions += bcy.count * len(bcy.block.insns)
            b = self.blocks.get((a, sz))
            if b is None:
                b = self.blocks[(a, sz)] = BlockStats(
                    fn, a, sz, text=[f"{i.address:08x}: {i.text}" for i in bcy.block.insns])
            b.cycles += total
            b.executions += bcy.count
            stall = bcy.stall
            for i, (ins, c) in enumerate(zip(bcy.block.insns, bcy.cycles, strict=True)):
                if i == 0:
                    c += stall  # pipeline stalls of the block: its first line
                src = image.source_line(ins.address) if image else None
                key = (fn, src[0] if src else None, src[1] if src else None)
                if src is None:
                    self.has_lines = False
                elif src[0] not in self.paths:
                    full = image.source_path(src[0])
                    if full:
                        roots = (*self.source_dirs, *_dwarf_roots(image.compilation_dirs))
                        self.paths[src[0]] = SourceFile(full, roots)
                ls = self.lines.get(key)
                if ls is None:
                    ls = self.lines[key] = LineStats(fn, key[1], key[2])
                ls.cycles += c
                ls.instructions += bcy.count
                cl = self.classes.setdefault(ins.cls, [0, 0])
                cl[0] += c
                cl[1] += bcy.count
                it = self.insns.get(ins.address)
                if it is None:
                    it = self.insns[ins.address] = [0, 0, ins.text, fn]
                it[0] += c
                it[1] += bcy.count
                per_fn[fn] = per_fn.get(fn, 0) + c
        # the call graph: edges from a block that ends with BL/BLX into another function
        by_addr = {aa: bc for (aa, _s), bc in attribution.items()}
        call_graph: dict[str, str] = {}
        for (frm, to), k in result.edges.items():
            src = by_addr.get(frm)
            if src is None or src.block.insns[-1].name not in ("bl", "blx"):
                continue
            caller, callee = fname(frm), fname(to)
            if caller != callee:
                self.calls[(caller, callee)] = self.calls.get((caller, callee), 0) + k
                self.functions.setdefault(callee, FunctionStats()).calls += k
                call_graph.setdefault(callee, caller)
        root = self.functions.setdefault(result.function, FunctionStats())
        root.calls += 1
        if result.tree_nodes:
            self._add_tree(result, attribution, fname)
        self.slices.append(Slice(result.function, layer, phase, self.total, cycles, per_fn,
                                 call_graph))
        self.total += cycles
        return cycles

    def _add_tree(self, result: CallResult, attribution, fname) -> None:
        """Charge the call's cycles to its call paths (exact integer shares per block)."""
        nodes = result.tree_nodes
        paths: dict[int, tuple[str, ...]] = {0: ()}

        def path(i: int) -> tuple[str, ...]:
            p = paths.get(i)
            if p is None:
                parent, func, _calls = nodes[i]
                p = paths[i] = (*path(parent), fname(func))
            return p

        by_addr: dict[int, list[tuple[int, int]]] = {}
        for (node, addr), n in result.tree_counts.items():
            by_addr.setdefault(addr, []).append((node, n))
        for (a, _sz), bcy in attribution.items():
            shares = by_addr.get(a)
            if not shares:
                continue
            total_n = sum(n for _node, n in shares)
            cycles = bcy.total
            parts = [(cycles * n // total_n, cycles * n % total_n, node) for node, n in shares]
            left = cycles - sum(q for q, _r, _node in parts)
            parts.sort(key=lambda t: -t[1])
            for k, (q, _r, node) in enumerate(parts):
                e = self.tree.setdefault(path(node), [0, 0])
                e[0] += q + (1 if k < left else 0)
        for i, (_parent, _func, calls) in enumerate(nodes):
            if i:
                self.tree.setdefault(path(i), [0, 0])[1] += calls

    def finish(self) -> Profile:
        """Inclusive cycles: exact from the call tree, else through the call graph."""
        if self.tree:
            for f in self.functions.values():
                f.inclusive = 0
            for p, (excl, _calls) in self.tree.items():
                for fn in set(p):
                    self.functions.setdefault(fn, FunctionStats()).inclusive += excl
            self.assumptions.append(
                "inclusive cycles from the traced call tree (exact); a block run under "
                "several call paths shares its dynamic extras by its executions there")
            if not self.has_lines:
                self.assumptions.append("some code has no DWARF line table: its lines show "
                                        "as the function only")
            return self
        incoming: dict[str, int] = {}
        for (_caller, callee), n in self.calls.items():
            incoming[callee] = incoming.get(callee, 0) + n
        memo: dict[str, int] = {}

        def inclusive(fn: str, stack: tuple[str, ...]) -> int:
            if fn in memo:
                return memo[fn]
            f = self.functions.get(fn, FunctionStats())
            total = f.exclusive
            for (caller, callee), n in self.calls.items():
                if caller != fn or callee in stack:
                    continue
                calls = max(self.functions[callee].calls, incoming.get(callee, 0), 1)
                total += inclusive(callee, (*stack, callee)) * n // calls
            memo[fn] = total
            return total

        for fn, f in self.functions.items():
            f.inclusive = inclusive(fn, (fn,))
        self.assumptions.append(
            "inclusive cycles: a callee's cycles are shared among its callers by call "
            "counts (every call of a function costs its average; exact for functions "
            "called from one place)")
        if not self.has_lines:
            self.assumptions.append("some code has no DWARF line table: its lines show as "
                                    "the function only")
        return self

    # ------------------------------------------------------------------ views

    def top_functions(self, n: int | None = None, key: str = "exclusive"
                      ) -> list[tuple[str, FunctionStats]]:
        rows = sorted(self.functions.items(), key=lambda kv: -getattr(kv[1], key))
        return rows[:n] if n else rows

    def top_lines(self, n: int | None = None) -> list[LineStats]:
        rows = sorted(self.lines.values(), key=lambda r: -r.cycles)
        return rows[:n] if n else rows

    def top_blocks(self, n: int | None = None) -> list[BlockStats]:
        rows = sorted(self.blocks.values(), key=lambda r: -r.cycles)
        return rows[:n] if n else rows

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        return {
            "title": self.title, "mcu": self.mcu, "core": self.core,
            "clock_hz": self.clock_hz, "cycles": self.total,
            "latency_ms": self.total / self.clock_hz * 1e3,
            "functions": [{"function": fn, "exclusive": f.exclusive, "inclusive": f.inclusive,
                           "calls": f.calls, "instructions": f.instructions}
                          for fn, f in self.top_functions(top)],
            "lines": [{"function": r.function, "file": r.file, "line": r.line,
                       "cycles": r.cycles, "instructions": r.instructions}
                      for r in self.top_lines(top)],
            "blocks": [{"function": b.function, "address": b.address, "size": b.size,
                        "cycles": b.cycles, "executions": b.executions,
                        "disassembly": b.text} for b in self.top_blocks(top)],
            "classes": [{"class": c, "cycles": v[0], "count": v[1]}
                        for c, v in sorted(self.classes.items(), key=lambda kv: -kv[1][0])],
            "calls": [{"caller": a, "callee": b, "count": n}
                      for (a, b), n in sorted(self.calls.items())],
            "slices": [{"name": s.name, "layer": s.layer, "phase": s.phase, "start": s.start,
                        "cycles": s.cycles} for s in self.slices],
            "assumptions": list(self.assumptions),
            "notes": list(self.notes),
        }


def profile_call(machine: Machine, function: str, *args: int, warm: bool = False,
                 source_dirs: Sequence[str] = ()) -> Profile:
    """The profile of one call of any ELF's function; its source text may also come from
    `source_dirs` (see `source_text`)."""
    machine.enable_call_tree()
    if warm:
        machine.call(function, *args)
    result = machine.call(function, *args)
    mcu = machine.mcu
    p = Profile(f"{result.function} on {mcu.name}", mcu.name, mcu.core.key, mcu.clock_hz,
                source_dirs=tuple(source_dirs))
    p.add_call(machine, result)
    return p.finish()


def source_text(path: str | None, line: int | None, full: str | None = None,
                roots: Sequence[str] | None = None) -> str | None:
    """The text of line `line` of source file `path` (a name from the line table), when
    it can be found and may be read: `full` (the path compiled) or `path` under one of
    `roots`, else in mcusim's kernels directory.  Only regular files of at most
    MAX_SOURCE_BYTES whose real path (no `..` or symlink escapes) lies under one of those
    directories are read; anything else is no text, never an error.

    `roots` defaults to those `full` carries as a SourceFile: the profile's --source-dir
    directories and the DWARF's compilation directories (every path the profiler takes
    from an ELF is a SourceFile).  A plain str `full` is the caller's own choice, not the
    ELF's: its directory is allowed."""
    if not path or not line:
        return None
    if roots is None:
        if isinstance(full, SourceFile):
            roots = full.roots
        else:
            roots = (os.path.dirname(full),) if full and os.path.isabs(full) else ()
    lines = _source_lines(str(path), str(full) if full else None, tuple(roots))
    return lines[line - 1] if 1 <= line <= len(lines) else None


@lru_cache(maxsize=256)
def _source_lines(path: str, full: str | None, roots: tuple[str, ...]) -> tuple[str, ...]:
    """A source file's lines, found and read once (empty when not found or not allowed)."""
    from mcusim.toolchain import KERNELS_DIR

    kernels = os.path.realpath(KERNELS_DIR)
    allowed = [*(os.path.realpath(r) for r in roots), kernels]
    name = os.path.basename(path)
    cands: list[str] = [full] if full else []
    for root in allowed:
        if not os.path.isabs(path):
            cands.append(os.path.join(root, path))
        if name:
            cands.append(os.path.join(root, name))
    for cand in cands:
        text = _read_source(cand, allowed)
        if text is not None:
            return text
    if name:  # a kernel source by name anywhere under the kernels directory
        for cand in sorted(glob.glob(os.path.join(glob.escape(kernels), "**",
                                                  glob.escape(name)), recursive=True)):
            text = _read_source(cand, [kernels])
            if text is not None:
                return text
    return ()


def _read_source(path: str, allowed: Sequence[str]) -> tuple[str, ...] | None:
    """The lines of `path` if its real path lies under an allowed directory and it is a
    regular file of at most MAX_SOURCE_BYTES; else None."""
    try:
        real = os.path.realpath(path)
        if not any(_under(real, root) for root in allowed):
            return None
        data = read_bytes(real, "a source file", MAX_SOURCE_BYTES, UsageError)
    except (McusimError, OSError, ValueError):
        return None
    return tuple(data.decode("utf-8", errors="replace").splitlines())


PROFILE_PHASES = ("forward", "loss", "backward", "update", "all")


def profile_step(model, mcu, *, toolchain=None, phase: str = "all", seed: int = 0,
                 data=None, source_dirs: Sequence[str] = ()) -> tuple[Profile, Any]:
    """The profile of one training step (mcusim.analyze.simulate_step): every kernel call of
    the chosen phase ("all": every phase), and the step report."""
    from mcusim.analyze import simulate_step

    if phase not in PROFILE_PHASES:
        raise UsageError(f"unknown phase {phase!r} (one of {', '.join(PROFILE_PHASES)})")
    holder: dict[str, Profile] = {}

    def on_call(machine: Machine, result: CallResult, layer: str, ph: str) -> None:
        if "p" not in holder:
            m = machine.mcu
            holder["p"] = Profile("", m.name, m.core.key, m.clock_hz,
                                  source_dirs=tuple(source_dirs))
        if phase in ("all", ph):
            holder["p"].add_call(machine, result, layer, ph)

    report = simulate_step(model, mcu, toolchain=toolchain, seed=seed, data=data,
                           on_call=on_call, call_tree=True)
    if "p" not in holder:
        from mcusim.errors import ModelError

        raise ModelError(f"{report.model} does not fit {report.mcu}: nothing to profile "
                         f"({'; '.join(report.problems)})")
    p = holder["p"]
    what = "one training step" if phase == "all" else f"the {phase} phase of a step"
    p.title = f"{report.model}, {what} (batch {report.batch_size}) on {report.mcu}"
    return p.finish(), report
