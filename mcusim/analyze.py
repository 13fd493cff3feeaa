"""The training-step analyzer: latency, energy, peak RAM and flash of one training step.

`simulate_step(model, mcu)` runs one mini-batch of training (forward, loss, backward and
the per-sample bookkeeping for every sample, then the weight update) of a model as
compiled kernels on the emulated MCU, with the memory planner's layout, and reports:

- cycles, latency and energy per sample (the mini-batch's update divided by the batch
  size, as the paper reports per-sample latency) and per mini-batch;
- a row per layer x phase (forward / loss / backward / update), plus the modelled call
  overhead of the driver that calls the kernels; rows sum to the total;
- min / mean / max over the samples (partial updates make the backward pass data
  dependent);
- peak RAM by part (kernel .data/.bss, trainable weights, gradient accumulators,
  optimizer statistics, quantization records, the planned arena, the measured stack) and
  flash by part (code, frozen weights, initial values of the trainable state), against the
  MCU's budgets.

The report is a plain data object; mcusim.render.console draws it and `to_dict()` is the
stable JSON.

Whether the step fits is decided before any weight exists: the program is first built with
sizes only (mcusim.fqt.network, `Program.build(sizes_only=True)`: every buffer a placeholder
of its size), planned and laid out; a model that does not fit is reported from that alone, in
time and memory proportional to its number of layers, however large its tensors.  The real
program (float32 initialisation, calibration, quantized weights) is built only to be run:
when the step fits, or for the hypothetical cost of one that does not, which is simulated
only up to HYPOTHETICAL_MAX_BYTES of RAM, HYPOTHETICAL_MAX_MACS multiply-accumulates and
HYPOTHETICAL_MAX_CALLS kernel calls per mini-batch (beyond that the report says so among its
assumptions: the emulation would take minutes for a model that does not fit anyway).
"""

from __future__ import annotations

import dataclasses
import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mcusim.catalog import PAGE, Catalog, Mcu, Region, load_catalog
from mcusim.elf import ElfImage
from mcusim.errors import ModelError
from mcusim.fqt.network import DeviceExecutor, Program, Trainer, TwinExecutor, machine_layout
from mcusim.fqt.planner import ALIGN, BankUse, Placement, Unplaced, buffer_label, kb, unplaced_in
from mcusim.machine import PAINT, Machine
from mcusim.model.schema import ModelSpec
from mcusim.model.zoo import load_model
from mcusim.timing.table import CostTable
from mcusim.toolchain import Builder, Toolchain, find_toolchain

PHASES = ("forward", "loss", "backward", "update")
PER_SAMPLE_GROUPS = ("forward", "loss", "backward", "commit")
PER_BATCH_GROUPS = ("update", "refresh")
OVERHEAD_LAYER = "(kernel calls)"

# RAM parts by buffer kind (persistent SRAM buffers; transient ones are the arena)
RAM_PARTS = {
    "weights": "trainable weights", "bias_q": "trainable weights", "bias": "trainable weights",
    "grad": "gradient accumulators", "grad_bias": "gradient accumulators",
    "stats": "optimizer statistics",
}
RECORDS = "quantization and layer records"
ARENA = "activation/error arena"
# The hypothetical bank for the buffers that fit no real bank: mapped at the first of these
# bases that overlaps nothing of the MCU (the external-memory and device areas of the
# Cortex-M map, which the catalog's parts leave empty or use for external flash)
VIRTUAL_BANK = "VIRTUAL"
VIRTUAL_BASES = (0x6000_0000, 0x7000_0000, 0x8000_0000, 0x9000_0000, 0xA000_0000,
                 0xC000_0000, 0xD000_0000)
ZERO_INITIALISED = frozenset(("grad", "grad_bias", "stats"))  # .bss: no flash image
# the largest step whose hypothetical cost is simulated: RAM it needs in all (64x the largest
# MCU's), multiply-accumulates of its forward + backward passes over a mini-batch, and kernel
# calls of a mini-batch (about a millisecond each in the emulator)
HYPOTHETICAL_MAX_BYTES = 64 << 20
HYPOTHETICAL_MAX_MACS = 1 << 28
HYPOTHETICAL_MAX_CALLS = 4096


@dataclass
class Row:
    """One layer x phase: cycles per sample (mean, min, max over the samples)."""

    layer: str
    phase: str
    cycles: float
    cycles_min: float
    cycles_max: float
    calls: float  # kernel calls per sample
    energy_mj: float
    # forward / backward: the multiply-accumulates the row's kernels do at λ = 1 (forward:
    # the layer's; backward: error propagation + weight gradients); 0 for other rows
    macs: int = 0
    # update: the parameters (weights and biases) the batch's update visits, and the
    # update's own cycles per batch (without the per-sample bookkeeping the row's cycles
    # include)
    params: int = 0
    update_cycles: float = 0.0

    def to_dict(self, clock_hz: int) -> dict[str, Any]:
        d = {"layer": self.layer, "phase": self.phase, "cycles": round(self.cycles, 1),
             "cycles_min": round(self.cycles_min, 1), "cycles_max": round(self.cycles_max, 1),
             "latency_ms": self.cycles / clock_hz * 1e3, "calls": self.calls,
             "energy_mj": self.energy_mj}
        if self.macs:
            d["macs"] = self.macs
            d["cycles_per_mac"] = round(self.cycles / self.macs, 3)
        if self.params:
            d["params"] = self.params
            d["update_cycles_per_batch"] = round(self.update_cycles, 1)
            d["update_cycles_per_param"] = round(self.update_cycles / self.params, 2)
        return d


