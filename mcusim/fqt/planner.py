"""The memory planner: tensor lifetimes over one training step and in-place reuse.

Transient tensors — the input, activations, errors and per-call scratch — live only
between their first and last use in the step's call sequence (forward, loss, backward,
per-sample bookkeeping, then the per-batch update and refresh).  They share one SRAM
arena laid out ahead of time (no malloc): two tensors may overlap only when their
lifetimes do not.  Everything else (weights, bias masters, gradient accumulators,
optimizer statistics, quantization records) is persistent and gets its own bytes.

Placement is greedy by size (largest first), each at the lowest offset that does not
collide with an already placed tensor whose lifetime overlaps: the classic offline
approach of TFLite Micro's greedy memory planner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TRANSIENT_KINDS = frozenset(("input", "act", "err", "scratch"))
STEP_GROUPS = ("forward", "loss", "backward", "commit", "update", "refresh")
ALIGN = 8


@dataclass(frozen=True)
class Lifetime:
    name: str
    nbytes: int
    first: int  # index of the first call that uses it in the step sequence
    last: int  # index of the last one


@dataclass
class MemoryPlan:
    """Offsets of the transient tensors in the arena and the arena's size."""

    offsets: dict[str, int] = field(default_factory=dict)
    lifetimes: dict[str, Lifetime] = field(default_factory=dict)
    arena_bytes: int = 0
    naive_bytes: int = 0  # the same tensors without reuse
    calls: int = 0

    def live_at(self, index: int) -> list[str]:
        return [n for n, lt in self.lifetimes.items() if lt.first <= index <= lt.last]


def _refs(program, name: str, seen: set[str]) -> set[str]:
    """A buffer and every buffer its pointer fields reach."""
    if name in seen:
        return set()
    seen.add(name)
    out = {name}
    for (bname, _fld), target in program.pointers.items():
        if bname == name and target:
            out |= _refs(program, target.partition(":")[0], seen)
    return out


def lifetimes(program) -> tuple[dict[str, Lifetime], int]:
    """Lifetimes of the transient buffers over the step's call sequence."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    index = 0
    for group in STEP_GROUPS:
        for op in program.ops.get(group, []):
            used: set[str] = set()
            for a in op.args:
                if isinstance(a, str):
                    used |= _refs(program, a.partition(":")[0], set())
            for n in used:
                if program.buffers[n].kind in TRANSIENT_KINDS and program.buffers[n].region \
                        == "sram":
                    first.setdefault(n, index)
                    last[n] = index
            index += 1
    if "input" in first:
        first["input"] = 0  # written by the host before the first call
    out = {n: Lifetime(n, program.buffers[n].nbytes, first[n], last[n]) for n in first}
    return out, index


def plan_memory(program) -> MemoryPlan:
    lts, calls = lifetimes(program)
    order = sorted(lts.values(), key=lambda lt: (-lt.nbytes, lt.first, lt.name))
    placed: list[tuple[int, int, Lifetime]] = []  # (offset, end, lifetime)
    offsets: dict[str, int] = {}
    for lt in order:
        size = (lt.nbytes + ALIGN - 1) // ALIGN * ALIGN
        clash = sorted((o, e) for o, e, other in placed
                       if other.first <= lt.last and lt.first <= other.last)
        offset = 0
        for o, e in clash:
            if offset + size <= o:
                break
            offset = max(offset, e)
        offsets[lt.name] = offset
        placed.append((offset, offset + size, lt))
    arena = max((e for _o, e, _lt in placed), default=0)
    naive = sum((lt.nbytes + ALIGN - 1) // ALIGN * ALIGN for lt in lts.values())
    return MemoryPlan(offsets, lts, arena, naive, calls)
