"""No configuration of mcusim computes a different result from plain, hook-free Unicorn.

Unicorn 2.1.4 with a UC_HOOK_MEM_READ that covers the loaded address leaves the IT state
set after an IT block ending in a conditional load and mis-executes what follows
(upstream unicorn issue 2309).  mcusim's tracers (mcusim/trace) arm an IT-state guard with
their memory hook: a block entered with a stale IT state is restarted with it cleared.

- tests/programs/it_loads.S: IT blocks ending in conditional LDR/LDRB/LDRH/LDRSH/LDRD/LDM,
  post-indexed, ITE/ITT, PC-relative literal LDR/LDR.W/LDRD, and loops whose head (the
  block after the IT block) starts with CBZ, IT, B or BL; taken and not taken (the
  condition alternates), reading flash and SRAM; `it_across_page`, an IT block split by a
  page boundary (a legitimate IT state at a block start, which the guard must keep);
  `all_forms`/`vfp_forms`, every addressing form of loads and stores without IT blocks.
- Every tracer x flash-data setting (off, on, automatic) x warm/cold x source in flash/SRAM
  on M4 and M7 parts (the M0+ has no IT instruction: skipped): r0 and the memory written
  equal the unhooked run's, and no fault (the other symptom: a spurious invalid
  instruction).
- The patterns really trigger the Unicorn bug under a read hook (else these tests prove
  nothing), and a gcc -O2 compiled C decision-tree walk has the pattern in its
  disassembly and runs right.
- The flash reads mcusim accounts equal Unicorn's own (a plain memory hook, on code
  without the bug pattern), and only executed loads are counted (hand-derived counts): a
  restarted block reads nothing twice.
"""

from __future__ import annotations

import capstone
import numpy as np
import pytest
import unicorn
from unicorn import arm_const

from mcusim.bench import _bare_engine
from mcusim.elf import ElfImage
from mcusim.errors import EmulationFault, ToolchainError
from mcusim.machine import Machine
from mcusim.toolchain import Builder, find_toolchain
from mcusim.trace.blocks import IT_BITS
from mcusim.trace.native import load_error

MCUS = ("RP2040", "STM32F407", "nRF52840", "STM32F746", "MIMXRT1062")
TRACERS = ("native", "python")
N = 12  # iterations: the IT condition holds on odd i, so 6 taken, 6 not taken
SRC = bytes(((i * 37 + 11) & 0xFF) or 1 for i in range(128))  # no zero byte

# it_* function -> executed data reads from its source per taken iteration (hand-derived
# from it_loads.S: each is one aligned access inside one cache line), and whether the read
# is a PC-relative literal (then it is in flash whatever the source)
LOOPS = {
    "it_ldr_reg": (1, False), "it_ldr_imm": (1, False), "it_ldr_w": (1, False),
    "it_ldrb": (1, False), "it_ldrh": (1, False), "it_ldrsh": (1, False),
    "it_ldrd": (2, False), "it_ldm": (2, False), "it_ldr_post": (1, False),
    "it_ite": (1, False),  # ITE: one of its two loads runs every iteration (counted below)
    "it_itt": (1, False), "it_lit": (1, True), "it_lit_w": (1, True),
    "it_ldrd_lit": (2, True), "it_then_cbz": (1, False), "it_lit_then_cbz": (1, True),
    "it_then_it": (1, False), "it_then_b": (1, False), "it_then_bl": (1, False),
}
ACROSS = "it_across_page"  # 1 read per taken iteration, no stale IT state


def _flash_reads(fn: str, n: int) -> int:
    per, _lit = LOOPS.get(fn, (1, False))
    taken = n // 2
    return n if fn == "it_ite" else per * taken


@pytest.fixture(scope="module")
def it_elf(catalog, build_probes):
    def get(mcu_name: str) -> str:
        if catalog.mcu(mcu_name).core.arch == "armv6-m":
            pytest.skip("ARMv6-M (Cortex-M0+) has no IT instruction")
        return build_probes(mcu_name, ("it_loads.S",))
    return get


def _tracer_or_skip(tracer: str) -> None:
    if tracer == "native" and load_error() is not None:
        pytest.skip("native tracer not built")


