"""npz group: user data sets (`--dataset FILE.npz`) for digits-cnn (8x8x1, 10 classes).

* keys: missing, misspelled, a member that is not .npy, extra members;
* shapes: label/sample counts differ, 1-D/5-D x, (N, 1) labels, 0-d labels, empty arrays,
  zero-size dims, train/test sample shapes differ, a shape the model does not take;
* labels: uint64 2**64-1 and 2**63, negative, >= classes, 65535/65536, fractional, NaN,
  inf, bool, strings, objects (pickled), datetime64, complex;
* x: timedelta64, datetime64, complex, object, strings, structured, NaN, inf, values
  outside [0, 1], int64 extremes; bool/int/float16/big-endian that are valid;
* .npy headers declaring huge shapes over tiny data, a negative dimension, a huge string
  dtype, truncated data; a 470 MB array of the wrong sample shape (deflated to ~0.5 MB);
* containers: empty zip, not a zip, a bare .npy, truncated zip, CRC error, "encrypted" and
  unsupported compression flags; non-regular paths.

Commands: `train digits-cnn -d FILE --epochs 1 --mcu nRF52840 --no-baseline --json`, some
`step digits-cnn -d FILE --mcu RP2040 --json` and `profile digits-cnn -d FILE --mcu nRF52840
--json`.  Oracle: exit 2 naming the file, quickly and within 2 GiB; valid re-encodings of
the base arrays (compressed, (N, H, W) x, float/uint8/int32 labels, big-endian float32,
float64 x, an extra member) train to exactly the base file's record.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .runner import Case

N_TRAIN, N_TEST = 30, 10


def _base() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.random((N_TRAIN + N_TEST, 8, 8, 1)).astype(np.float32)
    y = np.arange(N_TRAIN + N_TEST) % 10
    return {"x_train": x[:N_TRAIN], "y_train": y[:N_TRAIN].astype(np.int64),
            "x_test": x[N_TRAIN:], "y_test": y[N_TRAIN:].astype(np.int64)}


_HOST = ("wall_s", "samples_per_s", "dataset", "description")


def _strip(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in _HOST}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def compare_train(out: Any, ref: Any) -> str | None:
    a, b = _strip(out), _strip(ref)
    if a == b:
        return None
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            return f"{k} = {str(a.get(k))[:100]}, the base file gives {str(b.get(k))[:100]}"
    return "differs"


def _npy_header(shape: tuple[int, ...] | str, descr: str = "<f4", fortran: bool = False) -> bytes:
    shape_text = shape if isinstance(shape, str) else repr(tuple(shape))
    d = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape_text}, }}"
    pad = 64 - (10 + len(d) + 1) % 64
    h = (d + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h


def _npy(a: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=allow_pickle)
    return buf.getvalue()


def _zip(members: dict[str, bytes], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _arrays_zip(arrays: dict[str, Any], compress: bool = False) -> bytes:
    return _zip({f"{k}.npy": (v if isinstance(v, bytes) else _npy(np.asarray(v),
                                                                  allow_pickle=True))
                 for k, v in arrays.items()}, compress)


def _deflated_zeros_member(name: str, header: bytes, nbytes: int) -> bytes:
    """A zip with one deflated member: `header` then `nbytes` zero bytes (streamed)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    crc = zlib.crc32(header)
    parts = [comp.compress(header)]
    chunk = bytes(1 << 22)
    left = nbytes
    while left:
        c = chunk if left >= len(chunk) else bytes(left)
        crc = zlib.crc32(c, crc)
        parts.append(comp.compress(c))
        left -= len(c)
    parts.append(comp.flush())
    data = b"".join(parts)
    usize = len(header) + nbytes
    fn = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data),
                        usize, len(fn), 0) + fn
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc,
                          len(data), usize, len(fn), 0, 0, 0, 0, 0, 0) + fn
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central),
                      len(local) + len(data), 0)
    return local + data + central + end


