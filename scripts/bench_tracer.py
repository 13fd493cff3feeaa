"""Tracer speed, measured side by side in one run on the same binaries.

For the FC kernel image of RP2040 (M0+), nRF52840 (M4) and i.MX RT1062 (M7): untraced
Unicorn, the native block/edge hook and the Python fallback hook run the same call; the
script prints MIPS and the ratios to untraced (best of N repeats), and JSON with --json.

    python scripts/bench_tracer.py [--repeat 5] [--in 1024 --out 128] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from unicorn import arm_const

from mcusim.catalog import load_catalog
from mcusim.demo import sample_fc_layer
from mcusim.elf import ElfImage
from mcusim.machine import Machine
from mcusim.toolchain import Builder, find_toolchain


def _setup(kind: str, mcu, elf: str, in_f: int, out_f: int):
    m = Machine(mcu, ElfImage.open(elf), tracer="python" if kind == "untraced" else kind)
    x, w, b, q = sample_fc_layer(in_f, out_f)
    args = (m.put(x), m.put(w), m.put(b), m.alloc(out_f), in_f, out_f, m.put(q.pack()))
    return m, args


def _untraced_seconds(m: Machine, args: tuple[int, ...]) -> float:
    """The same call on the same engine with no hook at all."""
    uc = m.uc
    uc.hook_del(m.counter._hook)  # the Python counter's hook
    uc.ctl_flush_tb()
    entry = m.image.function("fqt_fc_forward").address | 1
    sp = (m.stack_top - 4 * (len(args) - 4)) & ~7
    for i, a in enumerate(args[4:]):
        uc.mem_write(sp + 4 * i, int(a).to_bytes(4, "little"))
    for i, a in enumerate(args[:4]):
        uc.reg_write(arm_const.UC_ARM_REG_R0 + i, a)
    uc.reg_write(arm_const.UC_ARM_REG_SP, sp)
    uc.reg_write(arm_const.UC_ARM_REG_LR, m.magic | 1)
    t = time.perf_counter()
    uc.emu_start(entry, m.magic)
    return time.perf_counter() - t


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
    for name in ("RP2040", "nRF52840", "MIMXRT1062"):
        mcu = cat.mcu(name)
        elf = Builder(tc).build(mcu.core, [mcu])[0].elf
        ref, ref_args = _setup("native", mcu, elf, opts.in_f, opts.out_f)
        instructions = ref.call("fqt_fc_forward", *ref_args).instructions
        best: dict[str, float] = {}
        for kind in ("untraced", "native", "python"):
            for _ in range(opts.repeat if kind != "python" else max(1, opts.repeat // 2)):
                m, args = _setup(kind, mcu, elf, opts.in_f, opts.out_f)
                if kind == "untraced":
                    m.call("fqt_fc_forward", *args)  # translate the code once, like the others
                    dt = _untraced_seconds(m, args)
                else:
                    m.call("fqt_fc_forward", *args)
                    t = time.perf_counter()
                    m.call("fqt_fc_forward", *args)
                    dt = time.perf_counter() - t
                best[kind] = min(best.get(kind, float("inf")), dt)
        mips = {k: instructions / v / 1e6 for k, v in best.items()}
        rows.append({"mcu": name, "core": mcu.core.key, "instructions": instructions,
                     "untraced_mips": round(mips["untraced"], 1),
                     "native_mips": round(mips["native"], 1),
                     "python_mips": round(mips["python"], 1),
                     "native_ratio": round(mips["native"] / mips["untraced"], 3),
                     "python_ratio": round(mips["python"] / mips["untraced"], 4)})
    if opts.json:
        json.dump({"toolchain": f"{tc.kind} {tc.version}", "rows": rows}, sys.stdout, indent=2)
        print()
        return 0
    print(f"FC {opts.in_f}->{opts.out_f}, {tc.kind} {tc.version}, best of {opts.repeat}; "
          "a call includes set-up, stack painting and the count read-out")
    print(f"{'MCU':<11} {'core':<7} {'instr':>10} {'untraced':>9} {'native':>8} {'python':>8}"
          f" {'native/untr':>12} {'python/untr':>12}")
    for r in rows:
        print(f"{r['mcu']:<11} {r['core']:<7} {r['instructions']:>10,} {r['untraced_mips']:>9}"
              f" {r['native_mips']:>8} {r['python_mips']:>8} {r['native_ratio']:>12}"
              f" {r['python_ratio']:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
