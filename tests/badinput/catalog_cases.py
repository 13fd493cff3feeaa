"""Catalog group: user MCU catalogs (`--catalog FILE`) made from `mcusim mcus --template`.

* MCU names: path traversal ('../x', 'a/b', '..'), spaces, markup, a leading '-', '--json',
  empty, 65 and 100,000 characters, a newline, a NUL, non-ASCII;
* region names: linker-script injection (`FLASH) INPUT(/etc/hostname`, `FLASH\\n}`,
  `/DISCARD/`, `FLASH;`), linker keywords (ORIGIN, LENGTH, MEMORY, SECTIONS...: built and
  linked), duplicates, code/data regions that do not exist or are of the wrong kind;
* sizes and bases: 0, negative, not 4 KB multiples, past 4 GiB, 2**64, floats, strings,
  booleans, overlaps; clock 0/1/nan/inf/1e400/2**63/a string; voltage and current
  0/negative/nan/inf/1e308; stack 0/255/257/2**40; wait states -1/1000/2**63; cache
  line sizes 0/3/2**40, negative ways, unknown kinds;
* cores: missing, unknown, wrong type, FPU/multiplier on the wrong core;
* duplicate names, built-in names (override with a warning), [mcu] instead of [[mcu]],
  mcu = [], schema 2 or "1", bad [sources], energy text with a newline, unknown fields,
  free text with markup (shown literally), nesting 2000 deep, non-UTF-8;
* files: /dev/null, /dev/zero, a FIFO, a directory, empty, missing, a sparse 3 GiB file.

Commands: `mcus --catalog F --json` (also with --catalog before the command), `mcus --wide`
tables, `budget digits-cnn --mcu NAME --catalog F --json`, `build --core m4 --mcu NAME
--catalog F --print-path`.  Oracle: exit 2 with one line naming the file for every bad
catalog; the template, re-serialized, reordered, with CRLF or given twice, yields exactly the
template's MCU entry and budget.
"""

from __future__ import annotations

import copy
import os
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mcusim.catalog import mcu_template

from .runner import Case
from .tomlw import Raw, dumps


def _entry(out: Any, name: str = "MyChip") -> dict[str, Any] | None:
    for m in out.get("mcus", []):
        if m.get("name") == name:
            return {k: v for k, v in m.items() if k != "user_file"}
    return None


def compare_entry(out: Any, ref: Any) -> str | None:
    a, b = _entry(out), _entry(ref)
    if a is None:
        return "MyChip is missing from the catalog listing"
    if a != b:
        for k in sorted(set(a) | set(b or {})):
            if a.get(k) != (b or {}).get(k):
                return f"MyChip.{k} = {str(a.get(k))[:80]}, the template gives " \
                       f"{str((b or {}).get(k))[:80]}"
    return None


def compare_all(out: Any, ref: Any) -> str | None:
    if out == ref:
        return None
    for k in sorted(set(out) | set(ref)):
        if out.get(k) != ref.get(k):
            return f"{k} = {str(out.get(k))[:80]}, the template gives {str(ref.get(k))[:80]}"
    return "differs"


