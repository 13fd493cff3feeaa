"""Data sets to train and test models on: five built in, or the user's own .npz file.

Every data set comes as float32 samples of shape (N, H, W, C) with values in [0, 1] and int64
labels 0..classes-1, split into train and test.  Nothing is downloaded at run time:

``digits``
    scikit-learn's bundled 8x8 handwritten digits (1797 samples, 10 classes, pixel values
    0..16).  Scaled by 1/16 to [0, 1], shaped (N, 8, 8, 1), and split 80 % train / 20 % test,
    stratified by class, with ``seed`` as the random state.  Needs scikit-learn.

Four UCR/UEA time-series classification problems, read from the copies bundled in the
``aeon`` wheel (``pip install 'mcusim[imu]'``) without importing aeon, each with the archive's
own train/test split (``seed`` is ignored):

``basicmotions``
    UEA BasicMotions: smartwatch 3-axis accelerometer + 3-axis gyroscope, 100 steps x 6
    channels, 4 activities (standing, running, walking, badminton), 40 train / 40 test.
``gunpoint``
    UCR GunPoint: the x position of an actor's hand in video, 150 steps x 1 channel, 2 classes
    (gun-draw, point), 50 train / 150 test.
``italypowerdemand``
    UCR ItalyPowerDemand: a day's 24 hourly electricity demands, 24 steps x 1 channel, 2
    classes (days of October to March vs April to September), 67 train / 1029 test.
``japanesevowels``
    UEA JapaneseVowels: 12 LPC cepstrum coefficients per frame of a Japanese vowel spoken by
    one of 9 male speakers (the classes), 270 train / 370 test; utterances of 7 to 29 frames.
    Every utterance is made 32 frames long (``JAPANESE_VOWELS_STEPS``): a shorter one is
    padded at the end by repeating its last frame (the values stay those of the speaker, and
    no archive utterance is cut); a longer one would keep its first 32 frames.

    All four are shaped (N, 1, T, C) -- H = 1, W = time, C = channel -- to match the zoo's
    1-D CNNs (models/imu-cnn.toml, gunpoint-cnn, italypowerdemand-cnn, japanesevowels-cnn),
    and scaled per channel to [0, 1] with the TRAIN split's minimum and maximum of that
    channel over all cases and steps (test values outside them are clipped into [0, 1]).
    Classes map to 0..K-1 in the order of the file's ``@classLabel`` line (BasicMotions:
    Standing Running Walking Badminton; the others: 1 2 ... -> 0 1 ...).  The .ts files are
    read from aeon's package folder (``aeon/datasets/data/<Problem>/``); should a later aeon
    keep them elsewhere, aeon's public ``load_classification`` reads them instead (importing
    aeon, slower; the same arrays), but only when aeon lists the problem as present on this
    machine: never a download.

A path to a ``.npz`` file
    Keys ``x_train``, ``y_train``, ``x_test``, ``y_test``.  ``x`` is (N, H, W, C), or
    (N, H, W) for one channel; train and test samples must have the same shape.  uint8 values
    are divided by 255; any other numeric values must already lie in [0, 1].  Labels are
    integers >= 0 (floats holding whole numbers are accepted); ``classes`` is the largest
    label + 1 over train and test.  ``seed`` is ignored.  Limits, checked before anything is
    loaded: a regular file (not a FIFO or a device) of at most 4 GiB; arrays declaring at
    most 1 GiB in all, whose samples take at most 1 GiB as float32 (268 million values:
    EMNIST's 280,000 28x28 digits fit).

Every problem is a :class:`~mcusim.errors.DatasetError` with a one-line message.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcusim.errors import DatasetError
from mcusim.userfiles import GiB, check_regular

__all__ = ["Dataset", "check_fits", "dataset_names", "load_dataset"]

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split: x float32 (N, H, W, C) in [0, 1], y int64 (N,) in 0..classes-1."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    description: str  # one line: origin, sizes, preprocessing

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape (H, W, C) of one sample."""
        h, w, c = self.x_train.shape[1:]
        return int(h), int(w), int(c)


# --------------------------------------------------------------------------- public API


