"""Count basic-block executions with a Unicorn block hook; instructions from Capstone.

Each distinct block is decoded once with Capstone and its instruction count cached, so the
hook itself only adds two numbers.  Counts derived from blocks include IT-skipped
instructions, which a real core also spends a cycle on (unicorn-notes.md).
The instruction budget is enforced here: when the running total passes it the hook stops
the emulator, so runaway code ends with BudgetExhausted instead of hanging.
"""

from __future__ import annotations

from collections import defaultdict

import capstone
import unicorn

from mcusim.catalog import Core


def make_disassembler(core: Core) -> capstone.Cs:
    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    md.detail = False
    return md


class BlockCounter:
    """Per-call block counts and instruction totals (a Python UC_HOOK_BLOCK)."""

    def __init__(self, uc: unicorn.Uc, core: Core) -> None:
        self.uc = uc
        self.disassembler = make_disassembler(core)
        self._icount: dict[tuple[int, int], int] = {}
        self.block_counts: dict[int, int] = defaultdict(int)
        self.instructions = 0
        self.exhausted = False
        self._budget = 0
        self._hook: int | None = None

    def block_instructions(self, address: int, size: int) -> int:
        """Instructions in the block [address, address + size), decoded once."""
        key = (address, size)
        n = self._icount.get(key)
        if n is None:
            code = bytes(self.uc.mem_read(address, size))
            n = 0
            offset = 0
            # Capstone stops at undecodable bytes; count 2 bytes each so the block still ends.
            while offset < size:
                decoded = list(self.disassembler.disasm_lite(code[offset:], address + offset))
                n += len(decoded)
                offset += sum(d[1] for d in decoded)
                if offset < size:
                    n += 1
                    offset += 2
            self._icount[key] = n
        return n

    def _on_block(self, uc: unicorn.Uc, address: int, size: int, _user: object) -> None:
        n = self._icount.get((address, size))
        if n is None:
            n = self.block_instructions(address, size)
        self.block_counts[address] += 1
        self.instructions += n
        if self.instructions > self._budget:
            self.exhausted = True
            uc.emu_stop()

    def start(self, budget: int) -> None:
        self.block_counts = defaultdict(int)
        self.instructions = 0
        self.exhausted = False
        self._budget = budget
        if self._hook is None:
            self._hook = self.uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block)
            self.uc.ctl_flush_tb()

    def stop(self) -> None:
        pass
