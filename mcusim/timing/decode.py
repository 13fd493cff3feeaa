"""Decode Thumb code with Capstone into instruction records with an instruction class.

The class vocabulary is fixed here (it is ISA knowledge, not core data); each core's cost
table in cost_models/ gives the cycles of every class it can execute.
"""

from __future__ import annotations

from dataclasses import dataclass

import capstone
from capstone import arm_const as ac

# Base mnemonics (Capstone insn_name(): no condition code, no .w/.n, no "s" suffix).
_ALU = frozenset("""
adc add addw adr and asr bic cmn cmp eor lsl lsr mov movw movt mvn neg nop orn orr ror rrx
rsb sbc sub subw teq tst yield movs hint
""".split())
_BITFIELD = frozenset("bfc bfi ubfx sbfx clz rbit rev rev16 revsh sxtb sxth uxtb uxth".split())
_DSP_MAC = frozenset("""
smlad smladx smlsd smlsdx smuad smuadx smusd smusdx smlald smlaldx smlsld smlsldx smmla
smmlar smmls smmlsr smmul smmulr smlabb smlabt smlatb smlatt smlawb smlawt smulbb smulbt
smultb smultt smulwb smulwt smlalbb smlalbt smlaltb smlaltt
""".split())
_DSP = frozenset("""
sxtb16 uxtb16 sxtab sxtah sxtab16 uxtab uxtah uxtab16 ssat ssat16 usat usat16 pkhbt pkhtb
sel usad8 usada8 qadd qsub qdadd qdsub qadd8 qadd16 qsub8 qsub16 qasx qsax sadd8 sadd16
ssub8 ssub16 sasx ssax shadd8 shadd16 shsub8 shsub16 shasx shsax uadd8 uadd16 usub8 usub16
uasx usax uhadd8 uhadd16 uhsub8 uhsub16 uhasx uhsax uqadd8 uqadd16 uqsub8 uqsub16 uqasx uqsax
""".split())
_LOAD = frozenset("ldr ldrt ldrex".split())
_LOAD_NARROW = frozenset("ldrb ldrh ldrsb ldrsh ldrbt ldrht ldrsbt ldrsht ldrexb ldrexh".split())
_STORE = frozenset("str strb strh strt strbt strht strex strexb strexh".split())
_SYSTEM = frozenset("mrs msr cps cpsid cpsie svc bkpt wfi wfe sev udf clrex".split())
_PRELOAD = frozenset("pld pldw pli".split())
_BARRIER = frozenset("dmb dsb isb".split())
_FP_ALU = frozenset("""
vadd vsub vabs vneg vcmp vcmpe vcvt vcvta vcvtn vcvtp vcvtm vcvtb vcvtt vcvtr vsel vmaxnm
vminnm vrinta vrintn vrintp vrintm vrintx vrintz vrintr vselgt vselge vseleq vselvs
""".split())
_FP_MUL = frozenset("vmul vnmul".split())
_FP_MAC = frozenset("vmla vmls vnmla vnmls".split())
_FP_FMA = frozenset("vfma vfms vfnma vfnms".split())
_FP_SYS = frozenset("vmrs vmsr fmstat".split())
_ACC_PAIR = frozenset("""smlal umlal umaal smlald smlaldx smlsld smlsldx smlalbb smlalbt smlaltb
smlaltt""".split())

CLASSES = (
    "alu", "alu_shift", "bitfield", "mov_pc", "mul", "mac", "mul_long", "div", "dsp",
    "dsp_mac", "load", "load_narrow", "store", "store_reg", "load_double", "store_double",
    "ldm", "stm", "ldm_pc", "load_pc", "branch", "branch_cond", "call", "branch_reg",
    "table_branch", "it", "barrier", "system", "fp_alu", "fp_mul", "fp_mac", "fp_fma",
    "fp_div", "fp_sqrt", "fp_load", "fp_store", "fp_ldm", "fp_stm", "fp_mov", "fp_mov_core",
    "fp_sys", "fp_dp_alu", "fp_dp_mul", "fp_dp_mac", "fp_dp_div", "preload", "unclassified",
)
BRANCH_CLASSES = frozenset(
    ("mov_pc", "ldm_pc", "load_pc", "branch", "branch_cond", "call", "branch_reg",
     "table_branch"))

_PC = ac.ARM_REG_PC


