"""ELF images: validation, loadable segments, symbols and DWARF source lines.

An ELF named on the command line is untrusted input: it may be truncated, cut at any byte,
or have any header field set to anything.  Everything read here is therefore parsed by
mcusim itself with explicit bounds (struct over the validated byte ranges) rather than
through pyelftools, whose parsers raise almost every built-in exception on corrupt input,
allocate from counts they never check against the file size and can loop for a very long
time (a DWARF 5 line table with 2**60 zero-byte directory entries):

* the ELF header, the program headers, the section headers and the symbol tables are
  checked up front (offsets and counts within the file, entry sizes, string tables): any
  problem is an `ElfError` naming the file and what is wrong (exit 2);
* the DWARF line table (.debug_line with the compilation directories of .debug_info) is
  optional: a corrupt or oversized one degrades to "no line info" and leaves a one-line
  `line_info_note`, it never fails anything;
* .comment (the producer) likewise degrades to None.
"""

from __future__ import annotations

import bisect
import difflib
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from mcusim.errors import ElfError, UnknownNameError
from mcusim.userfiles import MiB, read_bytes

# The largest ELF mcusim reads.  A Cortex-M image's loadable part is at most a few MiB
# (the biggest parts have 2-16 MiB of flash); with full DWARF a large firmware ELF is some
# tens of MiB.  256 MiB accepts any real image with a wide margin while bounding the memory
# a wrong path (a disk image, /dev/zero, a huge log) can take: the file is read whole.
MAX_ELF_BYTES = 256 * MiB
MAX_SECTIONS = 1 << 16  # real images have tens; extended numbering allows millions
MAX_SYMBOLS = 1 << 20  # large firmware has some 10**4-10**5
# DWARF bounds: beyond them the line table is skipped (no line info), never an error.
MAX_DWARF_SECTION = 32 * MiB  # other DWARF sections (decompressed) read at most
MAX_LINE_SECTION = 16 * MiB  # .debug_line: decoded opcode by opcode
MAX_LINE_ROWS = 1 << 20  # distinct code addresses with a line: ~4 MiB of Thumb code
MAX_UNITS = 100_000  # compilation units walked
MAX_COMMENT = 4096  # characters of the producer string

EM_ARM = 40
ET_EXEC = 2
_ET_NAMES = {0: "ET_NONE (no file type)", 1: "an object file (ET_REL): link it first",
             3: "a shared object or PIE (ET_DYN), not a Cortex-M executable",
             4: "a core dump (ET_CORE)"}
_MACHINES = {3: "x86", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "S/390", 43: "SPARC V9",
             62: "x86-64", 183: "AArch64", 243: "RISC-V", 258: "LoongArch"}

PT_LOAD = 1
SHT_NULL, SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS, SHT_DYNSYM = 0, 2, 3, 8, 11
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR, SHF_COMPRESSED = 0x1, 0x2, 0x4, 0x800
SHN_UNDEF, SHN_XINDEX = 0, 0xFFFF
STT_OBJECT, STT_FUNC = 1, 2
STB_GLOBAL = 1

_EHDR = struct.Struct("<16sHHIIIIIHHHHHH")  # Elf32_Ehdr, 52 bytes
_PHDR = struct.Struct("<8I")  # Elf32_Phdr, 32 bytes
_SHDR = struct.Struct("<10I")  # Elf32_Shdr, 40 bytes
_SYM = struct.Struct("<IIIBBH")  # Elf32_Sym, 16 bytes
_CHDR = struct.Struct("<III")  # Elf32_Chdr


@dataclass(frozen=True)
class Segment:
    """A PT_LOAD segment: `data` goes at `vaddr`, the rest up to `memsz` is zero."""

    vaddr: int
    paddr: int
    data: bytes
    memsz: int
    flags: int

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz


@dataclass(frozen=True)
class Symbol:
    name: str
    address: int  # without the Thumb bit
    size: int
    kind: str  # "func" or "object" or "other"
    thumb: bool


@dataclass(frozen=True)
class _Section:
    index: int
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int
    entsize: int


