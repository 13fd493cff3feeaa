"""ARMv7-M alignment: LDRD/STRD, LDM/STM (PUSH/POP-like), LDREX and VLDR at an address
that is not word-aligned raise an UNALIGNED UsageFault on the Cortex-M4/M7 (Arm DUI 0646C
3.3.5, DDI 0489F 2.4.2); LDR/STR/LDRH may be unaligned.  Unicorn accepts all of them:
mcusim faults them as the part does (tests/programs/unaligned.S)."""

from __future__ import annotations

import itertools
import json

import capstone
import numpy as np
import pytest

from mcusim.align import find_align_sites, find_stack_sites
from mcusim.cli import main
from mcusim.elf import ElfImage
from mcusim.errors import EmulationFault
from mcusim.machine import Machine
from mcusim.trace.native import load_error

_A = capstone.arm
_MULTI = {_A.ARM_INS_LDM, _A.ARM_INS_LDMDB, _A.ARM_INS_STM, _A.ARM_INS_STMDB,
          _A.ARM_INS_VLDMIA, _A.ARM_INS_VLDMDB, _A.ARM_INS_VSTMIA, _A.ARM_INS_VSTMDB}
_DB = {_A.ARM_INS_LDMDB, _A.ARM_INS_STMDB, _A.ARM_INS_VLDMDB, _A.ARM_INS_VSTMDB}
_WORD = {_A.ARM_INS_LDRD, _A.ARM_INS_STRD, _A.ARM_INS_LDREX, _A.ARM_INS_STREX,
         _A.ARM_INS_VLDR, _A.ARM_INS_VSTR}
_REG_NAMES = [f"r{i}" for i in range(9)] + ["sb", "sl", "fp", "ip", "sp", "lr"]
V7M_PARTS = ("nRF52840", "STM32F411", "MIMXRT1062", "STM32F746")  # two M4, two M7
WORDS = (0x11111111, 0x02020202, 0x00300030, 0x40000004, 0x05050505)


@pytest.fixture(scope="module", params=V7M_PARTS)
def part(request, catalog, build_probes):
    return request.param, build_probes(request.param, ("unaligned.S",))


@pytest.fixture(params=["native", "python"])
def m(request, part, catalog):
    if request.param == "native" and load_error() is not None:
        pytest.skip(load_error())
    name, elf = part
    machine = Machine(catalog.mcu(name), ElfImage.open(elf), tracer=request.param)
    assert machine._align.kind == request.param
    return machine


def _buffer(m: Machine) -> int:
    """An 8-byte-aligned buffer holding WORDS and a bit more (zeros)."""
    base = m.alloc(64)
    m.write(base, np.array(WORDS, dtype="<u4").tobytes() + bytes(64 - 4 * len(WORDS)))
    return base


def _fault(m: Machine, fn: str, *args: int) -> str:
    with pytest.raises(EmulationFault) as ei:
        m.call(fn, *args)
    msg = str(ei.value)
    assert "\n" not in msg and ei.value.exit_code == 1
    assert "UsageFault" in msg and f"by {fn}+0x" in msg
    return msg


def test_aligned_multiword_accesses_give_the_right_result(m):
    base = _buffer(m)
    w = WORDS
    assert m.call("ldrd_sum", base).return_value == w[0] + w[1]
    assert m.call("ldrd_sum8", base).return_value == w[2] + w[3]
    assert m.call("ldm3_sum", base + 4).return_value == w[1] + w[2] + w[3]
    assert m.call("pop_like", base).return_value == w[0] - w[1]
    assert m.call("ldrex_word", base + 12).return_value == w[3]
    assert m.call("vldr_word", base + 16).return_value == w[4]
    assert m.call("it_ldrd", base, 1).return_value == w[0] + w[1]
    m.call("strd_pair", base + 24, 0xAAAA0001, 0xBBBB0002)
    assert m.read_array(base + 24, "<u4", 2).tolist() == [0xAAAA0001, 0xBBBB0002]
    assert m.call("stm2", base + 32, 7, 8).return_value == base + 40
    assert m.read_array(base + 32, "<u4", 2).tolist() == [7, 8]
    assert m.call("push_like", base + 48, 5, 6).return_value == base + 40
    assert m.read_array(base + 40, "<u4", 2).tolist() == [5, 6]