def dataset_names() -> list[str]:
    """The names of the built-in data sets."""
    return sorted(_BUILTIN)


def is_builtin(name: str) -> bool:
    """Whether a string names a built-in data set (load_dataset prefers it to a file)."""
    return name.lower() in _BUILTIN


def load_dataset(name_or_path: str | Path, seed: int = 0,
                 value_range: tuple[float, float] = (0.0, 1.0)) -> Dataset:
    """Load a built-in data set by name, or a user's .npz file by path.

    ``seed`` picks the train/test split where the data set has none of its own (``digits``);
    the same seed always gives the same arrays.  ``value_range`` is the real input range of
    the model the data is for (``[model] input_range``): the built-in sets are scaled to
    [0, 1] and need it to be (0, 1); a user's samples must lie in it (uint8 samples are
    divided by 255 only for (0, 1), else used as they are).
    """
    lo, hi = float(value_range[0]), float(value_range[1])
    if (lo, hi) != (0.0, 1.0) and str(name_or_path).lower() in _BUILTIN and \
            (isinstance(name_or_path, str) or not path_is_file(name_or_path)):
        raise DatasetError(
            f"data set '{name_or_path}' is scaled to [0, 1] but the model's input range is "
            f"[{lo:g}, {hi:g}]: give a .npz in the model's units, or a model whose "
            "input_range is [0, 1]")
    path = Path(name_or_path)
    key = str(name_or_path).lower()
    # A built-in name wins over a file of that name, unless a Path object was passed.
    if key in _BUILTIN and (isinstance(name_or_path, str) or not path.is_file()):
        return _BUILTIN[key](seed)
    if path.suffix.lower() == ".npz" or path.exists():
        try:
            return _load_npz(path, (lo, hi))
        except DatasetError as e:  # messages name the path: keep them on one line
            text = str(path)
            if text.isprintable():
                raise
            shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
            raise DatasetError(str(e).replace(text, shown)) from None
    raise DatasetError(
        f"unknown data set '{name_or_path}' (built in: {', '.join(dataset_names())}; "
        "or a .npz file with x_train, y_train, x_test, y_test)"
    )


def check_fits(ds: Dataset, input_shape: tuple[int, int, int], classes: int,
               model_name: str) -> None:
    """Raise DatasetError unless the data's sample shape and class count match the model's."""
    want = tuple(int(d) for d in input_shape)
    if ds.input_shape != want:
        raise DatasetError(
            f"data set '{ds.name}' has samples of shape {_shape(ds.input_shape)} (H, W, C) "
            f"but model '{model_name}' expects input {_shape(want)}"
        )
    if ds.classes != classes:
        raise DatasetError(
            f"data set '{ds.name}' has {ds.classes} classes "
            f"but model '{model_name}' has {classes}"
        )


# --------------------------------------------------------------------------- digits


def _load_digits(seed: int) -> Dataset:
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise DatasetError(
            "the digits data set needs scikit-learn: pip install scikit-learn"
        ) from None
    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)).reshape(-1, 8, 8, 1)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=seed)
    return Dataset(
        name="digits",
        x_train=np.ascontiguousarray(x_train), y_train=np.ascontiguousarray(y_train),
        x_test=np.ascontiguousarray(x_test), y_test=np.ascontiguousarray(y_test),
        classes=10,
        description=(
            f"scikit-learn 8x8 handwritten digits (UCI optdigits test set): "
            f"{len(y_train)} train / {len(y_test)} test, 10 classes, stratified split "
            f"seed {seed}, pixels 0..16 scaled by 1/16 to [0, 1]"
        ),
    )


# --------------------------------------------------------------------------- UCR/UEA sets

JAPANESE_VOWELS_STEPS = 32  # every utterance padded (or truncated) to this many frames
AEON_VERSION = "1.6.0"      # the aeon that pyproject's imu extra pins (it bundles all four)


@dataclass(frozen=True)
class _Archive:
    """A classification problem of the UCR/UEA archive whose files the aeon wheel bundles."""

    name: str               # mcusim's name of the set (lower case)
    problem: str            # the archive's name: the folder and the stem of its .ts files
    title: str              # the description's start: what the series are
    classes: str = ""       # the description's class names, in @classLabel order ("": labels)
    unit: str = "series"    # what one case is, for the description
    steps: int | None = None  # unequal-length problems: every case padded/truncated to this


