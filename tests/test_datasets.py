"""Data set loading: the built-in digits and UCR/UEA time-series sets (aeon's bundled files),
user .npz files, check_fits."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from mcusim.errors import DatasetError, McusimError
from mcusim.fqt import datasets
from mcusim.fqt.datasets import Dataset, check_fits, dataset_names, load_dataset
from mcusim.model.zoo import load_model


def _assert_well_formed(ds: Dataset) -> None:
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == np.float32 and x.ndim == 4
        assert y.dtype == np.int64 and y.shape == (len(x),)
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert y.min() >= 0 and y.max() < ds.classes
    assert ds.x_train.shape[1:] == ds.x_test.shape[1:] == ds.input_shape
    assert ds.description and "\n" not in ds.description


def test_dataset_error_is_a_user_error():
    assert issubclass(DatasetError, McusimError)


def test_names():
    assert dataset_names() == ["basicmotions", "digits", "gunpoint", "italypowerdemand",
                               "japanesevowels"]


def test_unknown_name():
    with pytest.raises(DatasetError, match=r"unknown data set 'foo' \(built in: basicmotions, "
                       r"digits, gunpoint, italypowerdemand, japanesevowels; or a \.npz"):
        load_dataset("foo")


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> Dataset:
    pytest.importorskip("sklearn")
    return load_dataset("digits")


def test_digits_shapes_and_range(digits):
    _assert_well_formed(digits)
    assert digits.name == "digits"
    assert digits.classes == 10
    assert digits.input_shape == (8, 8, 1)
    assert len(digits.x_train) + len(digits.x_test) == 1797
    assert len(digits.x_test) == 360  # 20 %, rounded up by scikit-learn
    assert digits.x_train.max() == 1.0  # 16 / 16
    assert np.all(np.isin(digits.x_train * 16, np.arange(17)))  # only k/16 values


def test_digits_stratified(digits):
    for y in (digits.y_train, digits.y_test):
        counts = np.bincount(y, minlength=10)
        assert counts.min() > 0
    # stratified: each class's share of the test split is within one sample of 20 %
    total = np.bincount(digits.y_train, minlength=10) + np.bincount(digits.y_test, minlength=10)
    assert np.all(np.abs(np.bincount(digits.y_test, minlength=10) - 0.2 * total) <= 1)


def test_digits_deterministic(digits):
    again = load_dataset("DIGITS", seed=0)
    for a in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(digits, a), getattr(again, a))
    other = load_dataset("digits", seed=1)
    assert not np.array_equal(digits.y_test, other.y_test) or not np.array_equal(
        digits.x_test, other.x_test)
    # same samples overall, only split differently
    assert sorted(map(bytes, np.concatenate([digits.x_train, digits.x_test]))) == sorted(
        map(bytes, np.concatenate([other.x_train, other.x_test])))


def test_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    monkeypatch.setitem(sys.modules, "sklearn.model_selection", None)
    with pytest.raises(DatasetError, match=r"^the digits data set needs scikit-learn: pip install scikit-learn$"):
        load_dataset("digits")


# --------------------------------------------------------------------------- UCR/UEA sets

ARCHIVE_SETS = ("basicmotions", "gunpoint", "italypowerdemand", "japanesevowels")

# The archive's published sizes (timeseriesclassification.com, and aeon's loader docstrings):
# train, test, classes, steps (JapaneseVowels: padded to 32 from 7..29), channels; and the
# class counts of each split in the files.
PUBLISHED = {
    "basicmotions": (40, 40, 4, 100, 6, [10] * 4, [10] * 4),
    "gunpoint": (50, 150, 2, 150, 1, [24, 26], [76, 74]),
    "italypowerdemand": (67, 1029, 2, 24, 1, [34, 33], [513, 516]),
    "japanesevowels": (270, 370, 9, 32, 12, [30] * 9, [31, 35, 88, 44, 29, 24, 40, 50, 29]),
}
ZOO_MODEL = {"basicmotions": "imu-cnn", "gunpoint": "gunpoint-cnn",
             "italypowerdemand": "italypowerdemand-cnn", "japanesevowels": "japanesevowels-cnn"}


def _needs_aeon() -> None:
    """Skip unless aeon is installed (found without importing it: see `fake_aeon`)."""
    if importlib.util.find_spec("aeon") is None:
        pytest.skip("aeon (which bundles the UCR/UEA sets) is not installed: "
                    "pip install 'mcusim[imu]'")


@pytest.fixture(scope="module")
def archive_sets() -> dict[str, Dataset]:
    _needs_aeon()
    return {name: load_dataset(name) for name in ARCHIVE_SETS}


@pytest.mark.parametrize("name", ARCHIVE_SETS)
def test_archive_set_shapes_sizes_and_range(archive_sets, name):
    ds = archive_sets[name]
    n_train, n_test, classes, steps, channels, train_counts, test_counts = PUBLISHED[name]
    _assert_well_formed(ds)
    assert ds.name == name
    assert ds.x_train.shape == (n_train, 1, steps, channels)
    assert ds.x_test.shape == (n_test, 1, steps, channels)
    assert ds.input_shape == (1, steps, channels)
    assert ds.classes == classes
    assert np.bincount(ds.y_train, minlength=classes).tolist() == train_counts
    assert np.bincount(ds.y_test, minlength=classes).tolist() == test_counts
    # scaled per channel with the train split's own minimum and maximum: each channel of the
    # train split spans exactly [0, 1] (test values beyond are clipped)
    np.testing.assert_array_equal(ds.x_train.min(axis=(0, 1, 2)), np.zeros(channels))
    np.testing.assert_array_equal(ds.x_train.max(axis=(0, 1, 2)), np.ones(channels))
    assert f"{n_train} train / {n_test} test" in ds.description
    # the zoo model sized for it takes it as it is
    spec = load_model(ZOO_MODEL[name])
    check_fits(ds, spec.input_shape, spec.classes, spec.name)


def test_archive_sets_ignore_the_seed_and_names_fold_case(archive_sets):
    again = load_dataset("JapaneseVowels", seed=7)
    for a in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, a), getattr(archive_sets["japanesevowels"], a))


def test_japanesevowels_padding_repeats_the_last_frame(archive_sets):
    """Utterances of 7..29 frames become 32: the frames after an utterance's end repeat its
    last frame; the scaling is the train split's per-channel min-max."""
    ds = archive_sets["japanesevowels"]
    spec = datasets._ARCHIVE["japanesevowels"]
    (train, _, _), (test, _, _) = datasets._read_bundled(spec, datasets._aeon_dir())
    lengths = [len(c) for c in train + test]
    assert min(lengths) == 7 and max(lengths) == 29  # the archive's: none is cut
    raw = np.concatenate(train)  # (all train frames, 12)
    lo, span = raw.min(axis=0), raw.max(axis=0) - raw.min(axis=0)
    for x, cases in ((ds.x_train, train), (ds.x_test, test)):
        for i in (0, 1, len(cases) - 1):
            n = len(cases[i])
            want = np.clip((cases[i] - lo) / span, 0, 1).astype(np.float32)
            np.testing.assert_allclose(x[i, 0, :n], want, rtol=0, atol=1e-6)
            np.testing.assert_array_equal(x[i, 0, n:], np.repeat(x[i, 0, n - 1:n], 32 - n, 0))
    assert "padded at the end with the last frame" in ds.description


