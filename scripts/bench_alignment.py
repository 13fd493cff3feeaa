"""What the ARMv7-M alignment checks cost: one digits-cnn training step per MCU with and
without them, side by side in one process (best of N, alternating), and the cycles of both
(which must be equal: the checks change no result, they only fault unaligned accesses).

    python scripts/bench_alignment.py [--repeat N] [--mcu MCU ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from mcusim.analyze import simulate_step
from mcusim.catalog import load_catalog


def one(mcu, checks: bool) -> tuple[float, float]:
    os.environ["MCUSIM_CHECK_ALIGNMENT"] = "1" if checks else "0"
    t = time.perf_counter()
    r = simulate_step("digits-cnn", mcu)
    return time.perf_counter() - t, r.cycles


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--mcu", action="append", default=None)
    args = ap.parse_args()
    cat = load_catalog()
    for name in args.mcu or ["RP2040", "nRF52840", "MIMXRT1062"]:
        mcu = cat.mcu(name)
        one(mcu, True)  # build and warm up
        best = {False: float("inf"), True: float("inf")}
        cycles = {}
        for _ in range(args.repeat):
            for checks in (False, True):
                dt, cycles[checks] = one(mcu, checks)
                best[checks] = min(best[checks], dt)
            print(f"  {name}: measured a pair", file=sys.stderr)
        print(f"{name}: step {best[False] * 1e3:.0f} ms without alignment checks, "
              f"{best[True] * 1e3:.0f} ms with; ratio {best[True] / best[False]:.3f}; "
              f"cycles equal: {cycles[False] == cycles[True]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
