"""The float32 training baseline (mcusim.fqt.baseline) and the reference's gradients."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mcusim.fqt import reference
from mcusim.fqt.baseline import (
    UPDATES,
    EpochRecord,
    FloatTrainer,
    copy_net,
    epoch_order,
    train_float,
)
from mcusim.fqt.reference import FloatNet
from mcusim.model.schema import ModelSpec
from mcusim.model.zoo import load_model


@pytest.fixture(scope="module")
def digits() -> ModelSpec:
    return load_model("digits-cnn")


def prototypes_task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A separable 10-class task: noisy copies of 10 fixed random binary 8x8 images."""
    protos = (np.random.default_rng(123).uniform(0, 1, (10, 8, 8, 1)) > 0.5).astype(np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = 0.75 * protos[y] + 0.25 * rng.uniform(0, 1, (n, 8, 8, 1))
    return np.clip(x, 0, 1).astype(np.float32), y


def frozen_first(spec: ModelSpec) -> ModelSpec:
    """`spec` with its first weighted layer frozen.  ModelSpec has no API to change a layer's
    `trainable` (with_train only changes TrainSettings), so this copies the layer tuple with
    dataclasses.replace; frozen-before-trainable still holds."""
    i = next(i for i, L in enumerate(spec.layers) if L.has_weights)
    layers = list(spec.layers)
    layers[i] = dataclasses.replace(layers[i], trainable=False)
    return dataclasses.replace(spec, layers=tuple(layers))


def weights(net: FloatNet) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {k: (w.copy(), b.copy()) for k, (w, b) in net.params.items()}


# ------------------------------------------------------------------------- reference gradients

def test_backward_matches_finite_differences(digits, monkeypatch):
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, digits.input_shape).astype(np.float32)
    label = 3
    net32 = FloatNet.init(digits, seed=0)
    _, _, g32 = net32.backward(x, net32.forward(x), label)

    # The reference computes in the module-level dtype F: switching it to float64 runs the very
    # same code in double precision, so finite differences are not drowned in float32 rounding.
    monkeypatch.setattr(reference, "F", np.float64)
    net = FloatNet(digits, {k: (w.astype(np.float64), b.astype(np.float64))
                            for k, (w, b) in net32.params.items()})
    x64 = x.astype(np.float64)
    assert net.forward(x64)[-1].dtype == np.float64

    def loss() -> float:
        return net.loss_and_error(net.forward(x64)[-1], label)[0]

    _, _, grads = net.backward(x64, net.forward(x64), label)
    assert set(grads) == {digits.layers[i].name for i in digits.trainable_layers}
    h = 1e-6
    checked = 0
    for name, (w, b) in net.params.items():
        dw, db = grads[name]
        assert dw.shape == w.shape and db.shape == b.shape
        flat_w = w.reshape(-1)
        picks = [(flat_w, dw.reshape(-1), int(i)) for i in rng.choice(flat_w.size, 6, False)]
        picks += [(b, db, int(i)) for i in rng.choice(b.size, 2, False)]
        for arr, grad, i in picks:
            old = arr[i]
            arr[i] = old + h
            up = loss()
            arr[i] = old - h
            down = loss()
            arr[i] = old
            numeric = (up - down) / (2 * h)
            # float64 central differences with h = 1e-6: truncation error ~h^2 |f'''| ~ 1e-12,
            # rounding error ~1e-16 * |loss| / h ~ 1e-10.  A ReLU or max-pool switch inside
            # +-h would break this, but with h = 1e-6 that is a measure-zero event for random x.
            # So 1e-6 absolute + 1e-5 relative is loose by several orders of magnitude.
            assert abs(numeric - grad[i]) <= 1e-6 + 1e-5 * abs(numeric), (name, i)
            checked += 1
    assert checked == 8 * len(net.params)
    # and the float32 reference agrees with the float64 one to float32 accuracy
    for name, (dw, db) in grads.items():
        scale = float(np.abs(dw).max())
        np.testing.assert_allclose(g32[name][0], dw, rtol=0, atol=1e-4 * scale)
        np.testing.assert_allclose(g32[name][1], db, rtol=0, atol=1e-4 * max(1.0, scale))


# ------------------------------------------------------------------------- learning

