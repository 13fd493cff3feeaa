"""Running a sweep's points on Dask and storing every result as it arrives.

The client (this process) skips the points already stored, builds each kernel image once per
toolchain x MCU, ships the images' bytes to the workers (scattered once, content-addressed
on the worker: mcusim.sweep.points.image_path), submits one task per point and writes each
returned row into the results database: DuckDB has one writer, the client.  Workers run on a
local cluster of processes (one per core by default) or on an existing Dask cluster named by
its scheduler address; nothing else changes.  A point that fails comes back as a "failed"
row with its one-line error and the sweep goes on.  Nothing here prints: progress goes to a
callback.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcusim import __version__
from mcusim.errors import UsageError
from mcusim.results.store import Store
from mcusim.sweep.points import Point, base_row, run_point

ProgressFn = Callable[["SweepProgress"], None]
CONNECT_TIMEOUT_S = 15
REFUSED_WAIT_S = 5  # how long a refused connection is retried (a scheduler starting up)
WORKER_WAIT_S = 60
# Dask settings of the local cluster's workers.  Dask's statistical profiler samples the
# task thread's stack every 10 ms and its event-loop watchdog ticks every 20 ms; both take
# the GIL that every return from Unicorn needs: a training step ran 15 % slower in a worker
# than in one process with them, 4 % without (measured: the same digits-cnn step on RP2040
# repeated in a worker and in this process, median of 5).  An external cluster's workers
# take the same settings from the environment (docs/sweeps.md).
WORKER_CONFIG = {"distributed.worker.profile.enabled": False,
                 "distributed.admin.tick.interval": "1s",
                 "distributed.admin.system-monitor.interval": "5s"}


@dataclass
class SweepProgress:
    """What a sweep has done so far (passed to the progress callback after every point)."""

    total: int  # points of the sweep
    skipped: int  # already stored before this run
    done: int = 0  # run and stored in this run (any status)
    failed: int = 0
    does_not_fit: int = 0
    started: float = field(default_factory=time.monotonic)
    message: str = ""  # a phase: building images, starting workers, ...

    @property
    def to_run(self) -> int:
        return self.total - self.skipped

    @property
    def remaining(self) -> int:
        return self.to_run - self.done

    def eta_s(self) -> float | None:
        """Seconds left at the rate so far (None before the first point)."""
        if self.done == 0:
            return None
        return (time.monotonic() - self.started) / self.done * self.remaining


@dataclass
class SweepRun:
    """The outcome of one run of a sweep."""

    run_id: str
    store: str
    scheduler: str  # "local" or the address
    workers: int
    progress: SweepProgress
    wall_s: float
    build_s: float

    def to_dict(self) -> dict[str, Any]:
        p = self.progress
        return {"run_id": self.run_id, "store": self.store, "scheduler": self.scheduler,
                "workers": self.workers, "total": p.total, "skipped": p.skipped,
                "ran": p.done, "failed": p.failed, "does_not_fit": p.does_not_fit,
                "wall_s": round(self.wall_s, 2), "build_s": round(self.build_s, 2)}


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + uuid.uuid4().hex[:6]


def require_dask():
    try:
        import distributed
    except ImportError:
        raise UsageError("sweeps run on Dask: pip install 'mcusim[sweep]'") from None
    return distributed


def build_images(points: Sequence[Point],
                 progress: Callable[[str], None] | None = None) -> dict[tuple, bytes]:
    """The kernel image of every toolchain x MCU the points use, built (or found in the
    cache) once here in the client: image id -> ELF bytes."""
    from mcusim.toolchain import Builder

    out: dict[tuple, bytes] = {}
    for pt in points:
        if pt.image_id in out:
            continue
        build = Builder(pt.toolchain, progress=progress).build(pt.mcu.core, [pt.mcu])[0]
        out[pt.image_id] = Path(build.elf).read_bytes()
    return out


def point_files(points: Sequence[Point]) -> dict[str, bytes]:
    """The files the points read on the client (pretrained weights, data set files), each
    once: path -> bytes, shipped to the workers like the images."""
    out: dict[str, bytes] = {}
    for pt in points:
        for path in (pt.weights_file, pt.dataset_file):
            if path and path not in out:
                try:
                    out[path] = Path(path).read_bytes()
                except OSError as e:
                    raise UsageError(f"{path}: cannot read it: {e.strerror}") from None
    return out


def _worker_version() -> str:
    import mcusim

    return mcusim.__version__


def check_scheduler(address: str) -> None:
    """A one-line UsageError at once when nothing listens at a tcp:// scheduler address
    (Dask itself would retry for CONNECT_TIMEOUT_S)."""
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls"):
        raise UsageError(f"--scheduler {address}: expected tcp://HOST:PORT (or tls://)")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise UsageError(f"--scheduler {address}: expected tcp://HOST:PORT, e.g. "
                         "tcp://127.0.0.1:8786")
    deadline = time.monotonic() + REFUSED_WAIT_S  # a scheduler that is just starting
    while True:
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                return
        except ConnectionRefusedError as e:
            if time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            why = e.strerror
        except OSError as e:
            why = e.strerror or type(e).__name__
        raise UsageError(f"--scheduler {address}: no Dask scheduler answered there ({why})")


@contextmanager
def dask_client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A dask.distributed Client: on a local cluster of `workers` processes (default: one per
    core), or connected to the scheduler at `scheduler`."""
    distributed = require_dask()
    import dask

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with dask.config.set(WORKER_CONFIG):  # the local workers inherit it at start
        with _client(distributed, scheduler, workers) as client:
            yield client


