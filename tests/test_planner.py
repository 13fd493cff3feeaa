"""The memory planner: lifetimes, in-place reuse, and that reuse changes no result."""

from __future__ import annotations

import numpy as np
import pytest
import unicorn

from mcusim.elf import ElfImage
from mcusim.fqt.network import DeviceExecutor, Program, Trainer, TwinExecutor, machine_layout
from mcusim.fqt.planner import STEP_GROUPS, plan_memory
from mcusim.machine import Machine
from mcusim.model.zoo import load_model, zoo_names
from mcusim.toolchain import Builder

SRAM = (0x2000_0000, 0x2010_0000)
FLASH = (0x0800_0000, 0x0810_0000)
STATE_KINDS = ("weights", "bias", "bias_q", "grad", "grad_bias", "stats", "range")


@pytest.mark.parametrize("model", zoo_names())
def test_no_two_live_tensors_share_bytes(model):
    p = Program.build(load_model(model))
    plan = plan_memory(p)
    items = list(plan.lifetimes.values())
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                oa, ob = plan.offsets[a.name], plan.offsets[b.name]
                assert oa + a.nbytes <= ob or ob + b.nbytes <= oa, (a, b)
    # never more than without reuse, never less than the largest set of live tensors
    peak_live = max(sum(plan.lifetimes[n].nbytes for n in plan.live_at(k))
                    for k in range(plan.calls))
    assert peak_live <= plan.arena_bytes <= plan.naive_bytes


def test_reuse_saves_memory_on_deep_models():
    plan = plan_memory(Program.build(load_model("emnist-cnn")))
    assert plan.arena_bytes < 0.8 * plan.naive_bytes


def _twin_state(spec, reuse: bool, samples: int, seed: int = 3) -> dict[str, bytes]:
    p = Program.build(spec, seed=seed)
    p.layout(SRAM, FLASH, reuse=reuse)
    ex = TwinExecutor(p)
    tr = Trainer(p, ex)
    tr.initialise()
    rng = np.random.default_rng(seed)
    n_in = int(np.prod(spec.input_shape))
    losses = []
    for _ in range(samples):
        r = tr.train_sample(rng.integers(0, 256, n_in, dtype=np.uint8),
                            int(rng.integers(0, spec.classes)))
        losses.append(r.loss)
    state = {n: ex.read(b.addr, b.nbytes) for n, b in p.buffers.items()
             if b.kind in STATE_KINDS and b.region != "host"}
    state["losses"] = np.array(losses).tobytes()
    return state


@pytest.mark.parametrize(("model", "lam", "rounding"), [
    ("digits-cnn", 1.0, "nearest"), ("digits-cnn", 0.3, "stochastic"),
    ("imu-cnn", 0.5, "floor"), ("emnist-cnn", 0.2, "nearest"), ("mbednet-tail", 1.0, "nearest")])
def test_reuse_changes_no_result(model, lam, rounding):
    """Two mini-batches with and without in-place reuse: identical weights, gradients,
    statistics, ranges and losses (a kernel that relied on zeroed memory would differ)."""
    spec = load_model(model).with_train(lambda_min=lam, rounding=rounding, batch_size=4)
    assert _twin_state(spec, True, 8) == _twin_state(spec, False, 8)


def test_kernels_write_only_live_tensors(catalog, default_toolchain):
    """On the emulated MCU, every store into the arena during call k lands in a tensor that
    is live at call k (a write hook watches the whole arena for one training step)."""
    mcu = catalog.mcu("nRF52840")
    spec = load_model("digits-cnn").with_train(batch_size=1, lambda_min=0.5)
    machine = Machine(mcu, ElfImage.open(Builder(default_toolchain).build(mcu.core,
                                                                           [mcu])[0].elf))
    p = Program.build(spec)
    p.layout(*machine_layout(machine))
    tw = TwinExecutor(p)
    Trainer(p, tw).initialise()
    image = {n: tw.read(b.addr, b.nbytes) for n, b in p.buffers.items()}
    dev = Trainer(p, DeviceExecutor(p, machine, image))
    lo, hi = p.arena
    spans = {n: (p.buffers[n].addr, p.buffers[n].addr + p.buffers[n].nbytes)
             for n in p.plan.offsets}
    bad: list[tuple] = []
    where = {"index": 0}

    def on_write(uc, access, address, size, value, user):
        live = p.plan.live_at(where["index"])
        if not any(spans[n][0] <= address and address + size <= spans[n][1] for n in live):
            bad.append((where["index"], hex(address), size))

    machine.uc.hook_add(unicorn.UC_HOOK_MEM_WRITE, on_write, begin=lo, end=hi - 1)
    machine.uc.ctl_flush_tb()
    dev.set_input(np.arange(64, dtype=np.uint8), 3)
    for g in STEP_GROUPS:
        for k in range(len(p.ops.get(g, []))):
            dev.run_op(g, k)
            where["index"] += 1
    assert where["index"] == p.plan.calls
    assert bad == []


ODD = """
[model]
name = "odd"
input = [5, 7, 3]
classes = 3

[train]
batch_size = 2

[[layer]]
name = "conv1"
type = "conv2d"
filters = 5
kernel = 3
activation = "relu"

[[layer]]
name = "pool"
type = "maxpool"
pool = 3

[[layer]]
name = "flatten"
type = "flatten"

[[layer]]
name = "fc1"
type = "fc"
units = 7
activation = "relu"

[[layer]]
name = "fc2"
type = "fc"
units = 3
"""


@pytest.mark.parametrize("reuse", [True, False])
def test_every_buffer_is_aligned_for_its_elements(reuse):
    """Odd tensor sizes (5x7x3 input: 105 bytes; 3x5x5 conv output: 75; 7 and 3 units)
    must not misalign what follows them: every buffer starts at a multiple of its element
    size and of 4 (the kernels read int32/float arrays and records by words, LDRD/LDM
    included, which fault on an unaligned address on the M4/M7: DUI 0646C 3.3.5)."""
    from mcusim.model.schema import parse_model

    p = Program.build(parse_model(ODD))
    assert any(b.nbytes % 4 for b in p.buffers.values())  # the case this is about
    p.layout(SRAM, FLASH, reuse=reuse)
    for name, b in p.buffers.items():
        if b.region == "host":
            continue
        need = max(4, b.data.dtype.itemsize if b.data.dtype.fields is None else 4)
        assert b.addr % need == 0, (name, hex(b.addr), b.nbytes)
