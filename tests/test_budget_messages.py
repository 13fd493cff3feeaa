"""Budget messages say the real reason (issue 12, item 6), and a model that does not fit
still gets its cost, labelled hypothetical: as if the RAM existed.

The big model: a wide conv (a ~222 KB activation/error arena) and an fc layer of 1664 x 56
int8 weights whose int32 gradient accumulator is 364 KB.  On the STM32H743 the arena takes
the AXI SRAM (the only bank it fits), and no bank has 364 KB left for the gradients."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from mcusim.analyze import VIRTUAL_BANK, _virtual_mcu, simulate_step
from mcusim.catalog import load_catalog
from mcusim.cli import main
from mcusim.fqt.planner import BankUse, Unplaced, unplaced_in
from mcusim.model.zoo import load_model
from mcusim.render.console import kib

BIG = """
[model]
name = "big"
description = "a wide conv, then an fc layer with a 364 KB gradient accumulator"
input = [64, 64, 3]
classes = 10

[train]
batch_size = 2

[[layer]]
name = "conv1"
type = "conv2d"
filters = 26
kernel = 3
padding = "same"
activation = "relu"

[[layer]]
name = "pool1"
type = "maxpool"
pool = 8

[[layer]]
name = "flatten"
type = "flatten"

[[layer]]
name = "fc1"
type = "fc"
units = 56
activation = "relu"

