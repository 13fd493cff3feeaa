"""Find the cross compiler and build kernels/ into a content-addressed cache.

Two toolchains: arm-none-eabi-gcc (the reference: what the boards' SDKs use) and zig cc
from the `ziglang` wheel (clang/LLVM, zero set-up).  Objects are compiled once per core;
images are linked once per MCU with a linker script made from the MCU's memory map, so code
sits in flash (or ITCM) and data and stack in SRAM exactly where the part has them.
Every artefact's path contains a hash of everything it depends on: sources, toolchain and
version, flags, linker script.  Nothing here prints; progress goes to a callback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from mcusim.catalog import KERNELS_DIR, Core, Mcu
from mcusim.errors import InternalError, ToolchainError, UnknownNameError, UsageError

TOOLCHAINS = ("gcc", "zig")

COMMON_CFLAGS = (
    "-O2", "-g", "-std=c11", "-ffreestanding", "-fno-common", "-fno-unwind-tables",
    "-fno-asynchronous-unwind-tables", "-ffunction-sections", "-fdata-sections",
    "-Wall", "-Wextra",
    # float32 bookkeeping must be one IEEE operation per C operation (no fused multiply-add)
    # so the numpy twin can repeat it bit for bit; sqrtf becomes VSQRT on FPU cores.
    "-ffp-contract=off", "-fno-math-errno",
)
GCC_EXTRA = ("-nostdlib", "-fno-tree-loop-distribute-patterns")
# zig: -nostdlib would drop compiler-rt (__aeabi_lmul ...); --gc-sections keeps only what the
# kernels use of it (kernels carry `retain`).  gcc links without --gc-sections (Debian's gcc
# 12 ignores `retain`) and takes the helpers from libgcc.
GCC_LDFLAGS = ("-nostdlib", "-Wl,--no-warn-rwx-segments", "-lgcc")
ZIG_LDFLAGS = ("-Wl,--gc-sections",)

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class Toolchain:
    """A usable cross compiler."""

    kind: str
    command: tuple[str, ...]
    version: str

    def cflags(self, core: Core) -> list[str]:
        if self.kind == "gcc":
            return [*core.gcc_flags, *COMMON_CFLAGS, *GCC_EXTRA]
        return ["-target", core.zig_target, f"-mcpu={core.zig_cpu}", *COMMON_CFLAGS]

    def ldflags(self) -> list[str]:
        return list(GCC_LDFLAGS if self.kind == "gcc" else ZIG_LDFLAGS)

    def env(self, cache_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        if self.kind == "zig":
            env.setdefault("ZIG_GLOBAL_CACHE_DIR", str(cache_dir / "zig"))
            env.setdefault("ZIG_LOCAL_CACHE_DIR", str(cache_dir / "zig-local"))
        return env

    @property
    def label(self) -> str:
        return f"{self.kind} {self.version}"


def _run_version(cmd: Sequence[str]) -> str | None:
    try:
        out = subprocess.run([*cmd], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    line = (out.stdout or out.stderr).strip().splitlines()
    return line[0].strip() if line else None


@cache
def _gcc() -> Toolchain | None:
    exe = shutil.which("arm-none-eabi-gcc")
    if not exe:
        return None
    first = _run_version([exe, "-dumpversion"])
    if first is None:
        return None
    return Toolchain("gcc", (exe,), first)


@cache
def _zig() -> Toolchain | None:
    cmd = (sys.executable, "-m", "ziglang")
    version = _run_version([*cmd, "version"])
    if version is None:
        return None
    return Toolchain("zig", (*cmd, "cc"), version)


GCC_HINT = ("install it with `apt-get install --no-install-recommends gcc-arm-none-eabi` "
            "(Debian/Ubuntu), or use `--toolchain zig`")
ZIG_HINT = ("install it with `pip install ziglang` (a dependency of mcusim), "
            "or use `--toolchain gcc`")


def find_toolchain(kind: str | None = None) -> Toolchain:
    """The requested toolchain, or the default: $MCUSIM_TOOLCHAIN (gcc or zig) when set,
    else gcc when on PATH, else zig."""
    asked = ""  # where the choice came from, for the messages
    if kind is None:
        raw = os.environ.get("MCUSIM_TOOLCHAIN", "")
        env = raw.strip().lower()
        if env and env not in TOOLCHAINS:
            raise UsageError(f"MCUSIM_TOOLCHAIN={raw!r}: choose gcc or zig")
        kind = env or None
        asked = f" (asked for by MCUSIM_TOOLCHAIN={raw})" if env else ""
    if kind is not None and kind not in TOOLCHAINS:
        raise UnknownNameError(f"unknown toolchain {kind!r}; choose gcc or zig")
    if kind in (None, "gcc"):
        tc = _gcc()
        if tc is not None:
            return tc
        if kind == "gcc":
            raise ToolchainError(f"cross compiler arm-none-eabi-gcc not found{asked}: "
                                 f"{GCC_HINT}")
    tc = _zig()
    if tc is not None:
        return tc
    if kind == "zig":
        raise ToolchainError(f"zig cc (ziglang) not usable{asked}: {ZIG_HINT}")
    raise ToolchainError(f"no cross compiler found: arm-none-eabi-gcc is not on PATH ({GCC_HINT}) "
                         "and ziglang is not installed")


def default_cache_dir() -> Path:
    """$MCUSIM_CACHE_DIR, else $XDG_CACHE_HOME/mcusim, else ~/.cache/mcusim; always an
    absolute path (so no value can reach the compiler as an option)."""
    env = os.environ.get("MCUSIM_CACHE_DIR")
    if env:
        return Path(env).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(base) / "mcusim").absolute()


# --------------------------------------------------------------------------- linker script


# Words with a meaning in GNU ld / lld scripts: a region called like one is renamed
_LD_KEYWORDS = frozenset("""
    ABSOLUTE ADDR AFTER ALIGN ALIGNOF ALIGN_WITH_INPUT ASCIZ ASSERT AS_NEEDED AT BEFORE BLOCK
    BYTE COMMON COMMONPAGESIZE CONSTANT CONSTRUCTORS COPY CREATE_OBJECT_SYMBOLS
    DATA_SEGMENT_ALIGN DATA_SEGMENT_END DATA_SEGMENT_RELRO_END DEFINED DSECT ENTRY EXCLUDE_FILE
    EXTERN FILL FILEHDR FLOAT FORCE_COMMON_ALLOCATION FORCE_GROUP_ALLOCATION GROUP HIDDEN
    HLL INCLUDE INFO INHIBIT_COMMON_ALLOCATION INPUT INPUT_SECTION_FLAGS INSERT KEEP L LD_FEATURE
    LEN LENGTH LINKER_VERSION LOADADDR LOG2CEIL LONG MAP MAX MAXPAGESIZE MEMORY MIN NEXT NOCROSSREFS
    NOCROSSREFS_TO NOFLOAT NOLOAD NO_ENUM_SIZE_WARNING NO_WCHAR_SIZE_WARNING O ONLY_IF_RO
    ONLY_IF_RW ORG ORIGIN OUTPUT OUTPUT_ARCH OUTPUT_FORMAT OVERLAY PHDRS PROVIDE PROVIDE_HIDDEN
    QUAD REGION_ALIAS RESERVE REVERSE SEARCH_DIR SECTIONS SEGMENT_START SHORT SIZEOF
    SIZEOF_HEADERS SORT SORT_BY_ALIGNMENT SORT_BY_INIT_PRIORITY SORT_BY_NAME SORT_NONE SQUAD
    STARTUP SUBALIGN SYSLIB TARGET TYPE VERSION
