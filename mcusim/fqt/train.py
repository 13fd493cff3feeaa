"""Simulated on-device training: FQT over epochs of real data, with the device's costs.

`FqtSession` trains a model with fully quantized training on one of two engines:

- "twin": the bit-exact numpy twin runs every step (fast); the emulator is *sampled* for
  costs: every epoch the twin's current state is copied into the emulated MCU and a few of
  the epoch's samples (and one weight update) run there as compiled kernels, so the epoch's
  device time and energy follow the real, data-dependent work (partial updates included);
- "emulator": every step runs as compiled kernels in Unicorn (slow, exact costs).

Both engines produce identical weights (the twin is bit-exact: tested).  Evaluation runs
forward + loss on the same engine from a snapshot of the state that is restored afterwards,
so measuring accuracy never changes training.  Sample order per epoch:
`np.random.default_rng(seed + epoch).permutation(n)`, the same as the float32 baseline's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mcusim.analyze import PER_BATCH_GROUPS, PER_SAMPLE_GROUPS, PHASES, _Recorder
from mcusim.catalog import Mcu
from mcusim.elf import ElfImage
from mcusim.errors import UsageError
from mcusim.fqt.network import HOST_BASE, Program, Trainer, TwinExecutor, machine_layout
from mcusim.fqt.quant import quantize_inputs
from mcusim.fqt.reference import FloatNet
from mcusim.machine import Machine
from mcusim.model.schema import ModelSpec
from mcusim.toolchain import Builder, Toolchain

ENGINES = ("twin", "emulator")
ProgressFn = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class FqtEpoch:
    epoch: int
    train_loss: float
    train_acc: float
    test_acc: float
    device_ms: float  # simulated on-device time of the epoch's training (all samples+updates)
    device_mj: float
    device_phase_ms: dict[str, float] = field(default_factory=dict)  # per sample, by phase
    cost_samples: int = 0  # samples whose cost was measured on the emulator this epoch
    wall_s: float = 0.0
    learning_rate: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Costs:
    """Device cycles/energy of some samples and updates, by phase."""

    samples: int = 0
    updates: int = 0
    sample_cycles: dict[str, float] = field(default_factory=dict)  # phase -> total
    sample_mj: float = 0.0
    update_cycles: dict[str, float] = field(default_factory=dict)
    update_mj: float = 0.0


class FqtSession:
    """One model, one MCU, one engine: FQT training with device costs."""

    def __init__(self, spec: ModelSpec, mcu: Mcu, toolchain: Toolchain, *,
                 engine: str = "twin", seed: int = 0, net: FloatNet | None = None,
                 calibration: np.ndarray | None = None, cost_samples: int = 12,
                 elf: str | None = None) -> None:
        if engine not in ENGINES:
            raise UsageError(f"unknown engine {engine!r} (twin or emulator)")
        self.spec, self.mcu, self.engine, self.seed = spec, mcu, engine, seed
        self.cost_samples = cost_samples
        if elf is None:
            elf = Builder(toolchain).build(mcu.core, [mcu])[0].elf
        self.machine = Machine(mcu, ElfImage.open(elf),
                               check_alignment=Machine.kernel_alignment_checks())
        self.program = Program.build(spec, net=net, calibration=calibration, seed=seed)
        self.program.layout(*machine_layout(self.machine))
        self.twin = TwinExecutor(self.program)
        Trainer(self.program, self.twin).initialise()
        image = {n: self.twin.read(b.addr, b.nbytes) for n, b in self.program.buffers.items()}
        self.device = _Recorder(self.program, self.machine, image)
        self.ex = self.twin if engine == "twin" else self.device
        self.trainer = Trainer(self.program, self.ex)
        self._spans = [(lo, n) for lo, n in self.program.regions()]

    # ------------------------------------------------------------------ state

    def snapshot(self, ex=None) -> list[tuple[int, bytes]]:
        ex = ex or self.ex
        return [(lo, ex.read(lo, n)) for lo, n in self._spans if lo < HOST_BASE]

    def restore(self, snap: list[tuple[int, bytes]], ex=None) -> None:
        ex = ex or self.ex
        for lo, data in snap:
            ex.write(lo, data)

    def state(self) -> dict[str, bytes]:
        """The bytes of every persistent buffer (weights, gradients, statistics, records)."""
        plan = self.program.plan
        return {n: self.ex.read(b.addr, b.nbytes) for n, b in self.program.buffers.items()
                if b.region != "host" and n not in plan.offsets}

    # ------------------------------------------------------------------ training

    def set_learning_rate(self, lr: float) -> None:
        """Write the learning rate into every layer's update record (both executors)."""
        raw = np.float32(lr).tobytes()
        for name in self.program.buffers:
            if name.endswith(".upd"):
                addr = self.program.ref(f"{name}:lr")
                self.twin.write(addr, raw)
                self.device.write(addr, raw)

    def train_epoch(self, xq: np.ndarray, y: np.ndarray, order: np.ndarray,
                    progress: ProgressFn | None = None) -> tuple[float, float, _Costs]:
        """One pass over xq[order]: (mean loss, accuracy, device costs if emulated)."""
        before = self.device.snapshot() if self.engine == "emulator" else None
        losses = []
        correct = 0
        b = self.spec.train.batch_size
        for k, i in enumerate(order):
            r = self.trainer.train_sample(xq[i], int(y[i]))
            losses.append(r.loss)
            correct += int(r.predicted == y[i])
            if progress and (k % 16 == 15 or k + 1 == len(order)):
                progress("train", k + 1, len(order))
        costs = _Costs()
        if before is not None:
            costs = _costs_between(before, self.device.snapshot(), len(order), len(order) // b,
                                   self._mj_per_cycle)
        return float(np.mean(losses)), correct / len(order), costs

    def evaluate(self, xq: np.ndarray, y: np.ndarray, progress: ProgressFn | None = None
                 ) -> float:
        """Accuracy from forward + loss on the engine; the state is restored afterwards."""
        snap = self.snapshot()
        correct = 0
        for k in range(len(y)):
            self.trainer.set_input(xq[k], int(y[k]))
            for g in ("forward", "loss"):
                self.trainer._run(g)
            correct += int(self.trainer.result().predicted == y[k])
            if progress and (k % 32 == 31 or k + 1 == len(y)):
                progress("test", k + 1, len(y))
        self.restore(snap)
        return correct / len(y)

    def sample_costs(self, xq: np.ndarray, y: np.ndarray, order: np.ndarray) -> _Costs:
        """Device costs of the first `cost_samples` samples of `order` and one update, from
        the twin's current state copied into the emulated MCU."""
        self.restore(self.snapshot(self.twin), self.device)
        dev = Trainer(self.program, self.device)
        dev.samples = self.trainer.samples
        n = min(self.cost_samples, len(order))
        s0 = self.device.snapshot()
        for i in order[:n]:
            dev.set_input(xq[i], int(y[i]))
            for g in PER_SAMPLE_GROUPS:
                dev._run(g)
            dev.samples += 1
        s1 = self.device.snapshot()
        for g in PER_BATCH_GROUPS:
            dev._run(g)
        s2 = self.device.snapshot()
        c = _costs_between(s0, s1, n, 0, self._mj_per_cycle)
        u = _costs_between(s1, s2, 0, 1, self._mj_per_cycle)
        c.updates, c.update_cycles, c.update_mj = 1, u.update_cycles, u.update_mj
        return c

    @property
    def _mj_per_cycle(self) -> float:
        """Energy of one cycle of the modelled driver-call overhead (as mcusim.analyze)."""
        return self.mcu.voltage_v * self.mcu.run_current_ma / self.mcu.clock_hz

    def device_epoch(self, costs: _Costs, n_samples: int) -> tuple[float, float,
                                                                  dict[str, float]]:
        """(ms, mJ, per-sample ms by phase) of an epoch of n_samples from measured costs."""
        clock = self.mcu.clock_hz
        b = self.spec.train.batch_size
        updates = n_samples // b
        per_phase: dict[str, float] = {}
        for ph in PHASES:
            c = costs.sample_cycles.get(ph, 0.0) / max(costs.samples, 1)
            u = costs.update_cycles.get(ph, 0.0) / max(costs.updates, 1)
            per_phase[ph] = (c + u * updates / max(n_samples, 1)) / clock * 1e3
        ms = sum(per_phase.values()) * n_samples
        mj = (costs.sample_mj / max(costs.samples, 1)) * n_samples + \
            (costs.update_mj / max(costs.updates, 1)) * updates
        return ms, mj, per_phase


