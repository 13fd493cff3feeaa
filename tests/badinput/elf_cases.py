"""ELF group: a real built image (tests/programs/profile_probe.c: probe_main(10) calls hot()
and cold(), with DWARF lines), broken in every part a loader reads.

* truncations at many offsets (every one cuts the section headers at the end of the file:
  exit 2);
* ELF header fields (e_ident class/data, e_type, e_machine, e_entry, e_phoff, e_phnum,
  e_phentsize, e_shoff, e_shnum, e_shentsize, e_shstrndx) set to 0, 1, huge or odd values;
* program headers: p_offset / p_filesz past EOF, p_filesz > p_memsz, p_memsz huge, p_vaddr
  on peripherals, on the end of the address space, odd, p_type PT_NULL, p_align, p_flags;
* section headers of .symtab/.strtab/.debug_line/.debug_info/.comment: sh_link, sh_entsize,
  sh_size, sh_offset, sh_type corrupted;
* seeded random byte flips in .symtab, .strtab, .debug_line, .debug_info, .debug_abbrev,
  .debug_str;
* non-regular paths: /dev/zero, /dev/null, a FIFO, a directory, an empty file, a missing
  file, a dangling symlink, a symlink loop, a sparse 3 GiB file, text, a bare ELF magic.

Commands: `run ELF -f probe_main -m MCU --args 10 --budget 1000000 --json` and
`profile --elf ELF ... --json`.  Oracle: a mutation that leaves every byte the loader and the
symbol lookup use (ELF/program headers, PT_LOAD data, .symtab, .strtab and their section
headers) untouched may give exit 0 -- then with exactly the unmutated run's r0, cycles,
instructions and per-class cycles (profile: cycles and the per-function table) -- or exit 2;
a mutation of those bytes may give 0, 1 (a real emulated fault) or 2; a file that cannot be
read completely, or whose loaded bytes lie past its end, is exit 2.  Never 3, a traceback,
a hang or a blow-up.
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass
from pathlib import Path

from .runner import Case

FUNC = "probe_main"
ARGS = "10"
BUDGET = "1000000"

# ELF32 header field offsets and formats
EH = {"e_type": (16, "<H"), "e_machine": (18, "<H"), "e_version": (20, "<I"),
      "e_entry": (24, "<I"), "e_phoff": (28, "<I"), "e_shoff": (32, "<I"),
      "e_flags": (36, "<I"), "e_ehsize": (40, "<H"), "e_phentsize": (42, "<H"),
      "e_phnum": (44, "<H"), "e_shentsize": (46, "<H"), "e_shnum": (48, "<H"),
      "e_shstrndx": (50, "<H")}
PH = {"p_type": 0, "p_offset": 4, "p_vaddr": 8, "p_paddr": 12, "p_filesz": 16,
      "p_memsz": 20, "p_flags": 24, "p_align": 28}
SH = {"sh_name": 0, "sh_type": 4, "sh_flags": 8, "sh_addr": 12, "sh_offset": 16,
      "sh_size": 20, "sh_link": 24, "sh_info": 28, "sh_addralign": 32, "sh_entsize": 36}


@dataclass
class Section:
    index: int
    name: str
    type: int
    offset: int
    size: int
    header: int  # file offset of its section header


@dataclass
class Layout:
    data: bytes
    phoff: int
    phnum: int
    shoff: int
    sections: dict[str, Section]
    loads: list[tuple[int, int, int]]  # (phdr offset, p_offset, p_filesz) of PT_LOAD

    @classmethod
    def parse(cls, data: bytes) -> Layout:
        phoff, shoff = struct.unpack_from("<II", data, 28)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", data, 42)
        raw = []
        for i in range(shnum):
            h = shoff + i * shentsize
            name, typ, _f, _a, off, size = struct.unpack_from("<IIIIII", data, h)
            raw.append((i, name, typ, off, size, h))
        strtab_off = raw[shstrndx][3]
        sections = {}
        for i, name, typ, off, size, h in raw:
            end = data.index(b"\0", strtab_off + name)
            sname = data[strtab_off + name:end].decode()
            sections[sname] = Section(i, sname, typ, off, size, h)
        loads = []
        for i in range(phnum):
            h = phoff + i * phentsize
            typ, off, _v, _p, filesz = struct.unpack_from("<IIIII", data, h)
            if typ == 1:
                loads.append((h, off, filesz))
        return cls(data, phoff, phnum, shoff, sections, loads)

    def sensitive(self) -> list[tuple[int, int]]:
        """Byte ranges the loader and the symbol lookup read."""
        r = [(0, 52), (self.phoff, self.phoff + 32 * self.phnum)]
        r += [(off, off + size) for _h, off, size in self.loads]
        for name in (".symtab", ".strtab"):
            s = self.sections.get(name)
            if s:
                r += [(s.offset, s.offset + s.size), (s.header, s.header + 40)]
        return r

    def touches(self, offsets: list[int]) -> bool:
        return any(a <= o < b for o in offsets for a, b in self.sensitive())


def _put(data: bytes, off: int, fmt: str, v: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, off, v & ((1 << (8 * struct.calcsize(fmt))) - 1))
    return bytes(b)


def compare_run(out: dict, ref: dict) -> str | None:
    for k in ("return", "cycles", "instructions", "stack_bytes", "cycles_by_class"):
        if out.get(k) != ref.get(k):
            return f"{k} = {str(out.get(k))[:80]}, the unmutated image gives {str(ref.get(k))[:80]}"
    return None


def compare_profile(out: dict, ref: dict) -> str | None:
    for k in ("cycles", "functions"):
        if out.get(k) != ref.get(k):
            return f"{k} = {str(out.get(k))[:80]}, the unmutated image gives {str(ref.get(k))[:80]}"
    return None


def generate(work: Path, elf_m4: str, elf_m0: str) -> list[Case]:
    d = work / "elf"
    d.mkdir(parents=True, exist_ok=True)
    base = Path(elf_m4).read_bytes()
    lay = Layout.parse(base)
    size = len(base)
    rng = random.Random(20261129)
    cases: list[Case] = []
    counter = [0]

    def argv(cmd: str, path: str, mcu: str = "nRF52840") -> list[str]:
        if cmd == "run":
            return ["run", path, "-f", FUNC, "-m", mcu, "--args", ARGS, "--budget", BUDGET,
                    "--json"]
        return ["profile", "--elf", path, "-f", FUNC, "--mcu", mcu, "--args", ARGS,
                "--budget", BUDGET, "--json"]

    def add(name: str, data: bytes | None, note: str, expect: set[int], *,
            cmd: str = "run", touched: bool | None = None, path: str | None = None,
            mcu: str = "nRF52840", compare: bool = True) -> None:
        counter[0] += 1
        if path is None:
            path = str(d / f"{counter[0]:03d}-{name}.elf")
            Path(path).write_bytes(data)  # type: ignore[arg-type]
        ref = compare and touched is False
        cases.append(Case(
            group="elf", name=f"{cmd}:{name}", argv=argv(cmd, path, mcu), expect=expect,
            note=note, ref=(f"{cmd}:reference" if ref else None),
            compare=(compare_run if cmd == "run" else compare_profile) if ref else None,
            mention=(os.path.basename(path),), files=(path,)))

    # references: the unmutated image
    for cmd in ("run", "profile"):
        cases.append(Case(group="elf", name=f"{cmd}:reference", argv=argv(cmd, elf_m4),
                          expect={0}, note="the unmutated image", is_reference=True))
    # the same image on another core's MCU: linked for flash at 0, RP2040's is at 0x10000000
    add("linked-for-another-mcu", None, "nRF52840 image on RP2040", {2},
        path=elf_m4, mcu="RP2040")
    add("m0-image-sane", None, "RP2040 image on RP2040", {0}, path=elf_m0, mcu="RP2040",
        compare=False)

    # ---- truncations: the section headers are at the end, so every cut is exit 2
    text = lay.sections[".text"]
    cuts = sorted({0, 1, 3, 4, 5, 16, 51, 52, 53, lay.phoff + 16, lay.phoff + 32,
                   lay.phoff + 64, 0x100, text.offset, text.offset + 1,
                   text.offset + text.size // 2, text.offset + text.size,
                   lay.sections[".symtab"].offset + 8, lay.sections[".strtab"].offset,
                   lay.shoff, lay.shoff + 40 * 3 + 7, size - 1})
    for i, cut in enumerate(cuts):
        add(f"truncated-at-{cut}", base[:cut], f"first {cut} of {size} bytes", {2},
            cmd="profile" if i % 4 == 3 else "run", touched=True)

    # ---- ELF header
    add("ei-class-64", base[:4] + b"\x02" + base[5:], "EI_CLASS = ELFCLASS64", {2})
    add("ei-class-0", base[:4] + b"\x00" + base[5:], "EI_CLASS = 0", {2})
    add("ei-data-be", base[:5] + b"\x02" + base[6:], "EI_DATA = big-endian", {2})
    add("ei-data-0", base[:5] + b"\x00" + base[6:], "EI_DATA = 0", {2})
    huge32, huge16 = 0xFFFFFFF0, 0xFFFF
    for fieldname, values, touched, exp in (
            ("e_type", (0, 1, 3, 4, huge16), False, {0, 2}),
            ("e_machine", (0, 3, 183, huge16), False, {2}),
            ("e_version", (0, huge32), False, {0, 2}),
            ("e_entry", (0, 1, 0xFFFFFFFF, 0x20000001), False, {0, 2}),
            ("e_flags", (0xFFFFFFFF,), False, {0, 2}),
            ("e_phoff", (0, 1, huge32, lay.phoff + 1, size - 16), True, {0, 1, 2}),
            ("e_phnum", (1, 3, huge16), True, {0, 1, 2}),
            ("e_phentsize", (0, 1, 64, huge16), True, {0, 1, 2}),
            ("e_shoff", (0, 1, huge32, lay.shoff + 1, size - 8), True, {0, 1, 2}),
            ("e_shnum", (0, 1, lay.sections[".symtab"].index, huge16), True, {0, 1, 2}),
            ("e_shentsize", (0, 1, 80, huge16), True, {0, 1, 2}),
            ("e_ehsize", (0, huge16), False, {0, 2}),
            ("e_shstrndx", (0, 1, 99, huge16), False, {0, 2})):
        off, fmt = EH[fieldname]
        for j, v in enumerate(values):
            add(f"{fieldname}-{v:#x}", _put(base, off, fmt, v), f"{fieldname} = {v:#x}", exp,
                cmd="profile" if (j % 3 == 2) else "run", touched=touched)
    # e_phnum = 0: no segment at all, nothing to run
    add("e_phnum-0", _put(base, EH["e_phnum"][0], "<H", 0), "no program headers", {2},
        touched=True)

    # ---- program headers (segment 0 holds .text; segment 1 the empty .data/.bss)
    text_ph = lay.loads[0][0]

    def ph(fieldname: str, v: int, which: int = 0) -> bytes:
        return _put(base, lay.loads[which][0] + PH[fieldname], "<I", v)

    ph_cases = [
        ("p_offset-past-eof", ph("p_offset", size + 0x1000), "PT_LOAD data past EOF", {2}),
        ("p_offset-huge", ph("p_offset", 0xFFFFFFF0), "p_offset 0xfffffff0", {2}),
        ("p_offset-straddles-eof", ph("p_offset", size - 8), "data runs past EOF", {2}),
        ("p_filesz-past-eof", ph("p_filesz", size), "p_filesz reaches past EOF", {2}),
        ("p_filesz-gt-memsz", _put(ph("p_filesz", 0x100), text_ph + PH["p_memsz"], "<I", 0x38),
         "p_filesz > p_memsz", {2}),
        ("p_memsz-huge", ph("p_memsz", 0xFFFFFFF0), "p_memsz 0xfffffff0", {2}),
        ("p_vaddr-peripherals", ph("p_vaddr", 0x40000000), "code at 0x40000000", {2}),
        ("p_vaddr-ppb", ph("p_vaddr", 0xE000E000), "code on the SCS (0xe000e000)", {2}),
        ("p_vaddr-wraps", ph("p_vaddr", 0xFFFFFFF0), "segment wraps past 4 GiB", {2}),
        ("p_vaddr-odd", ph("p_vaddr", 1), "code moved by one byte", {0, 1, 2}),
        ("p_vaddr-ram", ph("p_vaddr", 0x20000000), "code loaded to RAM instead", {1, 2}),
        ("p_type-null", ph("p_type", 0), "the code segment is PT_NULL", {1, 2}),
        ("p_type-huge", ph("p_type", 0x7FFFFFFF), "the code segment has an unknown type",
         {1, 2}),
        ("p_align-3", ph("p_align", 3), "p_align not a power of two", {0, 1, 2}),
        ("p_flags-0", ph("p_flags", 0), "code segment without R/X", {0, 1, 2}),
        ("p_offset-odd", ph("p_offset", lay.loads[0][1] + 1), "p_offset + 1", {0, 1, 2}),
        ("data-p_memsz-huge", ph("p_memsz", 0x7FFFFFFF, 1), "data segment 2 GiB", {2}),
        ("data-p_vaddr-overlaps-code", _put(ph("p_vaddr", 0, 1), lay.loads[1][0] + PH["p_memsz"],
                                            "<I", 0x40), "data segment on top of .text",
         {0, 1, 2}),
        ("data-p_filesz-past-eof", _put(ph("p_filesz", 0x10000, 1), lay.loads[1][0]
                                        + PH["p_memsz"], "<I", 0x10000),
         "data segment file bytes past EOF", {2}),
    ]
    for j, (name, data, note, exp) in enumerate(ph_cases):
        add(name, data, note, exp, cmd="profile" if j % 4 == 3 else "run", touched=True)

    # ---- section headers
    sym, strt = lay.sections[".symtab"], lay.sections[".strtab"]

    def sh(sec: Section, fieldname: str, v: int) -> bytes:
        return _put(base, sec.header + SH[fieldname], "<I", v)

    shstr = lay.sections[".shstrtab"].index
    sh_cases = [
        ("symtab-sh_link-0", sh(sym, "sh_link", 0), "symbol names from section 0", {2}, True),
        ("symtab-sh_link-99", sh(sym, "sh_link", 99), "symbol names from no section", {2}, True),
        ("symtab-sh_link-huge", sh(sym, "sh_link", 0xFFFFFFFF), "sh_link 0xffffffff", {2}, True),
        ("symtab-sh_link-shstrtab", sh(sym, "sh_link", shstr), "names from .shstrtab", {2},
         True),
        ("symtab-sh_link-self", sh(sym, "sh_link", sym.index), "names from .symtab", {2}, True),
        ("symtab-sh_entsize-0", sh(sym, "sh_entsize", 0), "sh_entsize 0", {0, 2}, False),
        ("symtab-sh_entsize-1", sh(sym, "sh_entsize", 1), "sh_entsize 1", {0, 2}, False),
        ("symtab-sh_entsize-32", sh(sym, "sh_entsize", 32), "sh_entsize 32", {0, 2}, False),
        ("symtab-sh_entsize-huge", sh(sym, "sh_entsize", 0xFFFFFFFF), "sh_entsize huge", {0, 2},
         False),
        ("symtab-sh_size-0", sh(sym, "sh_size", 0), "empty symbol table", {2}, True),
        ("symtab-sh_size-huge", sh(sym, "sh_size", 0xFFFFFF00), "symbol table past EOF", {0, 2},
         False),
        ("symtab-sh_size-odd", sh(sym, "sh_size", sym.size + 7), "size not a multiple of 16",
         {0, 2}, False),
        ("symtab-sh_offset-past-eof", sh(sym, "sh_offset", size + 64), "symbols past EOF", {2},
         True),
        ("symtab-sh_offset-0", sh(sym, "sh_offset", 0), "symbols read from the ELF header",
         {2}, True),
        ("symtab-sh_type-progbits", sh(sym, "sh_type", 1), "no SHT_SYMTAB left", {2}, True),
        ("strtab-sh_size-0", sh(strt, "sh_size", 0), "empty string table", {2}, True),
        ("strtab-sh_offset-huge", sh(strt, "sh_offset", 0xFFFFFF00), "names past EOF", {2},
         True),
        ("strtab-sh_type-nobits", sh(strt, "sh_type", 8), "string table is NOBITS", {2}, True),
        ("shstrtab-sh_offset-huge", sh(lay.sections[".shstrtab"], "sh_offset", 0xFFFFFF00),
         "section names past EOF", {0, 2}, False),
        ("comment-sh_size-huge", sh(lay.sections[".comment"], "sh_size", 0x7FFFFFFF),
         ".comment past EOF (the producer string)", {0, 2}, False),
        ("comment-sh_type-nobits", sh(lay.sections[".comment"], "sh_type", 8),
         ".comment NOBITS", {0, 2}, False),
        ("text-sh_addr-moved", sh(text, "sh_addr", 0x10000000), ".text header says elsewhere",
         {0, 2}, False),
        ("text-sh_size-huge", sh(text, "sh_size", 0x7FFFFFFF), ".text header 2 GiB", {0, 2},
         False),
    ]
    for j, (name, data, note, exp, touched) in enumerate(sh_cases):
        add(name, data, note, exp, cmd="profile" if j % 3 == 2 else "run", touched=touched)
    # DWARF: the profile's line attribution reads it; the run needs none of it
    for sec_name in (".debug_line", ".debug_info", ".debug_abbrev", ".debug_str"):
        sec = lay.sections.get(sec_name)
        if sec is None:
            continue
        short = sec_name.lstrip(".")
        for fieldname, v in (("sh_size", 0xFFFFFF00), ("sh_offset", size + 0x100),
                             ("sh_size", 0), ("sh_type", 8)):
            add(f"{short}-{fieldname}-{v:#x}", sh(sec, fieldname, v), f"{sec_name} {fieldname}",
                {0, 2}, cmd="profile", touched=False)

    # ---- seeded random byte flips
    for sec_name, n, cmd in ((".symtab", 8, "run"), (".strtab", 6, "run"),
                             (".debug_line", 12, "profile"), (".debug_info", 8, "profile"),
                             (".debug_abbrev", 5, "profile"), (".debug_str", 3, "profile")):
        sec = lay.sections.get(sec_name)
        if sec is None or sec.size == 0:
            continue
        for k in range(n):
            b = bytearray(base)
            count = rng.choice((1, 1, 2, 4, 8, 16))
            offs = [sec.offset + rng.randrange(sec.size) for _ in range(count)]
            for o in offs:
                b[o] = rng.choice((0x00, 0xFF, 0x7F, 0x80, b[o] ^ (1 << rng.randrange(8))))
            touched = lay.touches(offs)
            # a flipped name never moves code: r0 and cycles must stay (exit 0 or 2)
            exp = {0, 1, 2} if sec_name == ".symtab" else {0, 2}
            add(f"flip{sec_name}-{k}", bytes(b), f"{count} byte(s) of {sec_name} at "
                f"{', '.join(hex(o) for o in offs)}", exp, cmd=cmd,
                touched=touched and sec_name == ".symtab")

    # ---- not an ELF file, or not a regular file
    fifo = d / "fifo.elf"
    if not fifo.exists():
        os.mkfifo(fifo)
    dangling = d / "dangling.elf"
    loop = d / "loop.elf"
    for link, target in ((dangling, d / "nowhere"), (loop, loop)):
        if not link.is_symlink():
            os.symlink(target, link)
    sparse = d / "sparse-3gib.elf"
    with open(sparse, "wb") as f:
        f.write(base[:64])
        f.truncate(3 << 30)
    (d / "empty.elf").write_bytes(b"")
    (d / "text.elf").write_text("hello, I am not an ELF file\n")
    (d / "magic-only.elf").write_bytes(b"\x7fELF")
    (d / "dir.elf").mkdir(exist_ok=True)
    for name, path, note in (
            ("dev-zero", "/dev/zero", "reads forever"),
            ("dev-null", "/dev/null", "empty character device"),
            ("fifo", str(fifo), "a FIFO nobody writes"),
            ("directory", str(d / "dir.elf"), "a directory"),
            ("empty", str(d / "empty.elf"), "empty file"),
            ("missing", str(d / "missing.elf"), "no such file"),
            ("dangling-symlink", str(dangling), "symlink to nowhere"),
            ("symlink-loop", str(loop), "symlink to itself"),
            ("sparse-3gib", str(sparse), "ELF header then 3 GiB of holes"),
            ("text", str(d / "text.elf"), "a text file"),
            ("magic-only", str(d / "magic-only.elf"), "just \\x7fELF")):
        add(name, None, note, {2}, path=path, cmd="run")
        if name in ("dev-zero", "directory", "sparse-3gib", "magic-only"):
            counter[0] += 1
            cases.append(Case(group="elf", name=f"profile:{name}",
                              argv=argv("profile", path), expect={2}, note=note,
                              mention=(os.path.basename(path),), files=(path,)))
    return cases
