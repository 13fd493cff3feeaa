"""The training results of issue 6, measured side by side in one run.

    python scripts/train_results.py [--epochs 10] [--json]

1. digits-cnn on digits and imu-cnn on basicmotions (when aeon's data is available):
   test accuracy after the same epochs for float32 and FQT with nearest, floor and
   stochastic rounding.
2. Partial updates on the nRF52840: lambda_min = 1.0, 0.5, 0.1 -> test accuracy and the
   simulated backward-pass time per sample (emulator-sampled), with the speed-up.
3. Wall-clock speed of the simulation: samples/s of the twin and of the emulator engine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

from mcusim.catalog import load_catalog
from mcusim.errors import DatasetError
from mcusim.fqt.datasets import load_dataset
from mcusim.fqt.train import train_fqt
from mcusim.model.zoo import load_model
from mcusim.toolchain import find_toolchain


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10, help="digits epochs")
    ap.add_argument("--imu-epochs", type=int, default=30,
                    help="basicmotions epochs (40 training samples per epoch)")
    ap.add_argument("--mcu", default="nRF52840")
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    cat, tc = load_catalog(), find_toolchain()
    mcu = cat.mcu(opts.mcu)
    out: dict[str, object] = {"epochs": opts.epochs, "mcu": mcu.name}
    rows = []
    for model, ds, epochs in (("digits-cnn", "digits", opts.epochs),
                              ("imu-cnn", "basicmotions", opts.imu_epochs)):
        try:
            data = load_dataset(ds)
        except DatasetError as e:
            rows.append({"model": model, "dataset": ds, "skipped": str(e)})
            continue
        spec = load_model(model)
        row: dict[str, object] = {"model": model, "dataset": ds, "epochs": epochs}
        for rounding in ("nearest", "floor", "stochastic"):
            r = train_fqt(spec.with_train(rounding=rounding), data, mcu, tc,
                          epochs=epochs, baseline=rounding == "nearest")
            row[f"fqt_{rounding}"] = r.epochs[-1].test_acc
            row[f"fqt_{rounding}_best"] = max(e.test_acc for e in r.epochs)
            if r.baseline:
                row["float32"] = r.baseline[-1].test_acc
                row["float32_best"] = max(e.test_acc for e in r.baseline)
        rows.append(row)
    out["accuracy"] = rows

    data = load_dataset("digits")
    partial = []
    for lam in (1.0, 0.5, 0.1):
        spec = load_model("digits-cnn").with_train(lambda_min=lam, lambda_max=1.0)
        r = train_fqt(spec, data, mcu, tc, epochs=opts.epochs, baseline=False)
        last = r.epochs[-1]
        partial.append({"lambda_min": lam, "test_acc": last.test_acc,
                        "backward_ms_per_sample": last.device_phase_ms["backward"],
                        "sample_ms": sum(last.device_phase_ms.values())})
    for p in partial:
        p["backward_speedup"] = partial[0]["backward_ms_per_sample"] / p["backward_ms_per_sample"]
    out["partial_updates"] = partial

    small = replace(data, x_train=data.x_train[:160], y_train=data.y_train[:160],
                    x_test=data.x_test[:40], y_test=data.y_test[:40])
    speed = {}
    for engine in ("twin", "emulator"):
        t = time.perf_counter()
        r = train_fqt(load_model("digits-cnn"), small, mcu, tc, epochs=1, engine=engine,
                      baseline=False)
        speed[engine] = {"train_samples_per_s": r.samples_per_s,
                         "wall_s_incl_eval_and_costs": time.perf_counter() - t}
    out["speed"] = speed

    if opts.json:
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    print(f"test accuracy after the last epoch (best epoch in brackets), costs on {mcu.name}")
    for row in rows:
        if "skipped" in row:
            print(f"  {row['model']} on {row['dataset']}: skipped ({row['skipped']})")
            continue
        cells = [f"{k} {row[k]:.3f} ({row[k + '_best']:.3f})"
                 for k in ("float32", "fqt_nearest", "fqt_floor", "fqt_stochastic")]
        print(f"  {row['model']} on {row['dataset']}, {row['epochs']} epochs: "
              + ", ".join(cells))
    print("partial updates (digits-cnn, nearest):")
    for p in partial:
        print(f"  lambda_min {p['lambda_min']:.1f}: test {p['test_acc']:.3f}, backward "
              f"{p['backward_ms_per_sample']:.3f} ms/sample ({p['backward_speedup']:.2f}x), "
              f"sample {p['sample_ms']:.3f} ms")
    for engine, s in speed.items():
        print(f"{engine}: {s['train_samples_per_s']:.0f} training samples/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