@dataclass(frozen=True)
class Insn:
    """One decoded instruction and what the timing rules need to know about it."""

    address: int
    size: int
    name: str  # base mnemonic (Capstone insn_name)
    text: str  # full disassembly
    cls: str
    reads: frozenset[int]  # Capstone register ids read (incl. implicit)
    writes: frozenset[int]
    nregs: int = 0  # registers transferred by LDM/STM/PUSH/POP/VLDM/VSTM
    address_regs: frozenset[int] = frozenset()  # registers forming a load/store address
    conditional: bool = False  # has a condition (branch) or sits in an IT block
    writes_flags: bool = False
    acc_regs: frozenset[int] = frozenset()  # accumulator inputs of MACs (read late)
    writeback: frozenset[int] = frozenset()  # base registers updated by the address mode


def make_decoder() -> capstone.Cs:
    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    md.detail = True
    return md


def _is_dp(insn: capstone.CsInsn) -> bool:
    return ".f64" in insn.mnemonic or any(
        op.type == ac.ARM_OP_REG and ac.ARM_REG_D0 <= op.reg <= ac.ARM_REG_D31
        for op in insn.operands)


def classify(insn: capstone.CsInsn) -> str:
    """The instruction class of one Capstone instruction (with detail)."""
    name = insn.insn_name()
    ops = insn.operands
    _reads, writes = insn.regs_access()
    writes_pc = _PC in writes
    if name in _ALU:
        if writes_pc:
            return "mov_pc"
        if name in ("ror", "rrx") or any(op.shift.type != 0 for op in ops):
            return "alu_shift"
        if name in ("lsl", "lsr", "asr") and len(ops) == 3 and ops[2].type == ac.ARM_OP_REG:
            return "alu_shift"  # register-controlled shift
        return "alu"
    if name in _BITFIELD:
        return "bitfield"
    if name == "mul":
        return "mul"
    if name in ("mla", "mls"):
        return "mac"
    if name in ("smull", "umull", "smlal", "umlal", "umaal"):
        return "mul_long"
    if name in ("sdiv", "udiv"):
        return "div"
    if name in _DSP_MAC:
        return "dsp_mac"
    if name in _DSP:
        return "dsp"
    if name in _LOAD or name in _LOAD_NARROW:
        if writes_pc:
            return "ldm_pc" if is_pop_pc(insn) else "load_pc"
        return "load" if name in _LOAD else "load_narrow"
    if name in _STORE:
        mem = next((op for op in ops if op.type == ac.ARM_OP_MEM), None)
        if mem is not None and mem.mem.index != 0 and name in ("str", "strb", "strh"):
            return "store_reg"
        return "store"
    if name == "ldrd":
        return "load_double"
    if name == "strd":
        return "store_double"
    if name in ("ldm", "ldmdb", "pop"):
        return "ldm_pc" if writes_pc else "ldm"
    if name in ("stm", "stmdb", "push"):
        return "stm"
    if name == "b":
        return "branch_cond" if insn.cc not in (ac.ARM_CC_AL, ac.ARM_CC_INVALID) else "branch"
    if name in ("cbz", "cbnz"):
        return "branch_cond"
    if name == "bl":
        return "call"
    if name in ("bx", "blx"):
        return "branch_reg"
    if name in ("tbb", "tbh"):
        return "table_branch"
    if name == "it":
        return "it"
    if name in _BARRIER:
        return "barrier"
    if name in _PRELOAD:
        return "preload"
    if name in _SYSTEM:
        return "system"
    if name.startswith("v") or name == "fmstat":
        return _classify_fp(insn, name)
    if name in ("fconsts", "fconstd"):
        return "fp_mov"
    return "unclassified"


def is_pop_pc(insn: capstone.CsInsn) -> bool:
    """`LDR PC, [SP], #4`: gcc's single-register return, the T3 encoding of POP {PC}.  A
    return is a return whatever its encoding: it is timed as POP {PC} (class ldm_pc)."""
    mem = next((op for op in insn.operands if op.type == ac.ARM_OP_MEM), None)
    imm = [op.imm for op in insn.operands if op.type == ac.ARM_OP_IMM]
    return (insn.insn_name() == "ldr" and mem is not None and mem.mem.base == ac.ARM_REG_SP
            and mem.mem.index == 0 and bool(getattr(insn, "post_index", False))
            and imm == [4])


