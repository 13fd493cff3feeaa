"""Training accuracy and partial-update results (issue 15), measured side by side in one run.

    python scripts/train_results.py [--parts accuracy,partial,collapse,speed] [--quick] [--json]

1. accuracy: every zoo model with a data set that ships inside an installed package
   (digits-cnn on digits; imu-cnn on basicmotions and the other aeon sets when aeon is
   installed): test accuracy after the last epoch, mean ± std over seeds (3; 5 for
   basicmotions, whose test set has 40 samples), for FQT with nearest, floor and stochastic
   rounding of the forward/backward requantization (the update rounds to nearest), for FQT
   with the other range_update than the model's (sample / batch), and for the float32
   baseline with mini-batch SGD and with FQT's own standardized update rule.
2. partial: λ_min = λ_max ∈ {1, 0.5, 0.3, 0.1} and the dynamic schedule (λ_min 0.1,
   λ_max 1): backward cycles per sample from `mcusim step` (the sum of the backward rows;
   emnist-cnn and digits-cnn, same seed, batch and MCU) on nRF52840 and RP2040, the speed-up
   against λ = 1, and digits-cnn's test accuracy on digits (mean ± std of 3 seeds; the twin
   is bit-exact, so accuracy does not depend on the MCU).
3. collapse: 50 epochs of digits-cnn with every rounding mode (seed 0): the lowest test
   accuracy of the last 10 epochs (a collapse shows as chance, about 0.1).
4. speed: wall-clock training samples/s of the twin and of the emulator engine.

Progress goes to stderr; --json prints everything as one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

from mcusim.analyze import simulate_step
from mcusim.catalog import load_catalog
from mcusim.errors import DatasetError, TrainingDiverged
from mcusim.fqt.baseline import train_float
from mcusim.fqt.datasets import dataset_names, load_dataset
from mcusim.fqt.train import train_fqt
from mcusim.model.zoo import load_model, zoo_names
from mcusim.toolchain import find_toolchain

ROUNDINGS = ("nearest", "floor", "stochastic")
LAMBDAS = ((1.0, 1.0), (0.5, 0.5), (0.3, 0.3), (0.1, 0.1), (0.1, 1.0))
# data set -> (zoo model, epochs, seeds); sets without a zoo model named here are skipped
SETS = {"digits": ("digits-cnn", 10, 3), "basicmotions": ("imu-cnn", 30, 5)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stats(xs: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(xs), "std": statistics.pstdev(xs) if len(xs) > 1 else 0.0,
            "runs": xs}


def pm(s: dict[str, Any]) -> str:
    return f"{s['mean']:.3f} ± {s['std']:.3f}"


def sets() -> dict[str, tuple[str, int, int]]:
    """The data sets to measure and their models: SETS, plus every other data set mcusim
    ships whose zoo model is named "<set>-cnn"."""
    out = dict(SETS)
    for ds in dataset_names():
        if ds not in out and f"{ds}-cnn" in zoo_names():
            out[ds] = (f"{ds}-cnn", 30, 5 if ds == "basicmotions" else 3)
    return out


def accuracy(mcu, tc, quick: bool) -> list[dict[str, Any]]:
    rows = []
    for ds, (model, epochs, seeds) in sets().items():
        if quick:
            epochs, seeds = max(2, epochs // 5), 2
        try:
            data = load_dataset(ds)
        except DatasetError as e:
            rows.append({"model": model, "dataset": ds, "skipped": str(e)})
            log(f"{ds}: skipped ({e})")
            continue
        spec = load_model(model)
        row: dict[str, Any] = {"model": model, "dataset": ds, "epochs": epochs,
                               "seeds": seeds}
        runs: dict[str, list[float]] = {}
        variants = [(f"fqt_{r}", spec.with_train(rounding=r)) for r in ROUNDINGS]
        other = "sample" if spec.train.range_update == "batch" else "batch"
        variants.append((f"fqt_nearest_{other}_ranges", spec.with_train(range_update=other)))
        row["range_update"] = spec.train.range_update
        for seed in range(seeds):
            for key, s in variants:
                log(f"{model} on {ds}: {key}, seed {seed}")
                r = train_fqt(s, data, mcu, tc, epochs=epochs, seed=seed,
                              baseline=key == "fqt_nearest", baseline_update="sgd")
                runs.setdefault(key, []).append(r.epochs[-1].test_acc)
                if r.baseline:
                    runs.setdefault("float32_sgd", []).append(r.baseline[-1].test_acc)
            log(f"{model} on {ds}: float32 standardized, seed {seed}")
            try:  # float weights are unbounded: the rule can diverge at FQT's rates
                _, base = train_float(spec, data.x_train, data.y_train, data.x_test,
                                      data.y_test, epochs, seed=seed, update="standardized")
                acc = base[-1].test_acc
            except TrainingDiverged:
                acc = float("nan")
            runs.setdefault("float32_standardized", []).append(acc)
        for key, xs in runs.items():
            row[key] = stats(xs)
        row["gap_nearest_vs_sgd"] = row["float32_sgd"]["mean"] - row["fqt_nearest"]["mean"]
        rows.append(row)
    return rows


def backward_cycles(model: str, mcu, tc, lam: tuple[float, float]) -> float:
    spec = load_model(model).with_train(lambda_min=lam[0], lambda_max=lam[1])
    rep = simulate_step(spec, mcu, toolchain=tc, seed=0)
    return sum(r.cycles for r in rep.rows if r.phase == "backward")


def partial(cat, tc, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"cycles": [], "accuracy": []}
    for mcu_name in ("nRF52840", "RP2040"):
        mcu = cat.mcu(mcu_name)
        for model in ("emnist-cnn", "digits-cnn"):
            base = None
            for lam in LAMBDAS:
                log(f"step {model} on {mcu_name}, λ {lam[0]:g}..{lam[1]:g}")
                c = backward_cycles(model, mcu, tc, lam)
                base = base or c
                out["cycles"].append({"mcu": mcu_name, "model": model, "lambda_min": lam[0],
                                      "lambda_max": lam[1],
                                      "backward_cycles_per_sample": c,
                                      "speedup": base / c})
    data = load_dataset("digits")
    epochs, seeds = (3, 2) if quick else (10, 3)
    mcu = cat.mcu("nRF52840")
    for lam in LAMBDAS:
        accs = []
        for seed in range(seeds):
            log(f"train digits-cnn, λ {lam[0]:g}..{lam[1]:g}, seed {seed}")
            spec = load_model("digits-cnn").with_train(lambda_min=lam[0], lambda_max=lam[1])
            r = train_fqt(spec, data, mcu, tc, epochs=epochs, seed=seed, baseline=False)
            accs.append(r.epochs[-1].test_acc)
        out["accuracy"].append({"lambda_min": lam[0], "lambda_max": lam[1],
                                "epochs": epochs, "test_acc": stats(accs)})
    return out


def collapse(mcu, tc, quick: bool) -> list[dict[str, Any]]:
    data = load_dataset("digits")
    epochs = 8 if quick else 50
    rows = []
    for r in ROUNDINGS:
        log(f"digits-cnn, {epochs} epochs, rounding {r}")
        rep = train_fqt(load_model("digits-cnn").with_train(rounding=r), data, mcu, tc,
                        epochs=epochs, seed=0, baseline=False)
        accs = [e.test_acc for e in rep.epochs]
        rows.append({"rounding": r, "epochs": epochs, "final": accs[-1],
                     "min_last_10": min(accs[-10:])})
    return rows


def speed(mcu, tc) -> dict[str, Any]:
    data = load_dataset("digits")
    small = replace(data, x_train=data.x_train[:160], y_train=data.y_train[:160],
                    x_test=data.x_test[:40], y_test=data.y_test[:40])
    out = {}
    for engine in ("twin", "emulator"):
        log(f"speed: {engine}")
        t = time.perf_counter()
        r = train_fqt(load_model("digits-cnn"), small, mcu, tc, epochs=1, engine=engine,
                      baseline=False)
        out[engine] = {"train_samples_per_s": r.samples_per_s,
                       "wall_s_incl_eval_and_costs": time.perf_counter() - t}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="accuracy,partial,collapse,speed")
    ap.add_argument("--quick", action="store_true", help="fewer epochs and seeds (a smoke run)")
    ap.add_argument("--mcu", default="nRF52840", help="MCU of the accuracy runs' costs")
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    parts = opts.parts.split(",")
    cat, tc = load_catalog(), find_toolchain()
    mcu = cat.mcu(opts.mcu)
    out: dict[str, Any] = {"mcu": mcu.name, "toolchain": f"{tc.kind} {tc.version}"}
    if "accuracy" in parts:
        out["accuracy"] = accuracy(mcu, tc, opts.quick)
    if "partial" in parts:
        out["partial_updates"] = partial(cat, tc, opts.quick)
    if "collapse" in parts:
        out["collapse"] = collapse(mcu, tc, opts.quick)
    if "speed" in parts:
        out["speed"] = speed(mcu, tc)
    if opts.json:
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    for row in out.get("accuracy", []):
        if "skipped" in row:
            print(f"{row['model']} on {row['dataset']}: skipped ({row['skipped']})")
            continue
        print(f"{row['model']} on {row['dataset']}, {row['epochs']} epochs, "
              f"{row['seeds']} seeds (test accuracy, mean ± std):")
        for key in ("float32_sgd", "float32_standardized", "fqt_nearest", "fqt_floor",
                    "fqt_stochastic", "fqt_nearest_sample_ranges", "fqt_nearest_batch_ranges"):
            if key in row:
                print(f"  {key:26s} {pm(row[key])}")
    if "partial_updates" in out:
        print("partial updates: backward cycles per sample (mcusim step, seed 0)")
        for c in out["partial_updates"]["cycles"]:
            print(f"  {c['mcu']:9s} {c['model']:11s} λ {c['lambda_min']:g}..{c['lambda_max']:g}"
                  f": {c['backward_cycles_per_sample']:>12,.0f}  {c['speedup']:.2f}x")
        print("partial updates: digits-cnn test accuracy")
        for a in out["partial_updates"]["accuracy"]:
            print(f"  λ {a['lambda_min']:g}..{a['lambda_max']:g}: {pm(a['test_acc'])}")
    for c in out.get("collapse", []):
        print(f"{c['rounding']:10s} {c['epochs']} epochs: final {c['final']:.3f}, lowest of "
              f"the last 10 epochs {c['min_last_10']:.3f}")
    for engine, s in out.get("speed", {}).items():
        print(f"{engine}: {s['train_samples_per_s']:.0f} training samples/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
