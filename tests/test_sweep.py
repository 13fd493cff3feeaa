"""`mcusim sweep`: the grid a sweep file declares, run on real Dask clusters (the default
local cluster, and a scheduler and worker started with the `dask` commands on loopback),
stored in a real DuckDB file; interrupted and killed sweeps continue and store every point
exactly once; the single commands' `--store`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="sweeps need mcusim[sweep] (dask.distributed)")
pytest.importorskip("duckdb", reason="the results database needs mcusim[sweep] (duckdb)")

from mcusim.catalog import load_catalog
from mcusim.cli import main
from mcusim.errors import McusimError
from mcusim.results.store import open_store
from mcusim.sweep.config import load_sweep
from mcusim.sweep.points import make_point, run_point
from mcusim.toolchain import find_toolchain

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sweep.toml"
FIGURES = ("status", "fits", "cycles", "latency_ms", "energy_mj", "peak_ram_bytes",
           "flash_bytes", "stack_bytes", "update_cycles")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    """The environment of a `mcusim` subprocess: this interpreter's mcusim, a progress line
    per point."""
    env = dict(os.environ, MCUSIM_PROGRESS_INTERVAL="0", COLUMNS="120")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1]),
                                                   env.get("PYTHONPATH", "")) if p) \
        if (Path(__file__).resolve().parents[1] / "mcusim").is_dir() else \
        env.get("PYTHONPATH", "")
    return env


def _mcusim(*args: str) -> list[str]:
    return [sys.executable, "-m", "mcusim", *args]


# ----------------------------------------------------------------------------- the grid


SMALL = """
[sweep]
name = "small"
run = ["budget", "step"]
[grid]
model = ["digits-cnn"]
mcu = ["RP2040", "nRF52840"]
lambda_min = [1.0, 0.5]
"""


def test_grid_expands_to_every_combination(tmp_path):
    sweep = load_sweep(_write(tmp_path / "s.toml", SMALL))
    assert sweep.name == "small"
    assert len(sweep.points) == 2 * 2 * 2  # kinds x MCUs x λ
    combos = {(p.kind, p.mcu.name, p.inputs["lambda_min"]) for p in sweep.points}
    assert combos == {(k, m, lam) for k in ("budget", "step") for m in ("RP2040", "nRF52840")
                      for lam in (1.0, 0.5)}
    assert len({p.key for p in sweep.points}) == len(sweep.points)
    # λ_min alone raises λ_max to at least λ_min, as on the command line
    assert all(p.inputs["lambda_max"] >= p.inputs["lambda_min"] for p in sweep.points)


def test_keys_follow_the_model_file_and_match_keys_do_not(tmp_path):
    """`key` changes with the model file's content (exactly-once storage of what ran);
    `match_key` (what compare pairs by) does not."""
    zoo = Path(load_sweep(_write(tmp_path / "a.toml", SMALL)).points[0].model_ref)
    from mcusim.model.zoo import MODELS_DIR

    model = tmp_path / "net.toml"
    shutil.copy(MODELS_DIR / "digits-cnn.toml", model)
    text = SMALL.replace('"digits-cnn"', '"net.toml"')
    before = load_sweep(_write(tmp_path / "s.toml", text)).points
    again = load_sweep(tmp_path / "s.toml").points
    assert [p.key for p in before] == [p.key for p in again]  # stable
    model.write_text(model.read_text().replace("description =", "# a comment\ndescription ="))
    after = load_sweep(tmp_path / "s.toml").points
    assert all(a.key != b.key for a, b in zip(before, after, strict=True))
    assert [p.match_key for p in before] == [p.match_key for p in after]
    assert str(zoo) == "digits-cnn"  # a zoo name stays a name
    assert before[0].model_ref == str(model.absolute())  # relative to the sweep file


def test_all_mcus_at_a_clock_leave_out_the_parts_that_cannot_run_it(tmp_path):
    text = SMALL.replace('mcu = ["RP2040", "nRF52840"]', 'mcu = ["all"]\nclock = ["48MHz"]')
    sweep = load_sweep(_write(tmp_path / "s.toml", text))
    cat = load_catalog()
    runs = [m.name for m in cat.mcus.values() if m.supports_clock(48_000_000)]
    left = [m.name for m in cat.mcus.values() if not m.supports_clock(48_000_000)]
    assert sorted({p.mcu.name for p in sweep.points}) == sorted(runs)
    assert all(p.mcu.clock_hz == 48_000_000 for p in sweep.points)
    if left:
        assert all(n in sweep.notes[0] for n in left)


@pytest.mark.parametrize("text, message", [
    ("[grid]\nmcu = ['RP2040']", "[grid] needs model"),
    ("[grid]\nmodel = ['digits-cnn']", "[grid] needs mcu"),
    ("[grid]\nmodel = ['digits-cnn']\nmcu = ['RP2040']\nlamda_min = [1]", "unknown key 'lamda_min'"),
    ("[grid]\nmodel = ['digits-cnn']\nmcu = ['RP2040']\nlambda_min = ['x']", "lambda_min"),
    ("[grid]\nmodel = ['digits-cnn']\nmcu = ['RP2040']\nlambda_min = [-0.5]", "lambda"),
    ("[grid]\nmodel = ['digits-cnn']\nmcu = ['RP2040']\nrounding = ['up']", "rounding"),
    ("[grid]\nmodel = ['digits-cnn']\nmcu = ['RP9999']", "unknown MCU"),
    ("[grid]\nmodel = ['no-such-model']\nmcu = ['RP2040']", "no-such-model"),
    ("[grid]\nmodel = ['digits-cnn']\nmcu = ['RP2040']\nclock = ['900MHz']", "RP2040"),
    ("[sweep]\nrun = ['train']\n[grid]\nmodel = ['digits-cnn']\nmcu = ['RP2040']", "dataset"),
    ("[sweep]\nrun = ['fly']\n[grid]\nmodel = ['digits-cnn']\nmcu = ['RP2040']", "run"),
    ("[grid]\nmodel = ['digits-cnn']\nmcu = []", "empty list"),
    ("grid = 3", "[grid]"),
    ("[grid\n", "not valid TOML"),
])
def test_bad_sweep_files_are_one_line_errors(tmp_path, text, message):
    path = _write(tmp_path / "bad.toml", text)
    with pytest.raises(McusimError) as e:  # UsageError, or the model's ModelError
        load_sweep(path)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert "bad.toml" in str(e.value)


def test_bad_sweep_file_exit_code(tmp_path, capsys):
    path = _write(tmp_path / "bad.toml", "[grid]\nmodel = ['digits-cnn']\nmcu = ['x']")
    assert main(["sweep", str(path), "--store", str(tmp_path / "r.duckdb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mcusim: error: ") and err.count("\n") == 1
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2


# ----------------------------------------------------------------------------- running


def _in_process(points):
    """The same points run one after the other in this process: the reference."""
    return {p.key: run_point(p) for p in points}


def _stored(store: Path) -> list[dict]:
    with open_store(store, read_only=True) as st:
        return st.query()


def test_local_cluster_runs_the_grid_and_stores_what_a_single_process_computes(tmp_path):
    """The default: a local Dask cluster of processes.  Every point is stored once, with
    the figures the same points give when run in this process (the emulation is
    deterministic), the provenance and the whole report."""
    sweep_file = _write(tmp_path / "s.toml", SMALL)
    store = tmp_path / "r.duckdb"
    out = subprocess.run(_mcusim("sweep", str(sweep_file), "--store", str(store), "--json",
                                 "--workers", "2"),
                         capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["points"] and data["ran"] == 8 and data["skipped"] == 0
    assert data["workers"] == 2 and data["scheduler"] == "local"
    assert "sweep: 8/8 done" in out.stderr  # progress on stderr
    rows = _stored(store)
    points = load_sweep(sweep_file).points
    assert sorted(r["key"] for r in rows) == sorted(p.key for p in points)
    ref = _in_process(points)
    for r in rows:
        for f in FIGURES:
            assert r[f] == ref[r["key"]][f], (r["kind"], r["mcu"], f)
        assert r["detail"]["rows"] or r["kind"] == "budget"
        assert r["worker"].split(":")[-1] != str(os.getpid())
        assert r["mcusim_version"] and r["toolchain_version"] and r["cost_model_hash"]
        assert r["created_at"] and r["run_id"] == data["run_id"]
    # a second run finds everything stored: nothing runs
    again = subprocess.run(_mcusim("sweep", str(sweep_file), "--store", str(store), "--json"),
                           capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] == 8 and json.loads(again.stdout)["ran"] == 0
    assert len(_stored(store)) == 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    address: str
    cache: Path  # the worker's MCUSIM_CACHE_DIR: shares nothing with the client's
    log: Path


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A real scheduler and one worker process, started with the `dask` commands on
    loopback (one for this module's tests)."""
    tmp_path = tmp_path_factory.mktemp("dask")
    dask = shutil.which("dask") or str(Path(sys.executable).parent / "dask")
    if not Path(dask).exists():
        pytest.skip("the `dask` command (dask.distributed) is not installed")
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = _env(tmp_path)
    env["MCUSIM_CACHE_DIR"] = str(tmp_path / "worker-cache")  # shares nothing with the client
    logs = tmp_path / "dask.log"
    with logs.open("w") as log:
        sched = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port",
                                  str(port), "--no-dashboard"], stdout=log, stderr=log,
                                 env=env, start_new_session=True)
        worker = subprocess.Popen([dask, "worker", addr, "--nworkers", "1", "--nthreads", "1",
                                   "--no-dashboard", "--local-directory",
                                   str(tmp_path / "dask-worker")], stdout=log, stderr=log,
                                  env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:  # the scheduler listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, logs.read_text()
            time.sleep(0.2)
    try:
        yield Cluster(addr, tmp_path / "worker-cache", logs)
    finally:
        for p in (worker, sched):
            os.killpg(p.pid, signal.SIGTERM)
        for p in (worker, sched):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def test_external_scheduler(tmp_path, dask_cluster):
    """`--scheduler ADDRESS`: the points run on that cluster's worker (its own process and
    cache directory, images shipped from the client) and land in the client's store."""
    sweep_file = _write(tmp_path / "s.toml", SMALL.replace('run = ["budget", "step"]',
                                                           'run = ["step"]'))
    store = tmp_path / "r.duckdb"
    out = subprocess.run(_mcusim("sweep", str(sweep_file), "--store", str(store), "--json",
                                 "--scheduler", dask_cluster.address),
                         capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert out.returncode == 0, out.stderr + dask_cluster.log.read_text()[-3000:]
    data = json.loads(out.stdout)
    assert data["scheduler"] == dask_cluster.address and data["ran"] == 4
    rows = _stored(store)
    ref = _in_process(load_sweep(sweep_file).points)
    assert len(rows) == 4 and len({r["worker"] for r in rows}) == 1
    for r in rows:
        assert r["cycles"] == ref[r["key"]]["cycles"]
    # the worker got the images from the client: its own cache has them, built by nobody
    shipped = list((dask_cluster.cache / "shipped").glob("*/kernels.elf"))
    assert len(shipped) == 2  # RP2040 and nRF52840
    assert not (dask_cluster.cache / "obj").exists()


def _tiny_model_and_data(folder: Path) -> None:
    """A model with pretrained weights (tests/test_weights.py's) and a .npz data set, files
    of the client's."""
    import numpy as np

    from mcusim.model.weights import save_weights

    from .test_weights import TOML, _params

    folder.mkdir()
    (folder / "tiny.toml").write_text(TOML)
    save_weights(folder / "tiny.npz", _params(), {"conv": (0.0, 5.0)})
    rng = np.random.default_rng(5)
    np.savez(folder / "samples.npz",
             x_train=rng.uniform(size=(40, 4, 4, 2)).astype(np.float32),
             y_train=rng.integers(0, 3, 40), x_test=rng.uniform(size=(10, 4, 4, 2))
             .astype(np.float32), y_test=rng.integers(0, 3, 10))


def test_external_workers_get_the_client_files(tmp_path, dask_cluster):
    """A model with a weights file and a .npz data set: the worker runs them from bytes
    the client shipped (content-addressed in its own cache), not from the client's paths,
    and computes what this process computes from the files."""
    _tiny_model_and_data(tmp_path / "client")
    sweep_file = _write(tmp_path / "client" / "s.toml", """
[sweep]
name = "files"
[grid]
model = ["tiny.toml"]
mcu = ["nRF52840"]
lambda_min = [1.0, 0.5]
[step]
dataset = "samples.npz"
""")
    store = tmp_path / "r.duckdb"
    out = subprocess.run(_mcusim("sweep", str(sweep_file), "--store", str(store), "--json",
                                 "--scheduler", dask_cluster.address),
                         capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert out.returncode == 0, out.stderr + dask_cluster.log.read_text()[-3000:]
    rows = _stored(store)
    ref = _in_process(load_sweep(sweep_file).points)
    assert len(rows) == 2
    for r in rows:
        assert r["status"] == "ok" and r["cycles"] == ref[r["key"]]["cycles"]
        assert r["detail"]["dataset"] == "samples"  # the file keeps its name
    shipped = dask_cluster.cache / "shipped"
    for name in ("tiny.npz", "samples.npz"):
        (copy,) = shipped.glob(f"*/{name}")
        assert copy.read_bytes() == (tmp_path / "client" / name).read_bytes()
    # the weights matter: other weights give other cycles or figures (not a no-op file)
    assert ref[rows[0]["key"]]["detail"]["rows"]


def test_unreachable_scheduler_is_one_line(tmp_path):
    sweep_file = _write(tmp_path / "s.toml", SMALL)
    out = subprocess.run(_mcusim("sweep", str(sweep_file), "--store", str(tmp_path / "r.db"),
                                 "--scheduler", "tcp://no-such-host.invalid:8786"),
                         capture_output=True, text=True, env=_env(tmp_path), timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("mcusim: error: --scheduler") and out.stderr.count("\n") == 1


SLOW = """
[sweep]
name = "slow"
[grid]
model = ["emnist-cnn"]
mcu = ["nRF52840", "MIMXRT1062"]
lambda_min = [1.0, 0.5, 0.25]
"""


def _run_until(cmd: list[str], env: dict, done_at_least: int, sig: int) -> str:
    """Start a sweep, wait until its progress shows `done_at_least` points stored, send
    `sig` to it (and its cluster's processes), return its stderr."""
    # Ctrl-C as at a terminal: a test run in the background (`nohup`, CI) has SIGINT
    # ignored, and a child would inherit that
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    deadline = time.monotonic() + 300
    assert p.stderr is not None
    for line in p.stderr:
        lines.append(line)
        if "done" in line and int(line.split("sweep: ")[1].split("/")[0]) >= done_at_least:
            break
        assert time.monotonic() < deadline, "".join(lines)
    if sig == signal.SIGINT:
        p.send_signal(sig)  # Ctrl-C reaches the client; it stops its cluster
        rest = p.communicate(timeout=120)[1]
        assert p.returncode == 130, rest
    else:
        os.killpg(p.pid, sig)  # the client and its workers die at once
        rest = p.communicate(timeout=120)[1]
    return "".join(lines) + rest


def test_interrupted_and_killed_sweeps_store_every_point_exactly_once(tmp_path):
    sweep_file = _write(tmp_path / "s.toml", SLOW)
    store = tmp_path / "r.duckdb"
    cmd = _mcusim("sweep", str(sweep_file), "--store", str(store), "--workers", "1")
    env = _env(tmp_path)
    err = _run_until(cmd, env, 1, signal.SIGINT)
    assert "interrupted" in err and "run the same command again" in err
    first = len(_stored(store))
    assert 1 <= first < 6
    _run_until(cmd, env, 1, signal.SIGKILL)
    second = len(_stored(store))
    assert second > first
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    rows = _stored(store)
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 6
    assert sorted(keys) == sorted(p.key for p in load_sweep(sweep_file).points)
    assert data["skipped"] == second and data["ran"] == 6 - second
    assert len({r["run_id"] for r in rows}) == (3 if second < 6 else 2)


def test_a_failing_point_is_stored_and_the_sweep_goes_on(tmp_path):
    """A point that fails (here: a batch the int32 accumulators could overflow with) is
    stored with its one-line error; the others run; exit 1 at the end."""
    text = SMALL.replace('lambda_min = [1.0, 0.5]', 'batch = [8, 1024]').replace(
        'run = ["budget", "step"]', 'run = ["budget"]').replace(
        'model = ["digits-cnn"]', 'model = ["emnist-cnn"]')
    sweep_file = _write(tmp_path / "s.toml", text)
    store = tmp_path / "r.duckdb"
    out = subprocess.run(_mcusim("sweep", str(sweep_file), "--store", str(store), "--json",
                                 "--workers", "1"),
                         capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    rows = _stored(store)
    failed = [r for r in rows if r["status"] == "failed"]
    if not failed:
        pytest.skip("no batch size fails for this model (the accumulators are wide enough)")
    assert out.returncode == 1
    assert all(r["error"] and "\n" not in r["error"] for r in failed)
    assert all(r["batch_size"] == 1024 for r in failed)
    assert any(r["status"] == "ok" for r in rows)
    assert "mcusim: failed: budget emnist-cnn" in out.stderr


def test_does_not_fit_is_stored_with_budget_figures(tmp_path):
    sweep_file = _write(tmp_path / "s.toml", SMALL.replace(
        'mcu = ["RP2040", "nRF52840"]', 'mcu = ["STM32L053"]').replace(
        'lambda_min = [1.0, 0.5]', '').replace('"budget", ', ''))
    store = tmp_path / "r.duckdb"
    assert main(["sweep", str(sweep_file), "--store", str(store), "--workers", "1"]) == 0
    (row,) = _stored(store)
    assert row["status"] == "does-not-fit" and row["fits"] is False
    assert row["peak_ram_bytes"] > row["ram_budget_bytes"] or row["ram_headroom_bytes"] < 0
    assert row["error"]  # why, in one line
    assert row["hypothetical"] and row["cycles"] > 0  # #8's hypothetical cost


def test_single_commands_store_the_same_rows_as_a_sweep(tmp_path, capsys):
    """`mcusim step/budget --store`: one row per MCU, with the key a sweep of the same point
    has (so a sweep after it skips the point)."""
    store = tmp_path / "r.duckdb"
    assert main(["step", "digits-cnn", "--mcu", "RP2040", "--mcu", "nRF52840",
                 "--lambda-min", "0.5", "--store", str(store), "--json"]) == 0
    step = json.loads(capsys.readouterr().out)["reports"]
    rows = {r["mcu"]: r for r in _stored(store)}
    assert set(rows) == {"RP2040", "nRF52840"}
    for rep in step:
        assert rows[rep["mcu"]]["cycles"] == rep["cycles"]
        assert rows[rep["mcu"]]["sweep"] == "step" and rows[rep["mcu"]]["kind"] == "step"
    sweep_file = _write(tmp_path / "s.toml", SMALL.replace('run = ["budget", "step"]',
                                                           'run = ["step"]'))
    assert main(["sweep", str(sweep_file), "--store", str(store), "--json",
                 "--workers", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["skipped"] == 2 and data["ran"] == 2  # the two λ=0.5 points were stored
    tc, cat = find_toolchain(), load_catalog()
    pt = make_point("step", "digits-cnn", cat.mcu("RP2040"), tc,
                    settings={"lambda_min": 0.5})
    assert pt.key in {r["key"] for r in _stored(store)}


def test_dry_run_lists_without_running(tmp_path, capsys):
    sweep_file = _write(tmp_path / "s.toml", SMALL)
    assert main(["sweep", str(sweep_file), "--store", str(tmp_path / "r.duckdb"), "--dry-run",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["points"]) == 8 and {r["status"] for r in data["points"]} == {"to run"}
    assert _stored(tmp_path / "r.duckdb") == []


def test_the_example_sweep_file_is_shipped_and_valid(tmp_path, capsys):
    """`mcusim sweep --example` prints the example (also from a wheel), and it loads."""
    assert main(["sweep", "--example"]) == 0
    path = _write(tmp_path / "example.toml", capsys.readouterr().out)
    if EXAMPLE.is_file():  # the checkout's copy is the one shipped
        assert path.read_text() == EXAMPLE.read_text()
    sweep = load_sweep(path)
    assert sweep.points and sweep.name == "example"


_VALUES = [1, 0, -1, 2**40, 0.5, -0.0, float("nan"), True, "x", "", "all", "48MHz", [],
           [1, 2, 3], [[1]], {"a": 1}, "digits-cnn", "RP2040", "nearest", "gcc", "chip",
           "conv1,fc", [8, 8, 1]]


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v != v:
        return "nan"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def test_random_sweep_values_are_accepted_or_one_line_errors(tmp_path):
    """Every [grid] axis and [sweep]/[train] key with odd values (a seeded sample): the
    file loads, or fails with a one-line McusimError — never another exception."""
    import random

    from mcusim.sweep.config import AXES

    rng = random.Random(18)
    keys = [("grid", k) for k in AXES] + [("sweep", "run"), ("sweep", "name"),
                                          ("sweep", "catalog"), ("train", "epochs"),
                                          ("train", "dataset"), ("train", "baseline")]
    for i in range(300):
        section, key = keys[i % len(keys)]
        value = rng.choice(_VALUES)
        grid = {"model": '"digits-cnn"', "mcu": '"RP2040"'}
        tables = {"sweep": {}, "grid": grid, "train": {}}
        tables[section][key] = _toml_value(value)
        text = "\n".join(f"[{t}]\n" + "\n".join(f"{k} = {v}" for k, v in kv.items())
                         for t, kv in tables.items())
        path = _write(tmp_path / f"r{i}.toml", text)
        try:
            load_sweep(path)
        except McusimError as e:
            assert "\n" not in str(e), (text, e)