def printable(text: str) -> str:
    """`text` with control and other non-printable characters escaped (`\\n`, `\\x1b`):
    names from a file go into one-line messages and tables."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ElfImage:
    """A validated little-endian 32-bit ARM ELF executable."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = Path(path)
        self._data = data
        self._check_ident()
        (_ident, e_type, e_machine, _version, _entry, e_phoff, e_shoff, _flags, _ehsize,
         e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx) = _EHDR.unpack_from(data)
        if e_machine != EM_ARM:
            what = _MACHINES.get(e_machine, f"machine {e_machine}")
            raise self._error(f"not an ARM ELF ({what}; e_machine {e_machine}, ARM is 40)")
        if e_type != ET_EXEC:
            raise self._error(_ET_NAMES.get(e_type, f"unknown ELF type {e_type}")
                              + "; mcusim runs linked executables (ET_EXEC)")
        self._sections = self._read_sections(e_shoff, e_shentsize, e_shnum, e_shstrndx)
        self.segments = self._read_segments(e_phoff, e_phentsize, e_phnum)
        if not self.segments:
            raise self._error("no loadable segments (an object file? link it first)")
        self._mapping: list[tuple[int, bool]] = []
        self.symbols: dict[str, Symbol] = self._read_symbols()

    @classmethod
    def open(cls, path: str | Path) -> ElfImage:
        """The ELF at `path` (a regular file of at most MAX_ELF_BYTES), validated."""
        p = Path(path)
        data = read_bytes(p, "an ELF file", MAX_ELF_BYTES, ElfError)
        return cls(p, data)

    # ------------------------------------------------------------------ headers

    def _error(self, what: str) -> ElfError:
        return ElfError(f"{self.path}: {what}")

    def _check_ident(self) -> None:
        d = self._data
        if d[:4] != b"\x7fELF":
            raise self._error("not an ELF file")
        if len(d) < _EHDR.size:
            raise self._error(f"truncated ELF header ({len(d)} bytes; an ELF32 header is "
                              f"{_EHDR.size})")
        if d[4] != 1:
            raise self._error("a 64-bit ELF; Cortex-M images are 32-bit ARM"
                              if d[4] == 2 else f"unknown ELF class {d[4]}")
        if d[5] != 1:
            raise self._error("big-endian ELF; mcusim emulates little-endian Cortex-M"
                              if d[5] == 2 else f"unknown ELF data encoding {d[5]}")

    def _past_end(self, offset: int, size: int) -> bool:
        return offset + size > len(self._data)

    def _read_sections(self, shoff: int, shentsize: int, shnum: int,
                       shstrndx: int) -> list[_Section]:
        if shoff == 0:
            if shnum:
                raise self._error(f"e_shnum is {shnum} but there is no section header "
                                  "table (e_shoff 0)")
            return []
        if shentsize != _SHDR.size:
            raise self._error(f"section header entry size {shentsize} (e_shentsize; an "
                              f"ELF32 section header is {_SHDR.size} bytes)")
        if self._past_end(shoff, _SHDR.size):
            raise self._error(f"section header table (offset 0x{shoff:x}) lies past the end "
                              "of the file (truncated?)")
        first = _SHDR.unpack_from(self._data, shoff)
        count = shnum or first[5]  # extended numbering: the count is section 0's sh_size
        if shstrndx == SHN_XINDEX:
            shstrndx = first[6]  # ... and the name table's index its sh_link
        if count > MAX_SECTIONS:
            raise self._error(f"{count:,} sections (mcusim reads at most {MAX_SECTIONS:,}; "
                              "a corrupt e_shnum?)")
        if self._past_end(shoff, count * _SHDR.size):
            raise self._error(f"section header table (offset 0x{shoff:x}, {count} entries) "
                              "lies past the end of the file (truncated?)")
        raw = [_SHDR.unpack_from(self._data, shoff + i * _SHDR.size) for i in range(count)]
        for i, h in enumerate(raw):
            typ, offset, size = h[1], h[4], h[5]
            if typ not in (SHT_NULL, SHT_NOBITS) and self._past_end(offset, size):
                raise self._error(f"section {i}: data (offset 0x{offset:x}, {size:,} bytes) "
                                  "past the end of the file (truncated?)")
        names: tuple[int, int] | None = None
        if shstrndx != SHN_UNDEF:
            if shstrndx >= count:
                raise self._error(f"section name table index {shstrndx} (e_shstrndx) out of "
                                  f"range ({count} sections)")
            if raw[shstrndx][1] != SHT_STRTAB:
                raise self._error(f"section name table (section {shstrndx}) is not a string "
                                  "table")
            names = (raw[shstrndx][4], raw[shstrndx][5])
        out = []
        for i, h in enumerate(raw):
            name = self._string(names, h[0], f"section {i}: name") if names and i else ""
            out.append(_Section(i, name, *h[1:]))
        return out

    def _string(self, table: tuple[int, int], offset: int, what: str) -> str:
        """The NUL-terminated string at `offset` of the string table (file offset, size)."""
        start, size = table
        if offset >= size:
            raise self._error(f"{what} offset {offset} out of range of its string table "
                              f"({size} bytes)")
        end = self._data.find(b"\0", start + offset, start + size)
        if end < 0:
            raise self._error(f"{what} runs past the end of its string table")
        return self._data[start + offset:end].decode("utf-8", errors="replace")

    def _read_segments(self, phoff: int, phentsize: int, phnum: int) -> list[Segment]:
        if phnum == 0:
            return []
        if phnum == 0xFFFF:
            raise self._error("extended program header numbering (e_phnum 0xffff) is not "
                              "supported")
        if phentsize != _PHDR.size:
            raise self._error(f"program header entry size {phentsize} (e_phentsize; an "
                              f"ELF32 program header is {_PHDR.size} bytes)")
        if phoff == 0:
            raise self._error(f"e_phnum is {phnum} but the program header table is at "
                              "offset 0 (e_phoff)")
        if self._past_end(phoff, phnum * _PHDR.size):
            raise self._error(f"program headers (offset 0x{phoff:x}, {phnum} entries) lie "
                              "past the end of the file (truncated?)")
        segs = []
        for i in range(phnum):
            (p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags,
             _align) = _PHDR.unpack_from(self._data, phoff + i * _PHDR.size)
            if p_type != PT_LOAD or p_memsz == 0:
                continue
            where = f"segment {i} at 0x{p_vaddr:08x}"
            if p_filesz > p_memsz:
                raise self._error(f"{where}: file size {p_filesz:,} larger than its memory "
                                  f"size {p_memsz:,}")
            if p_vaddr + p_memsz > 1 << 32:
                raise self._error(f"{where}: {p_memsz:,} bytes run past the 4 GiB address "
                                  "space")
            if self._past_end(p_offset, p_filesz):
                raise self._error(f"{where}: data (file offset 0x{p_offset:x}, {p_filesz:,} "
                                  "bytes) past the end of the file (truncated?)")
            segs.append(Segment(p_vaddr, p_paddr, self._data[p_offset:p_offset + p_filesz],
                                p_memsz, p_flags))
        return segs

    # ------------------------------------------------------------------ symbols

    def _read_symbols(self) -> dict[str, Symbol]:
        out: dict[str, Symbol] = {}
        total = 0
        for sec in self._sections:
            if sec.type not in (SHT_SYMTAB, SHT_DYNSYM):
                continue
            what = f"symbol table (section {sec.index}" + (
                f" {printable(sec.name)})" if sec.name else ")")
            if sec.entsize != _SYM.size:
                raise self._error(f"{what}: entry size {sec.entsize} (an ELF32 symbol is "
                                  f"{_SYM.size} bytes)")
            if sec.size % _SYM.size:
                raise self._error(f"{what}: size {sec.size} is not a multiple of "
                                  f"{_SYM.size}")
            if not 0 < sec.link < len(self._sections) \
                    or self._sections[sec.link].type != SHT_STRTAB:
                raise self._error(f"{what}: its string table (sh_link {sec.link}) is not a "
                                  "string table")
            total += sec.size // _SYM.size
            if total > MAX_SYMBOLS:
                raise self._error(f"more than {MAX_SYMBOLS:,} symbols (a corrupt symbol "
                                  "table?)")
            strtab = (self._sections[sec.link].offset, self._sections[sec.link].size)
            body = self._data[sec.offset:sec.offset + sec.size]
            for i, (st_name, value, size, info, _other, shndx) in enumerate(
                    _SYM.iter_unpack(body)):
                if st_name == 0 or shndx == SHN_UNDEF:
                    continue
                name = self._string(strtab, st_name, f"{what}: symbol {i} name")
                if not name:
                    continue
                if name[0] == "$":  # ARM mapping symbols: $t (Thumb), $d (data), $a (ARM)
                    if name[:2] in ("$t", "$d", "$a") and name[2:3] in ("", "."):
                        self._mapping.append((value & ~1, name[1] == "t"))
                    continue
                typ, bind = info & 0xF, info >> 4
                kind = {STT_FUNC: "func", STT_OBJECT: "object"}.get(typ, "other")
                thumb = kind == "func" and bool(value & 1)
                sym = Symbol(name, value & ~1 if kind == "func" else value, size, kind, thumb)
                # prefer global definitions over local duplicates
                if name not in out or bind == STB_GLOBAL:
                    out[name] = sym
        return out

    def mapping_symbols(self) -> list[tuple[int, bool]]:
        """The ARM mapping symbols ($t Thumb code, $d data, $a ARM code: ELF for the Arm
        Architecture, 5.5.5) as (address, is Thumb), in symbol table order."""
        return list(self._mapping)

    @cached_property
    def _functions_sorted(self) -> tuple[list[int], list[Symbol]]:
        funcs = sorted((s for s in self.symbols.values() if s.kind == "func"),
                       key=lambda s: s.address)
        return [f.address for f in funcs], funcs

    def function(self, name: str) -> Symbol:
        """A function symbol by name; unknown names get near-name suggestions."""
        sym = self.symbols.get(name)
        if sym is not None and sym.kind == "func":
            return sym
        funcs = [s.name for s in self.symbols.values() if s.kind == "func"]
        near = difflib.get_close_matches(name, funcs, n=3, cutoff=0.6)
        msg = f"{self.path.name}: no function {printable(repr(name))}"
        if sym is not None:
            msg += f" ({printable(name)} is a data symbol)"
        elif near:
            msg += f"; did you mean {', '.join(printable(n) for n in near)}?"
        elif not funcs:
            msg += " (the ELF has no symbol table: was it stripped?)"
        raise UnknownNameError(msg)

    def symbol_value(self, name: str) -> int | None:
        s = self.symbols.get(name)
        return None if s is None else s.address

    def function_at(self, address: int) -> tuple[Symbol, int] | None:
        """The function containing address, and the offset into it."""
        addrs, funcs = self._functions_sorted
        i = bisect.bisect_right(addrs, address) - 1
        if i < 0:
            return None
        f = funcs[i]
        # a sized symbol covers its size; an unsized one (hand-written assembly without
        # .size) runs up to the next function
        sized_hit = address < f.address + max(f.size, 2)
        unsized_hit = f.size == 0 and i + 1 < len(funcs) and address < funcs[i + 1].address
        return (f, address - f.address) if sized_hit or unsized_hit else None

    # ------------------------------------------------------------------ sections

    def _section(self, name: str) -> _Section | None:
        for sec in self._sections:
            if sec.name == name and sec.type not in (SHT_NULL, SHT_NOBITS):
                return sec
        return None

    def _section_data(self, name: str, limit: int) -> bytes | None:
        """A section's contents (decompressed when SHF_COMPRESSED), None when absent;
        _DwarfError when larger than `limit` or not decodable."""
        sec = self._section(name)
        if sec is None:
            return None
        raw = self._data[sec.offset:sec.offset + sec.size]
        if not sec.flags & SHF_COMPRESSED:
            if len(raw) > limit:
                raise _DwarfError(f"{name} is {len(raw) / MiB:.1f} MiB (mcusim reads at "
                                  f"most {limit // MiB} MiB)")
            return raw
        if len(raw) < _CHDR.size:
            raise _DwarfError(f"{name}: truncated compression header")
        ch_type, ch_size, _align = _CHDR.unpack_from(raw)
        if ch_type != 1:  # ELFCOMPRESS_ZLIB; zstd (2) is not in the standard library
            raise _DwarfError(f"{name}: unsupported compression type {ch_type}")
        if ch_size > limit:
            raise _DwarfError(f"{name} is {ch_size / MiB:.1f} MiB uncompressed (mcusim "
                              f"reads at most {limit // MiB} MiB)")
        try:
            out = zlib.decompressobj().decompress(raw[_CHDR.size:], ch_size + 1)
        except zlib.error as e:
            raise _DwarfError(f"{name}: corrupt compressed data ({e})") from None
        if len(out) != ch_size:
            raise _DwarfError(f"{name}: decompresses to {len(out):,} bytes, not the "
                              f"{ch_size:,} its header says")
        return out

    @cached_property
    def producer(self) -> str | None:
        """The compiler that made the image, from its .comment section (if kept); None
        when there is none (or it is unreadable)."""
        sec = self._section(".comment")
        if sec is None or sec.flags & SHF_COMPRESSED:
            return None
        raw = self._data[sec.offset:sec.offset + min(sec.size, 4 * MAX_COMMENT)]
        names = [printable(s.decode("utf-8", errors="replace").strip())
                 for s in raw.split(b"\0")]
        text = "; ".join(dict.fromkeys(n for n in names if n))
        if len(text) > MAX_COMMENT:
            text = text[:MAX_COMMENT] + "..."
        return text or None

    def section_sizes(self) -> dict[str, int]:
        """Bytes of code, read-only data, initialised data and zeroed data."""
        sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
        for sec in self._sections:
            flags = sec.flags
            if sec.type == SHT_NULL or not flags & SHF_ALLOC:
                continue
            if sec.type == SHT_NOBITS:
                sizes["bss"] += sec.size
            elif flags & SHF_EXECINSTR:
                sizes["text"] += sec.size
            elif flags & SHF_WRITE:
                sizes["data"] += sec.size
            else:
                sizes["rodata"] += sec.size
        return sizes

    # ------------------------------------------------------------------ DWARF lines

    @cached_property
    def _lines(self) -> _LineInfo:
        """The line table; a corrupt, unsupported or oversized DWARF gives an empty one
        with a note (never an error: line info is a convenience)."""
        if self._section(".debug_line") is None:
            return _LineInfo([], [], {}, (), None)
        try:
            return _read_line_info(self)
        except _DWARF_FAILURES as e:
            why = str(e) if isinstance(e, _DwarfError) else \
                f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            note = printable(f"{self.path.name}: DWARF line table unreadable ({why}); no "
                             "source lines")
            return _LineInfo([], [], {}, (), note[:300])

    @property
    def line_info_note(self) -> str | None:
        """One line saying why the image has no line info although it carries DWARF (a
        corrupt or oversized .debug_line/.debug_info), else None."""
        return self._lines.note

    @property
    def compilation_dirs(self) -> tuple[str, ...]:
        """The compilation directories (DW_AT_comp_dir) the DWARF names, as written."""
        return self._lines.comp_dirs

    def source_path(self, name: str) -> str | None:
        """The full path of a source file named in the line table (as compiled)."""
        return self._lines.paths.get(name)

    def source_line(self, address: int) -> tuple[str, int] | None:
        info = self._lines
        i = bisect.bisect_right(info.addrs, address) - 1
        if i < 0:
            return None
        fn = self.function_at(address)
        if fn is None or info.addrs[i] < fn[0].address:
            return None
        return info.lines[i]

    def describe(self, address: int) -> str:
        """'func+0x12 (file.c:34)' or '0x0800abcd' when nothing is known."""
        fn = self.function_at(address)
        text = f"{printable(fn[0].name)}+0x{fn[1]:x}" if fn else f"0x{address:08x}"
        line = self.source_line(address)
        if line:
            text += f" ({line[0]}:{line[1]})"
        return text


