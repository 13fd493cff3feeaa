"""Cycles of one traced call: block costs x counts, plus what the run decided.

    cycles = sum over blocks (executions x static block cost)         pipeline.py
           + taken branches x their refill (from the traced edges)    M0+/M4
           + mispredicted branches x penalty (the traced predictor)   M7
           + self-loops x the latency carried across the back-edge    M7
           + unaligned loads/stores, paired loads in one bank         M4/M7 (trace/access.py)
           + divides: early-termination cycles from the operands      M4
           + flash cache misses x miss cycles                         memory.py
           + prefetched lines x what the fill took beyond the previous line's execution
           + D-cache misses of followed loads into RAM outside the TCMs       M7
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from capstone import arm_const as _ac

from mcusim.catalog import Mcu
from mcusim.timing.decode import CLASSES, Insn, decode_block, is_wide, make_decoder
from mcusim.timing.memory import MemoryModel
from mcusim.timing.pipeline import BlockCost, block_cost
from mcusim.timing.table import CostTable, load_table
from mcusim.trace.blocks import DIV_BUCKETS, START, CacheStats

if TYPE_CHECKING:
    from mcusim.trace.access import AccessPlan

_INDIRECT = frozenset(("table_branch", "mov_pc", "load_pc"))


@dataclass
class ClassTotal:
    cycles: int = 0
    count: int = 0


@dataclass
class CycleReport:
    """Cycles, their split by instruction class and what the model assumed."""

    cycles: int
    clock_hz: int
    instructions: int
    by_class: dict[str, ClassTotal]
    energy_cycles: float  # cycles weighted by the per-class energy weights
    taken_branches: int
    not_taken_branches: int
    mispredicts: int
    divides: int
    cache: dict[str, CacheStats]
    unclassified: list[str]
    model: dict[str, Any] = field(default_factory=dict)
    # followed loads/stores (trace/access.py): executions followed and not followed,
    # unaligned ones, paired loads in one bank, and the cycles they added
    data_accesses: dict[str, int] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float:
        return self.cycles / self.clock_hz * 1e3

    @property
    def energy_mj(self) -> float:
        """Active energy: energy-weighted cycles / clock x supply voltage x run current, on
        the basis in model["energy_basis"] (chip supply by default; see mcus.toml)."""
        m = self.model
        return self.energy_cycles / self.clock_hz * m["voltage_v"] * m["run_current_ma"]

    @property
    def energy_basis(self) -> dict[str, Any]:
        """What V x I the energy stands on: basis, label, supply, figures, sources."""
        return dict(self.model.get("energy_basis") or {})

    @property
    def cpi(self) -> float:
        return self.cycles / self.instructions if self.instructions else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "cycles": self.cycles,
            "latency_ms": self.latency_ms,
            "cpi": round(self.cpi, 4),
            "cycles_by_class": {k: {"cycles": v.cycles, "count": v.count}
                                for k, v in sorted(self.by_class.items(),
                                                   key=lambda kv: -kv[1].cycles)},
            "energy_weighted_cycles": self.energy_cycles,
            "energy_mj": self.energy_mj,
            "energy_basis": self.energy_basis,
            "branches": {"taken": self.taken_branches, "not_taken": self.not_taken_branches,
                         "mispredicted": self.mispredicts},
            "divides": self.divides,
            "data_accesses": self.data_accesses,
            "cache": {k: {"accesses": v.accesses, "misses": v.misses,
                          "prefetched": v.prefetched} for k, v in self.cache.items()},
            "unclassified": self.unclassified,
            "model": self.model,
        }


KEYS = (*CLASSES, "stall_address", "stall_fp_result", "flash_wait_fetch", "flash_wait_data")
_INDEX = {k: i for i, k in enumerate(KEYS)}


def _vector(bc: BlockCost) -> np.ndarray:
    """[cycles per key..., instructions per key..., total cycles, energy, instructions] of
    one block, computed once."""
    v = getattr(bc, "_vector", None)
    if v is None:
        n = len(KEYS)
        v = np.zeros(2 * n + 3)
        for ins, c in zip(bc.insns, bc.cycles, strict=True):
            i = _INDEX[ins.cls]
            v[i] += c
            v[n + i] += 1
        for kind, c in bc.stalls.items():
            v[_INDEX[kind]] += c
        v[2 * n:] = (bc.total, bc.energy, len(bc.insns))
        bc._vector = v  # type: ignore[attr-defined]
    return v


class TimingModel:
    """The cycle model of one MCU: its core's cost table and its memory model."""

    def __init__(self, mcu: Mcu, memory: MemoryModel, read_code: Callable[[int, int], bytes],
                 table: CostTable | None = None) -> None:
        self.mcu = mcu
        self.table = table or load_table(mcu.core.key)
        self.memory = memory
        self._read = read_code
        self._decoder = make_decoder()
        self._blocks: dict[tuple[int, int], BlockCost] = {}
        self._wide: dict[int, bool] = {}
        self._edge_extra: dict[tuple[int, int], int] = {}  # taken cost per (block, target)
        self._plans: dict[tuple, tuple] = {}  # block set -> (blocks by address, matrix, ...)
        self.small_multiplier = mcu.multiplier == "small"

    # ------------------------------------------------------------------ static

    def decode(self, address: int, size: int) -> list[Insn]:
        return decode_block(self._decoder, self._read(address, size), address)

    def block(self, address: int, size: int) -> BlockCost:
        key = (address, size)
        bc = self._blocks.get(key)
        if bc is None:
            bc = block_cost(self.table, self.decode(address, size), address, size,
                            self.small_multiplier)
            self._blocks[key] = bc
        return bc

    def _target_wide(self, address: int) -> bool:
        w = self._wide.get(address)
        if w is None:
            try:
                hw = int.from_bytes(self._read(address, 2), "little")
                w = is_wide(hw)
            except Exception:
                w = False
            self._wide[address] = w
        return w

    def taken_cost(self, cls: str, target: int | None) -> int:
        """Extra cycles when a block is left through `cls` to `target` (None: unknown)."""
        taken = self.table.cls(cls).taken
        if taken != "P":
            return int(taken)
        p = int(self.table.param("pipeline_refill"))
        if target is not None and target % 4 == 2 and self._target_wide(target):
            p += int(self.table.param("refill_wide_unaligned"))
        return p

    def divide_cycles(self, bucket: int) -> int:
        d = self.table.parameters.get("divide")
        if d is None:
            return int(self.table.cls("div").cycles)
        if bucket == 0:
            return int(d["zero_operand"])
        if bucket == 1:
            return int(d["quotient_zero"])
        return min(int(d["maximum"]), int(d["base"]) + (bucket - 2) // int(d["bits_per_cycle"]))

    def prefetch_stall(self, bc: BlockCost) -> int:
        """Cycles a prefetched fetch line of block bc still waits: the accelerator starts
        the next line's fill when the current line is fetched, so the fill (the miss cost)
        is hidden by the current line's execution, taken as the block's static cycles per
        line of its code (assumption: the block's cycles spread evenly over its bytes)."""
        spec = self.memory.fetch
        pen = self.memory.fetch_penalty
        if spec is None or not pen or not bc.size:
            return 0
        per_line = bc.total * spec.line_bytes / bc.size
        return max(0, pen - int(per_line))

    def mispredicts_of(self, bc: BlockCost, direction: int, target: int) -> int:
        """M7: the mispredicts of block bc's exit branch from the traced predictor's
        direction and target misses (cortex_m7.toml parameters.branch_prediction)."""
        cls = bc.exit_class
        if cls == "branch_cond":
            return direction
        if cls in _INDIRECT:
            return target
        if cls == "branch_reg":
            last = bc.insns[-1]
            if last.name == "bx" and _ac.ARM_REG_LR in last.reads:
                return 0  # a return: the return stack predicts it
            return target
        return 0  # direct branches and calls; returns (ldm_pc)

    def loop_extra(self, bc: BlockCost) -> int:
        """M7: extra cycles per iteration of a block that loops to itself, from the
        register ready times one iteration leaves the next (steady state: the third
        iteration against the block's cost from an empty pipeline)."""
        v = getattr(bc, "_loop_extra", None)
        if v is None:
            v = 0
            if bc.ready_out:
                second = block_cost(self.table, bc.insns, bc.address, bc.size,
                                    self.small_multiplier, carry=bc.ready_out)
                third = block_cost(self.table, bc.insns, bc.address, bc.size,
                                   self.small_multiplier, carry=second.ready_out)
                v = max(0, third.total - bc.total)
            bc._loop_extra = v  # type: ignore[attr-defined]
        return v

    def _access_weights(self, bc: BlockCost, plan: AccessPlan) -> list[tuple[int, int, int,
                                                                            int, int]]:
        """Per followed access of a block, then per static (SP-based) one: (instruction
        index, cycles per "half", per "byte", per "same_bank" count, 1 if it counts in the
        report's unaligned total), from the core's rules and the block's static schedule;
        computed once per block."""
        cached = getattr(bc, "_weights", None)
        if cached is not None and cached[0] is plan:
            return cached[1]
        index = {ins.address: i for i, ins in enumerate(bc.insns)}
        un = self.table.parameters.get("unaligned")
        m7 = self.table.model == "m7"
        bank = int(self.table.parameters.get("bank_conflict", {}).get("value", 0))
        out = []
        entries = [(a.address, a.load) for a in plan.accesses] + \
            [(st[0], st[2]) for st in plan.static]
        for j, (address, load) in enumerate(entries):
            i = index.get(address)
            if i is None or un is None:
                out.append((-1, 0, 0, 0, 0))
                continue
            if m7:
                if not load:  # unaligned stores drain through the store buffer
                    out.append((i, 0, 0, 0, 0))
                    continue
                young = i < len(bc.paired) and bc.paired[i]
                u = int(un["younger" if young else "older"])
                # the bank relation is counted against the access before it in the same
                # list (followed, or static); it costs when that one is the instruction
                # right before and the schedule paired them
                first = j in (0, len(plan.accesses))
                prev = None if first else entries[j - 1]
                paired = (young and bank and prev is not None and prev[1]
                          and bc.insns[i - 1].address == prev[0])
                out.append((i, u, u, bank if paired else 0, 1))
            else:
                out.append((i, int(un["halfword"]), int(un["byte"]), 0, 1))
        bc._weights = (plan, out)  # type: ignore[attr-defined]
        return out

    def access_costs(self, bc: BlockCost, plan: AccessPlan, counts: list[int],
                     executions: int) -> tuple[list[tuple[int, int]], int, int]:
        """Cycles the loads/stores of one block added in one call, per instruction index:
        [(index, cycles)], and the unaligned accesses and bank conflicts counted (followed
        ones from `counts`, static ones x the block's `executions`)."""
        out: list[tuple[int, int]] = []
        unaligned = conflicts = 0
        static = [c for st in plan.static for c in (st[3] * executions, st[4] * executions,
                                                      st[5] * executions)]
        allc = list(counts) + static
        for j, (i, wh, wb, wbank, counted) in enumerate(self._access_weights(bc, plan)):
            if i < 0:
                continue
            half, byte, same = allc[3 * j], allc[3 * j + 1], allc[3 * j + 2]
            if counted:
                unaligned += half + byte
            if wbank:
                conflicts += same
            cyc = half * wh + byte * wb + same * wbank
            if cyc:
                out.append((i, cyc))
        return out, unaligned, conflicts

    # ------------------------------------------------------------------ dynamic

    def evaluate(self, blocks: dict[tuple[int, int], int], edges: dict[tuple[int, int], int],
                 divides: dict[int, tuple[int, ...]] | None = None,
                 cache: dict[str, CacheStats] | None = None,
                 exit_target: int | None = None,
                 branches: dict[tuple[int, int], tuple[int, int]] | None = None,
                 accesses: dict[tuple[int, int], tuple[AccessPlan, list[int]]] | None = None,
                 prefetches: dict[tuple[int, int], int] | None = None,
                 ram_misses: dict[tuple[int, int], tuple[int, int]] | None = None
                 ) -> CycleReport:
        """The cycles of one call from its traced counts.  `exit_target` is where the last
        block went (the return address), which no edge records.  `branches`: the traced
        predictor's misses per block (M7; without it each conditional branch is taken to
        be predicted in its majority direction); `accesses`: followed load/store
        addresses per block (trace/access.py)."""
        by_class: dict[str, ClassTotal] = {}
        total = 0
        energy = 0.0
        insns = 0
        unclassified: set[str] = set()

        def add(cls: str, cycles: int, count: int) -> None:
            t = by_class.get(cls)
            if t is None:
                t = by_class[cls] = ClassTotal()
            t.cycles += cycles
            t.count += count

        keys = tuple(blocks)
        plan = self._plans.get(keys)
        if plan is None:  # what depends only on which blocks ran: once per set of blocks
            at_: dict[int, BlockCost] = {}
            vectors = []
            for a, sz in keys:
                bc = self.block(a, sz)
                at_.setdefault(a, bc)
                vectors.append(_vector(bc))
                if bc.has_unclassified:
                    unclassified.update(i.text for i in bc.insns if i.cls == "unclassified")
            matrix = np.stack(vectors) if vectors else None
            plan = (at_, matrix, sorted(unclassified))
            if len(self._plans) > 1024:
                self._plans.clear()
            self._plans[keys] = plan
        at, matrix, unclassified_list = plan
        unclassified.update(unclassified_list)
        executions: dict[int, int] = {}
        for (a, _sz), n in blocks.items():
            executions[a] = executions.get(a, 0) + n
        nk = len(KEYS)
        if matrix is not None:
            agg = (np.fromiter(blocks.values(), dtype=np.float64, count=len(blocks))
                   @ matrix).tolist()
            for i in range(nk):
                if agg[i] or agg[nk + i]:
                    by_class[KEYS[i]] = ClassTotal(round(agg[i]), round(agg[nk + i]))
            total = round(agg[2 * nk])
            energy = agg[2 * nk + 1]
            insns = round(agg[2 * nk + 2])

        # branches: which way each block was left
        out_edges: dict[int, int] = {}
        taken = not_taken = mispredicts = 0
        per_branch: dict[int, list[int]] = {}  # block -> [taken, not taken]
        m7 = self.table.model == "m7"
        extra_of = self._edge_extra
        # a branch is predicted per instruction: blocks that end in the same branch (a
        # loop whose first iteration runs in the block that enters it) share one tally,
        # keyed by the branch's end address (block.end)
        branch_class: dict[int, str] = {}
        for (frm, to), k in edges.items():
            if frm == START:
                continue
            out_edges[frm] = out_edges.get(frm, 0) + k
            bc = at.get(frm)
            if bc is None or bc.exit_class is None:
                continue
            branch_class[bc.end] = bc.exit_class
            stats = per_branch.get(bc.end)
            if stats is None:
                stats = per_branch[bc.end] = [0, 0]
            if to == bc.end and bc.may_fall_through:
                stats[1] += k
                continue
            stats[0] += k
            if not m7:
                extra = extra_of.get((frm, to))
                if extra is None:
                    extra = extra_of[(frm, to)] = self.taken_cost(bc.exit_class, to)
                if extra:
                    add(bc.exit_class, extra * k, 0)
                    total += extra * k
                    energy += extra * k * self.table.classes[bc.exit_class].energy
        for a, bc in at.items():
            left = executions[a] - out_edges.get(a, 0)
            if left > 0 and bc.exit_class is not None:  # the call's exit (the return)
                branch_class[bc.end] = bc.exit_class
                per_branch.setdefault(bc.end, [0, 0])[0] += left
                extra = self.taken_cost(bc.exit_class, exit_target) \
                    if self.table.model != "m7" else 0
                add(bc.exit_class, extra * left, 0)
                total += extra * left
                energy += extra * left * self.table.cls(bc.exit_class).energy
        for a, (t, f) in per_branch.items():
            taken += t
            not_taken += f
            if self.table.model == "m7" and branches is None:
                cls = branch_class[a]
                if cls == "branch_cond":
                    miss = min(t, f)
                elif cls in _INDIRECT:
                    miss = t + f
                else:
                    miss = 0
                if miss:
                    pen = int(self.table.param("branch_prediction", "mispredict_penalty"))
                    mispredicts += miss
                    add(cls, miss * pen, 0)
                    total += miss * pen
                    energy += miss * pen * self.table.cls(cls).energy

        if m7 and branches is not None:  # the traced predictor
            for key, (dm, tm) in branches.items():
                bc = self.block(*key)
                miss = self.mispredicts_of(bc, dm, tm)
                if miss:
                    pen = bc.mispredict_penalty
                    mispredicts += miss
                    add(bc.exit_class or "branch", miss * pen, 0)
                    total += miss * pen
                    energy += miss * pen * self.table.cls(bc.exit_class or "branch").energy
        if m7:  # latencies carried across a self-loop's back-edge
            for (frm, to), k in edges.items():
                if frm == to and frm in at:
                    extra = self.loop_extra(at[frm]) * k
                    if extra:
                        add("stall_loop_carried", extra, 0)
                        total += extra
                        energy += extra * self.table.classes["unclassified"].energy
        data_accesses: dict[str, int] = {}
        if accesses:
            followed = unknown = unaligned = conflicts = added = 0
            for key, (plan, counts) in accesses.items():
                n = blocks.get(key, 0)
                followed += n * (len(plan.accesses) + len(plan.static))
                unknown += n * len(plan.unknown)
                bc = self.block(*key)
                costs, u, c = self.access_costs(bc, plan, counts, n)
                unaligned += u
                conflicts += c
                for i, cyc in costs:
                    cls = bc.insns[i].cls
                    add(cls, cyc, 0)
                    total += cyc
                    added += cyc
                    energy += cyc * self.table.cls(cls).energy
            data_accesses = {"followed": followed, "not_followed": unknown,
                             "unaligned": unaligned, "bank_conflicts": conflicts,
                             "cycles": added}

        # divides: early termination from the operands (the table charged the minimum)
        ndiv = 0
        if divides:
            base = int(self.table.cls("div").cycles) if "div" in self.table.classes else 0
            for hist in divides.values():
                for bucket in range(DIV_BUCKETS):
                    k = hist[bucket]
                    if k:
                        ndiv += k
                        extra = 0 if self.table.model == "m7" else \
                            self.divide_cycles(bucket) - base
                        add("div", extra * k, 0)
                        total += extra * k
                        energy += extra * k * self.table.cls("div").energy

        # prefetched fetch lines: free only when the previous line ran as long as the fill
        for key, n in (prefetches or {}).items():
            stall = n * self.prefetch_stall(self.block(*key))
            if stall:
                add("flash_wait_fetch", stall, 0)
                total += stall
                energy += stall * self.table.classes["unclassified"].energy

        # the D-cache over RAM outside the TCMs (followed loads)
        for _key, (_m, cyc) in (ram_misses or {}).items():
            if cyc:
                add("dcache_miss", cyc, _m)
                total += cyc
                energy += cyc * self.table.classes["unclassified"].energy

        # flash: line misses of instruction fetch and data reads
        cache = cache or {}
        for stream, pen in (("fetch", self.memory.fetch_penalty),
                            ("data", self.memory.data_penalty)):
            st = cache.get(stream)
            if st is not None and st.misses and pen:
                add(f"flash_wait_{stream}", st.misses * pen, st.misses)
                total += st.misses * pen
                energy += st.misses * pen * self.table.classes["unclassified"].energy

        return CycleReport(
            cycles=total, clock_hz=self.mcu.clock_hz, instructions=insns, by_class=by_class,
            energy_cycles=energy, taken_branches=taken, not_taken_branches=not_taken,
            mispredicts=mispredicts, divides=ndiv, cache=cache,
            unclassified=sorted(unclassified), model=self.describe(),
            data_accesses=data_accesses)

    def describe(self) -> dict[str, Any]:
        """The model, its version and every assumption it makes (cached per memory model)."""
        cached = getattr(self, "_described", None)
        if cached is None or cached[0] is not self.memory:
            cached = self._described = (self.memory, self._describe())
        return dict(cached[1])

    def _describe(self) -> dict[str, Any]:
        t = self.table
        assumptions = list(t.assumptions) + list(self.memory.assumptions)
        assumptions += [f"class {c.name}: {c.rule}" for c in t.classes.values()
                        if c.status == "assumption" and c.name != "unclassified"]
        if t.model == "m7":
            assumptions.append("each basic block starts with an empty pipeline: result "
                               "latencies across block boundaries are not charged")
        assumptions.append(f"energy weights per class: {t.energy_source or 'assumption'}")
        assumptions.append(
            f"energy = weighted cycles / clock x {self.mcu.voltage_v:g} V x "
            f"{self.mcu.run_current_ma:g} mA, on the basis {self.mcu.energy_label} "
            "(mcus.toml; --energy board: board-level figures instead)")
        return {
            "core": t.core, "name": t.title, "version": t.version,
            "table": t.path.name, "mcu": self.mcu.name, "clock_hz": self.mcu.clock_hz,
            "flash_wait_states": self.mcu.flash_wait_states,
            "multiplier": self.mcu.multiplier, "memory": self.memory.to_dict(),
            "voltage_v": self.mcu.voltage_v, "run_current_ma": self.mcu.run_current_ma,
            "energy_basis": self.mcu.energy_info(),
            "assumptions": assumptions,
        }


LOADS = frozenset(("load", "load_narrow", "load_double", "ldm", "ldm_pc", "load_pc",
                   "fp_load", "fp_ldm"))


@dataclass
class BlockCycles:
    """Where one block's cycles went in one call: per instruction, dynamic parts included."""

    block: BlockCost
    count: int
    cycles: list[int]  # per instruction of the block, over all executions
    stall: int = 0  # M4 pipeline stalls (address, FP result), charged to the block

    @property
    def total(self) -> int:
        return sum(self.cycles) + self.stall


def attribute(model: TimingModel, blocks: dict[tuple[int, int], int],
              edges: dict[tuple[int, int], int], divides: dict[int, tuple[int, ...]] | None,
              block_misses: dict[tuple[int, int], tuple[int, int]] | None,
              exit_target: int | None,
              branches: dict[tuple[int, int], tuple[int, int]] | None = None,
              accesses: dict[tuple[int, int], tuple[AccessPlan, list[int]]] | None = None,
              prefetches: dict[tuple[int, int], int] | None = None,
              ram_misses: dict[tuple[int, int], tuple[int, int]] | None = None
              ) -> dict[tuple[int, int], BlockCycles]:
    """Every cycle of a call charged to the instruction that caused it: static costs to
    each instruction, a taken branch's refill and a mispredict to the branch, a divide's
    early-termination cycles to the divide, flash fetch misses to the block's first
    instruction and data misses to its first load.  The totals equal `evaluate`."""
    out: dict[tuple[int, int], BlockCycles] = {}
    first_at: dict[int, tuple[int, int]] = {}
    executions: dict[int, int] = {}
    for (a, sz), n in blocks.items():
        bc = model.block(a, sz)
        first_at.setdefault(a, (a, sz))
        executions[a] = executions.get(a, 0) + n
        out[(a, sz)] = BlockCycles(bc, n, [c * n for c in bc.cycles],
                                   sum(bc.stalls.values()) * n)
    m7 = model.table.model == "m7"
    taken: dict[int, int] = {}
    fall: dict[int, int] = {}
    recorded: dict[int, int] = {}
    for (frm, to), k in edges.items():
        if frm == START or frm not in first_at:
            continue
        recorded[frm] = recorded.get(frm, 0) + k
        bcy = out[first_at[frm]]
        if bcy.block.exit_class is None:
            continue
        if to == bcy.block.end and bcy.block.may_fall_through:
            fall[frm] = fall.get(frm, 0) + k
            continue
        taken[frm] = taken.get(frm, 0) + k
        if not m7:
            bcy.cycles[-1] += model.taken_cost(bcy.block.exit_class, to) * k
    for a, key in first_at.items():
        bcy = out[key]
        left = executions[a] - recorded.get(a, 0)
        if left > 0 and bcy.block.exit_class is not None:
            taken[a] = taken.get(a, 0) + left
            if not m7:
                bcy.cycles[-1] += model.taken_cost(bcy.block.exit_class, exit_target) * left
    if m7 and branches is not None:  # the traced predictor (as evaluate)
        for key, (dm, tm) in branches.items():
            bcy = out.get(key)
            if bcy is not None:
                bcy.cycles[-1] += model.mispredicts_of(bcy.block, dm, tm) * \
                    bcy.block.mispredict_penalty
    if m7:
        for (frm, to), k in edges.items():
            if frm == to and frm in first_at:
                bcy = out[first_at[frm]]
                bcy.cycles[-1] += model.loop_extra(bcy.block) * k
    for key, (plan, counts) in (accesses or {}).items():
        bcy = out.get(key)
        if bcy is not None:
            for i, cyc in model.access_costs(bcy.block, plan, counts, bcy.count)[0]:
                bcy.cycles[i] += cyc
    for key, n in (prefetches or {}).items():
        bcy = out.get(key)
        if bcy is not None:
            bcy.cycles[0] += n * model.prefetch_stall(bcy.block)
    for key, (_m, cyc) in (ram_misses or {}).items():
        bcy = out.get(key)
        if bcy is not None:
            li = next((i for i, ins in enumerate(bcy.block.insns) if ins.cls in LOADS), 0)
            bcy.cycles[li] += cyc
    if m7 and branches is None:  # per branch instruction (as evaluate): majority policy
        pen = int(model.table.param("branch_prediction", "mispredict_penalty"))
        by_branch: dict[int, list[int]] = {}
        for a, key in first_at.items():
            by_branch.setdefault(out[key].block.end, []).append(a)
        for starts in by_branch.values():
            t_all = sum(taken.get(a, 0) for a in starts)
            f_all = sum(fall.get(a, 0) for a in starts)
            for a in starts:
                key = first_at[a]
                cls = out[key].block.exit_class
                t, f = taken.get(a, 0), fall.get(a, 0)
                # the minority direction mispredicts (a tie: the taken one); each block
                # is charged its own executions of it, so the shares add up to min(T, F)
                miss = (t if t_all <= f_all else f) if cls == "branch_cond" else \
                    (t + f if cls in _INDIRECT else 0)
                out[key].cycles[-1] += miss * pen
    if divides and not m7:
        base = int(model.table.cls("div").cycles)
        for addr, hist in divides.items():
            extra = sum(hist[b] * (model.divide_cycles(b) - base) for b in range(DIV_BUCKETS))
            for bcy in out.values():
                hit = next((i for i, ins in enumerate(bcy.block.insns) if ins.address == addr),
                           None)
                if hit is not None:
                    bcy.cycles[hit] += extra
                    break
    for key, (fm, dm) in (block_misses or {}).items():
        bcy = out.get(key)
        if bcy is None:
            continue
        bcy.cycles[0] += fm * model.memory.fetch_penalty
        li = next((i for i, ins in enumerate(bcy.block.insns) if ins.cls in LOADS), 0)
        bcy.cycles[li] += dm * model.memory.data_penalty
    return out