def generate(work: Path) -> list[Case]:
    d = work / "npz"
    d.mkdir(parents=True, exist_ok=True)
    base = _base()
    cases: list[Case] = []
    n = [0]

    def argv(cmd: str, path: str) -> list[str]:
        return {"train": ["train", "digits-cnn", "-d", path, "--epochs", "1", "--mcu",
                          "nRF52840", "--no-baseline", "--json"],
                "step": ["step", "digits-cnn", "-d", path, "--mcu", "RP2040", "--json"],
                "profile": ["profile", "digits-cnn", "-d", path, "--mcu", "nRF52840",
                            "--json"]}[cmd]

    def add(name: str, content: bytes | None, note: str, expect: set[int] | None = None, *,
            cmd: str = "train", path: str | None = None, ref: bool = False,
            is_reference: bool = False) -> None:
        n[0] += 1
        if path is None:
            path = str(d / f"{n[0]:03d}-{name}.npz")
            Path(path).write_bytes(content)  # type: ignore[arg-type]
        stem = Path(path).stem
        cases.append(Case(group="npz", name=f"{cmd}:{name}", argv=argv(cmd, path),
                          expect=expect or {2}, note=note,
                          ref="train:base" if ref else None,
                          compare=compare_train if ref else None, mention=(stem,),
                          files=(path,), is_reference=is_reference))

    def arrays(**changes: Any) -> dict[str, Any]:
        a: dict[str, Any] = dict(base)
        for k, v in changes.items():
            if v is None:
                a.pop(k, None)
            else:
                a[k] = v
        return a

    def with_(name: str, note: str, expect: set[int] | None = None, cmd: str = "train",
              ref: bool = False, compress: bool = False, **changes: Any) -> None:
        add(name, _arrays_zip(arrays(**changes), compress), note, expect, cmd=cmd, ref=ref)

    # ------------------------------------------------------------------ reference + valid
    add("base", _arrays_zip(base), "the base arrays", {0}, is_reference=True)
    with_("compressed", "np.savez_compressed of the same arrays", {0}, ref=True, compress=True)
    with_("x-3d", "x as (N, 8, 8)", {0}, ref=True, x_train=base["x_train"][..., 0],
          x_test=base["x_test"][..., 0])
    with_("y-float-whole", "labels as float64 whole numbers", {0}, ref=True,
          y_train=base["y_train"].astype(np.float64), y_test=base["y_test"].astype(np.float64))
    with_("y-uint8", "labels as uint8", {0}, ref=True, y_train=base["y_train"].astype(np.uint8),
          y_test=base["y_test"].astype(np.uint8))
    with_("y-int32-be", "labels as big-endian int32", {0}, ref=True,
          y_train=base["y_train"].astype(">i4"), y_test=base["y_test"].astype(">i4"))
    with_("x-float32-be", "x as big-endian float32", {0}, ref=True,
          x_train=base["x_train"].astype(">f4"), x_test=base["x_test"].astype(">f4"))
    with_("x-float64", "x as float64 (exact float32 values)", {0}, ref=True,
          x_train=base["x_train"].astype(np.float64), x_test=base["x_test"].astype(np.float64))
    with_("extra-member", "an extra array z", {0}, ref=True, z=np.arange(3))
    with_("x-bool", "x as bool (0/1 values)", {0}, x_train=base["x_train"] > 0.5,
          x_test=base["x_test"] > 0.5)
    with_("x-float16", "x as float16", {0}, x_train=base["x_train"].astype(np.float16),
          x_test=base["x_test"].astype(np.float16))
    with_("x-uint8", "x as uint8 0..255", {0},
          x_train=(base["x_train"] * 255).astype(np.uint8),
          x_test=(base["x_test"] * 255).astype(np.uint8))

    # ------------------------------------------------------------------ keys
    with_("no-y_test", "y_test missing", y_test=None)
    add("no-keys", _arrays_zip({"a": np.zeros(3), "b": np.zeros(3)}), "only a and b")
    with_("key-case", "X_train instead of x_train", x_train=None, X_train=base["x_train"])
    add("member-not-npy", _zip({**{f"{k}.npy": _npy(v) for k, v in base.items()
                                   if k != "x_train"}, "x_train.npy": b"not an npy"}),
        "x_train.npy holds text")
    add("member-no-suffix", _zip({**{f"{k}.npy": _npy(v) for k, v in base.items()
                                     if k != "y_train"}, "y_train": b"\x00" * 30}),
        "y_train without .npy, raw bytes")
    add("member-directory", _zip({**{f"{k}.npy": _npy(v) for k, v in base.items()
                                     if k != "y_test"}, "y_test.npy/": b""}),
        "y_test.npy/ a directory entry")

    # ------------------------------------------------------------------ shapes
    with_("y-count-mismatch", "30 samples, 29 labels", y_train=base["y_train"][:-1])
    with_("x-1d", "x_train 1-D", x_train=np.zeros(30, np.float32))
    with_("x-5d", "x_train 5-D", x_train=np.zeros((30, 8, 8, 1, 1), np.float32))
    with_("y-2d", "labels (N, 1)", y_train=base["y_train"][:, None])
    with_("y-0d", "labels a scalar", y_train=np.int64(3))
    with_("x-empty", "no training samples", x_train=np.zeros((0, 8, 8, 1), np.float32),
          y_train=np.zeros(0, np.int64))
    with_("x-zero-dim", "samples 0x8x1", x_train=np.zeros((30, 0, 8, 1), np.float32))
    with_("train-test-shapes", "test samples 7x8", x_test=np.zeros((10, 7, 8, 1), np.float32))
    with_("wrong-sample-shape", "samples 8x8x2 for an 8x8x1 model", cmd="step",
          x_train=np.zeros((30, 8, 8, 2), np.float32), x_test=np.zeros((10, 8, 8, 2), np.float32))
    with_("x-scalar", "x_train a 0-d array", x_train=np.float32(0.5))

    # ------------------------------------------------------------------ labels
    for i, (name, y, note) in enumerate((
            ("y-uint64-max", np.full(30, 2**64 - 1, np.uint64), "uint64 2**64-1"),
            ("y-uint64-2p63", np.full(30, 2**63, np.uint64), "uint64 2**63"),
            ("y-negative", np.full(30, -1, np.int8), "label -1"),
            ("y-int64-min", np.full(30, -(2**63), np.int64), "label -2**63"),
            ("y-ge-classes", np.full(30, 10, np.int64), "label 10 for 10 classes"),
            ("y-65535", np.full(30, 65535, np.int64), "label 65535"),
            ("y-65536", np.full(30, 65536, np.int64), "label 65536"),
            ("y-2p31", np.full(30, 2**31, np.int64), "label 2**31"),
            ("y-fractional", np.full(30, 1.5), "label 1.5"),
            ("y-nan", np.full(30, np.nan), "label NaN"),
            ("y-inf", np.full(30, np.inf), "label inf"),
            ("y-float-huge", np.full(30, 1e300), "label 1e300"),
            ("y-bool", np.ones(30, bool), "bool labels (2 classes; y_test too)"),
            ("y-str", np.array(["1"] * 30), "string labels"),
            ("y-object", np.array([1] * 29 + [None], dtype=object), "object labels (pickle)"),
            ("y-datetime", np.array(["2020-01-01"] * 30, dtype="datetime64[D]"),
             "datetime64 labels"),
            ("y-timedelta", np.arange(30).astype("timedelta64[s]"), "timedelta64 labels"),
            ("y-complex", np.ones(30, np.complex64), "complex labels"))):
        extra = {"y_test": np.ones(10, bool)} if name == "y-bool" else {}
        with_(name, note, cmd="step" if i % 5 == 4 else "train", y_train=y, **extra)

    # ------------------------------------------------------------------ x dtypes and values
    shp = (30, 8, 8, 1)
    for i, (name, x, note) in enumerate((
            ("x-timedelta", np.zeros(shp, "timedelta64[s]"), "timedelta64 x"),
            ("x-datetime", np.zeros(shp, "datetime64[s]"), "datetime64 x"),
            ("x-complex", np.zeros(shp, np.complex64), "complex x"),
            ("x-object", np.full(shp, 0.5, dtype=object), "object x (pickle)"),
            ("x-str", np.full(shp, "0.5"), "string x"),
            ("x-structured", np.zeros(shp, [("a", "f4")]), "structured x"),
            ("x-void", np.zeros(shp, "V4"), "void x"),
            ("x-nan", np.where(np.arange(64 * 30).reshape(shp) == 7, np.nan,
                               base["x_train"]).astype(np.float32), "one NaN in x"),
            ("x-inf", np.full(shp, np.inf, np.float32), "inf x"),
            ("x-above-1", base["x_train"] * 2, "x up to 2"),
            ("x-negative", base["x_train"] - 0.5, "negative x"),
            ("x-int64-extremes", np.full(shp, 2**63 - 1, np.int64), "int64 max"),
            ("x-uint16", np.full(shp, 65535, np.uint16), "uint16 65535"),
            ("x-float64-huge", np.full(shp, 1e308), "1e308"))):
        with_(name, note, cmd="profile" if i % 5 == 4 else "train", x_train=x)
    with_("x-test-nan", "NaN only in x_test",
          x_test=np.full((10, 8, 8, 1), np.nan, np.float32))

    # ------------------------------------------------------------------ lying headers
    def header_case(name: str, key: str, header: bytes, note: str, payload: bytes = b"") -> None:
        members = {f"{k}.npy": _npy(v) for k, v in base.items()}
        members[f"{key}.npy"] = header + payload
        add(name, _zip(members), note)

    header_case("hdr-huge-x", "x_train", _npy_header((10**12, 8, 8, 1)), "x declares 10**12 "
                "samples", b"\0" * 64)
    header_case("hdr-huge-y", "y_train", _npy_header((2**40,), "<i8"), "y declares 2**40 labels")
    header_case("hdr-overflow", "x_train", _npy_header((2**63, 2**63, 1, 1)),
                "shape product overflows int64")
    header_case("hdr-negative", "x_train", _npy_header("(-1, 8, 8, 1)"), "negative dimension")
    header_case("hdr-str-huge", "y_train", _npy_header((30,), "<U1000000000"),
                "string dtype of 4 GB per item")
    header_case("hdr-object", "x_train", _npy_header((30, 8, 8, 1), "|O"), "object dtype header")
    header_case("hdr-truncated", "x_train", _npy_header((30, 8, 8, 1)), "data cut short",
                b"\0" * 100)
    header_case("hdr-garbage-dict", "x_train", b"\x93NUMPY\x01\x00" + struct.pack("<H", 16)
                + b"__import__('os')", "header not a dict literal")
    header_case("hdr-bad-version", "x_train", b"\x93NUMPY\x09\x00" + b"\0" * 60,
                "npy format version 9.0")
    header_case("hdr-shape-string", "x_train", _npy_header("'big'"), "shape a string")
    header_case("hdr-fortran", "x_train", _npy_header((30, 8, 8, 1), fortran=True),
                "fortran order, data too short", b"\0" * 64)
    big = 600_000 * 28 * 28  # 470 MB of uint8 samples of the wrong shape, deflated
    zbomb = _deflated_zeros_member("x_train.npy", _npy_header((600_000, 28, 28, 1), "|u1"), big)
    members = {f"{k}.npy": _npy(v) for k, v in base.items() if k != "x_train"}
    buf = io.BytesIO(zbomb)  # append the other members to the deflated one
    with zipfile.ZipFile(buf, "a") as z:
        for k, v in members.items():
            z.writestr(k, v)
    add("deflated-470mb-wrong-shape", buf.getvalue(),
        "470 MB of 28x28 uint8 samples (0.5 MB deflated) for an 8x8 model")

    # ------------------------------------------------------------------ containers
    good = _arrays_zip(base)
    add("empty-zip", _zip({}), "a zip with no members")
    add("not-zip", b"hello, not a zip\n" * 4, "text")
    add("bare-npy", _npy(base["x_train"]), "a single .npy array")
    add("truncated-zip", good[: len(good) // 2], "first half of a valid .npz")
    add("zip-only-local-header", good[:30], "30 bytes of a zip")
    crc = bytearray(good)
    crc[200] ^= 0xFF  # inside the first member's data
    add("crc-error", bytes(crc), "a flipped data byte (CRC mismatch)")
    enc = bytearray(good)
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = enc.find(sig)
        while i != -1:
            enc[i + flag_at] |= 1
            i = enc.find(sig, i + 4)
    add("encrypted-flag", bytes(enc), "members marked encrypted")
    meth = bytearray(good)
    for sig, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        i = meth.find(sig)
        while i != -1:
            struct.pack_into("<H", meth, i + at, 99)
            i = meth.find(sig, i + 4)
    add("compression-99", bytes(meth), "compression method 99 (AES)")
    add("pickle-in-zip", _zip({**{f"{k}.npy": _npy(v) for k, v in base.items()
                                  if k != "y_train"},
                               "y_train.npy": _npy(np.array([1] * 30, dtype=object), True)}),
        "a pickled member", cmd="step")
    add("zip64-garbage", b"PK\x03\x04" + b"\xff" * 200, "local header of 0xff")

    # ------------------------------------------------------------------ paths
    fifo = d / "fifo.npz"
    if not fifo.exists():
        os.mkfifo(fifo)
    (d / "dir.npz").mkdir(exist_ok=True)
    zero = d / "zero.npz"
    if not zero.is_symlink():
        os.symlink("/dev/zero", zero)
    sparse = d / "sparse-3gib.npz"
    with open(sparse, "wb") as f:
        f.write(good[:100])
        f.truncate(3 << 30)
    (d / "empty.npz").write_bytes(b"")
    for name, path in (("fifo", fifo), ("directory", d / "dir.npz"),
                       ("symlink-dev-zero", zero), ("sparse-3gib", sparse),
                       ("empty-file", d / "empty.npz"), ("missing", d / "missing.npz")):
        add(name, None, f"--dataset {path}", path=str(path))
    add("unknown-name", None, "--dataset bogus", path="bogus")
    return cases
