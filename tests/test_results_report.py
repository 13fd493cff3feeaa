"""`mcusim plot pareto` and `mcusim report` on a real results database: the Pareto front
against a brute-force dominance check, the figures' files, the HTML page (self-contained,
escaped) and the page loaded in a real headless chromium (no JS error, the sort ran, the
screenshot shows the table and the plots)."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="plots need mcusim[sweep]")

from mcusim.cli import main
from mcusim.results.pareto import mcu_fronts, pareto_front
from mcusim.results.store import open_store

HOSTILE = "<script>document.body.setAttribute('data-pwned','1')</script>\"'&x"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def brute_force_front(vecs: list[list[float]], senses: list[str]) -> set[int]:
    """i is on the front unless some j is no worse everywhere and better somewhere."""
    def no_worse(a: float, b: float, s: str) -> bool:
        return a <= b if s == "min" else a >= b

    def better(a: float, b: float, s: str) -> bool:
        return a < b if s == "min" else a > b

    front = set()
    for i, vi in enumerate(vecs):
        dominated = False
        for j, vj in enumerate(vecs):
            if j != i and all(no_worse(a, b, s) for a, b, s in zip(vj, vi, senses, strict=True)) \
                    and any(better(a, b, s) for a, b, s in zip(vj, vi, senses, strict=True)):
                dominated = True
                break
        if not dominated:
            front.add(i)
    return front


def rows_of(store: Path, where: str | None = None) -> list[dict]:
    with open_store(store, read_only=True) as st:
        return st.query(where=where)


def expected_fronts(rows: list[dict], cols: list[str], senses: list[str]) -> dict[str, set]:
    """Per MCU: keys of the brute-force front of the points that ran and fit."""
    out: dict[str, set] = {}
    for mcu in {r["mcu"] for r in rows}:
        cand = [r for r in rows if r["mcu"] == mcu and r["status"] == "ok" and r["fits"]
                and all(r[c] is not None for c in cols)]
        idx = brute_force_front([[float(r[c]) for c in cols] for r in cand], senses)
        out[mcu] = {cand[i]["key"] for i in idx}
    return out


# ------------------------------------------------------------------------------ maths

@pytest.mark.parametrize("senses", [["min", "min"], ["min", "max"],
                                    ["min", "min", "max"], ["max", "min", "min"]])
def test_front_equals_brute_force_on_random_clouds(senses):
    rng = random.Random(len(senses) * 7 + senses.count("max"))
    for trial in range(60):
        n = rng.randint(0, 40)
        levels = rng.choice([3, 6, 1000])  # few levels: many ties on an objective
        vecs = [[float(rng.randint(0, levels)) for _ in senses] for _ in range(n)]
        vecs += [list(v) for v in rng.sample(vecs, min(len(vecs), 4))]  # exact duplicates
        rng.shuffle(vecs)
        got = pareto_front(vecs, senses)
        assert set(got) == brute_force_front(vecs, senses), (trial, vecs)
        assert got == sorted(set(got))


def test_fixture_fronts_equal_brute_force(results_store):
    rows = rows_of(results_store)
    want = expected_fronts(rows, ["latency_ms", "peak_ram_bytes"], ["min", "min"])
    fronts = mcu_fronts(rows)
    assert {f.mcu for f in fronts} == {r["mcu"] for r in rows}
    for f in fronts:
        assert {r["key"] for r in f.front} == want[f.mcu], f.mcu
        assert all(r["status"] == "ok" and r["fits"] for r in f.front)
    assert any(f.front for f in fronts)

    # other axes: energy and flash
    want = expected_fronts(rows, ["energy_mj", "flash_bytes"], ["min", "min"])
    for f in mcu_fronts(rows, "energy_mj", "flash_bytes"):
        assert {r["key"] for r in f.front} == want[f.mcu]


def test_three_objective_front_on_fixture_rows(results_store):
    # every point of each MCU given a test accuracy: accuracy becomes the third objective
    rng = random.Random(3)
    rows = [{**r, "test_acc": rng.choice([0.5, 0.7, 0.9])} for r in rows_of(results_store)]
    cols = ["latency_ms", "peak_ram_bytes", "test_acc"]
    want = expected_fronts(rows, cols, ["min", "min", "max"])
    for f in mcu_fronts(rows):
        if any(r["mcu"] == f.mcu and r["status"] == "ok" and r["fits"] for r in rows):
            assert [c for c, _ in f.objectives] == cols
        assert {r["key"] for r in f.front} == want[f.mcu]
    # the real train point alone
    train = rows_of(results_store, "kind = 'train'")
    (f,) = mcu_fronts(train)
    assert f.objectives[-1] == ("test_acc", "max")
    assert [r["key"] for r in f.front] == [train[0]["key"]]


def test_not_fitting_and_failed_points_never_on_the_front(results_store):
    rows = [r for r in rows_of(results_store) if r["mcu"] == "RP2040"]
    best = min((r for r in rows if r["status"] == "ok"), key=lambda r: r["latency_ms"])
    better = {"latency_ms": best["latency_ms"] / 10, "peak_ram_bytes": 1}
    fake = [{**best, **better, "key": "nofit", "status": "does-not-fit", "fits": False},
            {**best, **better, "key": "nofit-ok", "status": "ok", "fits": False},
            {**best, **better, "key": "failed", "status": "failed", "fits": None,
             "error": "boom"}]
    (f,) = mcu_fronts(rows + fake)
    keys = {r["key"] for r in f.front}
    assert not keys & {"nofit", "nofit-ok", "failed"}
    assert keys == expected_fronts(rows, ["latency_ms", "peak_ram_bytes"],
                                   ["min", "min"])["RP2040"]
    assert f.failed == 1 and any("failed" in n for n in f.notes)


# ------------------------------------------------------------------------------ plot

def test_plot_pareto_writes_valid_png_and_svg_per_mcu(results_store, tmp_path, capsys):
    code, out, err = run(capsys, "plot", "pareto", "--store", str(results_store),
                         "-o", str(tmp_path / "fig"), "--json")
    assert code == 0, err
    data = json.loads(out)
    files = [Path(p) for p in data["files"]]
    rows = rows_of(results_store)
    mcus = {r["mcu"] for r in rows}
    assert sorted(p.name for p in files) == sorted(
        f"pareto-{m}.{ext}" for m in mcus for ext in ("png", "svg"))
    for p in files:
        assert p.parent == tmp_path / "fig" and p.is_file()
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            root = ET.parse(p).getroot()
            assert root.tag.endswith("svg")
            # the title names the MCU
            assert p.stem.removeprefix("pareto-") in p.read_text()
    want = expected_fronts(rows, ["latency_ms", "peak_ram_bytes"], ["min", "min"])
    got: dict[str, set] = {m: set() for m in mcus}
    for fp in data["front"]:
        assert {"mcu", "key", "model", "lambda_min", "rounding", "latency_ms",
                "peak_ram_bytes", "test_acc"} <= set(fp)
        got[fp["mcu"]].add(fp["key"])
    # nRF52840 mixes the train point with step points: 2 objectives there (and a note)
    assert got == want
    assert any("test_acc" in n for n in data["notes"])


@pytest.mark.parametrize("argv, words", [
    (["--x", "model"], "--x model: not a numeric column"),
    (["--y", "nonsense"], "--y nonsense: not a numeric column"),
    (["--where", "mcu = 'no such MCU'"], "no points"),
    (["--where", "no_such_column > 1"], "--where"),
])
def test_plot_pareto_bad_input_is_one_line(results_store, tmp_path, capsys, argv, words):
    code, out, err = run(capsys, "plot", "pareto", "--store", str(results_store),
                         "-o", str(tmp_path / "fig"), *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mcusim: error:") and words in lines[0]
    assert not (tmp_path / "fig").exists()


# ------------------------------------------------------------------------------ report

NETWORK_REF = re.compile(r"""(?:src|href|action|data)\s*=\s*["']?\s*(?:https?:)?//|"""
                         r"""url\(\s*["']?\s*(?:https?:)?//|@import""", re.I)


