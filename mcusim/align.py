"""ARMv7-M alignment faults that Unicorn does not raise, and the lowest SP of a call.

On the Cortex-M3/M4/M7 only LDR, LDRT, LDRH, LDRHT, LDRSH, LDRSHT, STR, STRT, STRH and
STRHT may access an unaligned address (with the reset value of CCR.UNALIGN_TRP); every other
load and store - LDRD/STRD, LDM/STM (PUSH/POP), LDREX/STREX, VLDR/VSTR, VLDM/VSTM
(VPUSH/VPOP) - raises an UNALIGNED UsageFault when its address is not word-aligned, whatever
CCR says (Arm Cortex-M7 Devices Generic User Guide, DUI 0646C, 3.3.5 "Address alignment";
Cortex-M7 TRM, DDI 0489F, 2.4.2; the Cortex-M3/M4 Generic User Guides say the same).
Unicorn (QEMU 5) executes them at any address.

Checked without a memory hook: the image is decoded once for these instructions (every
halfword of the executable segments, like the divide sites) and a UC_HOOK_CODE hook is put
on each of their addresses only; it reads the base register before the instruction runs
(Unicorn calls it only when an IT block's condition passes) and stops the emulator in front
of it when base + offset is not a multiple of 4.  The hook is native (trace/_alignhook.c)
when the extension is built, else Python.  A site that is really data or the middle of
another instruction never executes as an instruction, so its hook never fires.

Sites based on SP are not hooked: the architecture keeps SP word-aligned (SP[1:0] are
zero; a call starts with an 8-byte-aligned SP), so PUSH/POP and SP-relative LDRD/LDM cannot
be unaligned; PC-relative (literal) forms use Align(PC, 4) and cannot be either.

Stack sites (every core): the same hook on each write of SP that can lower it by more than
the 508 bytes of a 16-bit SUB SP (MOV SP, Rm; ADD SP, Rm; SUB.W/SUBW SP, SP, #imm;
SUB/ADD.W SP, SP, Rm) keeps the lowest SP it sets.  PUSH, STMDB/STR with SP write-back and
a 16-bit SUB SP move SP by at most 508 bytes before the next push writes below it, so a
stack growing through its limit that way writes into the painted guard band
(mcusim.machine.STACK_GUARD); a larger drop is seen here.
"""

from __future__ import annotations

import ctypes
import weakref
from dataclasses import dataclass

import numpy as np
import unicorn
from unicorn import arm_const

from mcusim.elf import ElfImage

_SP, _PC = 13, 15


@dataclass(frozen=True)
class AlignSite:
    """v = R[rn] + offset + sign * (R[rm] << shift) (rn/rm None: 0): for an alignment site
    the first address accessed, for a stack site (stack=True) the new SP."""

    address: int
    rn: int | None  # register number (0-14)
    offset: int
    kind: str  # "LDRD", "STM", "MOV SP" ... for the message
    rm: int | None = None
    sign: int = 1
    shift: int = 0
    stack: bool = False