@pytest.fixture
def aeon_public_only(tmp_path, monkeypatch):
    """aeon installed, but its bundled files not where mcusim looks: the public loader reads
    them (aeon's data cache pointed at an empty folder, not the user's home)."""
    _needs_aeon()
    pytest.importorskip("aeon.datasets")
    monkeypatch.setenv("AEON_DATA", str(tmp_path / "aeon_data"))
    monkeypatch.setattr(datasets, "_bundled_folder", lambda root, problem: tmp_path / problem)


@pytest.mark.parametrize("name", ARCHIVE_SETS)
def test_public_loader_fallback_gives_identical_arrays(archive_sets, aeon_public_only, name):
    spec = datasets._ARCHIVE[name]
    assert datasets._read_bundled(spec, datasets._aeon_dir()) is None  # moved away
    ds = load_dataset(name)
    assert "via aeon's load_classification" in ds.description
    bundled = archive_sets[name]
    for a in ("x_train", "y_train", "x_test", "y_test"):
        got, want = getattr(ds, a), getattr(bundled, a)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert ds.classes == bundled.classes


@pytest.mark.parametrize("name", ARCHIVE_SETS)
def test_the_two_readers_read_the_same_values(name, tmp_path, monkeypatch):
    """Before padding and scaling: the .ts reader and aeon's load_classification agree bit
    for bit (values, labels, label order; aeon lower-cases label names)."""
    _needs_aeon()
    pytest.importorskip("aeon.datasets")
    monkeypatch.setenv("AEON_DATA", str(tmp_path / "aeon_data"))
    spec = datasets._ARCHIVE[name]
    ours = datasets._read_bundled(spec, datasets._aeon_dir())
    theirs = datasets._read_with_aeon(spec)
    assert ours is not None
    for (cases_a, y_a, labels_a), (cases_b, y_b, labels_b) in zip(ours, theirs, strict=True):
        assert [label.lower() for label in labels_a] == [label.lower() for label in labels_b]
        np.testing.assert_array_equal(y_a, y_b)
        assert len(cases_a) == len(cases_b)
        for a, b in zip(cases_a, cases_b, strict=True):
            assert a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_public_loader_fallback_never_downloads(aeon_public_only, monkeypatch):
    """A problem aeon does not list as present locally is an error, not a download."""
    import aeon.datasets
    import aeon.datasets.dataset_collections as collections

    monkeypatch.setattr(collections, "get_downloaded_tsc_tsr_datasets", lambda *a, **k: [])

    def no_download(*args, **kwargs):
        raise AssertionError("load_classification called: it would download")

    monkeypatch.setattr(aeon.datasets, "load_classification", no_download)
    with pytest.raises(DatasetError, match=r"^the gunpoint data set: aeon \S+ does not bundle "
                       r"GunPoint \(aeon 1\.6\.0 does\) and mcusim never downloads: "
                       r"pip install 'mcusim\[imu\]'$"):
        load_dataset("gunpoint")