""".split())
_LD_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def linker_region_names(mcu: Mcu) -> dict[str, str]:
    """Region name -> the name it has in the linker script.

    A catalog name is safe (mcusim.catalog.NAME_RULE) but not every safe name is a word
    both linkers read: GNU ld takes `1FLASH`, `+RAM` or `LENGTH` for syntax, and lld keeps
    quotes that GNU ld needs.  Such names become plain identifiers (`R_1FLASH`, `R__RAM`);
    plain ones (FLASH, SRAM1) stay as they are.  Build errors name the region again as the
    catalog does (`Builder` maps the script's name back)."""
    out: dict[str, str] = {}
    taken = {r.name for r in mcu.regions
             if _LD_PLAIN.match(r.name) and r.name.upper() not in _LD_KEYWORDS}
    for r in mcu.regions:
        if r.name in taken:
            out[r.name] = r.name
            continue
        base = "R_" + re.sub(r"[^A-Za-z0-9_]", "_", r.name)
        alias, n = base, 1
        while alias in taken:
            n += 1
            alias = f"{base}_{n}"
        taken.add(alias)
        out[r.name] = alias
    return out


def _comment_text(text: str) -> str:
    """Text that cannot end a /* */ comment or a line of the script."""
    return re.sub(r"[^A-Za-z0-9_.+ ()-]", "?", text)[:100]


def linker_script(mcu: Mcu, stack_bytes: int | None = None,
                  keep: Sequence[str] = ()) -> str:
    """A GNU ld / lld script for the MCU's memory map.

    .text goes to the code region (flash, or ITCM with its load image in flash), code in
    a `.ramfunc` section runs from the data region (copied there like .data),
    .rodata (frozen weights, constants) to flash, .data/.bss and the stack to the data
    region; the free space between .bss and the stack is the arena the planner uses.
    `keep`: symbols that are roots of section garbage collection (EXTERN), so a program's
    global functions stay in the image although nothing in it calls them.
    """
    stack = stack_bytes or mcu.stack_bytes
    names = linker_region_names(mcu)
    flash, code, data = names[mcu.flash.name], names[mcu.code_region], names[mcu.data_region]
    lines = [f"/* mcusim linker script for {_comment_text(mcu.name)} "
             f"({_comment_text(mcu.core.name)}), generated */",
             "ENTRY(_start)"]
    for i in range(0, len(keep), 8):
        lines.append("EXTERN(" + " ".join(keep[i:i + 8]) + ")")
    lines += ["MEMORY", "{"]
    for r in mcu.regions:
        attrs = "rx" if r.kind == "flash" else "rwx"
        alias = "" if names[r.name] == r.name else f"  /* {_comment_text(r.name)} */"
        lines.append(f"  {names[r.name]} ({attrs}) : ORIGIN = 0x{r.base:08X}, "
                     f"LENGTH = 0x{r.size:X}{alias}")
    lines.append("}")
    code_at = "" if mcu.code.kind == "flash" else f" AT> {flash}"
    lines += [
        "SECTIONS",
        "{",
        f"  .text : {{ . = ALIGN(4); __text_start = .; *(.text .text.*) . = ALIGN(4); "
        f"__text_end = .; }} > {code}{code_at}",
        f"  .rodata : {{ . = ALIGN(4); *(.rodata .rodata.*) . = ALIGN(4); }} > {flash}",
        # unwind index next to the code it describes (PREL31 reaches only +-1 GB)
        f"  .ARM.exidx : {{ *(.ARM.exidx* .gnu.linkonce.armexidx.*) }} > {code}{code_at}",
        f"  .data : {{ . = ALIGN(8); __data_start = .; *(.data .data.*) . = ALIGN(4); "
        "*(.ramfunc .ramfunc.*) . = ALIGN(8); "
        f"__data_end = .; }} > {data} AT> {flash}",
        f"  .bss (NOLOAD) : {{ . = ALIGN(8); __bss_start = .; *(.bss .bss.* COMMON) "
        f". = ALIGN(8); __bss_end = .; }} > {data}",
        "  __arena_start = __bss_end;",
        f"  __stack_top = ORIGIN({data}) + LENGTH({data});",
        f"  __stack_limit = __stack_top - 0x{stack:X};",
        "  __arena_end = __stack_limit;",
        "  ASSERT(__arena_start <= __stack_limit, \"mcusim: .data + .bss + stack do not fit "
        f"{_comment_text(mcu.data_region)}\")",
        "  /DISCARD/ : { *(.note.*) }",
        "}",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- building


@dataclass(frozen=True)
class BuildResult:
    """One linked image and everything it was made from."""

    core: str
    mcu: str
    toolchain: str
    toolchain_version: str
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]
    elf: str
    cached: bool
    sizes: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["cflags"] = list(self.cflags)
        d["ldflags"] = list(self.ldflags)
        return d


def kernel_sources(root: Path = KERNELS_DIR) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".c", ".S") and p.is_file())


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


