"""The native block/edge counter: a C UC_HOOK_BLOCK callback registered through Unicorn's
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
from unicorn.unicorn_py3 import unicorn as _ucmod

from mcusim.catalog import Core
from mcusim.trace.blocks import BlockCounter

_U64P = ctypes.POINTER(ctypes.c_uint64)
_lib: ctypes.CDLL | None = None
_load_error: str | None = None


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
    except OSError as e:
        _load_error = f"cannot load the native block hook: {e}"
        return None
    lib.mcusim_counter_new.restype = ctypes.c_void_p
    lib.mcusim_counter_new.argtypes = [ctypes.c_void_p]
    for name in ("free", "reset"):
        fn = getattr(lib, f"mcusim_counter_{name}")
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p]
    lib.mcusim_counter_arm.restype = None
    lib.mcusim_counter_arm.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
    for name, res in (("bytes", ctypes.c_uint64), ("executions", ctypes.c_uint64),
                      ("pending_addr", ctypes.c_uint64), ("pending_size", ctypes.c_uint64),
                      ("stopped", ctypes.c_int), ("oom", ctypes.c_int),
                      ("nblocks", ctypes.c_size_t), ("nedges", ctypes.c_size_t)):
        fn = getattr(lib, f"mcusim_counter_{name}")
        fn.restype = res
        fn.argtypes = [ctypes.c_void_p]
    for name in ("blocks", "edges"):
        fn = getattr(lib, f"mcusim_counter_{name}")
        fn.restype = ctypes.c_size_t
        fn.argtypes = [ctypes.c_void_p, _U64P, _U64P, _U64P, ctypes.c_size_t]
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
        stop = ctypes.cast(_ucmod.uclib.uc_emu_stop, ctypes.c_void_p).value
        self._counter = lib.mcusim_counter_new(stop)
        if not self._counter:
            raise MemoryError("native block counter")
        hook_fn = ctypes.cast(lib.mcusim_block_hook, ctypes.c_void_p)
        handle = _ucmod.uc_hook_h()
        status = _ucmod.uclib.uc_hook_add(uc._uch, ctypes.byref(handle), unicorn.UC_HOOK_BLOCK,
                                          hook_fn, ctypes.c_void_p(self._counter), 1, 0)
        if status != unicorn.UC_ERR_OK:
            lib.mcusim_counter_free(self._counter)
            raise unicorn.UcError(status)
        self._handle = handle
        # Free the counter only when the engine object itself is gone: no hook can run
        # after that, whatever order the garbage collector finalises a cycle in.
        weakref.finalize(uc, lib.mcusim_counter_free, self._counter)
        uc.ctl_flush_tb()

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
        if self._lib.mcusim_counter_oom(self._counter):
            raise MemoryError("native block counter ran out of memory")
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
        return {(a[i], b[i]): c[i] for i in range(k)}

    def blocks(self) -> dict[tuple[int, int], int]:
        return self._dump("blocks")

    def edges(self) -> dict[tuple[int, int], int]:
        return self._dump("edges")
