"""A model turned into buffers and kernel calls, run by the twin or by the emulated MCU.

`Program.build(spec)` lays out every tensor and record a training step needs (frozen
weights in flash, trainable state in SRAM) and lists the kernel calls of each phase:
forward, loss, backward, the per-sample range bookkeeping, and the per-batch update.
Arguments are addresses, so the same call list runs on the MCU (`DeviceExecutor`,
compiled kernels in Unicorn) and in numpy (`TwinExecutor`, mcusim.fqt.twin), and the two
can be compared byte for byte.  Transient tensors share an arena laid out by the memory
planner (mcusim.fqt.planner) from their lifetimes.

`Program.build(spec, sizes_only=True)` builds the same buffers, pointers and calls without
their contents: no float32 network is initialised or calibrated and every tensor is a
zero-stride placeholder of the right size and dtype, so it costs memory and time in
proportion to the number of layers, not to the model's size.  Planning, layout and the memory
report work on it (they need sizes only); it cannot be run.  mcusim.analyze checks whether a
step fits this way before it builds the real program.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mcusim.errors import EmulationFault, InternalError, ModelError
from mcusim.fqt import twin
from mcusim.fqt.quant import (
    ADD_DTYPE,
    ADD_LEFT_SHIFT,
    ADD_PARAMS_DTYPE,
    LAYER_DTYPE,
    LOSS_DTYPE,
    PAIRS_DTYPE,
    QP_DTYPE,
    RANGE_ACC,
    RANGE_DTYPE,
    RANGE_FIXED,
    RANGE_REAL,
    ROUNDING,
    SELECT_DTYPE,
    SHAPE_DTYPE,
    UPDATE_DTYPE,
    multiplier_of,
    range_record,
    record,
)
from mcusim.fqt.reference import FloatNet
from mcusim.model.schema import LayerSpec, ModelSpec

if TYPE_CHECKING:
    from mcusim.machine import CallResult

F = np.float32
HOST_BASE = 0xF000_0000  # twin-only region: export-time data the MCU never holds
PHASES = ("forward", "loss", "backward", "update")


@dataclass
class Buffer:
    """One tensor or record: its initial bytes, where it lives and what it is."""

    name: str
    layer: str
    kind: str       # act, err, weights, bias, bias_q, grad, grad_bias, stats, range, ...
    region: str     # sram | flash | host
    data: np.ndarray
    addr: int = 0
    compare: bool = True

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


@dataclass
class Op:
    """One kernel call.  Arguments: ints, or "buffer" / "buffer:field" references."""

    kernel: str
    args: tuple[int | str, ...]
    layer: str
    phase: str
    seed: str | None = None      # "buffer:seed" written before the call (stochastic rounding)
    iargs: tuple[int, ...] = ()  # resolved at bind time
    seed_addr: int = 0


@dataclass
class Program:
    spec: ModelSpec
    buffers: dict[str, Buffer] = field(default_factory=dict)
    pointers: dict[tuple[str, str], str] = field(default_factory=dict)
    ops: dict[str, list[Op]] = field(default_factory=dict)
    input_name: str = "input"
    logits: str = ""
    bound: bool = False
    arena: tuple[int, int] = (0, 0)  # [start, end) of the transient tensors once laid out
    sizes_only: bool = False  # built with placeholders: sizes and calls only, cannot run

    # ------------------------------------------------------------------ construction

    def add(self, name: str, layer: str, kind: str, region: str, data: np.ndarray,
            compare: bool = True) -> str:
        if name in self.buffers:
            raise ValueError(f"duplicate buffer {name}")
        if not self.sizes_only:
            data = np.array(data, copy=True)
        self.buffers[name] = Buffer(name, layer, kind, region, data, compare=compare)
        return name

    def op(self, group: str, kernel: str, *args: int | str, layer: str, phase: str,
           seed: str | None = None) -> None:
        self.ops.setdefault(group, []).append(Op(kernel, tuple(args), layer, phase, seed))

    @classmethod
    def build(cls, spec: ModelSpec, net: FloatNet | None = None,
              calibration: np.ndarray | None = None,
              input_range: tuple[float, float] | None = None, seed: int = 0, *,
              sizes_only: bool = False) -> Program:
        """The program of `spec`; with `sizes_only`, its buffers without contents (see the
        module docstring): for planning and memory reports, never to run."""
        return _Builder(spec, net, calibration, input_range, seed, sizes_only).program

    def check_runnable(self) -> None:
        """InternalError unless the program has contents (was not built with sizes_only)."""
        if self.sizes_only:
            raise InternalError(f"{self.spec.name}: a sizes-only program cannot be run")

    def check_device_reach(self) -> None:
        """Every buffer a device call reaches (its arguments and the pointer fields they
        hold, transitively) must be on the device: "host" buffers exist only in the twin
        (the "init" group runs there once and its results are copied to the MCU).  A
        violation is mcusim's own bug: InternalError naming the layer and the kernel."""
        from mcusim.fqt.planner import Reach

        reach = Reach(self)
        for group, ops in self.ops.items():
            if group == "init":
                continue
            for o in ops:
                for a in o.args:
                    if not isinstance(a, str):
                        continue
                    for n in sorted(reach.of(a.partition(":")[0])):
                        if self.buffers[n].region == "host":
                            raise InternalError(
                                f"kernel {o.kernel} on layer {o.layer} ({o.phase}) would read "
                                f"{n}, which only the host holds", layer=o.layer,
                                kernel=o.kernel)

    # ------------------------------------------------------------------ binding

    def layout(self, sram: tuple[int, int], flash: tuple[int, int],
               extra_sram: Sequence[tuple[int, int]] = (), *, reuse: bool = True) -> None:
        """Give every buffer an address: sram/flash = (start, end) of the free space.

        Persistent SRAM buffers come first, then the arena of transient tensors laid out
        by the memory planner (with `reuse`, tensors whose lifetimes do not overlap share
        bytes; without, each has its own).  When they do not all fit the main SRAM span,
        the arena and/or the largest persistent buffers move to `extra_sram` spans (the
        MCU's other RAM banks, e.g. an STM32's CCM), each where it fits with the most room
        left."""
        from mcusim.fqt.planner import ALIGN, TRANSIENT_KINDS, plan_memory

        plan = plan_memory(self)
        if not reuse:
            off = 0
            for name in plan.offsets:
                plan.offsets[name] = off
                off += (self.buffers[name].nbytes + ALIGN - 1) // ALIGN * ALIGN
            plan.arena_bytes = off
        self.plan = plan
        nxt = {"sram": sram[0], "flash": flash[0], "host": HOST_BASE}
        end = {"sram": sram[1], "flash": flash[1], "host": HOST_BASE + (1 << 26)}
        moved, arena_at = self._spill(sram, extra_sram, plan)
        for b in self.buffers.values():
            if b.region == "sram" and (b.name in plan.offsets or b.name in moved):
                if b.name in moved:
                    b.addr = moved[b.name]
                continue  # arena tensors are placed below
            a = (nxt[b.region] + 7) & ~7
            if a + b.nbytes > end[b.region]:
                self._too_big(b.region, sram, flash, end)
            b.addr = a
            nxt[b.region] = a + b.nbytes
        base = (nxt["sram"] + 7) & ~7 if arena_at is None else arena_at
        if arena_at is None and base + plan.arena_bytes > end["sram"]:
            self._too_big("sram", sram, flash, end)
        for name, off in plan.offsets.items():
            self.buffers[name].addr = base + off
        self.arena = (base, base + plan.arena_bytes)
        assert all(b.kind in TRANSIENT_KINDS for b in self.buffers.values()
                   if b.name in plan.offsets)
        for (bname, fld), target in self.pointers.items():
            self.buffers[bname].data[fld] = self.ref(target) if target else 0
        for group in self.ops.values():
            for o in group:
                o.iargs = tuple(a if isinstance(a, int) else self.ref(a) for a in o.args)
                o.seed_addr = self.ref(o.seed) if o.seed else 0
        self.bound = True

    def _spill(self, sram: tuple[int, int], extra: Sequence[tuple[int, int]], plan
               ) -> tuple[dict[str, int], int | None]:
        """When the main SRAM span overflows: addresses in the extra spans for the largest
        persistent buffers that fit there, and (if that is not enough) for the arena.
        ({}, None) when everything fits the main span."""
        if not extra:
            return {}, None
        persistent = [b for b in self.buffers.values()
                      if b.region == "sram" and b.name not in plan.offsets]
        need = sum((b.nbytes + 7) & ~7 for b in persistent) + plan.arena_bytes + 8
        room = sram[1] - sram[0]
        free = [list(span) for span in extra]
        moved: dict[str, int] = {}

        def take(size: int) -> int | None:
            fits = [f for f in free if ((f[0] + 7) & ~7) + size <= f[1]]
            if not fits:
                return None
            f = max(fits, key=lambda f: f[1] - f[0])
            a = (f[0] + 7) & ~7
            f[0] = a + size
            return a

        arena_at: int | None = None
        if need > room and plan.arena_bytes:
            # the arena first if it fits a bank: it frees the most contiguous main space
            big = max(persistent, key=lambda b: b.nbytes, default=None)
            if big is None or need - plan.arena_bytes <= room or \
                    ((big.nbytes + 7) & ~7) + plan.arena_bytes > room:
                arena_at = take(plan.arena_bytes)
                if arena_at is not None:
                    need -= plan.arena_bytes
        for b in sorted(persistent, key=lambda b: -b.nbytes):
            if need <= room:
                break
            size = (b.nbytes + 7) & ~7
            a = take(size)
            if a is not None:
                moved[b.name] = a
                need -= size
        return moved, arena_at

    def _too_big(self, region: str, sram: tuple[int, int], flash: tuple[int, int],
                 end: dict[str, int]) -> None:
        need = self.region_bytes(region)
        free = end[region] - (sram if region == "sram" else flash)[0]
        raise ModelError(f"{self.spec.name} does not fit: its {region} buffers need "
                         f"{need} bytes, {free} are free")

    def region_bytes(self, region: str) -> int:
        """Bytes a region's buffers take (SRAM: persistent ones + the planned arena)."""
        from mcusim.fqt.planner import plan_memory

        plan = getattr(self, "plan", None) or plan_memory(self)
        total = 0
        for b in self.buffers.values():
            if b.region == region and not (region == "sram" and b.name in plan.offsets):
                total += (b.nbytes + 7) & ~7
        return total + (plan.arena_bytes if region == "sram" else 0)

    def ref(self, target: str) -> int:
        name, _, fld = target.partition(":")
        b = self.buffers[name]
        if not fld:
            return b.addr
        return b.addr + b.data.dtype.fields[fld][1]

    def regions(self) -> list[tuple[int, int]]:
        """(base, size) spans covering all buffers for the twin's memory: buffers less than
        64 KB apart share a span (separate RAM banks get their own)."""
        spans: list[list[int]] = []
        for b in sorted(self.buffers.values(), key=lambda b: b.addr):
            hi = b.addr + max(b.nbytes, 1)
            if spans and b.addr - spans[-1][1] < 0x10000:
                spans[-1][1] = max(spans[-1][1], hi)
            else:
                spans.append([b.addr, hi])
        return [(lo, hi - lo) for lo, hi in spans]