_ARCHIVE = {a.name: a for a in (
    _Archive("basicmotions", "BasicMotions", "UEA BasicMotions smartwatch IMU", unit="windows"),
    _Archive("gunpoint", "GunPoint", "UCR GunPoint hand x-position from video",
             "gun-draw, point"),
    _Archive("italypowerdemand", "ItalyPowerDemand",
             "UCR ItalyPowerDemand hourly electricity demand", "labels 1, 2", unit="days"),
    _Archive("japanesevowels", "JapaneseVowels",
             "UEA JapaneseVowels LPC cepstra of a spoken vowel", "speakers 1..9",
             unit="utterances", steps=JAPANESE_VOWELS_STEPS),
)}


def _aeon_dir() -> Path | None:
    """aeon's package directory, found without importing aeon (which pulls in numba)."""
    try:
        spec = importlib.util.find_spec("aeon")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _bundled_folder(root: Path, problem: str) -> Path:
    """Where the aeon wheel keeps a bundled problem's .ts files (aeon's private layout)."""
    return root / "datasets" / "data" / problem


_Cases = tuple[list[np.ndarray], np.ndarray, list[str]]  # (steps, dims) float64 each; y; labels


def _read_bundled(spec: _Archive, root: Path) -> tuple[_Cases, _Cases] | None:
    """Both splits read from the wheel's .ts files without importing aeon; None when the
    files are not where aeon keeps them."""
    folder = _bundled_folder(root, spec.problem)
    paths = [folder / f"{spec.problem}_{part}.ts" for part in ("TRAIN", "TEST")]
    if not all(p.is_file() for p in paths):
        return None
    train, test = (_read_ts_cases(p, equal_length=spec.steps is None) for p in paths)
    return train, test


def _read_with_aeon(spec: _Archive) -> tuple[_Cases, _Cases]:
    """Both splits through aeon's public ``load_classification``, only when aeon lists the
    problem as present on this machine (bundled, or in aeon's own data cache): never a
    download."""
    import warnings

    splits = []
    try:
        with warnings.catch_warnings():  # library code is silent: aeon's import warns
            warnings.simplefilter("ignore")
            from aeon import __version__ as version
            from aeon.datasets import load_classification
            from aeon.datasets.dataset_collections import get_downloaded_tsc_tsr_datasets

            if spec.problem not in get_downloaded_tsc_tsr_datasets():
                raise DatasetError(
                    f"the {spec.name} data set: aeon {version} does not bundle "
                    f"{spec.problem} (aeon {AEON_VERSION} does) and mcusim never downloads: "
                    "pip install 'mcusim[imu]'")
            for part in ("train", "test"):
                x, y, meta = load_classification(
                    spec.problem, split=part, return_metadata=True,
                    load_equal_length=False, load_no_missing=False)
                labels = [str(c) for c in meta["class_values"]]
                cases = [np.asarray(c, dtype=np.float64).T for c in x]  # (dims, steps) each
                splits.append((cases, [str(v) for v in y], labels))
    except DatasetError:
        raise
    except Exception as exc:  # aeon's import or reader failed: one line, never a traceback
        raise DatasetError(
            f"the {spec.name} data set: aeon could not load {spec.problem} "
            f"({_one_line(exc)})") from None
    out = []
    for part, (cases, y, labels) in zip(("train", "test"), splits, strict=True):
        where = f"aeon's {spec.problem} {part} split"
        if not cases or not labels:
            raise DatasetError(f"{where}: no cases or no class labels")
        if any(v not in labels for v in y):
            raise DatasetError(f"{where}: a class is not among {' '.join(labels)}")
        if any(c.ndim != 2 or c.size == 0 or not np.all(np.isfinite(c)) for c in cases):
            raise DatasetError(f"{where}: empty, missing, NaN or infinite values")
        out.append((cases, np.array([labels.index(v) for v in y], dtype=np.int64), labels))
    return out[0], out[1]