def find_stack_sites(image: ElfImage) -> list[AlignSite]:
    """Every write of SP that can lower it by more than 508 bytes (any halfword of the
    executable segments)."""
    sites: list[AlignSite] = []
    for seg in image.segments:
        if not seg.flags & 1:
            continue
        hw = np.frombuffer(seg.data[: len(seg.data) // 2 * 2], dtype="<u2").astype(np.int64)
        if len(hw) < 1:
            continue
        nxt = np.append(hw[1:], 0)
        cand = ((hw & 0xFF07) == 0x4605) | ((hw & 0xFFEF) == 0xEA4F) | \
            ((hw & 0xFBEF) == 0xF1AD) | ((hw & 0xFBFF) == 0xF2AD) | ((hw & 0xFFEF) == 0xEB0D) \
            | ((hw & 0xFFEF) == 0xEBAD) | ((hw & 0xFF07) == 0x4405)
        for i in np.nonzero(cand)[0]:
            site = decode_stack_site(seg.vaddr + 2 * int(i), int(hw[i]), int(nxt[i]))
            if site is not None:
                sites.append(site)
    return _at_instructions(sites, image)


def decode_stack_site(address: int, h1: int, h2: int) -> AlignSite | None:
    """The stack site of the instruction whose halfwords are h1, h2, or None."""
    if (h1 & 0xFF87) == 0x4685:  # MOV SP, Rm (16-bit)
        rm = (h1 >> 3) & 0xF
        return None if rm in (_SP, _PC) else AlignSite(address, None, 0, "MOV SP", rm,
                                                       stack=True)
    if (h1 & 0xFF87) == 0x4485:  # ADD SP, Rm (16-bit)
        rm = (h1 >> 3) & 0xF
        return None if rm in (_SP, _PC) else AlignSite(address, _SP, 0, "ADD SP", rm,
                                                       stack=True)
    if (h2 & 0x8F00) != 0x0D00:  # 32-bit forms: Rd = SP
        return None
    if (h1 & 0xFFEF) == 0xEA4F:  # MOV.W SP, Rm (no shift)
        rm = h2 & 0xF
        if h2 & 0x70F0 or rm in (_SP, _PC):
            return None
        return AlignSite(address, None, 0, "MOV SP", rm, stack=True)
    imm12 = ((h1 >> 10) & 1) << 11 | ((h2 >> 12) & 7) << 8 | (h2 & 0xFF)
    if (h1 & 0xFBEF) == 0xF1AD:  # SUB.W SP, SP, #const
        return AlignSite(address, _SP, -_thumb_expand_imm(imm12), "SUB SP", stack=True)
    if (h1 & 0xFBFF) == 0xF2AD:  # SUBW SP, SP, #imm12
        return AlignSite(address, _SP, -imm12, "SUB SP", stack=True)
    if (h1 & 0xFFEF) in (0xEB0D, 0xEBAD):  # ADD.W / SUB.W SP, SP, Rm, LSL #n
        rm = h2 & 0xF
        if (h2 >> 4) & 3 or rm in (_SP, _PC):
            return None
        shift = ((h2 >> 12) & 7) << 2 | (h2 >> 6) & 3
        sub = (h1 & 0xFFEF) == 0xEBAD
        return AlignSite(address, _SP, 0, "SUB SP" if sub else "ADD SP", rm,
                         -1 if sub else 1, shift, stack=True)
    return None


def _thumb_expand_imm(imm12: int) -> int:
    """ThumbExpandImm (ARMv7-M ARM A5.3.2)."""
    imm8 = imm12 & 0xFF
    if imm12 >> 10 == 0:
        return [imm8, imm8 * 0x00010001, imm8 * 0x01000100, imm8 * 0x01010101][imm12 >> 8 & 3]
    value, rot = 0x80 | (imm12 & 0x7F), imm12 >> 7
    return ((value >> rot) | (value << (32 - rot))) & 0xFFFFFFFF


def instruction_starts(image: ElfImage) -> set[int] | None:
    """The address of every Thumb instruction of the image, from its ARM mapping symbols
    ($t code, $d data: ELF for the Arm Architecture, 5.5.5) and the Thumb length rule; None
    when the image has none (stripped): then every halfword counts."""
    marks = image.mapping_symbols()
    if not any(thumb for _a, thumb in marks):
        return None
    marks.sort()
    starts: set[int] = set()
    for seg in image.segments:
        if not seg.flags & 1:
            continue
        data, lo, hi = seg.data, seg.vaddr, seg.vaddr + len(seg.data)
        inside = [(a, t) for a, t in marks if lo <= a < hi]
        for i, (a, thumb) in enumerate(inside):
            if not thumb:
                continue
            end = inside[i + 1][0] if i + 1 < len(inside) else hi
            while a + 2 <= end:
                starts.add(a)
                a += 4 if data[a - lo + 1] >> 3 >= 0x1D else 2
    return starts


def _at_instructions(sites: list[AlignSite], image: ElfImage) -> list[AlignSite]:
    starts = instruction_starts(image)
    return sites if starts is None else [s for s in sites if s.address in starts]


def find_align_sites(image: ElfImage, fpu: bool) -> list[AlignSite]:
    """Every instruction of the image (at any halfword of its executable segments, or only
    at its instructions when the image has mapping symbols) that needs a word-aligned
    address on ARMv7-M, except SP- and PC-based ones."""
    sites: list[AlignSite] = []
    for seg in image.segments:
        if not seg.flags & 1:  # PF_X
            continue
        hw = np.frombuffer(seg.data[: len(seg.data) // 2 * 2], dtype="<u2").astype(np.int64)
        if len(hw) < 1:
            continue
        nxt = np.append(hw[1:], 0)
        for i in np.nonzero(_candidates(hw, nxt, fpu))[0]:
            site = decode_site(seg.vaddr + 2 * int(i), int(hw[i]), int(nxt[i]), fpu)
            if site is not None:
                sites.append(site)
    return _at_instructions(sites, image)


def _candidates(hw: np.ndarray, nxt: np.ndarray, fpu: bool) -> np.ndarray:
    mask = ((hw & 0xF000) == 0xC000) | ((hw & 0xFE00) == 0xE800)  # LDM/STM T1; LDRD..LDM
    if fpu:
        mask |= ((hw & 0xFE00) == 0xEC00) & ((nxt & 0x0E00) == 0x0A00)
    return mask


def decode_site(address: int, h1: int, h2: int, fpu: bool) -> AlignSite | None:
    """The alignment site of the instruction whose halfwords are h1, h2, or None."""
    if (h1 & 0xF000) == 0xC000:  # LDMIA/STMIA Rn!, {list} (16-bit, T1)
        if h1 & 0xFF == 0:
            return None
        return AlignSite(address, (h1 >> 8) & 7, 0, "LDM" if h1 & 0x0800 else "STM")
    rn = h1 & 0xF
    if rn in (_SP, _PC):
        return None
    if (h1 & 0xFE40) == 0xE840:  # LDRD/STRD (immediate) or LDREX/STREX
        load = bool(h1 & 0x10)
        if h1 & 0x0120:  # P or W set: LDRD/STRD T1
            p, u = h1 & 0x100, h1 & 0x80
            imm = 4 * (h2 & 0xFF)
            return AlignSite(address, rn, (imm if u else -imm) if p else 0,
                             "LDRD" if load else "STRD")
        if (h1 & 0xFFE0) == 0xE840:  # LDREX/STREX T1
            return AlignSite(address, rn, 4 * (h2 & 0xFF), "LDREX" if load else "STREX")
        return None  # TBB/TBH and the byte/halfword exclusives
    if (h1 & 0xFE40) == 0xE800:  # LDM/STM (32-bit, T2): op 01 = IA, 10 = DB
        op = (h1 >> 7) & 3
        n = bin(h2 & 0xFFFF).count("1")
        if op not in (1, 2) or n < 1:
            return None
        kind = ("LDM" if h1 & 0x10 else "STM") + ("DB" if op == 2 else "")
        return AlignSite(address, rn, -4 * n if op == 2 else 0, kind)
    if fpu and (h1 & 0xFE00) == 0xEC00 and (h2 & 0x0E00) == 0x0A00:
        p, u, w = h1 & 0x100, h1 & 0x80, h1 & 0x20
        load = bool(h1 & 0x10)
        imm = 4 * (h2 & 0xFF)
        if p and not w:  # VLDR/VSTR
            return AlignSite(address, rn, imm if u else -imm, "VLDR" if load else "VSTR")
        if not p and u:  # VLDM/VSTM increment after
            return AlignSite(address, rn, 0, "VLDM" if load else "VSTM")
        if p and not u and w:  # VLDMDB/VSTMDB
            return AlignSite(address, rn, -imm, "VLDMDB" if load else "VSTMDB")
    return None  # 64-bit core-register transfers (VMOV) and undefined encodings


class AlignmentCheck:
    """The alignment and stack-site hooks of one engine; `fault()` after a stop: (pc,
    address) or None; `min_sp()`: the lowest SP a stack site set since `reset()`."""

    def __init__(self, uc: unicorn.Uc, native: bool = True) -> None:
        self.uc = uc
        self._lib = _native_lib() if native else None
        self._state = None
        self._py_fault: tuple[int, int] | None = None
        self._py_min_sp = 0xFFFFFFFF
        self._handles: list[object] = []
        self.sites: dict[int, AlignSite] = {}
        if self._lib is not None:
            from unicorn.unicorn_py3 import unicorn as _ucmod

            stop = ctypes.cast(_ucmod.uclib.uc_emu_stop, ctypes.c_void_p).value
            reg_read = ctypes.cast(_ucmod.uclib.uc_reg_read, ctypes.c_void_p).value
            self._state = self._lib.mcusim_align_new(stop, reg_read)
            if not self._state:
                raise MemoryError("native alignment check")
            weakref.finalize(uc, self._lib.mcusim_align_free, self._state)

    @property
    def kind(self) -> str:
        return "native" if self._lib is not None else "python"

    def add(self, sites: list[AlignSite]) -> None:
        for s in sites:
            if s.address in self.sites:
                continue
            self.sites[s.address] = s
            rn, rm = _reg(s.rn), _reg(s.rm)
            if self._lib is not None:
                self._add_native(s, rn, rm)
            else:
                self._handles.append(self.uc.hook_add(
                    unicorn.UC_HOOK_CODE, self._on_site, (rn, rm, s),
                    begin=s.address, end=s.address))
        if sites:
            self.uc.ctl_flush_tb()

    def _add_native(self, site: AlignSite, rn: int, rm: int) -> None:
        from unicorn.unicorn_py3 import unicorn as _ucmod

        user = self._lib.mcusim_align_add(self._state, rn, rm, site.sign, site.shift,
                                          site.offset, int(site.stack))
        if not user:
            raise MemoryError("native alignment site")
        fn = ctypes.cast(self._lib.mcusim_align_hook, ctypes.c_void_p)
        handle = _ucmod.uc_hook_h()
        status = _ucmod.uclib.uc_hook_add(
            self.uc._uch, ctypes.byref(handle), unicorn.UC_HOOK_CODE, fn,
            ctypes.c_void_p(user), ctypes.c_uint64(site.address),
            ctypes.c_uint64(site.address))
        if status != unicorn.UC_ERR_OK:
            raise unicorn.UcError(status)
        self._handles.append(handle)

    def _on_site(self, uc: unicorn.Uc, address: int, size: int,
                 user: tuple[int, int, AlignSite]) -> None:
        rn, rm, s = user
        a = uc.reg_read(rn) if rn >= 0 else 0
        m = ((uc.reg_read(rm) << s.shift) & 0xFFFFFFFF) if rm >= 0 else 0
        ea = (a + s.offset + s.sign * m) & 0xFFFFFFFF
        if s.stack:
            self._py_min_sp = min(self._py_min_sp, ea)
            return
        if ea & 3 and self._py_fault is None:
            self._py_fault = (address, ea)
            uc.emu_stop()

    def min_sp(self) -> int:
        if self._lib is None:
            return self._py_min_sp
        return self._lib.mcusim_align_min_sp(self._state)

    def reset(self) -> None:
        self._py_fault = None
        self._py_min_sp = 0xFFFFFFFF
        if self._lib is not None:
            self._lib.mcusim_align_reset(self._state)

    def fault(self) -> tuple[int, int] | None:
        if self._lib is None:
            return self._py_fault
        pc, addr = ctypes.c_uint64(), ctypes.c_uint64()
        if self._lib.mcusim_align_fault(self._state, ctypes.byref(pc), ctypes.byref(addr)):
            return pc.value, addr.value
        return None


def _reg(n: int | None) -> int:
    """Unicorn's register id of r0-r14, or -1."""
    if n is None:
        return -1
    return {13: arm_const.UC_ARM_REG_SP, 14: arm_const.UC_ARM_REG_LR}.get(
        n, arm_const.UC_ARM_REG_R0 + n)


_lib_cache: list[ctypes.CDLL | None] = []


def _native_lib() -> ctypes.CDLL | None:
    """The native hook library when it has the alignment hook, else None."""
    if _lib_cache:
        return _lib_cache[0]
    from mcusim.trace.native import load_library

    lib = load_library()
    vp, u64p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64)
    try:
        if lib is None:
            raise AttributeError("no native library")
        for name, res, args in (
                ("mcusim_align_new", vp, [vp, vp]),
                ("mcusim_align_free", None, [vp]),
                ("mcusim_align_add", vp, [vp, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                          ctypes.c_int, ctypes.c_int32, ctypes.c_int]),
                ("mcusim_align_min_sp", ctypes.c_uint32, [vp]),
                ("mcusim_align_reset", None, [vp]),
                ("mcusim_align_fault", ctypes.c_int, [vp, u64p, u64p])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        lib.mcusim_align_hook  # noqa: B018 - present?
    except AttributeError:
        lib = None
    _lib_cache.append(lib)
    return lib