# ---------------------------------------------------------------------- the builder

class _Builder:
    def __init__(self, spec: ModelSpec, net: FloatNet | None, calibration: np.ndarray | None,
                 input_range: tuple[float, float] | None, seed: int, sizes_only: bool = False
                 ) -> None:
        if spec.first_trainable is None:
            raise ValueError(f"{spec.name}: no trainable layer")
        if not sizes_only:  # sizes-only builds plan memory; analyze reports the rest
            spec.check_batch()
        self.spec = spec
        self.tr = spec.train
        self.rounding = ROUNDING[self.tr.rounding]
        self.dry = sizes_only
        self.net = None if sizes_only else (net or FloatNet.init(spec, seed))
        self.p = self.program = Program(spec, sizes_only=sizes_only)
        self.ft = spec.first_trainable
        self.input_range = input_range or spec.input_range
        self.need = spec.needs_error()
        self.cons = spec.consumers()
        self.derives: list[tuple[str, str, str]] = []  # (dst, src, layer): derived err ranges
        self.copies: dict[tuple[int, int], bool] = {}  # (add, input) -> error copied
        self.sums: list[int] = []  # layers whose error is the sum of their consumers'
        self.contrib: dict[tuple[int, int], tuple[str, str]] = {}  # (consumer, producer)
        self.ranges = self._calibrate(calibration, seed)
        self.act: list[str] = []      # buffer of each layer's output
        self.arange: list[str] = []   # range record of each layer's output
        self.err: dict[int, str] = {}
        self.erange: dict[int, str] = {}
        self.dynamic: set[str] = set()  # FIXED-mode ranges the MCU re-derives when training
        p = self.p
        n_in = int(np.prod(spec.input_shape))
        p.add("input", "input", "input", "sram", self._zeros(n_in, np.uint8))
        p.add("input.r", "input", "range", "sram", range_record(*self.input_range))
        self._scratch()
        for i, L in enumerate(spec.layers):
            self._forward_buffers(i, L)
        self._errors()
        self._loss()
        for i, L in enumerate(spec.layers):
            self._layer_ops(i, L)
        self._backward()
        self._bookkeeping()
        p.logits = self.act[-1]
        p.check_device_reach()

    def _zeros(self, n: int, dtype) -> np.ndarray:
        """n zeros; a zero-stride placeholder of that size when building sizes only."""
        if self.dry:
            return np.broadcast_to(np.zeros(1, dtype), (n,))
        return np.zeros(n, dtype)

    # -- calibration: float32 forward of a few inputs gives the initial activation ranges
    def _calibrate(self, calibration: np.ndarray | None, seed: int) -> list[tuple[float, float]]:
        spec = self.spec
        if self.net is None:  # sizes only: any ranges do
            return [(0.0, 1.0)] * len(spec.layers)
        if calibration is None:
            rng = np.random.default_rng(seed + 1)
            a, b = self.input_range
            calibration = rng.uniform(a, b, (8, *spec.input_shape)).astype(F)
        lo = [0.0] * len(spec.layers)
        hi = [0.0] * len(spec.layers)
        for x in calibration:
            for i, a in enumerate(self.net.forward(x)):
                lo[i] = min(lo[i], float(a.min()))
                hi[i] = max(hi[i], float(a.max()))
        for i, L in enumerate(spec.layers):  # an int8 source model's own output ranges
            given = self.net.ranges.get(L.name)
            if given is not None:
                lo[i], hi[i] = min(given[0], 0.0), max(given[1], 0.0)
        return list(zip(lo, hi, strict=True))

    def _src(self, i: int, n: int = 0) -> tuple[str, str]:
        """The buffer and range record of layer i's n-th input."""
        k = self.spec.producers(i)[n]
        return ("input", "input.r") if k < 0 else (self.act[k], self.arange[k])

    def _scratch(self) -> None:
        spec, p = self.spec, self.p
        patch = max([twin.conv2d_forward_scratch(*L.kernel, L.in_shape[2], L.out_shape[2])
                     for L in spec.layers if L.type == "conv2d"] + [4])
        # fc: in_size; conv2d (fqt_conv2d_backward_error): one input row, in_w * in_c
        acc = max([L.in_size if L.type == "fc" else
                   L.in_shape[1] * L.in_shape[2] if L.type == "conv2d" else L.in_shape[2]
                   for L in spec.layers if L.has_weights] + [1])
        p.add("scratch.patch", "", "scratch", "sram", self._zeros(patch, np.uint8),
              compare=False)
        p.add("scratch.acc", "", "scratch", "sram", self._zeros(acc, np.int32), compare=False)

    def _shape(self, L: LayerSpec) -> str:
        r = record(SHAPE_DTYPE, in_h=L.in_shape[0], in_w=L.in_shape[1], in_c=L.in_shape[2],
                   out_h=L.out_shape[0], out_w=L.out_shape[1], out_c=L.out_shape[2],
                   k_h=L.kernel[0], k_w=L.kernel[1], stride_h=L.stride[0],
                   stride_w=L.stride[1], pad_top=L.padding[0], pad_left=L.padding[2])
        region = "sram" if L.trainable else "flash"
        return self.p.add(f"{L.name}.shape", L.name, "shape", region, r)

    def _forward_buffers(self, i: int, L: LayerSpec) -> None:
        p, tr = self.p, self.tr
        prev_act, prev_range = self._src(i)
        if L.type == "flatten":
            self.act.append(prev_act)
            self.arange.append(prev_range)
            return
        self.act.append(p.add(f"{L.name}.y", L.name, "act", "sram",
                              self._zeros(L.out_size, np.uint8)))
        if L.type == "maxpool":
            self.arange.append(prev_range)
        elif L.type == "avgpool":
            src = p.buffers[prev_range].data
            r = src.copy()
            r["mode"], r["derive"] = RANGE_FIXED, 1.0
            self.arange.append(p.add(f"{L.name}.y.r", L.name, "range", "sram", r))
        else:
            lo, hi = self.ranges[i]
            h = tr.logit_headroom if i == len(self.spec.layers) - 1 and \
                self.spec.loss == "xent" else 1.0
            if L.trainable or (L.type == "add" and self.need[i]):
                r = range_record(lo * h, hi * h, alpha=tr.alpha_a, mode=RANGE_ACC,
                                 relu=L.relu, headroom=h)
            else:
                r = range_record(lo, hi)
            self.arange.append(p.add(f"{L.name}.y.r", L.name, "range", "sram", r))

    def _errors(self) -> None:
        """Error tensors (w.r.t. each layer's output) of every layer training needs them for
        (mcusim.model.schema.ModelSpec.needs_error), from the last layer down.  A consumer
        hands its producer an error (its "contribution"): a new tensor (weighted layers,
        pools), the consumer's own (flatten; add, which passes its error to both inputs
        unchanged, unless the producer masks its error in place: then a copy).  Where an
        output feeds several layers, the contributions are summed into the output's error."""
        spec, p, tr = self.spec, self.p, self.tr
        last = len(spec.layers) - 1
        Lz = spec.layers[last]
        self.err[last] = p.add(f"{Lz.name}.e", Lz.name, "err", "sram",
                               self._zeros(Lz.out_size, np.uint8))
        # softmax - one-hot always lies in [-1, 1]: a fixed range (an EMA of the observed
        # range shrinks while samples are easy and then clips a misclassified sample's
        # error); the MSE error has no such bound and is tracked
        loss_r = range_record(-1.0, 1.0, alpha=tr.alpha_e, mode=RANGE_REAL) \
            if spec.loss == "mse" else range_record(-1.0, 1.0)
        self.erange[last] = p.add("loss.e.r", "loss", "range", "sram", loss_r)
        for j in range(last - 1, -1, -1):
            if not self.need[j]:
                continue
            below = spec.layers[j]
            cons = self.cons[j]
            many = len(cons) > 1
            for c in cons:
                suffix = f"@{spec.layers[c].name}" if many else ""
                self.contrib[(c, j)] = self._contribution(c, j, suffix)
            if many:
                self.sums.append(j)
                self.err[j] = p.add(f"{below.name}.e", below.name, "err", "sram",
                                    self._zeros(below.out_size, np.uint8))
                self.erange[j] = p.add(f"{below.name}.e.r", below.name, "range", "sram",
                                       self._err_range(j))
            else:
                self.err[j], self.erange[j] = self.contrib[(cons[0], j)]

    def _err_range(self, j: int) -> np.ndarray:
        lo, hi = self.ranges[j]
        span = max(abs(lo), abs(hi), 1e-3) * 0.5  # assumption until tracked
        return range_record(-span, span, alpha=self.tr.alpha_e, mode=RANGE_ACC)

    def _masks_error(self, j: int) -> bool:
        """Whether layer j's backward changes its error tensor in place: an activation's
        mask (fqt_relu_backward, fqt_clip_backward).  The selection of partial updates does
        not: fqt_select_topk only reads the error and the layer's kernels skip the pruned
        structures, so an error tensor shared with another reader stays intact."""
        return self.spec.layers[j].relu

    def _contribution(self, c: int, j: int, suffix: str) -> tuple[str, str]:
        """The error tensor and range consumer c hands its producer j."""
        p, spec = self.p, self.spec
        C, below = spec.layers[c], spec.layers[j]
        e, er = self.err[c], self.erange[c]
        if C.type == "flatten":
            return e, er
        if C.type == "add":
            others = [k for k in spec.producers(c) if k != j and k >= 0 and self.need[k]]
            if not (self._masks_error(j) and others):  # no one else reads it: share it
                return e, er
            self.copies[(c, j)] = True
            return p.add(f"{below.name}.e{suffix or '@' + C.name}", below.name, "err", "sram",
                         self._zeros(below.out_size, np.uint8)), er
        buf = p.add(f"{below.name}.e{suffix}", below.name, "err", "sram",
                    self._zeros(below.out_size, np.uint8))
        if C.type == "maxpool":
            return buf, er
        if C.type == "avgpool":
            r = p.buffers[er].data.copy()
            r["mode"], r["derive"] = RANGE_FIXED, F(1.0) / F(C.kernel[0] * C.kernel[1])
            r["scale"] = F(r["scale"]) * F(r["derive"])
            rname = p.add(f"{below.name}.e{suffix}.r", below.name, "range", "sram", r)
            self.derives.append((rname, er, C.name))
            return buf, rname
        return buf, p.add(f"{below.name}.e{suffix}.r", below.name, "range", "sram",
                          self._err_range(j))

    def _loss(self) -> None:
        p, spec = self.p, self.spec
        last = len(spec.layers) - 1
        p.add("loss", "loss", "loss", "sram",
              record(LOSS_DTYPE, n=spec.classes, rounding=self.rounding))
        p.pointers[("loss", "logits")] = self.arange[last]
        p.pointers[("loss", "err")] = self.erange[last]
        if spec.loss == "mse":  # an autoencoder: the target is the input
            p.pointers[("loss", "target")] = "input"
            p.pointers[("loss", "target_r")] = "input.r"
        elif "target" in LOSS_DTYPE.names:
            p.pointers[("loss", "target")] = ""
            p.pointers[("loss", "target_r")] = ""

    def _qp(self, name: str, L: LayerSpec, region: str) -> str:
        return self.p.add(name, L.name, "qparams", region,
                          record(QP_DTYPE, rounding=self.rounding, act_max=255))

    def _layer_ops(self, i: int, L: LayerSpec) -> None:
        p, tr = self.p, self.tr
        x, xr = self._src(i)
        y, yr = self.act[i], self.arange[i]
        if L.type == "add":
            b, br = self._src(i, 1)
            tracked = self.need[i]
            q = self._add(f"{L.name}.qa", L.name, (xr, br, yr), L.relu, L.clip_hi, tracked)
            stats = f"{yr}:acc_min" if tracked else 0
            p.op("forward", "fqt_add_u8", x, b, y, L.out_size, q, stats, layer=L.name,
                 phase="forward", seed=self._seed(q))
            return
        if L.type == "maxpool":
            p.op("forward", "fqt_maxpool_forward", x, y, self._shape(L), layer=L.name,
                 phase="forward")
            return
        if L.type == "flatten":
            return
        region = "sram" if L.trainable else "flash"
        if L.type == "avgpool":
            # y = mean of the window: the "weight" range is a constant scale 1 / (kh kw)
            # with zero 0, and y's range is x's (derived).  When x's range changes during
            # training (tracked, or derived from a tracked one) the MCU re-derives y's range
            # and refreshes the layer's parameters, so the layer record and the constant
            # weight range it points at must live on the device, not on the host.
            tracked = self._tracked(xr)
            region = "sram" if tracked else "host"
            q = self._qp(f"{L.name}.qf", L, "sram")
            wr = p.add(f"{L.name}.w.r", L.name, "range", region,
                       record(RANGE_DTYPE, scale=F(1.0) / F(L.kernel[0] * L.kernel[1])))
            st = self._layer_struct(L, x=xr, w=wr, y=yr, fwd=q, relu=False, region=region)
            p.op("init", "fqt_layer_refresh", st, layer=L.name, phase="update")
            if tracked:
                self.dynamic.add(yr)
                p.op("refresh", "fqt_range_derive", yr, xr, layer=L.name, phase="update")
                p.op("refresh", "fqt_layer_refresh", st, layer=L.name, phase="update")
            p.op("forward", "fqt_avgpool_forward", x, y, self._shape(L), q, layer=L.name,
                 phase="forward", seed=self._seed(q))
            return
        # weighted layer
        if not L.trainable and self.spec.frozen_weights == "per-channel":
            self._per_channel_layer(L, x, xr, y, yr)
            return
        if self.net is None:  # sizes only
            lo, hi = -1.0, 1.0
        else:
            lo = float(self.net.params[L.name][0].min())
            hi = float(self.net.params[L.name][0].max())
        wr_rec = range_record(lo, hi, alpha=tr.alpha_w, mode=RANGE_REAL) if L.trainable \
            else range_record(lo, hi)
        wr = p.add(f"{L.name}.w.r", L.name, "range", "sram" if L.trainable else "host", wr_rec)
        s, z = wr_rec["scale"], int(wr_rec["zero"])
        if self.net is None:
            wq, bf = self._zeros(L.n_weights, np.uint8), self._zeros(L.n_structures, F)
        else:
            wf, bf = self.net.params[L.name]
            wq = twin.quant_f(wf.reshape(-1), F(s), z, 0)
        w = p.add(f"{L.name}.w", L.name, "weights", region, wq)
        bias_q = p.add(f"{L.name}.bq", L.name, "bias_q", region,
                       self._zeros(L.n_structures, np.int32)) if L.bias else None
        bias = p.add(f"{L.name}.b", L.name, "bias", "sram" if L.trainable else "host",
                     bf if self.net is None else bf.astype(F)) if L.bias else None
        qf = self._qp(f"{L.name}.qf", L, region)
        stats = f"{yr}:acc_min" if L.trainable else 0
        if L.trainable:
            eo = self.erange[i]
            into = self.contrib.get((i, self.spec.producers(i)[0]))
            ei = into[1] if into else None
            qbe = self._qp(f"{L.name}.qbe", L, "sram") if ei else None
            qbw = self._qp(f"{L.name}.qbw", L, "sram")
            st = self._layer_struct(L, x=xr, w=wr, y=yr, e_out=eo, e_in=ei, fwd=qf,
                                    bwd_err=qbe, bwd_w=qbw, bias=bias, bias_q=bias_q,
                                    relu=L.relu, region="sram")
            p.op("init", "fqt_layer_refresh", st, layer=L.name, phase="update")
            p.op("refresh", "fqt_layer_refresh", st, layer=L.name, phase="update")
            self._train_buffers(L, w, wr, bias)
        else:
            st = self._layer_struct(L, x=xr, w=wr, y=yr, fwd=qf, bias=bias, bias_q=bias_q,
                                    relu=L.relu, region="host")
            p.op("init", "fqt_layer_refresh", st, layer=L.name, phase="update")
        self._forward_op(L, x, w, bias_q, y, qf, stats)

    def _forward_op(self, L: LayerSpec, x: str, w: str, bias_q: str | None, y: str, qf: str,
                    stats: str | int) -> None:
        p, seedq, bq = self.p, self._seed(qf), bias_q or 0
        if L.type == "fc":
            p.op("forward", "fqt_fc_forward", x, w, bq, y, L.in_size, L.out_size, qf, stats,
                 layer=L.name, phase="forward", seed=seedq)
        elif L.type == "conv2d":
            p.op("forward", "fqt_conv2d_forward", x, w, bq, y, self._shape(L), qf,
                 "scratch.patch", stats, layer=L.name, phase="forward", seed=seedq)
        else:
            p.op("forward", "fqt_dwconv2d_forward", x, w, bq, y, self._shape(L), qf, stats,
                 layer=L.name, phase="forward", seed=seedq)

    def _per_channel_layer(self, L: LayerSpec, x: str, xr: str, y: str, yr: str) -> None:
        """A frozen layer with per-output-channel weight scales (``frozen_weights =
        "per-channel"``): symmetric int8 weights per channel, stored as uint8 (+128, zero
        point 128 in every channel), and one requantization multiplier per channel
        (fqt_quant_params_t.ch_mult / ch_shift).  Its input and output ranges are fixed (it
        is frozen), so everything is derived here, once, as an int8 runtime would:
        M_c = s_x s_c / s_y (float32), bias_q[c] = round(b_c / (s_x s_c)).  The scales s_c
        are an int8 source model's own (weights file, ``<layer>.wscale``), else
        max |w_c| / 127."""
        p = self.p
        N = L.n_structures
        if self.net is None:  # sizes only
            wq = self._zeros(L.n_weights, np.uint8)
            bq = self._zeros(N, np.int32)
            mult, shift = self._zeros(N, np.int32), self._zeros(N, np.int32)
            qrec = record(QP_DTYPE, rounding=self.rounding, act_max=255)
        else:
            wf, bf = self.net.params[L.name]
            wc = wf.reshape(N, -1).astype(np.float64)
            sc = self.net.scales.get(L.name)
            if sc is None:
                amax = np.max(np.abs(wc), axis=1)
                sc = np.where(amax > 0, amax / 127.0, 1.0)
            sc = np.asarray(sc, F)
            q = np.clip(np.rint(wc / sc.astype(np.float64)[:, None]), -128, 127)
            wq = (q + 128).astype(np.uint8).reshape(-1)
            xrec, yrec = p.buffers[xr].data, p.buffers[yr].data
            s_x, z_x = F(xrec["scale"]), int(xrec["zero"])
            s_y, z_y = F(yrec["scale"]), int(yrec["zero"])
            acc_scale = (s_x * sc).astype(F)  # float32, element by element
            ms = [multiplier_of(F(a / s_y)) for a in acc_scale]
            mult = np.array([m for m, _ in ms], np.int32)
            shift = np.array([sh for _, sh in ms], np.int32)
            t = bf.astype(np.float64) / acc_scale.astype(np.float64)  # half away from 0
            t = np.trunc(t + np.where(t >= 0, 0.5, -0.5))
            bq = np.clip(t, -2147483647, 2147483647).astype(np.int32)
            act_min = z_y if L.relu else 0
            act_max = twin.clip_act_max(F(L.clip_hi), s_y, z_y) if L.relu else 255
            qrec = record(QP_DTYPE, x_zero=z_x, w_zero=128, y_zero=z_y, multiplier=mult[0],
                          shift=shift[0], act_min=act_min, act_max=act_max,
                          rounding=self.rounding)
        w = p.add(f"{L.name}.w", L.name, "weights", "flash", wq)
        bias_q = p.add(f"{L.name}.bq", L.name, "bias_q", "flash", bq) if L.bias else None
        qf = p.add(f"{L.name}.qf", L.name, "qparams", "flash", qrec)
        chm = p.add(f"{L.name}.chm", L.name, "qparams", "flash", mult)
        chs = p.add(f"{L.name}.chs", L.name, "qparams", "flash", shift)
        p.pointers[(qf, "ch_mult")] = chm
        p.pointers[(qf, "ch_shift")] = chs
        self._forward_op(L, x, w, bias_q, y, qf, 0)

    def _add(self, name: str, layer: str, ranges: tuple[str, str, str], relu: bool,
             clip_hi: float, tracked: bool) -> str:
        """The parameters of an add (fqt_add_u8) of two tensors with ranges (a, b, y), and
        the record fqt_add_refresh derives them from: once at init, and after every sample
        when the ranges are tracked."""
        p = self.p
        q = p.add(name, layer, "qparams", "sram" if tracked else "flash",
                  record(ADD_PARAMS_DTYPE, rounding=self.rounding, act_max=255,
                         left_shift=ADD_LEFT_SHIFT))
        rec = p.add(f"{name}.rec", layer, "struct", "sram" if tracked else "host",
                    record(ADD_DTYPE, relu=int(relu), clip_hi=clip_hi), compare=False)
        for fld, target in zip(("a", "b", "y", "p"), (*ranges, q), strict=True):
            p.pointers[(rec, fld)] = target
        p.op("init", "fqt_add_refresh", rec, layer=layer, phase="update")
        if tracked:
            p.op("refresh", "fqt_add_refresh", rec, layer=layer, phase="update")
        return q

    def _pruned(self, L: LayerSpec) -> bool:
        """Whether partial updates select L's structures: every trainable weighted layer
        but the output layer.  The output layer is always updated in full: with top-k of
        its few rows (k = 1 of 10 at λ = 0.1) nearly every sample would update only its
        true class's row, pushing it up and never the wrong classes down, and training
        stalls (digits-cnn: 0.28 test accuracy with only the output layer trained at
        λ = 0.1, against 0.82 in full; measured).  Its backward work is a small share
        (emnist-cnn's fc2: 0.5 % of the backward cycles at λ = 1)."""
        return self.tr.partial and L.has_weights and L.trainable and \
            self.spec.layers.index(L) != len(self.spec.layers) - 1

    def _tracked(self, rname: str) -> bool:
        """Whether a range record changes during training: tracked itself, or derived from
        a tracked one (the output range of an average pool over a tracked input)."""
        r = self.p.buffers[rname].data
        return int(r["mode"]) != RANGE_FIXED or rname in self.dynamic

    def _seed(self, buf: str) -> str | None:
        return f"{buf}:seed" if self.rounding == ROUNDING["stochastic"] else None

    def _layer_struct(self, L: LayerSpec, *, region: str, relu: bool, **ptrs: str | None) -> str:
        p = self.p
        name = p.add(f"{L.name}.layer", L.name, "struct", region,
                     record(LAYER_DTYPE, n_bias=L.n_structures if ptrs.get("bias") else 0,
                            relu=int(relu), clip_hi=L.clip_hi if relu else 0.0),
                     compare=False)
        for fld in LAYER_DTYPE.names:
            if fld in ("n_bias", "relu", "clip_hi"):
                continue
            p.pointers[(name, fld)] = ptrs.get(fld) or ""
        return name

    def _train_buffers(self, L: LayerSpec, w: str, wr: str, bias: str | None) -> None:
        p, tr = self.p, self.tr
        N, S = L.n_structures, L.struct_size
        pairs = L.type == "fc" and tr.fc_gradient == "pairs"
        if pairs:  # the batch's (input, error) pairs instead of N x S int32 accumulators
            B = tr.batch_size
            gw = None
            px = p.add(f"{L.name}.px", L.name, "grad", "sram", self._zeros(B * S, np.uint8))
            pe = p.add(f"{L.name}.pe", L.name, "grad", "sram", self._zeros(B * N, np.uint8))
            pz = p.add(f"{L.name}.pz", L.name, "grad", "sram", self._zeros(2 * B, np.int32))
            pr = p.add(f"{L.name}.pairs", L.name, "struct", "sram",
                       record(PAIRS_DTYPE, in_features=S, out_features=N, capacity=B))
            for fld, target in (("x", px), ("e", pe), ("zeros", pz)):
                p.pointers[(pr, fld)] = target
        else:
            gw = p.add(f"{L.name}.gw", L.name, "grad", "sram", self._zeros(N * S, np.int32))
        gb = p.add(f"{L.name}.gb", L.name, "grad_bias", "sram",
                   self._zeros(N, np.int32)) if bias else None
        mu = p.add(f"{L.name}.mu", L.name, "stats", "sram", self._zeros(N, F))
        sigma = p.add(f"{L.name}.sigma", L.name, "stats", "sram", self._zeros(N, F))
        bst = p.add(f"{L.name}.bstats", L.name, "stats", "sram", np.zeros(2, F))
        step = p.add(f"{L.name}.step", L.name, "scratch", "sram", self._zeros(N, F),
                     compare=False)
        u = p.add(f"{L.name}.upd", L.name, "struct", "sram",
                  record(UPDATE_DTYPE, n_struct=N, struct_size=S, lr=tr.learning_rate,
                         alpha_norm=tr.alpha_norm,
                         rounding=ROUNDING[tr.update_rounding]), compare=False)
        # the still structures' requantization table (fqt_update), one for every layer
        lut = "scratch.lut"
        if lut not in p.buffers:
            p.add(lut, "", "scratch", "sram", self._zeros(256, F), compare=False)
        for fld, target in (("w", w), ("gw", gw), ("gb", gb), ("bias", bias), ("mu", mu),
                            ("sigma", sigma), ("bias_stats", bst), ("step", step), ("wr", wr),
                            ("lut", lut), ("touched", ""),
                            ("pairs", f"{L.name}.pairs" if pairs else ""),
                            ("row", "scratch.acc" if pairs else "")):
            p.pointers[(u, fld)] = target or ""
        p.op("update", "fqt_update", u, layer=L.name, phase="update",
             seed=f"{u}:seed" if tr.update_rounding == "stochastic" else None)
        if self._pruned(L):
            mag = p.add(f"{L.name}.mag", L.name, "scratch", "sram", self._zeros(N, np.uint32),
                        compare=False)
            sel = p.add(f"{L.name}.sel", L.name, "select", "sram",
                        record(SELECT_DTYPE, n_struct=N,
                               n_pix=L.out_shape[0] * L.out_shape[1],
                               lambda_min=tr.lambda_min, lambda_max=tr.lambda_max,
                               eps_mode=1 if tr.epsilon == "loss" else 0))
            # the kept structures' indices, written by fqt_select_topk and read by the
            # layer's backward kernels of the same sample
            kept = p.add(f"{L.name}.kept", L.name, "scratch", "sram",
                         self._zeros(N, np.uint16))
            # the structures that got a gradient in this batch (fqt_update clears them)
            touched = p.add(f"{L.name}.touched", L.name, "grad", "sram",
                            self._zeros(N, np.uint8))
            p.pointers[(sel, "er")] = ""  # set in _backward (needs the error range)
            p.pointers[(sel, "mag")] = mag
            p.pointers[(sel, "kept")] = kept
            p.pointers[(sel, "touched")] = touched
            p.pointers[(u, "touched")] = touched
            p.pointers[(sel, "y")] = ""  # the ReLU mask: set in _layer_backward
            p.pointers[(sel, "yr")] = ""

    def _backward(self) -> None:
        spec, p = self.spec, self.p
        last = len(spec.layers) - 1
        loss_kernel = "fqt_mse" if spec.loss == "mse" else "fqt_softmax_xent"
        p.op("loss", loss_kernel, self.act[last], self.err[last], "loss",
             layer="loss", phase="loss", seed=self._seed("loss"))
        if spec.train.partial and spec.train.epsilon == "loss":
            # ε = this sample's loss / the largest loss seen, for every layer's selection
            p.add("loss.max", "loss", "stats", "sram", np.zeros(1, F))
            for i in spec.trainable_layers:
                if self._pruned(spec.layers[i]):
                    p.op("loss", "fqt_loss_eps", "loss", "loss.max",
                         f"{spec.layers[i].name}.sel", layer="loss", phase="loss")
        for j in range(last, -1, -1):
            if self.need[j]:
                self._layer_backward(j)

    def _layer_backward(self, j: int) -> None:
        """The backward calls of layer j: the sum of its consumers' errors (at a fork), its
        activation's mask, the errors it hands its inputs, its weight gradients."""
        spec, p = self.spec, self.p
        L = spec.layers[j]
        e, er = self.err[j], self.erange[j]
        if j in self.sums:
            parts = [self.contrib[(c, j)] for c in self.cons[j]]
            a, ar = parts[0]
            for n, (b, br) in enumerate(parts[1:], 1):
                last = n == len(parts) - 1
                y, yr = (e, er) if last else (
                    p.add(f"{L.name}.e.sum{n}", L.name, "err", "sram",
                          self._zeros(L.out_size, np.uint8)),
                    p.add(f"{L.name}.e.sum{n}.r", L.name, "range", "sram",
                          self._err_range(j)))
                q = self._add(f"{L.name}.e.qs{n}", L.name, (ar, br, yr), False, 0.0, True)
                p.op("backward", "fqt_add_u8", a, b, y, L.out_size, q, f"{yr}:acc_min",
                     layer=L.name, phase="backward", seed=self._seed(q))
                a, ar = y, yr
        ins = spec.producers(j)
        x = self._src(j)[0]
        k = ins[0]
        down = k >= 0 and self.need[k]
        into = self.contrib.get((j, k)) if down else None
        if L.type == "flatten":
            return
        if L.type == "maxpool":
            if into:
                p.op("backward", "fqt_maxpool_backward", x, e, into[0], f"{L.name}.shape",
                     into[1], layer=L.name, phase="backward")
            return
        if L.type == "avgpool":
            if into:
                p.op("backward", "fqt_avgpool_backward", e, into[0], f"{L.name}.shape",
                     into[1], layer=L.name, phase="backward")
            return
        # partial updates: fqt_select_topk ranks the structures by their error with the
        # ReLU mask applied on the fly, then fqt_relu_backward masks the kept structures only
        # and every backward kernel visits those only (the pruned structures' error bytes
        # are left as they are, never read).  A clipped activation (ReLU6) is masked in full
        # first and the selection reads the masked error.
        partial = self._pruned(L)
        relu_in_select = partial and L.relu and not L.clip_hi > 0
        if L.relu and not relu_in_select:
            if L.clip_hi > 0:
                fwd = f"{L.name}.qa" if L.type == "add" else f"{L.name}.qf"
                p.op("backward", "fqt_clip_backward", self.act[j], e, L.out_size, fwd, er,
                     layer=L.name, phase="backward")
            else:
                p.op("backward", "fqt_relu_backward", self.act[j], e, L.out_size,
                     self.arange[j], er, 0, layer=L.name, phase="backward")
        if L.type == "add":
            for k in ins:
                if k >= 0 and self.need[k] and self.copies.get((j, k)):
                    p.op("backward", "fqt_copy_u8", e, self.contrib[(j, k)][0], L.out_size,
                         layer=L.name, phase="backward")
            return
        sel: str | int = 0
        if partial:
            sel = f"{L.name}.sel"
            p.pointers[(sel, "er")] = er
            p.pointers[(sel, "y")] = self.act[j] if relu_in_select else ""
            p.pointers[(sel, "yr")] = self.arange[j] if relu_in_select else ""
            p.op("backward", "fqt_select_topk", e, sel, layer=L.name, phase="backward")
            if relu_in_select:
                p.op("backward", "fqt_relu_backward", self.act[j], e, L.out_size,
                     self.arange[j], er, sel, layer=L.name, phase="backward")
        gb = f"{L.name}.gb" if L.bias else 0
        qbw = f"{L.name}.qbw"
        if into:
            ei, eir = into
            qbe = f"{L.name}.qbe"
            seed = self._seed(qbe)
            if L.type == "fc":
                p.op("backward", "fqt_fc_backward_error", f"{L.name}.w", e, ei, L.in_size,
                     L.out_size, qbe, "scratch.acc", f"{eir}:acc_min", sel, layer=L.name,
                     phase="backward", seed=seed)
            elif L.type == "conv2d":
                p.op("backward", "fqt_conv2d_backward_error", f"{L.name}.w", e, ei,
                     f"{L.name}.shape", qbe, "scratch.acc", f"{eir}:acc_min", sel,
                     layer=L.name, phase="backward", seed=seed)
            else:
                p.op("backward", "fqt_dwconv2d_backward_error", f"{L.name}.w", e, ei,
                     f"{L.name}.shape", qbe, f"{eir}:acc_min", sel, layer=L.name,
                     phase="backward", seed=seed)
        if L.type == "fc" and spec.train.fc_gradient == "pairs":
            p.op("backward", "fqt_fc_pairs_store", x, e, f"{L.name}.pairs", qbw, gb, sel,
                 layer=L.name, phase="backward")
        elif L.type == "fc":
            p.op("backward", "fqt_fc_backward_weights", x, e, f"{L.name}.gw", gb,
                 L.in_size, L.out_size, qbw, sel, layer=L.name, phase="backward")
        elif L.type == "conv2d":
            p.op("backward", "fqt_conv2d_backward_weights", x, e, f"{L.name}.gw", gb,
                 f"{L.name}.shape", qbw, "scratch.patch", sel, layer=L.name,
                 phase="backward")
        else:
            p.op("backward", "fqt_dwconv2d_backward_weights", x, e, f"{L.name}.gw", gb,
                 f"{L.name}.shape", qbw, sel, layer=L.name, phase="backward")

    def _bookkeeping(self) -> None:
        """Per sample ("commit"): fold the observed ranges into their EMAs.  Then, with
        range_update = "sample", at once and with "batch" once per mini-batch ("refresh",
        after the update): scales and zero points from the EMAs, the ranges derived from
        others, every layer's parameters.  ("batch": all samples of a batch are quantized
        alike, and the gradients they add up share one unit.)"""
        p = self.p
        tracked = [n for n, b in p.buffers.items()
                   if b.kind == "range" and b.region == "sram"
                   and int(b.data["mode"]) in (RANGE_ACC, RANGE_REAL) and not n.endswith(".w.r")]
        observe = [Op("fqt_range_observe", (n,), p.buffers[n].layer, "update")
                   for n in tracked]
        params = [Op("fqt_range_params", (n,), p.buffers[n].layer, "update") for n in tracked]
        # error ranges derived through average pools, top down
        derive = [Op("fqt_range_derive", (dst, src), layer, "update")
                  for dst, src, layer in self.derives]
        refresh = p.ops.get("refresh", [])
        if self.tr.range_update == "batch":
            p.ops["commit"] = observe
            p.ops["refresh"] = params + derive + refresh
        else:
            p.ops["commit"] = observe + params + derive + refresh


