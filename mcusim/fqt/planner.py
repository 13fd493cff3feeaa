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

import numpy as np

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


class Reach:
    """Which buffers a kernel argument reaches: the buffer and, transitively, every buffer
    its pointer fields name.  The pointer graph is indexed once (buffer -> targets) and each
    buffer's reach is computed once, so asking for every argument of every call costs time
    in proportion to the program, not to calls x pointers."""

    def __init__(self, program) -> None:
        targets: dict[str, list[str]] = {}
        for (bname, _fld), target in program.pointers.items():
            if target:
                targets.setdefault(bname, []).append(target.partition(":")[0])
        self._targets = targets
        self._cache: dict[str, frozenset[str]] = {}

    def of(self, name: str) -> frozenset[str]:
        """`name` and every buffer its pointers reach (directly or through others)."""
        hit = self._cache.get(name)
        if hit is not None:
            return hit
        seen = {name}
        stack = [name]
        while stack:
            for t in self._targets.get(stack.pop(), ()):
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        out = frozenset(seen)
        self._cache[name] = out
        return out


def _refs(program, name: str, seen: set[str]) -> set[str]:
    """A buffer and every buffer its pointer fields reach (one-off query; for many queries
    on one program use `Reach`)."""
    return set() if name in seen else set(Reach(program).of(name) - seen)


def lifetimes(program) -> tuple[dict[str, Lifetime], int]:
    """Lifetimes of the transient buffers over the step's call sequence."""
    reach = Reach(program)
    transient = {n for n, b in program.buffers.items()
                 if b.kind in TRANSIENT_KINDS and b.region == "sram"}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    index = 0
    for group in STEP_GROUPS:
        for op in program.ops.get(group, []):
            used: set[str] = set()
            for a in op.args:
                if isinstance(a, str):
                    used |= reach.of(a.partition(":")[0])
            for n in sorted(used & transient):
                first.setdefault(n, index)
                last[n] = index
            index += 1
    if "input" in first:
        first["input"] = 0  # written by the host before the first call
    out = {n: Lifetime(n, program.buffers[n].nbytes, first[n], last[n]) for n in first}
    return out, index


def aligned(nbytes: int) -> int:
    """`nbytes` rounded up to the arena's alignment."""
    return (nbytes + ALIGN - 1) // ALIGN * ALIGN


def plan_memory(program) -> MemoryPlan:
    """Offsets of the transient tensors: greedy by size (largest first, then earliest first
    use, then name), each at the lowest offset where it overlaps no already placed tensor
    whose lifetime overlaps its own.

    The already placed tensors are kept in arrays (first use, last use, offset, end); for
    each new tensor the overlapping ones are selected and the lowest gap found with
    vectorised operations: the result is the one of the plain greedy scan (sort the
    overlapping ones by (offset, end); walk up from 0 past each one that does not leave room
    below it), at a cost of a few array operations per tensor."""
    lts, calls = lifetimes(program)
    order = sorted(lts.values(), key=lambda lt: (-lt.nbytes, lt.first, lt.name))
    n = len(order)
    firsts = np.fromiter((lt.first for lt in order), np.int64, n)
    lasts = np.fromiter((lt.last for lt in order), np.int64, n)
    starts = np.zeros(n, np.int64)
    ends = np.zeros(n, np.int64)
    offsets: dict[str, int] = {}
    for k, lt in enumerate(order):
        size = aligned(lt.nbytes)
        offset = 0
        if k:
            clash = np.flatnonzero((firsts[:k] <= lt.last) & (lasts[:k] >= lt.first))
            if clash.size:
                o, e = starts[clash], ends[clash]
                s = np.lexsort((e, o))  # by offset, then end
                o, e = o[s], e[s]
                top = np.maximum.accumulate(e)  # the scan's offset after each one
                below = np.empty_like(top)  # ... and before each one
                below[0] = 0
                below[1:] = top[:-1]
                room = np.flatnonzero(below + size <= o)
                offset = int(below[room[0]]) if room.size else int(top[-1])
        starts[k], ends[k] = offset, offset + size
        offsets[lt.name] = offset
    arena = int(ends.max()) if n else 0
    naive = sum(aligned(lt.nbytes) for lt in lts.values())
    return MemoryPlan(offsets, lts, arena, naive, calls)


# ---------------------------------------------------------------------- bank reports
# Where the step's RAM went, bank by bank, and what found no bank: the budget's reasons.

KIND_LABELS = {
    "weights": "weights", "bias_q": "bias", "bias": "bias master",
    "grad": "gradient accumulator", "grad_bias": "bias gradient accumulator",
    "stats": "optimizer statistics", "range": "range record", "qparams": "quantization record",
    "struct": "layer record", "shape": "shape record", "scratch": "scratch",
    "loss": "loss record", "arena": "activation/error arena",
}


