"""The results database: a real DuckDB file, created, written, re-opened and queried;
points replace themselves by key; files that are not results databases are one line."""

from __future__ import annotations

import json

import pytest

duckdb = pytest.importorskip("duckdb", reason="the results database needs mcusim[sweep]")

from mcusim.catalog import load_catalog  # noqa: E402
from mcusim.cli import main  # noqa: E402
from mcusim.errors import UsageError  # noqa: E402
from mcusim.results.store import COLUMNS, NAMES, default_store, open_store  # noqa: E402
from mcusim.sweep.points import make_point, run_point  # noqa: E402
from mcusim.toolchain import find_toolchain  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    """Two real points: a step that fits and a budget that does not."""
    cat, tc = load_catalog(), find_toolchain()
    return [run_point(make_point("step", "digits-cnn", cat.mcu("nRF52840"), tc)),
            run_point(make_point("budget", "emnist-cnn", cat.mcu("STM32L053"), tc))]


def test_create_write_reopen_query(tmp_path, rows):
    path = tmp_path / "sub" / "r.duckdb"  # the folder is created
    with open_store(path) as st:
        for r in rows:
            st.put(r)
        assert st.count() == 2
    # a new connection, read-only, as another process would open it
    with open_store(path, read_only=True) as st:
        got = {r["key"]: r for r in st.query()}
        assert st.keys() == {r["key"] for r in rows}  # ok and does-not-fit count as stored
    for r in rows:
        g = got[r["key"]]
        for name in ("status", "cycles", "peak_ram_bytes", "fits", "mcu", "lambda_min"):
            assert g[name] == r[name], name
        assert g["detail"] == json.loads(json.dumps(r["detail"]))  # JSON round trip
        assert g["inputs"]["model"] == r["model"] and g["created_at"]
    # the same columns, in order, as the schema declares
    con = duckdb.connect(str(path), read_only=True)
    cols = [c[0] for c in con.execute("DESCRIBE points").fetchall()]
    con.close()
    assert cols == list(NAMES) and len(COLUMNS) == len(NAMES)


def test_a_point_is_stored_once_per_key(tmp_path, rows):
    path = tmp_path / "r.duckdb"
    with open_store(path) as st:
        failed = {**rows[0], "status": "failed", "error": "x", "cycles": None}
        st.put(failed)
        assert st.keys() == set()  # failed points are not "stored": they run again
        st.put(rows[0])
        st.put(rows[0])
        assert st.count() == 1
        (r,) = st.query()
        assert r["status"] == "ok" and r["cycles"] == rows[0]["cycles"]


def test_where_selects_and_bad_where_is_one_line(tmp_path, rows):
    path = tmp_path / "r.duckdb"
    with open_store(path) as st:
        for r in rows:
            st.put(r)
        assert [r["mcu"] for r in st.query(where="fits")] == ["nRF52840"]
        assert st.count("status = 'does-not-fit'") == 1
        for bad in ("fits AND", "no_such_column = 1", "mcu = 'a"):
            with pytest.raises(UsageError) as e:
                st.query(where=bad)
            assert "\n" not in str(e.value) and str(e.value).startswith("--where")


@pytest.mark.parametrize("what", ["text", "other-table", "directory", "missing-read"])
def test_files_that_are_not_results_databases(tmp_path, what):
    path = tmp_path / "x.duckdb"
    if what == "text":
        path.write_text("hello\n")
    elif what == "other-table":
        con = duckdb.connect(str(path))
        con.execute("CREATE TABLE points (a INTEGER)")
        con.close()
    elif what == "directory":
        path.mkdir()
    with pytest.raises(UsageError) as e:
        open_store(path, read_only=what == "missing-read")
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_default_store_location(monkeypatch, tmp_path):
    monkeypatch.delenv("MCUSIM_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store() == tmp_path / "mcusim" / "results.duckdb"
    monkeypatch.setenv("MCUSIM_STORE", str(tmp_path / "mine.duckdb"))
    assert default_store() == tmp_path / "mine.duckdb"


def test_a_bad_store_fails_before_the_work(tmp_path, capsys):
    """`step --store` on a file that is not a results database: one line at once (no
    progress line of a simulation before it)."""
    bad = tmp_path / "bad.duckdb"
    bad.write_text("not a database")
    assert main(["step", "digits-cnn", "--mcu", "RP2040", "--store", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mcusim: error: ") and err.count("\n") == 1


def test_train_store_records_accuracy_and_step_figures(tmp_path, capsys):
    store = tmp_path / "r.duckdb"
    assert main(["train", "digits-cnn", "--mcu", "nRF52840", "-d", "digits", "--epochs", "1",
                 "--no-baseline", "--store", str(store), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    with open_store(store, read_only=True) as st:
        (row,) = st.query()
    assert row["kind"] == "train" and row["sweep"] == "train" and row["dataset"] == "digits"
    assert row["test_acc"] == rep["epochs"][-1]["test_acc"]
    assert row["epoch_device_ms"] == rep["epochs"][-1]["device_ms"]
    assert row["baseline_test_acc"] is None  # --no-baseline
    assert row["cycles"] > 0 and row["peak_ram_bytes"] > 0 and row["epochs"] == 1
