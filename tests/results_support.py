"""A real results database for the results, compare, plot and report tests: real points
(digits-cnn budget and step on the paper boards at two λ, an emnist-cnn budget that does not
fit the L053, one train point) run in this process and stored in a DuckDB file.  Built once
per test session: the `results_store` fixture of conftest.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

duckdb = pytest.importorskip("duckdb", reason="the results database needs mcusim[sweep]")

from mcusim.catalog import load_catalog  # noqa: E402
from mcusim.results.store import open_store  # noqa: E402
from mcusim.sweep.points import make_point, run_point  # noqa: E402
from mcusim.toolchain import find_toolchain  # noqa: E402

PAPER_BOARDS = ("RP2040", "nRF52840", "MIMXRT1062")


def sample_points(sweep: str = "tests") -> list:
    """The points of the test store (18: 12 step, 3 budget, 2 does-not-fit, 1 train)."""
    cat, tc = load_catalog(), find_toolchain()
    pts = []
    for mcu in PAPER_BOARDS:
        for lam in (1.0, 0.1):
            for rounding in ("nearest", "stochastic"):
                pts.append(make_point("step", "digits-cnn", cat.mcu(mcu), tc, sweep=sweep,
                                      settings={"lambda_min": lam, "rounding": rounding}))
        pts.append(make_point("budget", "digits-cnn", cat.mcu(mcu), tc, sweep=sweep))
    pts.append(make_point("budget", "emnist-cnn", cat.mcu("STM32L053"), tc, sweep=sweep))
    pts.append(make_point("step", "emnist-cnn", cat.mcu("STM32L053"), tc, sweep=sweep))
    pts.append(make_point("train", "digits-cnn", cat.mcu("nRF52840"), tc, sweep=sweep,
                          dataset="digits", epochs=1))
    return pts


def build_store(path: Path, run_id: str = "run-a", sweep: str = "tests") -> Path:
    with open_store(path) as st:
        for p in sample_points(sweep):
            row = run_point(p)
            row["run_id"] = run_id
            st.put(row)
    return path


def slower(row: dict, factor: float) -> dict:
    """A copy of a row as if its step took `factor` times the cycles (for compare tests of
    a regression that really is one: the figures scale together)."""
    out = dict(row)
    for k in ("cycles", "latency_ms", "energy_mj", "batch_cycles", "batch_latency_ms",
              "batch_energy_mj"):
        if out.get(k) is not None:
            out[k] = out[k] * factor
    return out


__all__ = ["PAPER_BOARDS", "build_store", "dataclasses", "sample_points", "slower"]
