"""The demo job: build the kernels for the three paper boards' cores and run a sample kernel.

A uint8 fully connected forward layer runs as compiled Thumb code on RP2040 (Cortex-M0+),
nRF52840 (Cortex-M4F) and i.MX RT1062 (Cortex-M7); its output is checked bit for bit
against the numpy twin and its cycles come from the cores' cost models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mcusim.catalog import Catalog, Mcu
from mcusim.elf import ElfImage
from mcusim.fqt import twin
from mcusim.fqt.quant import LayerQuant, QuantParams, quantize_multiplier
from mcusim.machine import Machine
from mcusim.toolchain import Builder, ProgressFn, Toolchain

PAPER_BOARDS = ("RP2040", "nRF52840", "MIMXRT1062")


@dataclass(frozen=True)
class KernelRun:
    """One sample kernel run on one MCU, checked against the twin."""

    mcu: str
    board: str
    core: str
    clock_hz: int
    toolchain: str
    toolchain_version: str
    kernel: str
    shape: str
    macs: int
    instructions: int
    instructions_per_mac: float
    cycles: int
    latency_ms: float
    stack_bytes: int
    code_bytes: int
    bit_exact: bool
    elf: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def sample_fc_layer(in_features: int = 256, out_features: int = 32, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, LayerQuant]:
    """A random but realistic quantized FC layer with a fused ReLU."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, in_features, dtype=np.uint8)
    w = rng.integers(0, 256, (out_features, in_features), dtype=np.uint8)
    sx = QuantParams.from_range(-1.0, 3.0)
    sw = QuantParams.from_range(-0.5, 0.4)
    sy = QuantParams.from_range(0.0, 6.0)
    bias = np.round(rng.normal(0, 0.3, out_features) / (sx.scale * sw.scale)).astype(np.int32)
    mult, shift = quantize_multiplier(sx.scale * sw.scale / sy.scale)
    q = LayerQuant(x_zero=sx.zero_point, w_zero=sw.zero_point, y_zero=sy.zero_point,
                   multiplier=mult, shift=shift, act_min=sy.zero_point, act_max=255)
    return x, w, bias, q


def run_fc_sample(mcu: Mcu, elf: str, toolchain: Toolchain, in_features: int = 256,
                  out_features: int = 32) -> KernelRun:
    image = ElfImage.open(elf)
    machine = Machine(mcu, image, check_alignment=Machine.kernel_alignment_checks())
    x, w, bias, q = sample_fc_layer(in_features, out_features)
    ax, aw, ab = machine.put(x), machine.put(w), machine.put(bias)
    ay, aq = machine.alloc(out_features), machine.put(q.pack())
    result = machine.call("fqt_fc_forward", ax, aw, ab, ay, in_features, out_features, aq, 0)
    timing = machine.cycles(result)
    y = machine.read_array(ay, np.uint8, out_features)
    expected = twin.fc_forward(x, w, bias, q)
    macs = in_features * out_features
    return KernelRun(
        mcu=mcu.name, board=mcu.board, core=mcu.core.key, clock_hz=mcu.clock_hz,
        toolchain=toolchain.kind, toolchain_version=toolchain.version,
        kernel="fqt_fc_forward", shape=f"{in_features}->{out_features}", macs=macs,
        instructions=result.instructions,
        instructions_per_mac=round(result.instructions / macs, 3),
        cycles=timing.cycles, latency_ms=timing.latency_ms,
        stack_bytes=result.stack_bytes, code_bytes=image.section_sizes()["text"],
        bit_exact=bool(np.array_equal(y, expected)), elf=elf)


def run_demo(catalog: Catalog, toolchain: Toolchain, progress: ProgressFn | None = None,
             mcus: tuple[str, ...] = PAPER_BOARDS) -> list[KernelRun]:
    builder = Builder(toolchain, progress=progress)
    runs = []
    for name in mcus:
        mcu = catalog.mcu(name)
        build = builder.build(mcu.core, [mcu])[0]
        if progress:
            progress(f"run fqt_fc_forward on {mcu.name}")
        runs.append(run_fc_sample(mcu, build.elf, toolchain))
    return runs
