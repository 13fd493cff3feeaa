"""Builds and catalogs that go wrong say why in one line, and never escape the cache:

- a failed link shows the linker's own first real error ("undefined reference to `foo'",
  "region `FLASH' overflowed"/"will not fit in region"), not collect2's summary;
- user catalog names (MCU, region, core key) are checked against one safe character set,
  and a safe region name the linkers would misread (`1FLASH`, `+RAM`, `ORIGIN`) is renamed
  in the linker script only, errors naming it as the catalog does;
- a build directory outside the cache is an internal error before anything is created;
- a catalog path that is a device, FIFO or directory says what it is; an empty one says so;
- temporary files of a killed build are removed by the next build.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcusim.catalog import COST_MODELS_DIR, is_safe_name, load_catalog, mcu_template
from mcusim.elf import ElfImage
from mcusim.errors import CatalogError, InternalError, ToolchainError
from mcusim.machine import Machine
from mcusim.toolchain import (
    STALE_TEMP_SECONDS,
    Builder,
    default_cache_dir,
    first_error,
    linker_region_names,
    linker_script,
)

from .conftest import PROGRAMS


@pytest.fixture(autouse=True)
def _shared_zig_cache(monkeypatch):
    """Builds into a fresh cache dir still share zig's compiler-rt (else ~12 s each)."""
    if "ZIG_GLOBAL_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("ZIG_GLOBAL_CACHE_DIR", str(default_cache_dir() / "zig"))


def _one_line(e: BaseException) -> str:
    assert "\n" not in str(e)
    return str(e)


def _catalog_file(tmp_path: Path, name: str = "my.toml", **subs: str) -> Path:
    """The template (`mcusim mcus --template`) with `old=new` replacements of quoted names
    (FLASH, SRAM, CCM, MyChip) and the flash size."""
    text = mcu_template()
    for old, new in subs.items():
        if old == "flash_size":
            text, n = re.subn(r"^size = 0x10_0000 .*$", f"size = {new}", text, count=1,
                              flags=re.M)
        else:
            text, n = re.subn(rf'"{re.escape(old)}"', f'"{new}"', text)
        assert n, old
    p = tmp_path / name
    p.write_text(text)
    return p


def _cli(capsys, monkeypatch, *argv: str, toolchain: str | None = None) -> tuple[int, str]:
    from mcusim.cli import main

    if toolchain:
        monkeypatch.setenv("MCUSIM_TOOLCHAIN", toolchain)
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(p.pid, 0)
    return p.pid


# ------------------------------------------------------------------ the linker's own line


@pytest.mark.parametrize("output, expected", [
    # GNU ld through gcc: the cause is before collect2's summary; the install path goes
    ("/usr/lib/gcc/arm-none-eabi/12.2.1/../../../arm-none-eabi/bin/ld: /tmp/x.o: in "
     "function `main':\nx.c:(.text+0x4): undefined reference to `foo'\ncollect2: error: ld "
     "returned 1 exit status\n", "x.c:(.text+0x4): undefined reference to `foo'"),
    ("/opt/bin/../arm-none-eabi/bin/ld: k.elf section `.text' will not fit in region "
     "`FLASH'\n/opt/bin/../arm-none-eabi/bin/ld: mcusim: .data + .bss + stack do not fit "
     "SRAM\n/opt/bin/../arm-none-eabi/bin/ld: region `FLASH' overflowed by 1234 bytes\n"
     "collect2: error: ld returned 1 exit status\n",
     "ld: region `FLASH' overflowed by 1234 bytes"),
    ("/usr/bin/arm-none-eabi-ld:link.ld:12: syntax error\ncollect2: error: ld returned 1 "
     "exit status\n", "ld: link.ld:12: syntax error"),
    # lld through zig cc
    ("ld.lld: error: undefined symbol: foo\n>>> referenced by x.c:1\n>>>   x.o:(_start)\n",
     "ld.lld: error: undefined symbol: foo"),
    # the compiler
    ("In file included from x.c:1:\nx.c:3:9: error: expected expression\n    3 | int x = ;"
     "\n      |         ^\n1 error generated.\n", "x.c:3:9: error: expected expression"),
    ("x.S: Assembler messages:\nx.S:3: Error: bad instruction `sdivx r0,r0'\n",
     "x.S:3: Error: bad instruction `sdivx r0,r0'"),
])
def test_first_error_is_the_cause_not_the_summary(output, expected):
    assert first_error(output) == expected


