"""A corrupt ELF is bad input: one `mcusim: error:` line and exit 2 (or, when the damage is
harmless, a normal result), never a traceback, an internal error, a hang or a memory
blow-up.  A corrupt DWARF or .comment never fails anything: no line info, no producer.

The corrupt files are made by patching a good image (the profiler probe, gcc, DWARF 5):
truncations, every header field set to 0 / 1 / odd / huge / the file size, broken
section links and string tables, random bytes in the DWARF sections."""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from mcusim import elf as elf_module
from mcusim.cli import main
from mcusim.elf import ElfImage
from mcusim.errors import ElfError, UnknownNameError
from mcusim.toolchain import linker_script

from .conftest import PROGRAMS, _toolchain_or_skip

MCU = "nRF52840"
FUNC = "probe_main"

# Elf32_Ehdr fields: name -> (offset, struct format)
EHDR_FIELDS = {
    "e_type": (16, "<H"), "e_machine": (18, "<H"), "e_version": (20, "<I"),
    "e_entry": (24, "<I"), "e_phoff": (28, "<I"), "e_shoff": (32, "<I"),
    "e_flags": (36, "<I"), "e_ehsize": (40, "<H"), "e_phentsize": (42, "<H"),
    "e_phnum": (44, "<H"), "e_shentsize": (46, "<H"), "e_shnum": (48, "<H"),
    "e_shstrndx": (50, "<H"),
}
PHDR_FIELDS = ("p_type", "p_offset", "p_vaddr", "p_paddr", "p_filesz", "p_memsz", "p_flags",
               "p_align")
SHDR_FIELDS = ("sh_name", "sh_type", "sh_flags", "sh_addr", "sh_offset", "sh_size", "sh_link",
               "sh_info", "sh_addralign", "sh_entsize")
# harmless for a static executable: the run must give exactly the good result
HARMLESS_EHDR = {"e_version", "e_entry", "e_flags", "e_ehsize"}


def patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value & ((1 << (8 * struct.calcsize(fmt))) - 1))
    return bytes(b)


class Good:
    """The good image, its layout (parsed independently with struct) and its result."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.data = Path(path).read_bytes()
        h = struct.unpack_from("<16sHHIIIIIHHHHHH", self.data)
        self.phoff, self.shoff = h[5], h[6]
        self.phnum, self.shnum, self.shstrndx = h[10], h[12], h[13]
        self.sections = [struct.unpack_from("<10I", self.data, self.shoff + 40 * i)
                         for i in range(self.shnum)]
        names = self.sections[self.shstrndx]
        self.names = []
        for s in self.sections:
            start = names[4] + s[0]
            self.names.append(self.data[start:self.data.index(b"\0", start)].decode())
        self.phdrs = [struct.unpack_from("<8I", self.data, self.phoff + 32 * i)
                      for i in range(self.phnum)]

    def section(self, name: str) -> int:
        return self.names.index(name)

    def with_field(self, offset: int, fmt: str, value: int) -> bytes:
        return patch(self.data, offset, fmt, value)

    def with_shdr(self, index: int, field: str, value: int) -> bytes:
        return self.with_field(self.shoff + 40 * index + 4 * SHDR_FIELDS.index(field), "<I",
                               value)

    def with_phdr(self, index: int, field: str, value: int) -> bytes:
        return self.with_field(self.phoff + 32 * index + 4 * PHDR_FIELDS.index(field), "<I",
                               value)

    def with_bytes(self, offset: int, patch: bytes) -> bytes:
        b = bytearray(self.data)
        b[offset:offset + len(patch)] = patch
        return bytes(b)


@pytest.fixture(scope="module")
def good(build_probes) -> Good:
    return Good(build_probes(MCU, ("profile_probe.c",)))


@pytest.fixture(scope="module")
def good5(tmp_path_factory, catalog) -> Good:
    """The probe with a DWARF 5 line table (gas writes version 3 unless told)."""
    tc = _toolchain_or_skip("gcc")
    d = tmp_path_factory.mktemp("dwarf5")
    mcu = catalog.mcu(MCU)
    (d / "probe.ld").write_text(linker_script(mcu))
    out = d / "probe5.elf"
    r = subprocess.run([*tc.command, *tc.cflags(mcu.core), "-gdwarf-5", "-Wa,--gdwarf-5",
                        "-T", "probe.ld", str(PROGRAMS / "profile_probe.c"), *tc.ldflags(),
                        "-o", str(out)], cwd=d, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return Good(str(out))


@pytest.fixture(scope="module")
def good_run(good) -> dict:
    """The good image's `run` result (computed, not hard-coded)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["run", good.path, "-f", FUNC, "--args", "7", "-m", MCU, "--json"]) == 0
    return json.loads(out.getvalue())


