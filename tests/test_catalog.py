"""The MCU catalog loads into typed objects; malformed entries are rejected clearly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

from mcusim.catalog import COST_MODELS_DIR, load_catalog
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
    (_sub_in_first(r"^run_current_ma\s*=.*$", "run_current_ma = 0"), r"field 'run_current_ma': must be > 0"),
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