# A failed build's output: lines that only summarise or give context, never the cause
_NOISE = re.compile(
    r"collect2: error: ld returned|linker command failed|^\d+ errors? generated|"
    r": in function [`'\"]|^In file included from|Assembler messages:$|^\s*>>>|"
    r"^\s*\d*\s*\|", re.I)
# ... and lines that state a cause
_CAUSE = re.compile(
    r"undefined reference|undefined symbol|multiple definition|duplicate symbol|"
    r"overflowed by|will not fit in region|syntax error|\berror\b|cannot find|"
    r"no such file|not found|mcusim: ", re.I)
_LD_PREFIX = re.compile(r"^\S*/(?:[\w-]*-)?ld(?:\.\w+)?(?:\.exe)?:\s*")


def first_error(output: str, regions: dict[str, str] | None = None,
                paths: dict[str, str] | None = None) -> str:
    """The compiler's or linker's own first real error line from a failed build's
    output: a memory region overflow ("region `FLASH' overflowed by 1234 bytes") first,
    else the first line stating a cause ("undefined reference to `foo'", "x.c:3:5: error:
    ..."), never the driver's summary ("collect2: error: ld returned 1 exit status").
    `regions`: region name -> its name in the linker script; the line names the region
    as the catalog does.  `paths`: path -> shown instead (temporary outputs).  The
    linker's install path is shortened to "ld:"."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    causes = [ln for ln in lines if _CAUSE.search(ln) and not _NOISE.search(ln)]
    causes = [ln for ln in causes if "warning:" not in ln.lower()] or causes
    overflow = [ln for ln in causes if "overflowed by" in ln]
    line = (overflow or causes or [ln for ln in lines if not _NOISE.search(ln)]
            or lines or ["(no output)"])[0]
    line = _LD_PREFIX.sub("ld: ", line)
    for path, shown in (paths or {}).items():
        line = line.replace(path, shown)
    for name, alias in (regions or {}).items():
        if alias != name:
            line = re.sub(rf"(?<=[`'\"]){re.escape(alias)}(?=['\"])", name, line)
    return line if len(line) <= 300 else line[:297] + "..."


def _compile_cwd(cache_dir: Path) -> Path | None:
    """Where to run the compiler: the current directory (None), unless the cache directory
    lies under it with a first path component that looks like an option.  zig passes files
    under its working directory to lld as paths relative to it, so a cache directory `-x`
    reached lld as the option '-x/zig-local/...'; inside the cache directory itself those
    paths start with its subdirectories instead.  (Elsewhere the current directory stays:
    it is the compilation directory the DWARF records, where `profile` reads sources.)"""
    try:
        rel = os.path.relpath(cache_dir)
    except ValueError:  # another drive (Windows)
        return None
    return cache_dir if rel.startswith("-") else None


def _run(cmd: list[str], env: dict[str, str], what: str,
         regions: dict[str, str] | None = None, paths: dict[str, str] | None = None,
         cwd: Path | None = None) -> None:
    """Run a compiler or linker command (every path in it absolute), in `cwd` (None: the
    current directory, which the DWARF records as the compilation directory; see
    `_compile_cwd`)."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600,
                             cwd=cwd)
    except OSError as e:
        raise ToolchainError(f"{what}: cannot run {cmd[0]}: {e}") from None
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{what}: compiler timed out") from None
    if out.returncode != 0:
        text = "\n".join(t for t in (out.stderr, out.stdout) if t)
        raise ToolchainError(f"{what} failed: {first_error(text, regions, paths)}")


