"""Static cost of one basic block under a core's rules.

Each block is decoded once; its cost is what the block costs when it runs from its first
to its last instruction and falls through.  What depends on the run (taken branches and
their targets, mispredicts, divide operands, cache misses) is added by
mcusim.timing.model from the traced edges, divide histograms and cache statistics.

Three engines, chosen by the table's `model`:
  m0plus  the table: cycles + per_register x N; MULS by the MCU's multiplier.
  m4      the table plus the TRM's pipeline rules: load/store pipelining, the address
          generation stall, IT folding, the FP result stall, a load after a store, chained
          indexed stores and literal loads (cortex_m4.toml parameters).
  m7      an in-order dual-issue simulation over the block (cortex_m7.toml header); it also
          records which instructions paired with their predecessor, the mispredict penalty
          of the block's branch (flag forwarding) and the ready times it leaves behind.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from capstone import arm_const as _ac

from mcusim.timing.decode import BRANCH_CLASSES, Insn
from mcusim.timing.table import CostTable

MEMORY = frozenset(("load", "load_narrow", "store", "store_reg", "load_double", "store_double",
                    "ldm", "stm", "ldm_pc", "load_pc", "fp_load", "fp_store", "fp_ldm",
                    "fp_stm", "table_branch"))
STORES = frozenset(("store", "store_reg", "store_double", "stm", "fp_store", "fp_stm"))
_M4_LDR = frozenset(("load", "load_narrow"))
_M4_SINGLE = frozenset(("load", "load_narrow", "store", "store_reg"))
_M4_DATA_PROCESSING = frozenset(("alu", "alu_shift", "bitfield", "mul", "mac", "mul_long",
                                 "div", "dsp", "dsp_mac", "fp_mov_core"))
_M4_FP_ARITH = frozenset(("fp_alu", "fp_mul", "fp_mac", "fp_fma", "fp_div", "fp_sqrt"))
_M4_AFTER_STORE = frozenset(("load", "load_narrow", "load_double", "ldm", "ldm_pc", "load_pc"))
_LITERAL = frozenset(("load", "load_narrow", "load_double", "fp_load"))
_M7_MULTIPLY = frozenset(("mul", "mac", "mul_long", "dsp_mac"))
_M7_LOADS = frozenset(("load", "load_narrow"))
_PC_REG = _ac.ARM_REG_PC


@dataclass
class BlockCost:
    """The static cost of one block and its attribution."""

    address: int
    size: int
    insns: list[Insn]
    cycles: list[int]  # per instruction, stalls included
    stalls: dict[str, int] = field(default_factory=dict)  # stall kind -> cycles (m4)
    energy: float = 0.0  # sum over instructions of cycles x class energy weight
    paired: list[bool] = field(default_factory=list)  # m7: issued with the previous one
    mispredict_penalty: int = 0  # m7: what a mispredict of the block's branch costs
    ready_out: dict[int, int] = field(default_factory=dict)  # m7: ready time - block end

    def __post_init__(self) -> None:
        self.end = self.address + self.size
        self.total = sum(self.cycles) + sum(self.stalls.values())
        cls = self.insns[-1].cls
        # the class of the branch that ends the block, if it ends with one
        self.exit_class: str | None = cls if cls in BRANCH_CLASSES else None
        # can the block be left to the next instruction without its branch being taken?
        # (a conditional branch, a branch inside an IT block, or no branch at all); an
        # unconditional branch to the next instruction is still a taken branch
        self.may_fall_through = self.exit_class is None or cls == "branch_cond" \
            or self.insns[-1].conditional
        self.has_unclassified = any(i.cls == "unclassified" for i in self.insns)


def block_cost(table: CostTable, insns: list[Insn], address: int, size: int,
               small_multiplier: bool = False, carry: dict[int, int] | None = None
               ) -> BlockCost:
    """`carry` (m7): register ready times, relative to the block's start, that an earlier
    block left (a loop's previous iteration)."""
    if table.model == "m7":
        bc = _m7(table, insns, address, size, carry)
    elif table.model == "m4":
        bc = _m4(table, insns, address, size)
    else:
        bc = _m0plus(table, insns, address, size, small_multiplier)
    bc.energy = sum(c * table.cls(i.cls).energy for i, c in zip(insns, bc.cycles, strict=True))
    bc.energy += sum(bc.stalls.values()) * table.classes["unclassified"].energy
    return bc


def _m0plus(table: CostTable, insns: list[Insn], address: int, size: int,
            small_multiplier: bool) -> BlockCost:
    cycles = []
    for ins in insns:
        c = table.cls(ins.cls)
        n = c.issue_cycles(ins.nregs)
        if ins.cls == "mul" and small_multiplier:
            n = int(table.param("multiplier_small_cycles"))
        cycles.append(n)
    return BlockCost(address, size, insns, cycles)


def _m4(table: CostTable, insns: list[Insn], address: int, size: int) -> BlockCost:
    pipelining = int(table.param("load_pipelining"))
    agu = int(table.param("agu_stall"))
    fold = bool(table.param("it_folding"))
    fp_stall = int(table.param("fp_result_stall"))
    after_store = int(table.param("store_load_stall"))
    store_chain = int(table.param("indexed_store_chain"))
    literal = int(table.param("literal_load_contention"))
    cycles: list[int] = []
    stalls: Counter[str] = Counter()
    prev: Insn | None = None
    for ins in insns:
        c = table.cls(ins.cls)
        n = c.issue_cycles(ins.nregs)
        if prev is not None:
            if ins.cls == "it" and fold and prev.size == 2:
                n = 0
            if ins.cls in _M4_SINGLE and prev.cls in _M4_LDR \
                    and not (ins.address_regs & prev.writes):
                n = max(1, n - pipelining)
            if ins.cls in MEMORY and prev.cls in _M4_DATA_PROCESSING \
                    and ins.address_regs & prev.writes:
                stalls["stall_address"] += agu
            if ins.cls in _M4_AFTER_STORE and prev.cls == "store":
                n += after_store  # the store's data phase holds the bus (charged to the load)
            if ins.cls in ("store", "store_reg") and prev.cls in ("store", "store_reg") \
                    and ins.writeback and ins.writeback & prev.writeback:
                n += store_chain
            if prev.cls in _M4_FP_ARITH:
                used = ins.reads - ins.acc_regs if ins.cls in ("fp_mac", "fp_fma") else ins.reads
                if used & prev.writes:
                    stalls["stall_fp_result"] += fp_stall
        if ins.cls in _LITERAL and _PC_REG in ins.address_regs:
            n += literal
        cycles.append(n)
        prev = ins
    return BlockCost(address, size, insns, cycles, dict(stalls))


def _m7(table: CostTable, insns: list[Insn], address: int, size: int,
        carry: dict[int, int] | None = None) -> BlockCost:
    capacity = {k: v for k, v in table.parameters["units"].items() if isinstance(v, int)}
    exclusions = [frozenset(p) for p in table.param("pair_exclusions")]
    class_excl = {frozenset(p) for p in table.parameters.get(
        "class_pair_exclusions", {}).get("value", [])}
    singles = frozenset(table.parameters.get("single_issue_forms", {}).get("value", []))
    fp_from_core = int(table.param("fp_from_core_latency"))
    base_latency = int(table.param("base_update_latency"))
    load_to_mac = int(table.parameters.get("load_to_mac", {}).get("value", 0))
    bp = table.parameters["branch_prediction"]
    ready: dict[int, int] = dict(carry) if carry else {}
    from_load: set[int] = set()  # registers whose value comes from a load in this block
    t = 0  # cycle of the current issue group
    in_group = 0  # instructions issued at cycle t (2 = full)
    group_units: Counter[str] = Counter()
    group_cls = ""  # class of the group's older instruction
    busy_until = 0  # no instruction issues before this cycle (multi-cycle occupancy)
    end = 0
    flags_at: int | None = None  # issue cycle of the last flag-setting instruction
    cycles: list[int] = []
    paired: list[bool] = []
    issue = 0
    for ins in insns:
        c = table.cls(ins.cls)
        occupancy = max(1, c.issue_cycles(ins.nregs))
        need = 0
        is_store = ins.cls in STORES
        for r in ins.reads:
            if is_store and r not in ins.address_regs:
                continue  # store data is read late: any result can be stored at once
            rt = ready.get(r, _LONG_AGO)
            if (ins.cls in MEMORY and r in ins.address_regs) or c.early \
                    or (ins.cls == "preload" and r in ins.address_regs):
                rt += 1
            if r in ins.acc_regs:
                rt -= c.acc_advance
            elif ins.cls in _M7_MULTIPLY and r in from_load:
                rt += load_to_mac
            if rt > need:
                need = rt
        single = c.issue == "single" or (singles and _single_form(ins) in singles)
        pair = (in_group == 1 and c.issue == "dual" and not single and need <= t
                and busy_until <= t + 1
                and _fits(group_units, c.units, capacity, exclusions)
                and frozenset((group_cls, ins.cls)) not in class_excl)
        if pair:
            issue = t
            in_group = 2
        else:
            issue = max(t + 1 if in_group else t, need, busy_until)
            t = issue
            in_group = 2 if single else 1
            group_units = Counter()
            group_cls = ins.cls
        group_units.update(c.units)
        if single:
            in_group = 2
        busy_until = max(busy_until, issue + occupancy)
        latency = c.latency
        if ins.cls == "fp_mov_core" and any(_is_fp_reg(r) for r in ins.writes):
            latency = fp_from_core
        for w in ins.writes:
            ready[w] = issue + (base_latency if w in ins.writeback else latency)
            if ins.cls in _M7_LOADS and w not in ins.writeback:
                from_load.add(w)
            else:
                from_load.discard(w)
        if ins.writes_flags:
            flags_at = issue
        new_end = max(end, issue + occupancy)
        cycles.append(new_end - end)
        paired.append(pair)
        end = new_end
    penalty = int(bp["mispredict_penalty"])
    last = insns[-1] if insns else None
    if last is not None and last.cls == "branch_cond" and last.name == "b" \
            and flags_at is not None and issue - flags_at >= int(bp["early_flags_distance"]):
        penalty = int(bp["early_flags_penalty"])
    out = {r: v - end for r, v in ready.items() if v > end}
    return BlockCost(address, size, insns, cycles, paired=paired, mispredict_penalty=penalty,
                     ready_out=out)


def _single_form(ins: Insn) -> str:
    """The named single-issue forms of cortex_m7.toml parameters.single_issue_forms."""
    if ins.cls in ("fp_load", "fp_store") and any(_is_dp_reg(r)
                                                  for r in ins.reads | ins.writes):
        return "fp_load_double" if ins.cls == "fp_load" else "fp_store_double"
    if ins.cls == "fp_mov_core" and sum(1 for r in ins.reads | ins.writes
                                        if _is_core_reg(r)) >= 2:
        return "fp_mov_core_pair"
    return ""


_LONG_AGO = -64  # registers not written in the block were produced long before it


def _fits(used: Counter[str], units: tuple[str, ...], capacity: dict[str, int],
          exclusions: list[frozenset[str]]) -> bool:
    want = Counter(units)
    for u, k in want.items():
        if used[u] + k > capacity.get(u, 1):
            return False
    have = {u for u, k in used.items() if k}
    for ex in exclusions:
        if (have & ex) and (set(want) & ex) and (have | set(want)) >= ex:
            return False
    return True


def _is_fp_reg(reg: int) -> bool:
    from capstone import arm_const as ac

    return ac.ARM_REG_S0 <= reg <= ac.ARM_REG_S31 or ac.ARM_REG_D0 <= reg <= ac.ARM_REG_D31


def _is_dp_reg(reg: int) -> bool:
    from capstone import arm_const as ac

    return ac.ARM_REG_D0 <= reg <= ac.ARM_REG_D31


def _is_core_reg(reg: int) -> bool:
    from capstone import arm_const as ac

    return ac.ARM_REG_R0 <= reg <= ac.ARM_REG_R12 or reg in (ac.ARM_REG_SP, ac.ARM_REG_LR)
