"""Float32 training baseline: the FQT training loop without quantization.

`FloatTrainer` trains a `FloatNet` (mcusim.fqt.reference) with the same initialisation
(`FloatNet.init(spec, seed)`, as `Program.build` uses), the same schedule (one sample at a
time, an update after every ``batch_size`` samples, counted over the whole run as
`network.Trainer` counts them, so a partial batch at the end of an epoch carries over into the
next) and, by default, the same update rule as the FQT kernel ``fqt_update``
(kernels/train/fqt_update.c and its numpy twin ``twin.fqt_update``).  The difference between
the two runs is then quantization alone.

Sample order: epoch ``e`` (1-based) visits the training samples in the order
``np.random.default_rng(seed + e).permutation(n)`` (`epoch_order`); the FQT trainer uses the
same order, so both see the same schedule.

Update rule ``"standardized"`` (the FQT rule, in float32).  For every trainable weighted layer,
at the end of each mini-batch:

* ``G`` is the mini-batch's *summed* weight gradient (FQT accumulates int32 sums; the rule
  below is invariant to the gradient's scale, so sum and mean give the same step).  Each
  structure ``j`` (conv filter / dwconv channel / fc row) has ``S = struct_size`` entries
  ``G_j``.
* A structure whose gradient is exactly zero (e.g. a ReLU unit dead over the whole batch) is
  skipped: its weights, statistics and step stay as they are (step 0).
* Otherwise ``mean_j = mean(G_j)``, ``sd_j = sqrt(mean((G_j - mean_j)^2))`` (population
  standard deviation) and the per-structure EMA state is updated with ``a = alpha_norm``, the
  weight of the *old* value: ``mu_j <- a mu_j + (1 - a) mean_j``, ``sigma_j <- a sigma_j +
  (1 - a) sd_j``; while ``sigma_j == 0`` (the first observation) they are set to
  ``mean_j, sd_j`` as they are.  ``step_j = lr / sigma_j`` (0 if ``sigma_j == 0``).
* ``W_j <- W_j - (G_j - mu_j) * step_j``: every weight moves by ``lr`` times its standardized
  gradient, whatever the gradient's magnitude.
* Biases (layers with ``bias = true``; they are float32 in FQT too) use *one* pair of EMA
  statistics for the whole layer, over the ``N`` summed bias gradients ``gb``: if any
  ``gb_j != 0``, ``mean``/``sd`` over the N values, the same EMA (``bias_stats``), ``step_b =
  lr / sigma_b``, and ``b_j <- b_j - (gb_j - mu_b) * step_b`` for every structure whose weight
  step is non-zero or whose ``gb_j != 0``; the others keep their bias.

Update rule ``"sgd"``: plain mini-batch SGD with the mean gradient,
``W <- W - lr * G / batch_size``, ``b <- b - lr * gb / batch_size``.

Not mirrored: quantization itself (ranges, rounding, requantization of the weights, the int32
gradients whose units change from sample to sample with the error and activation scales) and
dynamic partial updates (``lambda_min < 1``): the baseline always updates every structure.

Only layers with ``trainable = true`` are updated; frozen layers keep their weights.  Errors
are propagated down to the lowest trainable layer only (`FloatNet.backward` stops there).
Everything is deterministic in ``seed``.  Nothing here prints.

Divergence.  A learning rate far too high makes float32 weights overflow: the loss becomes
NaN or infinite and every later number is meaningless.  Training stops at the first sample
whose loss is not finite, or the first update that leaves a weight or bias non-finite, with
`TrainingDiverged` (exit 1): "float32 training diverged at epoch N: loss is not finite; lower
the learning rate".  numpy's overflow warnings on the way there are not shown: the error says
it.  (The FQT trainer, mcusim.fqt.network.Trainer, stops the same way.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mcusim.errors import TrainingDiverged
from mcusim.fqt.reference import FloatNet
from mcusim.model.schema import LayerSpec, ModelSpec

F = np.float32
UPDATES = ("standardized", "sgd")


def diverged(what: str, epoch: int | None, samples: int, problem: str = "loss is not finite"
             ) -> TrainingDiverged:
    """The one-line error of a run that diverged: at epoch N (or after N samples when the
    epoch is not known)."""
    when = f"at epoch {epoch}" if epoch is not None else \
        f"after {samples:,} sample{'' if samples == 1 else 's'}"
    return TrainingDiverged(f"{what} diverged {when}: {problem}; lower the learning rate")


@dataclass
class EpochRecord:
    """One epoch of float training."""

    epoch: int          # 1-based
    train_loss: float   # mean cross-entropy over the epoch's samples, as seen during training
    train_acc: float    # fraction in [0, 1] of predictions made during training (before updates)
    test_acc: float     # fraction in [0, 1] on the test set after the epoch

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "train_loss": self.train_loss,
                "train_acc": self.train_acc, "test_acc": self.test_acc}


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of epoch `epoch` (1-based): default_rng(seed + epoch).permutation(n)."""
    return np.random.default_rng(seed + epoch).permutation(n)