# Temporary files of a build step: `<stem>.tmp<PID>.o`, `<name>.tmp<PID>.elf`,
# `.complete.tmp<PID>` and the writability probe `.write-test<PID>`; a process killed
# (SIGKILL, power loss) between writing one and renaming it leaves it behind.
_TEMP_RE = re.compile(r"(?:\.tmp(\d+)(?:\.[A-Za-z0-9]+)?|\A\.write-test(\d+))\Z")
STALE_TEMP_SECONDS = 3600  # older than any build step can take (compile timeout: 600 s)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True


def remove_stale_temps(directory: Path, keep: Sequence[str] = ()) -> list[Path]:
    """Delete the temporary files in a build directory that no running build will finish:
    their process is gone, or they are older than STALE_TEMP_SECONDS.  `keep`: names that
    are real outputs (a source called x.tmp12.c compiles to x.tmp12.o).  Returns what was
    removed; files that vanish or cannot be removed meanwhile are left alone."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TEMP_RE.search(entry.name)
        if m is None or entry.name in keep:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if age < STALE_TEMP_SECONDS and _pid_alive(int(m.group(1) or m.group(2))):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


class Builder:
    """Compiles sources for a core and links them for MCUs, caching every step."""

    def __init__(self, toolchain: Toolchain, cache_dir: Path | None = None,
                 progress: ProgressFn | None = None, jobs: int | None = None) -> None:
        self.toolchain = toolchain
        self.cache_dir = Path(cache_dir).absolute() if cache_dir else default_cache_dir()
        self.progress = progress or (lambda _msg: None)
        self.jobs = jobs or max(1, min(4, os.cpu_count() or 1))

    def _build_dir(self, kind: str, component: str) -> Path:
        """The build directory cache_dir/kind/component, after checking that it is one
        directory directly inside the cache.  The catalog admits only safe names
        (mcusim.catalog.NAME_RULE) and build names are mcusim's own, so a component with a
        path separator, or a directory that resolves (its '..' taken) outside the cache,
        is mcusim's own bug: InternalError, before anything is created."""
        path = self.cache_dir / kind / component
        inside = Path(os.path.normpath(self.cache_dir / kind))
        bad = [c for c in (os.sep, os.altsep, "\0") if c and c in component]
        if bad or component in ("", ".", "..") or \
                Path(os.path.normpath(path)).parent != inside:
            raise InternalError(
                f"build directory {path} would lie outside {inside} (a name with a "
                "path in it reached the builder; the catalog should have rejected it)")
        return path

    def _source_key(self, core: Core, sources: Sequence[Path], include_dirs: Sequence[Path],
                    extra_cflags: Sequence[str]) -> str:
        parts: list[bytes | str] = [self.toolchain.kind, self.toolchain.version,
                                    " ".join(self.toolchain.cflags(core)), " ".join(extra_cflags)]
        headers: list[Path] = []
        for d in include_dirs:
            headers += sorted(p for p in Path(d).rglob("*.h"))
        for p in [*sources, *headers]:
            parts += [p.name, p.read_bytes()]
        return _digest(*parts)

    def compile(self, core: Core, sources: Sequence[Path], include_dirs: Sequence[Path] = (),
                extra_cflags: Sequence[str] = (), name: str = "kernels") -> tuple[list[Path], bool]:
        """Compile sources for the core; returns the objects and whether they were cached."""
        key = self._source_key(core, sources, include_dirs, extra_cflags)
        objdir = self._build_dir("obj", f"{name}-{core.key}-{self.toolchain.kind}-{key}")
        stems = _unique_stems(sources)
        objects = [objdir / f"{stem}.o" for stem in stems]
        done = objdir / ".complete"
        remove_stale_temps(objdir, keep=[o.name for o in objects])
        if done.exists() and _reuse(done, objects, f"the objects in {objdir} changed since "
                                    "they were built (corrupt or edited); rebuilding them"):
            return objects, True
        _ensure_dir(objdir)
        env = self.toolchain.env(self.cache_dir)
        flags = [*self.toolchain.cflags(core), *extra_cflags,
                 *(f"-I{Path(d).absolute()}" for d in include_dirs)]

        def one(pair: tuple[Path, Path]) -> None:
            src, obj = pair
            self.progress(f"compile {src.name} for {core.name} ({self.toolchain.kind})")
            tmp = obj.with_suffix(f".tmp{os.getpid()}.o")
            _run([*self.toolchain.command, *flags, "-c", str(Path(src).absolute()), "-o",
                  str(tmp)], env,
                 f"compiling {src.name} for {core.key} with {self.toolchain.kind}",
                 paths={str(tmp): obj.name}, cwd=_compile_cwd(self.cache_dir))
            tmp.replace(obj)

        with ThreadPoolExecutor(self.jobs) as pool:
            list(pool.map(one, zip(sources, objects, strict=False)))
        _write_manifest(done, objects, sources=[str(s) for s in sources])
        return objects, False

    def link(self, mcu: Mcu, objects: Sequence[Path], *, name: str = "kernels",
             stack_bytes: int | None = None) -> tuple[Path, bool]:
        """Link objects for the MCU's memory map; returns the ELF and whether it was cached."""
        script = linker_script(mcu, stack_bytes, keep=global_symbols(objects))
        key = _digest(script, " ".join(self.toolchain.ldflags()), self.toolchain.version,
                      *(o.read_bytes() for o in objects))
        outdir = self._build_dir("img", f"{name}-{mcu.name}-{self.toolchain.kind}-{key}")
        elf = outdir / f"{name}.elf"
        manifest = outdir / ".complete"
        remove_stale_temps(outdir, keep=[elf.name])
        if (elf.exists() or manifest.exists()) and _reuse(
                manifest, [elf], f"{elf} changed since it was linked (corrupt, truncated or "
                "edited); linking it again"):
            return elf, True
        _ensure_dir(outdir)
        ld = outdir / "link.ld"
        ld.write_text(script)
        self.progress(f"link {name} for {mcu.name}")
        tmp = elf.with_suffix(f".tmp{os.getpid()}.elf")
        cmd = [*self.toolchain.command, *self.toolchain.cflags(mcu.core), "-T", str(ld),
               *(str(o) for o in objects), *self.toolchain.ldflags(), "-o", str(tmp)]
        _run(cmd, self.toolchain.env(self.cache_dir), f"linking {name} for {mcu.name}",
             linker_region_names(mcu), {str(tmp): elf.name},
             cwd=_compile_cwd(self.cache_dir))
        tmp.replace(elf)
        _write_manifest(manifest, [elf])
        return elf, False

    def build(self, core: Core, mcus: Sequence[Mcu], sources: Sequence[Path] | None = None,
              include_dirs: Sequence[Path] | None = None, extra_cflags: Sequence[str] = (),
              name: str = "kernels") -> list[BuildResult]:
        """Compile once for the core, link once per MCU (all MCUs must have that core)."""
        from mcusim.elf import ElfImage

        srcs = list(sources) if sources is not None else kernel_sources()
        incs = list(include_dirs) if include_dirs is not None else [KERNELS_DIR]
        if not srcs:
            raise ToolchainError("no C or assembly sources to build")
        for m in mcus:
            if m.core.key != core.key:
                raise ToolchainError(f"{m.name} has a {m.core.name}, not a {core.name}")
        objects, obj_cached = self.compile(core, srcs, incs, extra_cflags, name)
        results = []
        for m in mcus:
            elf, cached = self.link(m, objects, name=name)
            sizes = ElfImage.open(elf).section_sizes()
            results.append(BuildResult(
                core=core.key, mcu=m.name, toolchain=self.toolchain.kind,
                toolchain_version=self.toolchain.version,
                cflags=tuple(self.toolchain.cflags(core)) + tuple(extra_cflags),
                ldflags=tuple(self.toolchain.ldflags()), elf=str(elf),
                cached=cached and obj_cached, sizes=sizes))
        return results


