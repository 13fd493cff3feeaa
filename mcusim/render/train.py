"""Terminal output of a training run (mcusim.fqt.train.TrainReport)."""

from __future__ import annotations

from rich.table import Table


def _time(ms: float) -> str:
    if ms >= 3_600_000:
        return f"{ms / 3_600_000:.2f} h"
    if ms >= 60_000:
        return f"{ms / 60_000:.1f} min"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.1f} ms"


def epoch_line(rec, mcu) -> str:
    return (f"epoch {rec.epoch}: loss {rec.train_loss:.3f}, train {rec.train_acc:.3f}, "
            f"test {rec.test_acc:.3f}; on {mcu.name}: {_time(rec.device_ms)}, "
            f"{rec.device_mj / 1e3:.3g} J ({rec.wall_s:.1f} s simulated)")


def summary_table(report) -> Table:
    t = Table(title=f"{report.model} on {report.dataset}: FQT ({report.rounding}, λ "
                    f"{report.lambda_min:g}..{report.lambda_max:g}) on {report.mcu}, "
                    f"engine {report.engine}", header_style="bold")
    cols = ["epoch", "loss", "train acc", "test acc"]
    if report.baseline:
        cols += ["float32 train", "float32 test"]
    cols += ["device time", "device energy", "fwd/bwd/upd per sample"]
    for c in cols:
        t.add_column(c, justify="right", no_wrap=True)
    total_ms = total_mj = 0.0
    for i, e in enumerate(report.epochs):
        total_ms += e.device_ms
        total_mj += e.device_mj
        row = [str(e.epoch), f"{e.train_loss:.3f}", f"{e.train_acc:.3f}", f"{e.test_acc:.3f}"]
        if report.baseline:
            b = report.baseline[i]
            row += [f"{b.train_acc:.3f}", f"{b.test_acc:.3f}"]
        ph = e.device_phase_ms
        row += [_time(e.device_ms), f"{e.device_mj / 1e3:.3g} J",
                "/".join(f"{ph.get(p, 0):.3g}" for p in ("forward", "backward", "update"))
                + " ms"]
        t.add_row(*row)
    gap = ""
    if report.baseline:
        d = report.baseline[-1].test_acc - report.epochs[-1].test_acc
        gap = f"; float32 − FQT test accuracy: {100 * d:+.1f} points"
    pre = ""
    if report.pretrain:
        p = report.pretrain
        pre = (f"; pre-trained in float32 for {p['epochs']} epochs on classes "
               f"{p['classes']}, FQT trains {', '.join(report.trainable_layers)}")
    lr = (f"; lr {report.learning_rate:g}" + (f"→{report.lr_final:g} (cosine)"
                                              if report.lr_final else ""))
    if report.baseline:
        lr += (f", float32: {report.baseline_update} lr "
               f"{report.baseline_learning_rate:g}")
    t.caption = (f"{report.n_train} training / {report.n_test} test samples{lr}; on-device "
                 f"training time of all epochs {_time(total_ms)}, {total_mj / 1e3:.3g} J; "
                 f"simulation {report.samples_per_s:.0f} samples/s{gap}{pre}")
    return t