def _costs_between(a: tuple, b: tuple, samples: int, updates: int,
                   mj_per_cycle: float = 0.0) -> _Costs:
    """Costs accumulated by a _Recorder between two of its snapshots; the driver's modelled
    call overhead is charged `mj_per_cycle` (V x I / clock) like the kernels' cycles."""
    cyc_a, en_a, _calls_a, ov_a = a
    cyc_b, en_b, _calls_b, ov_b = b
    by_phase: dict[str, float] = {}
    overhead = 0.0
    for key, v in cyc_b.items():
        d = v - cyc_a.get(key, 0)
        if d:
            by_phase[key[1]] = by_phase.get(key[1], 0.0) + d
    for ph, v in ov_b.items():
        d = v - ov_a.get(ph, 0)
        if d:
            by_phase[ph] = by_phase.get(ph, 0.0) + d
            overhead += d
    mj = sum(v - en_a.get(k, 0.0) for k, v in en_b.items()) + overhead * mj_per_cycle
    c = _Costs(samples=samples, updates=updates)
    if updates and not samples:
        c.update_cycles, c.update_mj = by_phase, mj
    else:
        c.sample_cycles, c.sample_mj = by_phase, mj
    return c


# ---------------------------------------------------------------------- the whole run


@dataclass
class TrainReport:
    model: str
    dataset: str
    mcu: str
    core: str
    clock_hz: int
    engine: str
    rounding: str
    lambda_min: float
    lambda_max: float
    seed: int
    n_train: int
    n_test: int
    learning_rate: float
    lr_final: float
    baseline_update: str
    baseline_learning_rate: float
    epochs: list[FqtEpoch]
    baseline: list[Any] | None
    samples_per_s: float  # wall-clock training speed of the engine
    pretrain: dict[str, Any] | None = None
    trainable_layers: list[str] = field(default_factory=list)
    energy_basis: dict[str, Any] = field(default_factory=dict)  # of device_mj: Mcu.energy_info()
    settings: dict[str, Any] = field(default_factory=dict)  # every [train] setting used

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("epochs", "baseline")}
        d["epochs"] = [e.to_dict() for e in self.epochs]
        # the baseline's records have the same keys; it does not run on the device
        d["baseline"] = None if self.baseline is None else [
            {**e.to_dict(), "device_ms": None, "device_mj": None} for e in self.baseline]
        return d