@pytest.mark.parametrize("update", UPDATES)
def test_learns_a_separable_task(digits, update):
    xtr, ytr = prototypes_task(400, seed=1)
    xte, yte = prototypes_task(200, seed=2)
    seen: list[EpochRecord] = []
    net, records = train_float(digits, xtr, ytr, xte, yte, epochs=4, seed=0, update=update,
                               on_epoch=seen.append)
    assert seen == records and [r.epoch for r in records] == [1, 2, 3, 4]
    assert isinstance(net, FloatNet)
    for r in records:
        assert 0.0 <= r.train_acc <= 1.0 and 0.0 <= r.test_acc <= 1.0 and r.train_loss > 0
        assert set(r.to_dict()) == {"epoch", "train_loss", "train_acc", "test_acc"}
    # chance is 0.1.  (The standardized rule's loss is not monotone at the zoo's lr = 0.01, so
    # only last-vs-first is required.)
    assert records[-1].test_acc >= 0.7
    assert records[-1].train_loss < records[0].train_loss
    assert FloatTrainer(digits, net=net).evaluate(xte, yte) == records[-1].test_acc


def test_train_epoch_reports_what_train_sample_saw(digits):
    xs, ys = prototypes_task(24, seed=3)
    order = epoch_order(len(ys), 0, 1)
    a = FloatTrainer(digits, seed=0)
    b = FloatTrainer(digits, seed=0)
    loss, acc = a.train_epoch(xs, ys, order)
    seen = [b.train_sample(xs[i], int(ys[i])) for i in order]
    assert loss == pytest.approx(np.mean([s[0] for s in seen]))
    assert acc == pytest.approx(np.mean([s[1] == ys[i] for s, i in zip(seen, order, strict=True)]))


def test_epoch_order():
    assert np.array_equal(epoch_order(50, 4, 2), np.random.default_rng(6).permutation(50))
    assert not np.array_equal(epoch_order(50, 4, 1), epoch_order(50, 4, 2))


@pytest.mark.parametrize("update", UPDATES)
def test_update_after_every_batch(digits, update):
    bs = digits.train.batch_size
    xs, ys = prototypes_task(bs + 1, seed=4)
    t = FloatTrainer(digits, seed=0, update=update)
    before = weights(t.net)
    for i in range(bs - 1):
        t.train_sample(xs[i], int(ys[i]))
    for k, (w, b) in t.net.params.items():
        assert np.array_equal(w, before[k][0]) and np.array_equal(b, before[k][1])
    t.train_sample(xs[bs - 1], int(ys[bs - 1]))
    assert t.updates == 1 and t.samples == bs
    for k, (w, _) in t.net.params.items():
        assert not np.array_equal(w, before[k][0]), k
        assert w.dtype == np.float32