def test_first_error_names_regions_as_the_catalog_does():
    out = "ld.lld: error: section '.text' will not fit in region 'R__FLASH': overflowed by 9 " \
          "bytes\n"
    assert first_error(out, {"+FLASH": "R__FLASH", "SRAM": "SRAM"}) == \
        "ld.lld: error: section '.text' will not fit in region '+FLASH': overflowed by 9 bytes"


def test_undefined_reference_is_shown(tmp_path, catalog, toolchain):
    src = tmp_path / "calls_missing.c"
    src.write_text("extern int missing_function(int);\n"
                   "int _start(void) { return missing_function(3); }\n")
    mcu = catalog.mcu("nRF52840")
    with pytest.raises(ToolchainError) as ei:
        Builder(toolchain, cache_dir=tmp_path / "c").build(mcu.core, [mcu], [src], [])
    msg = _one_line(ei.value)
    assert msg.startswith("linking kernels for nRF52840 failed: ")
    assert re.search(r"undefined (reference to `|symbol: )missing_function", msg), msg
    assert "collect2" not in msg and "linker command failed" not in msg


def test_flash_overflow_names_the_region_via_the_cli(tmp_path, capsys, monkeypatch):
    """A user MCU with 4 KB of flash: digits-cnn's kernels do not fit it."""
    cat = _catalog_file(tmp_path, flash_size="0x1000")
    code, err = _cli(capsys, monkeypatch, "budget", "digits-cnn", "--mcu", "MyChip",
                     "--catalog", str(cat))
    line = err.splitlines()[-1]
    assert code == 2, err
    assert line.startswith("mcusim: error: linking kernels for MyChip failed: ")
    assert re.search(r"region [`']FLASH'", line), line
    assert re.search(r"will not fit in region|overflowed by \d+ bytes", line), line
    assert "collect2" not in line and ".tmp" not in line


def test_overflow_of_a_renamed_region_names_it_as_the_catalog_does(tmp_path, catalog,
                                                                  toolchain, build_probes):
    cat = _catalog_file(tmp_path, FLASH="+FLASH", flash_size="0x1000")
    mcu = load_catalog(user_catalogs=[cat]).mcu("MyChip")
    assert linker_region_names(mcu)["+FLASH"] != "+FLASH"  # renamed in the script
    big = tmp_path / "big.c"
    big.write_text("const unsigned char table[8192] = {1};\n"
                   "int _start(void) { return table[100]; }\n")
    with pytest.raises(ToolchainError) as ei:
        Builder(toolchain, cache_dir=tmp_path / "c").build(mcu.core, [mcu], [big], [])
    msg = _one_line(ei.value)
    assert re.search(r"region [`']\+FLASH'", msg), msg
    assert linker_region_names(mcu)["+FLASH"] not in msg


# ------------------------------------------------------------------ names in linker scripts


# Names the catalog admits that GNU ld or lld misreads unquoted (measured: `1FLASH`,
# `+RAM` and keywords are syntax errors for GNU ld; lld keeps quotes GNU ld needs)
ODD_NAMES = {"FLASH": "1FLASH", "SRAM": "+SRAM", "CCM": "ORIGIN"}


def test_odd_but_safe_region_names_link_and_run(tmp_path, toolchain):
    cat = _catalog_file(tmp_path, **ODD_NAMES)
    mcu = load_catalog(user_catalogs=[cat]).mcu("MyChip")
    assert {r.name for r in mcu.regions} == set(ODD_NAMES.values())
    script = linker_script(mcu)
    memory = script[script.index("MEMORY"):script.index("SECTIONS")]
    for line in memory.splitlines()[2:-1]:
        assert re.match(r"  [A-Za-z_][A-Za-z0-9_]* \(rw?x\) : ORIGIN", line), line
    objects, _ = Builder(toolchain, cache_dir=tmp_path / "c").compile(
        mcu.core, [PROGRAMS / "probes.S"], name="probes")
    elf, _ = Builder(toolchain, cache_dir=tmp_path / "c").link(mcu, objects, name="probes")
    image = ElfImage.open(elf)
    assert mcu.region("1FLASH").contains(image.function("sum6").address)
    assert image.symbol_value("__stack_top") == mcu.region("+SRAM").end
    m = Machine(mcu, image)
    assert m.call("sum6", 1, 2, 3, 4, 5, 6).return_value == 21