def buffer_label(layer: str, kind: str) -> str:
    """What a buffer is, for people: "fc1 gradient accumulator"."""
    what = KIND_LABELS.get(kind, kind)
    return f"{layer} {what}" if layer and kind != "arena" else what


def kb(n: int) -> str:
    """Bytes as KB for messages: whole KB without decimals (128 KB), else one (364.4 KB)."""
    return f"{n // 1024} KB" if n % 1024 == 0 else f"{n / 1024:.1f} KB"


@dataclass
class BankUse:
    """One RAM bank: its size and what the layout put in it (what -> bytes)."""

    name: str
    kind: str
    size: int
    contents: dict[str, int] = field(default_factory=dict)
    virtual: bool = False

    @property
    def used(self) -> int:
        return sum(self.contents.values())

    @property
    def free(self) -> int:
        return self.size - self.used

    def add(self, what: str, nbytes: int) -> None:
        if nbytes:
            self.contents[what] = self.contents.get(what, 0) + nbytes

    def describe(self, top: int = 3) -> str:
        """"AXI_SRAM 512 KB: 221.7 KB used (activation/error arena 221.7 KB), 290.3 KB free"."""
        if not self.contents:
            return f"{self.name} {kb(self.size)}: empty"
        items = sorted(self.contents.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{w} {kb(n)}" for w, n in items[:top])
        if len(items) > top:
            shown += f", {len(items) - top} more {kb(sum(n for _w, n in items[top:]))}"
        free = f"{kb(self.free)} free" if self.free >= 0 else f"over by {kb(-self.free)}"
        return f"{self.name} {kb(self.size)}: {kb(self.used)} used ({shown}), {free}"

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "size_bytes": self.size,
                "used_bytes": self.used, "free_bytes": self.free, "virtual": self.virtual,
                "contents": [{"what": w, "bytes": n} for w, n in
                             sorted(self.contents.items(), key=lambda kv: -kv[1])]}


@dataclass(frozen=True)
class Unplaced:
    """A buffer (or the arena) that no RAM bank had room for."""

    name: str
    label: str
    kind: str
    nbytes: int
    fits_in: tuple[str, ...] = ()  # banks whose free space would hold it (normally none)

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "kind": self.kind,
                "bytes": self.nbytes, "fits_in": list(self.fits_in)}


@dataclass
class Placement:
    """The RAM banks as the layout filled them, and what found no room in any of them.

    The banks hold what was placed (in the data bank also the image's .data/.bss and the
    space kept for the stack); `unplaced` are the buffers that would have to go somewhere
    else for the rest to fit: the largest of those left in the overflowing data bank."""

    banks: list[BankUse]
    unplaced: list[Unplaced] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.unplaced

    @property
    def unplaced_bytes(self) -> int:
        return sum(u.nbytes for u in self.unplaced)

    @property
    def capacity_bytes(self) -> int:
        return sum(b.size for b in self.banks)

    @property
    def need_bytes(self) -> int:
        return sum(b.used for b in self.banks) + self.unplaced_bytes

    @property
    def shortfall_bytes(self) -> int:
        """RAM missing in total (0 when the banks together are big enough)."""
        return max(0, self.need_bytes - self.capacity_bytes)

    def to_dict(self) -> dict:
        return {"banks": [b.to_dict() for b in self.banks],
                "unplaced": [u.to_dict() for u in self.unplaced],
                "need_bytes": self.need_bytes, "capacity_bytes": self.capacity_bytes,
                "shortfall_bytes": self.shortfall_bytes}


def unplaced_in(main: BankUse, candidates: list[Unplaced], others: list[BankUse]
                ) -> list[Unplaced]:
    """The buffers that must leave the overflowing bank `main` (the data bank, holding
    `candidates` among its contents): the largest first until the rest fits.  They are taken
    out of main.contents; each records the banks whose free space would still hold it."""
    out: list[Unplaced] = []
    used = main.used  # kept up to date below: summing the contents each time is quadratic
    for c in sorted(candidates, key=lambda c: -c.nbytes):
        if main.size - used >= 0:
            break
        left = main.contents.get(c.label, 0) - c.nbytes
        used -= main.contents.get(c.label, 0) - max(left, 0)
        if left <= 0:
            main.contents.pop(c.label, None)
        else:
            main.contents[c.label] = left
        out.append(c)
    free = [(b.name, b.free) for b in [main, *others]]
    return [Unplaced(u.name, u.label, u.kind, u.nbytes,
                     tuple(name for name, f in free if f >= u.nbytes))
            for u in out]
