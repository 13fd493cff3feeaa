"""`mcusim results` and `mcusim compare` on a real results database (tests/results_support:
real points run in this process, stored in a DuckDB file).  Expected values are computed
here from the stored rows (Store.query), never taken from the commands' output."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mcusim.cli import main
from mcusim.results.store import COLUMNS, open_store

from .results_support import duckdb, slower

# the shared fixture (session scope: built once, read by every test here)

DOCS = Path(__file__).resolve().parents[1] / "docs"


def stored(path: Path, where: str | None = None) -> list[dict]:
    with open_store(path, read_only=True) as st:
        return st.query(where=where)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("mcusim: error: "), err
    assert "Traceback" not in err
    return lines[0]


def write_json_set(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps({"store": "test", "points": rows}, default=str))
    return path


def fitting_with_cycles(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["fits"] and r["cycles"] is not None]


# ----------------------------------------------------------------------------- the schema


def test_docs_name_every_column():
    if not DOCS.is_dir():
        pytest.skip("docs/ is not here (the wheel stage runs a copy of tests/ outside the "
                    "checkout)")
    text = (DOCS / "results.md").read_text()
    missing = [name for name, _, _ in COLUMNS if f"`{name}`" not in text]
    assert not missing, f"docs/results.md does not document {missing}"
    for name, typ, _ in COLUMNS:  # the table row names the type too
        assert f"| `{name}` | {typ} |" in text, name


# ----------------------------------------------------------------------------- results


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export_round_trips(results_store, tmp_path, capsys, fmt):
    rows = stored(results_store)
    out = tmp_path / f"points.{fmt}"
    code, stdout, err = run(capsys, "results", "--store", results_store, "--format", fmt,
                            "-o", out)
    assert code == 0, err
    assert stdout == ""  # the data went to the file
    if fmt == "json":
        back = json.loads(out.read_text())["points"]
        assert all("detail" not in r and isinstance(r["inputs"], dict) for r in back)
    else:
        reader = "read_csv_auto" if fmt == "csv" else "read_parquet"
        cur = duckdb.connect().execute(f"SELECT * FROM {reader}(?)", [str(out)])
        cols = [d[0] for d in cur.description]
        back = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        assert "detail" not in cols
    assert len(back) == len(rows)
    assert {r["key"]: r["cycles"] for r in back} == {r["key"]: r["cycles"] for r in rows}


def test_csv_and_json_on_stdout(results_store, capsys):
    rows = stored(results_store)
    code, out, _ = run(capsys, "results", "--store", results_store, "--format", "csv")
    assert code == 0
    back = list(csv.DictReader(io.StringIO(out)))
    assert sorted(r["key"] for r in back) == sorted(r["key"] for r in rows)
    code, out, _ = run(capsys, "results", "--store", results_store, "--json", "--detail")
    assert code == 0
    data = json.loads(out)
    assert data["store"] == str(results_store.absolute())
    assert len(data["points"]) == len(rows)
    assert all(isinstance(r["detail"], dict) for r in data["points"])


def test_markdown_has_a_header_and_a_line_per_point(results_store, tmp_path, capsys):
    rows = stored(results_store)
    code, out, _ = run(capsys, "results", "--store", results_store, "--format", "markdown")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2 + len(rows)
    assert all(line.startswith("| ") and line.endswith(" |") for line in (lines[0],
                                                                         *lines[2:]))
    assert set(lines[1]) <= set("|-:")
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:4] == ["key", "kind", "model", "mcu"]
    for r in rows:  # each point on its own line, by its shortened key
        assert sum(r["key"][:12] in line for line in lines[2:]) == 1
    out_file = tmp_path / "points.md"
    code, out2, _ = run(capsys, "results", "--store", results_store, "--format",
                        "markdown", "-o", out_file)
    assert code == 0 and out2 == "" and out_file.read_text() == out


def test_table_fits_80_columns(results_store):
    from rich.cells import cell_len

    rows = stored(results_store)
    env = {**os.environ, "COLUMNS": "80"}
    p = subprocess.run([sys.executable, "-m", "mcusim", "results", "--store",
                        str(results_store)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    widest = max(cell_len(line) for line in p.stdout.splitlines())
    assert widest <= 80, p.stdout
    for r in rows:
        assert r["key"][:12] in p.stdout
    counts = Counter(r["status"] for r in rows)
    for status, n in counts.items():  # the footer counts by status
        assert f"{n} {status}" in p.stdout
    assert f"{len(rows)} points" in p.stdout
    assert any(r["test_acc"] is not None for r in rows) and "test acc" in p.stdout


@pytest.mark.parametrize("where,keep", [
    ("mcu = 'RP2040' AND fits", lambda r: r["mcu"] == "RP2040" and r["fits"]),
    ("kind = 'step' AND lambda_min < 0.5", lambda r: r["kind"] == "step"
     and r["lambda_min"] < 0.5),
    ("status <> 'ok'", lambda r: r["status"] != "ok"),
])
def test_where_selects(results_store, capsys, where, keep):
    expected = sorted(r["key"] for r in stored(results_store) if keep(r))
    assert expected  # the condition selects something, and not everything
    code, out, _ = run(capsys, "results", "--store", results_store, "--where", where,
                       "--json")
    assert code == 0
    assert sorted(r["key"] for r in json.loads(out)["points"]) == expected


def test_limit_keeps_the_newest(results_store, capsys):
    rows = stored(results_store)
    code, out, _ = run(capsys, "results", "--store", results_store, "--limit", "3",
                       "--json")
    assert code == 0
    got = json.loads(out)["points"]
    assert len(got) == 3
    kept = {r["key"] for r in got}
    oldest_kept = min(r["created_at"] for r in got)
    assert all(r["created_at"] <= oldest_kept for r in rows if r["key"] not in kept)


@pytest.mark.parametrize("argv,says", [
    (["--where", "no_such_column = 1"], "--where"),
    (["--where", "mcu = "], "--where"),
    (["--columns", "key,nope"], "nope"),
    (["--format", "parquet"], "-o FILE"),
    (["--format", "csv", "--json"], "--format"),
])
def test_bad_input_is_one_line(results_store, capsys, argv, says):
    code, out, err = run(capsys, "results", "--store", results_store, *argv)
    assert code == 2
    assert out == ""
    assert says in one_line_error(err)


def test_missing_or_foreign_store_is_one_line(tmp_path, capsys):
    missing = tmp_path / "none.duckdb"
    code, _, err = run(capsys, "results", "--store", missing)
    assert code == 2
    line = one_line_error(err)
    assert str(missing) in line and "creates it" in line
    assert not missing.exists()  # reading never creates the file
    foreign = tmp_path / "notes.duckdb"
    foreign.write_text("not a database\n")
    code, _, err = run(capsys, "results", "--store", foreign)
    assert code == 2
    assert str(foreign) in one_line_error(err)


# ----------------------------------------------------------------------------- compare


def compare_json(capsys, *argv) -> tuple[int, dict, str]:
    code, out, err = run(capsys, "compare", *argv, "--json")
    return code, json.loads(out), err


def test_a_store_against_itself_moves_nothing(results_store, capsys):
    rows = stored(results_store)
    code, data, err = compare_json(capsys, results_store, results_store, "--fail-if",
                                   "cycles>+0%", "--fail-if", "fits", "--fail-if",
                                   "missing")
    assert code == 0, err
    assert data["ok"] and not data["violations"]
    assert data["changed"] == [] and data["missing"] == [] and data["added"] == []
    assert data["paired"] == data["identical"] == len({r["match_key"] for r in rows})
    # figures without a value are counted as not compared, not silently skipped
    assert data["not_compared"]["cycles"] == sum(r["cycles"] is None for r in rows)
    assert data["not_compared"]["test_acc"] == sum(r["test_acc"] is None for r in rows)
    code, out, _ = run(capsys, "compare", results_store, results_store)
    assert code == 0
    assert f"{len(rows)} identical" in out


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_a_store_against_its_export_moves_nothing(results_store, tmp_path, capsys, fmt):
    out = tmp_path / f"baseline.{fmt}"
    assert run(capsys, "results", "--store", results_store, "--format", fmt, "-o", out)[0] \
        == 0
    code, data, err = compare_json(capsys, out, results_store, "--fail-if", "cycles>+0%",
                                   "--fail-if", "peak_ram_bytes>+0", "--fail-if", "fits")
    assert code == 0, err
    assert data["changed"] == [] and data["paired"] == len(stored(results_store))


def slowed_set(rows: list[dict]) -> tuple[list[dict], set[str]]:
    """Rows with the fitting steps on RP2040 and nRF52840 at λ=1 made 5 % slower."""
    chosen = {r["match_key"] for r in fitting_with_cycles(rows)
              if r["kind"] == "step" and r["lambda_min"] == 1.0
              and r["mcu"] in ("RP2040", "nRF52840")}
    assert 2 <= len(chosen) < len(rows)
    return [slower(r, 1.05) if r["match_key"] in chosen else r for r in rows], chosen


@pytest.fixture(params=["json", "store"])
def regression(request, results_store, tmp_path) -> tuple[Path, set[str], list[dict]]:
    """NEW: the sample points with some 5 % slower, as a JSON export or a second store."""
    rows = stored(results_store)
    new_rows, chosen = slowed_set(rows)
    if request.param == "json":
        return write_json_set(tmp_path / "new.json", new_rows), chosen, rows
    path = tmp_path / "new.duckdb"
    shutil.copy(results_store, path)
    with open_store(path) as st:
        for r in new_rows:
            if r["match_key"] in chosen:
                st.put(r)
    return path, chosen, rows


def test_a_regression_crosses_its_threshold(results_store, regression, capsys):
    new, chosen, rows = regression
    code, data, err = compare_json(capsys, results_store, new, "--fail-if", "cycles>+2%")
    assert code == 1
    assert {v["match_key"] for v in data["violations"]} == chosen
    assert len(data["violations"]) == len(chosen)
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == len(chosen)  # one line per crossing, naming the point
    for mk in chosen:
        assert sum(mk[:12] in line and "cycles>+2%" in line for line in lines) == 1
    by_mk = {r["match_key"]: r for r in rows}
    moved = [c for c in data["changed"] if c["metric"] == "cycles"]
    assert {c["match_key"] for c in moved} == chosen
    for c in moved:
        base = by_mk[c["match_key"]]["cycles"]
        assert c["base"] == base and c["new"] == pytest.approx(base * 1.05)
        assert c["relative"] == pytest.approx(0.05)
    assert {c["match_key"] for c in data["changed"]} == chosen  # nothing else moved
    assert data["identical"] == data["paired"] - len(chosen)

    code, data, _ = compare_json(capsys, results_store, new, "--fail-if", "cycles>+10%")
    assert code == 0 and data["ok"]
    # absolute thresholds, on both sides of the smallest and largest increase
    rises = [by_mk[mk]["cycles"] * 0.05 for mk in chosen]
    code, _, _ = compare_json(capsys, results_store, new, "--fail-if",
                              f"cycles>+{min(rises) * 0.99:.3f}")
    assert code == 1
    code, _, _ = compare_json(capsys, results_store, new, "--fail-if",
                              f"cycles>+{max(rises) * 1.01:.3f}")
    assert code == 0
    # NEW as BASE: the points got faster, which only a `<` rule catches
    code, data, _ = compare_json(capsys, new, results_store, "--fail-if", "cycles>+0%",
                                 "--fail-if", "latency_ms<-4%")
    assert code == 1
    assert {(v["rule"], v["match_key"]) for v in data["violations"]} == \
        {("latency_ms<-4%", mk) for mk in chosen}


def test_where_narrows_both_sides(results_store, tmp_path, capsys):
    rows = stored(results_store)
    new_rows, chosen = slowed_set(rows)
    new = write_json_set(tmp_path / "new.json", new_rows)
    on_rp2040 = {mk for mk in chosen
                 if next(r for r in rows if r["match_key"] == mk)["mcu"] == "RP2040"}
    assert on_rp2040 and on_rp2040 != chosen
    code, data, _ = compare_json(capsys, results_store, new, "--where", "mcu = 'RP2040'",
                                 "--fail-if", "cycles>+2%")
    assert code == 1
    assert {v["match_key"] for v in data["violations"]} == on_rp2040
    assert data["paired"] == sum(r["mcu"] == "RP2040" for r in rows)


def test_the_table_of_what_moved(results_store, tmp_path, capsys):
    rows = stored(results_store)
    new_rows, chosen = slowed_set(rows)
    new = write_json_set(tmp_path / "new.json", new_rows)
    p = subprocess.run([sys.executable, "-m", "mcusim", "compare", str(results_store),
                        str(new), "--fail-if", "cycles>+2%"], capture_output=True,
                       text=True, env={**os.environ, "COLUMNS": "80"}, timeout=120)
    assert p.returncode == 1, p.stderr
    assert "+5.00%" in p.stdout
    assert f"{len(rows) - len(chosen)} identical, {len(chosen)} changed" in p.stdout
    assert len([x for x in p.stderr.splitlines() if "crosses" in x]) == len(chosen)
    from rich.cells import cell_len

    assert max(cell_len(line) for line in p.stdout.splitlines()) <= 80


def test_missing_points(results_store, tmp_path, capsys):
    rows = stored(results_store)
    gone = fitting_with_cycles(rows)[0]
    new = write_json_set(tmp_path / "new.json", [r for r in rows if r is not gone])
    code, data, _ = compare_json(capsys, results_store, new)
    assert code == 0  # a missing point is listed; it fails only when asked to
    assert [m["match_key"] for m in data["missing"]] == [gone["match_key"]]
    assert data["added"] == [] and data["changed"] == []
    code, data, err = compare_json(capsys, results_store, new, "--fail-if", "missing")
    assert code == 1
    assert [(v["rule"], v["match_key"]) for v in data["violations"]] == \
        [("missing", gone["match_key"])]
    assert gone["match_key"][:12] in err
    # the other way round it is an added point, which no rule fails on
    code, data, _ = compare_json(capsys, new, results_store, "--fail-if", "missing")
    assert code == 0
    assert [a["match_key"] for a in data["added"]] == [gone["match_key"]]


def test_a_point_that_stops_fitting(results_store, tmp_path, capsys):
    rows = stored(results_store)
    broken = fitting_with_cycles(rows)[-1]
    new_rows = [dict(r, fits=False, status="does-not-fit") if r is broken else r
                for r in rows]
    new = write_json_set(tmp_path / "new.json", new_rows)
    code, data, _ = compare_json(capsys, results_store, new)
    assert code == 0
    assert [(c["match_key"], c["metric"]) for c in data["changed"]] == \
        [(broken["match_key"], "status")]
    code, data, err = compare_json(capsys, results_store, new, "--fail-if", "fits",
                                   "--fail-if", "cycles>+0%")
    assert code == 1
    assert [(v["rule"], v["match_key"]) for v in data["violations"]] == \
        [("fits", broken["match_key"])]
    assert broken["match_key"][:12] in err


@pytest.mark.parametrize("rule", ["cycles", "cycles>-2%", "cycles<+2%", "model>+2%",
                                  "cycles>+x%", "cycles=2%", "fits>1", ""])
def test_a_bad_rule_is_one_line(results_store, capsys, rule):
    code, out, err = run(capsys, "compare", results_store, results_store, "--fail-if", rule)
    assert code == 2 and out == ""
    assert "METRIC>+N%" in one_line_error(err)


def test_bad_result_sets_are_one_line(results_store, tmp_path, capsys):
    for spec, says in ((tmp_path / "none.json", "no such file"),
                       (f"{results_store}@no-such-run", "no-such-run"),
                       (tmp_path / "x.csv", "no such file")):
        code, _, err = run(capsys, "compare", spec, results_store)
        assert code == 2
        assert says in one_line_error(err)
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    code, _, err = run(capsys, "compare", bad, results_store)
    assert code == 2 and str(bad) in one_line_error(err)


def test_runs_and_latest(results_store, tmp_path, capsys):
    """A store with two runs: FILE@RUN_ID and FILE@latest pick each; the whole file pairs
    each point with its newest row."""
    rows = stored(results_store)
    run_a = rows[0]["run_id"]
    assert {r["run_id"] for r in rows} == {run_a}
    path = tmp_path / "two-runs.duckdb"
    shutil.copy(results_store, path)
    later = datetime.fromisoformat(max(r["created_at"] for r in rows)) + timedelta(hours=1)
    new_rows, chosen = slowed_set(rows)
    with open_store(path) as st:
        for r in new_rows:
            st.put(dict(r, key="b-" + r["key"], run_id="b", created_at=later))
    both = stored(path)
    assert len(both) == 2 * len(rows)

    for spec, run_id in ((f"{path}@b", "b"), (f"{path}@latest", "b"),
                         (f"{path}@{run_a}", run_a)):
        code, out, _ = run(capsys, "results", "--store", path, "--where",
                           f"run_id = '{run_id}'", "--json")
        expected = sorted(r["key"] for r in both if r["run_id"] == run_id)
        assert sorted(r["key"] for r in json.loads(out)["points"]) == expected
        code, data, _ = compare_json(capsys, spec, spec)
        assert code == 0
        assert data["base"]["run"] == run_id and data["base"]["rows"] == len(expected)

    code, data, _ = compare_json(capsys, f"{path}@{run_a}", f"{path}@latest", "--fail-if",
                                 "cycles>+2%")
    assert code == 1
    assert {v["match_key"] for v in data["violations"]} == chosen
    assert data["paired"] == len(rows)
    # the whole file: each match_key's newest row (run b) stands for it
    code, data, _ = compare_json(capsys, f"{path}@b", path)
    assert code == 0 and data["changed"] == [] and data["paired"] == len(rows)
    code, data, _ = compare_json(capsys, f"{path}@{run_a}", path)
    assert {c["match_key"] for c in data["changed"]} == chosen