def copy_net(net: FloatNet, spec: ModelSpec | None = None) -> FloatNet:
    """A FloatNet with copied parameters (for `spec`, default the net's own)."""
    spec = spec or net.spec
    params = {}
    for L in spec.layers:
        if not L.has_weights:
            continue
        if L.name not in net.params:
            raise ValueError(f"{spec.name}: the net has no parameters for layer '{L.name}'")
        w, b = net.params[L.name]
        if tuple(w.shape) != L.weight_shape or tuple(b.shape) != (L.n_structures,):
            raise ValueError(f"{spec.name}: layer '{L.name}' parameters are {w.shape} / "
                             f"{b.shape}, the model needs {L.weight_shape} / "
                             f"({L.n_structures},)")
        params[L.name] = (np.array(w, dtype=F), np.array(b, dtype=F))
    return FloatNet(spec, params)


class _LayerState:
    """Gradient accumulators and standardization statistics of one trainable layer."""

    def __init__(self, L: LayerSpec) -> None:
        self.layer = L
        N = L.n_structures
        self.gw = np.zeros(L.weight_shape, dtype=F)
        self.gb = np.zeros(N, dtype=F)
        self.mu = np.zeros(N, dtype=F)
        self.sigma = np.zeros(N, dtype=F)
        self.bias_stats = np.zeros(2, dtype=F)  # {mu, sigma} of the bias gradients

    def clear(self) -> None:
        self.gw[...] = 0
        self.gb[...] = 0