def _values(size: int, file_len: int, original: int) -> list[int]:
    top = (1 << (8 * size)) - 1
    vals = {0, 1, 3, top, top >> 1, original + 1, original ^ 0x80}
    if size == 4:
        vals |= {file_len, file_len - 1, file_len + 40}
    vals.discard(original)
    return sorted(v & top for v in vals)


def _write(tmp_path: Path, data: bytes, name: str = "bad.elf") -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def _run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _assert_clean(rc: int, err: str, *, allow_warning: bool = False) -> None:
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    if rc == 0:
        assert len(lines) <= (1 if allow_warning else 0), err
        assert all(ln.startswith("mcusim: warning: ") for ln in lines), err
    else:
        assert rc in (1, 2), (rc, err)
        assert len(lines) == 1 and lines[0].startswith("mcusim: error: "), err


def _run_bad(capsys, tmp_path, data: bytes, good_run: dict | None = None,
             same_result: bool = False) -> tuple[int, str]:
    path = _write(tmp_path, data)
    rc, out, err = _run_cli(capsys, ["run", path, "-f", FUNC, "--args", "7", "-m", MCU,
                                     "--json", "--budget", "200000"])
    _assert_clean(rc, err)
    if rc == 0:
        d = json.loads(out)
        assert isinstance(d["return"], int)
        if same_result and good_run is not None:
            assert (d["return"], d["instructions"]) == (good_run["return"],
                                                        good_run["instructions"])
    return rc, err


def _exercise(path: str) -> ElfImage | None:
    """Every entry point of ElfImage: construction raises only ElfError; after it,
    nothing raises (but an unknown function name)."""
    try:
        img = ElfImage.open(path)
    except ElfError as e:
        text = str(e)
        assert "\n" not in text and text.startswith(path), text
        return None
    segs = img.segments
    assert segs and all(len(s.data) <= s.memsz for s in segs)
    assert isinstance(img.symbols, dict)
    try:
        img.function(FUNC)
    except UnknownNameError as e:
        assert "\n" not in str(e)
    sizes = img.section_sizes()
    assert set(sizes) == {"text", "rodata", "data", "bss"}
    prod = img.producer
    assert prod is None or (isinstance(prod, str) and prod.isprintable())
    note = img.line_info_note
    assert note is None or (note.isprintable() and len(note) <= 300)
    assert all(isinstance(d, str) for d in img.compilation_dirs)
    for seg in segs:
        for a in range(seg.vaddr, seg.vaddr + min(len(seg.data), 4096), 2):
            text = img.describe(a)
            assert text.isprintable()
            line = img.source_line(a)
            if line:
                img.source_path(line[0])
            img.function_at(a)
    assert isinstance(img.mapping_symbols(), list)
    return img


# --------------------------------------------------------------------------- files


