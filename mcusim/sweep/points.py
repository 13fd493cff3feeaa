"""Sweep points: one question each (a budget, a training step or a training run of one
model on one MCU with one set of settings), its key, and running it on a worker.

The client resolves everything a point needs (the model with its settings, the MCU entry at
its clock, the toolchain) and builds the kernel images; a worker gets the point, the
image's bytes and the bytes of the files the point reads (the model's weights, a data set
file), runs it and returns a store row (mcusim.results.store.COLUMNS).  Workers never
compile, never read the client's files and never write the store: a worker on another
machine needs nothing but mcusim."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
import traceback
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from mcusim import __version__
from mcusim.catalog import Mcu
from mcusim.errors import McusimError
from mcusim.model.schema import ModelSpec
from mcusim.resources import data_dir
from mcusim.toolchain import Toolchain

KINDS = ("budget", "step", "train")


@dataclass(frozen=True)
class Point:
    """Everything a worker needs to answer one question."""

    kind: str
    model_ref: str  # as the sweep names it (zoo name or absolute path)
    spec: ModelSpec  # the model, trainable layers and [train] settings applied (client)
    mcu: Mcu  # the catalog entry with --clock / wait states applied
    toolchain: Toolchain
    seed: int = 0
    dataset: str | None = None  # train: the data set; step: the samples' source
    epochs: int | None = None  # train
    baseline: bool = True  # train: also the float32 baseline
    energy: str = "chip"
    sweep: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)  # normalized, what `key` hashes
    key: str = ""
    match_key: str = ""
    git_commit: str | None = None  # the client's mcusim checkout, not the worker's

    @property
    def weights_file(self) -> str | None:
        """The model's pretrained weights on the client (shipped to the worker)."""
        return self.spec.weights

    @property
    def dataset_file(self) -> str | None:
        """The data set when it is a user's file on the client (shipped to the worker)."""
        from mcusim.fqt.datasets import is_builtin

        if self.dataset is None or is_builtin(self.dataset):
            return None
        return str(Path(self.dataset).absolute())

    @property
    def image_id(self) -> tuple[str, str, str]:
        """Points with the same id run the same kernel image."""
        return (self.toolchain.kind, self.toolchain.version, self.inputs["catalog_hash"])


def digest(data: Any) -> str:
    """SHA-256 of a JSON-able value in its canonical form."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(*paths: str | Path | None) -> str:
    h = hashlib.sha256()
    for p in paths:
        if p is None:
            continue
        h.update(Path(p).name.encode() + b"\0")
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def catalog_hash(mcu: Mcu) -> str:
    return digest(mcu.to_dict())


@cache
def cost_model_hash(core: str) -> str:
    return file_digest(data_dir("cost_models") / f"cortex_{core}.toml")


@cache
def git_commit() -> str | None:
    """mcusim's own commit when it runs from a git checkout (editable install), with
    "-dirty" when the checkout has uncommitted changes; None when installed from a wheel."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists() or not (root / "mcusim").is_dir():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def model_files(model_ref: str, spec) -> list[Path]:
    """The files that define the model: its TOML (or ONNX / TFLite file) and weights."""
    from mcusim.model.writer import source_format

    files: list[Path] = []
    if source_format(model_ref):
        files.append(Path(model_ref))
    else:
        src = Path(spec.source)
        if src.is_file():
            files.append(src)
    if spec.weights:
        files.append(Path(spec.weights))
    return files