def _fit_steps(cases: list[np.ndarray], steps: int) -> list[np.ndarray]:
    """Every case to ``steps`` time steps: longer ones keep their first ``steps``, shorter ones
    are padded at the end by repeating their last step."""
    out = []
    for c in cases:
        if len(c) >= steps:
            out.append(c[:steps])
        else:
            out.append(np.concatenate([c, np.repeat(c[-1:], steps - len(c), axis=0)]))
    return out


def _load_archive(spec: _Archive) -> Dataset:
    root = _aeon_dir()
    if root is None:
        raise DatasetError(
            f"the {spec.name} data set is bundled with aeon: "
            "pip install 'mcusim[imu]' (or pip install aeon)"
        )
    read = _read_bundled(spec, root)
    if read is not None:
        where, source = str(_bundled_folder(root, spec.problem)), "from the aeon wheel"
    else:  # aeon moved its bundled files: ask its public loader (no download)
        read = _read_with_aeon(spec)
        where, source = f"aeon's {spec.problem}", "via aeon's load_classification"
    (cases_train, y_train, labels), (cases_test, y_test, test_labels) = read
    if test_labels != labels:
        raise DatasetError(
            f"{where}: train and test files list different classes "
            f"({' '.join(labels)} vs {' '.join(test_labels)})"
        )
    lengths = sorted({len(c) for c in cases_train + cases_test})
    if spec.steps is not None:
        cases_train = _fit_steps(cases_train, spec.steps)
        cases_test = _fit_steps(cases_test, spec.steps)
    x_train, x_test = _stack(where, "train", cases_train), _stack(where, "test", cases_test)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(
            f"{where}: train cases have shape {x_train.shape[1:]} (steps, channels) "
            f"but test cases {x_test.shape[1:]}"
        )
    # (N, steps, channels) -> (N, 1, steps, channels); per-channel min-max from train.
    lo = x_train.min(axis=(0, 1))
    span = x_train.max(axis=(0, 1)) - lo
    span[span == 0] = 1.0
    x_train = np.clip((x_train - lo) / span, 0.0, 1.0)[:, None, :, :]  # clip: rounding
    x_test = np.clip((x_test - lo) / span, 0.0, 1.0)[:, None, :, :]
    steps, channels = x_train.shape[2], x_train.shape[3]
    names = spec.classes or ", ".join(label.lower() for label in labels)
    fitted = ""
    if spec.steps is not None:
        fitted = (f" (lengths {lengths[0]}..{lengths[-1]}: padded at the end with the last "
                  f"frame, cut after {spec.steps})")
    return Dataset(
        name=spec.name,
        x_train=x_train.astype(np.float32), y_train=y_train,
        x_test=x_test.astype(np.float32), y_test=y_test,
        classes=len(labels),
        description=(
            f"{spec.title} ({source}): {len(y_train)} train / {len(y_test)} test "
            f"{spec.unit} of {steps} steps{fitted} x {channels} "
            f"channel{'s' if channels != 1 else ''}, {len(labels)} classes ({names}), "
            f"per-channel min-max scaled to [0, 1] with train statistics"
        ),
    )


def _stack(where: str, part: str, cases: list[np.ndarray]) -> np.ndarray:
    shapes = sorted({c.shape for c in cases})
    if len(shapes) != 1:
        raise DatasetError(
            f"{where}: {part} cases of different shapes (steps, channels): "
            f"{' '.join(map(str, shapes[:3]))}")
    return np.stack(cases)


