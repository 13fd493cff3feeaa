"""The MCU catalog loads into typed objects; malformed entries are rejected clearly."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import tomllib

from mcusim.catalog import COST_MODELS_DIR, load_catalog, mcu_template
from mcusim.errors import CatalogError, UnknownNameError

MCUS = COST_MODELS_DIR / "mcus.toml"


def test_catalog_covers_three_cores_and_required_parts(catalog):
    assert len(catalog.mcus) >= 10
    assert {m.core.key for m in catalog.mcus.values()} == {"m0plus", "m4", "m7"}
    for name in ("RP2040", "nRF52840", "MIMXRT1062", "STM32L053", "STM32G071", "STM32F411",
                 "STM32L476", "STM32F746", "STM32H743", "SAMD21G18"):
        catalog.mcu(name)


def test_paper_boards_as_measured(catalog):
    rp, nrf, rt = catalog.mcu("RP2040"), catalog.mcu("nRF52840"), catalog.mcu("MIMXRT1062")
    assert (rp.core.key, rp.clock_hz, rp.multiplier) == ("m0plus", 133_000_000, "fast")
    assert (nrf.core.key, nrf.clock_hz, nrf.fpu) == ("m4", 64_000_000, "sp")
    assert (rt.core.key, rt.clock_hz) == ("m7", 600_000_000)
    assert rp.sram_bytes == 264 * 1024
    assert nrf.sram_bytes == 256 * 1024 and nrf.flash_bytes == 1024 * 1024
    assert catalog.mcu("STM32L053").sram_bytes == 8 * 1024
    assert catalog.mcu("STM32G071").sram_bytes == 36 * 1024
    assert rt.code.kind == "itcm" and rt.data.kind == "dtcm"


def test_every_mcu_is_consistent(catalog):
    for m in catalog.mcus.values():
        if m.core.key == "m0plus":
            assert m.fpu == "none" and m.multiplier in ("fast", "small")
        assert m.data.kind != "flash"
        for key in ("core", "clock_hz", "memory", "flash_wait_states", "voltage_v",
                    "run_current_ma", "fpu"):
            assert m.sources[key].strip()


def test_lookup_is_case_insensitive_and_by_board(catalog):
    assert catalog.mcu("rp2040").name == "RP2040"
    assert catalog.mcu("Raspberry Pi Pico").name == "RP2040"


def test_unknown_mcu_suggests_near_names(catalog):
    with pytest.raises(UnknownNameError, match=r"unknown MCU 'STM32F412'.*did you mean.*STM32F411"):
        catalog.mcu("STM32F412")
    with pytest.raises(UnknownNameError, match="mcusim mcus"):
        catalog.mcu("zzzzqqq")


# --------------------------------------------------------------------------- validation

def _first_mcu_block(text: str) -> tuple[int, int]:
    start = text.index("[[mcu]]")
    nxt = text.index("[[mcu]]", start + 1)
    return start, nxt


def _write_variant(tmp_path: Path, edit) -> Path:
    text = MCUS.read_text()
    p = tmp_path / "mcus.toml"
    p.write_text(edit(text))
    return p


def _sub_in_first(pattern: str, repl: str):
    def edit(text: str) -> str:
        a, b = _first_mcu_block(text)
        block, n = re.subn(pattern, repl, text[a:b], count=1, flags=re.M)
        assert n == 1, f"pattern {pattern!r} not found in the first MCU"
        return text[:a] + block + text[b:]
    return edit


FIRST = tomllib.loads(MCUS.read_text())["mcu"][0]["name"]


@pytest.mark.parametrize("edit, message", [
    (_sub_in_first(r"^clock_hz\s*=.*$", 'clock_hz = "fast"'), r"field 'clock_hz': must be an integer"),
    (_sub_in_first(r"^clock_hz\s*=.*$", "clock_hz = -5"), r"field 'clock_hz': must be an integer >="),
    (_sub_in_first(r"^core\s*=.*$", 'core = "m33"'), r"field 'core': must be one of"),
    (_sub_in_first(r"^voltage_v\s*=.*$", ""), r"field 'voltage_v': is missing"),
    (_sub_in_first(r"^fpu\s*=.*$", 'fpu = "quad"'), r"field 'fpu'"),
    (_sub_in_first(r"^data_region\s*=.*$", 'data_region = "NOPE"'), r"field 'data_region': names no region"),
    (_sub_in_first(r"^run_current_ma\s*=.*$", "run_current_ma = 0"), r"field 'run_current_ma': must be a finite number > 0"),
    (_sub_in_first(r"^run_current_ma\s*=.*$", "run_current_ma = inf"), r"field 'run_current_ma': must be a finite number > 0"),
    (_sub_in_first(r"^voltage_v\s*=.*$", "voltage_v = nan"), r"field 'voltage_v': must be a finite number > 0"),
    (_sub_in_first(r"^name\s*=.*$", f'name = "{FIRST}"\nclock_speed = 3'), r"'clock_speed': is not a known field"),
    (_sub_in_first(r"^size\s*=.*$", "size = 0x1234"), r"must be a multiple of 4 KB"),
    (_sub_in_first(r"^base\s*=.*$", "base = 0x20000000\n"), r"overlap|must be|outside"),
])
def test_catalog_rejects_bad_entries(tmp_path, edit, message):
    p = _write_variant(tmp_path, edit)
    with pytest.raises(CatalogError) as ei:
        load_catalog(p)
    text = str(ei.value)
    assert "\n" not in text
    assert re.search(message, text), text
    assert "mcus.toml" in text


def test_missing_source_is_rejected(tmp_path):
    def edit(text):
        a, b = _first_mcu_block(text)
        block = re.sub(r"^run_current_ma\s*=\s*\".*\"\s*$", "", text[a:b].split("[mcu.sources]")[1],
                       count=1, flags=re.M)
        head = text[a:b].split("[mcu.sources]")[0]
        return text[:a] + head + "[mcu.sources]" + block + text[b:]
    with pytest.raises(CatalogError, match=r"sources.run_current_ma': is missing"):
        load_catalog(_write_variant(tmp_path, edit))


def test_m0plus_with_fpu_is_rejected(tmp_path):
    def edit(text):
        doc = tomllib.loads(text)
        idx = next(i for i, m in enumerate(doc["mcu"]) if m["core"] == "m0plus")
        blocks = text.split("[[mcu]]")
        blocks[idx + 1] = re.sub(r'^fpu\s*=.*$', 'fpu = "sp"', blocks[idx + 1], count=1, flags=re.M)
        return "[[mcu]]".join(blocks)
    with pytest.raises(CatalogError, match="a Cortex-M0\\+ has no FPU"):
        load_catalog(_write_variant(tmp_path, edit))


def test_undefined_source_key_is_rejected(tmp_path):
    def edit(text):
        a, b = _first_mcu_block(text)
        block = re.sub(r'^(clock_hz\s*=\s*")', r'\1S999 ', text[a:b].split("[mcu.sources]")[1],
                       count=1, flags=re.M)
        return text[:a] + text[a:b].split("[mcu.sources]")[0] + "[mcu.sources]" + block + text[b:]
    with pytest.raises(CatalogError, match="cites S999"):
        load_catalog(_write_variant(tmp_path, edit))


def test_malformed_toml(tmp_path):
    p = tmp_path / "mcus.toml"
    p.write_text("schema = 1\n[[mcu]\nname = 'x'\n")
    with pytest.raises(CatalogError, match="malformed TOML"):
        load_catalog(p)


def test_missing_catalog_file(tmp_path):
    with pytest.raises(CatalogError, match="not found"):
        load_catalog(tmp_path / "nope.toml")


def test_unique_part_of_a_name_or_board(catalog):
    assert catalog.mcu("pico").name == "RP2040"
    assert catalog.mcu("teensy").name == "MIMXRT1062"
    with pytest.raises(UnknownNameError, match="ambiguous"):
        catalog.mcu("stm32")


# --------------------------------------------------------------------------- user catalogs

def _template(tmp_path: Path, name: str = "my.toml", edit=lambda t: t) -> Path:
    p = tmp_path / name
    p.write_text(edit(mcu_template()))
    return p


def _drop_line(field: str):
    def edit(text: str) -> str:
        out, n = re.subn(rf"^{field}\s*=.*\n", "", text, count=1, flags=re.M)
        assert n == 1, field
        return out
    return edit


def _set_line(field: str, value: str):
    def edit(text: str) -> str:
        out, n = re.subn(rf"^{field}\s*=.*$", f"{field} = {value}", text, count=1, flags=re.M)
        assert n == 1, field
        return out
    return edit


def _chain(*edits):
    def edit(text: str) -> str:
        for e in edits:
            text = e(text)
        return text
    return edit


def test_template_loads_as_a_user_catalog(tmp_path):
    text = mcu_template()
    for field in ("name", "board", "vendor", "core", "clock_hz", "fpu", "multiplier",
                  "flash_wait_states", "voltage_v", "run_current_ma", "code_region",
                  "data_region", "stack_bytes", "notes", "unconfirmed", "kind", "base", "size",
                  "size_bytes", "line_bytes", "ways", "data_size_bytes", "miss_cycles",
                  "supply", "conditions", "board_voltage_v", "board_current_ma",
                  "board_supply"):
        line = next(ln for ln in text.splitlines() if re.match(rf"#? ?{field}\s*=", ln))
        assert "#" in line.lstrip("# ").split("=", 1)[1], f"{field}: no comment"
    assert "optional" in text and "[mcu.flash_cache]" in text
    p = _template(tmp_path)
    cat = load_catalog(user_catalogs=[p])
    m = cat.mcu("MyChip")
    assert (m.core.key, m.clock_hz, m.fpu, m.flash_wait_states) == ("m4", 168_000_000, "sp", 5)
    assert [r.kind for r in m.regions].count("flash") == 1 and m.data.kind == "sram"
    assert m.flash_cache is not None and m.flash_cache.kind == "art"
    assert cat.user_files == {"MyChip": str(p)}


def _uncomment(field: str):
    def edit(text: str) -> str:
        out, n = re.subn(rf"^# ({field} =)", r"\1", text, count=1, flags=re.M)
        assert n == 1, field
        return out
    return edit


def test_template_optional_lines_load_when_uncommented(tmp_path):
    board = _chain(*(_uncomment(f) for f in ("board_voltage_v", "board_current_ma",
                                             "board_supply", "miss_cycles")))
    m = load_catalog(user_catalogs=[_template(tmp_path, edit=board)]).mcu("MyChip")
    assert m.flash_cache.miss_cycles == 6 and m.has_board_energy
    assert m.sources["board_current_ma"].startswith("user-provided")
    m0 = _chain(_uncomment("multiplier"), _set_line("core", '"m0plus"'),
                _set_line("fpu", '"none"'))
    m = load_catalog(user_catalogs=[_template(tmp_path, "m0.toml", m0)]).mcu("MyChip")
    assert (m.core.key, m.multiplier, m.fpu) == ("m0plus", "fast", "none")


def test_user_catalog_extends_the_builtin_one(tmp_path, catalog):
    p = _template(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a new name overrides nothing: no warning
        cat = load_catalog(user_catalogs=[p])
    assert len(cat.mcus) == len(catalog.mcus) + 1
    assert cat.mcu("nRF52840") == catalog.mcu("nRF52840")  # the built-ins are still there
    assert "nRF52840" not in cat.user_files
    m = cat.mcu("MyChip")
    # figures without a source are the user's; a given source is kept
    assert m.sources["run_current_ma"] == f"user-provided ({p})"
    assert m.sources["flash_cache"] == f"user-provided ({p})"
    assert m.sources["clock_hz"].startswith("MyChip datasheet")
    assert "MyChip" not in load_catalog().mcus  # the built-in catalog is left alone


def test_user_entry_overrides_builtin_with_a_warning(tmp_path, catalog):
    p = _template(tmp_path, edit=_set_line("name", '"nRF52840"'))
    with pytest.warns(UserWarning, match=r"my\.toml: MCU 'nRF52840' overrides the built-in"):
        cat = load_catalog(user_catalogs=[p])
    assert len(cat.mcus) == len(catalog.mcus)
    assert list(cat.mcus) == list(catalog.mcus)  # same place in the catalog
    assert cat.mcu("nRF52840").clock_hz == 168_000_000
    assert catalog.mcu("nRF52840").clock_hz == 64_000_000
    assert cat.user_files == {"nRF52840": str(p)}


def test_later_user_catalogs_win(tmp_path):
    a = _template(tmp_path, "a.toml")
    b = _template(tmp_path, "b.toml", _set_line("clock_hz", "84_000_000"))
    with pytest.warns(UserWarning, match=r"b\.toml: MCU 'MyChip' overrides the entry from .*a\.toml"):
        cat = load_catalog(user_catalogs=[a, b])
    assert cat.mcu("MyChip").clock_hz == 84_000_000 and cat.user_files["MyChip"] == str(b)
    with pytest.warns(UserWarning):
        assert load_catalog(user_catalogs=[b, a]).mcu("MyChip").clock_hz == 168_000_000


def test_a_copy_of_the_builtin_catalog_overrides_nothing(catalog):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cat = load_catalog(user_catalogs=[MCUS])
    assert cat.mcus == catalog.mcus and cat.user_files == {}


def test_user_entries_may_cite_builtin_and_own_sources(tmp_path):
    def edit(text: str) -> str:
        text = text.replace("# [sources]", "[sources]").replace("# U1 =", "U1 =")
        return text.replace('clock_hz = "MyChip datasheet', 'fpu = "S12 Features"\n'
                            'clock_hz = "U1 Features; MyChip datasheet')
    cat = load_catalog(user_catalogs=[_template(tmp_path, edit=edit)])
    assert cat.source_texts["U1"].startswith("MyChip datasheet")
    assert cat.source_texts["S12"] == load_catalog().source_texts["S12"]
    bad = _template(tmp_path, "bad.toml", lambda t: edit(t).replace("U1 Features", "U9 x")
                    .replace("U1 =", "S1 ="))
    with pytest.raises(CatalogError) as ei:
        load_catalog(user_catalogs=[bad])
    assert "'sources.S1': is defined differently by the built-in catalog" in str(ei.value)


def test_every_problem_of_a_user_file_in_one_line(tmp_path):
    p = _template(tmp_path, edit=_chain(_drop_line("clock_hz"), _drop_line("data_region"),
                                        _drop_line("voltage_v"), _set_line("fpu", '"yes"')))
    with pytest.raises(CatalogError) as ei:
        load_catalog(user_catalogs=[p])
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}: mcu 'MyChip': ")
    assert "fields 'clock_hz', 'voltage_v', 'data_region': are missing" in msg  # file order
    assert "field 'fpu': must be one of none, sp, dp (got 'yes')" in msg
    # no follow-on noise from the missing data region
    assert "stack_bytes" not in msg and "names no region" not in msg


def test_problems_of_several_entries_and_regions_together(tmp_path):
    text = mcu_template()
    second = text[text.index("\n[[mcu]]"):]
    second = re.sub(r'^name = "MyChip"', 'name = "Other"', second, count=1, flags=re.M)
    second = re.sub(r"^clock_hz\s*=.*$", 'clock_hz = "fast"', second, count=1, flags=re.M)
    second = second.replace("size = 0x2_0000", "size = 0x1234", 1)
    first = re.sub(r"^stack_bytes\s*=.*$", "stack_bytes = 4095", text, count=1, flags=re.M)
    p = tmp_path / "two.toml"
    p.write_text(first + "\n" + second)
    with pytest.raises(CatalogError) as ei:
        load_catalog(user_catalogs=[p])
    msg = str(ei.value)
    assert "\n" not in msg
    assert "mcu 'MyChip': field 'stack_bytes': must be a multiple of 8" in msg
    assert "mcu 'Other': field 'clock_hz': must be an integer" in msg
    assert "mcu 'Other' region 'SRAM': field 'size': must be a multiple of 4 KB" in msg


def test_unknown_fields_all_named_with_a_hint(tmp_path):
    p = _template(tmp_path, edit=lambda t: t.replace("stack_bytes =", "stak_bytes =")
                  .replace("\nvoltage_v =", "\nvoltage =", 1))
    with pytest.raises(CatalogError) as ei:
        load_catalog(user_catalogs=[p])
    msg = str(ei.value)
    assert "'stak_bytes': is not a known field (did you mean 'stack_bytes'?)" in msg
    assert "'voltage': is not a known field (did you mean 'voltage_v'?)" in msg
    assert "fields 'voltage_v', 'stack_bytes': are missing" in msg


@pytest.mark.parametrize("edit", [
    _set_line("name", '"../../ESCAPED"'),
    _set_line("name", '"a/b"'),
    _set_line("name", '"x..y"'),
    _set_line("name", '"My Chip"'),
    _set_line("name", '""'),
    _set_line("name", '"' + "A" * 65 + '"'),
    lambda t: t.replace('name = "FLASH"', 'name = "FLASH) INPUT(/etc/hostname"')
    .replace('code_region = "FLASH"', 'code_region = "FLASH) INPUT(/etc/hostname"'),
    lambda t: t.replace('name = "SRAM"', 'name = "SR\\nAM"'),
    lambda t: t.replace('name = "SRAM"', 'name = "../SRAM"'),
])
def test_unsafe_names_are_rejected(tmp_path, edit):
    with pytest.raises(CatalogError) as ei:
        load_catalog(user_catalogs=[_template(tmp_path, edit=edit)])
    msg = str(ei.value)
    assert "\n" not in msg
    assert re.search(r"field 'name': (MCU|region) name may only use letters, digits", msg), msg


@pytest.mark.parametrize("what, message", [
    ("devnull", r"/dev/null: is a character device, not a catalog TOML file"),
    ("directory", r": is a directory, not a catalog TOML file"),
    ("missing", r"catalog file not found: .*nope\.toml"),
    ("binary", r": not a TOML file"),
    ("toml", r": malformed TOML"),
    ("table", r"'mcu': must be \[\[mcu\]\] entries"),
    ("schema", r"'schema': unsupported schema version 2"),
])
def test_bad_user_files_are_one_line_errors(tmp_path, what, message):
    files = {"devnull": "/dev/null", "directory": str(tmp_path), "missing":
             str(tmp_path / "nope.toml")}
    if what not in files:
        p = tmp_path / "x.toml"
        content = {"binary": b"\xff\xfe\x00", "toml": b"[[mcu]\n",
                   "table": b"[mcu]\nname = 'x'\n",
                   "schema": mcu_template().replace("schema = 1", "schema = 2").encode()
                   }[what]
        p.write_bytes(content)
        files[what] = str(p)
    with pytest.raises(CatalogError) as ei:
        load_catalog(user_catalogs=[files[what]])
    assert "\n" not in str(ei.value)
    assert re.search(message, str(ei.value)), str(ei.value)