def make_point(kind: str, model_ref: str, mcu: Mcu, toolchain: Toolchain, *,
               settings: dict[str, Any] | None = None, train_last: int | None = None,
               trainable: tuple[str, ...] | None = None,
               input_shape: tuple[int, int, int] | None = None, seed: int = 0,
               dataset: str | None = None, epochs: int | None = None, baseline: bool = True,
               energy: str = "chip", sweep: str = "") -> Point:
    """A point with its normalized inputs and keys; the model is loaded here (in the
    client), so a bad model or setting fails before anything runs."""
    from mcusim.model.select import apply_train, load_spec

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    settings = {k: v for k, v in (settings or {}).items() if v is not None}
    spec = apply_train(load_spec(model_ref, input_shape=input_shape, train_last=train_last,
                                 trainable=trainable), **settings)
    tr = spec.train
    trainable_now = [layer.name for layer in spec.layers
                     if layer.has_weights and layer.trainable]
    named = {
        "kind": kind, "model": spec.name, "mcu": mcu.name, "clock_hz": mcu.clock_hz,
        "wait_states": mcu.flash_wait_states, "flash_cache": mcu.flash_cache is not None,
        "lambda_min": tr.lambda_min if tr.partial else 1.0,
        "lambda_max": tr.lambda_max if tr.partial else 1.0,
        "rounding": tr.rounding, "update_rounding": tr.update_rounding,
        "batch_size": tr.batch_size, "fc_gradient": tr.fc_gradient,
        "trainable": ",".join(trainable_now), "toolchain": toolchain.kind,
        "energy_basis": energy, "seed": seed, "dataset": dataset,
        "epochs": epochs if kind == "train" else None,
        "baseline": baseline if kind == "train" else None,
    }
    inputs = {**named, "model_hash": file_digest(*model_files(model_ref, spec)),
              "catalog_hash": catalog_hash(mcu), "cost_model_hash": cost_model_hash(
                  mcu.core.key), "toolchain_version": toolchain.version,
              "mcusim_version": __version__, "input_shape": list(spec.input_shape)}
    return Point(kind=kind, model_ref=model_ref, spec=spec, mcu=mcu, toolchain=toolchain,
                 seed=seed, dataset=dataset, epochs=epochs,
                 baseline=baseline, energy=energy, sweep=sweep, inputs=inputs,
                 key=digest(inputs), match_key=digest(named), git_commit=git_commit())


# ----------------------------------------------------------------------------- the row


def base_row(point: Point) -> dict[str, Any]:
    """The row's inputs and provenance (figures come from the run)."""
    i = point.inputs
    return {
        "key": point.key, "match_key": point.match_key, "sweep": point.sweep,
        "kind": point.kind, "model": i["model"], "model_ref": point.model_ref,
        "mcu": point.mcu.name, "core": point.mcu.core.key, "clock_hz": i["clock_hz"],
        "wait_states": i["wait_states"], "flash_cache": i["flash_cache"],
        "lambda_min": i["lambda_min"], "lambda_max": i["lambda_max"],
        "rounding": i["rounding"], "update_rounding": i["update_rounding"],
        "batch_size": i["batch_size"], "fc_gradient": i["fc_gradient"],
        "trainable": i["trainable"], "toolchain": point.toolchain.kind,
        "toolchain_version": point.toolchain.version, "energy_basis": point.energy,
        "seed": point.seed, "dataset": point.dataset, "epochs": i["epochs"],
        "mcusim_version": __version__, "git_commit": point.git_commit,
        "model_hash": i["model_hash"], "catalog_hash": i["catalog_hash"],
        "cost_model_hash": i["cost_model_hash"], "inputs": i,
    }


def step_figures(report) -> dict[str, Any]:
    """Row figures of a StepReport (step and budget points)."""
    d = report.to_dict()
    batch = d.get("batch") or {}
    return {
        "status": "ok" if report.fits else "does-not-fit",
        "error": None if report.fits else (report.reason or "; ".join(report.problems)),
        "fits": report.fits, "hypothetical": report.hypothetical,
        "cycles": d["cycles"], "latency_ms": d["latency_ms"], "energy_mj": d["energy_mj"],
        "batch_cycles": batch.get("cycles"), "batch_latency_ms": batch.get("latency_ms"),
        "batch_energy_mj": batch.get("energy_mj"),
        "update_cycles": batch.get("update_cycles"),
        "peak_ram_bytes": d["peak_ram_bytes"], "ram_budget_bytes": d["ram_budget_bytes"],
        "ram_headroom_bytes": d["ram_headroom_bytes"], "flash_bytes": d["flash_bytes"],
        "flash_budget_bytes": d["flash_budget_bytes"], "stack_bytes": d["stack_bytes"],
        "arena_bytes": d["arena_bytes_measured"] or d["arena_bytes_predicted"],
        "detail": d,
    }