[[layer]]
name = "fc2"
type = "fc"
units = 10
"""
FC1_GRAD = 8 * 8 * 26 * 56 * 4  # fc1's weights (pooled 8x8x26 inputs x 56 units), int32
H743 = "STM32H743"
_cache: dict = {}


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "big.toml"
    path.write_text(BIG)
    return str(path)


def _report(big, mcu=H743, **kw):
    key = (mcu if isinstance(mcu, str) else id(mcu), tuple(sorted(kw.items())))
    if key not in _cache:
        _cache[key] = simulate_step(big, mcu, **kw)
    return _cache[key]


def _kb(n):
    return f"{n // 1024} KB" if n % 1024 == 0 else f"{n / 1024:.1f} KB"


def test_the_big_model_is_what_the_issue_describes(big, catalog):
    assert FC1_GRAD == 372_736  # 364.0 KB
    r = _report(big, run=False)
    assert not r.fits
    # the banks together would hold it: the problem is no single bank
    assert r.peak_ram_bytes < catalog.mcu(H743).sram_bytes


def test_message_names_the_buffer_and_every_bank(big, catalog):
    r = _report(big, run=False)
    mcu = catalog.mcu(H743)
    assert len(r.problems) == 1
    msg = r.problems[0]
    assert "fc1 gradient accumulator" in msg and "fc1.gw" in msg
    assert f"{FC1_GRAD:,} B" in msg and "fits no RAM bank" in msg
    for region in mcu.regions:
        if region.kind != "flash" and region.kind != "itcm":
            assert f"{region.name} {_kb(region.size)}" in msg, region.name
    assert "activation/error arena" in msg  # what fills the one bank big enough
    assert f"fc1 gradient accumulator ({_kb(FC1_GRAD)}) fits no RAM bank" in r.reason


def test_placement_is_consistent_and_the_buffer_fits_no_bank(big, catalog):
    r = _report(big, run=False)
    mcu = catalog.mcu(H743)
    p = r.placement
    assert [(u.name, u.kind, u.nbytes) for u in p.unplaced] == [("fc1.gw", "grad", FC1_GRAD)]
    for bank in p.banks:
        assert bank.size == mcu.region(bank.name).size
        assert bank.used + bank.free == bank.size and bank.free >= 0
        assert bank.free < FC1_GRAD  # the claim of the message
    # everything the RAM parts count is in a bank or unplaced
    reserve = sum(b.contents.get("stack reserve", 0) + b.contents.get("kernel .data/.bss", 0)
                  for b in p.banks)
    parts = sum(v for k, v in r.ram.items() if k not in ("kernel .data/.bss",) and
                not k.startswith("stack"))
    assert p.need_bytes - reserve == parts
    assert p.shortfall_bytes == 0  # in all, the banks are big enough
    assert r.ram_headroom == -FC1_GRAD < 0


def test_json_has_the_structured_placement(big, capsys):
    assert main(["step", big, "--mcu", H743, "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert not d["fits"] and d["problems"] and isinstance(d["problems"][0], str)
    assert d["unplaced"] == [{"name": "fc1.gw", "label": "fc1 gradient accumulator",
                              "kind": "grad", "bytes": FC1_GRAD, "fits_in": []}]
    banks = {b["name"]: b for b in d["placement"]}
    assert set(banks) == {"DTCM", "AXI_SRAM", "SRAM1", "SRAM2", "SRAM3", "SRAM4"}
    for b in banks.values():
        assert b["used_bytes"] + b["free_bytes"] == b["size_bytes"]
    assert d["ram_headroom_bytes"] < 0
    assert d["hypothetical"] is True and d["virtual_bank_bytes"] == FC1_GRAD
    assert d["cycles"] > 0 and d["batch"]["hypothetical"] is True
    assert d["assumptions"][0].startswith(
        f"hypothetical: as if RAM existed (+{_kb(FC1_GRAD)} virtual bank)")


def test_step_table_labels_the_cost_and_never_shows_positive_headroom(big, capsys):
    assert main(["step", big, "--mcu", H743]) == 1
    out, err = capsys.readouterr()
    flat = " ".join(out.split())
    assert "hypothetical:" in flat and "as if RAM existed" in flat
    assert f"(+{kib(FC1_GRAD)} virtual bank)" in flat
    assert "no bank holds fc1.gw" in flat and f"-{kib(FC1_GRAD)}" in flat
    assert "fc1.gw" in err and "fits no RAM bank" in err and "hypothetical" in err


def test_budget_says_why_and_exits_1(big, capsys):
    assert main(["budget", big, "--mcu", H743]) == 1
    err = capsys.readouterr().err
    assert "does not fit STM32H743" in err and "fc1 gradient accumulator" in err
    assert "hypothetical, as if RAM existed" in err
    assert main(["budget", big, "--mcu", H743, "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["unplaced"][0]["name"] == "fc1.gw" and d["hypothetical"] is True
    assert d["ram_headroom_bytes"] < 0 and d["cycles"] > 0
    assert main(["budget", "digits-cnn", "--mcu", "nRF52840"]) == 0
    capsys.readouterr()
    assert main(["budget", "digits-cnn", "--mcu", "nRF52840", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["fits"] and not d["hypothetical"] and d["unplaced"] == [] and d["reason"] == ""


def test_hypothetical_cost_is_the_cost_with_a_bigger_data_bank(big, catalog):
    """The virtual bank has the data bank's timing, so the step costs exactly what it costs
    on a copy of the MCU whose data bank is that much bigger (a different layout: there
    nothing needs a second bank but the arena; RAM has no wait states in the model)."""
    mcu = catalog.mcu(H743)
    before = copy.deepcopy(mcu)
    r = _report(big, hypothetical=True)
    assert r.hypothetical and not r.fits and r.virtual_bank_bytes == FC1_GRAD
    assert mcu == before and load_catalog().mcu(H743) == before  # the catalog is untouched
    v = r.virtual_bank
    assert v.name == VIRTUAL_BANK and v.size >= r.virtual_bank_bytes
    assert all(v.end <= x.base or v.base >= x.end for x in mcu.regions)
    regions = tuple(dataclasses.replace(x, size=x.size + v.size) if x.name == mcu.data_region
                    else x for x in mcu.regions)
    bigger = dataclasses.replace(mcu, regions=regions)
    b = simulate_step(load_model(big), bigger)
    assert b.fits and not b.hypothetical and VIRTUAL_BANK not in b.ram_by_region
    assert b.sample_cycles == r.sample_cycles and b.update_cycles == r.update_cycles
    assert b.cycles == r.cycles and b.energy_mj == pytest.approx(r.energy_mj, rel=1e-12)
    assert {(x.layer, x.phase): x.cycles for x in b.rows} == \
        {(x.layer, x.phase): x.cycles for x in r.rows}
    # without hypothetical=True nothing is simulated
    plain = _report(big)
    assert plain.cycles is None and not plain.hypothetical and plain.problems == r.problems


def test_a_model_that_fits_has_no_hypothetical_label(capsys):
    assert main(["step", "digits-cnn", "--mcu", "nRF52840"]) == 0
    out, err = capsys.readouterr()
    assert "hypothetical" not in out + err and "virtual" not in out + err
    r = simulate_step("digits-cnn", "nRF52840", hypothetical=True)
    assert r.fits and not r.hypothetical and r.virtual_bank is None and not r.unplaced
    assert r.ram_headroom == r.ram_budget - r.peak_ram_bytes > 0
    assert sum(b.used for b in r.placement.banks) <= r.ram_budget


def test_total_shortfall_gives_bytes_and_biggest_consumers(catalog):
    """emnist-cnn on the 36 KB STM32G071: short in total, not just per bank."""
    r = simulate_step("emnist-cnn", "STM32G071", hypothetical=True)
    mcu = catalog.mcu("STM32G071")
    before_stack = sum(v for k, v in r.ram.items() if not k.startswith("stack"))
    short = r.ram_shortfall
    # at least what the parts need beyond the bank, at most that plus the stack reserve
    assert before_stack - mcu.data.size <= short <= before_stack - mcu.data.size \
        + mcu.stack_bytes + 512
    msg = r.problems[0]
    assert msg.startswith(f"RAM short by {short:,} B")
    assert "gradient accumulators" in msg and "trainable weights" in msg
    assert r.hypothetical and r.cycles > 0 and not r.fits
    assert r.virtual_bank_bytes >= short and r.ram_headroom == -short


@pytest.mark.parametrize("name", [m for m in load_catalog().mcus])
def test_the_virtual_bank_overlaps_nothing(name, catalog):
    from mcusim.machine import _MAGIC_CANDIDATES

    mcu = catalog.mcu(name)
    vm = _virtual_mcu(mcu, 700_000)
    v = vm.region(VIRTUAL_BANK)
    assert v.size >= 700_000 and v.size % 4096 == 0 and v.kind == mcu.data.kind
    assert vm.regions[:-1] == mcu.regions and VIRTUAL_BANK not in {r.name for r in mcu.regions}
    for r in mcu.regions:
        assert v.end <= r.base or v.base >= r.end, r.name
    for page in _MAGIC_CANDIDATES:
        assert v.end <= page or v.base >= page + 4096


def test_unplaced_takes_the_largest_until_the_bank_fits():
    main_bank = BankUse("SRAM", "sram", 100, {"a": 60, "b": 30, "c": 20})
    other = BankUse("CCM", "sram", 50, {"x": 20})
    cands = [Unplaced("c", "c", "grad", 20), Unplaced("a", "a", "grad", 60),
             Unplaced("b", "b", "grad", 30)]
    out = unplaced_in(main_bank, cands, [other])
    assert [u.name for u in out] == ["a"] and main_bank.free == 50
    assert out[0].fits_in == ()  # 60 > 50 free in SRAM and > 30 free in CCM
    small = BankUse("SRAM", "sram", 100, {"a": 60, "b": 45})
    out = unplaced_in(small, [Unplaced("b", "b", "grad", 45), Unplaced("a", "a", "grad", 60)],
                      [BankUse("CCM", "sram", 64)])
    assert [u.name for u in out] == ["a"] and out[0].fits_in == ("CCM",)


def test_placement_of_a_fitting_banked_layout_matches_ram_by_region():
    """emnist-cnn fits the STM32F407 only with its CCM and SRAM2: the placement's other
    banks hold exactly what ram_by_region (from the buffers' addresses) says."""
    r = simulate_step("emnist-cnn", "STM32F407", run=False)
    assert r.fits and not r.unplaced and r.placement.fits
    others = [b for b in r.placement.banks[1:] if b.used]
    assert others  # something was moved out of the data bank
    for b in others:
        assert b.used == r.ram_by_region[b.name] and 0 <= b.free
    assert r.ram_headroom == r.ram_budget - r.peak_ram_bytes


@pytest.mark.parametrize("command", ["train", "verify"])
def test_train_and_verify_refuse_a_model_that_does_not_fit(big, capsys, tmp_path, command):
    """train and verify run every step on the part: a model that does not fit is one line
    naming the reason budget gives (decided from sizes, before any weight is allocated)."""
    reason = _report(big, run=False).reason
    assert reason  # the big model does not fit the H743 (see above)
    argv = [command, big, "--mcu", H743]
    if command == "train":  # a data set of the model's shape (64 x 64 x 3, 10 classes)
        import numpy as np

        rng = np.random.default_rng(0)
        data = tmp_path / "big.npz"
        np.savez(data, x_train=rng.random((20, 64, 64, 3), np.float32),
                 y_train=np.arange(20) % 10, x_test=rng.random((10, 64, 64, 3), np.float32),
                 y_test=np.arange(10))
        argv += ["-d", str(data)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert f"{command}: big does not fit {H743}" in err and reason in err
