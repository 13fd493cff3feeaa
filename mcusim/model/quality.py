"""How well the quantized (FQT) forward pass of a model follows its float32 forward pass.

`forward_quality` runs inputs through the model's FQT program in the numpy twin (the same
bytes the MCU computes, mcusim.fqt.verify checks that) and through the float reference
(mcusim.fqt.reference.FloatNet, and optionally the original file's reference runtime), and
reports per layer the SQNR (dB) of the dequantized uint8 output against the float one, the
SQNR of the logits, and top-1 agreement.  SQNR = 10 log10(sum f^2 / sum (q - f)^2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcusim.fqt.network import Program, Trainer, TwinExecutor
from mcusim.fqt.quant import RANGE_DTYPE, range_params
from mcusim.fqt.reference import FloatNet
from mcusim.model.schema import ModelSpec

F = np.float32


def sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    """10 log10(sum ref^2 / sum (approx - ref)^2) in float64; inf when equal."""
    r = np.asarray(ref, np.float64).reshape(-1)
    e = np.asarray(approx, np.float64).reshape(-1) - r
    num, den = float(np.sum(r * r)), float(np.sum(e * e))
    if den == 0.0:
        return math.inf
    if num == 0.0:
        return -math.inf
    return 10.0 * math.log10(num / den)


def quantize_input(spec: ModelSpec, x: np.ndarray) -> np.ndarray:
    """Float inputs (N, H, W, C) -> uint8 rows with the model's input range (as the MCU
    would hold them: scale and zero point of mcusim.fqt.quant.range_params)."""
    s, z = range_params(F(spec.input_range[0]), F(spec.input_range[1]))
    q = np.rint(np.asarray(x, np.float64) / float(s)) + z
    return np.clip(q, 0, 255).astype(np.uint8).reshape(len(x), -1)


@dataclass
class Quality:
    samples: int
    layer_sqnr_db: dict[str, float] = field(default_factory=dict)  # FQT vs float reference
    logits_sqnr_db: float = 0.0  # FQT logits vs the reference (runtime when given)
    top1_agreement: float | None = None  # FQT argmax == reference argmax (classifiers)
    reference: str = "float reference (numpy)"  # what the FQT logits were compared with
    float_vs_runtime_max_rel: float | None = None  # FloatNet vs runtime, max |d| / max |ref|

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return None if not math.isfinite(v) else round(v, 2)

        return {"samples": self.samples, "reference": self.reference,
                "logits_sqnr_db": num(self.logits_sqnr_db),
                "top1_agreement": self.top1_agreement,
                "float_vs_runtime_max_rel": self.float_vs_runtime_max_rel,
                "layer_sqnr_db": {k: num(v) for k, v in self.layer_sqnr_db.items()}}


def random_inputs(spec: ModelSpec, n: int, seed: int = 0) -> np.ndarray:
    """n inputs drawn uniformly over the model's input range (float32, N x H x W x C)."""
    lo, hi = spec.input_range
    return np.random.default_rng(seed).uniform(lo, hi, (n, *spec.input_shape)).astype(F)


def forward_quality(spec: ModelSpec, xs: np.ndarray,
                    runtime: Callable[[np.ndarray], np.ndarray] | None = None,
                    calibration: np.ndarray | None = None) -> Quality:
    """FQT forward vs float forward on inputs xs (N x H x W x C float32).  `runtime` (x ->
    logits) is the original file's reference runtime: when given, the logits and top-1 are
    compared with it, else with FloatNet."""
    net = FloatNet.init(spec)
    program = Program.build(spec, net=net, calibration=calibration)
    program.layout((0x2000_0000, 0x2000_0000 + (1 << 28)), (0x0800_0000, 0x1000_0000),
                   reuse=False)  # every tensor its own bytes: all readable after forward
    ex = TwinExecutor(program)
    tr = Trainer(program, ex)
    tr.initialise()
    xq = quantize_input(spec, xs)
    outs = {L.name: (program.buffers[f"{L.name}.y"], program.buffers[f"{L.name}.y.r"])
            for L in spec.layers if f"{L.name}.y.r" in program.buffers}
    num = {k: 0.0 for k in outs}
    den = {k: 0.0 for k in outs}
    q_logits, ref_logits = [], []
    rel = 0.0
    for x, q in zip(xs, xq, strict=True):
        tr.set_input(q, 0)
        tr._run("forward")
        acts = net.forward(x)
        by_name = {L.name: a for L, a in zip(spec.layers, acts, strict=True)}
        deq = {}
        for name, (buf, rb) in outs.items():
            r = np.frombuffer(ex.read(rb.addr, RANGE_DTYPE.itemsize), RANGE_DTYPE)[0]
            v = np.frombuffer(ex.read(buf.addr, buf.nbytes), np.uint8).astype(np.float64)
            deq[name] = float(r["scale"]) * (v - int(r["zero"]))
            f = by_name[name].astype(np.float64).reshape(-1)
            num[name] += float(np.sum(f * f))
            den[name] += float(np.sum((deq[name] - f) ** 2))
        last = spec.layers[-1].name
        q_logits.append(deq[last])
        if runtime is not None:
            ref = np.asarray(runtime(x), np.float64).reshape(-1)
            fl = acts[-1].astype(np.float64).reshape(-1)
            rel = max(rel, float(np.max(np.abs(fl - ref)) / max(np.max(np.abs(ref)), 1e-12)))
        else:
            ref = acts[-1].astype(np.float64).reshape(-1)
        ref_logits.append(ref)
    layer = {k: (math.inf if den[k] == 0 else
                 (-math.inf if num[k] == 0 else 10 * math.log10(num[k] / den[k])))
             for k in outs}
    ql, rl = np.array(q_logits), np.array(ref_logits)
    agree = float(np.mean(np.argmax(ql, axis=1) == np.argmax(rl, axis=1))) \
        if spec.loss == "xent" else None
    return Quality(len(xs), layer, sqnr_db(rl, ql), agree,
                   "reference runtime" if runtime is not None else "float reference (numpy)",
                   rel if runtime is not None else None)