def train_figures(report, step_row: dict[str, Any]) -> dict[str, Any]:
    """Row figures of a TrainReport, with the memory figures of its step."""
    d = report.to_dict()
    last = d["epochs"][-1] if d["epochs"] else {}
    base = d["baseline"][-1] if d.get("baseline") else {}
    out = {k: step_row[k] for k in (
        "fits", "hypothetical", "cycles", "latency_ms", "energy_mj", "batch_cycles",
        "batch_latency_ms", "batch_energy_mj", "update_cycles", "peak_ram_bytes",
        "ram_budget_bytes", "ram_headroom_bytes", "flash_bytes", "flash_budget_bytes",
        "stack_bytes", "arena_bytes")}
    out.update(status="ok", error=None, train_loss=last.get("train_loss"),
               train_acc=last.get("train_acc"), test_acc=last.get("test_acc"),
               baseline_test_acc=base.get("test_acc"),
               epoch_device_ms=last.get("device_ms"),
               detail={**d, "step": step_row["detail"]})
    return out


# ----------------------------------------------------------------------------- running


def shipped_path(data: bytes, name: str) -> Path:
    """Bytes the client shipped (a kernel image, a weights or data set file) in this
    machine's cache, content-addressed (shipped/<sha256>/<name>: the file keeps its name,
    which reports show): a worker on another machine shares no cache or file system with
    the client."""
    from mcusim.toolchain import default_cache_dir

    sha = hashlib.sha256(data).hexdigest()
    path = default_cache_dir() / "shipped" / sha / Path(name).name
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def run_point(point: Point, elf: bytes | None = None, weights: bytes | None = None,
              dataset: bytes | None = None) -> dict[str, Any]:
    """Run one point (on a worker) and return its store row.  `elf`, `weights`, `dataset`:
    the bytes of the kernel image and of the point's files, shipped by the client (None:
    build the image here, read the files where the point names them).  A point that fails
    returns a "failed" row with its one-line error instead of raising: the sweep goes on."""
    t0 = time.perf_counter()
    row = base_row(point)
    try:
        spec = point.spec
        if weights is not None:
            spec = replace(spec, weights=str(shipped_path(weights, str(spec.weights))))
        data = point.dataset
        if dataset is not None:
            data = str(shipped_path(dataset, str(point.dataset_file)))
        row.update(_run(point, spec, None if elf is None else
                        shipped_path(elf, "kernels.elf"), data))
    except McusimError as e:
        row.update(status="failed", error=_one_line(f"{type(e).__name__}: {e}"))
    except Exception as e:  # mcusim's own bug: said so, with where it happened
        where = traceback.extract_tb(e.__traceback__)[-1]
        row.update(status="failed", error=_one_line(
            f"internal error (a bug in mcusim): {type(e).__name__}: {e} at "
            f"{Path(where.filename).name}:{where.lineno}"))
    row["wall_s"] = time.perf_counter() - t0
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return row


def _one_line(text: str) -> str:
    return " ".join(p.strip() for p in str(text).splitlines() if p.strip())


def _run(point: Point, spec: ModelSpec, elf: Path | None,
         dataset: str | None) -> dict[str, Any]:
    from mcusim.analyze import simulate_step

    mcu = point.mcu.with_energy(point.energy)
    if point.kind == "budget":
        from mcusim.model.select import budget_spec

        return step_figures(simulate_step(budget_spec(spec), mcu, toolchain=point.toolchain,
                                          hypothetical=True, elf=elf))
    data = None
    if dataset:
        from mcusim.fqt.datasets import check_fits, load_dataset

        # a shipped file is a Path: never taken for a built-in set of the same name
        data = load_dataset(Path(dataset) if point.dataset_file else dataset,
                            seed=point.seed, value_range=spec.input_range)
        check_fits(data, spec.input_shape, spec.classes, spec.name)
    step = step_figures(simulate_step(spec, mcu, toolchain=point.toolchain, seed=point.seed,
                                      data=data if point.kind == "step" else None,
                                      hypothetical=True, elf=elf))
    if point.kind == "step":
        return step
    if not step["fits"]:  # stored as does-not-fit with the step's figures, not trained
        return step
    from mcusim.fqt.train import train_fqt

    report = train_fqt(spec, data, mcu, point.toolchain, epochs=point.epochs or 1,
                       seed=point.seed, baseline=point.baseline,
                       elf=None if elf is None else str(elf))
    return train_figures(report, step)