# ---------------------------------------------------------------------- executors

class TwinExecutor:
    """Runs a bound Program's kernel calls in numpy (mcusim.fqt.twin)."""

    kind = "twin"

    def __init__(self, program: Program) -> None:
        program.check_runnable()
        self.program = program
        self.mem = twin.Memory(program.regions())
        for b in program.buffers.values():
            self.mem.write(b.addr, b.data.tobytes())

    def call(self, op: Op) -> None:
        twin.KERNELS[op.kernel](self.mem, *op.iargs)

    def write(self, addr: int, data: bytes) -> None:
        self.mem.write(addr, data)

    def read(self, addr: int, nbytes: int) -> bytes:
        return self.mem.read(addr, nbytes)


class DeviceExecutor:
    """Runs a bound Program's kernel calls as compiled Thumb code in Unicorn."""

    kind = "device"

    def __init__(self, program: Program, machine, image_bytes: dict[str, bytes]) -> None:
        program.check_runnable()
        self.program = program
        self.machine = machine
        self.instructions: dict[tuple[str, str, str], int] = {}
        self.cycles: dict[tuple[str, str, str], int] = {}
        self.unclassified: set[str] = set()
        data = machine.mcu.data
        sram = [b for b in program.buffers.values()
                if b.region == "sram" and data.contains(b.addr, max(b.nbytes, 1))]
        if sram:  # reserve the buffers in the machine's arena (stack painting stays below)
            start = machine.alloc(0)
            machine.alloc(max(b.addr + b.nbytes for b in sram) - start)
        for b in program.buffers.values():
            if b.region != "host":
                machine.write(b.addr, image_bytes[b.name])

    def execute(self, op: Op) -> CallResult:
        """Run one kernel call on the machine: its CallResult.  Every model-driven kernel
        call on the emulated MCU goes through here: the kernels, their arguments and the
        memory layout are mcusim's, so a fault is mcusim's bug, never the user's: it is
        reported as InternalError naming the kernel and the layer."""
        try:
            return self.machine.call(op.kernel, *op.iargs)
        except EmulationFault as e:
            raise InternalError(f"kernel {op.kernel} faulted on layer {op.layer} "
                                f"({op.phase}): {e}", layer=op.layer,
                                kernel=op.kernel) from e

    def call(self, op: Op) -> None:
        r = self.execute(op)
        key = (op.layer, op.phase, op.kernel)
        self.instructions[key] = self.instructions.get(key, 0) + r.instructions
        timing = self.machine.cycles(r)
        self.cycles[key] = self.cycles.get(key, 0) + timing.cycles
        self.unclassified.update(timing.unclassified)

    def write(self, addr: int, data: bytes) -> None:
        self.machine.write(addr, data)

    def read(self, addr: int, nbytes: int) -> bytes:
        return self.machine.read(addr, nbytes)