_SYMBOL_RE = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*\Z")


def global_symbols(objects: Sequence[Path]) -> list[str]:
    """The global and weak functions and data objects the objects define, sorted.

    Every one is kept in the linked image, as gcc's link (no --gc-sections) does, so both
    toolchains keep a program's entry points although nothing in the program calls them
    (the linker's section GC would drop them with zig)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    names: set[str] = set()
    for path in objects:
        try:
            with open(path, "rb") as f:
                elf = ELFFile(f)
                for sec in elf.iter_sections():
                    if not isinstance(sec, SymbolTableSection):
                        continue
                    for sym in sec.iter_symbols():
                        if (sym["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK")
                                and sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT")
                                and sym["st_shndx"] != "SHN_UNDEF"
                                and _SYMBOL_RE.match(sym.name)):
                            names.add(sym.name)
        except (OSError, ELFError, ValueError) as e:
            raise ToolchainError(f"cannot read object {path.name}: {e}") from None
    return sorted(names)


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_manifest(path: Path, files: Sequence[Path], **extra: Any) -> None:
    """Record each built file's SHA-256; written last, so it also marks a finished build."""
    data = {"sha256": {f.name: _file_hash(f) for f in files}, **extra}
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _check(manifest: Path, files: Sequence[Path]) -> str:
    """"intact" when every file still has the SHA-256 recorded at build time; "changed"
    when a file differs from it or is gone (a flipped bit, a truncation, an edit);
    "unrecorded" when there is no usable manifest (an interrupted build, or a cache
    written by an mcusim without checksums): rebuilt without a warning."""
    try:
        recorded = json.loads(manifest.read_text())["sha256"]
        if not isinstance(recorded, dict):
            return "unrecorded"
    except (OSError, ValueError, KeyError, TypeError):
        return "unrecorded"
    try:
        same = all(recorded.get(f.name) == _file_hash(f) for f in files)
    except OSError:
        return "changed"
    return "intact" if same else "changed"


def _reuse(manifest: Path, files: Sequence[Path], changed: str) -> bool:
    """True when the cached files are intact; otherwise forget them (warning with
    `changed` when they differ from what was built) so the caller builds them again."""
    state = _check(manifest, files)
    if state == "intact":
        return True
    if state == "changed":
        warnings.warn(f"build cache: {changed}", stacklevel=3)
    manifest.unlink(missing_ok=True)
    return False


def _ensure_dir(path: Path) -> None:
    """Create a cache directory, or say in one line why the cache cannot be used."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"build cache directory {path} is not usable ({e.strerror or e}); "
                         "set MCUSIM_CACHE_DIR to a writable directory") from None


def _unique_stems(sources: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for s in sources:
        stem = s.stem
        if stem in seen:
            seen[stem] += 1
            stem = f"{stem}_{seen[stem]}"
        else:
            seen[stem] = 0
        stems.append(stem)
    return stems