def train_fqt(spec: ModelSpec, data, mcu: Mcu, toolchain: Toolchain, *, epochs: int,
              engine: str = "twin", seed: int = 0, baseline: bool = True,
              net: FloatNet | None = None, pretrain: dict[str, Any] | None = None,
              baseline_update: str = "sgd", baseline_lr: float | None = 0.1,
              progress: ProgressFn | None = None,
              on_epoch: Callable[[FqtEpoch], None] | None = None,
              elf: str | None = None) -> TrainReport:
    """FQT training for `epochs` on data (mcusim.fqt.datasets.Dataset), with device costs
    and (optionally) the float32 baseline of the same architecture, init and schedule
    (sample order, batch size, epochs and the shape of the learning-rate schedule).  The
    baseline's update rule is `baseline_update` ("sgd": mini-batch SGD on the mean gradient;
    "standardized": FQT's standardized rule in float32, which diverges at FQT's learning
    rates because float weights are unbounded — see mcusim.fqt.baseline) with its own
    first learning rate `baseline_lr` (None: the model's; the default 0.1 suits SGD on the
    mean gradient, while FQT's standardized steps move every weight by about lr).  `elf`:
    a kernel image already linked for `mcu` by `toolchain` (a sweep's) instead of a build."""
    from mcusim.analyze import require_fit
    from mcusim.fqt.baseline import train_float

    require_fit(spec, mcu, toolchain, "train", elf=elf)
    xtr = np.asarray(data.x_train, np.float32)
    xte = np.asarray(data.x_test, np.float32)
    ytr, yte = np.asarray(data.y_train), np.asarray(data.y_test)
    net0 = net or FloatNet.init(spec, seed)
    base_net = _copy_net(net0)
    calib = xtr[: min(64, len(xtr))]
    session = FqtSession(spec, mcu, toolchain, engine=engine, seed=seed, net=net0,
                         calibration=calib, elf=elf)
    qtr = quantize_inputs(xtr, spec.input_range)
    qte = quantize_inputs(xte, spec.input_range)
    records: list[FqtEpoch] = []
    t_train = 0.0
    n_trained = 0
    for ep in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = np.random.default_rng(seed + ep).permutation(len(ytr))
        lr = spec.train.learning_rate_at(ep, epochs)
        session.set_learning_rate(lr)
        session.trainer.epoch = ep  # named by a divergence message
        if engine == "twin":
            costs = session.sample_costs(qtr, ytr, order)
        t1 = time.perf_counter()
        loss, acc, emu_costs = session.train_epoch(qtr, ytr, order, progress)
        t_train += time.perf_counter() - t1
        n_trained += len(order)
        if engine == "emulator":
            costs = emu_costs
        test_acc = session.evaluate(qte, yte, progress)
        ms, mj, phase_ms = session.device_epoch(costs, len(order))
        rec = FqtEpoch(ep, loss, acc, test_acc, ms, mj, phase_ms, costs.samples,
                       time.perf_counter() - t0, lr)
        records.append(rec)
        if on_epoch:
            on_epoch(rec)
    base = None
    base_spec = spec
    if baseline_lr is not None:
        ratio = baseline_lr / spec.train.learning_rate
        base_spec = spec.with_train(learning_rate=baseline_lr,
                                    lr_final=spec.train.lr_final * ratio)
    if baseline:
        _, base = train_float(base_spec, xtr, ytr, xte, yte, epochs, seed=seed, net=base_net,
                              update=baseline_update)
    tr = spec.train
    return TrainReport(
        model=spec.name, dataset=data.name, mcu=mcu.name, core=mcu.core.key,
        clock_hz=mcu.clock_hz, engine=engine, rounding=tr.rounding,
        lambda_min=tr.lambda_min, lambda_max=tr.lambda_max, seed=seed, n_train=len(ytr),
        n_test=len(yte), learning_rate=tr.learning_rate, lr_final=tr.lr_final,
        baseline_update=baseline_update,
        baseline_learning_rate=base_spec.train.learning_rate, epochs=records, baseline=base,
        samples_per_s=n_trained / t_train if t_train else 0.0, pretrain=pretrain,
        trainable_layers=[spec.layers[i].name for i in spec.trainable_layers],
        energy_basis=mcu.energy_info(), settings=tr.to_dict())