def test_public_loader_failure_is_one_line(aeon_public_only, monkeypatch):
    import aeon.datasets

    def broken(*args, **kwargs):
        raise ValueError("a bad\nfile")

    monkeypatch.setattr(aeon.datasets, "load_classification", broken)
    with pytest.raises(DatasetError, match=r"^the italypowerdemand data set: aeon could not "
                       r"load ItalyPowerDemand \(a bad file\)$"):
        load_dataset("italypowerdemand")


def test_aeon_version_is_the_pinned_one():
    """The imu extra pins the aeon whose bundled files these tests describe."""
    _needs_aeon()
    import importlib.metadata

    assert importlib.metadata.version("aeon") == datasets.AEON_VERSION
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():  # the checkout (not the tests copied beside an installed wheel)
        assert f'imu = ["aeon=={datasets.AEON_VERSION}"]' in pyproject.read_text()


def _ts(labels: str, cases: list[tuple[list[list[float]], str]], dims: int = 2) -> str:
    lines = ["# a comment", "@problemName Fake", "@univariate false", f"@dimensions {dims}",
             "@equalLength true", "@seriesLength 3", f"@classLabel true {labels}", "@data"]
    for series, label in cases:
        lines.append(":".join(",".join(repr(v) for v in d) for d in series) + ":" + label)
    return "\n".join(lines) + "\n"


@pytest.fixture
def fake_aeon(tmp_path, monkeypatch) -> Path:
    """A stand-in aeon package folder holding a small BasicMotions-like pair of .ts files;
    importing aeon is made to fail, so the tests also show the reader never imports it."""
    pkg = tmp_path / "site" / "aeon"
    data = pkg / "datasets" / "data" / "BasicMotions"
    data.mkdir(parents=True)
    (data / "BasicMotions_TRAIN.ts").write_text(_ts("Up Down", [
        ([[0.0, 1.0, 2.0], [10.0, 10.0, 30.0]], "Up"),
        ([[4.0, 3.0, 2.0], [20.0, 10.0, 10.0]], "Down"),
        ([[1.0, 1.0, 1.0], [10.0, 20.0, 30.0]], "Down"),
    ]))
    (data / "BasicMotions_TEST.ts").write_text(_ts("Up Down", [
        ([[-4.0, 2.0, 8.0], [15.0, 15.0, 15.0]], "Down"),
    ]))
    monkeypatch.setattr(datasets, "_aeon_dir", lambda: pkg)
    for mod in [m for m in sys.modules if m == "aeon" or m.startswith("aeon.")] + ["aeon"]:
        monkeypatch.setitem(sys.modules, mod, None)  # `import aeon...` raises ImportError
    return data


def test_basicmotions_parser_on_fake_aeon(fake_aeon):
    ds = load_dataset("basicmotions")
    assert ds.x_train.shape == (3, 1, 3, 2) and ds.x_test.shape == (1, 1, 3, 2)
    assert ds.classes == 2
    np.testing.assert_array_equal(ds.y_train, [0, 1, 1])  # order of @classLabel
    np.testing.assert_array_equal(ds.y_test, [1])
    # channel 0 spans [0, 4] in train, channel 1 spans [10, 30]
    np.testing.assert_allclose(ds.x_train[0, 0], [[0.0, 0.0], [0.25, 0.0], [0.5, 1.0]])
    np.testing.assert_allclose(ds.x_test[0, 0], [[0.0, 0.25], [0.5, 0.25], [1.0, 0.25]])  # clipped
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert "from the aeon wheel" in ds.description


