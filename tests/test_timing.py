"""Timing model: tables, invariants, native vs Python tracer parity, divides, flash caches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcusim.cli import main
from mcusim.elf import ElfImage
from mcusim.errors import CatalogError
from mcusim.machine import Machine
from mcusim.timing.decode import CLASSES
from mcusim.timing.table import STATUSES, load_table, parse_table
from mcusim.toolchain import Builder
from mcusim.trace.blocks import CacheStats, divide_bucket
from mcusim.trace.native import load_error

native = pytest.mark.skipif(load_error() is not None, reason="native tracer not built")


# ---------------------------------------------------------------------- tables


@pytest.mark.parametrize("core", ["m0plus", "m4", "m7"])
def test_every_row_has_a_rule_a_source_and_a_status(core):
    table = load_table(core)
    assert "unclassified" in table.classes
    for c in table.classes.values():
        assert c.name in CLASSES
        assert c.rule and c.source, c.name
        assert c.status in STATUSES
        if c.status != "assumption":
            assert c.source != "assumption", c.name
    for name, p in table.parameters.items():
        assert p["rule"] and p["source"], name


def test_m4_table_reads_the_trm():
    t = load_table("m4")
    assert t.cls("load").cycles == 2 and t.cls("store").cycles == 1
    assert t.cls("ldm").cycles == 1 and t.cls("ldm").per_register == 1
    assert t.cls("fp_div").cycles == 14 and t.cls("fp_mac").cycles == 3
    assert t.cls("branch_cond").taken == "P"


def test_a_broken_table_is_one_clear_error(tmp_path):
    bad = tmp_path / "cortex_m4.toml"
    bad.write_text('schema = 1\ncore = "m4"\nmodel = "m4"\nversion = "1"\ntitle = "x"\n'
                   '[class.alu]\ncycles = -1\nrule = "r"\nsource = "s"\nstatus = "primary"\n')
    with pytest.raises(CatalogError, match=r"class\.alu: cycles must be a number >= 0"):
        parse_table(bad)
    bad.write_text('core = "m4"\nmodel = "m5"\nversion = "1"\ntitle = "x"\n')
    with pytest.raises(CatalogError, match="model: must be one of"):
        parse_table(bad)
    bad.write_text("core = [")
    with pytest.raises(CatalogError, match="not valid TOML"):
        parse_table(bad)


# ---------------------------------------------------------------------- helpers

def _kernel_machine(catalog, default_toolchain, mcu_name, tracer=None, **kw):
    mcu = catalog.mcu(mcu_name)
    elf = Builder(default_toolchain).build(mcu.core, [mcu])[0].elf
    return Machine(mcu, ElfImage.open(elf), tracer=tracer, **kw)


def _fc_call(m, in_f=64, out_f=16):
    from mcusim.demo import sample_fc_layer

    x, w, b, q = sample_fc_layer(in_f, out_f)
    args = (m.put(x), m.put(w), m.put(b), m.alloc(out_f), in_f, out_f, m.put(q.pack()), 0)
    return m.call("fqt_fc_forward", *args)


def _dot_call(m, n=64):
    """A cycle report of one fqt_dot_u8 call over n bytes (a small C kernel)."""
    m.reset_arena()
    a = m.put(np.arange(n, dtype=np.uint8))
    b = m.put(np.arange(n, dtype=np.uint8)[::-1].copy())
    return m.cycles(m.call("fqt_dot_u8", a, 3, b, 5, n))


# ---------------------------------------------------------------------- invariants


@pytest.mark.parametrize("mcu_name", ["RP2040", "nRF52840", "MIMXRT1062", "STM32F407"])
def test_report_invariants(catalog, default_toolchain, mcu_name):
    m = _kernel_machine(catalog, default_toolchain, mcu_name)
    r = _fc_call(m)
    rep = m.cycles(r)
    assert rep.cycles > 0
    assert rep.latency_ms * m.mcu.clock_hz / 1e3 == pytest.approx(rep.cycles)
    assert sum(v.cycles for v in rep.by_class.values()) == rep.cycles
    assert sum(v.count for k, v in rep.by_class.items() if k in CLASSES) \
        == r.instructions == rep.instructions  # flash_wait_* count misses, not instructions
    assert rep.unclassified == []
    d = rep.to_dict()
    assert {"cycles", "latency_ms", "cycles_by_class", "model"} <= set(d)
    assert d["model"]["core"] == m.mcu.core.key and d["model"]["assumptions"]


def test_cores_rank_as_expected_on_the_same_layer(catalog, default_toolchain):
    cyc = {}
    for name in ("RP2040", "nRF52840", "MIMXRT1062"):
        m = _kernel_machine(catalog, default_toolchain, name)
        _fc_call(m, 256, 32)
        cyc[name] = m.cycles(_fc_call(m, 256, 32)).cycles
    assert cyc["RP2040"] > cyc["nRF52840"] > cyc["MIMXRT1062"]


# ---------------------------------------------------------------------- parity


def _observe(m, fn, *args):
    r = m.call(fn, *args)
    rep = m.cycles(r)
    # every cycle is charged to some instruction: the attribution sums to the total
    assert sum(b.total for b in m.attribution(r).values()) == rep.cycles
    assert sum(f for f, _d in r.block_misses.values()) == \
        r.cache.get("fetch", CacheStats()).misses
    return (r.blocks, r.edges, r.divides, r.cache, r.block_misses, r.instructions,
            r.branches, r.accesses, rep.to_dict())


@native
@pytest.mark.parametrize("mcu_name", ["RP2040", "STM32F407", "MIMXRT1062", "STM32L053",
                                      "nRF52840"])
def test_native_and_python_tracers_agree_on_kernels(catalog, default_toolchain, mcu_name):
    seen = []
    for tracer in ("native", "python"):
        m = _kernel_machine(catalog, default_toolchain, mcu_name, tracer=tracer)
        cold = _observe_fc(m)
        warm = _observe_fc(m)
        seen.append((cold, warm))
    assert seen[0] == seen[1]
    cold, warm = seen[0]
    if mcu_name in ("RP2040", "STM32F407"):  # a small kernel fits their caches: warm hits
        # (fqt_fc_forward's 4-row loops no longer fit the STM32F407's 1 KB ART: a call of
        # it misses as often warm as cold there)
        m = _kernel_machine(catalog, default_toolchain, mcu_name)
        cold_dot, warm_dot = _dot_call(m), _dot_call(m)
        assert cold_dot.cache["fetch"].misses > warm_dot.cache["fetch"].misses
    if mcu_name == "MIMXRT1062":  # code in ITCM: nothing to fetch from flash
        assert "fetch" not in cold[3] or cold[3]["fetch"].accesses == 0
    # the predictor and the followed addresses are compared too (cold[6], cold[7]); the
    # M4 and M7 follow loads (the M0+ has no address-dependent cost)
    assert bool(cold[7]) == (mcu_name in ("STM32F407", "MIMXRT1062", "nRF52840"))
    # only the M7 model predicts branches: every kernel loop exit mispredicts there
    assert bool(cold[6]) == (mcu_name == "MIMXRT1062")


def _observe_fc(m):
    from mcusim.demo import sample_fc_layer

    m.reset_arena()
    x, w, b, q = sample_fc_layer(48, 8)
    args = (m.put(x), m.put(w), m.put(b), m.alloc(8), 48, 8, m.put(q.pack()), 0)
    return _observe(m, "fqt_fc_forward", *args)


@native
@pytest.mark.parametrize("mcu_name", ["RP2040", "STM32F407", "SAMD21G18"])
def test_tracers_agree_on_flash_data_reads(catalog, build_probes, mcu_name):
    mcu = catalog.mcu(mcu_name)
    elf = build_probes(mcu_name, ("timing_probes.S",))
    data = np.arange(300, dtype=np.uint8)
    out = []
    for tracer in ("native", "python"):
        m = Machine(mcu, ElfImage.open(elf), tracer=tracer)
        where = mcu.flash.end - 4096
        m.write(where, data)  # host data in flash: data reads are modelled from now on
        assert m.flash_data
        obs = _observe(m, "sum_bytes", where, len(data))
        assert obs[0] and m.call("sum_bytes", where, len(data)).return_value == int(data.sum())
        assert sum(d for _f, d in obs[4].values()) == obs[3]["data"].misses
        out.append(obs)
    assert out[0] == out[1]
    assert out[0][3]["data"].accesses == len(data)
    assert out[0][3]["data"].misses >= 1


@native
def test_tracers_agree_on_divides(catalog, build_probes):
    mcu = catalog.mcu("nRF52840")
    elf = build_probes("nRF52840", ("timing_div.S",))
    cases = [("udiv_once", 1000, 7), ("udiv_once", 0, 7), ("udiv_once", 3, 1000),
             ("sdiv_once", -(1 << 31), 1), ("skipped_div", 0, 3), ("skipped_div", 9, 3)]
    out = []
    for tracer in ("native", "python"):
        m = Machine(mcu, ElfImage.open(elf), tracer=tracer)
        out.append([_observe(m, fn, n, d) for fn, n, d in cases])
    assert out[0] == out[1]


# ---------------------------------------------------------------------- divides


@pytest.mark.parametrize(("n", "d", "signed", "bucket"), [
    (0, 5, False, 0), (5, 0, False, 0), (3, 1000, False, 1), (1000, 1000, False, 2),
    (1000, 7, False, 2 + 10 - 3), (0xFFFFFFFF, 1, False, 33), (0x80000000, 1, True, 33),
    (0xFFFFFFFF, 1, True, 2),  # -1 / 1: one significant bit each
])
def test_divide_bucket(n, d, signed, bucket):
    assert divide_bucket(n, d, signed) == bucket


def test_divides_are_hooked_and_cost_by_operands(catalog, build_probes):
    m = Machine(catalog.mcu("nRF52840"), ElfImage.open(build_probes("nRF52840",
                                                                     ("timing_div.S",))))
    assert len(m.counter.sites) == 3
    r = m.call("udiv_once", 0xFFFFFFFF, 1)
    assert r.return_value == 0xFFFFFFFF and list(r.divides.values()) == [
        tuple(1 if b == 33 else 0 for b in range(34))]
    big = m.cycles(r).by_class["div"].cycles
    small = m.cycles(m.call("udiv_once", 3, 1000)).by_class["div"].cycles
    zero = m.cycles(m.call("udiv_once", 0, 9)).by_class["div"].cycles
    assert (zero, small, big) == (2, 3, 12)  # cortex_m4.toml parameters.divide
    skipped = m.call("skipped_div", 0, 3)
    assert skipped.divides == {} and m.cycles(skipped).by_class["div"].cycles == 2


def test_m0plus_has_no_divide_hooks(catalog, default_toolchain):
    m = _kernel_machine(catalog, default_toolchain, "RP2040")
    assert m.counter.sites == []


# ---------------------------------------------------------------------- flash


def test_flash_wait_states_cost_cycles_only_when_cold(catalog, default_toolchain):
    """fqt_dot_u8: a small kernel whose loop fits the ART and runs slower than the
    prefetch fills lines, so a cold call pays exactly its misses' wait states (a faster
    straight-line stretch would add prefetch stalls: tests/programs/timing_flash*.S)."""
    m = _kernel_machine(catalog, default_toolchain, "STM32F407")
    cold = _dot_call(m)
    warm = _dot_call(m)
    assert cold.by_class["flash_wait_fetch"].cycles == \
        cold.cache["fetch"].misses * m.mcu.flash_wait_states
    assert "flash_wait_fetch" not in warm.by_class
    assert cold.cycles > warm.cycles
    m.flush_caches()
    assert _dot_call(m).cycles == cold.cycles


def test_sram_data_costs_nothing_extra_flash_data_does(catalog, build_probes):
    mcu = catalog.mcu("STM32F407")
    elf = build_probes("STM32F407", ("timing_probes.S",))
    data = np.full(512, 3, np.uint8)
    m = Machine(mcu, ElfImage.open(elf))
    ram = m.put(data)
    m.call("sum_bytes", ram, 512)
    in_ram = m.cycles(m.call("sum_bytes", ram, 512)).cycles
    flash = mcu.flash.end - 1024
    m.write(flash, data)
    m.call("sum_bytes", flash, 512)
    in_flash = m.cycles(m.call("sum_bytes", flash, 512))
    # 512 bytes = 32 lines of 16 bytes; the ART data side holds 8 lines: every line misses
    assert in_flash.cache["data"].misses == 32
    assert in_flash.cycles == in_ram + 32 * mcu.flash_wait_states


def test_explicit_no_flash_data(catalog, build_probes):
    mcu = catalog.mcu("STM32F407")
    m = Machine(mcu, ElfImage.open(build_probes("STM32F407", ("timing_probes.S",))),
                flash_data=False)
    m.write(mcu.flash.end - 1024, b"\x01" * 64)
    assert not m.flash_data


# ---------------------------------------------------------------------- training


def test_a_training_step_has_no_unclassified_instruction(catalog, default_toolchain):
    from mcusim.fqt.verify import run_verify
    from mcusim.model.zoo import load_model

    spec = load_model("digits-cnn")
    for name in ("RP2040", "nRF52840", "MIMXRT1062"):
        rep = run_verify(spec, catalog.mcu(name), default_toolchain, 2)
        assert rep.bit_exact
        assert rep.unclassified_instructions == []
        assert set(rep.cycles_by_phase) == set(rep.instructions_by_phase)
        assert all(c > 0 for c in rep.cycles_by_phase.values())


# ---------------------------------------------------------------------- CLI


def test_run_json_reports_cycles(capsys, catalog, default_toolchain):
    mcu = catalog.mcu("nRF52840")
    elf = Builder(default_toolchain).build(mcu.core, [mcu])[0].elf
    assert main(["run", str(elf), "-f", "fqt_hash32", "-m", "nRF52840", "--args", "7",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["cycles"] == sum(v["cycles"] for v in d["cycles_by_class"].values())
    assert d["latency_ms"] == pytest.approx(d["cycles"] / 64e3)
    assert d["model"]["table"] == "cortex_m4.toml"
    assert {"branches", "cache", "energy_weighted_cycles"} <= set(d)
    mcu = catalog.mcu("nRF52840")  # all weights 1.0: energy = time x V x I
    assert d["energy_mj"] == pytest.approx(d["latency_ms"] / 1e3 * mcu.voltage_v
                                           * mcu.run_current_ma)


@pytest.mark.parametrize("core", ["m0plus", "M4", "cortex-m7"])
def test_cost_model_command(capsys, core):
    assert main(["cost-model", core, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["classes"] and all(c["source"] for c in d["classes"])
    assert main(["cost-model", core]) == 0
    assert "source" in capsys.readouterr().out


def test_cost_model_unknown_core(capsys):
    assert main(["cost-model", "m33"]) == 2
    assert "unknown core" in capsys.readouterr().err


def test_bench_json(capsys):
    assert main(["bench", "--repeat", "1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d["cores"]) == {"m0plus", "m4", "m7"}
    for v in d["cores"].values():
        assert v["untraced_mips"] > 0 and v["traced_mips"] > 0
        assert v["ratio"] == pytest.approx(v["traced_mips"] / v["untraced_mips"], rel=0.01)
