"""Terminal output of a training run (mcusim.fqt.train.TrainReport).

Two clocks appear here and are labelled apart: the *device* time (what the epoch would take
on the MCU, from the cycle model) and the *host* time (how long this computer took to
simulate it)."""

from __future__ import annotations

from typing import Any

from mcusim.render.layout import Stack, esc, unbroken
from mcusim.render.units import fmt_energy, fmt_ms, fmt_time, sig


def _time(ms: float) -> str:
    return fmt_ms(ms)


def epoch_line(rec: Any, mcu: Any) -> str:
    """One line per epoch (plain text: print it without markup)."""
    return (f"epoch {rec.epoch}: loss {rec.train_loss:.3f}, train {rec.train_acc:.3f}, "
            f"test {rec.test_acc:.3f}; on {mcu.name}: {fmt_ms(rec.device_ms)}, "
            f"{fmt_energy(rec.device_mj)} ({mcu.energy_label}; host time "
            f"{fmt_time(rec.wall_s)})")


def _basis_label(report: Any) -> str:
    """The energy basis of the device energy column (Mcu.energy_label)."""
    return (getattr(report, "energy_basis", None) or {}).get("label", "chip supply")


def summary_table(report: Any, toolchain: str | None = None) -> Stack:
    """Per epoch: accuracy next to the float32 baseline, device time and energy."""
    tc = f", {unbroken(toolchain)}" if toolchain else ""
    t = Stack(title=f"{esc(report.model)} on {esc(report.dataset)}: FQT "
                    f"({esc(report.rounding)}, λ {report.lambda_min:g}..{report.lambda_max:g}) "
                    f"on {esc(report.mcu)}{tc}, engine {esc(report.engine)}")
    cols = ["epoch", "loss", "train\nacc", "test\nacc"]
    if report.baseline:
        cols += ["float32\ntrain", "float32\ntest"]
    cols += ["device\ntime", "device\nenergy", "forward\n/ sample", "backward\n/ sample",
             "update\n/ sample"]
    for c in cols:
        t.add_column(c, justify="right")
    total_ms = total_mj = 0.0
    host_s = sum(getattr(e, "wall_s", 0.0) for e in report.epochs)
    for i, e in enumerate(report.epochs):
        total_ms += e.device_ms
        total_mj += e.device_mj
        row = [str(e.epoch), f"{e.train_loss:.3f}", f"{e.train_acc:.3f}", f"{e.test_acc:.3f}"]
        if report.baseline:
            b = report.baseline[i]
            row += [f"{b.train_acc:.3f}", f"{b.test_acc:.3f}"]
        ph = e.device_phase_ms
        row += [fmt_ms(e.device_ms), fmt_energy(e.device_mj)]
        row += [fmt_ms(ph.get(p, 0.0)) for p in ("forward", "backward", "update")]
        t.add_row(*row)
    gap = ""
    if report.baseline:
        d = report.baseline[-1].test_acc - report.epochs[-1].test_acc
        gap = f"; float32 − FQT test accuracy: {100 * d:+.1f} points"
    pre = ""
    if report.pretrain:
        p = report.pretrain
        pre = (f"; pre-trained in float32 for {p['epochs']} epochs on classes "
               f"{esc(p['classes'])}, FQT trains {esc(', '.join(report.trainable_layers))}")
    lr = (f"; lr {report.learning_rate:g}" + (f"→{report.lr_final:g} (cosine)"
                                              if report.lr_final else ""))
    if report.baseline:
        lr += (f", float32: {esc(report.baseline_update)} lr "
               f"{report.baseline_learning_rate:g}")
    t.caption = (f"{report.n_train:,} training / {report.n_test:,} test samples{lr}; "
                 f"on-device training time of all epochs {fmt_ms(total_ms)}, "
                 f"{fmt_energy(total_mj)}; host time {fmt_time(host_s)} (simulated on this "
                 f"host at {sig(report.samples_per_s)} samples/s){gap}{pre}; device energy "
                 f"on {esc(_basis_label(report))}")
    return t