def _plain_run(machine: Machine, fn: str, args: tuple[int, ...], nbytes_out: int,
               out: int, read_hook: bool = False):
    """Plain Unicorn, no hook at all (or only a no-op UC_HOOK_MEM_READ over everything),
    with `machine`'s memory contents: (r0, the output bytes) or the UcError."""
    uc = _bare_engine(machine)
    if read_hook:
        uc.hook_add(unicorn.UC_HOOK_MEM_READ, lambda *a: None)
    for i, a in enumerate(args):
        uc.reg_write(arm_const.UC_ARM_REG_R0 + i, a)
    uc.reg_write(arm_const.UC_ARM_REG_SP, machine.stack_top & ~7)
    uc.reg_write(arm_const.UC_ARM_REG_LR, machine.magic | 1)
    entry = machine.image.function(fn).address | 1
    try:
        uc.emu_start(entry, machine.magic, count=1_000_000)
    except unicorn.UcError as e:
        return e
    return uc.reg_read(arm_const.UC_ARM_REG_R0), bytes(uc.mem_read(out, nbytes_out))


def _place(m: Machine, where: str) -> int:
    if where == "flash":
        addr = m.mcu.flash.end - 4096
        m.write(addr, SRC)
        return addr
    return m.put(SRC)


# ---------------------------------------------------------------------- the bug is real


@pytest.mark.skipif(unicorn.__version__ != "2.1.4",
                    reason="checks the pattern against Unicorn 2.1.4's bug (issue 2309)")
@pytest.mark.parametrize("mcu_name", ["STM32F407", "STM32F746"])
def test_the_patterns_trigger_unicorn_issue_2309(catalog, it_elf, mcu_name):
    """Under a plain UC_HOOK_MEM_READ every it_* loop computes a wrong result (else the
    regression tests below would not test the bug)."""
    m = Machine(catalog.mcu(mcu_name), ElfImage.open(it_elf(mcu_name)), flash_data=False)
    src, out = m.put(SRC), m.alloc(4 * N)
    broken = []
    for fn in LOOPS:
        ref = _plain_run(m, fn, (N, src, out), 4 * N, out)
        assert not isinstance(ref, Exception), (fn, ref)
        if _plain_run(m, fn, (N, src, out), 4 * N, out, read_hook=True) != ref:
            broken.append(fn)
    assert broken == list(LOOPS)


# ---------------------------------------------------------------------- every configuration


@pytest.mark.parametrize("mcu_name", MCUS)
@pytest.mark.parametrize("tracer", TRACERS)
@pytest.mark.parametrize("flash_data", [False, True, None])
@pytest.mark.parametrize("warm", [False, True])
@pytest.mark.parametrize("where", ["flash", "sram"])
def test_it_loads_match_plain_unicorn(catalog, it_elf, mcu_name, tracer, flash_data, warm,
                                      where):
    _tracer_or_skip(tracer)
    mcu = catalog.mcu(mcu_name)
    m = Machine(mcu, ElfImage.open(it_elf(mcu_name)), tracer=tracer, flash_data=flash_data)
    src = _place(m, where)
    out = m.alloc(4 * N)
    modelled = m.flash_data and m.memory.data is not None
    assert m.flash_data == (flash_data is True or (flash_data is None and where == "flash"))
    for fn in (*LOOPS, ACROSS):
        ref = _plain_run(m, fn, (N, src, out), 4 * N, out)
        assert not isinstance(ref, Exception), (fn, ref)
        if warm:
            m.call(fn, N, src, out)
        else:
            m.flush_caches()
        m.write(out, bytes(4 * N))
        try:
            r = m.call(fn, N, src, out)
        except EmulationFault as e:  # the second symptom: a spurious fault
            pytest.fail(f"{fn}: {e}")
        assert (r.return_value, m.read(out, 4 * N)) == ref, fn
        if modelled:
            lit = LOOPS.get(fn, (1, False))[1]
            # a literal is read from flash only where the code runs from flash (the
            # MIMXRT1062 runs it from ITCM)
            in_flash = m.mcu.code.kind == "flash" if lit else where == "flash"
            expected = _flash_reads(fn, N) if in_flash else 0
            # only executed loads are counted: IT-skipped ones read nothing, and a block
            # restarted by the IT-state guard reads nothing twice
            assert r.cache["data"].accesses == expected, fn
    if modelled and (where == "flash"):
        assert m.counter.it_repairs > 0  # the guard did repair (else: no bug exercised)


