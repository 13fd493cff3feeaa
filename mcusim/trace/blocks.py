"""Block and edge counts of one call, and the instructions they hold.

A counter records, per call, how often each basic block (address, size) ran and how often
each edge (previous block -> block) was taken; which way a block was left follows from its
edges.  Instruction totals come from decoding each distinct block once with Capstone.
Counts derived from blocks include IT-skipped instructions, which a real core also spends
a cycle on (unicorn-notes.md).

Two implementations give identical counts: the native C hook (mcusim.trace.native, ≈ the
speed of untraced Unicorn) and a pure-Python hook (mcusim.trace.python_hook, 30-80x
slower), used when the extension is unavailable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import capstone
import unicorn

from mcusim.catalog import Core

START = (1 << 64) - 1  # "previous block" of the first block of a run


def make_disassembler(core: Core) -> capstone.Cs:
    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    md.detail = False
    return md


class BlockCounter(ABC):
    """Counts blocks and edges of one call; enforces an instruction budget."""

    kind = "abstract"

    def __init__(self, uc: unicorn.Uc, core: Core) -> None:
        self.uc = uc
        self.disassembler = make_disassembler(core)
        self._icount: dict[tuple[int, int], int] = {}

    # -- implemented by the hooks
    @abstractmethod
    def reset(self) -> None:
        """Forget the counts: a new call starts."""

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

    # -- shared
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

    def instructions(self) -> int:
        return sum(c * self.block_instructions(a, s) for (a, s), c in self.blocks().items())