@pytest.mark.parametrize("skew", [1, 2, 3])
def test_unaligned_multiword_loads_fault(m, skew):
    base = _buffer(m)
    p = base + skew
    # the address each instruction would access first, by hand from unaligned.S
    for fn, kind, addr in (("ldrd_sum", "LDRD", p), ("ldrd_sum8", "LDRD", p + 8),
                           ("ldm3_sum", "LDM", p), ("pop_like", "LDM", p),
                           ("ldrex_word", "LDREX", p), ("vldr_word", "VLDR", p)):
        msg = _fault(m, fn, p)
        assert f"unaligned {kind} " in msg and f"at 0x{addr:08x}" in msg, msg
        assert m.mcu.core.name in msg
    assert "`ldrd r2, r3, [r0]`" in _fault(m, "ldrd_sum", p)
    assert "unaligned LDRD " in _fault(m, "it_ldrd", p, 1)  # in an IT block, taken


def test_fault_names_the_faulting_instruction_offset(m):
    base = _buffer(m)
    # it_ldrd: movs (0), movs (2), cmp (4), it (6), ldrdne (8)
    with pytest.raises(EmulationFault) as ei:
        m.call("it_ldrd", base + 2, 1)
    assert "by it_ldrd+0x8" in str(ei.value)
    assert ei.value.pc == m.image.function("it_ldrd").address + 8
    assert ei.value.address == base + 2


@pytest.mark.parametrize("skew", [1, 2, 3])
def test_unaligned_multiword_stores_fault_before_storing(m, skew):
    base = _buffer(m)
    before = m.read(base, 64)
    p = base + skew
    assert "unaligned STRD " in _fault(m, "strd_pair", p + 24, 1, 2)
    assert "unaligned STM " in _fault(m, "stm2", p + 32, 1, 2)
    msg = _fault(m, "push_like", p + 48, 1, 2)  # STMDB: first address p + 48 - 8
    assert "unaligned STMDB " in msg and f"at 0x{p + 40:08x}" in msg
    assert m.read(base, 64) == before  # the core faults before any store


def test_conditional_ldrd_not_executed_does_not_fault(m):
    base = _buffer(m)
    assert m.call("it_ldrd", base + 1, 0).return_value == 7


@pytest.mark.parametrize("skew", [1, 2, 3])
def test_unaligned_ldr_ldrh_str_are_fine(m, skew):
    base = _buffer(m)
    raw = m.read(base, 64)
    p = base + skew
    assert m.call("ldr_word", p).return_value == int.from_bytes(raw[skew:skew + 4], "little")
    assert m.call("ldrh_half", p).return_value == int.from_bytes(raw[skew:skew + 2], "little")
    m.call("str_word", p + 28, 0xCAFEF00D)
    assert m.read(p + 28, 4) == (0xCAFEF00D).to_bytes(4, "little")


def test_sites_agree_with_capstone(part, catalog):
    """Every LDRD/STRD/LDM/STM/LDREX/VLDR of the probe image with a base other than SP is
    found, with the offset of its first address; no other instruction is taken for one."""
    name, elf = part
    assert _check_sites(ElfImage.open(elf), catalog.mcu(name)) >= 10


@pytest.mark.parametrize("name", ["nRF52840", "MIMXRT1062"])
def test_sites_agree_with_capstone_on_compiled_kernels(catalog, default_toolchain, name):
    from mcusim.toolchain import Builder

    mcu = catalog.mcu(name)
    image = ElfImage.open(Builder(default_toolchain).build(mcu.core, [mcu])[0].elf)
    assert _check_sites(image, mcu) >= 10
    stack = {s.address: s for s in find_stack_sites(image)}
    _check_stack_sites(image, mcu, stack)


