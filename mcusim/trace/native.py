"""The native counter: C hooks (mcusim/trace/_blockhook.c) registered through Unicorn's
uc_hook_add on the Python binding's engine handle.  No Python runs per block.

The budget is enforced on code bytes (Thumb instructions are 2 or 4 bytes, so
instructions <= bytes/2): the hook stops the emulator in front of the block that would
pass 2 x (remaining instructions) more bytes, the machine takes the exact count from the
blocks and resumes there until the next block would really exceed the budget.
"""

from __future__ import annotations

import ctypes
import importlib.util
import weakref

import unicorn
from unicorn import arm_const
from unicorn.unicorn_py3 import unicorn as _ucmod

from mcusim.catalog import Core
from mcusim.trace.blocks import DIV_BUCKETS, BlockCounter, CacheSpec, CacheStats, DivideSite

_U64P = ctypes.POINTER(ctypes.c_uint64)
_VP = ctypes.c_void_p
_PLANNER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint64, ctypes.c_uint32,
                            ctypes.POINTER(ctypes.c_int32), ctypes.c_int32)
_lib: ctypes.CDLL | None = None
_load_error: str | None = None


def _sig(lib: ctypes.CDLL, name: str, res: object, *args: object) -> None:
    fn = getattr(lib, name)
    fn.restype = res
    fn.argtypes = list(args)


def load_library() -> ctypes.CDLL | None:
    """The compiled hook library, or None (reason in `load_error()`)."""
    global _lib, _load_error
    if _lib is not None or _load_error is not None:
        return _lib
    spec = importlib.util.find_spec("mcusim.trace._blockhook")
    if spec is None or not spec.origin:
        _load_error = "the native block hook (mcusim.trace._blockhook) was not built"
        return None
    try:
        lib = ctypes.CDLL(spec.origin)
        _sig(lib, "mcusim_counter_new", _VP, _VP, _VP)
        for name in ("free", "reset"):
            _sig(lib, f"mcusim_counter_{name}", None, _VP)
        _sig(lib, "mcusim_counter_arm", None, _VP, ctypes.c_uint64)
        for name, res in (("bytes", ctypes.c_uint64), ("executions", ctypes.c_uint64),
                          ("pending_addr", ctypes.c_uint64), ("pending_size", ctypes.c_uint64),
                          ("stopped", ctypes.c_int), ("oom", ctypes.c_int),
                          ("nblocks", ctypes.c_size_t), ("nedges", ctypes.c_size_t)):
            _sig(lib, f"mcusim_counter_{name}", res, _VP)
        for name in ("blocks", "edges"):
            _sig(lib, f"mcusim_counter_{name}", ctypes.c_size_t, _VP, _U64P, _U64P, _U64P,
                 ctypes.c_size_t)
        _sig(lib, "mcusim_cache_new", _VP, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint32,
             ctypes.c_uint32, ctypes.c_uint32, ctypes.c_int)
        for name in ("free", "flush", "clear_stats"):
            _sig(lib, f"mcusim_cache_{name}", None, _VP)
        _sig(lib, "mcusim_cache_stats", None, _VP, _U64P)
        _sig(lib, "mcusim_counter_set_cache", None, _VP, ctypes.c_int, _VP)
        _sig(lib, "mcusim_counter_add_divide", _VP, _VP, ctypes.c_int, ctypes.c_int,
             ctypes.c_int)
        _sig(lib, "mcusim_counter_divide_hist", None, _VP, ctypes.c_size_t, _U64P)
        _sig(lib, "mcusim_counter_block_stats", ctypes.c_size_t, _VP, ctypes.c_int, _U64P,
             _U64P, _U64P, _U64P, ctypes.c_size_t)
        _sig(lib, "mcusim_counter_enable_calls", ctypes.c_int, _VP, _VP)
        _sig(lib, "mcusim_counter_add_entry", ctypes.c_int, _VP, ctypes.c_uint64)
        for name in ("nnodes", "ntreecounts"):
            _sig(lib, f"mcusim_counter_{name}", ctypes.c_size_t, _VP)
        for name in ("nodes", "tree_counts"):
            _sig(lib, f"mcusim_counter_{name}", ctypes.c_size_t, _VP, _U64P, _U64P, _U64P,
                 ctypes.c_size_t)
        _sig(lib, "mcusim_counter_set_it_guard", None, _VP, _VP, _VP, ctypes.c_int,
             ctypes.c_int)
        _sig(lib, "mcusim_counter_it_repairs", ctypes.c_uint64, _VP)
        _sig(lib, "mcusim_counter_it_error", ctypes.c_int, _VP)
        _sig(lib, "mcusim_counter_set_log", None, _VP, _U64P, ctypes.c_size_t)
        _sig(lib, "mcusim_counter_log_used", ctypes.c_size_t, _VP)
        _sig(lib, "mcusim_counter_flush_predictor", None, _VP)
        _sig(lib, "mcusim_counter_enable_predictor", None, _VP)
        _sig(lib, "mcusim_counter_current", ctypes.c_int, _VP, _U64P, _U64P)
        _sig(lib, "mcusim_counter_set_ram_cache", None, _VP, _VP, ctypes.c_int, _U64P, _U64P,
             _U64P)
        _sig(lib, "mcusim_counter_set_planner", None, _VP, _VP)
        _sig(lib, "mcusim_counter_plan_error", ctypes.c_int, _VP)
        _sig(lib, "mcusim_counter_nplans", ctypes.c_size_t, _VP)
        _sig(lib, "mcusim_counter_plan_words", ctypes.c_size_t, _VP)
        _sig(lib, "mcusim_counter_plans", ctypes.c_size_t, _VP, _U64P, _U64P, _U64P,
             ctypes.c_size_t, _U64P, ctypes.c_size_t)
    except (OSError, AttributeError) as e:
        _load_error = f"cannot load the native block hook: {e}"
        return None
    _lib = lib
    return lib