def _read_ts_cases(path: Path, equal_length: bool = True) -> _Cases:
    """Read a classified .ts file: a list of float64 (steps, dims) cases, y int64, labels.

    Header lines start with '@' (@dimensions, @seriesLength, @classLabel true A B ..., @data);
    '#' lines are comments; each case is ``d1:d2:...:label`` with each d a comma-separated
    series (all of a case's the same length).  With ``equal_length`` every case must have the
    first one's length.  Labels map to 0.. in the order @classLabel lists them.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a text .ts file") from None

    labels: list[str] | None = None
    dims: int | None = None
    in_data = False
    cases: list[np.ndarray] = []
    targets: list[int] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise DatasetError(f"{path}:{lineno}: expected a '@' header line before @data")
            key, _, rest = line.partition(" ")
            key = key.lower()
            if key == "@classlabel":
                words = rest.split()
                if not words or words[0].lower() != "true" or len(words) < 2:
                    raise DatasetError(f"{path}:{lineno}: @classLabel lists no classes")
                labels = words[1:]
            elif key == "@dimensions":
                try:
                    dims = int(rest)
                except ValueError:
                    raise DatasetError(
                        f"{path}:{lineno}: bad @dimensions '{rest.strip()}'") from None
            elif key == "@data":
                in_data = True
            continue
        if labels is None:
            raise DatasetError(f"{path}: no '@classLabel true ...' line before @data")
        *series, label = line.split(":")
        if dims is not None and len(series) != dims:
            raise DatasetError(
                f"{path}:{lineno}: {len(series)} dimensions, @dimensions says {dims}")
        label = label.strip()
        if label not in labels:
            raise DatasetError(
                f"{path}:{lineno}: class '{label}' is not on the @classLabel line")
        try:
            rows = [np.array([float(v) for v in s.split(",")]) for s in series]
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: a value is not a number") from None
        if not rows or len({len(r) for r in rows}) != 1:
            raise DatasetError(f"{path}:{lineno}: dimensions of unequal length")
        case = np.stack(rows, axis=1)  # (steps, dims)
        if cases and (case.shape != cases[0].shape if equal_length
                      else case.shape[1] != cases[0].shape[1]):
            raise DatasetError(
                f"{path}:{lineno}: case of {case.shape[0]} steps x {case.shape[1]} dimensions, "
                f"earlier cases have {cases[0].shape[0]} x {cases[0].shape[1]}")
        if not np.all(np.isfinite(case)):
            raise DatasetError(f"{path}:{lineno}: missing, NaN or infinite values")
        cases.append(case)
        targets.append(labels.index(label))
    if labels is None or not cases:
        raise DatasetError(f"{path}: no cases (missing @data section?)")
    return cases, np.array(targets, dtype=np.int64), labels


# --------------------------------------------------------------------------- .npz


def path_is_file(p: str | Path) -> bool:
    try:
        return Path(p).is_file()
    except (OSError, ValueError):
        return False


def _load_npz(path: Path, value_range: tuple[float, float] = (0.0, 1.0)) -> Dataset:
    if path.exists() and not path.is_dir() and not path.is_file():
        # a FIFO (opening it would block), a device (/dev/zero reads forever), a socket
        check_regular(path, "a .npz data set", MAX_NPZ_FILE_BYTES, DatasetError)
    if not path.is_file():
        raise DatasetError(f"{path}: not a file")
    size = check_regular(path, "a .npz data set", MAX_NPZ_FILE_BYTES, DatasetError)
    if size == 0:
        raise DatasetError(f"{path}: not a valid .npz file (an empty file, 0 bytes)")
    try:
        with path.open("rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if magic == b"\x93NUMPY":
        raise DatasetError(f"{path}: a single .npy array, not a .npz archive; save with "
                           "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
    if magic.startswith(b"PK\x05\x06"):  # a zip's end record first: no members
        raise DatasetError(f"{path}: empty archive, no arrays (expected "
                           f"{', '.join(_NPZ_KEYS)})")
    if not magic.startswith(b"PK\x03\x04"):
        raise DatasetError(f"{path}: not a valid .npz file (not a zip archive)")
    _check_npz_headers(path)  # shapes and sizes before anything is loaded
    try:
        return _read_npz(path, value_range)
    except MemoryError:  # within the declared limits, but more than this machine has
        raise DatasetError(f"{path}: out of memory loading its arrays; use a smaller data "
                           "set") from None


def _read_npz(path: Path, value_range: tuple[float, float] = (0.0, 1.0)) -> Dataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # zipfile, zlib, OS errors: never a traceback
        raise DatasetError(f"{path}: not a valid .npz file ({_one_line(exc)})") from None
    with archive:
        missing = [k for k in _NPZ_KEYS if k not in archive.files]
        if missing:
            raise DatasetError(
                f"{path}: missing key {', '.join(repr(k) for k in missing)} "
                f"(needs {', '.join(_NPZ_KEYS)}; has {', '.join(archive.files) or 'none'})")
        arrays = {}
        for key in _NPZ_KEYS:
            try:
                arrays[key] = archive[key]
            except MemoryError:
                raise
            except Exception as exc:  # corrupt member, pickled objects, ...
                raise DatasetError(
                    f"{path}: cannot read '{key}' ({_one_line(exc)})") from None
            if not isinstance(arrays[key], np.ndarray):
                raise DatasetError(f"{path}: '{key}' is not a .npy array member")

    x_train, scale_train = _npz_x(path, "x_train", arrays["x_train"], value_range)
    x_test, scale_test = _npz_x(path, "x_test", arrays["x_test"], value_range)
    y_train = _npz_y(path, "y_train", arrays["y_train"], len(x_train))
    y_test = _npz_y(path, "y_test", arrays["y_test"], len(x_test))
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(
            f"{path}: train samples have shape {_shape(x_train.shape[1:])} "
            f"but test samples {_shape(x_test.shape[1:])}")
    classes = int(max(y_train.max(), y_test.max())) + 1
    scaling = scale_train
    if scale_test != scale_train:
        scaling = f"{scale_train} (train), {scale_test} (test)"
    return Dataset(
        name=path.stem,
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        classes=classes,
        description=(
            f"user file {path.name}: {len(y_train)} train / {len(y_test)} test samples of "
            f"{_shape(x_train.shape[1:])}, {classes} classes, {scaling}"
        ),
    )


def _npz_x(path: Path, key: str, x: np.ndarray,
           value_range: tuple[float, float] = (0.0, 1.0)) -> tuple[np.ndarray, str]:
    """Validate and convert one x array to float32 (N, H, W, C) in the model's input range
    (default [0, 1])."""
    if x.size == 0:
        raise DatasetError(f"{path}: {key} is empty (shape {x.shape})")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DatasetError(
            f"{path}: {key} has shape {x.shape}, expected (N, H, W, C) or (N, H, W)")
    vlo, vhi = value_range
    if x.dtype == np.uint8 and (vlo, vhi) == (0.0, 1.0):
        out = x.astype(np.float32)
        out /= np.float32(255.0)  # in place: one float32 copy, the same values
        return out, "uint8 values divided by 255"
    if x.dtype.kind not in "fiub":  # numbers only: not timedelta64 (an 'integer' to numpy)
        raise DatasetError(f"{path}: {key} has dtype {x.dtype}, expected numbers")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise DatasetError(f"{path}: {key} holds NaN or infinite values")
    lo, hi = x.min(), x.max()
    if (vlo, vhi) != (0.0, 1.0):
        if lo < vlo or hi > vhi:
            raise DatasetError(
                f"{path}: {key} values range over [{lo:g}, {hi:g}] ({x.dtype}); the model's "
                f"input range is [{vlo:g}, {vhi:g}]")
        return x.astype(np.float32), f"values in the model's input range [{vlo:g}, {vhi:g}]"
    if lo < 0 or hi > 1:
        raise DatasetError(
            f"{path}: {key} values range over [{lo:g}, {hi:g}] ({x.dtype}); expected "
            f"floats in [0, 1] or uint8 0..255")
    return x.astype(np.float32), "values in [0, 1] used as is"


def _npz_y(path: Path, key: str, y: np.ndarray, n: int) -> np.ndarray:
    """Validate and convert one label array to int64 (N,) >= 0."""
    if y.size == 0:
        raise DatasetError(f"{path}: {key} is empty")
    if y.ndim != 1:
        raise DatasetError(f"{path}: {key} has shape {y.shape}, expected (N,)")
    if len(y) != n:
        raise DatasetError(
            f"{path}: {key} has {len(y)} labels but x_{key[2:]} has {n} samples")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise DatasetError(f"{path}: {key} holds NaN or infinite values")
        if not np.all(y == np.round(y)):
            raise DatasetError(f"{path}: {key} holds non-integer labels ({y.dtype})")
    elif y.dtype.kind not in "iub":  # not timedelta64, datetime64, strings, objects
        raise DatasetError(f"{path}: {key} holds non-integer labels ({y.dtype})")
    # checked before the cast to int64: uint64 labels above 2**63 would wrap to negatives
    lo, hi = y.min(), y.max()
    if lo < 0:
        raise DatasetError(f"{path}: {key} holds a negative label ({lo})")
    if hi > MAX_LABEL:
        raise DatasetError(f"{path}: {key} holds label {hi}; labels must be class indices "
                           f"0..{MAX_LABEL}")
    return y.astype(np.int64)


MAX_LABEL = 65_535          # class indices; a network's classes are far fewer
MAX_NPZ_BYTES = 1 << 30     # declared array bytes of a user .npz (1 GiB)
MAX_SAMPLE_VALUES = MAX_NPZ_BYTES // 4  # x values (train + test): 1 GiB as float32
MAX_NPZ_FILE_BYTES = 4 * GiB  # the file itself (compressed members can only be smaller)


def _check_npz_headers(path: Path) -> None:
    """Read the .npy headers of the members (no data) and refuse, in one line, arrays whose
    declared size is absurd or whose sample counts disagree, before anything is loaded."""
    import zipfile

    declared: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            names = {n.removesuffix(".npy"): n for n in zf.namelist()}
            for key in _NPZ_KEYS:
                if key not in names:
                    continue  # reported with the other missing keys
                with zf.open(names[key]) as f:
                    version = np.lib.format.read_magic(f)
                    try:
                        if version == (1, 0):
                            shape, _order, dtype = np.lib.format.read_array_header_1_0(f)
                        else:
                            shape, _order, dtype = np.lib.format.read_array_header_2_0(f)
                    except (ValueError, SyntaxError):  # numpy's own text names AST nodes
                        raise ValueError(f"member {names[key]}: its .npy header is not a "
                                         "valid array description") from None
                declared[key] = (tuple(int(d) for d in shape), dtype)
    except Exception as exc:  # bad zip, not an .npy member, bad header: one line
        raise DatasetError(f"{path}: not a valid .npz file ({_one_line(exc)})") from None
    if not names:
        raise DatasetError(f"{path}: empty archive, no arrays (expected "
                           f"{', '.join(_NPZ_KEYS)})")
    total = 0
    for shape, dtype in declared.values():
        if any(d < 0 for d in shape):
            raise DatasetError(f"{path}: not a valid .npz file (an array declares the "
                               f"negative shape {shape})")
        total += math.prod(shape) * dtype.itemsize
    if total > MAX_NPZ_BYTES:
        raise DatasetError(f"{path}: its arrays declare {total / 2**30:.1f} GiB; mcusim reads "
                           f"at most {MAX_NPZ_BYTES / 2**30:.0f} GiB of samples")
    values = sum(math.prod(declared[k][0]) for k in ("x_train", "x_test") if k in declared)
    if values > MAX_SAMPLE_VALUES:
        raise DatasetError(f"{path}: x_train and x_test hold {values:,} values, "
                           f"{values * 4 / 2**30:.1f} GiB as float32; mcusim loads at most "
                           f"{MAX_SAMPLE_VALUES:,} ({MAX_NPZ_BYTES / 2**30:.0f} GiB)")
    for part in ("train", "test"):
        x, y = declared.get(f"x_{part}"), declared.get(f"y_{part}")
        # only the plain case here (1-D labels, neither empty); the rest is said in detail
        # after loading
        if (x and y and len(y[0]) == 1 and x[0] and y[0][0] and x[0][0]
                and x[0][0] != y[0][0]):
            raise DatasetError(f"{path}: y_{part} has {y[0][0]} labels but x_{part} has "
                               f"{x[0][0]} samples")


# --------------------------------------------------------------------------- helpers


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _archive_loader(name: str):
    def load(seed: int) -> Dataset:
        del seed  # the archive's own split
        return _load_archive(_ARCHIVE[name])
    return load


_BUILTIN = {
    "digits": _load_digits,
    **{name: _archive_loader(name) for name in _ARCHIVE},
}
