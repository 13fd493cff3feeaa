"""Model group: the zoo's digits-cnn (and imu-cnn) as TOML, mutated.

* missing keys, wrong types, unknown keys, unknown layer types, structure errors;
* dims 0, -1, 2**31, 2**32, 1e9, 2**63-1 in input, classes, filters, units, kernel, stride,
  pool, padding; kernels and pools larger than their input;
* [train] values: 0, negative, huge, NaN, inf, strings;
* arrays / inline tables / dotted keys nested 2000 deep, non-UTF-8 and UTF-16 files, NUL
  bytes, TOML syntax errors;
* names: markup ("[/bold]", "[red]x"), control characters, 100,000 characters;
* 1000 layers (valid), non-regular files (/dev/zero, a FIFO, a directory, empty, missing,
  a sparse 2 GiB file), paths with a newline or markup in them.

Commands: `budget FILE --mcu nRF52840 --json`, `step FILE --mcu RP2040 --json`, some
`verify FILE --mcu RP2040 --steps 1` and `profile FILE --mcu nRF52840 --json`.
Oracle: bad descriptions exit 2 with one line naming the file; structurally valid but
enormous models exit 1 ("does not fit") or 2 (refused as absurd), quickly; valid rewrites of
the zoo model (reordered keys, explicit defaults, [kh, kw] kernels, hex/underscore numbers,
CRLF, comments, inline tables, no name = the file's stem) give exactly the zoo model's JSON.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mcusim.model.zoo import MODELS_DIR

from .runner import Case
from .tomlw import Raw, dumps

HUGE = (2**31, 2**32, 10**9, 2**63 - 1)


def _zoo(name: str) -> dict[str, Any]:
    return tomllib.loads((MODELS_DIR / f"{name}.toml").read_text())


_HOST_TIME_KEYS = ("wall_s", "samples_per_s", "seconds", "host_s")


def _strip_host_time(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip_host_time(v) for k, v in x.items() if k not in _HOST_TIME_KEYS}
    if isinstance(x, list):
        return [_strip_host_time(v) for v in x]
    return x


def _equal(out: Any, ref: Any) -> str | None:
    out, ref = _strip_host_time(out), _strip_host_time(ref)
    if out == ref:
        return None
    return _first_difference(out, ref, "")


def _first_difference(a: Any, b: Any, path: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k, "<missing>") != b.get(k, "<missing>"):
                return _first_difference(a.get(k, "<missing>"), b.get(k, "<missing>"),
                                         f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items, the reference has {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path or 'output'} = {str(a)[:80]}, the reference has {str(b)[:80]}"


def generate(work: Path) -> list[Case]:
    d = work / "model"
    d.mkdir(parents=True, exist_ok=True)
    base = _zoo("digits-cnn")
    cases: list[Case] = []
    n = [0]

    def argv(cmd: str, path: str) -> list[str]:
        return {"budget": ["budget", path, "--mcu", "nRF52840", "--json"],
                "step": ["step", path, "--mcu", "RP2040", "--json"],
                "verify": ["verify", path, "--mcu", "RP2040", "--steps", "1", "--json"],
                "profile": ["profile", path, "--mcu", "nRF52840", "--json"],
                "budget-table": ["budget", path, "--mcu", "nRF52840"]}[cmd]

    def write(name: str, content: str | bytes | None, suffix: str = ".toml") -> str:
        n[0] += 1
        path = d / f"{n[0]:03d}-{name}{suffix}"
        if isinstance(content, str):
            path.write_bytes(content.encode("utf-8"))
        elif content is not None:
            path.write_bytes(content)
        return str(path)

    def add(name: str, content: str | bytes | None, note: str, expect: set[int], *,
            cmds: tuple[str, ...] = ("budget",), path: str | None = None,
            ref: bool = False, stdout_check: Callable[[str], str | None] | None = None,
            mention: tuple[str, ...] | None = None) -> None:
        if path is None:
            path = write(name, content)
        for cmd in cmds:
            cases.append(Case(
                group="model", name=f"{cmd}:{name}", argv=argv(cmd, path), expect=expect,
                note=note, ref=f"{cmd}:zoo" if ref else None, compare=_equal if ref else None,
                stdout_check=stdout_check, files=(path,), verdict_exit1=True,
                mention=mention if mention is not None else (os.path.basename(path),)))

    def mutate(name: str, fn: Callable[[dict[str, Any]], Any], note: str,
               expect: set[int] | None = None, cmds: tuple[str, ...] = ("budget",)) -> None:
        doc = copy.deepcopy(base)
        fn(doc)
        add(name, dumps(doc), note, expect or {2}, cmds=cmds)

    def layer(i: int, **kv: Any) -> Callable[[dict[str, Any]], None]:
        def fn(doc: dict[str, Any]) -> None:
            for k, v in kv.items():
                if v is _DEL:
                    doc["layer"][i].pop(k, None)
                else:
                    doc["layer"][i][k] = v
        return fn

    def model(**kv: Any) -> Callable[[dict[str, Any]], None]:
        def fn(doc: dict[str, Any]) -> None:
            for k, v in kv.items():
                if v is _DEL:
                    doc["model"].pop(k, None)
                else:
                    doc["model"][k] = v
        return fn

    def train(**kv: Any) -> Callable[[dict[str, Any]], None]:
        def fn(doc: dict[str, Any]) -> None:
            doc["train"].update(kv)
        return fn

    # ------------------------------------------------------------------ references
    for cmd in ("budget", "step", "verify"):
        cases.append(Case(group="model", name=f"{cmd}:zoo", argv=argv(cmd, "digits-cnn"),
                          expect={0}, note="the zoo model by name", is_reference=True))

    # ------------------------------------------------------------------ valid rewrites
    text = dumps(base)
    add("reserialized", text, "the zoo model re-serialized", {0}, cmds=("budget", "step", "verify"),
        ref=True)
    rev = copy.deepcopy(base)
    rev = {k: (dict(reversed(list(v.items()))) if isinstance(v, dict) else
               [dict(reversed(list(x.items()))) for x in v] if isinstance(v, list) else v)
           for k, v in reversed(list(base.items()))}
    add("keys-reordered", dumps(rev), "every table's keys in reverse order", {0},
        cmds=("budget", "step"), ref=True)
    explicit = copy.deepcopy(base)
    for lay in explicit["layer"]:
        if lay["type"] in ("conv2d", "fc"):
            lay.setdefault("activation", "none")
            lay.update(trainable=True, bias=True)
        if lay["type"] == "conv2d":
            lay.update(stride=[1, 1], kernel=[lay["kernel"], lay["kernel"]],
                       padding=[1, 1, 1, 1])
        if lay["type"] == "maxpool":
            lay["pool"] = [2, 2]
    explicit["train"].update(rounding="nearest", lambda_min=1.0, lambda_max=1.0)
    add("explicit-defaults", dumps(explicit), "defaults spelled out, [kh, kw], padding numbers",
        {0}, cmds=("budget", "step"), ref=True)
    add("hex-underscore", text.replace("classes = 10", "classes = 0xA")
        .replace("filters = 8", "filters = 0b1000").replace("units = 10", "units = 1_0")
        .replace("learning_rate = 0.01", "learning_rate = 1e-2"),
        "numbers in hex, binary, with underscores, exponent", {0}, cmds=("budget",), ref=True)
    add("crlf", text.replace("\n", "\r\n"), "CRLF line endings", {0}, ref=True)
    add("comments", "# a comment\n\n" + text.replace("\n", "   # trailing comment\n"),
        "comments on every line", {0}, ref=True)
    inline = "layer = [\n" + ",\n".join(
        "  {" + ", ".join(f"{k} = {_val(v)}" for k, v in lay.items()) + "}"
        for lay in base["layer"]) + ",\n]\n\n"
    inline += dumps({k: v for k, v in base.items() if k != "layer"})
    add("inline-layers", inline, "layers as an inline array of inline tables", {0},
        cmds=("budget", "step"), ref=True)
    stem_dir = d / "stem"
    stem_dir.mkdir(exist_ok=True)
    nameless = copy.deepcopy(base)
    del nameless["model"]["name"]
    (stem_dir / "digits-cnn.toml").write_text(dumps(nameless))
    add("name-from-stem", None, "no name: the file's stem digits-cnn", {0},
        path=str(stem_dir / "digits-cnn.toml"), ref=True)

    # ------------------------------------------------------------------ graphs (issue 14)
    chained = copy.deepcopy(base)
    prev = "input"
    for lay in chained["layer"]:
        lay["inputs"] = [prev]
        prev = lay["name"]
    add("inputs-explicit", dumps(chained), "every layer names the one before as its input",
        {0}, cmds=("budget", "step"), ref=True)
    mutate("relu6", layer(0, activation="relu6"), "relu6 on conv1", {0})
    for v, what in ((["nope"], "an unknown layer"), (["fc"], "a later layer"),
                    (["conv1"], "itself"), ("conv1", "a string, not a list"),
                    ([], "an empty list"), ([1], "a number"),
                    (["input", "input", "input"], "three inputs"),
                    (["input", "conv1"], "two inputs on a conv"),
                    ([Raw("{a = 1}")], "an inline table")):
        mutate(f"inputs-{_slug(what)}", layer(2, inputs=v), f"conv2 inputs = {what}")
    mutate("add-one-input", lambda doc: doc["layer"].insert(
        1, {"name": "a", "type": "add", "inputs": ["conv1"]}), "add with one input")
    mutate("add-same-twice", lambda doc: doc["layer"].insert(
        1, {"name": "a", "type": "add", "inputs": ["conv1", "conv1"]}), "add of conv1 twice")
    mutate("add-shapes", lambda doc: doc["layer"].insert(
        1, {"name": "a", "type": "add", "inputs": ["conv1", "input"]}),
        "add of 8x8x8 and the 8x8x1 input")
    mutate("add-relu6", lambda doc: doc["layer"].insert(
        1, {"name": "a", "type": "add", "inputs": ["conv1", "conv1b"], "activation": "relu6"}),
        "add with relu6")
    mutate("add-filters", lambda doc: doc["layer"].insert(
        1, {"name": "a", "type": "add", "inputs": ["conv1", "input"], "filters": 3}),
        "add with a filters key")
    mutate("dangling", lambda doc: doc["layer"].insert(
        1, {"name": "side", "type": "conv2d", "filters": 2, "kernel": 1}) or
        doc["layer"][2].update(inputs=["conv1"]), "a layer whose output nothing reads")
    for v in ("hinge", 5, "", "MSE", "mse"):  # mse: 10 outputs cannot reconstruct 64 inputs
        mutate(f"loss-{_slug(v)}", model(loss=v), f"loss = {v!r}")
    for v in ([1, 2], [0], [0, 1, 2], ["a", "b"], [1, 0], [0, Raw("nan")], [Raw("-inf"), 0],
              [0, 1e300], "0,1"):
        mutate(f"input-range-{_slug(v)}", model(input_range=v), f"input_range = {v!r}")
    mutate("input-range-valid", model(input_range=[-1.5, 2.0]), "input_range [-1.5, 2]", {0})
    for v, what in (("missing.npz", "a missing file"), (5, "a number"), ("", "empty"),
                    ("/dev/zero", "a device"), (".", "a directory"),
                    ("stem/digits-cnn.toml", "a TOML file, not an npz"), ("a\u0000b", "a NUL")):
        mutate(f"weights-{_slug(what)}", model(weights=v), f"weights = {what}")

    # ------------------------------------------------------------------ missing keys
    mutate("no-model-table", lambda doc: doc.pop("model"), "no [model]")
    mutate("no-input", model(input=_DEL), "no input")
    mutate("no-classes", model(classes=_DEL), "no classes", cmds=("step",))
    mutate("no-layers", lambda doc: doc.pop("layer"), "no [[layer]]")
    mutate("zero-layers", lambda doc: doc.update(layer=[]), "layer = []")
    mutate("layer-no-type", layer(0, type=_DEL), "layer without type")
    mutate("conv-no-filters", layer(0, filters=_DEL), "conv2d without filters", cmds=("step",))
    mutate("conv-no-kernel", layer(2, kernel=_DEL), "conv2d without kernel")
    mutate("fc-no-units", layer(5, units=_DEL), "fc without units")
    mutate("pool-no-pool", layer(1, pool=_DEL), "maxpool without pool")

    # ------------------------------------------------------------------ wrong types
    for i, (name, fn) in enumerate((
            ("input-string", model(input="8x8x1")),
            ("input-2", model(input=[8, 8])),
            ("input-4", model(input=[8, 8, 1, 1])),
            ("input-float", model(input=[8.0, 8, 1])),
            ("input-bool", model(input=[True, 8, 1])),
            ("input-nested", model(input=[[8], 8, 1])),
            ("classes-string", model(classes="10")),
            ("classes-float", model(classes=10.0)),
            ("classes-bool", model(classes=True)),
            ("name-int", model(name=5)),
            ("name-empty", model(name="")),
            ("name-blank", model(name="   ")),
            ("description-list", model(description=["a"])),
            ("model-string", lambda doc: doc.update(model="digits")),
            ("train-array", lambda doc: doc.update(train=[1, 2])),
            ("layer-table", lambda doc: doc.update(layer=doc["layer"][0])),
            ("layer-mixed-array", lambda doc: doc.update(layer=[*doc["layer"], 5])),
            ("filters-string", layer(0, filters="8")),
            ("filters-float", layer(0, filters=8.5)),
            ("kernel-float", layer(0, kernel=3.5)),
            ("kernel-1-list", layer(0, kernel=[3])),
            ("kernel-3-list", layer(0, kernel=[3, 3, 3])),
            ("stride-string", layer(0, stride="1")),
            ("padding-full", layer(0, padding="full")),
            ("padding-2-list", layer(0, padding=[1, 1])),
            ("padding-negative", layer(0, padding=-1)),
            ("padding-list-negative", layer(0, padding=[0, 0, 0, -1])),
            ("padding-ge-kernel", layer(0, padding=3)),
            ("activation-sigmoid", layer(0, activation="sigmoid")),
            ("activation-bool", layer(0, activation=True)),
            ("trainable-string", layer(0, trainable="yes")),
            ("bias-int", layer(5, bias=1)),
            ("pool-string", layer(1, pool="max")),
            ("pool-1-list", layer(1, pool=[2])),
            ("units-list", layer(5, units=[10])),
            ("stride-on-pool", layer(1, stride=2)),
            ("units-on-conv", layer(0, units=4)),
            ("layer-name-markup", layer(0, name="[red]x")),
            ("layer-name-space", layer(0, name="conv 1")),
            ("layer-name-int", layer(0, name=1)),
            ("duplicate-layer-names", layer(2, name="conv1")))):
        mutate(name, fn, name.replace("-", " "), cmds=("step",) if i % 4 == 3 else ("budget",))

    # ------------------------------------------------------------------ [train]
    for i, (k, v) in enumerate((("batch_size", "8"), ("batch_size", 0), ("batch_size", -1),
                                ("batch_size", 2**63 - 1), ("batch_size", 8.0),
                                ("learning_rate", 0), ("learning_rate", -1.0),
                                ("learning_rate", "0.1"), ("learning_rate", float("nan")),
                                ("learning_rate", float("inf")), ("learning_rate", Raw("-inf")),
                                ("learning_rate", Raw("1e400")), ("lr_final", 1.0),
                                ("lr_final", float("nan")), ("lambda_min", 2.0),
                                ("lambda_min", -0.5), ("lambda_max", float("nan")),
                                ("rounding", "up"), ("rounding", 1), ("epsilon", "x"),
                                ("alpha_a", 0.0), ("alpha_w", float("nan")),
                                ("alpha_norm", 1.5), ("momentum", 0.9))):
        mutate(f"train-{k}-{_slug(v)}", train(**{k: v}), f"[train] {k} = {v!r}",
               cmds=("step",) if i % 3 == 2 else ("budget",))
    mutate("train-lambda-min-gt-max", train(lambda_min=0.9, lambda_max=0.1),
           "lambda_min > lambda_max")

    # ------------------------------------------------------------------ dims
    for v in (0, -1, *HUGE):
        mutate(f"input-h-{_slug(v)}", model(input=[v, 8, 1]), f"input H = {v}",
               {2} if v < 1 else {1, 2}, cmds=("budget", "step") if v > 0 else ("budget",))
        mutate(f"input-c-{_slug(v)}", model(input=[8, 8, v]), f"input C = {v}",
               {2} if v < 1 else {1, 2})
    for v in (0, -1, *HUGE):
        mutate(f"filters-{_slug(v)}", layer(0, filters=v), f"conv1 filters = {v}",
               {2} if v < 1 else {1, 2}, cmds=("budget", "step") if v == 10**9 else ("budget",))

        def classes_units(doc: dict[str, Any], v: int = v) -> None:
            doc["model"]["classes"] = v
            doc["layer"][5]["units"] = v
        mutate(f"classes-units-{_slug(v)}", classes_units, f"classes = fc units = {v}",
               {2} if v < 2 else {1, 2}, cmds=("budget", "step") if v == 2**31 else ("budget",))
    for v in (0, -1, 9, 2**63 - 1):  # padding "same": 9x9 on 8x8 is a valid layer
        mutate(f"kernel-{_slug(v)}", layer(0, kernel=v), f"conv1 kernel = {v} on 8x8, same",
               {2} if v < 1 else {0, 1} if v == 9 else {1, 2})
    mutate("kernel-1xhuge", layer(0, kernel=[1, 2**63 - 1]), "kernel [1, 2**63-1]", {2})
    mutate("kernel-gt-input-valid", layer(0, kernel=9, padding="valid"), "9x9 on 8x8, valid",
           {2})
    for v in (0, -1, 2**63 - 1):
        mutate(f"stride-{_slug(v)}", layer(0, stride=v), f"conv1 stride = {v}",
               {2} if v < 1 else {1, 2})
    for v in (0, -1, 16, 2**63 - 1):
        mutate(f"pool-{_slug(v)}", layer(1, pool=v), f"pool1 pool = {v} on 8x8", {2})
    mutate("padding-huge", layer(0, padding=2**63 - 1), "padding 2**63-1", {2})

    # ------------------------------------------------------------------ types and structure
    for v in ("conv3d", "", "CONV2D", "fc ", "dense", 5):
        mutate(f"type-{_slug(v)}", layer(0, type=v), f"layer type {v!r}")
    mutate("last-relu", layer(5, activation="relu"), "logits with relu")
    mutate("last-pool", lambda doc: doc["layer"].append({"type": "maxpool", "pool": 1}),
           "last layer a pool")
    mutate("classes-mismatch", model(classes=11), "classes 11, fc units 10")
    mutate("frozen-after-trainable", layer(5, trainable=False), "frozen last layer")
    mutate("nothing-trainable", lambda doc: [lay.update(trainable=False) for lay in doc["layer"]
                                             if lay["type"] in ("conv2d", "fc")],
           "no trainable layer")
    mutate("fc-on-4d", lambda doc: doc["layer"].pop(4), "fc on 2x2x16 without flatten")
    for where, fn in (("top", lambda doc: doc.update(foo=1)),
                      ("model", model(foo=1)),
                      ("train", train(foo=1)),
                      ("layer", layer(0, foo=1)),
                      ("model-subtable", model(sub={"a": 1}))):
        mutate(f"unknown-key-{where}", fn, f"unknown key in {where}")

    # ------------------------------------------------------------------ names
    def table_has(literal: str) -> Callable[[str], str | None]:
        def check(stdout: str) -> str | None:
            return None if literal in stdout else (
                f"the table does not show the name {literal!r} literally (markup eaten?)")
        return check

    for name in ("[/bold]", "[red]x", "[bold red]boom[/]", "x[/]"):
        doc = copy.deepcopy(base)
        doc["model"]["name"] = name
        add(f"name-markup-{_slug(name)}", dumps(doc), f"model name {name!r}", {0},
            cmds=("budget", "budget-table"), stdout_check=None)
        cases[-1].stdout_check = table_has(name)
    for name, note in (("a\nb", "newline"), ("\x1b[31mred", "ANSI escape"), ("a\rb", "CR"),
                       ("\u202eevil", "bidi override"), ("x" * 100_000, "100,000 characters")):
        doc = copy.deepcopy(base)
        doc["model"]["name"] = name
        add(f"name-{_slug(note)}", dumps(doc), f"model name with {note}", {0, 2},
            cmds=("budget", "budget-table"))
    long_layer = copy.deepcopy(base)
    long_layer["layer"][0]["name"] = "c" * 100_000
    add("layer-name-100k", dumps(long_layer), "layer name of 100,000 characters", {0, 2})

    # ------------------------------------------------------------------ many layers
    deep = {"model": {"name": "deep", "input": [1, 1, 16], "classes": 10},
            "train": {"batch_size": 1},
            "layer": [{"type": "fc", "units": 16, "activation": "relu"} for _ in range(999)]
            + [{"type": "fc", "units": 10}]}
    add("1000-layers", dumps(deep), "1000 fc layers of 16 units", {0, 1, 2},
        cmds=("budget", "step"))
    deep["layer"] = deep["layer"][:199] + deep["layer"][-1:]
    add("200-layers", dumps(deep), "200 fc layers of 16 units", {0, 1}, cmds=("budget",))

    # ------------------------------------------------------------------ raw text
    raw_cases: list[tuple[str, str | bytes, str]] = [
        ("nested-array-2000", text.replace("input = [8, 8, 1]",
                                           "input = " + "[" * 2000 + "]" * 2000),
         "input nested 2000 deep"),
        ("nested-array-100k", "x = " + "[" * 100_000 + "]" * 100_000 + "\n" + text,
         "an array nested 100,000 deep"),
        ("nested-inline-2000", text + "\n[extra]\nv = " + "{a = " * 2000 + "1" + "}" * 2000
         + "\n", "inline tables nested 2000 deep"),
        ("dotted-key-2000", ".".join(["a"] * 2000) + " = 1\n" + text, "a dotted key 2000 deep"),
        ("table-header-2000", text + "\n[" + ".".join(["t"] * 2000) + "]\nx = 1\n",
         "a table header 2000 deep"),
        ("nested-in-layer", text.replace('units = 10', 'units = 10\nextra = '
                                         + "[" * 2000 + "]" * 2000),
         "2000-deep array in a layer"),
        ("int-5000-digits", text.replace("classes = 10", "classes = " + "9" * 5000),
         "an integer of 5000 digits"),
        ("float-1e400", text.replace("learning_rate = 0.01", "learning_rate = 1e400"),
         "learning_rate 1e400 (inf)"),
        ("nan-input", text.replace("input = [8, 8, 1]", "input = [nan, 8, 1]"), "NaN in input"),
        ("inf-classes", text.replace("classes = 10", "classes = inf"), "classes = inf"),
        ("duplicate-key", text.replace("classes = 10", "classes = 10\nclasses = 10"),
         "key twice"),
        ("unterminated-string", text.replace('name = "digits-cnn"', 'name = "digits-cnn'),
         "unterminated string"),
        ("bad-escape", text.replace('name = "digits-cnn"', 'name = "a\\qb"'), "\\q escape"),
        ("garbage", "this is = not [ toml\n", "not TOML"),
        ("nul-bytes", text.replace("[model]", "[model]\x00\x00"), "NUL bytes"),
    ]
    for name, content, note in raw_cases:
        add(name, content, note, {2})
    enc: list[tuple[str, bytes, str]] = [
        ("latin1", text.replace("Two-conv", "Zwei-Faltungs-CNN für").encode("latin-1"),
         "Latin-1 bytes"),
        ("utf16", text.encode("utf-16"), "UTF-16 with BOM"),
        ("invalid-utf8", b"\xff\xfe\xfd" + text.encode(), "invalid UTF-8 lead bytes"),
        ("surrogate-bytes", text.replace('"digits-cnn"', '"x\udcff"').encode(
            "utf-8", "surrogatepass"), "an encoded lone surrogate"),
        ("utf8-bom", b"\xef\xbb\xbf" + text.encode(), "UTF-8 BOM"),
    ]
    for name, content, note in enc:
        add(name, content, note, {0, 2} if name == "utf8-bom" else {2})

    # ------------------------------------------------------------------ non-regular files
    fifo = d / "fifo.toml"
    if not fifo.exists():
        os.mkfifo(fifo)
    (d / "dir.toml").mkdir(exist_ok=True)
    (d / "empty.toml").write_bytes(b"")
    sparse = d / "sparse-2gib.toml"
    with open(sparse, "wb") as f:
        f.write(text.encode())
        f.truncate(2 << 30)
    newline_dir = d / "new\nline"
    newline_dir.mkdir(exist_ok=True)
    markup = d / "[red]x.toml"
    for name, path, cmds in (("dev-zero", "/dev/zero", ("budget", "step")),
                             ("dev-null", "/dev/null", ("budget",)),
                             ("fifo", str(fifo), ("budget",)),
                             ("directory", str(d / "dir.toml"), ("budget", "profile")),
                             ("empty", str(d / "empty.toml"), ("budget",)),
                             ("missing", str(d / "missing.toml"), ("step",)),
                             ("sparse-2gib", str(sparse), ("budget",)),
                             ("path-with-newline", str(newline_dir / "m.toml"), ("budget",)),
                             ("path-with-markup", str(markup), ("budget",)),
                             ("zoo-typo", "digits-cnm", ("budget",)),
                             ("zoo-empty-name", "", ("budget",))):
        mention = (os.path.basename(path),) if path and "\n" not in path else ()
        add(name, None, f"MODEL = {path!r}", {2}, cmds=cmds, path=path, mention=mention)
    return cases


class _Del:
    pass


_DEL = _Del()


def _slug(v: Any) -> str:
    s = f"raw-{v}" if isinstance(v, Raw) else repr(v) if not isinstance(v, str) else v
    out = "".join(c if c.isalnum() else "-" for c in s)[:24].strip("-")
    return out or "empty"


def _val(v: Any) -> str:
    from .tomlw import value

    return value(v)