def generate(work: Path) -> list[Case]:
    d = work / "catalog"
    d.mkdir(parents=True, exist_ok=True)
    template = mcu_template()
    base = tomllib.loads(template)
    cases: list[Case] = []
    n = [0]

    def argv(cmd: str, path: str, name: str = "MyChip") -> list[str]:
        return {"mcus": ["mcus", "--catalog", path, "--json"],
                "mcus-before": ["--catalog", path, "mcus", "--json"],
                "wide": ["mcus", "--catalog", path, "--wide"],
                "budget": ["budget", "digits-cnn", f"--mcu={name}", "--catalog", path,
                           "--json"],
                "build": ["build", "--core", "m4", f"--mcu={name}", "--catalog", path,
                          "--print-path"]}[cmd]

    def write(name: str, content: str | bytes) -> str:
        n[0] += 1
        path = d / f"{n[0]:03d}-{name}.toml"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return str(path)

    def add(name: str, content: str | bytes | None, note: str, expect: set[int], *,
            cmds: tuple[str, ...] = ("mcus",), path: str | None = None, mcu: str = "MyChip",
            ref: bool = False, stdout_check: Callable[[str], str | None] | None = None,
            mention: tuple[str, ...] | None = None) -> None:
        if path is None:
            path = write(name, content)  # type: ignore[arg-type]
        for cmd in cmds:
            compare = None
            if ref:
                compare = compare_entry if cmd.startswith("mcus") else compare_all
            cases.append(Case(
                group="catalog", name=f"{cmd}:{name}", argv=argv(cmd, path, mcu),
                expect=expect, note=note, ref=f"{cmd}:template" if ref else None,
                compare=compare, stdout_check=stdout_check, files=(path,),
                mention=mention if mention is not None else (os.path.basename(path),)))

    def mutate(name: str, fn: Callable[[dict[str, Any]], Any], note: str,
               expect: set[int] | None = None, cmds: tuple[str, ...] = ("mcus",),
               mcu: str = "MyChip", **kw: Any) -> None:
        doc = copy.deepcopy(base)
        fn(doc)
        add(name, dumps(doc), note, expect or {2}, cmds=cmds, mcu=mcu, **kw)

    def mcu(**kv: Any) -> Callable[[dict[str, Any]], None]:
        def fn(doc: dict[str, Any]) -> None:
            for k, v in kv.items():
                if v is None:
                    doc["mcu"][0].pop(k, None)
                else:
                    doc["mcu"][0][k] = v
        return fn

    def region(i: int, **kv: Any) -> Callable[[dict[str, Any]], None]:
        def fn(doc: dict[str, Any]) -> None:
            doc["mcu"][0]["regions"][i].update(kv)
        return fn

    def cache(**kv: Any) -> Callable[[dict[str, Any]], None]:
        def fn(doc: dict[str, Any]) -> None:
            doc["mcu"][0]["flash_cache"].update(kv)
        return fn

    # ------------------------------------------------------------------ references, valid
    tpl = str(d / "template.toml")
    Path(tpl).write_text(template)
    for cmd in ("mcus", "budget"):
        cases.append(Case(group="catalog", name=f"{cmd}:template", argv=argv(cmd, tpl),
                          expect={0}, note="the template as printed", is_reference=True,
                          files=(tpl,)))
    add("reserialized", dumps(base), "the template re-serialized (decimal, no comments)", {0},
        cmds=("mcus", "budget"), ref=True)
    add("crlf", template.replace("\n", "\r\n"), "CRLF line endings", {0}, ref=True)
    rev = copy.deepcopy(base)
    rev["mcu"][0] = dict(reversed(list(rev["mcu"][0].items())))
    add("reordered", dumps(rev), "an entry's keys in reverse order", {0}, cmds=("mcus",
                                                                               "budget"),
        ref=True)
    twice = str(d / "template-copy.toml")
    Path(twice).write_text(template)
    cases.append(Case(group="catalog", name="mcus:template-twice",
                      argv=["mcus", "--catalog", tpl, "--catalog", twice, "--json"],
                      expect={0}, note="the same entry from two files", ref="mcus:template",
                      compare=compare_entry, files=(tpl, twice)))
    add("template-before-command", None, "--catalog before the command", {0},
        cmds=("mcus-before",), path=tpl, ref=False)
    add("template-build", None, "build the template MCU", {0}, cmds=("build",), path=tpl)

    # ------------------------------------------------------------------ MCU names
    for v in ("../x", "a/b", "a b", "[red]x", "[/bold]", "-x", "--json", "", "x" * 65,
              "x" * 100_000, ".", "..", "a..b", "a\nb", "\u00e9t\u00e9", "MyChip\x00",
              "CON\\x"):
        mutate(f"name-{_slug(v)}", mcu(name=v), f"MCU name {v[:30]!r}",
               cmds=("mcus", "budget") if v in ("-x", "../x") else ("mcus",), mcu=v or "x")
    for v, note in (("RP2040", "a built-in name: overrides it, with a warning"),
                    ("rp2040", "a built-in name in lower case")):
        mutate(f"name-builtin-{v}", mcu(name=v), note, {0}, cmds=("mcus", "budget"), mcu=v)
    mutate("name-duplicate", lambda doc: doc["mcu"].append(copy.deepcopy(doc["mcu"][0])),
           "the same [[mcu]] twice")
    mutate("name-duplicate-case", lambda doc: doc["mcu"].append(
        {**copy.deepcopy(doc["mcu"][0]), "name": "MYCHIP"}), "MyChip and MYCHIP")

    # ------------------------------------------------------------------ region names
    for v in ("FLASH) INPUT(/etc/hostname", "FLASH\n}", "a b", "", "/DISCARD/", "FLASH;",
              "x" * 65, "FLASH*", "-FLASH"):
        def rename(doc: dict[str, Any], v: str = v) -> None:
            doc["mcu"][0]["regions"][0]["name"] = v
            doc["mcu"][0]["code_region"] = v
        mutate(f"region-name-{_slug(v)}", rename, f"flash region named {v!r}",
               cmds=("mcus", "build") if "INPUT" in v else ("mcus",))
    for v in ("ORIGIN", "LENGTH", "MEMORY", "SECTIONS", "ALIGN", "AT", "NOLOAD", "ENTRY",
              "DISCARD", "rx", "o"):
        def rename_kw(doc: dict[str, Any], v: str = v) -> None:
            doc["mcu"][0]["regions"][1]["name"] = v
            doc["mcu"][0]["data_region"] = v
        mutate(f"region-keyword-{v}", rename_kw, f"data region named {v} (a linker word)",
               {0, 2}, cmds=("build",))
    mutate("region-duplicate", region(2, name="SRAM"), "two regions named SRAM")
    mutate("code-region-missing", mcu(code_region="NOPE"), "code_region names nothing")
    mutate("code-region-sram", mcu(code_region="CCM"), "code from an SRAM region", {0, 2},
           cmds=("mcus", "build"))
    mutate("data-region-flash", mcu(data_region="FLASH"), "data in flash")
    mutate("data-region-int", mcu(data_region=5), "data_region = 5")
    mutate("regions-empty", mcu(regions=[]), "no regions")
    mutate("regions-table", mcu(regions={"name": "FLASH"}), "regions a table")
    mutate("regions-no-ram", lambda doc: doc["mcu"][0].update(
        regions=doc["mcu"][0]["regions"][:1], data_region="FLASH"), "only a flash region")

    # ------------------------------------------------------------------ sizes, bases
    for v in (0, -4096, 4095, 2**32, 2**64, 2**100, 1.5, "1M", True):
        mutate(f"size-{_slug(v)}", region(1, size=v), f"SRAM size {v!r}")
    for v in (-1, 2**32, 0xFFFFF000, 0x2000_0001, 1.0e9, "0x2000_0000"):
        mutate(f"base-{_slug(v)}", region(1, base=v), f"SRAM base {v!r}")
    mutate("regions-overlap", region(2, base=0x2000_0000), "CCM on top of SRAM")
    mutate("region-kind-bogus", region(2, kind="dram"), "region kind dram")
    mutate("region-not-table", lambda doc: doc["mcu"][0].update(
        regions=[*doc["mcu"][0]["regions"], "x"]), "a region that is a string")

    # ------------------------------------------------------------------ figures
    for v in (0, -1, 1, float("nan"), float("inf"), Raw("1e400"), "fast", 2**63, 2**64,
              1.68e8):
        mutate(f"clock-{_slug(v)}", mcu(clock_hz=v), f"clock_hz {v!r}",
               cmds=("mcus", "budget") if v in (1, 2**63) else ("mcus",))
    for key in ("voltage_v", "run_current_ma"):
        for v in (0, -1, float("nan"), float("inf"), Raw("-inf"), "3.3", True):
            mutate(f"{key}-{_slug(v)}", mcu(**{key: v}), f"{key} {v!r}")
        mutate(f"{key}-1e308", mcu(**{key: 1e308}), f"{key} 1e308", {0, 2},
               cmds=("mcus", "budget"))
    for v in (0, 255, 257, 2**40, -8, 131072, 65536):  # SRAM is 128 KiB
        mutate(f"stack-{_slug(v)}", mcu(stack_bytes=v), f"stack_bytes {v!r}",
               {0} if v == 65536 else {2}, cmds=("mcus", "budget") if v == 65536 else
               ("mcus",))
    for v, exp in ((-1, {2}), (1000, {0, 2}), (2**63, {0, 2}), (1.5, {2})):
        mutate(f"wait-states-{_slug(v)}", mcu(flash_wait_states=v), f"flash_wait_states {v!r}",
               exp, cmds=("mcus", "budget") if exp != {2} else ("mcus",))
    for k, v in (("line_bytes", 0), ("line_bytes", 3), ("line_bytes", 2**40),
                 ("ways", -1), ("size_bytes", -1), ("kind", "bogus"), ("miss_cycles", -5),
                 ("data_size_bytes", "big")):
        mutate(f"cache-{k}-{_slug(v)}", cache(**{k: v}), f"flash_cache {k} {v!r}",
               cmds=("mcus", "budget") if v == 2**40 else ("mcus",))
    for k, v in (("size_bytes", 2**40), ("miss_cycles", 2**62)):
        mutate(f"cache-{k}-{_slug(v)}", cache(**{k: v}), f"flash_cache {k} {v!r}", {0, 2},
               cmds=("mcus", "budget"))

    # ------------------------------------------------------------------ cores
    for name, fn, note in (
            ("core-missing", mcu(core=None), "no core"),
            ("core-m33", mcu(core="m33"), "core m33"),
            ("core-int", mcu(core=4), "core = 4"),
            ("core-empty", mcu(core=""), "core = ''"),
            ("fpu-on-m0plus", mcu(core="m0plus", multiplier="fast"), "m0plus with fpu sp"),
            ("multiplier-on-m4", mcu(multiplier="fast"), "multiplier on an M4"),
            ("m0plus-no-multiplier", mcu(core="m0plus", fpu="none"), "m0plus, no multiplier"),
            ("fpu-bogus", mcu(fpu="quad"), "fpu quad")):
        mutate(name, fn, note)
    mutate("core-case", mcu(core="M4"), "core = 'M4'", {0, 2})

    # ------------------------------------------------------------------ structure, text
    def table_has(literal: str) -> Callable[[str], str | None]:
        def check(stdout: str) -> str | None:
            return None if literal in stdout else (
                f"the table does not show {literal!r} literally (markup eaten?)")
        return check

    for v in ("[red]x", "[/bold]", "[bold red]b[/]"):
        mutate(f"board-markup-{_slug(v)}", mcu(board=v), f"board {v!r}", {0}, cmds=("wide",),
               stdout_check=table_has(v))
    for k, v in (("board", "a\nb"), ("vendor", "\x1b[31mred"), ("board", "x" * 10_000)):
        mutate(f"{k}-{_slug(v)}", mcu(**{k: v}), f"{k} {v[:20]!r}", {0, 2}, cmds=("wide",))
    for name, fn, note in (
            ("mcu-single-table", lambda doc: doc.update(mcu=doc["mcu"][0]), "[mcu] not [[mcu]]"),
            ("mcu-empty-list", lambda doc: doc.update(mcu=[]), "mcu = []"),
            ("mcu-string", lambda doc: doc.update(mcu="MyChip"), "mcu = 'MyChip'"),
            ("mcu-entry-string", lambda doc: doc.update(mcu=[doc["mcu"][0], "x"]),
             "an entry that is a string"),
            ("schema-2", lambda doc: doc.update(schema=2), "schema 2"),
            ("schema-string", lambda doc: doc.update(schema="1"), "schema '1'"),
            ("sources-int", lambda doc: doc.update(sources={"U1": 5}), "[sources] U1 = 5"),
            ("sources-redefine-S1", lambda doc: doc.update(sources={"S1": "mine"}),
             "[sources] S1 redefined"),
            ("energy-supply-newline", lambda doc: doc["mcu"][0]["energy"].update(
                supply="VDD\nx"), "energy supply with a newline"),
            ("energy-board-half", lambda doc: doc["mcu"][0]["energy"].update(
                board_voltage_v=5.0), "board_voltage_v without board_current_ma"),
            ("notes-string", mcu(notes="a note"), "notes a string"),
            ("unknown-field", mcu(colour="blue"), "an unknown field"),
            ("unknown-top", lambda doc: doc.update(extra=1), "an unknown top-level key"),
            ("source-cites-undefined-U9", lambda doc: (
                doc.setdefault("sources", {}).update(U1="my board's datasheet"),
                doc["mcu"][0]["sources"].update(clock_hz="U9 p. 3")),
             "a source citing U9, which [sources] (defining U1) does not define"),
            ("source-cites-undefined-S999", lambda doc: doc["mcu"][0]["sources"].update(
                clock_hz="S999 p. 3"), "a source citing S999, defined nowhere")):
        mutate(name, fn, note)
    mutate("unconfirmed-bogus", mcu(unconfirmed=["warp_factor"]), "unconfirmed names no field",
           {0, 2})

    for name, content, note in (
            ("nested-2000", "x = " + "[" * 2000 + "]" * 2000 + "\n" + template,
             "an array nested 2000 deep"),
            ("inline-nested-2000", "x = " + "{a = " * 2000 + "1" + "}" * 2000 + "\n" + template,
             "inline tables nested 2000 deep"),
            ("header-2000", template + "\n[" + ".".join(["t"] * 2000) + "]\n",
             "a table header 2000 deep"),
            ("int-5000-digits", template.replace("clock_hz = 168_000_000",
                                                 "clock_hz = " + "9" * 5000),
             "clock_hz of 5000 digits"),
            ("garbage", "[[mcu]\nname = \n", "not TOML")):
        add(name, content, note, {2})
    add("latin1", template.replace("Example", "Exämple").encode("latin-1"), "Latin-1 text", {2})
    add("utf16", template.encode("utf-16"), "UTF-16", {2})

    # ------------------------------------------------------------------ files
    fifo = d / "fifo.toml"
    if not fifo.exists():
        os.mkfifo(fifo)
    (d / "dir.toml").mkdir(exist_ok=True)
    (d / "empty.toml").write_bytes(b"")
    sparse = d / "sparse-3gib.toml"
    with open(sparse, "wb") as f:
        f.write(template.encode())
        f.truncate(3 << 30)
    for name, path in (("dev-null", "/dev/null"), ("dev-zero", "/dev/zero"),
                       ("fifo", str(fifo)), ("directory", str(d / "dir.toml")),
                       ("empty", str(d / "empty.toml")), ("missing", str(d / "missing.toml")),
                       ("sparse-3gib", str(sparse))):
        add(f"file-{name}", None, f"--catalog {path}", {2}, path=path,
            cmds=("mcus", "budget") if name in ("fifo", "dev-zero") else ("mcus",),
            mention=(os.path.basename(path),))
    return cases


def _slug(v: Any) -> str:
    s = f"raw-{v}" if isinstance(v, Raw) else repr(v) if not isinstance(v, str) else v
    out = "".join(c if c.isalnum() else "-" for c in s)[:24].strip("-") or "x"
    return f"{out}-{zlib.crc32(repr(v).encode()) & 0xFFFF:04x}"
