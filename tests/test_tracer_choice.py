"""MCUSIM_TRACER picks the tracer; a bad value, or the native tracer asked for where it is
not available, is one line and exit 2 (an environment problem), never a traceback."""

from __future__ import annotations

import pytest

from mcusim import cli
from mcusim.catalog import load_catalog
from mcusim.errors import UsageError
from mcusim.trace import make_counter
from mcusim.trace.native import NativeBlockCounter, load_error
from mcusim.trace.python_hook import PythonBlockCounter


@pytest.fixture()
def uc():
    import unicorn

    return unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)


def _core():
    return load_catalog().mcu("STM32F407").core


@pytest.mark.parametrize("value", ["bogus", "Native", " python", "0"])
def test_unknown_tracer_is_one_line(monkeypatch, capsys, value):
    monkeypatch.setenv("MCUSIM_TRACER", value)
    rc = cli.main(["step", "digits-cnn", "--mcu", "RP2040"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert [line for line in err if "error" in line] == err[-1:]
    assert "MCUSIM_TRACER" in err[-1] and "unknown tracer" in err[-1]


def test_python_tracer_on_request(monkeypatch, uc):
    monkeypatch.setenv("MCUSIM_TRACER", "python")
    assert isinstance(make_counter(uc, _core()), PythonBlockCounter)


def test_native_tracer_unavailable(monkeypatch, uc):
    """Where the extension did not build (here: its loader reports a failure), asking for it
    is a usage error naming the reason."""
    import mcusim.trace.native as native

    monkeypatch.setenv("MCUSIM_TRACER", "native")
    monkeypatch.setattr(native, "load_error", lambda: "extension not built")
    with pytest.raises(UsageError, match="not available: extension not built"):
        make_counter(uc, _core())


def test_native_tracer_on_request(monkeypatch, uc):
    if load_error() is not None:
        pytest.skip(load_error())
    monkeypatch.setenv("MCUSIM_TRACER", "native")
    assert isinstance(make_counter(uc, _core()), NativeBlockCounter)