# --------------------------------------------------------------------------- DWARF reader
#
# Just what the line table needs: the .debug_line programs (DWARF 2-5) and, from
# .debug_info, each compilation unit's DW_AT_comp_dir and DW_AT_stmt_list (the first DIE
# only).  Every read is bounds-checked; every loop consumes input, so the work is bounded by
# the section sizes, and the rows kept by MAX_LINE_ROWS.


class _DwarfError(Exception):
    """A corrupt or unsupported DWARF section (degrades to no line info)."""


# what reading a corrupt DWARF may raise besides _DwarfError (a bug of ours would be another
# type and still reach the user as an internal error)
_DWARF_FAILURES = (_DwarfError, ValueError, IndexError, KeyError, struct.error,
                   OverflowError, ZeroDivisionError, UnicodeError, MemoryError, RecursionError)


@dataclass(frozen=True)
class _LineInfo:
    addrs: list[int]
    lines: list[tuple[str, int]]
    paths: dict[str, str]  # file name (as shown) -> full path as compiled
    comp_dirs: tuple[str, ...]
    note: str | None


class _Reader:
    """A bounds-checked little-endian cursor over buf[pos:end]."""

    __slots__ = ("buf", "end", "pos", "what")

    def __init__(self, buf: bytes, pos: int, end: int, what: str) -> None:
        self.buf, self.pos, self.end, self.what = buf, pos, end, what

    def need(self, n: int) -> int:
        p = self.pos
        if n < 0 or p + n > self.end:
            raise _DwarfError(f"{self.what} runs past its end (offset 0x{p:x})")
        self.pos = p + n
        return p

    def u8(self) -> int:
        return self.buf[self.need(1)]

    def s8(self) -> int:
        v = self.u8()
        return v - 256 if v >= 128 else v

    def uint(self, n: int) -> int:
        p = self.need(n)
        return int.from_bytes(self.buf[p:p + n], "little")

    def uleb(self) -> int:
        result = shift = 0
        buf, end = self.buf, self.end
        p = self.pos
        while True:
            if p >= end:
                raise _DwarfError(f"{self.what} runs past its end (in a LEB128 number)")
            b = buf[p]
            p += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
            if shift > 70:
                raise _DwarfError(f"{self.what}: LEB128 number longer than 64 bits")
        self.pos = p
        return result

    def sleb(self) -> int:
        start = self.pos
        v = self.uleb()
        bits = 7 * (self.pos - start)
        return v - (1 << bits) if v >> (bits - 1) & 1 else v

    def cstr(self) -> bytes:
        end = self.buf.find(b"\0", self.pos, self.end)
        if end < 0:
            raise _DwarfError(f"{self.what}: string runs past its end")
        s = self.buf[self.pos:end]
        self.pos = end + 1
        return s


