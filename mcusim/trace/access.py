"""Data addresses of loads and stores, from the registers at block entry.

Address-dependent costs (an unaligned word, two paired loads in one DTCM bank) need the
address of each executed load or store.  A memory hook would give it, but it makes every
memory access of the emulated program leave Unicorn's fast path (measured: 4.5x slower on
M4 code, 12x on M0+ code) and it is what triggers Unicorn 2.1.4's IT-block bug (upstream
issue 2309); a code hook on each load costs 3x.  So the tracer follows addresses the way
a compiler's alias analysis does, once per block:

  - `plan_block` decodes a block when it first runs and expresses the address of each
    load/store of interest as  R[base] + delta (+ R[index] << shift), with base and index
    the registers' values *at the block's entry*: it follows the block's own updates of
    those registers (post/pre-indexed writeback, ADD/SUB #imm, MOV, PUSH/POP, LDM/STM
    with writeback).  An access whose base was overwritten by anything else in the block
    (a loaded pointer, an ADD of two registers) cannot be followed: it is listed in
    `unknown` and the timing model takes it as aligned and says how many there were.
  - At every execution of the block, the block hook reads the few entry registers the
    plan names and counts, per access: a word at a halfword boundary or a halfword at an
    odd address ("half"), a word at an odd address ("byte"), and whether it hits the same
    32-bit bank (address bit 2) as the access before it in the block ("same_bank").

Nothing here knows cycle costs: mcusim.timing.model turns the counts into cycles per core.
The native hook (_blockhook.c) evaluates the same plan as `evaluate` below; tests compare
both tracers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import capstone
from capstone import arm_const as ac
from unicorn import arm_const as uc

# What an access-counting tracer plans, per core family: None = nothing (M0+: an unaligned
# access faults, there is no bank to pair).
M4_POLICY = "m4"  # word and halfword loads and stores (unaligned penalties)
M7_POLICY = "m7"  # every single load, VLDR.32 (unaligned penalties, banks of paired loads)

_WORD = frozenset(("ldr", "str", "ldrt", "strt"))
_HALF = frozenset(("ldrh", "ldrsh", "strh", "ldrht", "ldrsht", "strht"))
_BYTE = frozenset(("ldrb", "ldrsb", "ldrbt", "ldrsbt"))
_STORES = frozenset(("str", "strh", "strt", "strht"))
MAX_REGS = 8  # registers a plan may read at block entry (the native plan's array)

_CS_TO_UC: dict[int, int] = {}


def _uc_reg(cs_reg: int) -> int | None:
    if not _CS_TO_UC:
        for i in range(13):
            _CS_TO_UC[getattr(ac, f"ARM_REG_R{i}")] = getattr(uc, f"UC_ARM_REG_R{i}")
        _CS_TO_UC[ac.ARM_REG_SP] = uc.UC_ARM_REG_SP
        _CS_TO_UC[ac.ARM_REG_LR] = uc.UC_ARM_REG_LR
    return _CS_TO_UC.get(cs_reg)


@dataclass(frozen=True)
class Access:
    """One followed load/store: address = R[base] + delta (+ sign x R[index] << shift),
    registers read at the block's entry (slots into AccessPlan.regs; index -1: none)."""

    address: int  # the instruction's address
    size: int  # bytes accessed: 1, 2 or 4
    load: bool
    base: int
    index: int
    shift: int
    sign: int  # +1 or -1
    delta: int


@dataclass
class AccessPlan:
    """How to find the addresses of one block's loads/stores from its entry registers."""

    regs: list[int] = field(default_factory=list)  # Unicorn register ids to read
    accesses: list[Access] = field(default_factory=list)
    unknown: list[tuple[int, int, bool]] = field(default_factory=list)  # (insn, size, load)
    # accesses through SP: its value is a multiple of 4 (ARMv7-M: SP[1:0] read as zero) and
    # mcusim's stack is in the data region (DTCM on the M7: no D-cache), so their
    # alignment and their bank relative to each other are known from the offsets alone:
    # (instruction, size, load, half, byte, same_bank) counts per execution of the block
    static: list[tuple[int, int, bool, int, int, int]] = field(default_factory=list)
    # count same_bank (the M7's paired loads); the M4 policy has no banks
    banks: bool = False
    # when the block loops to itself, does the next iteration repeat this one's counts?
    # (each access moves by a multiple of its size, so its alignment stays; with banks,
    # consecutive accesses both move by multiples of 4 that agree modulo 8, so whether
    # they share a bank stays)
    invariant: bool = False

    def encode(self) -> list[int]:
        """The native hook's int32 form: nregs, regs..., n, invariant | banks << 1, then per
        access size, base, index, shift, sign, delta."""
        out = [len(self.regs), *self.regs, len(self.accesses),
               int(self.invariant) | int(self.banks) << 1]
        for a in self.accesses:
            out += [a.size, a.base, a.index, a.shift, a.sign, a.delta]
        return out


