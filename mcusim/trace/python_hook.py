"""Pure-Python hooks: the fallback when the native extension is unavailable.

They implement exactly what mcusim/trace/_blockhook.c does (tests compare both).
"""

from __future__ import annotations

import unicorn
from unicorn import arm_const

from mcusim.catalog import Core
from mcusim.trace.access import evaluate
from mcusim.trace.blocks import (
    BP_INITIAL,
    DIV_BUCKETS,
    IT_BITS,
    START,
    BlockCounter,
    CacheSpec,
    CacheStats,
    DivideSite,
    PyCallTree,
    block_end_kind,
    divide_bucket,
    ends_inside_it,
)


class PyCache:
    """The set-associative FIFO line cache of _blockhook.c (stream 0 fetch, 1 data)."""

    def __init__(self, spec: CacheSpec) -> None:
        self.spec = spec
        self.sets: list[list[int]] = [[] for _ in range(spec.sets)]
        self.last = [-1, -1]
        self.stats = [[0, 0, 0], [0, 0, 0]]

    def flush(self) -> None:
        self.sets = [[] for _ in range(self.spec.sets)]
        self.last = [-1, -1]

    def clear_stats(self) -> None:
        self.stats = [[0, 0, 0], [0, 0, 0]]

    def access_range(self, stream: int, address: int, size: int) -> int:
        """Access the lines of [address, address + size); returns the misses."""
        spec = self.spec
        if address >= spec.hi or address + size <= spec.lo:
            return 0
        before = self.stats[stream][1]
        for line in range(address >> spec.shift, ((address + size - 1) >> spec.shift) + 1):
            self._access(stream, line)
        return self.stats[stream][1] - before

    def _access(self, stream: int, line: int) -> None:
        st = self.stats[stream]
        st[0] += 1
        if line == self.last[stream]:
            return
        ways = self.sets[line & (self.spec.sets - 1)]
        if line not in ways:  # a miss replaces the oldest line; a hit changes nothing
            if stream == 0 and self.spec.prefetch and line == self.last[0] + 1 \
                    and self.last[0] >= 0:
                st[2] += 1
            else:
                st[1] += 1
            if len(ways) == self.spec.ways:
                ways.pop()
            ways.insert(0, line)
        self.last[stream] = line


