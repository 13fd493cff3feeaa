"""Can the MLPerf Tiny reference models be fine-tuned on the paper's boards?

For each model (the int8 .tflite files in ../shared/models/mlperf-tiny, imported with
`mcusim import`) x MCU x trainable tail (--train-last 1, 2, all): one training sample and
its weight update (batch 1) simulated on the emulated MCU — fits or not, peak RAM, flash,
cycles and latency per sample, and the reason when it does not fit.  Costs of a step that
does not fit are computed as if the RAM existed (a virtual bank, labelled hypothetical).

    python scripts/mlperf_report.py [--dir DIR] [--mcu MCU ...] [--json FILE]

Prints a Markdown table on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from mcusim.analyze import simulate_step
from mcusim.model.writer import import_file, write_imported
from mcusim.toolchain import find_toolchain

MODELS = {"kws-dscnn": "kws_ref_model.tflite", "resnet8": "pretrainedResnet_quant.tflite",
          "ad-autoencoder": "ad01_int8.tflite"}
MCUS = ["RP2040", "nRF52840", "MIMXRT1062", "STM32H743"]


def default_dir() -> Path:
    env = os.environ.get("MCUSIM_MLPERF_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared/models/mlperf-tiny"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=default_dir())
    ap.add_argument("--mcu", action="append", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    tc = find_toolchain()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, file in MODELS.items():
            imp = import_file(args.dir / file)
            spec = write_imported(imp, tmp, name).spec
            weighted = sum(1 for L in spec.layers if L.has_weights)
            for k in (1, 2, None):
                s = spec.with_trainable_tail(k).with_train(batch_size=1)
                for mcu in args.mcu or MCUS:
                    t0 = time.perf_counter()
                    print(f"{name} train-last {k or 'all'} on {mcu} ...", file=sys.stderr,
                          flush=True)
                    r = simulate_step(s, mcu, toolchain=tc, hypothetical=True)
                    rows.append({
                        "model": name, "train_last": k or weighted, "all": k is None,
                        "mcu": mcu, "fits": r.fits, "peak_ram_bytes": r.peak_ram_bytes,
                        "ram_budget_bytes": r.ram_budget, "flash_bytes": r.flash_bytes,
                        "flash_budget_bytes": r.flash_budget, "cycles": r.cycles,
                        "latency_ms": r.latency_ms, "energy_mj": r.energy_mj,
                        "hypothetical": r.hypothetical, "reason": r.reason,
                        "trainable_params": s.n_trainable_params, "params": s.n_params,
                        "macs": s.macs, "wall_s": round(time.perf_counter() - t0, 1)})
                    print(f"  {'fits' if r.fits else 'does not fit'}; {r.latency_ms:.1f} ms "
                          f"({rows[-1]['wall_s']} s)", file=sys.stderr, flush=True)
    print(f"toolchain: {tc.kind} {tc.version}; one sample + its update (batch 1)\n")
    print("| model | trained | MCU | fits | peak RAM / budget (KB) | flash / budget (KB) | "
          "cycles per sample | latency (ms) | why not |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        trained = "all" if r["all"] else f"last {r['train_last']}"
        print(f"| {r['model']} | {trained} ({r['trainable_params']:,} p) | {r['mcu']} | "
              f"{'yes' if r['fits'] else 'no'} | {r['peak_ram_bytes'] / 1024:,.0f} / "
              f"{r['ram_budget_bytes'] / 1024:,.0f} | {r['flash_bytes'] / 1024:,.0f} / "
              f"{r['flash_budget_bytes'] / 1024:,.0f} | {round(r['cycles']):,} | "
              f"{r['latency_ms']:,.1f}{' (hyp.)' if r['hypothetical'] else ''} | "
              f"{'' if r['fits'] else (r['reason'] or '')[:90]} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