def test_first_standardized_step(digits):
    """First update: sigma == 0, so mu, sigma are the batch's own mean and sd: every active
    structure moves by -lr (G - mean) / sd, i.e. a change of mean 0 and standard deviation lr;
    biases the same with the layer's statistics over all N bias gradients."""
    lr = digits.train.learning_rate
    bs = digits.train.batch_size
    xs, ys = prototypes_task(bs, seed=5)
    t = FloatTrainer(digits, seed=0)
    net0 = copy_net(t.net)
    sums: dict[str, list[np.ndarray]] = {}
    for x, y in zip(xs, ys, strict=True):
        _, _, g = net0.backward(x, net0.forward(x), int(y))
        for k, (dw, db) in g.items():
            s = sums.setdefault(k, [np.zeros_like(dw), np.zeros_like(db)])
            s[0] += dw
            s[1] += db
        t.train_sample(x, int(y))
    for i in digits.trainable_layers:
        L = digits.layers[i]
        G, gb = sums[L.name]
        G = G.reshape(L.n_structures, -1)
        dw = (t.net.params[L.name][0] - net0.params[L.name][0]).reshape(L.n_structures, -1)
        active = np.any(G != 0, axis=1)
        assert active.any()
        np.testing.assert_array_equal(dw[~active], 0)
        expect = -lr * (G - G.mean(axis=1, keepdims=True)) / G.std(axis=1, keepdims=True)
        np.testing.assert_allclose(dw[active], expect[active], rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(dw[active].std(axis=1), lr, rtol=1e-3)
        db = t.net.params[L.name][1] - net0.params[L.name][1]
        mask = active | (gb != 0)
        np.testing.assert_allclose(db[mask], (-lr * (gb - gb.mean()) / gb.std())[mask],
                                   rtol=1e-3, atol=1e-6)
        np.testing.assert_array_equal(db[~mask], 0)
        st = t.layers[L.name]
        np.testing.assert_allclose(st.sigma[active], G.std(axis=1)[active], rtol=1e-4)


# ------------------------------------------------------------------------- frozen layers

@pytest.mark.parametrize("update", UPDATES)
def test_frozen_layers_stay_unchanged(digits, update):
    spec = frozen_first(digits)
    assert spec.first_trainable == 2 and spec.trainable_layers == (2, 5)
    xs, ys = prototypes_task(3 * spec.train.batch_size, seed=6)
    t = FloatTrainer(spec, seed=0, update=update)
    before = weights(t.net)
    t.train_epoch(xs, ys, np.arange(len(ys)))
    assert set(t.layers) == {"conv2", "fc"}
    w, b = t.net.params["conv1"]
    assert np.array_equal(w, before["conv1"][0]) and np.array_equal(b, before["conv1"][1])
    for k in ("conv2", "fc"):
        assert not np.array_equal(t.net.params[k][0], before[k][0]), k
    # the errors stop at the lowest trainable layer
    x = xs[0]
    _, errs, grads = t.net.backward(x, t.net.forward(x), int(ys[0]))
    assert errs[0] is None and errs[1] is None and set(grads) == {"conv2", "fc"}


def test_frozen_feature_extractor_of_mbednet_tail():
    spec = load_model("mbednet-tail")
    rng = np.random.default_rng(0)
    xs = rng.uniform(0, 1, (spec.train.batch_size, *spec.input_shape)).astype(np.float32)
    ys = rng.integers(0, spec.classes, len(xs))
    t = FloatTrainer(spec, seed=0)
    before = weights(t.net)
    t.train_epoch(xs, ys, np.arange(len(xs)))
    assert t.updates == 1
    for i, L in enumerate(spec.layers):
        if not L.has_weights:
            continue
        same = np.array_equal(t.net.params[L.name][0], before[L.name][0])
        assert same == (i not in spec.trainable_layers), L.name


# ------------------------------------------------------------------------- determinism, API

@pytest.mark.parametrize("update", UPDATES)
def test_deterministic(digits, update):
    xs, ys = prototypes_task(60, seed=8)
    xt, yt = prototypes_task(20, seed=9)
    a, ra = train_float(digits, xs, ys, xt, yt, epochs=1, seed=5, update=update)
    b, rb = train_float(digits, xs, ys, xt, yt, epochs=1, seed=5, update=update)
    c, _ = train_float(digits, xs, ys, xt, yt, epochs=1, seed=6, update=update)
    assert ra == rb
    for k in a.params:
        assert np.array_equal(a.params[k][0], b.params[k][0])
        assert np.array_equal(a.params[k][1], b.params[k][1])
    assert any(not np.array_equal(a.params[k][0], c.params[k][0]) for k in a.params)


def test_given_net_is_copied_not_mutated(digits):
    net = FloatNet.init(digits, seed=11)
    before = weights(net)
    t = FloatTrainer(digits, net=net, seed=0)
    for k in net.params:  # the given net's weights are used, not seed 0's
        assert np.array_equal(t.net.params[k][0], before[k][0])
    xs, ys = prototypes_task(digits.train.batch_size, seed=10)
    t.train_epoch(xs, ys, np.arange(len(ys)))
    for k in net.params:
        assert np.array_equal(net.params[k][0], before[k][0])
        assert not np.array_equal(t.net.params[k][0], before[k][0])


def test_default_init_is_the_fqt_init(digits):
    t = FloatTrainer(digits, seed=3)
    ref = FloatNet.init(digits, seed=3)
    for k in ref.params:
        assert np.array_equal(t.net.params[k][0], ref.params[k][0])


def test_bad_arguments(digits):
    with pytest.raises(ValueError, match="update rule"):
        FloatTrainer(digits, update="adam")
    other = FloatNet.init(load_model("emnist-cnn"))
    with pytest.raises(ValueError):
        FloatTrainer(digits, net=other)
    x, y = prototypes_task(4, seed=0)
    with pytest.raises(ValueError):
        train_float(digits, x, y[:3], x, y, epochs=1)


def test_predict_and_evaluate(digits):
    t = FloatTrainer(digits, seed=0)
    xs, ys = prototypes_task(10, seed=12)
    preds = [t.predict(x) for x in xs]
    assert all(0 <= p < digits.classes for p in preds)
    assert t.evaluate(xs, ys) == np.mean(np.array(preds) == ys)
    assert np.isnan(t.evaluate(xs[:0], ys[:0]))


# ------------------------------------------------------------------------- real data

@pytest.mark.parametrize("update,lr", [("sgd", 0.1), ("standardized", 0.003)])
def test_digits_accuracy(digits, update, lr):
    """digits-cnn on scikit-learn's 8x8 digits, 3 epochs, cosine learning rate.  SGD runs at
    0.1 (mcusim train's baseline default), the standardized rule at lr = 0.003: at the zoo's
    0.01 its float32 weights grow without bound (every weight moves
    by ~lr per step whatever the gradient; FQT's slowly tracked weight range clips them)."""
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target
    p = np.random.default_rng(0).permutation(len(y))
    tr, te = p[:1437], p[1437:]
    spec = digits.with_train(learning_rate=lr, lr_final=lr / 20)  # the zoo's cosine shape
    _, records = train_float(spec, x[tr], y[tr], x[te], y[te], epochs=3, seed=0, update=update)
    assert records[-1].test_acc >= 0.85