def _functions(image: ElfImage, mcu):
    """(capstone, its instructions) per function symbol, without the literal pools (the
    $d mapping symbols mark them; capstone would decode their words as instructions)."""
    import bisect

    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    with open(image.path, "rb") as f:  # pyelftools: a reader independent of mcusim.elf
        marks = sorted((int(s["st_value"]) & ~1, s.name[1])
                       for sec in ELFFile(f).iter_sections()
                       if isinstance(sec, SymbolTableSection)
                       for s in sec.iter_symbols() if s.name[:2] in ("$t", "$d"))
    keys = [a for a, _k in marks]

    def is_data(address: int) -> bool:
        i = bisect.bisect_right(keys, address) - 1
        return i >= 0 and marks[i][1] == "d"

    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    md.detail = True
    m = Machine(mcu, image)

    def code_runs(lo: int, hi: int):
        """[start, end) of the code between the mapping symbols in [lo, hi): each decoded
        on its own, since a linear sweep stops at the first data word that is no valid
        instruction (a literal pool of float constants, e.g. 0xce000000) and would miss
        the code after it."""
        cuts = sorted({lo, hi, *(a for a in keys if lo < a < hi)})
        for a, b in itertools.pairwise(cuts):
            if not is_data(a):
                yield a, b

    for sym in image.symbols.values():
        if sym.kind != "func" or not sym.size:
            continue
        addr = sym.address & ~1
        for a, b in code_runs(addr, addr + sym.size):
            yield md, (ins for ins in md.disasm(m.read(a, b - a), a)
                       if not is_data(ins.address))


def _check_stack_sites(image: ElfImage, mcu, stack: dict) -> None:
    """Every MOV SP, Rm / ADD SP, Rm / 32-bit SUB SP is a stack site with the new SP's
    formula; PUSH, 16-bit SUB/ADD SP, #imm are not."""
    for md, insns in _functions(image, mcu):
        for ins in insns:
            ops = ins.operands
            writes_sp = ops and ops[0].type == capstone.arm.ARM_OP_REG \
                and md.reg_name(ops[0].reg) == "sp" and ins.id in (
                    _A.ARM_INS_MOV, _A.ARM_INS_ADD, _A.ARM_INS_SUB, _A.ARM_INS_SUBW)
            if not writes_sp:
                continue
            last = ops[-1]
            if last.type == capstone.arm.ARM_OP_IMM and (ins.size == 2
                                                         or ins.id == _A.ARM_INS_ADD):
                assert ins.address not in stack, ins  # at most 508 bytes down, or up
                continue
            s = stack[ins.address]
            if last.type == capstone.arm.ARM_OP_IMM:
                assert (s.rn, s.rm, s.offset) == (13, None, -last.imm), ins
            else:
                assert _REG_NAMES[s.rm] == md.reg_name(last.reg), ins
                assert s.sign == (-1 if ins.id == _A.ARM_INS_SUB else 1), ins
                assert s.rn == (None if ins.id == _A.ARM_INS_MOV else 13), ins


