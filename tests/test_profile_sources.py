"""`profile` shows source text only from files it may read: regular files of at most
MAX_SOURCE_BYTES under the compilation directory the DWARF names, a --source-dir or
mcusim's kernels directory; never a file the DWARF merely names (/etc/passwd), never
through `..` or a symlink, never blocking on a FIFO or reading /dev/zero.  A source file
never fails the profile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcusim.cli import main
from mcusim.errors import UsageError
from mcusim.profile import (
    MAX_SOURCE_BYTES,
    SourceFile,
    _dwarf_roots,
    resolve_source_dirs,
    source_text,
)
from mcusim.toolchain import KERNELS_DIR, kernel_sources, linker_script

from .conftest import _toolchain_or_skip

MCU = "nRF52840"
PASSWD = Path("/etc/passwd")

LOOP = """__attribute__((noinline, used)) unsigned int {name}(unsigned int n)
{{
    unsigned int s = 0;
    for (unsigned int i = 0; i < n; i++)
        s += i * 7u;
    return s;
}}
"""


def _build(catalog, cwd: Path, source: str, name: str = "prog") -> str:
    """Compile and link `source` in `cwd` (so DW_AT_comp_dir is `cwd`)."""
    tc = _toolchain_or_skip("gcc")
    mcu = catalog.mcu(MCU)
    cwd.mkdir(parents=True, exist_ok=True)
    (cwd / f"{name}.c").write_text(source)
    (cwd / f"{name}.ld").write_text(linker_script(mcu))
    out = cwd / f"{name}.elf"
    r = subprocess.run([*tc.command, *tc.cflags(mcu.core), "-T", f"{name}.ld", f"{name}.c",
                        *tc.ldflags(), "-o", out.name], cwd=cwd, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return str(out)


def _profile(capsys, elf: str, function: str, *extra: str) -> str:
    rc = main(["profile", "--elf", elf, "-f", function, "--args", "9", "--mcu", MCU,
               "--annotate", function, *extra])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "Traceback" not in cap.err and "internal error" not in cap.err
    rc = main(["profile", "--elf", elf, "-f", function, "--args", "9", "--mcu", MCU,
               "--by", "line", *extra])
    cap2 = capsys.readouterr()
    assert rc == 0, cap2.err
    return cap.out + cap2.out


def _passwd_lines() -> list[str]:
    if not PASSWD.is_file():
        pytest.skip("no /etc/passwd on this system")
    lines = [ln.strip() for ln in PASSWD.read_text(errors="replace").splitlines()[:12]]
    lines = [ln for ln in lines if len(ln) >= 8]
    if not lines:
        pytest.skip("/etc/passwd has no usable lines")
    return lines


def test_dwarf_naming_etc_passwd_is_not_read(capsys, tmp_path, catalog):
    lines = _passwd_lines()
    elf = _build(catalog, tmp_path / "build",
                 '#line 1 "/etc/passwd"\n' + LOOP.format(name="secret_fn"))
    out = _profile(capsys, elf, "secret_fn")
    assert "passwd:" in out  # the line table does name the file
    leaked = [ln for ln in lines if ln in out]
    assert not leaked, leaked
    # the user may allow it: then it is shown (so the check above can fail)
    out = _profile(capsys, elf, "secret_fn", "--source-dir", "/etc")
    assert any(ln in out for ln in lines), out


def test_sources_under_the_compilation_directory_are_shown(capsys, tmp_path, catalog):
    marker = "MARKER_7f3a in the compilation directory"
    src = LOOP.format(name="loop_fn").replace("s += i * 7u;", f"s += i * 7u; /* {marker} */")
    elf = _build(catalog, tmp_path / "cwd", src)
    assert marker in _profile(capsys, elf, "loop_fn")


def test_no_escape_by_dotdot_or_symlink(capsys, tmp_path, catalog):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = "TOP_SECRET_" + "x" * 8
    (outside / "secret.c").write_text("\n".join(f"{secret} {i}" for i in range(1, 30)) + "\n")
    build = tmp_path / "build"
    build.mkdir()
    os.symlink(outside / "secret.c", build / "link.c")
    src = ('#line 1 "../outside/secret.c"\n' + LOOP.format(name="dotdot_fn")
           + '#line 1 "link.c"\n' + LOOP.format(name="symlink_fn"))
    elf = _build(catalog, build, src)
    for fn in ("dotdot_fn", "symlink_fn"):
        assert secret not in _profile(capsys, elf, fn), fn
        # named by the user, the same directory is fine
        assert secret in _profile(capsys, elf, fn, "--source-dir", str(outside)), fn


def test_special_files_named_as_sources_do_not_hang(tmp_path, catalog):
    """A FIFO (opening it would block), /dev/zero (reads for ever), a directory and a file
    over the size cap, named by DWARF under allowed directories: no text, no failure."""
    build = tmp_path / "build"
    src = ""
    for i, name in enumerate(("fifo.c", "/dev/zero", "dir.c", "big.c")):
        src += f'#line 1 "{name}"\n' + LOOP.format(name=f"f{i}")
    src += "#line 100 \"prog.c\"\nunsigned int all(unsigned int n)\n{\n" \
           "    return f0(n) + f1(n) + f2(n) + f3(n);\n}\n"
    elf = _build(catalog, build, src)
    os.mkfifo(build / "fifo.c")
    (build / "dir.c").mkdir()
    with open(build / "big.c", "wb") as f:
        f.truncate(MAX_SOURCE_BYTES + 1)  # sparse
    for fn in ("f0", "f1", "f2", "f3"):
        r = subprocess.run([sys.executable, "-m", "mcusim", "profile", "--elf", elf, "-f",
                            "all", "--args", "4", "--mcu", MCU, "--by", "line", "--top", "40",
                            "--source-dir", "/dev", "--annotate", fn],
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr
        # the line table names every one of them (so each was looked up)
        for name in ("fifo.c:", "zero:", "dir.c:", "big.c:"):
            assert name in r.stdout, (name, r.stdout)


def test_source_text_rules(tmp_path):
    lines = _passwd_lines()
    first = PASSWD.read_text(errors="replace").splitlines()[0]
    assert source_text("passwd", 1, SourceFile(str(PASSWD), [])) is None  # named only
    assert source_text("passwd", 1, str(PASSWD), roots=[]) is None
    assert source_text("passwd", 1, str(PASSWD), roots=["/etc"]) == first
    assert source_text("passwd", 1, str(PASSWD)) == first  # a path the caller chose
    assert source_text("passwd", 1, SourceFile(str(PASSWD), ["/etc"])) == first
    assert source_text("passwd", 1, SourceFile(str(PASSWD), [str(tmp_path)])) is None
    assert lines  # (the skip above)
    # a file at the cap is read, one byte over is not
    root = tmp_path / "src"
    root.mkdir()
    ok, big = root / "ok.c", root / "big.c"
    ok.write_bytes(b"first line\n" + b"x" * (MAX_SOURCE_BYTES - 11))
    big.write_bytes(b"first line\n" + b"x" * (MAX_SOURCE_BYTES - 10))
    assert source_text("ok.c", 1, str(ok), roots=[str(root)]) == "first line"
    assert source_text("big.c", 1, str(big), roots=[str(root)]) is None
    # found by name under a root when the compiled path is gone
    (root / "moved.c").write_text("a\nb\n")
    assert source_text("moved.c", 2, "/nonexistent/moved.c", roots=[str(root)]) == "b"
    # names with glob characters or NUL bytes are just names
    assert source_text("*.c", 1, None, roots=[str(root)]) is None
    assert source_text("a\0b.c", 1, "/tmp/a\0b.c", roots=[str(root)]) is None
    assert source_text("ok.c", 0, str(ok), roots=[str(root)]) is None


def test_kernel_sources_need_no_directory():
    src = kernel_sources()[0]
    expected = src.read_text().splitlines()[0]
    assert source_text(src.name, 1) == expected
    assert source_text(str(src.relative_to(KERNELS_DIR)), 1, None) == expected


def test_dwarf_compilation_dirs_that_never_count(tmp_path):
    home = os.path.realpath(os.path.expanduser("~"))
    dirs = ["/", "/etc", "/proc/self", home, "relative/dir", str(tmp_path / "missing"),
            str(tmp_path), str(tmp_path) + "/../" + tmp_path.name]
    assert _dwarf_roots(dirs) == [os.path.realpath(tmp_path)] * 2


def test_source_dir_option(capsys, tmp_path):
    assert resolve_source_dirs([str(tmp_path), str(tmp_path) + "/."]) == (
        os.path.realpath(tmp_path),)
    for bad in (tmp_path / "nope", tmp_path / "file"):
        if bad.name == "file":
            bad.write_text("x")
        with pytest.raises(UsageError, match="not a directory"):
            resolve_source_dirs([str(bad)])
        rc = main(["profile", "--elf", "x.elf", "-f", "f", "--mcu", MCU, "--source-dir",
                   str(bad)])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith("mcusim: error: --source-dir"), err


def test_profile_paths_carry_their_roots(catalog, tmp_path):
    from mcusim.elf import ElfImage
    from mcusim.machine import Machine
    from mcusim.profile import profile_call

    elf = _build(catalog, tmp_path / "b", LOOP.format(name="loop_fn"))
    p = profile_call(Machine(catalog.mcu(MCU), ElfImage.open(elf)), "loop_fn", 3,
                     source_dirs=[str(tmp_path)])
    full = p.paths["prog.c"]
    assert isinstance(full, SourceFile) and full == str(tmp_path / "b" / "prog.c")
    assert os.path.realpath(tmp_path) in full.roots
    assert os.path.realpath(tmp_path / "b") in full.roots
    assert p.source_text("prog.c", 1) == LOOP.format(name="loop_fn").splitlines()[0]
    assert p.notes == []