def test_unequal_lengths_are_padded_and_cut_on_fake_aeon(fake_aeon, monkeypatch):
    """JapaneseVowels' rule on a small fake: 4 steps; a 2-step case repeats its last step,
    a 6-step case keeps its first 4."""
    monkeypatch.setitem(datasets._ARCHIVE, "japanesevowels",
                        datasets._ARCHIVE["japanesevowels"].__class__(
                            "japanesevowels", "JapaneseVowels", "fake", "speakers 1..9",
                            steps=4))
    folder = fake_aeon.parent / "JapaneseVowels"
    folder.mkdir()
    (folder / "JapaneseVowels_TRAIN.ts").write_text(_ts("1 2", [
        ([[0.0, 10.0]], "1"),
        ([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], "2"),
    ], dims=1))
    (folder / "JapaneseVowels_TEST.ts").write_text(_ts("1 2", [([[5.0, 2.5, 2.5]], "2")], dims=1))
    ds = load_dataset("japanesevowels")
    assert ds.x_train.shape == (2, 1, 4, 1) and ds.x_test.shape == (1, 1, 4, 1)
    # train spans [0, 10] (the cut values 5, 6 are not part of the sample)
    np.testing.assert_allclose(ds.x_train[:, 0, :, 0], [[0.0, 1.0, 1.0, 1.0],
                                                       [0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_allclose(ds.x_test[0, 0, :, 0], [0.5, 0.25, 0.25, 0.25])
    assert "lengths 2..6: padded at the end with the last frame, cut after 4" in ds.description
    # the equal-length sets still refuse a case of another length
    (fake_aeon / "BasicMotions_TEST.ts").write_text(
        _ts("Up Down", [([[1.0, 2.0], [1.0, 2.0]], "Up")]))
    with pytest.raises(DatasetError, match="train cases have shape"):
        load_dataset("basicmotions")


@pytest.mark.parametrize(("text", "problem"), [
    (_ts("Up Down", [([[0.0, 1.0, 2.0]], "Up")]), "1 dimensions, @dimensions says 2"),
    (_ts("Up Down", [([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], "Sideways")]), "class 'Sideways' is not on the @classLabel line"),
    (_ts("Up Down", [([[0.0, 1.0], [1.0, 2.0, 3.0]], "Up")]), "dimensions of unequal length"),
    (_ts("Up Down", []), "no cases"),
    (_ts("Up Down", [([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], "Up")]).replace("1.0,2.0,3.0", "1.0,x,3.0"), "a value is not a number"),
    (_ts("Up Down", [([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], "Up")]).replace("@classLabel true Up Down\n", ""), "no '@classLabel true"),
    (_ts("Up Down", [([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], "Up"), ([[0.0, 1.0], [1.0, 2.0]], "Up")]), "case of 2 steps x 2 dimensions, earlier cases have 3 x 2"),
    (_ts("Up Down", [([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], "Up")]).replace("1.0,2.0,3.0", "1.0,nan,3.0"), "missing, NaN or infinite values"),
])
def test_basicmotions_malformed_ts(fake_aeon, text, problem):
    (fake_aeon / "BasicMotions_TRAIN.ts").write_text(text)
    with pytest.raises(DatasetError, match=r"BasicMotions_TRAIN\.ts") as info:
        load_dataset("basicmotions")
    assert problem in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ARCHIVE_SETS)
def test_archive_sets_without_aeon(monkeypatch, name):
    monkeypatch.setattr(datasets, "_aeon_dir", lambda: None)
    with pytest.raises(DatasetError, match=rf"^the {name} data set is bundled with aeon: pip install 'mcusim\[imu\]' \(or pip install aeon\)$"):
        load_dataset(name)


def test_cli_train_without_aeon_is_one_line(monkeypatch, capsys):
    from mcusim.cli import main

    monkeypatch.setattr(datasets, "_aeon_dir", lambda: None)
    assert main(["train", "japanesevowels-cnn", "--dataset", "japanesevowels",
                 "--mcu", "nRF52840"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "the japanesevowels data set is bundled with aeon: pip install 'mcusim[imu]'" in err


# --------------------------------------------------------------------------- .npz


def _good(n_train: int = 6, n_test: int = 4, shape: tuple[int, ...] = (5, 4, 2),
          dtype: type = np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if dtype == np.uint8:
        make = lambda n: rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)  # noqa: E731
    else:
        make = lambda n: rng.random((n, *shape)).astype(dtype)  # noqa: E731
    return {"x_train": make(n_train), "y_train": np.arange(n_train) % 3,
            "x_test": make(n_test), "y_test": np.array([0, 1, 2, 1])[:n_test]}


def _save(tmp_path: Path, arrays: dict[str, np.ndarray], name: str = "data.npz") -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_npz_float_round_trip(tmp_path):
    arrays = _good()
    ds = load_dataset(_save(tmp_path, arrays))
    _assert_well_formed(ds)
    assert ds.name == "data"
    assert ds.classes == 3
    assert ds.input_shape == (5, 4, 2)
    np.testing.assert_array_equal(ds.x_train, arrays["x_train"])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    assert "data.npz" in ds.description


def test_npz_uint8_and_3d(tmp_path):
    arrays = _good(shape=(7, 3), dtype=np.uint8)
    ds = load_dataset(str(_save(tmp_path, arrays)))  # a str path works too
    _assert_well_formed(ds)
    assert ds.input_shape == (7, 3, 1)
    np.testing.assert_allclose(ds.x_train[..., 0], arrays["x_train"] / 255.0, rtol=1e-6)
    assert "divided by 255" in ds.description


def test_npz_float64_labels_and_compressed(tmp_path):
    arrays = _good(dtype=np.float64)
    arrays["y_train"] = arrays["y_train"].astype(np.float32)  # whole numbers: accepted
    path = tmp_path / "c.npz"
    np.savez_compressed(path, **arrays)
    ds = load_dataset(path)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, np.arange(6) % 3)


def _bad(**changes):
    arrays = _good()
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    return arrays


@pytest.mark.parametrize(("arrays", "problem"), [
    (_bad(y_test=None), "missing key 'y_test'"),
    (_bad(x_train=None, y_train=None), "missing key 'x_train', 'y_train'"),
    (_bad(y_train=np.arange(5)), "y_train has 5 labels but x_train has 6 samples"),
    (_bad(x_test=np.zeros((4, 5, 4, 1), np.float32)), "train samples have shape (5, 4, 2) but test samples (5, 4, 1)"),
    (_bad(y_train=np.array([0, 1, 2, 0.5, 1, 2])), "y_train holds non-integer labels"),
    (_bad(y_test=np.array(["a", "b", "c", "d"])), "y_test holds non-integer labels"),
    (_bad(y_test=np.array([0, 1, -1, 2])), "y_test holds a negative label (-1)"),
    (_bad(y_train=np.array([0, 1, np.nan, 0, 1, 2])), "y_train holds NaN or infinite values"),
    (_bad(x_train=np.full((6, 5, 4, 2), np.nan, np.float32)), "x_train holds NaN or infinite values"),
    (_bad(x_test=np.full((4, 5, 4, 2), np.inf)), "x_test holds NaN or infinite values"),
    (_bad(x_train=np.full((6, 5, 4, 2), 3.5)), "x_train values range over [3.5, 3.5]"),
    (_bad(x_train=np.arange(6 * 40, dtype=np.int16).reshape(6, 5, 4, 2)), "x_train values range over [0, 239] (int16)"),
    (_bad(x_train=np.zeros((0, 5, 4, 2), np.float32), y_train=np.zeros(0, np.int64)), "x_train is empty"),
    (_bad(y_test=np.zeros(0, np.int64)), "y_test is empty"),
    # uint64 labels past 2**63 used to wrap to negatives after the check
    (_bad(y_train=np.array([0, 1, 2, 0, 1, 2**64 - 1], np.uint64)), "y_train holds label 18446744073709551615"),
    (_bad(y_train=np.array([0, 1, 2, 0, 1, 2**63], np.uint64)), "y_train holds label 9223372036854775808"),
    (_bad(y_test=np.array([0, 1, 2, 70000])), "labels must be class indices 0..65535"),
    # numpy counts timedelta64 as an integer type
    (_bad(x_train=np.zeros((6, 5, 4, 2), "m8[s]")), "x_train has dtype timedelta64[s], expected numbers"),
    (_bad(y_train=np.zeros(6, "m8[s]")), "y_train holds non-integer labels"),
    (_bad(x_train=np.zeros((6, 40), np.float32)), "x_train has shape (6, 40), expected (N, H, W, C) or (N, H, W)"),
    (_bad(y_train=np.zeros((6, 1), np.int64)), "y_train has shape (6, 1), expected (N,)"),
])
def test_npz_bad(tmp_path, arrays, problem):
    path = _save(tmp_path, arrays, "bad.npz")
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    message = str(info.value)
    assert message.startswith(str(path) + ": ")
    assert problem in message
    assert "\n" not in message


def test_npz_not_a_file(tmp_path):
    with pytest.raises(DatasetError, match=r"missing\.npz: not a file$"):
        load_dataset(tmp_path / "missing.npz")
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(DatasetError, match=r"dir\.npz: not a file$"):
        load_dataset(tmp_path / "dir.npz")


@pytest.mark.parametrize("cut", [10, 100, 300, -20])
def test_npz_truncated(tmp_path, cut):
    good = _save(tmp_path, _good(), "good.npz").read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(good[:cut])
    with pytest.raises(DatasetError, match=r"cut\.npz: (not a valid \.npz file|cannot read)") as info:
        load_dataset(path)
    assert "\n" not in str(info.value)


def test_npz_corrupt_compressed_member(tmp_path):
    path = tmp_path / "z.npz"
    np.savez_compressed(path, **_good())
    data = bytearray(path.read_bytes())
    start = data.index(b"x_train.npy") + 40  # inside the deflated stream
    data[start:start + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"z\.npz: (not a valid \.npz file|cannot read)"):
        load_dataset(path)


@pytest.mark.parametrize(("content", "problem"), [
    (b"this is not numpy data at all", "not a valid .npz file (not a zip archive)"),
    (b"", "not a valid .npz file"),
])
def test_npz_garbage(tmp_path, content, problem):
    path = tmp_path / "garbage.npz"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert problem in str(info.value)


def test_npy_instead_of_npz(tmp_path):
    path = tmp_path / "single.npz"
    with path.open("wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(DatasetError, match=r"single\.npz: a single \.npy array, not a \.npz archive"):
        load_dataset(path)


def test_existing_file_without_npz_suffix(tmp_path):
    path = tmp_path / "data.bin"
    np.savez(path.open("wb"), **_good())
    assert load_dataset(path).classes == 3


def test_builtin_name_wins_over_file(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    Path("digits").write_bytes(b"garbage")
    assert load_dataset("digits").classes == 10  # a str name: the built-in set
    with pytest.raises(DatasetError, match=r"not a valid \.npz"):
        load_dataset(Path("digits"))  # a Path to an existing file: the file


# --------------------------------------------------------------------------- check_fits


def test_check_fits(digits):
    check_fits(digits, (8, 8, 1), 10, "digits-cnn")
    check_fits(digits, [8, 8, 1], 10, "digits-cnn")  # a list from TOML works too


def test_check_fits_shape_mismatch(digits):
    with pytest.raises(DatasetError, match=r"^data set 'digits' has samples of shape \(8, 8, 1\) \(H, W, C\) but model 'emnist-cnn' expects input \(28, 28, 1\)$"):
        check_fits(digits, (28, 28, 1), 10, "emnist-cnn")


def test_check_fits_class_mismatch(digits):
    with pytest.raises(DatasetError, match=r"^data set 'digits' has 10 classes but model 'imu' has 4$"):
        check_fits(digits, (8, 8, 1), 4, "imu")


def test_npz_declaring_huge_arrays_is_refused_before_loading(tmp_path):
    """A small file whose .npy header declares gigabytes: refused from the headers alone
    (a zero-filled array compresses to almost nothing)."""
    import zipfile

    path = tmp_path / "huge.npz"
    good = _good()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in good.items():
            with zf.open(f"{key}.npy", "w") as f:
                if key == "x_train":  # a header declaring 1.1 GiB, then only 64 bytes
                    np.lib.format.write_array_header_1_0(
                        f, {"descr": "<f4", "fortran_order": False,
                            "shape": (3000, 1000, 100, 1)})
                    f.write(bytes(64))
                else:
                    np.lib.format.write_array(f, arr)
    assert path.stat().st_size < 2**16
    with pytest.raises(DatasetError, match=r"declare 1\.1 GiB"):
        load_dataset(str(path))


def test_npz_with_a_member_that_is_not_an_array(tmp_path):
    import zipfile

    path = tmp_path / "odd.npz"
    np.savez(path, **_good())
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("notes.txt", "hello")
    assert load_dataset(str(path)).classes == 3  # extra members are ignored
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(bad, "w") as zf:
        for key, arr in _good().items():
            if key == "y_test":
                zf.writestr("y_test", b"not an npy member")
                continue
            with zf.open(f"{key}.npy", "w") as f:
                np.lib.format.write_array(f, arr)
    with pytest.raises(DatasetError):
        load_dataset(str(bad))


# --------------------------------------------------------------------------- hostile .npz


def test_npz_empty_archive(tmp_path):
    import zipfile

    path = tmp_path / "empty.npz"
    zipfile.ZipFile(path, "w").close()  # a zip with nothing in it: just the end record
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value) == (f"{path}: empty archive, no arrays (expected x_train, y_train, "
                               "x_test, y_test)")


def test_npz_empty_file(tmp_path):
    path = tmp_path / "zero.npz"
    path.write_bytes(b"")
    with pytest.raises(DatasetError, match=r"zero\.npz: not a valid \.npz file \(an empty "
                       r"file, 0 bytes\)$"):
        load_dataset(path)


def test_npz_paths_that_are_not_regular_files(tmp_path):
    import os

    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match=r"pipe\.npz: is a FIFO \(named pipe\), not a \.npz "
                       r"data set$"):
        load_dataset(fifo)  # opening it would block until a writer came
    with pytest.raises(DatasetError, match=r"^/dev/zero: is a character device, not a \.npz "
                       r"data set$"):
        load_dataset("/dev/zero")  # no .npz suffix: still a path, not a built-in name
    big = tmp_path / "big.npz"
    with open(big, "wb") as f:  # sparse: no disk space
        f.truncate(5 << 30)
    with pytest.raises(DatasetError, match=r"big\.npz: 5\.0 GiB, larger than the 4\.0 GiB"):
        load_dataset(big)


def test_npz_path_with_a_newline_stays_on_one_line(tmp_path):
    d = tmp_path / "a\nb"
    d.mkdir()
    with pytest.raises(DatasetError) as info:
        load_dataset(d / "x.npz")
    assert "\n" not in str(info.value) and "a\\nb" in str(info.value)


def _zip_with(tmp_path, name: str, members: dict[str, bytes | np.ndarray]):
    import io
    import zipfile

    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        for key, value in members.items():
            if isinstance(value, np.ndarray):
                buf = io.BytesIO()
                np.save(buf, value)
                value = buf.getvalue()
            zf.writestr(key, value)
    return path


def test_npz_member_that_is_not_npy_data(tmp_path):
    members = {f"{k}.npy": v for k, v in _good().items()}
    members["x_train.npy"] = b"hello, this is text"
    path = _zip_with(tmp_path, "text.npz", members)
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: not a valid .npz file (") and "\n" not in msg


@pytest.mark.parametrize(("x", "problem"), [
    (np.zeros((6, 5, 4, 2), np.complex64), "x_train has dtype complex64, expected numbers"),
    (np.zeros((6, 5, 4, 2), "M8[s]"), "x_train has dtype datetime64[s], expected numbers"),
    (np.zeros((6, 5, 4, 2), "m8[ms]"), "x_train has dtype timedelta64[ms], expected numbers"),
    (np.zeros((6, 5, 4, 2), "U3"), "x_train has dtype <U3, expected numbers"),
    (np.zeros((6, 5, 4, 2), [("a", "<f4")]), "expected numbers"),
    (np.full((6, 5, 4, 2), 0.5, object), "cannot read 'x_train'"),  # pickled: refused
])
def test_npz_x_dtypes_that_are_not_numbers(tmp_path, x, problem):
    arrays = _good()
    arrays["x_train"] = x
    path = tmp_path / "dtype.npz"
    np.savez(path, **arrays)  # object arrays are pickled by savez
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert problem in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("label", "dtype", "shown"), [
    (2**64 - 1, np.uint64, "18446744073709551615"),
    (2**63, np.uint64, "9223372036854775808"),
    (2.0**63, np.float64, "9.223372036854776e+18"),  # int64(2.0**63) would overflow
    (1e300, np.float64, "1e+300"),
    (65536, np.int64, "65536"),
])
def test_npz_labels_past_the_class_range(tmp_path, label, dtype, shown):
    arrays = _good()
    y = arrays["y_train"].astype(dtype)
    y[-1] = label
    arrays["y_train"] = y
    path = _save(tmp_path, arrays, "labels.npz")
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value) == (f"{path}: y_train holds label {shown}; labels must be class "
                               "indices 0..65535")


def test_npz_largest_label_is_accepted(tmp_path):
    arrays = _good()
    arrays["y_train"] = np.array([0, 1, 2, 0, 1, 65535], np.uint64)
    ds = load_dataset(_save(tmp_path, arrays, "wide.npz"))
    assert ds.classes == 65536 and ds.y_train.dtype == np.int64 and ds.y_train[-1] == 65535


def test_npz_uint8_scaling_is_x_over_255_in_float32(tmp_path):
    arrays = _good(dtype=np.uint8)
    ds = load_dataset(_save(tmp_path, arrays, "u8.npz"))
    want = arrays["x_train"].astype(np.float32) / np.float32(255.0)
    assert ds.x_train.dtype == np.float32
    np.testing.assert_array_equal(ds.x_train, want)


def _declaring(tmp_path, name: str, x_header: dict) -> Path:
    """A .npz whose x_train member declares `x_header` but holds 64 bytes."""
    import zipfile

    path = tmp_path / name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in _good().items():
            with zf.open(f"{key}.npy", "w") as f:
                if key == "x_train":
                    np.lib.format.write_array_header_1_0(f, x_header)
                    f.write(bytes(64))
                else:
                    np.lib.format.write_array(f, arr)
    return path


def test_npz_samples_past_1_gib_as_float32_are_refused_before_loading(tmp_path):
    # 300,000,000 uint8 values: 0.28 GiB declared, but 1.2e9 bytes = 1.1 GiB as float32
    path = _declaring(tmp_path, "u8big.npz", {"descr": "|u1", "fortran_order": False,
                                              "shape": (3_000_000, 10, 10, 1)})
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    msg = str(info.value)
    # x_train 3,000,000 x 10 x 10 x 1 plus x_test 4 x 5 x 4 x 2 = 160 values
    assert "x_train and x_test hold 300,000,160 values, 1.1 GiB as float32" in msg
    assert "at most 268,435,456" in msg and "\n" not in msg


def test_npz_negative_declared_shape(tmp_path):
    path = _declaring(tmp_path, "neg.npz", {"descr": "<f4", "fortran_order": False,
                                            "shape": (-6, 5, 4, 2)})
    with pytest.raises(DatasetError, match=r"neg\.npz: not a valid \.npz file \(an array "
                       r"declares the negative shape \(-6, 5, 4, 2\)\)$"):
        load_dataset(path)


def test_npz_out_of_memory_is_one_line(tmp_path, monkeypatch):
    """Within the declared limits but more than this machine has: a DatasetError."""
    path = _save(tmp_path, _good(), "fine.npz")

    def no_memory(path, *args):
        raise MemoryError

    monkeypatch.setattr(datasets, "_read_npz", no_memory)
    with pytest.raises(DatasetError, match=r"fine\.npz: out of memory loading its arrays"):
        load_dataset(path)


# ---------------------------------------------------------------------- models' input ranges


def test_npz_in_a_models_input_range(tmp_path):
    """A model with input_range [-5, 30] takes samples in those units (uint8 as is)."""
    arrays = _good()
    arrays["x_train"] = arrays["x_train"] * 35 - 5
    arrays["x_test"] = arrays["x_test"] * 35 - 5
    ds = load_dataset(_save(tmp_path, arrays), value_range=(-5.0, 30.0))
    np.testing.assert_array_equal(ds.x_train, arrays["x_train"])
    u8 = _good(dtype=np.uint8)
    ds = load_dataset(_save(tmp_path, u8, "u8.npz"), value_range=(0.0, 255.0))
    np.testing.assert_array_equal(ds.x_train, u8["x_train"].astype(np.float32))
    with pytest.raises(DatasetError, match=r"range over \[-4.9.*, 29.9.*\].*input range is \[0, 1.5\]"):
        load_dataset(_save(tmp_path, arrays, "d.npz"), value_range=(0.0, 1.5))
    with pytest.raises(DatasetError, match=r"'digits' is scaled to \[0, 1\] but the model's "
                                           r"input range is \[0, 255\]"):
        load_dataset("digits", value_range=(0.0, 255.0))


@pytest.mark.parametrize("rng", [(0.0, 1.0), (-123.4, 25.73), (0.0, 255.0)])
def test_quantize_inputs_matches_the_input_range_record(rng):
    """uint8 input q with the "input.r" record's scale s and zero z: s (q - z) is within
    half a step of the real input (the definition of nearest quantization)."""
    from mcusim.fqt.quant import F, quantize_inputs, range_params

    lo, hi = rng
    x = np.random.default_rng(1).uniform(lo, hi, (50, 3, 2, 1))
    q = quantize_inputs(x, rng).astype(np.float64)
    s, z = range_params(F(lo), F(hi))
    err = np.abs(float(s) * (q - z) - x.reshape(50, -1))
    assert err.max() <= 0.5 * float(s) * (1 + 1e-5) + 1e-9
