"""Simulation speed, measured side by side in one run on the same binaries.

For each core, the FQT kernel image of one paper board runs the same uint8 fully
connected layer three ways:
  untraced   a bare Unicorn engine with the same memory contents and no hook at all
  traced     Machine.call (native block/edge hook, flash cache model, divide hooks, stack
             painting, count read-out) followed by Machine.cycles (the cycle model)
and the report gives MIPS of each (best of N repeats) and traced/untraced.

A second row per core runs the same layer with its weights in flash on a part whose flash
data reads are modelled (the frozen-weights case, `mcusim run --flash-data`): its ratio
is the cost of the data-address mechanism (the memory-read hook over flash and the
IT-state guard of mcusim/trace) on top of the block tracing.  It comes first, so the plain
row stays the core's figure (`cores` in `bench --json`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import unicorn
from unicorn import arm_const

from mcusim.catalog import Catalog, Mcu
from mcusim.demo import PAPER_BOARDS, sample_fc_layer
from mcusim.elf import ElfImage
from mcusim.errors import CatalogError
from mcusim.machine import Machine, new_engine
from mcusim.toolchain import Builder, Toolchain

FUNCTION = "fqt_fc_forward"
# per core, a part whose flash data reads are modelled (a data cache model in mcus.toml)
FLASH_DATA_MCUS = {"m0plus": "RP2040", "m4": "STM32F407", "m7": "STM32F746"}


@dataclass(frozen=True)
class BenchRow:
    mcu: str
    core: str
    workload: str
    instructions: int
    cycles: int
    untraced_mips: float
    traced_mips: float
    ratio: float
    tracer: str
    repeats: int
    flash_data: bool = False  # weights in flash, flash data reads modelled

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _bare_engine(machine: Machine) -> unicorn.Uc:
    """A hook-free engine with the same memory contents as `machine`."""
    mcu = machine.mcu
    cpu = getattr(arm_const, f"UC_CPU_ARM_{mcu.core.unicorn_cpu}")
    uc = new_engine(cpu)
    for r in mcu.regions:
        uc.mem_map(r.base, r.size, unicorn.UC_PROT_ALL)
        uc.mem_write(r.base, bytes(machine.uc.mem_read(r.base, r.size)))
    uc.mem_map(machine.magic, 0x1000, unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)
    uc.mem_write(machine.magic, b"\xfe\xe7" * 0x800)
    return uc


def _untraced_call(uc: unicorn.Uc, machine: Machine, entry: int, args: tuple[int, ...]) -> float:
    sp = (machine.stack_top - 4 * max(0, len(args) - 4)) & ~7
    for i, a in enumerate(args[4:]):
        uc.mem_write(sp + 4 * i, (a & 0xFFFFFFFF).to_bytes(4, "little"))
    for i, a in enumerate(args[:4]):
        uc.reg_write(arm_const.UC_ARM_REG_R0 + i, a & 0xFFFFFFFF)
    uc.reg_write(arm_const.UC_ARM_REG_SP, sp)
    uc.reg_write(arm_const.UC_ARM_REG_LR, machine.magic | 1)
    t = time.perf_counter()
    uc.emu_start(entry, machine.magic)
    return time.perf_counter() - t


def bench_mcu(mcu: Mcu, elf: str, repeats: int = 5, in_features: int = 1024,
              out_features: int = 128, flash_data: bool = False) -> BenchRow:
    """`flash_data`: the weights in flash (the end of the part's flash), read through the
    modelled flash data path."""
    machine = Machine(mcu, ElfImage.open(elf), flash_data=flash_data,
                      check_alignment=Machine.kernel_alignment_checks())
    x, w, b, q = sample_fc_layer(in_features, out_features)
    if flash_data:
        weights = (mcu.flash.end - w.nbytes) & ~7
        machine.write(weights, w)
    else:
        weights = machine.put(w)
    args = (machine.put(x), weights, machine.put(b), machine.alloc(out_features),
            in_features, out_features, machine.put(q.pack()), 0)
    first = machine.call(FUNCTION, *args)  # translate the code once; warm the caches
    report = machine.cycles(first)
    uc = _bare_engine(machine)
    entry = machine.image.function(FUNCTION).address | 1
    _untraced_call(uc, machine, entry, args)  # translate once, like the traced engine
    best_u = best_t = float("inf")
    for _ in range(repeats):
        best_u = min(best_u, _untraced_call(uc, machine, entry, args))
        t = time.perf_counter()
        res = machine.call(FUNCTION, *args)
        report = machine.cycles(res)
        best_t = min(best_t, time.perf_counter() - t)
    n = first.instructions
    u, tr = n / best_u / 1e6, n / best_t / 1e6
    workload = f"{FUNCTION} {in_features}->{out_features}"
    if flash_data:
        workload += ", weights in flash (flash data accounted)"
    return BenchRow(mcu=mcu.name, core=mcu.core.key, workload=workload, instructions=n,
                    cycles=report.cycles, untraced_mips=round(u, 1), traced_mips=round(tr, 1),
                    ratio=round(tr / u, 3), tracer=machine.counter.kind, repeats=repeats,
                    flash_data=flash_data)


def _find(catalog: Catalog, name: str) -> Mcu | None:
    try:
        return catalog.mcu(name)
    except CatalogError:
        return None


def run_bench(catalog: Catalog, toolchain: Toolchain, repeats: int = 5,
              mcus: tuple[str, ...] = PAPER_BOARDS,
              progress: Callable[[str], None] | None = None,
              flash_data: bool = True) -> list[BenchRow]:
    builder = Builder(toolchain, progress=progress)
    rows = []
    for name in mcus:
        mcu = catalog.mcu(name)
        elf = builder.build(mcu.core, [mcu])[0].elf
        if progress:
            progress(f"bench {mcu.name} ({mcu.core.name})")
        rows.append(bench_mcu(mcu, elf, repeats))
        fd_name = FLASH_DATA_MCUS.get(mcu.core.key) if flash_data else None
        fd = _find(catalog, fd_name) if fd_name else None
        if fd is not None:
            if progress:
                progress(f"bench {fd.name} ({fd.core.name}), weights in flash")
            rows.append(bench_mcu(fd, builder.build(fd.core, [fd])[0].elf, repeats,
                                  flash_data=True))
    return rows