@dataclass
class StepReport:
    """What one training step of a model costs on one MCU."""

    model: str
    mcu: str
    board: str
    core: str
    clock_hz: int
    toolchain: str
    batch_size: int
    lambda_min: float
    lambda_max: float
    rounding: str
    fits: bool
    ram: dict[str, int]
    flash: dict[str, int]
    ram_budget: int
    flash_budget: int
    ram_region: str
    arena_predicted: int
    arena_measured: int | None = None
    stack_bytes: int | None = None
    samples: int = 0
    cycles: float | None = None  # per sample, incl. the update / batch size
    energy_mj: float | None = None
    sample_cycles: list[float] = field(default_factory=list)  # per sample, without update
    update_cycles: float = 0.0  # one mini-batch's update
    update_energy_mj: float = 0.0
    rows: list[Row] = field(default_factory=list)
    call_overhead_cycles: int = 0  # modelled per kernel call (average)
    assumptions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why it does not fit
    dataset: str | None = None  # where the samples came from (None: seeded random data)
    ram_by_region: dict[str, int] = field(default_factory=dict)  # RAM bank -> bytes used
    energy_basis: dict[str, Any] = field(default_factory=dict)  # Mcu.energy_info()
    # loads/stores whose addresses the tracer followed over the whole step (trace/access.py)
    data_accesses: dict[str, int] = field(default_factory=dict)
    placement: Placement | None = None  # the banks as laid out and what found no room
    stack_kept: int = 0  # bytes the layout keeps free for the stack
    reason: str = ""  # why it does not fit, in one line ("" when it fits)
    # the costs were simulated with the buffers that fit no bank in a virtual bank with the
    # data bank's timing: as if the RAM existed
    hypothetical: bool = False
    virtual_bank: Region | None = None
    virtual_bank_bytes: int = 0  # bytes the step put in the virtual bank
    virtual_timing_of: str = ""  # the real bank whose timing the virtual one has
    update_rounding: str = "nearest"  # the weight update's requantization rounding
    hints: list[str] = field(default_factory=list)  # ways to make it fit (not problems)

    # -- derived
    @property
    def peak_ram_bytes(self) -> int:
        return sum(self.ram.values())

    @property
    def flash_bytes(self) -> int:
        return sum(self.flash.values())

    @property
    def latency_ms(self) -> float | None:
        return None if self.cycles is None else self.cycles / self.clock_hz * 1e3

    @property
    def batch_cycles(self) -> float | None:
        if self.cycles is None:
            return None
        return sum(self.sample_cycles) / max(1, len(self.sample_cycles)) * self.batch_size \
            + self.update_cycles

    def biggest_consumers(self, n: int = 3) -> list[tuple[str, int]]:
        return sorted(self.ram.items(), key=lambda kv: -kv[1])[:n]

    @property
    def unplaced(self) -> list[Unplaced]:
        return list(self.placement.unplaced) if self.placement else []

    @property
    def ram_fits(self) -> bool:
        return not self.unplaced and (self.stack_bytes or 0) <= self.stack_kept

    @property
    def ram_shortfall(self) -> int:
        """RAM missing in total (0 when the banks together are big enough, even if no single
        bank holds a buffer)."""
        return self.placement.shortfall_bytes if self.placement else 0

    @property
    def ram_headroom(self) -> int:
        """RAM left over; negative when it does not fit: minus the RAM missing in total,
        else minus the bytes that found no bank (or by which the measured stack overflows
        the space kept for it)."""
        if self.unplaced:
            return -(self.ram_shortfall or self.placement.unplaced_bytes)  # type: ignore
        if self.stack_bytes is not None and self.stack_bytes > self.stack_kept:
            return self.stack_kept - self.stack_bytes
        return self.ram_budget - self.peak_ram_bytes

    def to_dict(self) -> dict[str, Any]:
        clock = self.clock_hz
        d: dict[str, Any] = {
            "model": self.model, "mcu": self.mcu, "board": self.board, "core": self.core,
            "clock_hz": clock, "toolchain": self.toolchain,
            "cycles": None if self.cycles is None else round(self.cycles, 1),
            "latency_ms": self.latency_ms, "energy_mj": self.energy_mj,
            "peak_ram_bytes": self.peak_ram_bytes, "flash_bytes": self.flash_bytes,
            "fits": self.fits, "ram_budget_bytes": self.ram_budget,
            "flash_budget_bytes": self.flash_budget, "ram_region": self.ram_region,
            "ram_headroom_bytes": self.ram_headroom,
            "ram_shortfall_bytes": self.ram_shortfall, "reason": self.reason,
            "flash_headroom_bytes": self.flash_budget - self.flash_bytes,
            "ram": dict(self.ram), "flash": dict(self.flash),
            "ram_by_region": dict(self.ram_by_region),
            "placement": [b.to_dict() for b in self.placement.banks] if self.placement else [],
            "unplaced": [u.to_dict() for u in self.unplaced],
            "unplaced_bytes": sum(u.nbytes for u in self.unplaced),
            "hypothetical": self.hypothetical,
            "virtual_bank_bytes": self.virtual_bank_bytes,
            "virtual_bank": None if self.virtual_bank is None else {
                "name": self.virtual_bank.name, "kind": self.virtual_bank.kind,
                "base": self.virtual_bank.base, "size_bytes": self.virtual_bank.size,
                "timing_of": self.virtual_timing_of},
            "arena_bytes_predicted": self.arena_predicted,
            "arena_bytes_measured": self.arena_measured, "stack_bytes": self.stack_bytes,
            "batch_size": self.batch_size, "lambda_min": self.lambda_min,
            "lambda_max": self.lambda_max, "rounding": self.rounding,
            "update_rounding": self.update_rounding, "hints": self.hints,
            "samples": self.samples, "dataset": self.dataset,
            "per_sample": None,
            "batch": None,
            "rows": [r.to_dict(clock) for r in self.rows],
            "call_overhead_cycles": self.call_overhead_cycles,
            "problems": list(self.problems),
            "assumptions": list(self.assumptions),
            "energy_basis": dict(self.energy_basis),
            "data_accesses": dict(self.data_accesses),
        }
        if self.cycles is not None:
            sc = self.sample_cycles
            d["per_sample"] = {"samples": len(sc), "cycles_min": min(sc),
                               "cycles_mean": sum(sc) / len(sc), "cycles_max": max(sc),
                               "update_share_cycles": self.update_cycles / self.batch_size}
            bc = self.batch_cycles or 0.0
            d["batch"] = {"samples": self.batch_size, "cycles": round(bc, 1),
                          "latency_ms": bc / clock * 1e3,
                          "energy_mj": (self.energy_mj or 0.0) * self.batch_size,
                          "update_cycles": self.update_cycles,
                          "peak_ram_bytes": self.peak_ram_bytes,
                          "flash_bytes": self.flash_bytes, "fits": self.fits,
                          "hypothetical": self.hypothetical}
        return d


