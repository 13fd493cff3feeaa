"""PNG plots of a training run (matplotlib, no display needed).  Data in, files out."""

from __future__ import annotations

from pathlib import Path

from mcusim.errors import UsageError
from mcusim.render.units import fmt_ms


def pyplot(what: str = "--plot", extra: str = "plot"):
    """pyplot on the Agg backend (no display needed), or a one-line UsageError: `what`
    needs matplotlib, which comes with mcusim[`extra`] (a plain install has none)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(f"{what} needs matplotlib: pip install 'mcusim[{extra}]'") from None
    return plt



def require_matplotlib() -> None:
    """Fail before any work when --plot is asked for and matplotlib is missing."""
    pyplot()


def training_plots(report, directory: str | Path) -> list[Path]:
    """accuracy.png, accuracy_vs_device_time.png, phase_time.png in `directory`."""
    plt = pyplot()
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--plot: cannot create {out}: {e.strerror}") from None
    title = f"{report.model} on {report.dataset}, FQT ({report.rounding}) on {report.mcu}"
    ep = [e.epoch for e in report.epochs]
    paths = []

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(ep, [e.test_acc for e in report.epochs], "o-", label="FQT uint8 test")
    ax.plot(ep, [e.train_acc for e in report.epochs], "o--", alpha=0.6, label="FQT uint8 train")
    if report.baseline:
        ax.plot(ep, [e.test_acc for e in report.baseline], "s-", label="float32 test")
        ax.plot(ep, [e.train_acc for e in report.baseline], "s--", alpha=0.6,
                label="float32 train")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    paths.append(_save(fig, out / "accuracy.png", plt))

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    t = 0.0
    xs = []
    for e in report.epochs:
        t += e.device_ms
        xs.append(t / 1e3 / 60)
    ax.plot(xs, [e.test_acc for e in report.epochs], "o-")
    ax.set_xlabel(f"simulated on-device training time on {report.mcu} (minutes)")
    ax.set_ylabel("FQT test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    paths.append(_save(fig, out / "accuracy_vs_device_time.png", plt))

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    last = report.epochs[-1].device_phase_ms
    phases = [p for p in ("forward", "loss", "backward", "update") if p in last]
    ax.bar(phases, [last[p] for p in phases], color=["#4c72b0", "#dd8452", "#55a868",
                                                     "#c44e52"][:len(phases)])
    for i, p in enumerate(phases):
        ax.annotate(fmt_ms(last[p]), (i, last[p]), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("ms per training sample")
    ax.set_title(f"{title}: time per sample by phase (last epoch)", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    paths.append(_save(fig, out / "phase_time.png", plt))
    return paths


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