@pytest.mark.parametrize("tracer", TRACERS)
@pytest.mark.parametrize("mcu_name", ["STM32F407", "STM32F746"])
def test_the_guard_keeps_a_legitimate_it_state(catalog, it_elf, mcu_name, tracer):
    """it_across_page's IT block is split by a page boundary: the block after the load
    starts inside the IT block (ADDNE), and the guard must not touch that state."""
    _tracer_or_skip(tracer)
    m = Machine(catalog.mcu(mcu_name), ElfImage.open(it_elf(mcu_name)), tracer=tracer,
                flash_data=True)
    src, out = _place(m, "flash"), m.alloc(4 * N)
    entry = m.image.function(ACROSS).address
    assert (entry + 20) % 4096 == 0  # ADDNE is the first instruction of a page
    ref = _plain_run(m, ACROSS, (N, src, out), 4 * N, out)
    it_states = []  # the IT state at each start of the block on the new page
    m.uc.hook_add(unicorn.UC_HOOK_BLOCK, lambda uc, a, s, u: it_states.append(
        uc.reg_read(arm_const.UC_ARM_REG_XPSR) & IT_BITS) if a == entry + 20 else None)
    m.uc.ctl_flush_tb()
    r = m.call(ACROSS, N, src, out)
    assert (r.return_value, m.read(out, 4 * N)) == ref
    assert len(it_states) == N and all(it_states)  # legitimately inside the IT block
    assert m.counter.it_repairs == 0
    if m.mcu.core.key == "m7":
        # the M7's flash reads go through its D-cache model from the followed addresses (no
        # memory hook, no guard needed), and a load inside an IT block is counted whether
        # or not its condition passed (the cost tables' it_skipped assumption): N
        assert r.cache["dcache"].accesses == N
    else:
        assert r.cache["data"].accesses == N // 2


@pytest.mark.parametrize("mcu_name", ["STM32F407", "STM32F746"])
def test_tracers_agree_on_it_loads(catalog, it_elf, mcu_name):
    _tracer_or_skip("native")
    seen = []
    for tracer in TRACERS:
        m = Machine(catalog.mcu(mcu_name), ElfImage.open(it_elf(mcu_name)), tracer=tracer,
                    flash_data=True)
        src, out = _place(m, "flash"), m.alloc(4 * N)
        obs = []
        for fn in LOOPS:
            m.flush_caches()
            r = m.call(fn, N, src, out)
            obs.append((fn, r.return_value, r.cache, r.block_misses, m.cycles(r).cycles))
        seen.append(obs)
    assert seen[0] == seen[1]


# ---------------------------------------------------------------------- the addresses


def _unicorn_flash_reads(m: Machine, fn: str, args: tuple[int, ...]):
    """Unicorn's own flash reads of a call (a plain memory hook: only on code without the
    bug pattern): (address, bytes) in order, and r0."""
    uc = _bare_engine(m)
    seen: list[tuple[int, int]] = []
    uc.hook_add(unicorn.UC_HOOK_MEM_READ, lambda uc, acc, a, n, v, u: seen.append((a, n)),
                begin=m.mcu.flash.base, end=m.mcu.flash.end - 1)
    for i, a in enumerate(args):
        uc.reg_write(arm_const.UC_ARM_REG_R0 + i, a)
    uc.reg_write(arm_const.UC_ARM_REG_SP, m.stack_top & ~7)
    uc.reg_write(arm_const.UC_ARM_REG_LR, m.magic | 1)
    uc.emu_start(m.image.function(fn).address | 1, m.magic, count=100_000)
    return seen, uc.reg_read(arm_const.UC_ARM_REG_R0)


# (the M7 parts take their flash data reads from the followed load addresses instead of a
# memory hook: tests/test_access_plans.py and test_m7_pins.py check those)
@pytest.mark.parametrize("mcu_name", ["STM32F407", "STM32L476"])
@pytest.mark.parametrize("tracer", TRACERS)
@pytest.mark.parametrize("fn", ["all_forms", "vfp_forms"])
@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_flash_reads_equal_unicorns_own(catalog, it_elf, mcu_name, tracer, fn, n):
    """Every addressing form (LDR/LDRB/LDRSB/LDRH, LDRD, pre/post-indexed, LDM/LDMDB,
    literal LDR/LDR.W/LDRD, LDREX, TBB/TBH, VLDR/VLDM of S and D registers)."""
    _tracer_or_skip(tracer)
    m = Machine(catalog.mcu(mcu_name), ElfImage.open(it_elf(mcu_name)), tracer=tracer)
    src = _place(m, "flash")  # flash data on
    out = m.alloc(64)
    expected, r0 = _unicorn_flash_reads(m, fn, (n, src, out))
    m.counter.start_access_log(10_000)
    r = m.call(fn, n, src, out)
    assert r.return_value == r0
    assert len(expected) > 5 and [(a, s) for _b, a, s in m.counter.access_log()] == expected
    assert m.counter.it_repairs == 0