def test_report_is_self_contained_and_names_every_point(results_store, tmp_path, capsys):
    out_file = tmp_path / "r.html"
    code, out, err = run(capsys, "report", "--store", str(results_store), "-o",
                         str(out_file), "--json")
    assert code == 0, err
    data = json.loads(out)
    rows = rows_of(results_store)
    assert data == {"report": str(out_file), "points": len(rows)}
    text = out_file.read_text()
    assert not NETWORK_REF.search(text)
    assert "<link" not in text
    body = text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert body.count("<tr") == len(rows)
    assert text.count("<details") == len(rows)
    for r in rows:
        assert r["model"] in text and r["mcu"] in text
    # every MCU with a drawable point has its inline figure
    for m in {r["mcu"] for r in rows if r["latency_ms"] is not None}:
        assert f"{m}: Pareto front" in text
    assert text.count("<svg") == len({r["mcu"] for r in rows if r["latency_ms"] is not None})
    # a layer x phase row and a memory part of each ok point
    for r in rows:
        if r["status"] == "ok":
            step = r["detail"].get("step", r["detail"])
            assert step["rows"][0]["layer"] in text
            assert next(iter(step["ram"])) in text


@pytest.fixture(scope="module")
def hostile_report(results_store, tmp_path_factory) -> Path:
    """A copy of the store with a point whose model name is a script (on the front, so it
    is also a figure's label) and a failed point with a hostile error; its report."""
    d = tmp_path_factory.mktemp("hostile")
    store = d / "copy.duckdb"
    shutil.copy(results_store, store)
    with open_store(store) as st:
        base = st.query(where="status = 'ok' AND kind = 'step' AND mcu = 'RP2040'")[0]
        st.put({**base, "key": "hostile-1", "model": HOSTILE, "latency_ms": 0.001,
                "peak_ram_bytes": 1, "created_at": None})
        st.put({**base, "key": "hostile-2", "model": "failing", "status": "failed",
                "error": HOSTILE, "latency_ms": None, "peak_ram_bytes": None,
                "created_at": None})
    out = d / "hostile.html"
    assert main(["report", "--store", str(store), "-o", str(out), "--title", HOSTILE]) == 0
    return out


