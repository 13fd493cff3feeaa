"""Sweep throughput, measured side by side in one run on the same points.

The grid (issue 18's measured sweep): digits-cnn and emnist-cnn x every MCU of the catalog x
λ_min in {1, 0.5, 0.1} x rounding in {nearest, stochastic}, one training step each.  Runs
it four ways, each into a fresh store, with the kernel images already in the build cache:

  1. in this process, one point after the other (run_point: no Dask, no store);
  2. `mcusim sweep` on a local cluster with 1 worker;
  3. the same with 2 workers;
  4. the same through an external scheduler on loopback (`dask scheduler` + `dask worker
     --nworkers 2` started here, with the worker settings docs/sweeps.md recommends).

and prints points per minute, the sweep's wall time against the in-process time, and the
overhead per point ((sweep wall x workers - in-process wall) / points: what a point costs a
worker beyond its own work, cluster start-up included).  It checks that every way stored the
same figures.  Progress on stderr; --json for scripts.

    python scripts/bench_sweep.py [--models digits-cnn,emnist-cnn] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcusim.results.store import open_store
from mcusim.sweep.config import load_sweep
from mcusim.sweep.points import run_point
from mcusim.sweep.runner import build_images

GRID = """
[sweep]
name = "bench"
run = ["step"]
[grid]
model = {models}
mcu = ["all"]
lambda_min = [1.0, 0.5, 0.1]
rounding = ["nearest", "stochastic"]
"""


def log(msg: str) -> None:
    print(f"bench_sweep: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep_cli(sweep_file: Path, store: Path, *extra: str) -> dict:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mcusim", "sweep", str(sweep_file), "--store",
                          str(store), "--json", *extra], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode not in (0, 1):
        raise SystemExit(f"sweep failed: {out.stderr[-2000:]}")
    data = json.loads(out.stdout)
    data["outer_wall_s"] = wall
    return data


def figures(store: Path) -> dict[str, tuple]:
    with open_store(store, read_only=True) as st:
        return {r["key"]: (r["status"], r["cycles"], r["peak_ram_bytes"])
                for r in st.query(columns=["key", "status", "cycles", "peak_ram_bytes"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits-cnn,emnist-cnn")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    models = json.dumps(args.models.split(","))
    sweep_file = work / "bench.toml"
    sweep_file.write_text(GRID.format(models=models))
    sweep = load_sweep(sweep_file)
    n = len(sweep.points)
    log(f"{n} points; building the images once (the build cache)")
    build_images(sweep.points)

    log("1/4 in this process")
    t = time.perf_counter()
    ref = {}
    for i, p in enumerate(sweep.points, 1):
        r = run_point(p)
        ref[p.key] = (r["status"], r["cycles"], r["peak_ram_bytes"])
        if i % 20 == 0:
            log(f"  {i}/{n}")
    inproc = time.perf_counter() - t

    results = {}
    for label, extra, workers in (("local, 1 worker", ("--workers", "1"), 1),
                                  ("local, 2 workers", ("--workers", "2"), 2)):
        log(f"{len(results) + 2}/4 sweep, {label}")
        store = work / f"{label.replace(', ', '-').replace(' ', '')}.duckdb"
        results[label] = (sweep_cli(sweep_file, store, *extra), workers, store)

    log("4/4 sweep through an external scheduler on loopback (dask scheduler + dask worker)")
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    dask = shutil.which("dask") or str(Path(sys.executable).parent / "dask")
    logf = (work / "dask.log").open("w")
    sched = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], stdout=logf, stderr=logf,
                             start_new_session=True)
    # the worker settings docs/sweeps.md recommends (the local cluster's WORKER_CONFIG)
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED="False",
               DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL="1s",
               DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL="5s")
    worker = subprocess.Popen([dask, "worker", addr, "--nworkers", "2", "--nthreads", "1",
                               "--no-dashboard", "--local-directory", str(work / "w")],
                              stdout=logf, stderr=logf, start_new_session=True, env=env)
    deadline = time.time() + 60
    while True:  # wait until the scheduler listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                raise SystemExit("the dask scheduler did not start") from None
            time.sleep(0.2)
    try:
        store = work / "external.duckdb"
        results["external scheduler, 2 workers"] = (
            sweep_cli(sweep_file, store, "--scheduler", addr, "--workers", "2"), 2, store)
    finally:
        for p in (worker, sched):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)

    out = {"points": n, "in_process_s": round(inproc, 2),
           "in_process_points_per_min": round(n / inproc * 60, 1), "cpus": os.cpu_count(),
           "ways": []}
    for label, (data, workers, store) in results.items():
        same = figures(store) == ref
        wall = data["wall_s"]
        out["ways"].append({
            "way": label, "workers": workers, "wall_s": round(wall, 2),
            "process_wall_s": round(data["outer_wall_s"], 2),
            "points_per_min": round(n / wall * 60, 1),
            "speedup_vs_in_process": round(inproc / wall, 2),
            "overhead_per_point_s": round((wall * workers - inproc) / n, 3),
            "same_figures_as_in_process": same})
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{n} training-step points on {os.cpu_count()} cores; in one process: "
          f"{inproc:.1f} s ({out['in_process_points_per_min']} points/min)")
    print(f"{'way':32} {'wall s':>8} {'points/min':>11} {'vs 1 process':>13} "
          f"{'overhead/point':>15} same figures")
    for w in out["ways"]:
        print(f"{w['way']:32} {w['wall_s']:8.1f} {w['points_per_min']:11.1f} "
              f"{w['speedup_vs_in_process']:12.2f}x {w['overhead_per_point_s']:14.3f}s "
              f"{w['same_figures_as_in_process']}")
    return 0 if all(w["same_figures_as_in_process"] for w in out["ways"]) else 1


if __name__ == "__main__":
    sys.exit(main())
