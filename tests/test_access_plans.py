"""Load/store addresses followed from block-entry registers (mcusim/trace/access.py).

Two checks that do not lean on the planner's own arithmetic:
  * hand-written blocks whose addresses are worked out by hand below;
  * compiled kernels run with a memory hook (allowed in a test: speed does not matter
    and the blocks checked contain no IT block): every address the plan computes from
    the registers at block entry must be the address Unicorn actually accessed.
"""

from __future__ import annotations

import subprocess

import pytest
import unicorn
from unicorn import arm_const

from mcusim.timing.decode import decode_block, make_decoder
from mcusim.trace.access import M4_POLICY, M7_POLICY, make_planner_decoder, plan_block

U = arm_const


def _assemble(tmp_path, text: str) -> bytes:
    src = tmp_path / "b.s"
    src.write_text(".syntax unified\n.thumb\n" + text + "\n")
    obj = tmp_path / "b.o"
    subprocess.run(["arm-none-eabi-as", "-mcpu=cortex-m7", "-mfpu=fpv5-d16", str(src), "-o",
                    str(obj)], check=True)
    raw = tmp_path / "b.bin"
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(obj), str(raw)], check=True)
    return raw.read_bytes()


def _addresses(plan, regs: dict[int, int]) -> list[tuple[int, int]]:
    out = []
    for a in plan.accesses:
        ea = regs[plan.regs[a.base]] + a.delta
        if a.index >= 0:
            ea += a.sign * (regs[plan.regs[a.index]] << a.shift)
        out.append((a.address, ea & 0xFFFFFFFF))
    return out


needs_as = pytest.mark.skipif(
    subprocess.run(["which", "arm-none-eabi-as"], capture_output=True).returncode != 0,
    reason="needs arm-none-eabi-as")


@needs_as
def test_hand_block(tmp_path):
    """r1 = 0x100, r2 = 3 at entry.  Worked by hand:
       ldr r0, [r1, #8]        0x108
       add r1, r1, #4          r1 = 0x104
       ldrh r3, [r1, #2]!      0x106, r1 = 0x106
       ldr r4, [r1], #4        0x106, r1 = 0x10a
       ldr r5, [r1, r2, lsl #2]  0x10a + 12 = 0x116
       str r0, [r1, #-2]       0x108
       mov r6, r1              r6 = 0x10a
       ldr r7, [r6]            0x10a
       ldr r1, [r1]            0x10a (then r1 is a loaded value)
       ldr r0, [r1]            not followed
       ldrb r0, [r6, #1]       byte: not planned on the M4, 0x10b on the M7"""
    code = _assemble(tmp_path, """
        ldr r0, [r1, #8]
        add r1, r1, #4
        ldrh r3, [r1, #2]!
        ldr r4, [r1], #4
        ldr r5, [r1, r2, lsl #2]
        str r0, [r1, #-2]
        mov r6, r1
        ldr r7, [r6]
        ldr r1, [r1]
        ldr r0, [r1]
        ldrb r0, [r6, #1]
    """)
    base = 0x1000
    insns = decode_block(make_decoder(), code, base)
    at = [i.address for i in insns]
    md = make_planner_decoder()
    regs = {U.UC_ARM_REG_R1: 0x100, U.UC_ARM_REG_R2: 3}
    m4 = plan_block(md, code, base, M4_POLICY)
    assert _addresses(m4, regs) == [(at[0], 0x108), (at[2], 0x106), (at[3], 0x106),
                                    (at[4], 0x116), (at[5], 0x108), (at[7], 0x10A),
                                    (at[8], 0x10A)]
    assert [a.size for a in m4.accesses] == [4, 2, 4, 4, 4, 4, 4]
    assert [u[0] for u in m4.unknown] == [at[9]]
    m7 = plan_block(md, code, base, M7_POLICY)  # loads only, bytes too
    assert _addresses(m7, regs) == [(at[0], 0x108), (at[2], 0x106), (at[3], 0x106),
                                    (at[4], 0x116), (at[7], 0x10A), (at[8], 0x10A),
                                    (at[10], 0x10B)]
    # every register advances by 10 over the block or is overwritten: not invariant
    assert not m4.invariant


@needs_as
def test_loop_invariance(tmp_path):
    """A self-loop whose pointers advance by 4 and 8 keeps every word's alignment (the M4's
    counts repeat) but not whether the two loads share a bank (4 and 8 differ modulo 8:
    the M7's do not); by 8 and 8 both repeat; a byte pointer advancing by 1 keeps nothing
    a word load could rely on."""
    md = make_planner_decoder()
    code = _assemble(tmp_path, "ldr r0, [r1], #4\nldr r2, [r3], #8\nsubs r4, #1\nbne .")
    assert plan_block(md, code, 0x1000, M4_POLICY).invariant
    assert not plan_block(md, code, 0x1000, M7_POLICY).invariant
    code = _assemble(tmp_path, "ldr r0, [r1], #8\nldr r2, [r3], #8\nsubs r4, #1\nbne .")
    assert plan_block(md, code, 0x1000, M4_POLICY).invariant
    assert plan_block(md, code, 0x1000, M7_POLICY).invariant
    code = _assemble(tmp_path, "ldr r0, [r1], #1\nsubs r4, #1\nbne .")
    assert not plan_block(md, code, 0x1000, M4_POLICY).invariant