@contextmanager
def _client(distributed: Any, scheduler: str | None, workers: int | None) -> Iterator[Any]:
    cluster = None
    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError) as e:
            raise UsageError(f"--scheduler {scheduler}: no Dask scheduler answered there "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                             ) from None
    else:
        n = workers or os.cpu_count() or 1
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                           dashboard_address=None,
                                           silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
    try:
        if scheduler:
            try:
                client.wait_for_workers(workers or 1, timeout=WORKER_WAIT_S)
            except TimeoutError:
                raise UsageError(f"--scheduler {scheduler}: fewer than {workers or 1} worker(s) "
                                 f"joined within {WORKER_WAIT_S} s (start them with `dask "
                                 f"worker {scheduler}`)") from None
        versions = client.run(_worker_version)
        bad = {w: v for w, v in versions.items() if v != __version__}
        if bad:
            w, v = next(iter(bad.items()))
            raise UsageError(f"worker {w} runs mcusim {v}, this client {__version__}: install "
                             "the same mcusim on the workers")
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_sweep(points: Sequence[Point], store: Store, *, run_id: str | None = None,
              scheduler: str | None = None, workers: int | None = None,
              progress: ProgressFn | None = None,
              build_progress: Callable[[str], None] | None = None) -> SweepRun:
    """Run the points not yet in `store` on Dask; store each row as it arrives."""
    t0 = time.monotonic()
    run_id = run_id or new_run_id()
    report = progress or (lambda _p: None)
    stored = store.keys()
    todo = [p for p in points if p.key not in stored]
    state = SweepProgress(total=len(points), skipped=len(points) - len(todo))
    build_s = 0.0
    n_workers = 0
    if todo:
        state.message = "building kernel images"
        report(state)
        images = build_images(todo, build_progress)
        build_s = time.monotonic() - t0
        state.message = "starting workers" if not scheduler else f"connecting to {scheduler}"
        report(state)
        with dask_client(scheduler, workers) as client:
            from distributed import as_completed

            n_workers = len(client.scheduler_info().get("workers", {}))
            shipped = {iid: client.scatter(elf, broadcast=True, hash=True)
                       for iid, elf in images.items()}
            files = {path: client.scatter(data, broadcast=True, hash=True)
                     for path, data in point_files(todo).items()}
            futures = [client.submit(run_point, p, shipped[p.image_id],
                                     files.get(p.weights_file), files.get(p.dataset_file),
                                     key=f"mcusim-{run_id}-{p.key[:20]}", pure=False)
                       for p in todo]
            by_key = {f.key: p for f, p in zip(futures, todo, strict=True)}
            state.message = ""
            state.started = time.monotonic()
            report(state)
            try:
                for fut in as_completed(futures):
                    row = _row_of(fut, by_key[fut.key])
                    row["run_id"] = run_id
                    store.put(row)
                    state.done += 1
                    state.failed += row["status"] == "failed"
                    state.does_not_fit += row["status"] == "does-not-fit"
                    report(state)
            finally:
                for f in futures:
                    if not f.done():
                        f.cancel()
    return SweepRun(run_id=run_id, store=str(store.path), scheduler=scheduler or "local",
                    workers=n_workers, progress=state,
                    wall_s=time.monotonic() - t0, build_s=build_s)


def _row_of(fut: Any, point: Point) -> dict[str, Any]:
    """The future's row; a task that died on its worker (killed, lost, unpicklable) gives a
    "failed" row naming that, not an exception: the sweep goes on."""
    try:
        return fut.result()
    except Exception as e:  # the worker process died or the task could not run at all
        row = base_row(point)
        msg = " ".join(str(e).split()) or type(e).__name__
        row.update(status="failed", error=f"the task did not run on its worker: "
                   f"{type(e).__name__}: {msg}")
        return row