def _cstr_at(buf: bytes | None, offset: int, what: str) -> bytes:
    if buf is None:
        raise _DwarfError(f"a string in {what}, which the image lacks")
    if not 0 <= offset < len(buf):
        raise _DwarfError(f"string offset 0x{offset:x} out of range of {what}")
    end = buf.find(b"\0", offset)
    return buf[offset:end if end >= 0 else len(buf)]


# DWARF forms: the fixed sizes ("a" address size, "o" offset size), else how to skip them
_FORM_FIXED = {0x05: 2, 0x06: 4, 0x07: 8, 0x0B: 1, 0x0C: 1, 0x11: 1, 0x12: 2, 0x13: 4,
               0x14: 8, 0x1C: 4, 0x1E: 16, 0x20: 8, 0x24: 8, 0x25: 1, 0x26: 2, 0x27: 3,
               0x28: 4, 0x29: 1, 0x2A: 2, 0x2B: 3, 0x2C: 4, 0x01: "a", 0x0E: "o", 0x17: "o",
               0x1D: "o", 0x1F: "o", 0x1F20: "o", 0x1F21: "o"}
_FORM_ULEB = {0x0F, 0x15, 0x1A, 0x1B, 0x22, 0x23, 0x1F01, 0x1F02}
_FORM_BLOCK = {0x09: 0, 0x0A: 1, 0x03: 2, 0x04: 4, 0x18: 0}  # length prefix (0: ULEB)
_FORM_ZERO = {0x19, 0x21}  # flag_present, implicit_const: no bytes in the DIE
DW_FORM_string, DW_FORM_strp, DW_FORM_line_strp, DW_FORM_indirect = 0x08, 0x0E, 0x1F, 0x16
DW_FORM_sdata, DW_FORM_ref_addr, DW_FORM_implicit_const = 0x0D, 0x10, 0x21
_FORM_STRX = {0x1A: 0, 0x25: 1, 0x26: 2, 0x27: 3, 0x28: 4}