def _check_sites(image: ElfImage, mcu) -> int:
    sites = {s.address: s for s in find_align_sites(image, fpu=True)}
    found = 0
    decoded = set()
    for md, insns in _functions(image, mcu):
        for ins in insns:
            decoded.add(ins.address)
            mem = [op for op in ins.operands if op.type == capstone.arm.ARM_OP_MEM]
            multi = ins.id in _MULTI
            word = ins.id in _WORD
            base = ins.operands[0].reg if multi else mem[0].mem.base if word else None
            if not (multi or word) or md.reg_name(base) in ("sp", "pc"):
                assert ins.address not in sites, ins
                continue
            found += 1
            s = sites[ins.address]
            if multi:
                words = sum(2 if md.reg_name(op.reg).startswith("d") else 1
                            for op in ins.operands[1:])
                offset = -4 * words if ins.id in _DB else 0
            else:  # post-indexed (an immediate operand after the memory one): base itself
                post = ins.operands[-1].type == capstone.arm.ARM_OP_IMM
                offset = 0 if post else mem[0].mem.disp
            assert md.reg_name(base) == _REG_NAMES[s.rn], ins
            assert s.offset == offset, (ins.mnemonic, ins.op_str, s)
    assert set(sites) <= decoded  # no site inside data or the middle of an instruction
    return found


def test_cli_unaligned_ldrd_is_one_line_exit_1(capsys, build_probes):
    elf = build_probes("nRF52840", ("unaligned.S",))
    code = main(["run", elf, "-f", "ldrd_sum", "-m", "nRF52840", "--args", "0x20001002"])
    out, err = capsys.readouterr()
    assert code == 1
    line = err.strip()
    assert "\n" not in line and "unaligned LDRD" in line and "0x20001002" in line
    assert "ldrd_sum+0x0" in line
    code = main(["run", elf, "-f", "ldr_word", "-m", "nRF52840", "--args", "0x20001002",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["instructions"] == 2


def test_stack_sites_agree_with_capstone(part, catalog):
    name, elf = part
    image = ElfImage.open(elf)
    stack = {s.address: s for s in find_stack_sites(image)}
    # SUB.W SP, #4096 (frame_4k), SUBW SP (frame_subw), SUB.W and ADD.W SP, r0, LSL #2 (vla)
    assert sorted(s.kind for s in stack.values()) == ["ADD SP", "SUB SP", "SUB SP", "SUB SP"]
    _check_stack_sites(image, catalog.mcu(name), stack)


def test_big_frames_measured_and_overflow_past_the_guard_band(m):
    """Frames made by 32-bit SP writes: exact use within the reservation; an overflow far
    past the painted guard band is still seen (from the SP the instruction sets)."""
    from mcusim.errors import StackOverflow
    from mcusim.machine import STACK_GUARD

    reserved = m.stack_top - m.stack_limit
    assert m.call("frame_4k", 9).stack_bytes == 4096 <= reserved
    for words in (2, 100, reserved // 4):
        assert m.call("vla", words, 1).stack_bytes == 4 * words
    assert m.call("frame_subw", 3).stack_bytes == 4092
    for words in (reserved // 4 + 2, (reserved + 4 * STACK_GUARD) // 4):
        with pytest.raises(StackOverflow) as ei:
            m.call("vla", words, 1)
        assert f"used at least {4 * words} bytes" in str(ei.value)
        assert f"{reserved} are reserved" in str(ei.value)


def test_alignment_checks_change_no_result_of_a_training_step(monkeypatch, catalog):
    """MCUSIM_CHECK_ALIGNMENT=0 only removes the hooks: the step's cycles, rows and RAM are
    those of the checked run."""
    from mcusim.analyze import simulate_step

    mcu = catalog.mcu("nRF52840")
    monkeypatch.setenv("MCUSIM_CHECK_ALIGNMENT", "0")
    off = simulate_step("digits-cnn", mcu)
    monkeypatch.setenv("MCUSIM_CHECK_ALIGNMENT", "1")
    on = simulate_step("digits-cnn", mcu)
    assert off.cycles == on.cycles and off.peak_ram_bytes == on.peak_ram_bytes
    assert [(r.layer, r.phase, r.cycles) for r in off.rows] == \
        [(r.layer, r.phase, r.cycles) for r in on.rows]
    monkeypatch.delenv("MCUSIM_CHECK_ALIGNMENT")
    from mcusim.machine import Machine

    assert Machine.kernel_alignment_checks()  # on by default
