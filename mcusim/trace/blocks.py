"""Block and edge counts of one call, and the instructions they hold.

A counter records, per call, how often each basic block (address, size) ran and how often
each edge (previous block -> block) was taken; which way a block was left follows from its
edges.  Instruction totals come from decoding each distinct block once with Capstone.
Counts derived from blocks include IT-skipped instructions, which a real core also spends
a cycle on (unicorn-notes.md).

Besides blocks and edges a counter can run the flash cache model (instruction fetch lines
per block, and data reads from flash) and record the operands of every executed hardware
divide (for the divider's early termination).  Two implementations give identical counts:
the native C hooks (mcusim.trace.native, ≈ the speed of untraced Unicorn) and pure-Python
hooks (mcusim.trace.python_hook, 30-80x slower), used when the extension is unavailable.

Data addresses (the address of each executed load, today of flash reads for the flash
cache model) come from a UC_HOOK_MEM_READ, armed together with an IT-state guard in the
block hook: with a memory hook, Unicorn 2.1.4 can leave a stale IT state after an IT block
that ends in a conditional load and mis-execute the next block (upstream issue 2309,
unicorn-notes.md).  The guard detects that state at the next block's start
(`ends_inside_it` tells the legitimate one: the previous block ended inside an IT block)
and restarts the block with it cleared, so no result differs from hook-free Unicorn.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import capstone
import unicorn

from mcusim.catalog import Core
from mcusim.trace.access import AccessPlan

START = (1 << 64) - 1  # "previous block" of the first block of a run
BP_INITIAL = 1  # a branch's 2-bit counter when first seen: weakly not taken (assumption)
DIV_BUCKETS = 34  # 0: an operand is 0; 1: bits(n) < bits(d); 2 + bits(n) - bits(d)


def make_disassembler(core: Core) -> capstone.Cs:
    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    md.detail = False
    return md


@dataclass(frozen=True)
class CacheSpec:
    """Geometry of one simulated cache over the address range [lo, hi)."""

    lo: int
    hi: int
    line_bytes: int  # power of two
    sets: int  # power of two
    ways: int
    prefetch: bool  # sequential next-line prefetch on the instruction stream

    @property
    def shift(self) -> int:
        return self.line_bytes.bit_length() - 1


@dataclass(frozen=True)
class CacheStats:
    """Line accesses, misses and prefetched lines of one stream over one call."""

    accesses: int = 0
    misses: int = 0
    prefetched: int = 0


@dataclass(frozen=True)
class DivideSite:
    """One SDIV/UDIV instruction of the image."""

    address: int
    rn: int  # Unicorn register id of the dividend
    rm: int  # Unicorn register id of the divisor
    signed: bool


IT_BITS = 0x0600FC00  # XPSR IT[1:0] (bits 26:25) and IT[7:2] (bits 15:10)


def ends_inside_it(code: bytes) -> bool:
    """Does a Thumb block end inside an IT block (the native guard's rule)?  An IT
    instruction 0xBFxy with mask y != 0 covers 4 - ctz(y) instructions."""
    off = left = 0
    while off + 2 <= len(code):
        hw = code[off] | code[off + 1] << 8
        if left:
            left -= 1
        elif hw & 0xFF00 == 0xBF00 and hw & 0xF:
            left = 4 - ((hw & 0xF) & -(hw & 0xF)).bit_length() + 1
        off += 4 if hw >> 11 >= 0x1D else 2
    return left > 0


def divide_bucket(n: int, d: int, signed: bool) -> int:
    """The early-termination bucket of one divide (same rule as the native hook)."""
    n &= 0xFFFFFFFF
    d &= 0xFFFFFFFF
    if signed:
        n = (-n) & 0xFFFFFFFF if n & 0x80000000 else n
        d = (-d) & 0xFFFFFFFF if d & 0x80000000 else d
    if n == 0 or d == 0:
        return 0
    bn, bd = n.bit_length(), d.bit_length()
    return 1 if bn < bd else 2 + bn - bd


class BlockCounter(ABC):
    """Counts blocks and edges of one call; enforces an instruction budget."""

    kind = "abstract"

    def __init__(self, uc: unicorn.Uc, core: Core) -> None:
        self.uc = uc
        self.disassembler = make_disassembler(core)
        self._icount: dict[tuple[int, int], int] = {}
        self.sites: list[DivideSite] = []
        self.fetch_cache: CacheSpec | None = None
        self.data_cache: CacheSpec | None = None
        self.unified = False
        self.ram_cache: CacheSpec | None = None
        self.call_tree_enabled = False
        self.access_policy: str | None = None  # mcusim.trace.access policy, None = off
        self._plans: dict[tuple[int, int], AccessPlan] = {}
        self._plan_md = None

    # -- implemented by the hooks
    @abstractmethod
    def reset(self) -> None:
        """Forget the counts: a new call starts (cache contents stay warm)."""

    @abstractmethod
    def arm(self, budget: int, executed: int) -> None:
        """Before (re)starting the emulator: stop in front of a block that would pass
        `budget` instructions in all (`executed` of them have run already), or earlier."""

    @property
    @abstractmethod
    def stopped(self) -> bool:
        """Did the hook stop the emulator (budget reached) in the last run?"""

    @abstractmethod
    def pending(self) -> tuple[int, int] | None:
        """The block (address, size) the hook stopped in front of; it has not run and is
        not counted.  None when the emulator was not stopped by the hook."""

    @abstractmethod
    def blocks(self) -> dict[tuple[int, int], int]:
        """(address, size) -> executions."""

    @abstractmethod
    def edges(self) -> dict[tuple[int, int], int]:
        """(previous block address or START, block address) -> count."""

    @abstractmethod
    def enable_call_tree(self, entries: list[int]) -> None:
        """Track the call tree from the next call on: calls (BL/BLX), returns (BX LR,
        POP/LDM with PC, LDR PC, MOV PC LR) and tail calls (a branch to one of `entries`,
        the image's function entry addresses)."""

    @abstractmethod
    def call_tree(self) -> tuple[list[tuple[int, int, int]], dict[tuple[int, int], int]]:
        """Nodes (parent id, function entry, calls; node 0 the root) and executions per
        (node id, block address) of the current call."""

    @abstractmethod
    def block_misses(self) -> dict[tuple[int, int], tuple[int, int]]:
        """(address, size) -> (fetch-line misses, data-line misses) charged to the block
        in the current call (blocks without misses are left out)."""

    @abstractmethod
    def set_fetch_cache(self, spec: CacheSpec) -> None:
        """Model instruction fetch (the lines of every executed block) through this cache.
        Call at most once."""

    @abstractmethod
    def set_data_cache(self, spec: CacheSpec, unified: bool) -> None:
        """Model data reads in [spec.lo, spec.hi) through this cache (unified: through the
        fetch cache itself).  Call at most once."""

    @abstractmethod
    def flush_caches(self) -> None:
        """Invalidate the simulated caches (a cold start)."""

    @abstractmethod
    def cache_stats(self) -> dict[str, CacheStats]:
        """"fetch" and "data" statistics of the current call (only the modelled ones)."""

    @abstractmethod
    def _add_site(self, site: DivideSite) -> None:
        """Hook one divide instruction."""

    @abstractmethod
    def divide_histograms(self) -> dict[int, tuple[int, ...]]:
        """Divide address -> executions per early-termination bucket (DIV_BUCKETS), for the
        divides that ran in the current call."""

    @property
    @abstractmethod
    def it_repairs(self) -> int:
        """Blocks entered with a stale IT state and restarted by the guard (all calls)."""

    @abstractmethod
    def start_access_log(self, capacity: int) -> None:
        """Log (block address, address, bytes) of every modelled data read of the next
        calls (tests; each call starts a new log, at most `capacity` entries)."""

    @abstractmethod
    def access_log(self) -> list[tuple[int, int, int]]:
        """The current call's logged data reads."""

    @abstractmethod
    def set_ram_cache(self, spec: CacheSpec, ranges: list[tuple[int, int, int]]) -> None:
        """Send followed loads into the (lo, hi, miss cycles) ranges through this D-cache
        (the M7's, over RAM outside the TCMs).  Call at most once, with access plans on."""

    @abstractmethod
    def block_ram_misses(self) -> dict[tuple[int, int], tuple[int, int]]:
        """(address, size) -> (D-cache misses, their cycles) of followed loads in RAM."""

    @abstractmethod
    def block_prefetches(self) -> dict[tuple[int, int], int]:
        """(address, size) -> fetch lines the accelerator's sequential prefetch supplied
        to the block in the current call (not misses; the timing model charges what the
        fill took longer than the previous line's execution)."""

    @abstractmethod
    def block_branches(self) -> dict[tuple[int, int], tuple[int, int]]:
        """(address, size) -> (direction mispredicts, target changes) of the block's exit
        branch in the current call, from the branch predictor (2-bit counter per branch,
        last taken target; kept across calls): blocks without either are left out."""

    @abstractmethod
    def enable_predictor(self) -> None:
        """Run the branch predictor from the next call on (only the M7's model uses it)."""

    @abstractmethod
    def current_block(self) -> tuple[int, int] | None:
        """The block running now (counted at its start), or None before the first."""

    @abstractmethod
    def block_executions(self) -> int:
        """Blocks executed so far in this call."""

    @abstractmethod
    def flush_predictor(self) -> None:
        """Forget the branch predictor's state (a cold start)."""

    @abstractmethod
    def _install_planner(self) -> None:
        """Start evaluating access plans (see enable_access_plans)."""

    @abstractmethod
    def _plan_counts(self) -> dict[tuple[int, int], list[int]]:
        """(address, size) -> the current call's counts of each block with a plan (3 per
        followed access: half, byte, same_bank)."""

    # -- shared
    def enable_access_plans(self, policy: str) -> None:
        """Follow load/store addresses from block-entry registers (mcusim.trace.access)
        under `policy` (access.M4_POLICY or M7_POLICY).  Call at most once, before a run."""
        if self.access_policy is not None:
            return
        self.access_policy = policy
        self._install_planner()
        self.uc.ctl_flush_tb()

    def plan(self, address: int, size: int) -> AccessPlan:
        """The access plan of block (address, size), made once."""
        key = (address, size)
        p = self._plans.get(key)
        if p is None:
            from mcusim.trace.access import make_planner_decoder, plan_block

            if self._plan_md is None:
                self._plan_md = make_planner_decoder()
            p = plan_block(self._plan_md, bytes(self.uc.mem_read(address, size)), address,
                           self.access_policy or "")
            self._plans[key] = p
        return p

    def access_stats(self, blocks: dict[tuple[int, int], int] | None = None
                     ) -> dict[tuple[int, int], tuple[AccessPlan, list[int]]]:
        """(address, size) -> (plan, counts) for the blocks of the current call (`blocks`,
        default: read them) that have followed or unfollowed accesses (counts: 3 per
        followed access)."""
        if self.access_policy is None:
            return {}
        counts = self._plan_counts()
        out = {}
        for key in blocks if blocks is not None else self.blocks():
            p = self.plan(*key)
            if p.accesses or p.unknown or p.static:
                out[key] = (p, counts.get(key) or [0] * (3 * len(p.accesses)))
        return out

    def add_divides(self, sites: list[DivideSite]) -> None:
        known = {s.address for s in self.sites}
        for s in sites:
            if s.address not in known:
                self._add_site(s)
                self.sites.append(s)
                known.add(s.address)
        if sites:
            self.uc.ctl_flush_tb()

    def block_instructions(self, address: int, size: int) -> int:
        """Instructions in the block [address, address + size), decoded once."""
        key = (address, size)
        n = self._icount.get(key)
        if n is None:
            code = bytes(self.uc.mem_read(address, size))
            n = 0
            offset = 0
            while offset < size:
                decoded = list(self.disassembler.disasm_lite(code[offset:], address + offset))
                n += len(decoded)
                offset += sum(d[1] for d in decoded)
                if offset < size:  # undecodable halfword: count it, keep going
                    n += 1
                    offset += 2
            self._icount[key] = n
        return n

    def instructions(self, blocks: dict[tuple[int, int], int] | None = None) -> int:
        """Instructions executed (of `blocks`, default: the current counts)."""
        if blocks is None:
            blocks = self.blocks()
        return sum(c * self.block_instructions(a, s) for (a, s), c in blocks.items())


CALL, RETURN, PLAIN = 2, 3, 1


def block_end_kind(code: bytes) -> int:
    """How a Thumb block ends (the native hook's rule): CALL, RETURN or PLAIN."""
    off = last = 0
    while off + 2 <= len(code):
        last = off
        hw = code[off] | code[off + 1] << 8
        off += 4 if hw >> 11 >= 0x1D else 2
    if len(code) < 2:
        return PLAIN
    h1 = code[last] | code[last + 1] << 8
    h2 = code[last + 2] | code[last + 3] << 8 if last + 4 <= len(code) else 0
    if last + 4 <= len(code) and h1 >> 11 >= 0x1D:
        if h1 & 0xF800 == 0xF000 and h2 & 0xD000 == 0xD000:
            return CALL
        if (h1 == 0xE8BD and h2 & 0x8000) or (h1 == 0xF85D and h2 == 0xFB04):
            return RETURN
        return PLAIN
    if h1 & 0xFF87 == 0x4780:
        return CALL
    if h1 in (0x4770, 0x46F7) or h1 & 0xFF00 == 0xBD00:
        return RETURN
    return PLAIN


class PyCallTree:
    """The native hook's call-tree tracking, in Python (the fallback tracer's)."""

    MAX_DEPTH = 256

    def __init__(self, entries: list[int]) -> None:
        self.entries = set(entries)
        self.reset()

    def reset(self) -> None:
        self.nodes: list[list[int]] = [[0, 0, 0]]  # parent, func, calls
        self.index: dict[tuple[int, int], int] = {}
        self.counts: dict[tuple[int, int], int] = {}
        self.stack: list[list[int]] = []  # [node, ret]

    def _node(self, parent: int, func: int) -> int:
        i = self.index.get((parent, func))
        if i is None:
            i = self.index[(parent, func)] = len(self.nodes)
            self.nodes.append([parent, func, 0])
        return i

    def _push(self, func: int, ret: int) -> None:
        parent = self.stack[-1][0] if self.stack else 0
        i = self._node(parent, func)
        self.nodes[i][2] += 1
        if len(self.stack) < self.MAX_DEPTH:
            self.stack.append([i, ret])
        else:
            self.stack[-1][0] = i

    def step(self, prev_kind: int | None, prev_end: int | None, address: int) -> None:
        if not self.stack:
            self._push(address, (1 << 64) - 1)
        elif prev_kind is not None and address != prev_end:
            if prev_kind == CALL and (not self.entries or address in self.entries):
                self._push(address, prev_end)
            elif prev_kind == CALL:
                pass  # a BL to a non-entry: gcc's Thumb-1 far jump inside a function
            elif prev_kind == RETURN:
                d = len(self.stack)
                while d > 0 and self.stack[d - 1][1] != address:
                    d -= 1
                if d > 0:
                    del self.stack[d - 1:]
                if not self.stack:
                    self._push(address, (1 << 64) - 1)
            elif address in self.entries and self.nodes[self.stack[-1][0]][1] != address:
                top = self.stack[-1]
                top[0] = self._node(self.nodes[top[0]][0], address)
                self.nodes[top[0]][2] += 1
        key = (self.stack[-1][0], address)
        self.counts[key] = self.counts.get(key, 0) + 1