class _Unit:
    """The sizes a form's encoding depends on, and the unit's string sections."""

    def __init__(self, image_strings: dict[str, bytes | None], version: int, addr_size: int,
                 offset_size: int, str_offsets_base: int | None = None) -> None:
        self.s = image_strings
        self.version, self.addr_size, self.offset_size = version, addr_size, offset_size
        self.str_offsets_base = str_offsets_base

    def read(self, r: _Reader, form: int, implicit: int = 0) -> tuple[int, Any]:
        """(form, value) of one attribute: an int, the bytes of an inline string, or None
        for blocks."""
        hops = 0
        while form == DW_FORM_indirect:
            form = r.uleb()
            hops += 1
            if hops > 8:
                raise _DwarfError("DW_FORM_indirect chain")
        if form == DW_FORM_string:
            return form, r.cstr()
        if form == DW_FORM_ref_addr:
            return form, r.uint(self.addr_size if self.version <= 2 else self.offset_size)
        if form == DW_FORM_sdata:
            return form, r.sleb()
        if form in _FORM_ULEB:
            return form, r.uleb()
        if form in _FORM_ZERO:
            return form, implicit if form == DW_FORM_implicit_const else 1
        size = _FORM_FIXED.get(form)
        if size is not None:
            n = self.addr_size if size == "a" else self.offset_size if size == "o" else size
            return form, r.uint(n)
        prefix = _FORM_BLOCK.get(form)
        if prefix is not None:
            r.need(r.uleb() if prefix == 0 else r.uint(prefix))
            return form, None
        raise _DwarfError(f"unknown DWARF form 0x{form:x}")

    def string(self, form: int, value: Any) -> str | None:
        """A string attribute's text; None when its form is not a string we can resolve."""
        if form == DW_FORM_string:
            raw = value
        elif form == DW_FORM_strp:
            raw = _cstr_at(self.s.get(".debug_str"), value, ".debug_str")
        elif form == DW_FORM_line_strp:
            raw = _cstr_at(self.s.get(".debug_line_str"), value, ".debug_line_str")
        elif form in _FORM_STRX and self.str_offsets_base is not None:
            table = self.s.get(".debug_str_offsets")
            at = self.str_offsets_base + value * self.offset_size
            if table is None or at + self.offset_size > len(table):
                raise _DwarfError("string index out of range of .debug_str_offsets")
            off = int.from_bytes(table[at:at + self.offset_size], "little")
            raw = _cstr_at(self.s.get(".debug_str"), off, ".debug_str")
        else:
            return None
        return raw.decode("utf-8", errors="replace")