def evaluate(plan: AccessPlan, read: Callable[[int], int], counts: list[int]) -> list[int]:
    """Count one execution of the block into `counts` (3 per access: half, byte,
    same_bank), reading entry registers with `read`; returns the accesses' addresses.  The
    native hook does the same."""
    values = [read(r) & 0xFFFFFFFF for r in plan.regs]
    prev = None
    out: list[int] = []
    for j, a in enumerate(plan.accesses):
        ea = values[a.base] + a.delta
        if a.index >= 0:
            ea += a.sign * ((values[a.index] << a.shift) & 0xFFFFFFFF)
        ea &= 0xFFFFFFFF
        if a.size == 4:
            if ea & 1:
                counts[3 * j + 1] += 1
            elif ea & 2:
                counts[3 * j] += 1
        elif a.size == 2 and ea & 1:
            counts[3 * j] += 1
        if plan.banks and prev is not None and not (ea ^ prev) & 4:
            counts[3 * j + 2] += 1
        prev = ea
        out.append(ea)
    return out


def make_planner_decoder() -> capstone.Cs:
    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    md.detail = True
    return md


def plan_block(md: capstone.Cs, code: bytes, address: int, policy: str) -> AccessPlan:
    """The access plan of the block `code` at `address` under `policy` (M4_POLICY or
    M7_POLICY)."""
    state: dict[int, tuple[int, int] | None] = {}  # reg -> (entry reg, delta) or unknown
    plan = AccessPlan(banks=policy == M7_POLICY)
    slots: dict[int, int] = {}
    moves: list[int | None] = []  # per access: its address's change over the block
    deltas: list[tuple[int, int, int | None, int, int]] = []  # (base, delta, index...)
    prev_static: int | None = None  # SP offset of the previous access if it was static

    def sym(reg: int) -> tuple[int, int] | None:
        return state[reg] if reg in state else (reg, 0)

    def slot(reg: int) -> int | None:
        u = _uc_reg(reg)
        if u is None:
            return None
        if u not in slots:
            if len(plan.regs) == MAX_REGS:
                return None
            slots[u] = len(plan.regs)
            plan.regs.append(u)
        return slots[u]

    # the previous instruction, when it was a static SP access: (address, offset, size, load)
    # (on the M7 a load right next to a followed one must be followed too: whether the two
    # share a bank depends on both addresses)
    last_static: tuple[int, int, int, bool] | None = None
    last_dynamic = False  # the previous instruction was a followed access
    for insn in _disasm(md, code, address):
        name = insn.insn_name()
        mem = next((op for op in insn.operands if op.type == ac.ARM_OP_MEM), None)
        size = 4 if name in _WORD else 2 if name in _HALF else 1 if name in _BYTE else \
            4 if name == "vldr" and not _is_double(insn) else 0
        load = name not in _STORES
        wanted = size and mem is not None and (
            (policy == M4_POLICY and size in (2, 4) and name != "vldr")
            or (policy == M7_POLICY and load))
        sp_base = wanted and mem.mem.base == ac.ARM_REG_SP and not mem.mem.index
        was_static, was_dynamic = last_static, last_dynamic
        last_static, last_dynamic = None, False
        if sp_base and sym(ac.ARM_REG_SP) is not None and sym(ac.ARM_REG_SP)[0] == \
                ac.ARM_REG_SP and not (plan.banks and was_dynamic):
            post = bool(getattr(insn, "post_index", False))
            off = sym(ac.ARM_REG_SP)[1] + (0 if post else mem.mem.disp)
            half = int((size == 4 and off % 4 == 2) or (size == 2 and off % 2 == 1))
            byte = int(size == 4 and off % 2 == 1)
            same = int(plan.banks and prev_static is not None
                       and not (off ^ prev_static) & 4)
            plan.static.append((insn.address, size, load, half, byte, same))
            prev_static = off
            last_static = (insn.address, off, size, load)
        elif wanted and mem.mem.base != ac.ARM_REG_PC:
            prev_static = None
            if plan.banks and was_static is not None and slot(ac.ARM_REG_SP) is not None:
                # the static SP access right before this one is followed after all
                s_at, s_off, s_size, s_load = was_static
                plan.static.pop()
                plan.accesses.append(Access(s_at, s_size, s_load, slot(ac.ARM_REG_SP), -1,
                                            0, 1, _s32(s_off)))
                deltas.append((ac.ARM_REG_SP, -1, 0, 1, 0))
            post = bool(getattr(insn, "post_index", False))
            b = sym(mem.mem.base)
            idx = sym(mem.mem.index) if mem.mem.index else None
            shift = mem.shift.value if mem.mem.index and mem.shift.type == ac.ARM_SFT_LSL \
                else 0
            ok = b is not None and (not mem.mem.index or (
                idx is not None and mem.shift.type in (0, ac.ARM_SFT_LSL)))
            bs = slot(b[0]) if ok and b is not None else None
            xs = slot(idx[0]) if ok and idx is not None else -1
            if ok and bs is not None and xs is not None and b is not None:
                sign = -1 if mem.subtracted else 1
                delta = b[1] + (0 if post else mem.mem.disp)
                if idx is not None:
                    delta += sign * (idx[1] << shift)
                plan.accesses.append(Access(insn.address, size, load, bs,
                                            xs if idx is not None else -1, shift, sign,
                                            _s32(delta)))
                deltas.append((b[0], idx[0] if idx is not None else -1, shift, sign, 0))
                last_dynamic = True
            else:
                plan.unknown.append((insn.address, size, load))
        _update(insn, name, mem, state, sym)
    def net(reg: int) -> int | None:
        end = sym(reg)
        return None if end is None or end[0] != reg else end[1]

    for base, index, shift, sign, _ in deltas:
        d = net(base)
        if d is not None and index >= 0:
            x = net(index)
            d = None if x is None else d + sign * (x << shift)
        moves.append(d)
    ok = bool(plan.accesses) and all(
        d is not None and d % (a.size if a.size in (2, 4) else 1) == 0
        for a, d in zip(plan.accesses, moves, strict=True))
    if ok and plan.banks:
        ok = all(moves[j] % 4 == 0 and moves[j - 1] % 4 == 0  # type: ignore[operator]
                 and (moves[j] - moves[j - 1]) % 8 == 0  # type: ignore[operator]
                 for j in range(1, len(moves)))
    plan.invariant = ok
    return plan