# ---------------------------------------------------------------------- compiled C

TREE_C = r"""
/* A decision-tree walk like a boosted-trees benchmark's: gcc -O2 for the M4 turns the
 * child selection into `ite lt; ldrshlt; ldrshge`, an IT block ending in a conditional
 * load. */
int tree_walk(const short *feature, const int *threshold, const short *left,
              const short *right, const int *leaf, const int *x, int depth)
{
    int node = 0;
    for (int d = 0; d < depth; d++) {
        int f = feature[node];
        node = x[f] < threshold[node] ? left[node] : right[node];
    }
    return leaf[node];
}

int forest(const short *tree, const int *x, int trees, int depth)
{
    int sum = 0;
    for (int t = 0; t < trees; t++) {
        const short *f = tree + t * 256;
        sum += tree_walk(f, (const int *)(f + 64), f + 192, f + 224,
                         (const int *)(tree + 8 * 256), x, depth) * (t + 1);
    }
    return sum;
}
"""


def _tree_data(nodes: int = 32):
    rng = np.random.default_rng(7)
    blob = np.zeros(9 * 256, np.int16)
    for t in range(8):
        f = blob[t * 256:(t + 1) * 256]
        f[:nodes] = rng.integers(0, 16, nodes)
        thr = rng.integers(-50, 50, nodes).astype(np.int32)
        f[64:64 + 2 * nodes] = thr.view(np.int16)
        f[192:192 + nodes] = (2 * np.arange(nodes) + 1) % nodes
        f[224:224 + nodes] = (2 * np.arange(nodes) + 2) % nodes
    blob[8 * 256:8 * 256 + 2 * nodes] = rng.integers(-1000, 1000, nodes).astype(
        np.int32).view(np.int16)
    x = rng.integers(-60, 60, 16).astype(np.int32)
    return blob, x


@pytest.fixture(scope="module")
def tree_elf(catalog, tmp_path_factory):
    try:
        tc = find_toolchain("gcc")
    except ToolchainError as e:
        pytest.skip(f"gcc: {e}")
    src = tmp_path_factory.mktemp("tree") / "tree_walk.c"
    src.write_text(TREE_C)
    builder = Builder(tc)
    elves = {}
    for name in ("STM32F407", "STM32F746"):
        mcu = catalog.mcu(name)
        objects, _ = builder.compile(mcu.core, [src], name="tree")
        elves[name] = str(builder.link(mcu, objects, name=f"tree-{mcu.core.key}")[0])
    return elves


def _it_blocks_ending_in_load(image: ElfImage, fn: str) -> list[int]:
    sym = image.function(fn)
    seg = next(s for s in image.segments if s.vaddr <= sym.address < s.vaddr + len(s.data))
    off = sym.address - seg.vaddr
    code = seg.data[off:off + sym.size]
    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    insns = list(md.disasm(code, sym.address & ~1))
    hits = []
    for i, ins in enumerate(insns):
        if ins.mnemonic.startswith("it"):
            length = len(ins.mnemonic) - 1  # it, itt, ite, ittt...: 1 + letters after 'i'
            last = insns[i + length] if i + length < len(insns) else None
            if last is not None and last.mnemonic.startswith("ldr"):
                hits.append(last.address)
    return hits


def test_compiled_c_has_the_pattern_and_runs_right(catalog, tree_elf):
    for name, elf in tree_elf.items():
        image = ElfImage.open(elf)
        assert _it_blocks_ending_in_load(image, "tree_walk"), \
            f"gcc -O2 no longer generates an IT block ending in a load ({name})"
        blob, x = _tree_data()
        results = {}
        for tracer in TRACERS:
            if tracer == "native" and load_error() is not None:
                continue
            for flash_data in (False, True):
                m = Machine(catalog.mcu(name), image, tracer=tracer, flash_data=flash_data)
                tree = m.mcu.flash.end - 8192
                m.write(tree, blob)  # frozen trees in flash, like the benchmark's
                xa = m.put(x)
                ref = _plain_run(m, "forest", (tree, xa, 8, 6), 0, xa)
                buggy = _plain_run(m, "forest", (tree, xa, 8, 6), 0, xa, read_hook=True)
                r = m.call("forest", tree, xa, 8, 6)
                results[(tracer, flash_data)] = r.return_value
                assert (r.return_value, b"") == ref
                if unicorn.__version__ == "2.1.4":
                    assert buggy != ref  # the program does exercise issue 2309
        assert len(set(results.values())) == 1
