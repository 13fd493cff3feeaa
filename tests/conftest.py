"""Shared fixtures: the catalog, the toolchains, built kernel and probe images."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from hypothesis import settings

from mcusim.catalog import load_catalog
from mcusim.elf import ElfImage
from mcusim.errors import ToolchainError
from mcusim.machine import Machine
from mcusim.toolchain import Builder, find_toolchain

# CI runs the property tests derandomized (HYPOTHESIS_PROFILE=ci in .ci/run): the same
# examples every run, no example database.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])

PROGRAMS = Path(__file__).parent / "programs"
# the MLPerf Tiny reference models (Apache-2.0) beside the checkout; CI's wheel stage runs a
# copy of the tests outside the checkout and names the folder in MCUSIM_MLPERF_DIR
MLPERF_DIR = Path(os.environ["MCUSIM_MLPERF_DIR"]) if os.environ.get("MCUSIM_MLPERF_DIR") \
    else Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf-tiny"

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


@pytest.fixture(scope="session")
def results_store(tmp_path_factory):
    """A real results database (DuckDB) with real points, built once per session
    (tests/results_support.py); read it, do not write it."""
    pytest.importorskip("duckdb", reason="the results database needs mcusim[sweep]")
    from .results_support import build_store

    return build_store(tmp_path_factory.mktemp("results") / "results.duckdb")


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


_timed_machines: dict[tuple, Machine] = {}


@pytest.fixture(scope="session")
def timed(build_probes, catalog):
    """timed(mcu, source, function, *args, cold=False, tracer=None) -> CycleReport.

    Builds tests/programs/<source> for the MCU, calls `function` once to warm the flash
    cache and the branch predictor (which starts from its initial state, so no earlier
    test's calls shape it) unless cold=True: then caches and predictor are flushed and
    there is no warm-up call; returns the cycle report of the (last) call."""

    def run(mcu_name: str, source: str, function: str, *args: int, cold: bool = False,
            tracer: str | None = None, **mcu_overrides):
        key = (mcu_name, source, tracer, tuple(sorted(mcu_overrides.items())))
        if key not in _timed_machines:
            elf = build_probes(mcu_name, (source,))
            mcu = dataclasses.replace(catalog.mcu(mcu_name), **mcu_overrides)
            _timed_machines[key] = Machine(mcu, ElfImage.open(elf), tracer=tracer)
        m = _timed_machines[key]
        if cold:
            m.flush_caches()
        else:
            m.flush_predictor()
            m.call(function, *args)
        return m.cycles(m.call(function, *args))

    return run
