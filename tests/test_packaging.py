"""How users get the tool: data found through importlib.resources in any install, the wheel
carries kernels/, models/, cost_models/ and examples/, both toolchains keep a program's functions,
`python -m mcusim`, the toolchain override."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mcusim import resources
from mcusim.elf import ElfImage
from mcusim.errors import ToolchainError, UsageError
from mcusim.toolchain import Builder, find_toolchain, global_symbols

CHECKOUT = Path(__file__).resolve().parent.parent
IN_CHECKOUT = (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "kernels").is_dir()


def test_data_folders_are_found():
    for name, marker in (("kernels", "fqt.h"), ("models", "emnist-cnn.toml"),
                         ("cost_models", "cores.toml"), ("examples", "sweep.toml")):
        d = resources.data_dir(name)
        assert (d / marker).is_file(), d
    resources.check_installation()  # raises InternalError when a folder is missing


def test_missing_data_is_an_internal_error_not_bad_input(monkeypatch):
    from mcusim.errors import InternalError

    monkeypatch.setattr(resources, "_find", lambda name: None if name == "models" else Path())
    with pytest.raises(InternalError, match="lacks its models/"):
        resources.check_installation()
    assert InternalError.exit_code == 3


def test_python_dash_m_mcusim():
    r = subprocess.run([sys.executable, "-m", "mcusim", "--version"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("mcusim ")


@pytest.mark.skipif(not IN_CHECKOUT, reason="builds the wheel from the checkout")
def test_wheel_carries_the_data_and_the_license(tmp_path):
    pytest.importorskip("build")
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation",
                        "--outdir", str(tmp_path), str(CHECKOUT)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0 and "No module named" in (r.stderr + r.stdout):
        pytest.skip("no setuptools/wheel in this environment for --no-isolation")
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("mcusim-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, suffixes in (("kernels", {".c", ".h", ".S"}), ("models", {".toml"}),
                             ("cost_models", {".toml"}), ("examples", {".toml"})):
        want = {f"mcusim/_data/{folder}/{p.relative_to(CHECKOUT / folder).as_posix()}"
                for p in (CHECKOUT / folder).rglob("*") if p.suffix in suffixes}
        assert want and want <= names, sorted(want - names)[:5]
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: Apache-2.0" in text
    assert any(n.endswith("licenses/LICENSE") for n in names)
    # matplotlib is an extra: a plain install (enough for budget, step, demo) lacks it
    requires = [ln for ln in text.splitlines() if ln.startswith("Requires-Dist:")]
    for extra_only in ("matplotlib", "dask", "duckdb"):  # sweeps and plots are extras
        assert not [ln for ln in requires if extra_only in ln and "extra ==" not in ln]


def _uncalled_program(tmp_path: Path) -> Path:
    src = tmp_path / "entry_points.c"
    src.write_text(
        "int helper_nobody_calls(int a) { return a * 3 + 1; }\n"
        "int table_nobody_reads[4] = {1, 2, 3, 4};\n"
        "static int local_only(int a) { return a; }\n"
        "int uses_local(int a) { return local_only(a) + 2; }\n")
    return src


@pytest.mark.parametrize("kind", ["gcc", "zig"])
def test_both_toolchains_keep_uncalled_functions(tmp_path, catalog, kind):
    """zig links with --gc-sections: without roots, a program's functions that nothing in
    it calls (test probes, a user's entry points) were dropped, leaving no loadable code."""
    try:
        tc = find_toolchain(kind)
    except ToolchainError as e:  # a missing toolchain is a skip here
        pytest.skip(str(e))
    mcu = catalog.mcu("nRF52840")
    b = Builder(tc, cache_dir=tmp_path / "cache")
    objects, _ = b.compile(mcu.core, [_uncalled_program(tmp_path)], name="uncalled")
    assert {"helper_nobody_calls", "table_nobody_reads", "uses_local"} <= \
        set(global_symbols(objects))
    elf, _ = b.link(mcu, objects, name="uncalled")
    img = ElfImage.open(elf)
    for fn in ("helper_nobody_calls", "uses_local"):
        assert mcu.code.contains(img.function(fn).address), fn
    assert img.symbol_value("table_nobody_reads") is not None


def test_toolchain_override_from_the_environment(monkeypatch):
    monkeypatch.setenv("MCUSIM_TOOLCHAIN", "zig")
    assert find_toolchain().kind == "zig"
    monkeypatch.setenv("MCUSIM_TOOLCHAIN", "clang")
    with pytest.raises(UsageError, match="MCUSIM_TOOLCHAIN"):
        find_toolchain()
