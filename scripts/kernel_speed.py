"""How fast are the training kernels?  Cycles per multiply-accumulate per layer and phase.

For each model x MCU (default: emnist-cnn and digits-cnn on the paper's three boards: the
RP2040 (Cortex-M0+), the nRF52840 (M4) and the i.MX RT1062 (M7)), one training step is
simulated (`mcusim step`, batch and data as the model declares, λ = 1) and every forward /
backward row is divided by its multiply-accumulates (backward: error propagation + weight
gradients), every update row's batch update by its parameters.  Simulated cycles are
deterministic: the figures do not depend on the machine that runs the script.

    python scripts/kernel_speed.py [--model M ...] [--mcu MCU ...] [--toolchain gcc|zig]
                                   [--json FILE] [--before FILE]

--json writes the figures; --before FILE (an earlier --json) adds before / after columns.
Prints a Markdown table on stdout; progress on stderr.  The goals of issue 17 (cycles per
MAC; M0+ update cycles per parameter) are marked where they apply.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mcusim.analyze import simulate_step
from mcusim.toolchain import find_toolchain

MODELS = ["emnist-cnn", "digits-cnn"]
MCUS = ["RP2040", "nRF52840", "MIMXRT1062"]
# issue 17's goals: (model, layer, phase) -> cycles per MAC per core; update: per parameter
GOALS: dict[tuple[str, str, str], dict[str, float]] = {
    ("emnist-cnn", "conv1", "forward"): {"M4": 4.0},
    ("emnist-cnn", "conv2", "forward"): {"M4": 2.0, "M7": 1.3, "M0+": 6.0},
    ("emnist-cnn", "fc1", "forward"): {"M4": 2.0, "M7": 1.3, "M0+": 6.0},
    ("emnist-cnn", "conv2", "backward"): {"M4": 2.5, "M7": 1.3, "M0+": 6.0},
    ("emnist-cnn", "fc1", "backward"): {"M4": 2.5, "M7": 1.3, "M0+": 6.0},
}
UPDATE_GOAL_M0PLUS = 300.0  # cycles per parameter of the batch update
SHORT = {"m0plus": "M0+", "m4": "M4", "m7": "M7"}


def measure(models: list[str], mcus: list[str], toolchain: str | None) -> dict:
    tc = find_toolchain(toolchain)
    out: dict = {"toolchain": f"{tc.kind} {tc.version}", "steps": []}
    for model in models:
        for mcu in mcus:
            t0 = time.perf_counter()
            print(f"{model} on {mcu} ...", file=sys.stderr, flush=True)
            r = simulate_step(model, mcu, toolchain=tc)
            rows = []
            for row in r.rows:
                d = row.to_dict(r.clock_hz)
                if "macs" in d or "params" in d:
                    rows.append(d)
            out["steps"].append({"model": model, "mcu": r.mcu, "core": r.core,
                                 "cycles_per_sample": r.cycles, "rows": rows,
                                 "flash_bytes": r.flash_bytes,
                                 "stack_bytes": r.stack_bytes})
            print(f"  {r.cycles:,.0f} cycles per sample "
                  f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    return out


def _index(data: dict) -> dict[tuple[str, str, str, str], float]:
    """(model, mcu, layer, phase) -> cycles per MAC (update: per parameter); (model, mcu,
    '', 'step') -> cycles per sample."""
    idx: dict[tuple[str, str, str, str], float] = {}
    for s in data["steps"]:
        idx[(s["model"], s["mcu"], "", "step")] = s["cycles_per_sample"]
        for row in s["rows"]:
            v = row.get("cycles_per_mac", row.get("update_cycles_per_param"))
            if v is not None:
                idx[(s["model"], s["mcu"], row["layer"], row["phase"])] = v
    return idx


def _goal(model: str, core: str, layer: str, phase: str) -> float | None:
    if phase == "update":
        return UPDATE_GOAL_M0PLUS if core == "M0+" and model == "emnist-cnn" else None
    return GOALS.get((model, layer, phase), {}).get(core)


def table(now: dict, before: dict | None) -> str:
    cores = {s["mcu"]: SHORT.get(s["core"], s["core"]) for s in now["steps"]}
    idx_now = _index(now)
    idx_before = _index(before) if before else {}
    head = "| model | MCU | layer | phase | unit | " + \
        ("before | after | after / before | " if before else "now | ") + "goal |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for key, v in idx_now.items():
        model, mcu, layer, phase = key
        core = cores[mcu]
        unit = "cycles / sample" if phase == "step" else \
            "cycles / param" if phase == "update" else "cycles / MAC"
        goal = _goal(model, core, layer, phase)
        mark = "" if goal is None else f"≤ {goal:g} " + ("met" if v <= goal else "**missed**")
        fmt = (lambda x: f"{x:,.0f}") if phase == "step" else (lambda x: f"{x:,.2f}")
        cells = [model, f"{mcu} ({core})", layer or "(whole step)", phase, unit]
        if before:
            b = idx_before.get(key)
            cells += ["-" if b is None else fmt(b), fmt(v),
                      "-" if not b else f"{v / b:.2f}"]
        else:
            cells.append(fmt(v))
        cells.append(mark)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None)
    ap.add_argument("--mcu", action="append", default=None)
    ap.add_argument("--toolchain", choices=("gcc", "zig"), default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--before", type=Path, default=None,
                    help="an earlier --json: before / after columns")
    args = ap.parse_args()
    now = measure(args.model or MODELS, args.mcu or MCUS, args.toolchain)
    before = json.loads(args.before.read_text()) if args.before else None
    if args.json:
        args.json.write_text(json.dumps(now, indent=1) + "\n")
    print(f"toolchain: {now['toolchain']}" +
          (f" (before: {before['toolchain']})" if before else "") + "; λ = 1, the model's "
          "batch; backward = error propagation + weight gradients; update = the batch's "
          "update per parameter\n")
    print(table(now, before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
