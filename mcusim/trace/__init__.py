"""Basic-block tracing: which blocks ran how often and which way each was left."""

from __future__ import annotations

import os
import warnings

import unicorn

from mcusim.catalog import Core
from mcusim.errors import UsageError
from mcusim.trace.blocks import START, BlockCounter

__all__ = ["START", "BlockCounter", "TracerWarning", "make_counter"]


class TracerWarning(UserWarning):
    """The native tracer is unavailable; the slower Python one is used."""


_warned = False
TRACERS = ("auto", "native", "python")


def make_counter(uc: unicorn.Uc, core: Core, kind: str | None = None) -> BlockCounter:
    """The native counter when available (else Python, with one warning).

    `kind` or the environment variable MCUSIM_TRACER ("native" | "python") forces one.
    """
    global _warned
    from mcusim.trace.native import NativeBlockCounter, load_error
    from mcusim.trace.python_hook import PythonBlockCounter

    want = kind or os.environ.get("MCUSIM_TRACER") or "auto"
    if want not in TRACERS:
        raise UsageError(f"MCUSIM_TRACER={want!r}: unknown tracer (one of "
                         f"{', '.join(TRACERS)})")
    if want == "python":
        return PythonBlockCounter(uc, core)
    err = load_error()
    if err is None:
        return NativeBlockCounter(uc, core)
    if want == "native":
        raise UsageError(f"the native tracer was asked for (MCUSIM_TRACER=native) but is "
                         f"not available: {err}")
    if not _warned:
        warnings.warn(f"{err}; using the Python tracer (30-80x slower)", TracerWarning,
                      stacklevel=2)
        _warned = True
    return PythonBlockCounter(uc, core)
