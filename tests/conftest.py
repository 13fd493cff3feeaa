"""Shared fixtures: the catalog, the toolchains, built kernel and probe images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mcusim.catalog import load_catalog
from mcusim.elf import ElfImage
from mcusim.errors import ToolchainError
from mcusim.machine import Machine
from mcusim.toolchain import Builder, find_toolchain

PROGRAMS = Path(__file__).parent / "programs"
PAPER_BOARDS = ("RP2040", "nRF52840", "MIMXRT1062")  # one MCU per core
REQUIRE_GCC = os.environ.get("MCUSIM_REQUIRE_GCC") == "1"


def _toolchain_or_skip(kind: str):
    try:
        return find_toolchain(kind)
    except ToolchainError as e:
        if kind == "gcc" and REQUIRE_GCC:
            pytest.fail(f"MCUSIM_REQUIRE_GCC=1 but: {e}")
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


@pytest.fixture(scope="session", params=["gcc", "zig"])
def toolchain(request):
    return _toolchain_or_skip(request.param)


@pytest.fixture(scope="session")
def default_toolchain():
    return find_toolchain()


@pytest.fixture(scope="session")
def build_probes(catalog, default_toolchain):
    """build_probes(mcu_name, sources=("probes.S",), core=None) -> ELF path (cached)."""
    builder = Builder(default_toolchain)
    cache: dict[tuple, str] = {}

    def build(mcu_name: str, sources=("probes.S",), core: str | None = None) -> str:
        key = (mcu_name, tuple(sources), core)
        if key not in cache:
            mcu = catalog.mcu(mcu_name)
            c = catalog.core(core) if core else mcu.core
            objects, _ = builder.compile(c, [PROGRAMS / s for s in sources], name="probes")
            elf, _ = builder.link(mcu, objects, name="probes-" + "-".join(
                Path(s).stem for s in sources) + f"-{c.key}")
            cache[key] = str(elf)
        return cache[key]

    return build


_kernel_machines: dict[tuple[str, str], Machine] = {}


@pytest.fixture(scope="module", params=PAPER_BOARDS)
def machine(request, catalog, toolchain):
    """The kernel image loaded on each paper board (one per core), per toolchain; the
    Machine is reused across tests with its arena reset."""
    key = (request.param, toolchain.kind)
    if key not in _kernel_machines:
        mcu = catalog.mcu(request.param)
        elf = Builder(toolchain).build(mcu.core, [mcu])[0].elf
        _kernel_machines[key] = Machine(mcu, ElfImage.open(elf))
    m = _kernel_machines[key]
    m.reset_arena()
    return m