def _copy_net(net: FloatNet) -> FloatNet:
    return FloatNet(net.spec, {k: (w.copy(), b.copy()) for k, (w, b) in net.params.items()})


def parse_classes(text: str | None, classes: int) -> list[int]:
    """'0-4' / '0,2,5' / None (the first half) -> class list, checked."""
    if text is None:
        return list(range(max(1, classes // 2)))
    out: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                out += list(range(a, b + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise UsageError(f"--pretrain-classes: {text!r} is not like 0-4 or 0,2,5") from None
    bad = [c for c in out if not 0 <= c < classes]
    if bad or not out:
        raise UsageError(f"--pretrain-classes: classes must be in 0..{classes - 1} "
                         f"(got {text!r})")
    return sorted(set(out))


def pretrain_float(spec: ModelSpec, data, epochs: int, classes: list[int], seed: int = 0
                   ) -> tuple[FloatNet, dict[str, Any]]:
    """Transfer learning, step 1: float32 training of every layer on the samples of some
    classes only (numpy).  Step 2 is FQT fine-tuning of the trainable tail on the device."""
    from mcusim.fqt.baseline import train_float

    full = spec.with_trainable_tail(None)
    keep_tr = np.isin(data.y_train, classes)
    keep_te = np.isin(data.y_test, classes)
    net, recs = train_float(full, np.asarray(data.x_train, np.float32)[keep_tr],
                            np.asarray(data.y_train)[keep_tr],
                            np.asarray(data.x_test, np.float32)[keep_te],
                            np.asarray(data.y_test)[keep_te], epochs, seed=seed + 1000)
    info = {"epochs": epochs, "classes": classes, "samples": int(keep_tr.sum()),
            "test_acc_on_those_classes": recs[-1].test_acc if recs else None}
    return net, info