# ---------------------------------------------------------------------- memory


def _memory(program: Program, image: ElfImage, mcu: Mcu) -> tuple[dict[str, int],
                                                                   dict[str, int]]:
    """RAM parts (without the stack) and flash parts of a program with its image."""
    sizes = image.section_sizes()
    plan = program.plan
    ram: dict[str, int] = {"kernel .data/.bss": sizes["data"] + sizes["bss"]}
    flash: dict[str, int] = {"code (kernels)": sizes["text"] + sizes["rodata"] + sizes["data"]}
    for b in program.buffers.values():
        size = (b.nbytes + ALIGN - 1) // ALIGN * ALIGN
        if b.region == "sram" and b.name not in plan.offsets:
            part = RAM_PARTS.get(b.kind, RECORDS)
            ram[part] = ram.get(part, 0) + size
            if b.kind not in ZERO_INITIALISED:  # weights and records need initial bytes
                flash["initial trainable state"] = flash.get("initial trainable state",
                                                             0) + size
        elif b.region == "flash":
            flash["frozen weights and records"] = flash.get("frozen weights and records",
                                                            0) + size
    ram["activation/error arena"] = plan.arena_bytes
    return ram, flash


def _by_region(program: Program, image: ElfImage, mcu: Mcu) -> dict[str, int]:
    """Bytes of RAM used per bank (buffers and the image's .data/.bss; the stack is added
    once measured)."""
    out: dict[str, int] = {}
    sizes = image.section_sizes()
    out[mcu.data_region] = sizes["data"] + sizes["bss"]
    arena = mcu.region_at(program.arena[0], max(program.plan.arena_bytes, 1))
    key = arena.name if arena else mcu.data_region
    out[key] = out.get(key, 0) + program.plan.arena_bytes
    for b in program.buffers.values():
        if b.region != "sram" or b.name in program.plan.offsets:
            continue
        r = mcu.region_at(b.addr, max(b.nbytes, 1))
        name = r.name if r else "?"
        out[name] = out.get(name, 0) + ((b.nbytes + ALIGN - 1) // ALIGN * ALIGN)
    return out


def _placement(program: Program, mcu: Mcu, sram: tuple[int, int],
               extra: list[tuple[int, int]], laid_out: bool) -> Placement:
    """The RAM banks as the layout fills them and the buffers no bank has room for.

    The data bank holds the image's .data/.bss and the space kept for the stack, then the
    persistent buffers the layout leaves there and (unless moved) the arena; the other banks
    what the layout moved into them.  When the layout failed, the moves are the layout's own
    (Program._spill) and the largest of what is left in the overflowing data bank are the
    buffers that fit nowhere."""
    plan = program.plan
    data = mcu.data
    main = BankUse(data.name, data.kind, data.size, virtual=data.name == VIRTUAL_BANK)
    lo, hi = sram
    main.add("kernel .data/.bss", lo - data.base if data.contains(lo) else 0)
    main.add("stack reserve", data.end - hi if data.contains(hi, 0) else 0)
    others: list[BankUse] = []
    for b0, _b1 in extra:
        r = mcu.region_at(b0)
        assert r is not None
        others.append(BankUse(r.name, r.kind, r.size, virtual=r.name == VIRTUAL_BANK))

    def bank_of(addr: int | None) -> BankUse:
        for (b0, b1), bank in zip(extra, others, strict=True):
            if addr is not None and b0 <= addr < b1:
                return bank
        return main

    persistent = [b for b in program.buffers.values()
                  if b.region == "sram" and b.name not in plan.offsets]
    if laid_out:
        where: dict[str, int] = {b.name: b.addr for b in persistent}
        arena_at: int | None = program.arena[0]
    else:
        where, arena_at = program._spill(sram, extra, plan)  # what the layout moved
    candidates: list[Unplaced] = []
    for b in persistent:
        label = buffer_label(b.layer, b.kind)
        size = (b.nbytes + ALIGN - 1) // ALIGN * ALIGN
        bank = bank_of(where.get(b.name))
        bank.add(label, size)
        if bank is main:
            candidates.append(Unplaced(b.name, label, b.kind, size))
    if plan.arena_bytes:
        bank = bank_of(arena_at)
        bank.add(ARENA, plan.arena_bytes)
        if bank is main:
            candidates.append(Unplaced("arena", ARENA, "arena", plan.arena_bytes))
    unplaced = [] if laid_out else unplaced_in(main, candidates, others)
    return Placement([main, *others], unplaced)


def _ram_reasons(report: StepReport, name: str) -> tuple[list[str], str]:
    """Why the step's RAM does not fit: the problems (full) and the reason in one line."""
    p = report.placement
    assert p is not None and p.unplaced
    big = ", ".join(f"{part} {n:,} B" for part, n in report.biggest_consumers())
    total = (f"RAM short by {p.shortfall_bytes:,} B: {name} needs {p.need_bytes:,} B "
             f"(with {p.banks[0].contents.get('stack reserve', 0):,} B kept for the stack), "
             "the banks "
             f"({report.ram_region}) have {p.capacity_bytes:,} B; biggest: {big}")
    shown = p.unplaced[:4]
    what = ", ".join(f"{u.label} ({u.name}, {kb(u.nbytes)} = {u.nbytes:,} B)" for u in shown)
    if len(p.unplaced) > len(shown):
        rest = p.unplaced[len(shown):]
        what += f" and {len(rest)} more ({sum(u.nbytes for u in rest):,} B)"
    stranded = [u for u in p.unplaced if u.fits_in]
    verb = "fits" if len(p.unplaced) == 1 else "fit"
    head = f"{what} {verb} no RAM bank"
    if stranded:  # the layout left it in the data bank although a bank had room
        head = (f"{what} {verb} no RAM bank the layout chose ("
                + "; ".join(f"{u.name} would fit {', '.join(u.fits_in)}" for u in stranded)
                + ")")
    banks = "; ".join(b.describe() for b in p.banks)
    u = max(p.unplaced, key=lambda u: u.nbytes)
    big_enough = [b.name for b in p.banks if b.size - b.contents.get("stack reserve", 0)
                  - b.contents.get("kernel .data/.bss", 0) >= u.nbytes]
    head += (f" (no bank is {kb(u.nbytes)} big)" if not big_enough else
             f" (only {', '.join(big_enough)} {'is' if len(big_enough) == 1 else 'are'} "
             f"{kb(u.nbytes)} or bigger)")
    if p.shortfall_bytes:
        full = f"{total}. Left without a bank: {head}: {banks}"
    else:
        free = sum(max(b.free, 0) for b in p.banks)
        full = (f"{head}: {banks} (the banks have {free:,} B free in all, but not in one "
                "piece)")
    most = max(p.banks, key=lambda b: b.free)
    if p.shortfall_bytes:
        short = (f"RAM short by {p.shortfall_bytes:,} B (needs {kb(p.need_bytes)} with "
                 f"the stack reserve, has "
                 f"{kb(p.capacity_bytes)}; biggest: {report.biggest_consumers(1)[0][0]} "
                 f"{kb(report.biggest_consumers(1)[0][1])})")
    elif len(p.unplaced) == 1:
        short = (f"{u.label} ({kb(u.nbytes)}) fits no RAM bank (most free: {most.name} "
                 f"{kb(max(most.free, 0))})")
    else:
        short = (f"{len(p.unplaced)} buffers ({kb(p.unplaced_bytes)}) fit no RAM bank, the "
                 f"largest {u.label} ({kb(u.nbytes)}); most free: {most.name} "
                 f"{kb(max(most.free, 0))}")
    return [full], short


def _pairs_hint(spec: ModelSpec) -> tuple[str, str] | None:
    """A way to need less RAM when trainable FC layers keep int32 gradient accumulators:
    their batch's input/error pairs instead: (the problem line, the short reason), or
    None."""
    if spec.train.fc_gradient != "accumulate":
        return None
    fcs = [spec.layers[i] for i in spec.trainable_layers if spec.layers[i].type == "fc"]
    acc = sum(4 * L.n_structures * L.struct_size for L in fcs)
    per = sum(L.n_structures + L.struct_size + 8 for L in fcs)
    if not fcs or per * 8 >= acc:
        return None
    names = ", ".join(L.name for L in fcs)
    what = f"{per:,} B per sample of the batch instead of {acc:,} B of int32 accumulators"
    return (f"hint: --fc-gradient pairs keeps the gradients of {names} as the mini-batch's "
            f"inputs and errors, {what} (the same training, more work in the update)",
            f"--fc-gradient pairs could help: {what}")


def _virtual_mcu(mcu: Mcu, nbytes: int) -> Mcu:
    """A copy of `mcu` with one more RAM bank of at least `nbytes` (whole pages) and the
    data bank's kind (RAM banks have no wait states in the timing model, so it costs what
    the data bank costs), mapped where it overlaps none of the MCU's regions and none of the
    pages the emulator may use for its return trampoline.  The catalog's MCU is not
    changed."""
    from mcusim.machine import _MAGIC_CANDIDATES

    size = max(PAGE, (nbytes + PAGE - 1) // PAGE * PAGE)
    kind = mcu.data.kind if mcu.data.kind in ("sram", "dtcm") else "sram"
    taken = [(r.base, r.end) for r in mcu.regions] + [(m, m + PAGE) for m in _MAGIC_CANDIDATES]
    for base in VIRTUAL_BASES:
        end = base + size
        if end <= 0xE000_0000 and all(end <= lo or base >= hi for lo, hi in taken):
            bank = Region(VIRTUAL_BANK, kind, base, size,
                          f"hypothetical bank with the timing of {mcu.data_region}")
            return dataclasses.replace(mcu, regions=(*mcu.regions, bank))
    raise ModelError(f"no free address range of {size} bytes for a virtual RAM bank on "
                     f"{mcu.name}")


def _hypothetical_layout(program: Program, image: ElfImage, mcu: Mcu, nbytes: int,
                         need: int) -> Machine:
    """A machine for `mcu` plus a virtual bank, with `program` laid out on it: the bank
    starts at `nbytes` (what fit no real bank) and grows until the layout succeeds."""
    size = nbytes
    while True:
        vmcu = _virtual_mcu(mcu, size)
        _release_emulators()  # the previous try's, before another exists
        machine = Machine(vmcu, image, check_alignment=Machine.kernel_alignment_checks())
        sram, flash, extra = machine_layout(machine)
        try:
            program.layout(sram, flash, extra)
            return machine
        except ModelError:
            if size >= need:
                raise
            size = min(need, size + max(size, PAGE))


def _release_emulators() -> None:
    """Free the emulators nothing refers to any more, before another is made: each Unicorn
    instance reserves about 1 GiB of address space for translated code, and a Machine holds
    reference cycles (its hooks), so an unused one lives until the cycle collector runs.
    Two at once do not fit a 2 GiB address-space limit."""
    gc.collect()


def call_overhead(table: CostTable, nargs: int) -> int:
    """Cycles a C driver spends calling one kernel: each register argument loaded from a
    constant table (PC-relative LDR), stack arguments loaded and stored, then BL."""
    load = table.cls("load").issue_cycles(0)
    store = table.cls("store").issue_cycles(0)
    call = table.cls("call")
    if call.taken == "P":
        taken = int(table.param("pipeline_refill"))
    else:
        taken = int(call.taken)
    return min(nargs, 4) * load + max(nargs - 4, 0) * (load + store) + \
        call.issue_cycles(0) + taken


# ---------------------------------------------------------------------- simulation


class _Recorder(DeviceExecutor):
    """The device executor, also keeping energy, calls and the stack high-water mark."""

    def __init__(self, program: Program, machine: Machine, image: dict[str, bytes],
                 on_call=None) -> None:
        super().__init__(program, machine, image)
        self.on_call = on_call  # (machine, CallResult, layer, phase): the profiler's hook
        self.energy: dict[tuple[str, str], float] = {}
        self.calls: dict[tuple[str, str], int] = {}
        self.overhead: dict[str, int] = {}
        self.stack = 0
        self.table = machine.timing.table
        self.data_accesses: dict[str, int] = {}

    def call(self, op) -> None:  # type: ignore[override]
        r = self.execute(op)  # a fault: InternalError naming kernel and layer
        t = self.machine.cycles(r)
        key = (op.layer, op.phase)
        self.cycles[key] = self.cycles.get(key, 0) + t.cycles
        self.energy[key] = self.energy.get(key, 0.0) + t.energy_mj
        self.calls[key] = self.calls.get(key, 0) + 1
        self.overhead[op.phase] = self.overhead.get(op.phase, 0) + \
            call_overhead(self.table, len(op.iargs))
        self.stack = max(self.stack, r.stack_bytes)
        self.unclassified.update(t.unclassified)
        for k, v in t.data_accesses.items():
            self.data_accesses[k] = self.data_accesses.get(k, 0) + v
        if self.on_call is not None:
            self.on_call(self.machine, r, op.layer, op.phase)

    def snapshot(self) -> tuple[dict, dict, dict, dict]:
        return dict(self.cycles), dict(self.energy), dict(self.calls), dict(self.overhead)


def _delta(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def resolve_model(model: str | Path | ModelSpec) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else load_model(model)


def simulate_step(model: str | Path | ModelSpec, mcu: str | Mcu, *,
                  toolchain: Toolchain | None = None, catalog: Catalog | None = None,
                  seed: int = 0, run: bool = True, data=None, on_call=None,
                  call_tree: bool = False, hypothetical: bool = False,
                  elf: str | Path | None = None) -> StepReport:
    """One mini-batch of training of `model` on `mcu` (see the module docstring).

    With run=False only the memory is planned and checked (no emulation; the stack is not
    measured then).  `data` (mcusim.fqt.datasets.Dataset): the samples come from its
    training set (a seeded draw) instead of seeded random inputs.  When the buffers do not
    fit the MCU's RAM banks, `report.problems` and `report.placement` say which and why;
    with `hypothetical`, the step is then still simulated with those buffers in a virtual
    bank with the data bank's timing, and the report's costs are marked hypothetical (it
    still does not fit).  `elf`: a kernel image already linked for this MCU by `toolchain`
    (a sweep's, shipped to its worker) instead of building one here."""
    spec = resolve_model(model)
    if isinstance(mcu, str):
        mcu = (catalog or load_catalog()).mcu(mcu)
    tc = toolchain or find_toolchain()
    image = ElfImage.open(elf if elf is not None else Builder(tc).build(mcu.core, [mcu])[0].elf)
    _release_emulators()  # e.g. the previous MCU's, in a budget of several
    machine = Machine(mcu, image, check_alignment=Machine.kernel_alignment_checks())
    if call_tree:
        machine.enable_call_tree()
    table = machine.timing.table
    # sizes first: whether it fits needs no weights (see the module docstring)
    program = Program.build(spec, seed=seed, sizes_only=True)
    tr = spec.train
    report = StepReport(
        model=spec.name, mcu=mcu.name, board=mcu.board, core=mcu.core.key,
        clock_hz=mcu.clock_hz, toolchain=f"{tc.kind} {tc.version}",
        batch_size=tr.batch_size, lambda_min=tr.lambda_min if tr.partial else 1.0,
        lambda_max=tr.lambda_max if tr.partial else 1.0, rounding=tr.rounding,
        update_rounding=tr.update_rounding, fits=False,
        ram={}, flash={}, ram_budget=mcu.data.size, flash_budget=mcu.flash.size,
        ram_region=mcu.data_region, arena_predicted=0, energy_basis=mcu.energy_info())
    sram_span, flash_span, extra = machine_layout(machine)
    report.ram_budget = mcu.data.size + sum(hi - lo for lo, hi in extra)
    report.ram_region = " + ".join([mcu.data_region] + [
        r.name for r in mcu.regions if any(r.base == lo for lo, _hi in extra)])
    report.stack_kept = machine.stack_top - machine.stack_limit
    layout_error = ""
    try:
        program.layout(sram_span, flash_span, extra)
        laid_out = True
    except ModelError as e:
        laid_out = False
        layout_error = str(e)
        if getattr(program, "plan", None) is None:  # (layout plans before it places)
            from mcusim.fqt.planner import plan_memory

            program.plan = plan_memory(program)
    report.ram, report.flash = _memory(program, image, mcu)
    report.placement = _placement(program, mcu, sram_span, extra, laid_out)
    if laid_out:
        report.ram_by_region = _by_region(program, image, mcu)
    report.arena_predicted = program.plan.arena_bytes
    report.assumptions = _assumptions(machine, table)
    if data is not None:
        report.assumptions[1] = (f"inputs are {tr.batch_size} samples of the {data.name} "
                                 "training set (seeded draw); data-dependent cost is shown as "
                                 "min/mean/max over them")
        report.dataset = data.name
    reasons: list[str] = []
    if report.unplaced:
        report.problems, short = _ram_reasons(report, spec.name)
        reasons.append(short)
        hint = _pairs_hint(spec)
        if hint:
            report.hints.append(hint[0])
            reasons.append(hint[1])
    flash_short = report.flash_bytes - mcu.flash.size
    if flash_short > 0:
        report.problems.append(
            f"flash short by {flash_short:,} B: {spec.name} needs {report.flash_bytes:,} B "
            f"({', '.join(f'{k} {v:,} B' for k, v in report.flash.items())}), "
            f"{mcu.flash.name} has {mcu.flash.size:,} B")
        reasons.append(f"flash short by {flash_short:,} B (needs {kb(report.flash_bytes)}, "
                       f"has {kb(mcu.flash.size)})")
    if not laid_out and not report.problems:  # no reason found above: the layout's own
        report.problems.append(layout_error)
        reasons.append(layout_error)
    report.reason = "; ".join(reasons)
    hypo = hypothetical and run and not laid_out and bool(report.unplaced) \
        and flash_short <= 0
    if hypo:
        too_big = _too_big_to_simulate(spec, program, report.placement)  # type: ignore
        if too_big:
            hypo = False
            report.assumptions.insert(0, f"no hypothetical cost: {too_big}")
    if not hypo and (not laid_out or not run or report.problems):
        report.fits = not report.problems and laid_out
        report.ram["stack (not measured)"] = 0
        return report
    # it runs: now the real program, laid out as the sizes-only one was
    program = Program.build(spec, seed=seed)
    if hypo:
        machine = None  # type: ignore[assignment]  # one emulator at a time (see above)
        try:  # as if the RAM existed: what fit no bank goes into a virtual one
            machine = _hypothetical_layout(program, image, mcu,
                                           report.placement.unplaced_bytes,  # type: ignore
                                           report.placement.need_bytes)  # type: ignore
        except ModelError as e:  # e.g. no free address range for it: no cost then
            report.assumptions.insert(0, f"no hypothetical cost: {e}")
            report.fits = False
            report.ram["stack (not measured)"] = 0
            return report
    else:
        program.layout(sram_span, flash_span, extra)
    if hypo:
        if call_tree:
            machine.enable_call_tree()
        vbank = machine.mcu.region(VIRTUAL_BANK)
        report.hypothetical = True
        report.virtual_bank = vbank
        report.virtual_timing_of = mcu.data_region
        report.ram_by_region = _by_region(program, image, machine.mcu)
        report.virtual_bank_bytes = report.ram_by_region.get(VIRTUAL_BANK, 0)
        report.assumptions.insert(0, (
            f"hypothetical: as if RAM existed (+{kb(report.virtual_bank_bytes)} virtual "
            f"bank): the costs were simulated with the buffers that fit no RAM bank of "
            f"{mcu.name} in a virtual bank at 0x{vbank.base:08x} with the timing of "
            f"{mcu.data_region} (RAM banks have no wait states in the timing model); the "
            "step still does not fit"))

    twin_ex = TwinExecutor(program)
    Trainer(program, twin_ex).initialise()
    bytes0 = {n: twin_ex.read(b.addr, b.nbytes) for n, b in program.buffers.items()}
    dev = _Recorder(program, machine, bytes0, on_call)
    trainer = Trainer(program, dev)
    rng = np.random.default_rng(seed + 11)
    n_in = int(np.prod(spec.input_shape))
    if data is not None:
        from mcusim.fqt.quant import quantize_inputs

        pick = rng.permutation(len(data.y_train))[:tr.batch_size]
        real = (quantize_inputs(data.x_train[pick], spec.input_range),
                np.asarray(data.y_train)[pick])
    lo, hi = program.arena
    per_sample: list[tuple[dict, dict, dict, dict]] = []
    highest = lo
    for _ in range(tr.batch_size):
        machine.write(lo, PAINT.to_bytes(4, "little") * ((hi - lo) // 4))
        before = dev.snapshot()
        k = len(per_sample)
        if data is not None and k < len(real[1]):
            trainer.set_input(real[0][k], int(real[1][k]))
        else:
            trainer.set_input(rng.integers(0, 256, n_in, dtype=np.uint8),
                              int(rng.integers(0, spec.classes)))
        for g in PER_SAMPLE_GROUPS:
            trainer._run(g)
        trainer.samples += 1
        highest = max(highest, _highest_written(machine, lo, hi))
        per_sample.append(tuple(_delta(a, b) for a, b in zip(dev.snapshot(), before,
                                                             strict=True)))
    machine.write(lo, PAINT.to_bytes(4, "little") * ((hi - lo) // 4))
    before = dev.snapshot()
    for g in PER_BATCH_GROUPS:
        trainer._run(g)
    highest = max(highest, _highest_written(machine, lo, hi))
    update = tuple(_delta(a, b) for a, b in zip(dev.snapshot(), before, strict=True))

    report.arena_measured = highest - lo
    report.stack_bytes = dev.stack
    report.ram["stack (measured)"] = dev.stack
    report.ram_by_region[mcu.data_region] = report.ram_by_region.get(mcu.data_region,
                                                                     0) + dev.stack
    # the layout placed every buffer in a bank with room, so the step fits when the
    # measured stack stays within the space kept for it (and nothing is hypothetical)
    stack_room = machine.stack_top - machine.stack_limit
    report.fits = dev.stack <= stack_room and report.flash_bytes <= mcu.flash.size \
        and not report.hypothetical
    if dev.stack > stack_room:
        report.problems.append(
            f"stack: {dev.stack:,} B measured, {stack_room:,} B kept for it at the top of "
            f"{mcu.data_region}")
        report.reason = "; ".join(x for x in (report.reason, f"stack {dev.stack:,} B "
                                  f"measured, {stack_room:,} B kept") if x)
    report.samples = len(per_sample)
    _rows(report, per_sample, update, mcu)
    _work(report, program)
    if dev.unclassified:
        report.assumptions.append("instructions counted as 1 cycle (unclassified): "
                                  + ", ".join(sorted(dev.unclassified)[:6]))
    report.data_accesses = dict(dev.data_accesses)
    line = data_access_note(report.data_accesses)
    if line:
        report.assumptions.append(line)
    return report


def data_access_note(acc: dict[str, int]) -> str:
    """One line on the address-dependent costs of a run (empty when none were traced)."""
    done, missed = acc.get("followed", 0), acc.get("not_followed", 0)
    if not done + missed:
        return ""
    return (f"unaligned and bank-conflict costs from followed addresses: "
            f"{done:,} of {done + missed:,} loads/stores followed "
            f"({100 * done / (done + missed):.1f} %; the others are taken aligned), "
            f"{acc.get('unaligned', 0):,} unaligned, {acc.get('bank_conflicts', 0):,} "
            f"paired loads in one bank: {acc.get('cycles', 0):,} cycles")


def _too_big_to_simulate(spec: ModelSpec, program: Program, placement: Placement) -> str:
    """Why the hypothetical cost of a step that does not fit is not simulated ("" when it
    is): more RAM or work than HYPOTHETICAL_MAX_BYTES / _MACS / _CALLS."""
    need = placement.need_bytes
    if need > HYPOTHETICAL_MAX_BYTES:
        return (f"the step needs {need / 2**20:,.1f} MiB of RAM, more than the "
                f"{HYPOTHETICAL_MAX_BYTES >> 20} MiB mcusim simulates in a virtual bank")
    # forward, and about twice that backward (errors and weight gradients), per sample
    work = 3 * spec.macs * spec.train.batch_size
    if work > HYPOTHETICAL_MAX_MACS:
        return (f"a mini-batch takes about {work:,} multiply-accumulates, more than the "
                f"{HYPOTHETICAL_MAX_MACS:,} mcusim emulates for a model that does not fit")
    calls = spec.train.batch_size * sum(len(program.ops.get(g, [])) for g in
                                        PER_SAMPLE_GROUPS) + \
        sum(len(program.ops.get(g, [])) for g in PER_BATCH_GROUPS)
    if calls > HYPOTHETICAL_MAX_CALLS:
        return (f"a mini-batch makes {calls:,} kernel calls, more than the "
                f"{HYPOTHETICAL_MAX_CALLS:,} mcusim emulates for a model that does not fit")
    return ""


def _highest_written(machine: Machine, lo: int, hi: int) -> int:
    words = np.frombuffer(machine.read(lo, hi - lo), dtype="<u4")
    changed = np.flatnonzero(words != PAINT)
    return lo if changed.size == 0 else lo + 4 * int(changed[-1]) + 4


# kernels whose work is the layer's multiply-accumulates (at λ = 1), by name ending
_MAC_KERNELS = ("_forward", "_backward_error", "_backward_weights")
_WEIGHTED = ("fqt_conv2d_", "fqt_dwconv2d_", "fqt_fc_")


def _work(report: StepReport, program: Program) -> None:
    """MACs per forward / backward row and parameters per update row, from the kernel calls
    the program makes (so a frozen layer's backward counts only what it computes)."""
    spec = program.spec
    layers = {L.name: L for L in spec.layers}
    macs: dict[tuple[str, str], int] = {}
    for group in PER_SAMPLE_GROUPS:
        for op in program.ops.get(group, []):
            L = layers.get(op.layer)
            if L is None or not op.kernel.startswith(_WEIGHTED) or \
                    not op.kernel.endswith(_MAC_KERNELS):
                continue
            key = (op.layer, op.phase)
            macs[key] = macs.get(key, 0) + L.macs
    for row in report.rows:
        row.macs = macs.get((row.layer, row.phase), 0)
        if row.phase == "update" and row.layer in layers and row.update_cycles:
            L = layers[row.layer]
            if L.has_weights and L.trainable:
                row.params = L.n_params


def _rows(report: StepReport, per_sample: list[tuple[dict, dict, dict, dict]],
          update: tuple[dict, dict, dict, dict], mcu: Mcu) -> None:
    b = report.batch_size
    keys: list[tuple[str, str]] = []
    for s in (*per_sample, update):
        for k in s[0]:
            if k not in keys:
                keys.append(k)
    rows: list[Row] = []
    for key in keys:
        values = [s[0].get(key, 0) for s in per_sample]
        upd = update[0].get(key, 0) / b
        energy = sum(s[1].get(key, 0.0) for s in per_sample) / len(per_sample) + \
            update[1].get(key, 0.0) / b
        calls = sum(s[2].get(key, 0) for s in per_sample) / len(per_sample) + \
            update[2].get(key, 0) / b
        rows.append(Row(key[0], key[1], sum(values) / len(values) + upd, min(values) + upd,
                        max(values) + upd, calls, energy,
                        update_cycles=float(update[0].get(key, 0))))
    # the driver's calls: modelled, per phase, shown as their own rows
    joules_per_cycle = mcu.voltage_v * mcu.run_current_ma / mcu.clock_hz  # mJ per cycle
    total_calls = 0.0
    total_overhead = 0.0
    for phase in PHASES:
        per = [s[3].get(phase, 0) for s in per_sample]
        upd = update[3].get(phase, 0) / b
        if not any(per) and not upd:
            continue
        mean = sum(per) / len(per) + upd
        calls = sum(r.calls for r in rows if r.phase == phase)
        total_calls += calls
        total_overhead += mean
        rows.append(Row(OVERHEAD_LAYER, phase, mean, min(per) + upd, max(per) + upd, calls,
                        mean * joules_per_cycle))
    order = {p: i for i, p in enumerate(PHASES)}
    rows.sort(key=lambda r: (order.get(r.phase, 9), r.layer == OVERHEAD_LAYER))
    report.rows = rows
    report.call_overhead_cycles = round(total_overhead / total_calls) if total_calls else 0
    report.sample_cycles = [
        sum(s[0].values()) + sum(s[3].values()) for s in per_sample]
    report.update_cycles = sum(update[0].values()) + sum(update[3].values())
    report.cycles = sum(r.cycles for r in rows)
    report.energy_mj = sum(r.energy_mj for r in rows)
    report.update_energy_mj = sum(update[1].values()) + \
        sum(update[3].values()) * joules_per_cycle


def _assumptions(machine: Machine, table: CostTable) -> list[str]:
    out = [
        "per-sample figures = forward + loss + backward + per-sample range bookkeeping, plus "
        "the mini-batch's weight update divided by the batch size",
        "inputs and labels are seeded random data (data-dependent cost, e.g. partial "
        "updates, is shown as min/mean/max over the samples)",
        "kernel-call overhead is modelled, not traced: a C driver loading each argument from "
        "a constant table and calling with BL (mcusim.analyze.call_overhead)",
        "RAM budget = the data region the layout uses; code runs from "
        f"{machine.mcu.code_region}",
    ]
    out += machine.timing.describe()["assumptions"]
    return out


def require_fit(spec: ModelSpec, mcu: Mcu, toolchain: Toolchain, what: str,
                elf: str | Path | None = None) -> None:
    """ModelError (one line, exit 2) when a training step of `spec` does not fit `mcu`:
    decided from the sizes alone (simulate_step with run=False), before a command that
    runs every step (`what`: "train", "verify") allocates a weight."""
    report = simulate_step(spec, mcu, toolchain=toolchain, run=False, elf=elf)
    if not report.fits:
        raise ModelError(f"{what}: {spec.name} does not fit {mcu.name}: "
                         f"{report.reason or '; '.join(report.problems)} (`mcusim budget` "
                         "shows the memory in detail)")