def _disasm(md: capstone.Cs, code: bytes, address: int):
    offset = 0
    while offset < len(code):
        n = 0
        for insn in md.disasm(code[offset:], address + offset):
            n += insn.size
            yield insn
        offset += n
        if offset < len(code):
            offset += 2  # undecodable halfword: Unicorn would have faulted on it


def _is_double(insn: capstone.CsInsn) -> bool:
    return any(op.type == ac.ARM_OP_REG and ac.ARM_REG_D0 <= op.reg <= ac.ARM_REG_D31
               for op in insn.operands)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _update(insn: capstone.CsInsn, name: str, mem, state: dict,
            sym: Callable[[int], tuple[int, int] | None]) -> None:
    """Apply one instruction's register writes to the symbolic state."""
    _reads, writes = insn.regs_access()
    regs = [op.reg for op in insn.operands if op.type == ac.ARM_OP_REG]
    imms = [op.imm for op in insn.operands if op.type == ac.ARM_OP_IMM]
    follow: dict[int, tuple[int, int] | None] = {}
    if mem is not None and insn.writeback and mem.mem.base in writes:
        b = sym(mem.mem.base)
        step = imms[0] if getattr(insn, "post_index", False) and imms else mem.mem.disp
        if getattr(insn, "post_index", False) and mem.subtracted:
            step = -abs(step)
        follow[mem.mem.base] = None if b is None or mem.mem.index else (b[0], b[1] + step)
    elif name in ("push", "pop", "vpush", "vpop") or (
            name in ("ldm", "stm", "stmdb", "ldmdb") and insn.writeback):
        base = ac.ARM_REG_SP if name in ("push", "pop", "vpush", "vpop") else regs[0]
        n = len(regs) - (0 if name in ("push", "pop", "vpush", "vpop") else 1)
        if name.startswith("v"):
            n *= 2 if _is_double(insn) else 1
        down = name in ("push", "vpush", "stmdb", "ldmdb")
        b = sym(base)
        follow[base] = None if b is None else (b[0], b[1] + (-4 * n if down else 4 * n))
    elif name in ("add", "sub", "addw", "subw") and regs and imms and len(regs) <= 2 \
            and not any(op.shift.type for op in insn.operands):
        rd = regs[0]
        rn = regs[1] if len(regs) == 2 else rd
        s = sym(rn)
        k = imms[0] if name in ("add", "addw") else -imms[0]
        follow[rd] = None if s is None else (s[0], s[1] + k)
    elif name == "mov" and len(regs) == 2 and not imms \
            and not any(op.shift.type for op in insn.operands):
        follow[regs[0]] = sym(regs[1])
    for w in writes:
        state[w] = follow.get(w)
    for r, v in follow.items():
        state[r] = v