def load_error() -> str | None:
    load_library()
    return _load_error


class NativeBlockCounter(BlockCounter):
    kind = "native"

    def __init__(self, uc: unicorn.Uc, core: Core) -> None:
        super().__init__(uc, core)
        lib = load_library()
        if lib is None:
            raise RuntimeError(_load_error)
        self._lib = lib
        stop = ctypes.cast(_ucmod.uclib.uc_emu_stop, _VP).value
        reg_read = ctypes.cast(_ucmod.uclib.uc_reg_read, _VP).value
        self._counter = lib.mcusim_counter_new(stop, reg_read)
        if not self._counter:
            raise MemoryError("native block counter")
        # Free the counter only when the engine object itself is gone: no hook can run
        # after that, whatever order the garbage collector finalises a cycle in.
        weakref.finalize(uc, lib.mcusim_counter_free, self._counter)
        self._handles: list[object] = []
        self._caches: dict[str, int] = {}
        self._log: ctypes.Array | None = None
        self._hook(unicorn.UC_HOOK_BLOCK, "mcusim_block_hook", self._counter, 1, 0)
        uc.ctl_flush_tb()

    def _hook(self, kind: int, fn_name: str, user: int, begin: int, end: int) -> None:
        fn = ctypes.cast(getattr(self._lib, fn_name), _VP)
        handle = _ucmod.uc_hook_h()
        status = _ucmod.uclib.uc_hook_add(self.uc._uch, ctypes.byref(handle), kind, fn,
                                          _VP(user), ctypes.c_uint64(begin),
                                          ctypes.c_uint64(end))
        if status != unicorn.UC_ERR_OK:
            raise unicorn.UcError(status)
        self._handles.append(handle)

    def reset(self) -> None:
        self._lib.mcusim_counter_reset(self._counter)

    def arm(self, budget: int, executed: int) -> None:
        remaining = max(budget - executed, 0)
        done = self._lib.mcusim_counter_bytes(self._counter)
        # the block we stopped in front of fits its budget (else the machine had stopped):
        # let it through, so every resume makes progress
        pending = self.pending()
        room = max(2 * remaining, pending[1] if pending else 0)
        self._lib.mcusim_counter_arm(self._counter, done + room)

    @property
    def stopped(self) -> bool:
        if self._lib.mcusim_counter_plan_error(self._counter):
            raise RuntimeError("the access planner failed on a block (mcusim.trace.access): "
                               + getattr(self, "_planner_error", "invalid plan"))
        if self._lib.mcusim_counter_oom(self._counter):
            raise MemoryError("native block counter ran out of memory")
        if self._lib.mcusim_counter_it_error(self._counter):
            raise RuntimeError("the IT-state guard could not clear a stale IT state")
        return bool(self._lib.mcusim_counter_stopped(self._counter))

    def pending(self) -> tuple[int, int] | None:
        if not self.stopped:
            return None
        return (self._lib.mcusim_counter_pending_addr(self._counter),
                self._lib.mcusim_counter_pending_size(self._counter))

    def _dump(self, which: str) -> dict[tuple[int, int], int]:
        n = getattr(self._lib, f"mcusim_counter_n{which}")(self._counter)
        a, b, c = (ctypes.c_uint64 * n)(), (ctypes.c_uint64 * n)(), (ctypes.c_uint64 * n)()
        k = getattr(self._lib, f"mcusim_counter_{which}")(self._counter, a, b, c, n)
        out: dict[tuple[int, int], int] = {}
        for i in range(k):
            key = (a[i], b[i])
            out[key] = out.get(key, 0) + c[i]
        return out

    def blocks(self) -> dict[tuple[int, int], int]:
        return self._dump("blocks")

    def edges(self) -> dict[tuple[int, int], int]:
        return self._dump("edges")

    def _block_stats(self, which: int) -> dict[tuple[int, int], tuple[int, int]]:
        """mcusim_counter_block_stats: (address, size) -> two figures per block."""
        n = self._lib.mcusim_counter_nblocks(self._counter)
        a, b, v0, v1 = ((ctypes.c_uint64 * n)() for _ in range(4))
        k = self._lib.mcusim_counter_block_stats(self._counter, which, a, b, v0, v1, n)
        return {(a[i], b[i]): (v0[i], v1[i]) for i in range(k)}

    def block_misses(self) -> dict[tuple[int, int], tuple[int, int]]:
        return self._block_stats(0) if self._caches else {}

    def set_ram_cache(self, spec: CacheSpec, ranges: list[tuple[int, int, int]]) -> None:
        ptr = self._new_cache(spec)
        self._caches["dcache"] = ptr
        n = len(ranges)
        lo, hi, cost = ((ctypes.c_uint64 * n)(*col) for col in zip(*ranges, strict=True))
        self._lib.mcusim_counter_set_ram_cache(self._counter, ptr, n, lo, hi, cost)
        self.ram_cache = spec
        self.uc.ctl_flush_tb()

    def block_ram_misses(self) -> dict[tuple[int, int], tuple[int, int]]:
        return self._block_stats(1) if "dcache" in self._caches else {}

    def block_prefetches(self) -> dict[tuple[int, int], int]:
        if "fetch" not in self._caches:
            return {}
        return {k: v[0] for k, v in self._block_stats(2).items()}

    def block_branches(self) -> dict[tuple[int, int], tuple[int, int]]:
        return self._block_stats(3)

    def flush_predictor(self) -> None:
        self._lib.mcusim_counter_flush_predictor(self._counter)

    def enable_predictor(self) -> None:
        self._lib.mcusim_counter_enable_predictor(self._counter)

    def current_block(self) -> tuple[int, int] | None:
        a, b = ctypes.c_uint64(), ctypes.c_uint64()
        if self._lib.mcusim_counter_current(self._counter, ctypes.byref(a), ctypes.byref(b)):
            return a.value, b.value
        return None

    def block_executions(self) -> int:
        return self._lib.mcusim_counter_executions(self._counter)

    def _install_planner(self) -> None:
        def planner(address: int, size: int, out: ctypes.Array, cap: int) -> int:
            try:
                words = self.plan(address, size).encode()
            except Exception as e:  # reported by `stopped` as an internal error
                self._planner_error = f"{type(e).__name__}: {e}"
                return -1
            if len(words) > cap:
                return -1
            for i, w in enumerate(words):
                out[i] = w
            return len(words)

        self._planner = _PLANNER(planner)  # kept alive with the counter
        self._lib.mcusim_counter_set_planner(self._counter,
                                             ctypes.cast(self._planner, _VP).value)

    def _plan_counts(self) -> dict[tuple[int, int], list[int]]:
        lib, c = self._lib, self._counter
        n = lib.mcusim_counter_nplans(c)
        words = lib.mcusim_counter_plan_words(c)
        if not n or not words:
            return {}
        a, b, k = ((ctypes.c_uint64 * n)() for _ in range(3))
        buf = (ctypes.c_uint64 * words)()
        m = lib.mcusim_counter_plans(c, a, b, k, n, buf, words)
        flat = list(buf)
        out: dict[tuple[int, int], list[int]] = {}
        w = 0
        for i in range(m):
            out[(a[i], b[i])] = flat[w:w + 3 * k[i]]
            w += 3 * k[i]
        return out

    def enable_call_tree(self, entries: list[int]) -> None:
        if self.call_tree_enabled:
            return
        mem_read = ctypes.cast(_ucmod.uclib.uc_mem_read, _VP).value
        if not self._lib.mcusim_counter_enable_calls(self._counter, mem_read):
            raise MemoryError("native call tree")
        for a in entries:
            self._lib.mcusim_counter_add_entry(self._counter, a)
        self.call_tree_enabled = True
        self.uc.ctl_flush_tb()

    def call_tree(self) -> tuple[list[tuple[int, int, int]], dict[tuple[int, int], int]]:
        n = self._lib.mcusim_counter_nnodes(self._counter)
        a, b, c = (ctypes.c_uint64 * n)(), (ctypes.c_uint64 * n)(), (ctypes.c_uint64 * n)()
        k = self._lib.mcusim_counter_nodes(self._counter, a, b, c, n)
        nodes = [(a[i], b[i], c[i]) for i in range(k)]
        m = self._lib.mcusim_counter_ntreecounts(self._counter)
        x, y, z = (ctypes.c_uint64 * m)(), (ctypes.c_uint64 * m)(), (ctypes.c_uint64 * m)()
        j = self._lib.mcusim_counter_tree_counts(self._counter, x, y, z, m)
        return nodes, {(x[i], y[i]): z[i] for i in range(j)}

    def _new_cache(self, spec: CacheSpec) -> int:
        ptr = self._lib.mcusim_cache_new(spec.lo, spec.hi, spec.shift, spec.sets, spec.ways,
                                         int(spec.prefetch))
        if not ptr:
            raise ValueError(f"invalid cache geometry {spec}")
        return ptr

    def set_fetch_cache(self, spec: CacheSpec) -> None:
        self.fetch_cache = spec
        self._caches["fetch"] = self._new_cache(spec)
        self._lib.mcusim_counter_set_cache(self._counter, 0, self._caches["fetch"])
        self.uc.ctl_flush_tb()

    def set_data_cache(self, spec: CacheSpec, unified: bool) -> None:
        self.data_cache, self.unified = spec, unified
        shared = self._caches.get("fetch") if unified else None
        ptr = shared or self._new_cache(spec)
        self._caches["data"] = ptr
        self._lib.mcusim_counter_set_cache(self._counter, 1, ptr)
        self._arm_it_guard()  # before the hook: it makes stale IT states possible
        self._hook(unicorn.UC_HOOK_MEM_READ, "mcusim_mem_hook", self._counter, spec.lo,
                   spec.hi - 1)
        self.uc.ctl_flush_tb()

    def _arm_it_guard(self) -> None:
        write = ctypes.cast(_ucmod.uclib.uc_reg_write, _VP).value
        read = ctypes.cast(_ucmod.uclib.uc_mem_read, _VP).value
        self._lib.mcusim_counter_set_it_guard(self._counter, write, read,
                                              arm_const.UC_ARM_REG_XPSR,
                                              arm_const.UC_ARM_REG_PC)

    @property
    def it_repairs(self) -> int:
        return self._lib.mcusim_counter_it_repairs(self._counter)

    def start_access_log(self, capacity: int) -> None:
        """Log (block address, address, bytes) of every modelled data read of the next
        calls (each call starts a new log)."""
        self._log = (ctypes.c_uint64 * (3 * capacity))()
        self._lib.mcusim_counter_set_log(self._counter, self._log, capacity)

    def access_log(self) -> list[tuple[int, int, int]]:
        n = self._lib.mcusim_counter_log_used(self._counter) if self._log else 0
        log = self._log
        return [(log[3 * i], log[3 * i + 1], log[3 * i + 2]) for i in range(n)]

    def flush_caches(self) -> None:
        for ptr in set(self._caches.values()):
            self._lib.mcusim_cache_flush(ptr)
        self.flush_predictor()

    def cache_stats(self) -> dict[str, CacheStats]:
        out = {}
        for name, stream in (("fetch", 0), ("data", 1), ("dcache", 1)):
            ptr = self._caches.get(name)
            if ptr:
                buf = (ctypes.c_uint64 * 6)()
                self._lib.mcusim_cache_stats(ptr, buf)
                out[name] = CacheStats(*buf[3 * stream:3 * stream + 3])
        return out

    def _add_site(self, site: DivideSite) -> None:
        ptr = self._lib.mcusim_counter_add_divide(self._counter, site.rn, site.rm,
                                                  int(site.signed))
        if not ptr:
            raise MemoryError("native divide site")
        self._hook(unicorn.UC_HOOK_CODE, "mcusim_divide_hook", ptr, site.address, site.address)

    def divide_histograms(self) -> dict[int, tuple[int, ...]]:
        out = {}
        buf = (ctypes.c_uint64 * DIV_BUCKETS)()
        for i, site in enumerate(self.sites):
            self._lib.mcusim_counter_divide_hist(self._counter, i, buf)
            hist = tuple(buf)
            if any(hist):
                out[site.address] = hist
        return out
