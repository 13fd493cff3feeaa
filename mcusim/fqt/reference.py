"""Float32 reference of the same network maths (no quantization), in numpy.

Used to initialise and calibrate the quantized network (weight init, activation ranges)
and as the baseline for accuracy comparisons: forward, softmax cross-entropy, backward
(errors and gradients) and SGD with the same per-structure gradient standardization.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mcusim.model.schema import LayerSpec, ModelSpec

F = np.float32


def _pad(x: np.ndarray, L: LayerSpec) -> np.ndarray:
    t, _, left, _ = L.padding
    kh, kw = L.kernel
    sh, sw = L.stride
    oh, ow = L.out_shape[0], L.out_shape[1]
    hp = max(x.shape[0] + t, (oh - 1) * sh + kh)
    wp = max(x.shape[1] + left, (ow - 1) * sw + kw)
    out = np.zeros((hp, wp, x.shape[2]), dtype=F)
    out[t:t + x.shape[0], left:left + x.shape[1]] = x
    return out


def _windows(xp: np.ndarray, L: LayerSpec) -> np.ndarray:
    kh, kw = L.kernel
    sh, sw = L.stride
    oh, ow = L.out_shape[0], L.out_shape[1]
    st = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, shape=(oh, ow, kh, kw, xp.shape[2]),
        strides=(st[0] * sh, st[1] * sw, st[0], st[1], st[2]), writeable=False)


_CHUNK = 1 << 20  # values drawn at a time: float64 draws of a large layer stay small


def _uniform(rng: np.random.Generator, lim: float, shape: tuple[int, ...]) -> np.ndarray:
    """float32 of rng.uniform(-lim, lim, shape), drawn in chunks: the same values (the
    generator draws one double per value, in order) without a float64 copy of the whole
    layer."""
    n = int(np.prod(shape))
    if n <= _CHUNK:
        return rng.uniform(-lim, lim, shape).astype(F)
    out = np.empty(n, dtype=F)
    for i in range(0, n, _CHUNK):
        out[i:i + _CHUNK] = rng.uniform(-lim, lim, min(_CHUNK, n - i))
    return out.reshape(shape)


@dataclass
class FloatNet:
    """Float32 weights (layer name -> (w, b)) of a ModelSpec, shapes as the kernels'."""

    spec: ModelSpec
    params: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # real output ranges an int8 source model fixed for some layers (mcusim.model.weights)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    # an int8 source's per-output-channel weight scales (mcusim.model.weights)
    scales: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def init(cls, spec: ModelSpec, seed: int = 0) -> FloatNet:
        """The model's pretrained weights when it names a weights file
        (mcusim.model.weights), else He-uniform weights and zero biases (deterministic in
        `seed`)."""
        if spec.weights is not None:
            from mcusim.model.weights import load_weights

            w = load_weights(spec)
            return cls(spec, w.params, w.ranges, w.scales)
        rng = np.random.default_rng(seed)
        params = {}
        for L in spec.layers:
            if not L.has_weights:
                continue
            fan_in = L.struct_size
            lim = np.sqrt(6.0 / fan_in)
            params[L.name] = (_uniform(rng, lim, L.weight_shape),
                              np.zeros(L.n_structures, dtype=F))
        return cls(spec, params)

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Activations of every layer (HWC float32) for one input (H, W, C)."""
        acts: list[np.ndarray] = []
        x0 = x.astype(F).reshape(self.spec.input_shape)
        for i, L in enumerate(self.spec.layers):
            ins = [x0 if k < 0 else acts[k] for k in self.spec.producers(i)]
            acts.append(self._layer(L, ins[0]) if L.type != "add" else
                        _activate(L, (ins[0] + ins[1]).astype(F)))
        return acts

    def _layer(self, L: LayerSpec, a: np.ndarray) -> np.ndarray:
        if L.type == "flatten":
            return a.reshape(1, 1, -1)
        if L.type in ("maxpool", "avgpool"):
            win = _windows(a, L)
            y = win.max(axis=(2, 3)) if L.type == "maxpool" else win.mean(axis=(2, 3))
            return y.astype(F)
        w, b = self.params[L.name]
        if L.type == "fc":
            y = w @ a.reshape(-1) + b
            y = y.reshape(1, 1, -1)
        elif L.type == "conv2d":
            win = _windows(_pad(a, L), L)
            oh, ow = L.out_shape[0], L.out_shape[1]
            y = (win.reshape(oh * ow, -1) @ w.reshape(w.shape[0], -1).T + b)
            y = y.reshape(oh, ow, -1)
        else:  # dwconv2d
            win = _windows(_pad(a, L), L)
            y = np.einsum("hwijc,cij->hwc", win, w) + b
        return _activate(L, y.astype(F))

    def loss_and_error(self, logits: np.ndarray, label: int,
                       target: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """The loss and its gradient w.r.t. the output: softmax cross-entropy of `label`,
        or (spec.loss == "mse") mean((y - target)^2) and 2 (y - target) / n."""
        if self.spec.loss == "mse":
            y = logits.reshape(-1).astype(np.float64)
            d = y - np.asarray(target, np.float64).reshape(-1)
            return float(np.mean(d * d)), (2.0 * d / d.size).astype(F)
        z = logits.reshape(-1).astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        g = p.copy()
        g[label] -= 1.0
        return float(-np.log(max(p[label], 1e-38))), g.astype(F)

    def backward(self, x: np.ndarray, acts: list[np.ndarray], label: int
                 ) -> tuple[float, list[np.ndarray | None], dict[str, tuple[np.ndarray, ...]]]:
        """Loss, the error at every layer output (None where training needs none), and the
        gradients of trainable layers.  Errors flow down to the lowest trainable layer; where
        an output feeds two layers (a residual fork) the errors of both are summed."""
        spec = self.spec
        x0 = x.astype(F).reshape(spec.input_shape)
        loss, e = self.loss_and_error(acts[-1], label, target=x0)
        need = spec.needs_error()
        errs: list[np.ndarray | None] = [None] * len(spec.layers)
        grads: dict[str, tuple[np.ndarray, ...]] = {}
        pending: dict[int, np.ndarray] = {len(spec.layers) - 1: e.reshape(acts[-1].shape)}
        for j in range(len(spec.layers) - 1, -1, -1):
            if not need[j] or j not in pending:
                continue
            L = spec.layers[j]
            e = pending.pop(j).astype(F)
            errs[j] = e
            ins = spec.producers(j)
            a_in = x0 if ins[0] < 0 else acts[ins[0]]
            if L.relu:
                e = e * (acts[j] > 0)
                if L.clip_hi > 0:
                    e = e * (acts[j] < L.clip_hi)
            contrib: list[np.ndarray | None] = [None] * len(ins)
            if L.type == "add":
                contrib = [e, e]
            elif L.type == "flatten":
                contrib[0] = e.reshape(a_in.shape)
            elif L.type == "maxpool":
                win = _windows(a_in, L)
                kh, kw = L.kernel
                oh, ow, c = L.out_shape
                first = win.reshape(oh, ow, kh * kw, c).argmax(axis=2)
                ei = np.zeros_like(a_in)
                gh, gw, gc = np.meshgrid(np.arange(oh), np.arange(ow), np.arange(c), indexing="ij")
                ei[gh * L.stride[0] + first // kw, gw * L.stride[1] + first % kw, gc] = e
                contrib[0] = ei
            elif L.type == "avgpool":
                ei = np.zeros_like(a_in)
                kh, kw = L.kernel
                oh, ow, _ = L.out_shape
                for i in range(kh):
                    for k in range(kw):
                        ei[i:i + kh * (oh - 1) + 1:kh, k:k + kw * (ow - 1) + 1:kw] = e / (kh * kw)
                contrib[0] = ei
            else:
                w, _ = self.params[L.name]
                if L.type == "fc":
                    ev, xv = e.reshape(-1), a_in.reshape(-1)
                    if L.trainable:
                        grads[L.name] = (np.outer(ev, xv), ev.copy())
                    contrib[0] = (w.T @ ev).reshape(a_in.shape)
                elif L.type == "conv2d":
                    win = _windows(_pad(a_in, L), L)
                    oh, ow, co = L.out_shape
                    P = win.reshape(oh * ow, -1)
                    E = e.reshape(oh * ow, co)
                    if L.trainable:
                        grads[L.name] = ((E.T @ P).reshape(w.shape), E.sum(axis=0))
                    cols = (E @ w.reshape(co, -1)).reshape(oh, ow, *L.kernel, a_in.shape[2])
                    contrib[0] = _scatter(cols, L, a_in.shape)
                else:
                    win = _windows(_pad(a_in, L), L)
                    if L.trainable:
                        grads[L.name] = (np.einsum("hwc,hwijc->cij", e, win),
                                         e.sum(axis=(0, 1)))
                    cols = np.einsum("hwc,cij->hwijc", e, w)
                    contrib[0] = _scatter(cols, L, a_in.shape)
            for k, c in zip(ins, contrib, strict=True):
                if k >= 0 and need[k] and c is not None:
                    c = c.astype(F)
                    pending[k] = c if k not in pending else (pending[k] + c).astype(F)
        return loss, errs, grads


def _activate(L: LayerSpec, y: np.ndarray) -> np.ndarray:
    """The layer's fused activation: relu, relu6 (clip_hi), or none."""
    if L.relu:
        y = np.maximum(y, F(0))
        if L.clip_hi > 0:
            y = np.minimum(y, F(L.clip_hi))
    return y.astype(F)


def _scatter(cols: np.ndarray, L: LayerSpec, in_shape: tuple[int, ...]) -> np.ndarray:
    t, _, left, _ = L.padding
    kh, kw = L.kernel
    sh, sw = L.stride
    oh, ow = cols.shape[0], cols.shape[1]
    hp = max(in_shape[0] + t, (oh - 1) * sh + kh)
    wp = max(in_shape[1] + left, (ow - 1) * sw + kw)
    acc = np.zeros((hp, wp, in_shape[2]), dtype=F)
    for i in range(kh):
        for k in range(kw):
            acc[i:i + sh * (oh - 1) + 1:sh, k:k + sw * (ow - 1) + 1:sw] += cols[:, :, i, k]
    return acc[t:t + in_shape[0], left:left + in_shape[1]]