def _unit_header(r: _Reader, what: str) -> tuple[int, int]:
    """(offset size, end) of the unit whose initial length is at r.pos."""
    length = r.uint(4)
    offset_size = 4
    if length == 0xFFFFFFFF:
        length, offset_size = r.uint(8), 8
    elif length >= 0xFFFFFFF0:
        raise _DwarfError(f"{what}: reserved unit length 0x{length:x}")
    end = r.pos + length
    if end > r.end:
        raise _DwarfError(f"{what}: a unit runs past the end of the section")
    return offset_size, end


class _Budget:
    """Work left for one DWARF read: a crafted file cannot make it slow or big."""

    def __init__(self) -> None:
        self.abbrev_bytes = 64 * MiB  # .debug_abbrev bytes scanned for top DIEs
        self.attributes = 4_000_000  # attributes read from top DIEs
        self.files = 1_000_000  # line table file entries

    def spend(self, what: str, n: int) -> None:
        left = getattr(self, what) - n
        if left < 0:
            raise _DwarfError(f"too much DWARF to read ({what.replace('_', ' ')})")
        setattr(self, what, left)


MAX_ABBREV_ATTRIBUTES = 1024  # a real DIE has some tens


def _abbrev_attrs(abbrev: bytes, offset: int, code: int,
                  cache: dict[tuple[int, int], list[tuple[int, int, int]]],
                  budget: _Budget) -> list[tuple[int, int, int]]:
    """The (attribute, form, implicit const) list of abbreviation `code` of the table at
    `offset` of .debug_abbrev (scanned up to that entry; only found entries are kept)."""
    found = cache.get((offset, code))
    if found is not None:
        return found
    if offset >= len(abbrev):
        raise _DwarfError(f"abbreviation table offset 0x{offset:x} out of range")
    r = _Reader(abbrev, offset, len(abbrev), ".debug_abbrev")
    while True:
        start = r.pos
        c = r.uleb()
        if c == 0:
            raise _DwarfError(f"abbreviation code {code} not in its table")
        r.uleb()  # tag
        r.u8()  # has children
        attrs = []
        while True:
            at, form = r.uleb(), r.uleb()
            if at == 0 and form == 0:
                break
            attrs.append((at, form, r.sleb() if form == DW_FORM_implicit_const else 0))
            if len(attrs) > MAX_ABBREV_ATTRIBUTES:
                raise _DwarfError(f"an abbreviation with more than {MAX_ABBREV_ATTRIBUTES} "
                                  "attributes")
        budget.spend("abbrev_bytes", r.pos - start)
        if c == code:
            cache[(offset, code)] = attrs
            return attrs


DW_AT_name, DW_AT_stmt_list, DW_AT_comp_dir, DW_AT_str_offsets_base = 0x03, 0x10, 0x1B, 0x72


