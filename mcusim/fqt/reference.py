"""Float32 reference of the same network maths (no quantization), in numpy.

Used to initialise and calibrate the quantized network (weight init, activation ranges)
and as the baseline for accuracy comparisons: forward, softmax cross-entropy, backward
(errors and gradients) and SGD with the same per-structure gradient standardization.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mcusim.fqt.model import LayerSpec, ModelSpec

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

    @classmethod
    def init(cls, spec: ModelSpec, seed: int = 0) -> FloatNet:
        """He-uniform weights, zero biases (deterministic in `seed`)."""
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
        acts = []
        a = x.astype(F).reshape(self.spec.input_shape)
        for L in self.spec.layers:
            a = self._layer(L, a)
            acts.append(a)
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
        if L.relu:
            y = np.maximum(y, 0)
        return y.astype(F)

    def loss_and_error(self, logits: np.ndarray, label: int) -> tuple[float, np.ndarray]:
        z = logits.reshape(-1).astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        g = p.copy()
        g[label] -= 1.0
        return float(-np.log(max(p[label], 1e-38))), g.astype(F)

    def backward(self, x: np.ndarray, acts: list[np.ndarray], label: int
                 ) -> tuple[float, list[np.ndarray | None], dict[str, tuple[np.ndarray, ...]]]:
        """Loss, the error at every layer output, and the gradients of trainable layers."""
        spec = self.spec
        ft = spec.first_trainable
        loss, e = self.loss_and_error(acts[-1], label)
        errs: list[np.ndarray | None] = [None] * len(spec.layers)
        grads: dict[str, tuple[np.ndarray, ...]] = {}
        e = e.reshape(acts[-1].shape)
        for j in range(len(spec.layers) - 1, -1, -1):
            if ft is None or j < ft:
                break
            L = spec.layers[j]
            errs[j] = e
            a_in = acts[j - 1] if j else x.astype(F).reshape(spec.input_shape)
            if L.has_weights and L.relu:
                e = e * (acts[j] > 0)
            if L.type == "flatten":
                e = e.reshape(a_in.shape)
            elif L.type == "maxpool":
                win = _windows(a_in, L)
                kh, kw = L.kernel
                oh, ow, c = L.out_shape
                first = win.reshape(oh, ow, kh * kw, c).argmax(axis=2)
                ei = np.zeros_like(a_in)
                gh, gw, gc = np.meshgrid(np.arange(oh), np.arange(ow), np.arange(c), indexing="ij")
                ei[gh * L.stride[0] + first // kw, gw * L.stride[1] + first % kw, gc] = e
                e = ei
            elif L.type == "avgpool":
                ei = np.zeros_like(a_in)
                kh, kw = L.kernel
                oh, ow, _ = L.out_shape
                for i in range(kh):
                    for k in range(kw):
                        ei[i:i + kh * (oh - 1) + 1:kh, k:k + kw * (ow - 1) + 1:kw] = e / (kh * kw)
                e = ei
            else:
                w, _ = self.params[L.name]
                if L.type == "fc":
                    ev, xv = e.reshape(-1), a_in.reshape(-1)
                    grads[L.name] = (np.outer(ev, xv), ev.copy())
                    e = (w.T @ ev).reshape(a_in.shape)
                elif L.type == "conv2d":
                    win = _windows(_pad(a_in, L), L)
                    oh, ow, co = L.out_shape
                    P = win.reshape(oh * ow, -1)
                    E = e.reshape(oh * ow, co)
                    grads[L.name] = ((E.T @ P).reshape(w.shape), E.sum(axis=0))
                    cols = (E @ w.reshape(co, -1)).reshape(oh, ow, *L.kernel, a_in.shape[2])
                    e = _scatter(cols, L, a_in.shape)
                else:
                    win = _windows(_pad(a_in, L), L)
                    grads[L.name] = (np.einsum("hwc,hwijc->cij", e, win), e.sum(axis=(0, 1)))
                    cols = np.einsum("hwc,cij->hwijc", e, w)
                    e = _scatter(cols, L, a_in.shape)
            e = e.astype(F)
        return loss, errs, grads


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
