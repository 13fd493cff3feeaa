"""ELF images: validation, loadable segments, symbols and DWARF source lines (pyelftools)."""

from __future__ import annotations

import bisect
import difflib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from mcusim.errors import ElfError, UnknownNameError

EM_ARM = "EM_ARM"


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


class ElfImage:
    """A validated little-endian 32-bit ARM ELF executable."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        self._data = data
        try:
            import io

            self._elf = ELFFile(io.BytesIO(data))
            header = self._elf.header
        except ELFError as e:
            raise ElfError(f"{path}: malformed ELF: {e}") from None
        if header["e_machine"] != EM_ARM:
            raise ElfError(f"{path}: not an ARM ELF (machine {header['e_machine']})")
        if self._elf.elfclass != 32:
            raise ElfError(f"{path}: a 64-bit ELF; Cortex-M images are 32-bit")
        if not self._elf.little_endian:
            raise ElfError(f"{path}: big-endian ELF; mcusim emulates little-endian Cortex-M")
        try:
            self.segments = self._load_segments()
        except ELFError as e:
            raise ElfError(f"{path}: malformed ELF: {e}") from None
        if not self.segments:
            raise ElfError(f"{path}: no loadable segments (an object file? link it first)")

    @classmethod
    def open(cls, path: str | Path) -> ElfImage:
        p = Path(path)
        if not p.exists():
            raise ElfError(f"{p}: no such file")
        if p.is_dir():
            raise ElfError(f"{p}: is a directory, not an ELF file")
        try:
            data = p.read_bytes()
        except OSError as e:
            raise ElfError(f"{p}: cannot read: {e.strerror}") from None
        if data[:4] != b"\x7fELF":
            raise ElfError(f"{p}: not an ELF file")
        if len(data) < 52:
            raise ElfError(f"{p}: truncated ELF header")
        if data[4] != 1:
            raise ElfError(f"{p}: a 64-bit ELF; Cortex-M images are 32-bit ARM")
        if data[5] != 1:
            raise ElfError(f"{p}: big-endian ELF; mcusim emulates little-endian Cortex-M")
        return cls(p, data)

    def _load_segments(self) -> list[Segment]:
        segs = []
        for seg in self._elf.iter_segments():
            if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                continue
            segs.append(Segment(seg["p_vaddr"], seg["p_paddr"], seg.data(), seg["p_memsz"],
                                seg["p_flags"]))
        return segs

    # ------------------------------------------------------------------ symbols

    @cached_property
    def symbols(self) -> dict[str, Symbol]:
        out: dict[str, Symbol] = {}
        for sec in self._elf.iter_sections():
            if not isinstance(sec, SymbolTableSection):
                continue
            for s in sec.iter_symbols():
                if not s.name or s["st_shndx"] == "SHN_UNDEF" or s.name.startswith("$"):
                    continue
                typ = s["st_info"]["type"]
                kind = {"STT_FUNC": "func", "STT_OBJECT": "object"}.get(typ, "other")
                value = s["st_value"]
                thumb = kind == "func" and bool(value & 1)
                sym = Symbol(s.name, value & ~1 if kind == "func" else value, s["st_size"],
                             kind, thumb)
                # prefer global definitions over local duplicates
                if s.name not in out or s["st_info"]["bind"] == "STB_GLOBAL":
                    out[s.name] = sym
        return out

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
        msg = f"{self.path.name}: no function {name!r}"
        if sym is not None:
            msg += f" ({name} is a data symbol)"
        elif near:
            msg += f"; did you mean {', '.join(near)}?"
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

    # ------------------------------------------------------------------ DWARF lines

    @cached_property
    def _line_table(self) -> tuple[list[int], list[tuple[str, int]]]:
        rows: list[tuple[int, str, int]] = []
        paths: dict[str, str] = {}
        self._source_paths = paths
        try:
            if not self._elf.has_dwarf_info():
                return [], []
            dwarf = self._elf.get_dwarf_info()
            for cu in dwarf.iter_CUs():
                lp = dwarf.line_program_for_CU(cu)
                if lp is None:
                    continue
                top = cu.get_top_DIE()
                comp_dir = _text(top.attributes["DW_AT_comp_dir"].value) \
                    if "DW_AT_comp_dir" in top.attributes else ""
                files = lp["file_entry"]
                dirs = [_text(d) for d in lp["include_directory"]]
                version = lp["version"]
                names: list[str] = []
                for fe in files:
                    name = _text(fe.name)
                    di = fe.dir_index if version >= 5 else fe.dir_index - 1
                    d = dirs[di] if 0 <= di < len(dirs) else ""
                    full = os.path.normpath(os.path.join(comp_dir, d, name))
                    base = os.path.basename(name)
                    paths.setdefault(base, full)
                    names.append(base if version >= 5 else name)
                for entry in lp.get_entries():
                    st = entry.state
                    if st is None or st.end_sequence:
                        continue
                    idx = st.file if version >= 5 else st.file - 1
                    fname = os.path.basename(names[idx]) if 0 <= idx < len(names) else "?"
                    rows.append((st.address, fname, st.line))
        except (ELFError, KeyError, IndexError, AttributeError):
            return [], []
        rows.sort(key=lambda r: r[0])
        return [r[0] for r in rows], [(r[1], r[2]) for r in rows]

    def source_path(self, name: str) -> str | None:
        """The full path of a source file named in the line table (as compiled)."""
        _ = self._line_table
        return getattr(self, "_source_paths", {}).get(name)

    def source_line(self, address: int) -> tuple[str, int] | None:
        addrs, lines = self._line_table
        i = bisect.bisect_right(addrs, address) - 1
        if i < 0:
            return None
        fn = self.function_at(address)
        if fn is None or addrs[i] < fn[0].address:
            return None
        return lines[i]

    def describe(self, address: int) -> str:
        """'func+0x12 (file.c:34)' or '0x0800abcd' when nothing is known."""
        fn = self.function_at(address)
        text = f"{fn[0].name}+0x{fn[1]:x}" if fn else f"0x{address:08x}"
        line = self.source_line(address)
        if line:
            text += f" ({line[0]}:{line[1]})"
        return text

    @cached_property
    def producer(self) -> str | None:
        """The compiler that made the image, from its .comment section (if kept)."""
        sec = self._elf.get_section_by_name(".comment")
        if sec is None:
            return None
        names = [s.decode(errors="replace").strip() for s in sec.data().split(b"\0")]
        names = [n for n in names if n]
        return "; ".join(dict.fromkeys(names)) or None

    # ------------------------------------------------------------------ sizes

    def section_sizes(self) -> dict[str, int]:
        """Bytes of code, read-only data, initialised data and zeroed data."""
        sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
        for sec in self._elf.iter_sections():
            flags = sec["sh_flags"]
            if not flags & SH_FLAGS.SHF_ALLOC:
                continue
            size = sec["sh_size"]
            if sec["sh_type"] == "SHT_NOBITS":
                sizes["bss"] += size
            elif flags & SH_FLAGS.SHF_EXECINSTR:
                sizes["text"] += size
            elif flags & SH_FLAGS.SHF_WRITE:
                sizes["data"] += size
            else:
                sizes["rodata"] += size
        return sizes


def _text(v: bytes | str) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else v