def _compile_units(info: bytes, abbrev: bytes, strings: dict[str, bytes | None],
                   budget: _Budget) -> dict[int, tuple[str, int | None]]:
    """For each compilation unit's line program offset (DW_AT_stmt_list): its compilation
    directory and string offsets base."""
    out: dict[int, tuple[str, int | None]] = {}
    cache: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    r = _Reader(info, 0, len(info), ".debug_info")
    units = 0
    while r.pos < r.end:
        units += 1
        if units > MAX_UNITS:
            raise _DwarfError(f"more than {MAX_UNITS:,} compilation units")
        offset_size, end = _unit_header(r, ".debug_info")
        u = _Reader(info, r.pos, end, ".debug_info unit")
        r.pos = end
        version = u.uint(2)
        if not 2 <= version <= 5:
            raise _DwarfError(f".debug_info: unsupported DWARF version {version}")
        if version >= 5:
            unit_type = u.u8()
            addr_size = u.u8()
            abbrev_offset = u.uint(offset_size)
            if unit_type not in (1, 3, 4, 5):  # compile, partial, skeleton, split compile
                continue
            if unit_type in (4, 5):
                u.need(8)  # dwo_id
        else:
            abbrev_offset = u.uint(offset_size)
            addr_size = u.u8()
        if addr_size not in (2, 4, 8):
            raise _DwarfError(f".debug_info: address size {addr_size}")
        code = u.uleb()
        if code == 0:
            continue
        unit = _Unit(strings, version, addr_size, offset_size)
        attrs = _abbrev_attrs(abbrev, abbrev_offset, code, cache, budget)
        budget.spend("attributes", len(attrs))
        values = [(at, *unit.read(u, form, imp)) for at, form, imp in attrs]
        for at, _form, v in values:
            if at == DW_AT_str_offsets_base and isinstance(v, int):
                unit.str_offsets_base = v
        comp_dir, stmt = "", None
        for at, form, v in values:
            if at == DW_AT_comp_dir:
                comp_dir = unit.string(form, v) or ""
            elif at == DW_AT_stmt_list and isinstance(v, int):
                stmt = v
        if stmt is not None:
            out.setdefault(stmt, (comp_dir, unit.str_offsets_base))
    return out


DW_LNCT_path, DW_LNCT_directory_index = 1, 2


def _v5_entries(r: _Reader, unit: _Unit) -> list[tuple[str | None, int]]:
    """A DWARF 5 directory or file name table: (path, directory index) per entry."""
    formats = [(r.uleb(), r.uleb()) for _ in range(r.u8())]
    count = r.uleb()
    if count and (not formats or any(f in _FORM_ZERO or f == DW_FORM_indirect
                                     for _c, f in formats)):
        # entries of no bytes would let a corrupt count loop for ever
        raise _DwarfError(".debug_line: entry format without data")
    if count > r.end - r.pos:
        raise _DwarfError(f".debug_line: {count:,} entries in a {r.end - r.pos}-byte header")
    out = []
    for _ in range(count):
        path, index = None, 0
        for content, form in formats:
            form, v = unit.read(r, form)
            if content == DW_LNCT_path:
                path = unit.string(form, v)
            elif content == DW_LNCT_directory_index and isinstance(v, int):
                index = v
        out.append((path, index))
    return out


DW_LNS_copy, DW_LNS_advance_pc, DW_LNS_advance_line, DW_LNS_set_file = 1, 2, 3, 4
DW_LNS_const_add_pc, DW_LNS_fixed_advance_pc = 8, 9
DW_LNE_end_sequence, DW_LNE_set_address, DW_LNE_define_file = 1, 2, 3
_STD_ARGS = {2: 1, 3: 1, 4: 1, 5: 1, 12: 1}  # standard opcodes with one LEB128 operand


def _read_line_info(image: ElfImage) -> _LineInfo:
    line = image._section_data(".debug_line", MAX_LINE_SECTION) or b""
    strings = {n: image._section_data(n, MAX_DWARF_SECTION)
               for n in (".debug_str", ".debug_line_str", ".debug_str_offsets")}
    info = image._section_data(".debug_info", MAX_DWARF_SECTION)
    abbrev = image._section_data(".debug_abbrev", MAX_DWARF_SECTION)
    budget = _Budget()
    cus = _compile_units(info, abbrev, strings, budget) if info and abbrev else {}
    ranges = sorted((s.vaddr, s.end) for s in image.segments)

    def loaded(address: int) -> bool:
        return any(lo <= address < hi for lo, hi in ranges)

    rows: dict[int, tuple[str, int]] = {}
    paths: dict[str, str] = {}
    comp_dirs = dict.fromkeys(d for d, _b in cus.values() if d)
    r = _Reader(line, 0, len(line), ".debug_line")
    while r.pos < r.end:
        start = r.pos
        offset_size, end = _unit_header(r, ".debug_line")
        u = _Reader(line, r.pos, end, ".debug_line unit")
        r.pos = end
        comp_dir, str_base = cus.get(start, ("", None))
        used = _line_unit(u, offset_size, comp_dir, str_base, strings, rows, paths, loaded,
                          budget)
        if used:
            comp_dirs.setdefault(used)
    addrs = sorted(rows)
    return _LineInfo(addrs, [rows[a] for a in addrs], paths, tuple(comp_dirs), None)


