"""Tracer speed, measured side by side in one run on the same binaries.

`mcusim bench` (mcusim/bench.py) compares untraced Unicorn with the cycle-counted run
(native tracer + cycle model).  This script adds the pure-Python fallback tracer on the
same call, so all three speeds and their ratios to untraced come from one run:

    python scripts/bench_tracer.py [--repeat 5] [--in 1024 --out 128] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mcusim.bench import bench_mcu
from mcusim.catalog import load_catalog
from mcusim.demo import PAPER_BOARDS, sample_fc_layer
from mcusim.elf import ElfImage
from mcusim.machine import Machine
from mcusim.toolchain import Builder, find_toolchain


def python_seconds(mcu, elf: str, in_f: int, out_f: int, repeats: int) -> float:
    m = Machine(mcu, ElfImage.open(elf), tracer="python")
    x, w, b, q = sample_fc_layer(in_f, out_f)
    args = (m.put(x), m.put(w), m.put(b), m.alloc(out_f), in_f, out_f, m.put(q.pack()), 0)
    m.call("fqt_fc_forward", *args)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        m.cycles(m.call("fqt_fc_forward", *args))
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--in", dest="in_f", type=int, default=1024)
    ap.add_argument("--out", dest="out_f", type=int, default=128)
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    cat = load_catalog()
    tc = find_toolchain()
    rows = []
    for name in PAPER_BOARDS:
        mcu = cat.mcu(name)
        elf = Builder(tc).build(mcu.core, [mcu])[0].elf
        r = bench_mcu(mcu, elf, opts.repeat, opts.in_f, opts.out_f)
        py = r.instructions / python_seconds(mcu, elf, opts.in_f, opts.out_f,
                                             max(1, opts.repeat // 2)) / 1e6
        rows.append({**r.to_dict(), "python_mips": round(py, 1),
                     "python_ratio": round(py / r.untraced_mips, 4)})
    if opts.json:
        json.dump({"toolchain": f"{tc.kind} {tc.version}", "rows": rows}, sys.stdout, indent=2)
        print()
        return 0
    print(f"FC {opts.in_f}->{opts.out_f}, {tc.kind} {tc.version}, best of {opts.repeat}; "
          "a traced call includes set-up, stack painting, the count read-out and the cycle "
          "model")
    print(f"{'MCU':<11} {'core':<7} {'instr':>10} {'untraced':>9} {'native':>8} {'python':>8}"
          f" {'native/untr':>12} {'python/untr':>12}")
    for r in rows:
        print(f"{r['mcu']:<11} {r['core']:<7} {r['instructions']:>10,} {r['untraced_mips']:>9}"
              f" {r['traced_mips']:>8} {r['python_mips']:>8} {r['ratio']:>12}"
              f" {r['python_ratio']:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