def test_dev_zero_and_fifo_do_not_hang(tmp_path):
    fifo = tmp_path / "fifo.elf"
    os.mkfifo(fifo)
    sparse = tmp_path / "huge.elf"
    with open(sparse, "wb") as f:
        f.truncate(elf_module.MAX_ELF_BYTES + 1)  # sparse: no disk used
    for path, words in (("/dev/zero", "character device"), (str(fifo), "FIFO"),
                        (str(sparse), "larger than"), (str(tmp_path), "directory")):
        r = subprocess.run([sys.executable, "-m", "mcusim", "run", path, "-f", "main", "-m",
                            MCU], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, (path, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mcusim: error: "), r.stderr
        assert words in lines[0] and path in lines[0], lines[0]
        assert "Traceback" not in r.stderr


def test_good_image_entry_points(good, default_toolchain):
    img = _exercise(good.path)
    assert img is not None and img.line_info_note is None
    assert img.function(FUNC).thumb
    assert img.source_line(img.function("hot").address)[0] == "profile_probe.c"
    assert img.compilation_dirs  # the compiler records where it compiled
    # the .comment section names the compiler that built the probe
    want = "GCC" if default_toolchain.kind == "gcc" else "clang"
    assert img.producer and want in img.producer, img.producer


@pytest.mark.parametrize("fraction", [i / 40 for i in range(40)])
def test_truncated_files_exit_2(capsys, tmp_path, good, fraction):
    """Section headers come last, so every cut loses some: always exit 2."""
    cut = int(len(good.data) * fraction)
    if fraction == 0:
        cut = 1
    rc, err = _run_bad(capsys, tmp_path, good.data[:cut])
    assert rc == 2, err
    assert _exercise(_write(tmp_path, good.data[:cut], "t.elf")) is None


def test_truncation_at_every_structure_boundary(tmp_path, good):
    cuts = {4, 5, 16, 51, 52, good.phoff + 31, good.phoff + 32 * good.phnum - 1,
            good.shoff, good.shoff + 39, len(good.data) - 1}
    for s in good.sections:
        cuts |= {s[4], s[4] + 1}
    for cut in sorted(c for c in cuts if 0 < c < len(good.data)):
        assert _exercise(_write(tmp_path, good.data[:cut])) is None, cut


@pytest.mark.parametrize("field", sorted(EHDR_FIELDS))
def test_elf_header_fields(capsys, tmp_path, good, good_run, field):
    offset, fmt = EHDR_FIELDS[field]
    original = struct.unpack_from(fmt, good.data, offset)[0]
    for value in _values(struct.calcsize(fmt), len(good.data), original):
        data = good.with_field(offset, fmt, value)
        rc, err = _run_bad(capsys, tmp_path, data, good_run,
                           same_result=field in HARMLESS_EHDR)
        _exercise(_write(tmp_path, data, "x.elf"))
        if field in HARMLESS_EHDR:
            assert rc == 0, (field, value, err)
        if _must_fail(field, value, len(good.data)):
            assert rc == 2, (field, value, err)


def _must_fail(field: str, value: int, file_len: int) -> bool:
    if field in ("e_machine", "e_type", "e_phentsize", "e_shentsize"):
        return True  # any other value
    if field in ("e_phoff", "e_shoff"):
        return value == 0 or value >= file_len - 8
    if field in ("e_phnum", "e_shnum"):
        return value == 0 or value >= 0x7FFF
    return False


def test_header_messages_name_the_problem(tmp_path, good):
    cases = [
        (good.with_field(18, "<H", 62), "not an ARM ELF (x86-64"),
        (good.with_field(16, "<H", 1), "object file"),
        (good.with_field(16, "<H", 3), "ET_DYN"),
        (good.with_field(28, "<I", len(good.data) - 8), "program headers"),
        (good.with_field(32, "<I", len(good.data) - 8), "section header table"),
        (good.with_field(48, "<H", 0xFFFF), "section header table"),
        (good.with_field(44, "<H", 0xFFFF), "e_phnum 0xffff"),
        (good.with_field(42, "<H", 0), "program header entry size 0"),
        (good.with_field(46, "<H", 64), "section header entry size 64"),
        (good.with_field(50, "<H", 200), "e_shstrndx"),
        (good.with_field(50, "<H", 1), "not a string table"),
    ]
    for data, words in cases:
        with pytest.raises(ElfError, match=words.replace("(", r"\(")) as ei:
            ElfImage.open(_write(tmp_path, data))
        assert "\n" not in str(ei.value)


@pytest.mark.parametrize("index", [0, 1])
def test_program_header_fields(capsys, tmp_path, good, good_run, index):
    if index >= good.phnum:
        pytest.skip("the image has fewer program headers")
    for k, field in enumerate(PHDR_FIELDS):
        original = good.phdrs[index][k]
        for value in _values(4, len(good.data), original):
            data = good.with_phdr(index, field, value)
            _run_bad(capsys, tmp_path, data, good_run, same_result=field == "p_align")
            _exercise(_write(tmp_path, data, "x.elf"))


def test_segment_data_past_end_of_file_is_exit_2(capsys, tmp_path, good):
    text = next(i for i, p in enumerate(good.phdrs) if p[0] == 1 and p[4])
    p_offset, filesz, memsz = good.phdrs[text][1], good.phdrs[text][4], good.phdrs[text][5]
    grow = len(good.data) - p_offset + 16 - filesz
    data = good.with_phdr(text, "p_filesz", filesz + grow)
    data = patch(data, good.phoff + 32 * text + 20, "<I", memsz + grow)  # p_memsz
    rc, err = _run_bad(capsys, tmp_path, data)
    assert rc == 2 and "data" in err and "past the end of the file (truncated?)" in err, err
    assert f"segment {text}" in err
    # the same without section headers, the file cut inside the segment's data
    no_sections = patch(good.data, 32, "<I", 0)  # e_shoff
    no_sections = no_sections[:46] + bytes(6) + no_sections[52:]  # e_shentsize .. e_shstrndx
    assert ElfImage.open(_write(tmp_path, no_sections)).symbols == {}
    rc, err = _run_bad(capsys, tmp_path, no_sections[:p_offset + filesz // 2])
    assert rc == 2 and "past the end of the file (truncated?)" in err, err


def test_filesz_larger_than_memsz(tmp_path, good):
    text = next(i for i, p in enumerate(good.phdrs) if p[0] == 1 and p[4])
    data = good.with_phdr(text, "p_memsz", good.phdrs[text][4] - 2)
    with pytest.raises(ElfError, match="larger than its memory size"):
        ElfImage.open(_write(tmp_path, data))


def test_every_section_header_field(tmp_path, good):
    """Every field of every section header set to 0/1/3/huge/the file size...: ElfError or
    a working image (this is the bulk of the fuzzing: in-process, no emulation)."""
    errors = works = 0
    for i in range(good.shnum):
        for k, field in enumerate(SHDR_FIELDS):
            for value in _values(4, len(good.data), good.sections[i][k]):
                img = _exercise(_write(tmp_path, good.with_shdr(i, field, value)))
                errors += img is None
                works += img is not None
    assert errors > 50 and works > 50  # both outcomes really happen


def test_section_messages(tmp_path, good):
    symtab = good.section(".symtab")
    text = good.section(".text")
    cases = [
        (good.with_shdr(symtab, "sh_link", text), "not a string table"),
        (good.with_shdr(symtab, "sh_link", 999), "not a string table"),
        (good.with_shdr(symtab, "sh_link", 0), "not a string table"),
        (good.with_shdr(symtab, "sh_entsize", 0), "entry size 0"),
        (good.with_shdr(symtab, "sh_entsize", 0xFFFFFFFF), "entry size 4294967295"),
        (good.with_shdr(symtab, "sh_size", 17), "not a multiple of 16"),
        (good.with_shdr(symtab, "sh_offset", len(good.data) - 8), "past the end of the file"),
        (good.with_shdr(symtab, "sh_size", 0xFFFFFFF0), "past the end of the file"),
        (good.with_shdr(good.section(".debug_line"), "sh_offset", 0xFFFFFFF0),
         "past the end of the file"),
        (good.with_shdr(good.shstrndx, "sh_type", 1), "not a string table"),
        (good.with_shdr(text, "sh_name", 0xFFFFFF), "name offset 16777215 out of range"),
    ]
    for data, words in cases:
        with pytest.raises(ElfError, match=words) as ei:
            ElfImage.open(_write(tmp_path, data))
        assert "\n" not in str(ei.value) and str(ei.value).startswith(str(tmp_path))


def test_symbol_string_offsets_and_names(tmp_path, good):
    symtab, strtab = good.section(".symtab"), good.section(".strtab")
    sym_off, sym_size = good.sections[symtab][4], good.sections[symtab][5]
    # a symbol whose name offset lies past its string table
    idx = next(i for i in range(1, sym_size // 16)
               if struct.unpack_from("<I", good.data, sym_off + 16 * i)[0])
    data = good.with_field(sym_off + 16 * idx, "<I", good.sections[strtab][5] + 5)
    with pytest.raises(ElfError, match="out of range"):
        ElfImage.open(_write(tmp_path, data))
    # a string table without its final NUL
    end = good.sections[strtab][4] + good.sections[strtab][5] - 1
    data = good.with_bytes(end, b"x")
    img = _exercise(_write(tmp_path, data))
    if img is None:
        with pytest.raises(ElfError, match="runs past the end of its string table"):
            ElfImage.open(_write(tmp_path, data))
    # names that are not UTF-8, with control characters: usable, printable in messages
    hot = good.data.index(b"\0hot\0", good.sections[strtab][4]) + 1
    data = good.with_bytes(hot, b"\xff\n\x1b")
    img = ElfImage.open(_write(tmp_path, data))
    assert img.function(FUNC).name == FUNC
    bad = next(s for s in img.symbols.values() if "\ufffd" in s.name)
    text = img.describe(bad.address)
    assert text.isprintable() and "\\n" in text
    with pytest.raises(UnknownNameError) as ei:
        img.function("\n")
    assert "\n" not in str(ei.value)


def test_symbol_count_cap(tmp_path, good, monkeypatch):
    monkeypatch.setattr(elf_module, "MAX_SYMBOLS", 5)
    with pytest.raises(ElfError, match="more than 5 symbols"):
        ElfImage.open(good.path)


# --------------------------------------------------------------------------- DWARF


def _dwarf_mutations(good: Good, rng: random.Random, n: int):
    for name in (".debug_line", ".debug_info", ".debug_abbrev", ".debug_str",
                 ".debug_line_str"):
        if name not in good.names:
            continue
        s = good.sections[good.section(name)]
        off, size = s[4], s[5]
        for _ in range(n):
            at = off + rng.randrange(size)
            kind = rng.randrange(4)
            if kind == 0:
                patch = bytes([rng.randrange(256)])
            elif kind == 1:
                patch = b"\xff" * rng.randrange(1, 9)
            elif kind == 2:
                patch = b"\0" * rng.randrange(1, 9)
            else:
                patch = bytes(rng.randrange(256) for _ in range(rng.randrange(2, 17)))
            yield name, good.with_bytes(at, patch[:off + size - at])


@pytest.mark.parametrize("which", ["good", "good5"])
def test_corrupt_dwarf_never_fails(request, tmp_path, which):
    good = request.getfixturevalue(which)
    assert _exercise(good.path).line_info_note is None
    notes = 0
    for name, data in _dwarf_mutations(good, random.Random(1234), 60):
        img = _exercise(_write(tmp_path, data))
        assert img is not None, name  # DWARF is never a reason to refuse the image
        if img.line_info_note:
            notes += 1
            assert img.line_info_note.startswith("bad.elf: DWARF line table unreadable (")
            assert img.source_line(img.function("hot").address) is None
    assert notes > 20  # the mutations do reach the reader


def test_corrupt_dwarf_profile_and_fault_messages(capsys, tmp_path, good):
    line = good.sections[good.section(".debug_line")]
    # unit_length larger than the section: unreadable
    data = good.with_field(line[4], "<I", line[5] + 100)
    path = _write(tmp_path, data)
    rc, out, err = _run_cli(capsys, ["profile", "--elf", path, "-f", FUNC, "--args", "5",
                                     "-m", MCU, "--by", "line"])
    _assert_clean(rc, err, allow_warning=True)
    assert rc == 0 and "DWARF line table unreadable" in err, err
    assert "(no line info)" in out
    rc, out, err = _run_cli(capsys, ["profile", "--elf", path, "-f", FUNC, "--args", "5",
                                     "-m", MCU, "--json"])
    assert rc == 0 and any("unreadable" in n for n in json.loads(out)["notes"])
    # a fault in code without line info still names the function
    rc, out, err = _run_cli(capsys, ["run", path, "-f", FUNC, "--args", "5", "-m", MCU,
                                     "--budget", "10"])
    _assert_clean(rc, err)
    assert rc == 1 and "+0x" in err, err


def _v5_header_offsets(good: Good) -> dict[str, int]:
    """Offsets of the first DWARF 5 .debug_line unit's header fields (32-bit DWARF)."""
    off, size = good.sections[good.section(".debug_line")][4:6]
    end = off + size
    while struct.unpack_from("<H", good.data, off + 4)[0] != 5:
        off += 4 + struct.unpack_from("<I", good.data, off)[0]
        assert off < end, "no DWARF 5 line table"
    p = off + 4 + 2 + 1 + 1 + 4  # unit_length, version, address/seg sizes, header_length
    fields = {"minimum_instruction_length": p, "maximum_operations_per_instruction": p + 1,
              "line_range": p + 4, "opcode_base": p + 5}
    opcode_base = good.data[p + 5]
    fields["directory_entry_format_count"] = p + 6 + opcode_base - 1
    return fields


def test_dwarf5_zero_size_entries_with_huge_count_do_not_hang(tmp_path, good5):
    """directory_entry_format_count 0 and directories_count 2**62: a reader trusting the
    count loops (and allocates) for ever; in a subprocess with a timeout."""
    at = _v5_header_offsets(good5)["directory_entry_format_count"]
    huge = bytes([0x80] * 8 + [0x40])  # ULEB128 of 2**62
    data = good5.with_bytes(at, b"\0" + huge)
    path = _write(tmp_path, data)
    r = subprocess.run([sys.executable, "-m", "mcusim", "profile", "--elf", path, "-f", FUNC,
                        "--args", "5", "-m", MCU, "--by", "line"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "DWARF line table unreadable" in r.stderr and "entry format" in r.stderr


@pytest.mark.parametrize("field, value", [("line_range", 0),
                                          ("maximum_operations_per_instruction", 0),
                                          ("opcode_base", 0), ("opcode_base", 255),
                                          ("minimum_instruction_length", 255)])
def test_dwarf5_header_values(tmp_path, good5, field, value):
    assert _exercise(good5.path).source_line(
        ElfImage.open(good5.path).function("hot").address)[0] == "profile_probe.c"
    at = _v5_header_offsets(good5)[field]
    img = _exercise(_write(tmp_path, good5.with_bytes(at, bytes([value]))))
    assert img is not None
    if value == 0:
        assert "unreadable" in (img.line_info_note or "")


def test_line_row_cap(tmp_path, good, monkeypatch):
    monkeypatch.setattr(elf_module, "MAX_LINE_ROWS", 3)
    img = ElfImage.open(good.path)
    assert img.source_line(img.function("hot").address) is None
    assert "more than 3 line table rows" in img.line_info_note


def test_compressed_dwarf(tmp_path, good):
    objcopy = shutil.which("arm-none-eabi-objcopy")
    if objcopy is None:
        pytest.skip("arm-none-eabi-objcopy not installed")
    z = tmp_path / "z.elf"
    subprocess.run([objcopy, "--compress-debug-sections=zlib", good.path, str(z)], check=True)
    plain, packed = ElfImage.open(good.path), ElfImage.open(z)
    code = [a for s in plain.segments if s.flags & 1
            for a in range(s.vaddr, s.vaddr + len(s.data), 2)]
    assert [plain.describe(a) for a in code] == [packed.describe(a) for a in code]
    assert packed.line_info_note is None
    # corrupt the compressed stream: no line info, a note, nothing fails
    zg = Good(str(z))
    s = zg.sections[zg.section(".debug_line")]
    img = _exercise(_write(tmp_path, zg.with_bytes(s[4] + 12 + 2, b"\xff\xff\xff\xff")))
    assert img is not None and "unreadable" in (img.line_info_note or "")
    # a header claiming a huge uncompressed size is refused before inflating
    img = _exercise(_write(tmp_path, zg.with_field(s[4] + 4, "<I", 0xFFFFFFF0)))
    assert img is not None and "MiB uncompressed" in (img.line_info_note or "")


def test_corrupt_comment_section(capsys, tmp_path, good):
    s = good.sections[good.section(".comment")]
    junk = (b"GCC\n\x1b[31mred\xff\xfe" * 64)[:s[5]]
    data = good.with_bytes(s[4], junk)
    img = _exercise(_write(tmp_path, data))
    assert img is not None and img.producer and img.producer.isprintable()
    rc, out, err = _run_cli(capsys, ["run", _write(tmp_path, data), "-f", FUNC, "--args", "3",
                                     "-m", MCU, "--json"])
    _assert_clean(rc, err)
    assert rc == 0 and "\n" not in json.loads(out)["producer"]
    # .comment pointing past the end of the file is a bad section, not a bad producer
    with pytest.raises(ElfError, match="past the end"):
        ElfImage.open(_write(tmp_path, good.with_shdr(good.section(".comment"), "sh_size",
                                                      len(good.data))))
    # a compressed (unreadable) .comment: no producer
    img = _exercise(_write(tmp_path, good.with_shdr(good.section(".comment"), "sh_flags",
                                                    0x800)))
    assert img is not None and img.producer is None


def test_random_byte_flips_anywhere(tmp_path, good):
    """Random damage anywhere in the file: ElfError or a working image."""
    rng = random.Random(99)
    for _ in range(300):
        b = bytearray(good.data)
        for _k in range(rng.randrange(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        _exercise(_write(tmp_path, bytes(b)))