class PythonBlockCounter(BlockCounter):
    kind = "python"

    def __init__(self, uc: unicorn.Uc, core: Core) -> None:
        super().__init__(uc, core)
        self._blocks: dict[tuple[int, int], int] = {}
        self._edges: dict[tuple[int, int], int] = {}
        self._hist: dict[int, list[int]] = {}
        self._misses: dict[tuple[int, int], tuple[int, int]] = {}
        self._cur: tuple[int, int] | None = None
        self._tree: PyCallTree | None = None
        self._kinds: dict[tuple[int, int], int] = {}
        self._prev = START
        self._executed = 0
        self._budget = 0
        self._stopped = False
        self._pending: tuple[int, int] | None = None
        self._fetch: PyCache | None = None
        self._data: PyCache | None = None
        # (block address, address, bytes) of every modelled data read, when a list (tests)
        self._access_log: list[tuple[int, int, int]] | None = None
        self._log_cap = 0
        self._it_guard = False
        self._it_tail: dict[tuple[int, int], bool] = {}
        self._repairs = 0
        self._repair_at: int | None = None
        self._repair_run = 0
        # branch predictor (kept across calls): block end -> [2-bit state, last taken target]
        self._bp: dict[int, list[int]] = {}
        self._branches: dict[tuple[int, int], list[int]] = {}  # [direction, target] misses
        self._counts: dict[tuple[int, int], list[int]] = {}  # access-plan counts
        self._last: dict[tuple[int, int], list[int]] = {}  # a plan's last increments
        self._nexec = 0  # blocks executed in this call
        self._prefetches: dict[tuple[int, int], int] = {}
        self._ram: PyCache | None = None
        self._ranges: list[tuple[int, int, int]] = []
        self._ram_misses: dict[tuple[int, int], list[int]] = {}
        self._cached: set[tuple[int, int]] = set()  # plans whose last run used the D-cache
        self._predicting = False
        self._hook = uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block)
        uc.ctl_flush_tb()

    def _on_block(self, uc: unicorn.Uc, address: int, size: int, _user: object) -> None:
        if self._stopped:
            return
        if self._it_guard and self._it_stale(uc, address):
            return
        key = (address, size)
        n = self._icount.get(key)
        if n is None:
            n = self.block_instructions(address, size)
        if self._executed + n > self._budget:
            # Unicorn stops before this block runs: it stays uncounted (see pending()).
            self._stopped = True
            self._pending = key
            uc.emu_stop()
            return
        self._executed += n
        self._nexec += 1
        self._blocks[key] = self._blocks.get(key, 0) + 1
        edge = (self._prev, address)
        self._edges[edge] = self._edges.get(edge, 0) + 1
        if self._cur is not None and self._predicting:
            self._predict(self._cur, address)
        if self.access_policy is not None:
            plan = self.plan(address, size)
            if plan.accesses:
                counts = self._counts.get(key)
                if counts is None:
                    counts = self._counts[key] = [0] * (3 * len(plan.accesses))
                last = self._last.get(key)
                if last is not None and self._cur == key and plan.invariant \
                        and key not in self._cached:
                    for j, v in enumerate(last):  # a self-loop repeats its counts
                        counts[j] += v
                else:
                    last = self._last[key] = [0] * len(counts)
                    addresses = evaluate(plan, uc.reg_read, last)
                    for j, v in enumerate(last):
                        counts[j] += v
                    if self._ram is not None:
                        self._through_ram_cache(key, plan, addresses)
        if self._tree is not None:
            kind = self._kinds.get(key)
            if kind is None:
                kind = self._kinds[key] = block_end_kind(bytes(uc.mem_read(address, size)))
            prev = self._cur
            self._tree.step(self._kinds.get(prev) if prev else None,
                            prev[0] + prev[1] if prev else None, address)
        self._prev = address
        self._cur = key
        if self._fetch is not None:
            pref = self._fetch.stats[0][2]
            m = self._fetch.access_range(0, address, size)
            if m:
                f, d = self._misses.get(key, (0, 0))
                self._misses[key] = (f + m, d)
            if self._fetch.stats[0][2] != pref:
                self._prefetches[key] = self._prefetches.get(key, 0) + \
                    self._fetch.stats[0][2] - pref

    def _predict(self, prev: tuple[int, int], to: int) -> None:
        """The native hook's predict(): block prev's exit to `to`."""
        end = prev[0] + prev[1]
        e = self._bp.get(end)
        if e is None:
            e = self._bp[end] = [BP_INITIAL, 0]
        taken = to != end
        miss = self._branches.get(prev)
        if miss is None:
            miss = self._branches[prev] = [0, 0]
        if (e[0] >= 2) != taken:
            miss[0] += 1
        if taken:
            e[0] = min(3, e[0] + 1)
            if e[1] != to:
                miss[1] += 1
                e[1] = to
        else:
            e[0] = max(0, e[0] - 1)

    def _through_ram_cache(self, key: tuple[int, int], plan, addresses: list[int]) -> None:
        """The native plan_eval's D-cache part: followed loads into a cached RAM range."""
        cached = False
        for a, ea in zip(plan.accesses, addresses, strict=True):
            for lo, hi, cost in self._ranges:
                if lo <= ea < hi:
                    m = self._ram.access_range(1, ea, a.size)
                    if m:
                        rec = self._ram_misses.setdefault(key, [0, 0])
                        rec[0] += m
                        rec[1] += m * cost
                    cached = True
                    break
        if cached:
            self._cached.add(key)
        else:
            self._cached.discard(key)

    def set_ram_cache(self, spec: CacheSpec, ranges: list[tuple[int, int, int]]) -> None:
        self._ram = PyCache(spec)
        self._ranges = list(ranges)
        self.ram_cache = spec

    def block_ram_misses(self) -> dict[tuple[int, int], tuple[int, int]]:
        return {k: (m, c) for k, (m, c) in self._ram_misses.items()}

    def block_prefetches(self) -> dict[tuple[int, int], int]:
        return dict(self._prefetches)

    def block_branches(self) -> dict[tuple[int, int], tuple[int, int]]:
        return {k: (d, t) for k, (d, t) in self._branches.items() if d or t}

    def flush_predictor(self) -> None:
        self._bp = {}

    def enable_predictor(self) -> None:
        self._predicting = True

    def current_block(self) -> tuple[int, int] | None:
        return self._cur

    def block_executions(self) -> int:
        return self._nexec

    def _install_planner(self) -> None:
        pass  # _on_block evaluates plans itself

    def _plan_counts(self) -> dict[tuple[int, int], list[int]]:
        return {k: list(v) for k, v in self._counts.items()}

    def _on_read(self, uc: unicorn.Uc, access: int, address: int, size: int, value: int,
                 _user: object) -> None:
        if self._data is not None and not self._stopped:
            n = max(size, 1)
            log = self._access_log
            if log is not None and len(log) < self._log_cap:
                log.append((self._prev if self._cur is not None else START, address, n))
            m = self._data.access_range(1, address, n)
            if m and self._cur is not None:
                f, d = self._misses.get(self._cur, (0, 0))
                self._misses[self._cur] = (f, d + m)

    def _it_stale(self, uc: unicorn.Uc, address: int) -> bool:
        """The native guard (see _blockhook.c): a stale IT state at a block start is
        cleared and the block restarted; True = do not count this start."""
        xpsr = uc.reg_read(arm_const.UC_ARM_REG_XPSR)
        cur = self._cur
        if not xpsr & IT_BITS or (cur is not None and cur[0] + cur[1] == address
                                  and self._ends_inside_it(cur)):
            self._repair_at = None
            return False
        if self._repair_at == address:
            self._repair_run += 1
            if self._repair_run > 3:
                raise RuntimeError("the IT-state guard could not clear a stale IT state")
        else:
            self._repair_at, self._repair_run = address, 1
        uc.reg_write(arm_const.UC_ARM_REG_XPSR, xpsr & ~IT_BITS)
        uc.reg_write(arm_const.UC_ARM_REG_PC, address | 1)  # leave and restart this block
        self._repairs += 1
        return True

    def _ends_inside_it(self, key: tuple[int, int]) -> bool:
        v = self._it_tail.get(key)
        if v is None:
            v = self._it_tail[key] = ends_inside_it(bytes(self.uc.mem_read(*key)))
        return v

    @property
    def it_repairs(self) -> int:
        return self._repairs

    def _on_divide(self, uc: unicorn.Uc, address: int, size: int, site: DivideSite) -> None:
        if self._stopped:
            return
        b = divide_bucket(uc.reg_read(site.rn), uc.reg_read(site.rm), site.signed)
        self._hist.setdefault(site.address, [0] * DIV_BUCKETS)[b] += 1

    def reset(self) -> None:
        if self._access_log is not None:
            self._access_log.clear()
        self._repair_at, self._repair_run = None, 0
        self._blocks = {}
        self._nexec = 0
        self._prefetches = {}
        self._ram_misses = {}
        self._edges = {}
        self._branches = {}
        self._counts = {}
        self._hist = {}
        self._misses = {}
        self._cur = None
        if self._tree is not None:
            self._tree.reset()
        self._prev = START
        self._executed = 0
        for c in {id(c): c for c in (self._fetch, self._data, self._ram)
                  if c is not None}.values():
            c.clear_stats()

    def arm(self, budget: int, executed: int) -> None:
        self._budget = budget
        self._stopped = False

    @property
    def stopped(self) -> bool:
        return self._stopped

    def pending(self) -> tuple[int, int] | None:
        return self._pending if self._stopped else None

    def blocks(self) -> dict[tuple[int, int], int]:
        return dict(self._blocks)

    def edges(self) -> dict[tuple[int, int], int]:
        return dict(self._edges)

    def block_misses(self) -> dict[tuple[int, int], tuple[int, int]]:
        return dict(self._misses)

    def enable_call_tree(self, entries: list[int]) -> None:
        if self._tree is None:
            self._tree = PyCallTree(entries)
            self.call_tree_enabled = True

    def call_tree(self) -> tuple[list[tuple[int, int, int]], dict[tuple[int, int], int]]:
        if self._tree is None:
            return [], {}
        return [tuple(n) for n in self._tree.nodes], dict(self._tree.counts)

    def set_fetch_cache(self, spec: CacheSpec) -> None:
        self.fetch_cache = spec
        self._fetch = PyCache(spec)
        self.uc.ctl_flush_tb()

    def set_data_cache(self, spec: CacheSpec, unified: bool) -> None:
        self.data_cache, self.unified = spec, unified
        self._data = self._fetch if unified and self._fetch is not None else PyCache(spec)
        self._it_guard = True  # before the hook: it makes stale IT states possible
        self.uc.hook_add(unicorn.UC_HOOK_MEM_READ, self._on_read, begin=spec.lo,
                         end=spec.hi - 1)
        self.uc.ctl_flush_tb()

    def start_access_log(self, capacity: int) -> None:
        self._log_cap = capacity
        self._access_log = []

    def access_log(self) -> list[tuple[int, int, int]]:
        return list(self._access_log or [])

    def flush_caches(self) -> None:
        for c in {id(c): c for c in (self._fetch, self._data, self._ram)
                  if c is not None}.values():
            c.flush()
        self.flush_predictor()

    def cache_stats(self) -> dict[str, CacheStats]:
        out = {}
        if self._fetch is not None:
            out["fetch"] = CacheStats(*self._fetch.stats[0])
        if self._data is not None:
            out["data"] = CacheStats(*self._data.stats[1])
        if self._ram is not None:
            out["dcache"] = CacheStats(*self._ram.stats[1])
        return out

    def _add_site(self, site: DivideSite) -> None:
        self.uc.hook_add(unicorn.UC_HOOK_CODE, self._on_divide, user_data=site,
                         begin=site.address, end=site.address)

    def divide_histograms(self) -> dict[int, tuple[int, ...]]:
        return {a: tuple(h) for a, h in self._hist.items()}