def _line_unit(u: _Reader, offset_size: int, comp_dir: str, str_base: int | None,
               strings: dict[str, bytes | None], rows: dict[int, tuple[str, int]],
               paths: dict[str, str], loaded: Callable[[int], bool], budget: _Budget) -> str:
    """Run one line program (DWARF 2-5), adding its rows at loaded addresses to `rows`
    (a later row at the same address wins, as in a stable sort); returns the compilation
    directory the unit's relative paths start from."""
    version = u.uint(2)
    if not 2 <= version <= 5:
        raise _DwarfError(f".debug_line: unsupported version {version}")
    addr_size = 4
    if version >= 5:
        addr_size = u.u8()
        u.u8()  # segment selector size
    header_length = u.uint(offset_size)
    program = u.pos + header_length
    if program > u.end:
        raise _DwarfError(".debug_line: header runs past its unit")
    min_inst = u.u8()
    max_ops = u.u8() if version >= 4 else 1
    u.u8()  # default_is_stmt
    line_base = u.s8()
    line_range = u.u8()
    opcode_base = u.u8()
    if line_range == 0 or max_ops == 0 or opcode_base == 0:
        raise _DwarfError(f".debug_line: line_range {line_range}, maximum operations "
                          f"{max_ops}, opcode base {opcode_base}")
    std_lengths = [u.u8() for _ in range(opcode_base - 1)]
    h = _Reader(u.buf, u.pos, program, ".debug_line header")
    unit = _Unit(strings, version, addr_size, offset_size, str_base)
    if version >= 5:
        dirs = [d or "" for d, _i in _v5_entries(h, unit)]
        files = [(n or "?", i) for n, i in _v5_entries(h, unit)]
        if dirs and dirs[0]:
            comp_dir = comp_dir or dirs[0]
    else:
        dirs = [""]  # directory 0: the compilation directory itself
        while (d := h.cstr()) != b"":
            dirs.append(d.decode("utf-8", errors="replace"))
        files = [("?", 0)]  # file numbers start at 1 before DWARF 5
        while (n := h.cstr()) != b"":
            files.append((n.decode("utf-8", errors="replace"), h.uleb()))
            h.uleb(), h.uleb()  # modification time, length

    names: list[str] = []

    def add_file(name: str, dir_index: int) -> None:
        budget.spend("files", 1)
        d = dirs[dir_index] if 0 <= dir_index < len(dirs) else ""
        shown = printable(os.path.basename(name)) or "?"
        names.append(shown)
        if name != "?":
            paths.setdefault(shown, os.path.normpath(os.path.join(comp_dir, d, name)))

    for name, di in files:
        add_file(name, di)

    p = _Reader(u.buf, program, u.end, ".debug_line program")
    address = op_index = 0
    file, ln = 1, 1
    mask = (1 << (8 * addr_size)) - 1 if addr_size in (2, 4, 8) else 0xFFFFFFFF

    def advance(operation_advance: int) -> None:
        nonlocal address, op_index
        total = op_index + operation_advance
        address = (address + min_inst * (total // max_ops)) & mask
        op_index = total % max_ops

    def emit() -> None:
        if loaded(address):
            rows[address] = (names[file] if 0 <= file < len(names) else "?", ln)
            if len(rows) > MAX_LINE_ROWS:
                raise _DwarfError(f"more than {MAX_LINE_ROWS:,} line table rows")

    while p.pos < p.end:
        op = p.u8()
        if op >= opcode_base:
            adjusted = op - opcode_base
            advance(adjusted // line_range)
            ln += line_base + adjusted % line_range
            emit()
        elif op == 0:  # extended opcode: a length, then the opcode and its operands
            n = p.uleb()
            if n == 0:
                raise _DwarfError(".debug_line: extended opcode of length 0")
            ext_end = p.pos + n
            if ext_end > p.end:
                raise _DwarfError(".debug_line: extended opcode runs past its unit")
            e = _Reader(p.buf, p.pos, ext_end, ".debug_line extended opcode")
            ex = e.u8()
            if ex == DW_LNE_end_sequence:
                address = op_index = 0
                file, ln = 1, 1
            elif ex == DW_LNE_set_address:
                address = e.uint(ext_end - e.pos) & mask if ext_end - e.pos <= 8 else 0
                op_index = 0
            elif ex == DW_LNE_define_file and version < 5:
                name = e.cstr().decode("utf-8", errors="replace")
                add_file(name, e.uleb())
            p.pos = ext_end
        elif op == DW_LNS_copy:
            emit()
        elif op == DW_LNS_advance_pc:
            advance(p.uleb())
        elif op == DW_LNS_advance_line:
            ln += p.sleb()
        elif op == DW_LNS_set_file:
            file = p.uleb()
        elif op == DW_LNS_const_add_pc:
            advance((255 - opcode_base) // line_range)
        elif op == DW_LNS_fixed_advance_pc:
            address = (address + p.uint(2)) & mask
            op_index = 0
        elif op in _STD_ARGS and std_lengths[op - 1] == _STD_ARGS[op]:
            p.uleb()  # set_column (5), set_isa (12)
        else:  # no operand (negate_stmt, set_basic_block, ...) or unknown: skip operands
            for _ in range(std_lengths[op - 1]):
                p.uleb()
    return comp_dir
