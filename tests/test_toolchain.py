"""Toolchain selection, the build cache and linker scripts made from the memory map."""

from __future__ import annotations

import shutil

import pytest

from mcusim import toolchain as tcmod
from mcusim.elf import ElfImage
from mcusim.errors import ToolchainError, UnknownNameError
from mcusim.toolchain import Builder, find_toolchain, kernel_sources, linker_script


def test_cache_hit_and_rebuild_on_change(tmp_path, catalog, default_toolchain):
    kernels = tmp_path / "kernels"
    shutil.copytree(tcmod.KERNELS_DIR, kernels)
    mcu = catalog.mcu("nRF52840")
    b = Builder(default_toolchain, cache_dir=tmp_path / "cache")
    srcs = kernel_sources(kernels)
    first = b.build(mcu.core, [mcu], srcs, [kernels])[0]
    again = b.build(mcu.core, [mcu], srcs, [kernels])[0]
    assert not first.cached and again.cached and first.elf == again.elf
    # a comment changes no object: the same image is found again (content-addressed)
    (kernels / "fqt.h").write_text((kernels / "fqt.h").read_text() + "\n/* comment */\n")
    same = b.build(mcu.core, [mcu], srcs, [kernels])[0]
    assert same.elf == first.elf
    # a code change gives a new image with the new code
    src = kernels / "common" / "fqt_requantize.c"
    src.write_text(src.read_text() + "\nFQT_API int32_t fqt_added(int32_t a) { return a + 1; }\n")
    changed = b.build(mcu.core, [mcu], srcs, [kernels])[0]
    assert not changed.cached and changed.elf != first.elf
    assert ElfImage.open(changed.elf).function("fqt_added")


def test_images_sit_where_the_mcu_has_memory(catalog, default_toolchain):
    for name in ("RP2040", "nRF52840", "MIMXRT1062", "STM32L053"):
        mcu = catalog.mcu(name)
        r = Builder(default_toolchain).build(mcu.core, [mcu])[0]
        img = ElfImage.open(r.elf)
        code = img.function("fqt_fc_forward").address
        assert mcu.code.contains(code), (name, hex(code))
        top = img.symbol_value("__stack_top")
        assert top == mcu.data.end
        assert img.symbol_value("__stack_limit") == top - mcu.stack_bytes
        assert r.toolchain == default_toolchain.kind and r.toolchain_version
        assert any("-mcpu" in f for f in r.cflags)


def test_linker_script_puts_itcm_code_with_flash_load_image(catalog):
    rt = catalog.mcu("MIMXRT1062")
    text = linker_script(rt)
    assert f"> {rt.code_region} AT> {rt.flash.name}" in text
    assert f"ORIGIN = 0x{rt.flash.base:08X}" in text


def test_missing_gcc_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(tcmod.shutil, "which", lambda _name: None)
    tcmod._gcc.cache_clear()
    try:
        with pytest.raises(ToolchainError, match="apt-get install --no-install-recommends "
                                                 "gcc-arm-none-eabi"):
            find_toolchain("gcc")
        # the default falls back to zig
        assert find_toolchain(None).kind == "zig"
    finally:
        tcmod._gcc.cache_clear()


def test_unknown_toolchain():
    with pytest.raises(UnknownNameError):
        find_toolchain("clang-17")


def test_compile_error_is_one_line(tmp_path, catalog, default_toolchain):
    src = tmp_path / "broken.c"
    src.write_text("int f(void) { return undefined_name; }\n")
    mcu = catalog.mcu("RP2040")
    with pytest.raises(ToolchainError) as ei:
        Builder(default_toolchain, cache_dir=tmp_path / "c").build(mcu.core, [mcu], [src], [])
    assert "\n" not in str(ei.value) and "undefined_name" in str(ei.value)
