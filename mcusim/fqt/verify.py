"""`mcusim verify`: the same training steps on the emulated MCU and in the numpy twin,
compared byte for byte after every phase."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from mcusim.catalog import Mcu
from mcusim.elf import ElfImage
from mcusim.fqt.network import (
    Buffer,
    DeviceExecutor,
    Program,
    Trainer,
    TwinExecutor,
    machine_layout,
)
from mcusim.machine import Machine
from mcusim.model.schema import ModelSpec
from mcusim.toolchain import Builder, Toolchain

GROUPS = ("forward", "loss", "backward", "commit")


@dataclass
class Mismatch:
    step: int
    phase: str
    layer: str
    tensor: str
    index: str
    twin: str
    device: str


@dataclass
class VerifyReport:
    model: str
    mcu: str
    core: str
    toolchain: str
    steps: int
    updates: int
    batch_size: int
    partial: bool
    rounding: str
    bit_exact: bool
    buffers_compared: int
    bytes_compared: int
    first_mismatch: Mismatch | None
    device_instructions: int
    instructions_by_phase: dict[str, int] = field(default_factory=dict)
    cycles_by_phase: dict[str, int] = field(default_factory=dict)
    unclassified_instructions: list[str] = field(default_factory=list)
    wall_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _decode(b: Buffer, raw_t: bytes, raw_d: bytes) -> tuple[str, str, str]:
    dt = b.data.dtype
    at = np.frombuffer(raw_t, dt)
    ad = np.frombuffer(raw_d, dt)
    if dt.names:
        for f in dt.names:
            if at[f].tobytes() != ad[f].tobytes():
                return f, repr(at[f][0].item()), repr(ad[f][0].item())
        return "?", "", ""
    bits = f"u{dt.itemsize}"  # compare bit patterns (float -0.0 vs 0.0, NaN)
    idx = int(np.flatnonzero(at.view(bits) != ad.view(bits))[0])
    return str(idx), repr(at[idx].item()), repr(ad[idx].item())


def _live_after(program: Program, group: str, k: int) -> set[str]:
    """Arena tensors in use at call k of `group` (its index in the step sequence)."""
    from mcusim.fqt.planner import STEP_GROUPS

    index = 0
    for g in STEP_GROUPS:
        if g == group:
            break
        index += len(program.ops.get(g, []))
    index += k
    return {n for n, lt in program.plan.lifetimes.items() if lt.first <= index <= lt.last}


def compare(program: Program, a, b, after: tuple[str, int] | None = None
            ) -> tuple[Buffer, str, str, str] | None:
    """The first buffer whose bytes differ between executors a and b.  After call k of a
    group, arena tensors that are not live then are skipped: their bytes may belong to
    another tensor by now (the memory planner reuses them)."""
    live = _live_after(program, *after) if after else None
    for buf in program.buffers.values():
        if not buf.compare or buf.region == "host":
            continue
        if live is not None and buf.name in program.plan.offsets and buf.name not in live:
            continue
        ra, rb = a.read(buf.addr, buf.nbytes), b.read(buf.addr, buf.nbytes)
        if ra != rb:
            return (buf, *_decode(buf, ra, rb))
    return None


def run_verify(spec: ModelSpec, mcu: Mcu, toolchain: Toolchain, steps: int | None = None,
               seed: int = 0, progress: Callable[[int, int], None] | None = None
               ) -> VerifyReport:
    from mcusim.analyze import require_fit

    t0 = time.perf_counter()
    require_fit(spec, mcu, toolchain, "verify")
    build = Builder(toolchain).build(mcu.core, [mcu])[0]
    machine = Machine(mcu, ElfImage.open(build.elf))
    program = Program.build(spec, seed=seed)
    program.layout(*machine_layout(machine))
    tw_ex = TwinExecutor(program)
    tw = Trainer(program, tw_ex)
    tw.initialise()
    image = {n: tw_ex.read(b.addr, b.nbytes) for n, b in program.buffers.items()}
    dev_ex = DeviceExecutor(program, machine, image)
    dev = Trainer(program, dev_ex)
    steps = steps if steps is not None else 2 * spec.train.batch_size
    rng = np.random.default_rng(seed + 7)
    n_in = int(np.prod(spec.input_shape))
    t_twin = t_dev = 0.0
    mismatch: Mismatch | None = None
    updates = 0
    bufs = [b for b in program.buffers.values() if b.compare and b.region != "host"]
    t_setup = time.perf_counter() - t0
    for step in range(steps):
        x = rng.integers(0, 256, n_in, dtype=np.uint8)
        label = int(rng.integers(0, spec.classes))
        groups = list(GROUPS)
        if (step + 1) % spec.train.batch_size == 0:
            groups += ["update", "refresh"]
            updates += 1
        for tr in (tw, dev):
            tr.set_input(x, label)
        for g in groups:
            # call by call: with reused arena bytes a wrong tensor is caught (and named)
            # before a later tensor takes over its bytes
            for k in range(len(program.ops.get(g, []))):
                t = time.perf_counter()
                tw.run_op(g, k)
                t_twin += time.perf_counter() - t
                t = time.perf_counter()
                dev.run_op(g, k)
                t_dev += time.perf_counter() - t
                bad = compare(program, tw_ex, dev_ex, (g, k))
                if bad:
                    buf, index, vt, vd = bad
                    mismatch = Mismatch(step, g, buf.layer, buf.name, index, vt, vd)
                    break
            if mismatch:
                break
        tw.samples += 1
        dev.samples += 1
        if progress:
            progress(step + 1, steps)
        if mismatch:
            break
    by_phase: dict[str, int] = {}
    for (_, phase, _), n in dev_ex.instructions.items():
        by_phase[phase] = by_phase.get(phase, 0) + n
    cycles_by_phase: dict[str, int] = {}
    for (_, phase, _), n in dev_ex.cycles.items():
        cycles_by_phase[phase] = cycles_by_phase.get(phase, 0) + n
    return VerifyReport(
        model=spec.name, mcu=mcu.name, core=mcu.core.key, toolchain=toolchain.kind,
        steps=steps if mismatch is None else mismatch.step + 1, updates=updates,
        batch_size=spec.train.batch_size, partial=spec.train.partial,
        rounding=spec.train.rounding, bit_exact=mismatch is None,
        buffers_compared=len(bufs), bytes_compared=sum(b.nbytes for b in bufs),
        first_mismatch=mismatch, device_instructions=sum(by_phase.values()),
        instructions_by_phase=by_phase, cycles_by_phase=cycles_by_phase,
        unclassified_instructions=sorted(dev_ex.unclassified),
        wall_s={"setup": round(t_setup, 3), "twin": round(t_twin, 3),
                "device": round(t_dev, 3)})