def _stats(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of g (rows, S): mean and population standard deviation, float32."""
    mean = g.mean(axis=1, dtype=F)
    d = g - mean[:, None]
    sd = np.sqrt((d * d).mean(axis=1, dtype=F))
    return mean.astype(F), sd.astype(F)


def _ema(mu: np.ndarray, sigma: np.ndarray, mean: np.ndarray, sd: np.ndarray, a: float,
         lr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New (mu, sigma) and the step lr / sigma (0 where sigma == 0), as fqt_update's ema_step."""
    a32, b32 = F(a), F(1) - F(a)
    first = sigma == 0
    new_mu = np.where(first, mean, a32 * mu + b32 * mean).astype(F)
    new_sigma = np.where(first, sd, a32 * sigma + b32 * sd).astype(F)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(new_sigma > 0, F(lr) / new_sigma, F(0)).astype(F)
    return new_mu, new_sigma, step


class FloatTrainer:
    """float32 training of a model with the same initialisation, schedule and update rule as FQT.

    `net` (default ``FloatNet.init(spec, seed)``, the FQT program's initialisation) is copied:
    the trainer's weights are ``trainer.net``; the given net is left untouched.
    """

    def __init__(self, spec: ModelSpec, net: FloatNet | None = None, seed: int = 0,
                 update: str = "standardized") -> None:
        if update not in UPDATES:
            raise ValueError(f"unknown update rule {update!r} (expected one of "
                             f"{', '.join(UPDATES)})")
        if spec.first_trainable is None:
            raise ValueError(f"{spec.name}: no trainable layer")
        self.spec = spec
        self.seed = seed
        self.update = update
        self.net = copy_net(net if net is not None else FloatNet.init(spec, seed), spec)
        self.samples = 0   # samples trained so far (the batch counter, never reset)
        self.updates = 0   # mini-batch updates applied so far
        self.epoch: int | None = None  # the epoch being trained (for messages), when known
        self.layers = {spec.layers[i].name: _LayerState(spec.layers[i])
                       for i in spec.trainable_layers}

    # -- one sample
    def train_sample(self, x: np.ndarray, label: int) -> tuple[float, int]:
        """Forward, loss and backward of one sample; its gradients are accumulated and the
        update is applied after every ``batch_size``-th sample.  Returns (loss, predicted class),
        the prediction made before any update.  TrainingDiverged when the loss is not
        finite."""
        net = self.net
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            acts = net.forward(x)
            predicted = int(np.argmax(acts[-1].reshape(-1)))
            loss, _, grads = net.backward(x, acts, int(label))
        if not math.isfinite(loss):
            raise diverged("float32 training", self.epoch, self.samples)
        for name, st in self.layers.items():
            dw, db = grads[name]
            st.gw += dw.reshape(st.gw.shape)
            st.gb += db.reshape(-1)
        self.samples += 1
        if self.samples % self.spec.train.batch_size == 0:
            self.apply_update()
        return loss, predicted

    def apply_update(self) -> None:
        """Apply the accumulated gradients of every trainable layer and clear them.
        TrainingDiverged when a weight or bias becomes non-finite."""
        tr = self.spec.train
        for name, st in self.layers.items():
            w, b = self.net.params[name]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                if self.update == "standardized":
                    w, b = self._standardized(st, w, b, tr.learning_rate, tr.alpha_norm)
                else:
                    k = F(tr.learning_rate) / F(tr.batch_size)
                    w = (w - k * st.gw).astype(F)
                    if st.layer.bias:
                        b = (b - k * st.gb).astype(F)
            if not (np.isfinite(w).all() and np.isfinite(b).all()):
                raise diverged("float32 training", self.epoch, self.samples,
                               f"the weights of layer '{name}' are not finite")
            self.net.params[name] = (w, b)
            st.clear()
        self.updates += 1

    @staticmethod
    def _standardized(st: _LayerState, w: np.ndarray, b: np.ndarray, lr: float, a: float
                      ) -> tuple[np.ndarray, np.ndarray]:
        L = st.layer
        N, S = L.n_structures, L.struct_size
        g = st.gw.reshape(N, S)
        active = np.any(g != 0, axis=1)
        step = np.zeros(N, dtype=F)
        if active.any():
            mean, sd = _stats(g[active])
            mu, sigma, stp = _ema(st.mu[active], st.sigma[active], mean, sd, a, lr)
            st.mu[active], st.sigma[active], step[active] = mu, sigma, stp
        w = (w.reshape(N, S) - (g - st.mu[:, None]) * step[:, None]).astype(F)
        w = w.reshape(L.weight_shape)
        gb = st.gb
        if L.bias and np.any(gb != 0):
            mean, sd = _stats(gb[None, :])
            mu, sigma, stp = _ema(st.bias_stats[0:1], st.bias_stats[1:2], mean, sd, a, lr)
            st.bias_stats[0], st.bias_stats[1] = mu[0], sigma[0]
            mask = (step != 0) | (gb != 0)
            b = np.where(mask, b - (gb - mu[0]) * stp[0], b).astype(F)
        return w, b

    # -- inference
    def predict(self, x: np.ndarray) -> int:
        """The predicted class of one input (argmax of the logits, first on ties)."""
        return int(np.argmax(self.net.forward(x)[-1].reshape(-1)))

    def evaluate(self, xs: np.ndarray, ys: np.ndarray) -> float:
        """Accuracy in [0, 1] on (xs, ys); NaN for an empty set."""
        n = len(ys)
        if n == 0:
            return float("nan")
        correct = sum(self.predict(xs[i]) == int(ys[i]) for i in range(n))
        return correct / n

    # -- one epoch
    def train_epoch(self, xs: np.ndarray, ys: np.ndarray, order: np.ndarray
                    ) -> tuple[float, float]:
        """Train on xs[order] one sample at a time: (mean loss, accuracy) as seen in training."""
        if len(order) == 0:
            return float("nan"), float("nan")
        total, correct = 0.0, 0
        for i in order:
            loss, pred = self.train_sample(xs[i], int(ys[i]))
            total += loss
            correct += pred == int(ys[i])
        return total / len(order), correct / len(order)


def train_float(spec: ModelSpec, x_train: np.ndarray, y_train: np.ndarray,
                x_test: np.ndarray, y_test: np.ndarray, epochs: int, seed: int = 0,
                update: str = "standardized", net: FloatNet | None = None,
                on_epoch: Callable[[EpochRecord], None] | None = None
                ) -> tuple[FloatNet, list[EpochRecord]]:
    """Train `spec` in float32 for `epochs` epochs; the trained net and one record per epoch.

    Epoch e (1-based) visits the training set in the order `epoch_order(n, seed, e)`;
    `on_epoch` is called with each record as soon as it is complete.  TrainingDiverged (see
    the module docstring) when the loss or the weights stop being finite.
    """
    if len(x_train) != len(y_train):
        raise ValueError(f"x_train has {len(x_train)} samples but y_train {len(y_train)}")
    if len(x_test) != len(y_test):
        raise ValueError(f"x_test has {len(x_test)} samples but y_test {len(y_test)}")
    trainer = FloatTrainer(spec, net=net, seed=seed, update=update)
    records: list[EpochRecord] = []
    for epoch in range(1, epochs + 1):
        order = epoch_order(len(y_train), seed, epoch)
        # the same learning-rate schedule as FQT (TrainSettings.learning_rate_at)
        trainer.spec = spec.with_train(
            learning_rate=spec.train.learning_rate_at(epoch, epochs), lr_final=0.0)
        trainer.epoch = epoch
        loss, acc = trainer.train_epoch(x_train, y_train, order)
        rec = EpochRecord(epoch, float(loss), float(acc), float(trainer.evaluate(x_test, y_test)))
        records.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
    return trainer.net, records