@needs_as
def test_stack_accesses_are_static(tmp_path):
    """SP is a multiple of 4 (SP0 at entry; PUSH moves it to SP0 - 8): the loads read SP0 +
    0, + 8, + 12, - 2, - 3.  Alignment: [sp, #6] is at a halfword (+1 class), [sp, #5]
    odd (+2 class).  Banks (bit 2) against the load before: SP0 + 8 and SP0 share one
    (8 = 0b1000); SP0 + 12 and SP0 + 8 do not; SP0 - 2 (in the word at SP0 - 4) and
    SP0 + 12 do (both have bit 2 opposite to SP0's); SP0 - 3 and SP0 - 2 (one word) do."""
    md = make_planner_decoder()
    code = _assemble(tmp_path, """
        push {r4, lr}
        ldr r0, [sp, #8]
        ldr r1, [sp, #16]
        ldr r2, [sp, #20]
        ldr r3, [sp, #6]
        ldr r5, [sp, #5]
    """)
    p = plan_block(md, code, 0x1000, M7_POLICY)
    assert not p.accesses and not p.unknown and not p.regs  # nothing to read at run time
    assert [(st[3], st[4], st[5]) for st in p.static] == [
        (0, 0, 0), (0, 0, 1), (0, 0, 0), (1, 0, 1), (0, 1, 1)]


@pytest.mark.parametrize(("mcu_name", "policy"), [("nRF52840", M4_POLICY),
                                                  ("MIMXRT1062", M7_POLICY)])
def test_plans_match_the_accesses_unicorn_makes(catalog, default_toolchain, mcu_name, policy):
    from mcusim.demo import sample_fc_layer
    from mcusim.elf import ElfImage
    from mcusim.machine import Machine
    from mcusim.toolchain import Builder

    mcu = catalog.mcu(mcu_name)
    elf = Builder(default_toolchain).build(mcu.core, [mcu])[0].elf
    m = Machine(mcu, ElfImage.open(elf), tracer="python")
    x, w, b, q = sample_fc_layer(37, 5)  # odd sizes: unaligned rows
    args = (m.put(x), m.put(w), m.put(b), m.alloc(5), 37, 5, m.put(q.pack()), 0)
    md = make_planner_decoder()
    dec = make_decoder()
    seen: list[tuple[int, int, dict, list]] = []  # (block, size, entry regs, accesses)
    regs_of = [U.UC_ARM_REG_R0 + i for i in range(13)] + [U.UC_ARM_REG_SP, U.UC_ARM_REG_LR]

    def on_block(uc, address, size, _):
        seen.append((address, size, {r: uc.reg_read(r) for r in regs_of}, []))

    def on_mem(uc, access, address, size, value, _):
        if seen:
            seen[-1][3].append(address)

    m.uc.hook_add(unicorn.UC_HOOK_BLOCK, on_block)
    m.uc.hook_add(unicorn.UC_HOOK_MEM_READ | unicorn.UC_HOOK_MEM_WRITE, on_mem)
    m.call("fqt_fc_forward", *args)
    checked = 0
    for address, size, regs, actual in seen:
        code = m.read(address, size)
        insns = decode_block(dec, code, address)
        if any(i.name == "it" for i in insns):
            continue
        # the accesses each instruction makes, in order
        per = []
        for i in insns:
            n = 0
            if i.cls in ("load", "load_narrow", "store", "store_reg", "fp_load", "fp_store",
                         "load_pc"):
                n = 1
            elif i.cls in ("load_double", "store_double"):
                n = 2
            elif i.cls in ("ldm", "stm", "ldm_pc", "fp_ldm", "fp_stm"):
                n = i.nregs
            per += [i.address] * n
        if len(per) != len(actual):
            continue  # e.g. a 64-bit VLDR split differently: not this test's concern
        first = {}
        for insn_at, addr in zip(per, actual, strict=True):
            first.setdefault(insn_at, addr)
        plan = plan_block(md, code, address, policy)
        for insn_at, ea in _addresses(plan, regs):
            assert first[insn_at] == ea, f"0x{insn_at:x}: plan 0x{ea:x}, " \
                f"actual 0x{first[insn_at]:x}"
            checked += 1
        for insn_at, size, _load, half, byte, _same in plan.static:  # SP-based
            ea = first[insn_at]
            assert half == int((size == 4 and ea % 4 == 2) or (size == 2 and ea % 2 == 1))
            assert byte == int(size == 4 and ea % 2 == 1)
            checked += 1
    assert checked > 100
