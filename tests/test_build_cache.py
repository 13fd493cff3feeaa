"""The build cache is checked, not trusted: every object and image carries the SHA-256
recorded when it was built; a flipped bit or a truncated file is rebuilt (with one warning
line), and an unusable cache directory is one line of error."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from mcusim.elf import ElfImage
from mcusim.errors import UsageError
from mcusim.toolchain import Builder, default_cache_dir


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture()
def built(tmp_path, catalog, default_toolchain):
    mcu = catalog.mcu("nRF52840")
    b = Builder(default_toolchain, cache_dir=tmp_path / "cache")
    r = b.build(mcu.core, [mcu])[0]
    return b, mcu, r


def test_a_flipped_bit_in_a_cached_object_is_rebuilt(built):
    b, mcu, first = built
    objdir = next((b.cache_dir / "obj").iterdir())
    obj = sorted(objdir.glob("*.o"))[0]
    clean = _sha(obj)
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="changed since they were built"):
        again = b.build(mcu.core, [mcu])[0]
    assert not again.cached
    assert _sha(obj) == clean  # rebuilt from the sources: the same bytes as before
    assert again.elf == first.elf  # and so the same image (content-addressed)


def test_a_truncated_cached_image_is_linked_again(built):
    b, mcu, first = built
    elf = first.elf
    with open(elf, "r+b") as f:
        f.truncate(100)
    with pytest.warns(UserWarning, match="linking it again"):
        again = b.build(mcu.core, [mcu])[0]
    assert again.elf == elf and not again.cached
    assert ElfImage.open(elf).function("fqt_fc_forward")


def test_an_intact_cache_is_used_without_warnings(built, recwarn):
    b, mcu, _first = built
    again = b.build(mcu.core, [mcu])[0]
    assert again.cached
    assert not [w for w in recwarn if "build cache" in str(w.message)]


def test_a_cache_dir_that_is_a_file_is_one_line_of_error(tmp_path, catalog, default_toolchain):
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    mcu = catalog.mcu("RP2040")
    with pytest.raises(UsageError, match="not-a-dir") as ei:
        Builder(default_toolchain, cache_dir=f).build(mcu.core, [mcu])
    assert "\n" not in str(ei.value)
    r = subprocess.run([sys.executable, "-m", "mcusim", "build", "--mcu", "RP2040"],
                       capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "MCUSIM_CACHE_DIR": str(f)})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "MCUSIM_CACHE_DIR" in r.stderr


def test_a_cache_dir_starting_with_a_dash_never_becomes_an_option(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MCUSIM_CACHE_DIR", "-O0")
    d = default_cache_dir()
    assert d.is_absolute() and d == tmp_path / "-O0"