def machine_layout(machine) -> tuple[tuple[int, int], tuple[int, int], list[tuple[int, int]]]:
    """Free SRAM (the arena), free flash (after the image) and the MCU's other RAM banks
    (spans the image does not use) of a loaded Machine."""
    mcu, image = machine.mcu, machine.image
    flash = mcu.flash
    used = flash.base
    for seg in image.segments:
        if flash.contains(seg.vaddr):
            used = max(used, seg.end)
    extra = []
    for r in mcu.regions:
        if r.kind not in ("sram", "dtcm") or r.name == mcu.data_region:
            continue
        if any(r.contains(seg.vaddr) for seg in image.segments):
            continue  # holds part of the image (e.g. code): not free
        extra.append((r.base, r.end))
    return (machine.alloc(0), machine.stack_limit - 256), (used, flash.end), extra


# ---------------------------------------------------------------------- training driver

@dataclass
class SampleResult:
    loss: float
    p_label: float
    predicted: int


class Trainer:
    """Feeds samples through a bound Program on one executor: the FQT training loop.

    `train_sample` stops with TrainingDiverged (mcusim.fqt.baseline; exit 1) when a sample's
    loss is not finite: "FQT training diverged at epoch N (or after N samples): loss is not
    finite; lower the learning rate".  Set `epoch` to have the message name it."""

    def __init__(self, program: Program, executor, hook: Callable[[str], None] | None = None
                 ) -> None:
        self.p = program
        self.ex = executor
        self.samples = 0
        self.hook = hook
        self.epoch: int | None = None  # the epoch being trained (for messages), when known

    def _run(self, group: str) -> None:
        # the twin's float32 arithmetic overflows to inf (and makes NaN) as the part's does:
        # a diverged run is reported by train_sample's loss check, not by numpy warnings
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for k in range(len(self.p.ops.get(group, []))):
                self.run_op(group, k)
        if self.hook:
            self.hook(group)

    def run_op(self, group: str, k: int) -> None:
        """Call k of a group (with its stochastic-rounding seed written first)."""
        op = self.p.ops[group][k]
        if op.seed_addr:
            s = int(twin.hash32(np.uint32((self.samples * 0x10001 + k * 0x3C6EF35F
                                           + len(group)) & 0xFFFFFFFF)))
            self.ex.write(op.seed_addr, s.to_bytes(4, "little"))
        self.ex.call(op)

    def initialise(self) -> None:
        self._run("init")

    def set_input(self, xq: np.ndarray, label: int) -> None:
        p = self.p
        self.ex.write(p.buffers["input"].addr, np.ascontiguousarray(xq, np.uint8).tobytes())
        self.ex.write(p.ref("loss:label"), int(label).to_bytes(4, "little", signed=True))

    def train_sample(self, xq: np.ndarray, label: int) -> SampleResult:
        self.set_input(xq, label)
        for g in ("forward", "loss", "backward", "commit"):
            self._run(g)
        self.samples += 1
        if not math.isfinite(self.result().loss):
            from mcusim.fqt.baseline import diverged

            raise diverged("FQT training", self.epoch, self.samples)
        if self.samples % self.p.spec.train.batch_size == 0:
            self._run("update")
            self._run("refresh")
        return self.result()

    def result(self) -> SampleResult:
        raw = self.ex.read(self.p.buffers["loss"].addr, LOSS_DTYPE.itemsize)
        r = np.frombuffer(raw, LOSS_DTYPE)[0]
        return SampleResult(float(r["loss"]), float(r["p_label"]), int(r["argmax"]))