def _classify_fp(insn: capstone.CsInsn, name: str) -> str:
    dp = _is_dp(insn)
    if name in _FP_SYS:
        return "fp_sys"
    if name == "vldr":
        return "fp_load"
    if name == "vstr":
        return "fp_store"
    if name in ("vldmia", "vldmdb", "vpop", "vldm"):
        return "fp_ldm"
    if name in ("vstmia", "vstmdb", "vpush", "vstm"):
        return "fp_stm"
    if name == "vmov":
        core = any((op.type == ac.ARM_OP_REG and ac.ARM_REG_R0 <= op.reg <= ac.ARM_REG_R12)
                   or (op.type == ac.ARM_OP_REG and op.reg in (ac.ARM_REG_SP, ac.ARM_REG_LR))
                   for op in insn.operands)
        return "fp_mov_core" if core else "fp_mov"
    if name in ("vdiv", "vsqrt"):
        if dp:
            return "fp_dp_div"
        return "fp_div" if name == "vdiv" else "fp_sqrt"
    if name in _FP_ALU:
        return "fp_dp_alu" if dp else "fp_alu"
    if name in _FP_MUL:
        return "fp_dp_mul" if dp else "fp_mul"
    if name in _FP_MAC:
        return "fp_dp_mac" if dp else "fp_mac"
    if name in _FP_FMA:
        return "fp_dp_mac" if dp else "fp_fma"
    return "unclassified"


def decode_block(md: capstone.Cs, code: bytes, address: int) -> list[Insn]:
    """All instructions of one block; an undecodable halfword becomes an "unclassified"
    2-byte record (Unicorn would have faulted on it had it executed)."""
    out: list[Insn] = []
    offset = 0
    it_left = 0
    while offset < len(code):
        for insn in md.disasm(code[offset:], address + offset):
            out.append(_record(insn, it_left > 0))
            if insn.insn_name() == "it":
                it_left = len(insn.mnemonic) - 1  # it, itt, ite, ittt, ...
            elif it_left:
                it_left -= 1
            offset += insn.size
        if offset < len(code):  # Capstone stopped at an undecodable halfword
            out.append(Insn(address + offset, 2, "?", "(undecodable)", "unclassified",
                            frozenset(), frozenset()))
            offset += 2
    return out


def _record(insn: capstone.CsInsn, in_it: bool) -> Insn:
    cls = classify(insn)
    reads, writes = insn.regs_access()
    nregs = 0
    if cls == "ldm_pc" and insn.insn_name() == "ldr":
        nregs = 1  # LDR PC, [SP], #4 = POP {PC}
    elif cls in ("ldm", "stm", "ldm_pc", "fp_ldm", "fp_stm"):
        regs = [op.reg for op in insn.operands if op.type == ac.ARM_OP_REG]
        name = insn.insn_name()
        if name not in ("push", "pop", "vpush", "vpop"):
            regs = regs[1:]  # the base register
        nregs = len(regs)
        if cls.startswith("fp") and any(ac.ARM_REG_D0 <= r <= ac.ARM_REG_D31 for r in regs):
            nregs *= 2  # a double is two transfers
    addr_regs: frozenset[int] = frozenset()
    for op in insn.operands:
        if op.type == ac.ARM_OP_MEM:
            addr_regs = frozenset(r for r in (op.mem.base, op.mem.index) if r)
    if cls in ("ldm", "stm", "ldm_pc", "fp_ldm", "fp_stm") and insn.insn_name() != "ldr":
        base = insn.operands[0].reg if insn.insn_name() not in ("push", "pop", "vpush",
                                                                 "vpop") else ac.ARM_REG_SP
        addr_regs = frozenset((base,))
    cond = insn.cc not in (ac.ARM_CC_AL, ac.ARM_CC_INVALID) or in_it or \
        insn.insn_name() in ("cbz", "cbnz")
    acc: frozenset[int] = frozenset()
    regs = [op.reg for op in insn.operands if op.type == ac.ARM_OP_REG]
    if cls in ("fp_mac", "fp_fma") and regs:
        acc = frozenset(regs[:1])
    elif cls in ("mul_long", "dsp_mac") and insn.insn_name() in _ACC_PAIR and len(regs) >= 2:
        acc = frozenset(regs[:2])
    elif cls in ("mac", "dsp_mac") and len(regs) == 4:
        acc = frozenset(regs[3:])
    wb: frozenset[int] = frozenset()
    if insn.writeback or insn.insn_name() in ("push", "pop", "vpush", "vpop"):
        wb = addr_regs & frozenset(writes)
    flags = bool(insn.update_flags) or insn.insn_name() in ("cmp", "cmn", "tst", "teq")
    return Insn(insn.address, insn.size, insn.insn_name(), f"{insn.mnemonic} {insn.op_str}".strip(),
                cls, frozenset(reads), frozenset(writes), nregs, addr_regs, cond, flags, acc,
                wb)


def is_wide(halfword: int) -> bool:
    """Does a Thumb instruction starting with this halfword have 32 bits?"""
    return (halfword >> 11) in (0b11101, 0b11110, 0b11111)
