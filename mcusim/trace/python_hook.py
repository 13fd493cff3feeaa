"""Pure-Python block/edge counter: the fallback when the native hook is unavailable."""

from __future__ import annotations

import unicorn

from mcusim.catalog import Core
from mcusim.trace.blocks import START, BlockCounter


class PythonBlockCounter(BlockCounter):
    kind = "python"

    def __init__(self, uc: unicorn.Uc, core: Core) -> None:
        super().__init__(uc, core)
        self._blocks: dict[tuple[int, int], int] = {}
        self._edges: dict[tuple[int, int], int] = {}
        self._prev = START
        self._executed = 0
        self._budget = 0
        self._stopped = False
        self._pending: tuple[int, int] | None = None
        self._hook = uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block)
        uc.ctl_flush_tb()

    def _on_block(self, uc: unicorn.Uc, address: int, size: int, _user: object) -> None:
        if self._stopped:
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
        self._blocks[key] = self._blocks.get(key, 0) + 1
        edge = (self._prev, address)
        self._edges[edge] = self._edges.get(edge, 0) + 1
        self._prev = address

    def reset(self) -> None:
        self._blocks = {}
        self._edges = {}
        self._prev = START
        self._executed = 0

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