def test_the_script_keeps_plain_names_and_gets_no_free_text(catalog):
    for mcu in catalog.mcus.values():  # the built-in names are all plain: unchanged
        assert all(k == v for k, v in linker_region_names(mcu).items())
    rt = catalog.mcu("MIMXRT1062")
    odd = dataclasses.replace(rt, name="A*/B", core=dataclasses.replace(rt.core,
                                                                       name="x */ y"))
    text = linker_script(odd)
    assert text.count("*/") == 1 and text.index("*/") + 2 == text.index("\n")


# ------------------------------------------------------------------ catalog names


@pytest.mark.parametrize("field, value", [
    ("MyChip", "../../ESCAPED"), ("MyChip", "-O2"), ("MyChip", ".hidden"),
    ("MyChip", "a..b"), ("MyChip", "a/b"), ("MyChip", "A" * 65), ("MyChip", "My Chip"),
    ("MyChip", "x;y"), ("FLASH", "-FLASH"), ("FLASH", ".FLASH"), ("SRAM", "S\\\"RAM"),
    ("SRAM", "SR/AM"), ("SRAM", "S..RAM"),
])
def test_unsafe_catalog_names_are_one_line_errors(tmp_path, field, value):
    cat = _catalog_file(tmp_path, **{field: value})
    with pytest.raises(CatalogError) as ei:
        load_catalog(user_catalogs=[cat])
    msg = _one_line(ei.value)
    what = "MCU" if field == "MyChip" else "region"
    assert f"field 'name': {what} name may only use letters, digits" in msg, msg
    assert "'+'" in msg


@pytest.mark.parametrize("name", ["My+Chip", "_chip", "chip-1.2", "A" * 64, "+x", "0"])
def test_safe_catalog_names_load(tmp_path, name):
    assert is_safe_name(name)
    cat = _catalog_file(tmp_path, MyChip=name)
    assert load_catalog(user_catalogs=[cat]).mcu(name).name == name


def test_an_escaping_mcu_name_creates_nothing_outside_the_cache(tmp_path, capsys,
                                                                monkeypatch):
    cache = tmp_path / "a" / "b" / "cache"
    monkeypatch.setenv("MCUSIM_CACHE_DIR", str(cache))
    cat = _catalog_file(tmp_path, MyChip="../../ESCAPED")
    code, err = _cli(capsys, monkeypatch, "budget", "digits-cnn", "--mcu", "../../ESCAPED",
                     "--catalog", str(cat))
    assert code == 2 and "\n" not in err, err
    assert "mcu '../../ESCAPED': field 'name': MCU name may only use" in err
    assert not list(tmp_path.rglob("*ESCAPED*"))


def test_an_unsafe_core_key_is_rejected(tmp_path):
    cores = tmp_path / "cores.toml"
    cores.write_text((COST_MODELS_DIR / "cores.toml").read_text()
                     .replace("[core.m4]", '[core."../m4"]'))
    with pytest.raises(CatalogError) as ei:
        load_catalog(cores_path=cores)
    assert "core '../m4': core key may only use letters, digits" in _one_line(ei.value)


def test_the_builder_refuses_a_build_dir_outside_the_cache(tmp_path, catalog,
                                                          default_toolchain):
    """The second line of defence: an MCU that never passed the catalog's checks."""
    cache = tmp_path / "x" / "y" / "cache"
    b = Builder(default_toolchain, cache_dir=cache)
    mcu = catalog.mcu("nRF52840")
    objects, _ = b.compile(mcu.core, [PROGRAMS / "probes.S"], name="probes")
    before = {p for p in tmp_path.rglob("*")}
    for bad in ("../../ESCAPED", "a/../../../../ESCAPED", "x/y"):
        with pytest.raises(InternalError) as ei:
            b.link(dataclasses.replace(mcu, name=bad), objects, name="probes")
        assert ei.value.exit_code == 3 and "outside" in _one_line(ei.value)
    with pytest.raises(InternalError):
        b.compile(mcu.core, [PROGRAMS / "probes.S"], name="../../ESCAPED")
    assert {p for p in tmp_path.rglob("*")} == before  # nothing created anywhere


# ------------------------------------------------------------------ catalog files


def _fifo(tmp_path: Path) -> str:
    p = tmp_path / "fifo.toml"
    os.mkfifo(p)
    return str(p)