def test_report_escapes_user_text(hostile_report):
    text = hostile_report.read_text()
    assert "<script>document.body" not in text
    assert "&lt;script&gt;document.body" in text
    # in the table, the details, the title and the figure's front label
    assert text.count("&lt;script&gt;document.body") >= 5
    assert "failing" in text


# ------------------------------------------------------------------------------ browser

def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium, chromium-browser or google-chrome on PATH: the report's "
                "browser test needs one")


def _browse(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--timeout=10000",
           "--virtual-time-budget=5000", "--window-size=1280,2000", *extra,
           page.absolute().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _page_console(stderr: str) -> list[str]:
    """Chromium's log lines that come from the page's console (not dbus/GPU noise)."""
    return [ln for ln in stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]


def test_report_runs_in_headless_chromium(hostile_report, tmp_path):
    proc = _browse(hostile_report, tmp_path, "--dump-dom")
    dom = proc.stdout
    assert _page_console(proc.stderr) == []
    body = re.search(r"<body([^>]*)>", dom)
    assert body and 'data-ready="1"' in body.group(1), "the page's script did not finish"
    assert "data-pwned" not in body.group(1)
    errors = re.search(r'<pre id="js-errors"([^>]*)>(.*?)</pre>', dom, re.S)
    assert errors and errors.group(2).strip() == "" and "hidden" in errors.group(1)
    # the load-time sort (a dispatched click on the header) ordered rows by latency
    table = dom.split('id="points"', 1)[1].split("</table>", 1)[0]
    heads = re.findall(r"<th(?:\s[^>]*)?>(.*?)</th>", table)
    col = heads.index("latency ms")
    assert 'aria-sort="ascending"' in re.findall(r"<th(?:\s[^>]*)?>", table)[col]
    lat = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", table.split("<tbody>", 1)[1], re.S):
        cells = re.findall(r'<td[^>]*data-v="([^"]*)"', tr)
        lat.append(cells[col])
    numbers = [float(v) for v in lat if v]
    assert numbers == sorted(numbers) and len(numbers) >= 10
    assert lat[len(numbers):] == [""] * (len(lat) - len(numbers))  # unknown ones last


def test_report_screenshot_shows_table_and_plots(hostile_report, tmp_path):
    import numpy as np
    from PIL import Image  # matplotlib's own PNG reader

    shot = tmp_path / "shot.png"
    proc = _browse(hostile_report, tmp_path, f"--screenshot={shot}")
    assert _page_console(proc.stderr) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(shot) as im:
        img = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert img.shape[:2] == (2000, 1280)
    def colours(part: np.ndarray) -> int:
        flat = part.reshape(-1, 3)
        flat = flat.astype(np.int32)
        return len(np.unique(flat[:, 0] * 65536 + flat[:, 1] * 256 + flat[:, 2]))

    assert colours(img) > 100

    def where(rgb: tuple[int, int, int]) -> np.ndarray:
        return (np.abs(img - np.array(rgb, dtype=np.int16)) <= 3).all(axis=2)

    # the table's header background (#eef2f7): a band with dark header text inside
    head = where((0xEE, 0xF2, 0xF7))
    lines = np.nonzero(head.sum(axis=1) > 300)[0]  # rows of the screen wide in that colour
    assert len(lines) >= 10
    ys, xs = np.nonzero(head[lines.min():lines.max() + 1])
    ys = ys + lines.min()
    band = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    assert (band.sum(axis=2) < 200).sum() > 200  # text, not a uniform box
    # the body rows below it are not uniform either (numbers in them)
    rows = img[ys.max() + 1:ys.max() + 300, xs.min():xs.max() + 1]
    assert colours(rows) > 20
    # the front's markers and step line (#1f77b4) of the figures below the table
    front = where((0x1F, 0x77, 0xB4))
    assert front.sum() > 50
    assert np.nonzero(front)[0].min() > ys.max()