@pytest.mark.parametrize("make, message", [
    (lambda t: "/dev/null", r"^/dev/null: is a character device, not a catalog TOML file$"),
    (_fifo, r"fifo\.toml: is a FIFO \(named pipe\), not a catalog TOML file$"),
    (lambda t: str(t), r": is a directory, not a catalog TOML file$"),
    (lambda t: str(t / "nope.toml"), r"^catalog file not found: .*nope\.toml$"),
])
def test_a_catalog_path_that_is_no_file_says_what_it_is(tmp_path, make, message):
    path = make(tmp_path)
    for kwargs in ({"user_catalogs": [path]}, {"mcus_path": path}):
        with pytest.raises(CatalogError) as ei:
            load_catalog(**kwargs)
        assert re.search(message, _one_line(ei.value)), str(ei.value)


@pytest.mark.parametrize("content, message", [
    ("", "is empty"), ("\n  \n", "is empty"), ("# only a comment\n",
                                                "has no settings (only comments)"),
])
def test_an_empty_catalog_file_is_a_clear_error(tmp_path, content, message):
    p = tmp_path / "empty.toml"
    p.write_text(content)
    with pytest.raises(CatalogError) as ei:
        load_catalog(user_catalogs=[p])
    msg = _one_line(ei.value)
    assert msg.startswith(f"{p}: {message}: a catalog file needs [[mcu]] entries")
    assert "mcusim mcus --template" in msg


def test_a_huge_catalog_file_is_refused_unread(tmp_path):
    p = tmp_path / "huge.toml"
    with open(p, "wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MB of nothing
    with pytest.raises(CatalogError, match=r"larger than the 4\.0 MiB"):
        load_catalog(user_catalogs=[p])


def test_cli_catalog_dev_null_exit_2(capsys, monkeypatch):
    code, err = _cli(capsys, monkeypatch, "mcus", "--catalog", "/dev/null")
    assert code == 2
    assert err == "mcusim: error: /dev/null: is a character device, not a catalog TOML file"


# ------------------------------------------------------------------ stale temporary files


def test_stale_temp_files_of_killed_builds_are_removed(tmp_path, catalog, default_toolchain):
    b = Builder(default_toolchain, cache_dir=tmp_path / "cache")
    mcu = catalog.mcu("RP2040")
    objects, _ = b.compile(mcu.core, [PROGRAMS / "probes.S"], name="probes")
    elf, _ = b.link(mcu, objects, name="probes")
    objdir, imgdir = objects[0].parent, elf.parent
    dead, live = _dead_pid(), os.getpid()
    stale = [objdir / f"probes.tmp{dead}.o", objdir / f".complete.tmp{dead}",
             objdir / f".write-test{dead}", imgdir / f"probes.tmp{dead}.elf"]
    old_live = objdir / f"other.tmp{live}.o"  # a live PID, but older than any build
    fresh_live = [objdir / f"busy.tmp{live}.o", imgdir / f"probes.tmp{live}.elf"]
    for p in [*stale, old_live, *fresh_live]:
        p.write_bytes(b"partial")
    hours_ago = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(old_live, (hours_ago, hours_ago))
    # a cached build (nothing to compile or link) cleans up too
    objects2, cached = b.compile(mcu.core, [PROGRAMS / "probes.S"], name="probes")
    elf2, linked = b.link(mcu, objects2, name="probes")
    assert cached and linked and elf2 == elf
    for p in [*stale, old_live]:
        assert not p.exists(), p
    for p in fresh_live:
        assert p.exists(), p  # may be a build running right now
    assert all(o.exists() for o in objects) and elf.exists()


def test_a_real_output_that_looks_like_a_temp_file_is_kept(tmp_path, catalog,
                                                           default_toolchain):
    """A source called probes.tmp1.S compiles to probes.tmp1.o: an output, not a temp."""
    src = tmp_path / "probes.tmp1.S"
    src.write_bytes((PROGRAMS / "probes.S").read_bytes())
    b = Builder(default_toolchain, cache_dir=tmp_path / "cache")
    mcu = catalog.mcu("RP2040")
    objects, _ = b.compile(mcu.core, [src], name="probes")
    assert objects[0].name == "probes.tmp1.o"
    again, cached = b.compile(mcu.core, [src], name="probes")
    assert cached and again[0].exists()
