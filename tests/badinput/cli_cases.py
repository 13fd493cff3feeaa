"""CLI group: option values and environment variables.

Every numeric option of every command (run, profile, step, budget, train, verify, bench)
with -1, 0, 1, 1e400, nan, inf, 2**32, 2**64, '', 'abc', '-', '--x'; --args with huge,
negative, malformed and too many numbers; names (--mcu, --function, cost-model CORE) that are
empty, huge, markup or paths; choice options with unknown values; export/plot paths that
are directories, devices or unwritable; argv without a command, unknown commands, missing
values; the environment: MCUSIM_TRACER (native/python/bogus), MCUSIM_CACHE_DIR (a file, an
unwritable directory, /dev/null, '-x'), MCUSIM_TOOLCHAIN, MCUSIM_CHECK_ALIGNMENT; a runaway
function with the default instruction budget.

Oracle: the exit code each value deserves (2 for anything out of range or malformed, 0 for
valid values, 1 where the value makes the emulated code fault); a `run` that succeeds
returns exactly probe_main(n) = 3 n (n - 1) / 2 + n + 1 (mod 2**32) for the n given; a
tracer choice or a larger budget changes no result (same r0, cycles, per-class cycles as
the default run); errors name the option or variable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .elf_cases import compare_run
from .runner import Case
from .tomlw import dumps

VALUES = ("-1", "0", "1", "1e400", "nan", "inf", "4294967296", "18446744073709551616", "",
          "abc", "-", "--x")
INVALID_TEXT = {"1e400", "nan", "inf", "", "abc", "-", "--x", "18446744073709551616"}


def probe_main(n: int) -> int:
    n &= 0xFFFFFFFF
    return (3 * n * (n - 1) // 2 + n + 1) & 0xFFFFFFFF


def returns(n: int):
    want = probe_main(n)

    def check(stdout: str) -> str | None:
        got = json.loads(stdout).get("return")
        return None if got == want else (f"silent wrong result: r0 = {got}, probe_main({n}) "
                                         f"is {want}")
    return check


def _int_option(maximum: int, v: str, one: set[int] | None = None) -> set[int]:
    """Expected exit codes for a positive bounded integer option."""
    if v in INVALID_TEXT or v in ("-1", "0"):
        return {2}
    if v == "1":
        return one if one is not None else {0}
    if v == "4294967296":
        return {0} if 2**32 <= maximum else {2}
    raise AssertionError(v)


def generate(work: Path, elf: str) -> list[Case]:
    d = work / "cli"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    x = rng.random((40, 8, 8, 1)).astype(np.float32)
    y = np.arange(40) % 10
    npz = d / "ok.npz"
    np.savez(npz, x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    cases: list[Case] = []
    names: set[str] = set()

    def case(name: str, argv: list[str], expect: set[int], note: str = "", **kw: Any) -> None:
        base, i = name, 2
        while name in names:
            name, i = f"{base}#{i}", i + 1
        names.add(name)
        cases.append(Case(group="cli", name=name, argv=argv, expect=expect, note=note, **kw))

    run = ["run", elf, "-f", "probe_main", "-m", "nRF52840", "--args", "10", "--budget",
           "1000000", "--json"]
    prof_elf = ["profile", "--elf", elf, "-f", "probe_main", "--mcu", "nRF52840", "--args", "10",
                "--budget", "1000000", "--json"]
    step = ["step", "digits-cnn", "--mcu", "RP2040", "--json"]
    budget = ["budget", "digits-cnn", "--mcu", "nRF52840", "--json"]
    train = ["train", "digits-cnn", "-d", str(npz), "--epochs", "1", "--mcu", "nRF52840",
             "--no-baseline", "--json"]
    verify = ["verify", "digits-cnn", "--mcu", "RP2040", "--steps", "1", "--json"]
    prof_model = ["profile", "digits-cnn", "--mcu", "nRF52840", "--json"]
    bench = ["bench", "--json"]

    cases.append(Case(group="cli", name="run:reference", argv=run, expect={0},
                      note="the default run", is_reference=True, stdout_check=returns(10)))
    names.add("run:reference")

    def with_opt(base: list[str], opt: str, v: str) -> list[str]:
        argv = list(base)
        if opt in argv:
            argv[argv.index(opt) + 1] = v
        else:
            argv[1:1] = [opt, v]
        return argv

    def mention(opt: str, *more: str) -> tuple[str, ...]:
        return (opt, opt.lstrip("-"), opt.lstrip("-").replace("-", "_"), *more)

    # ------------------------------------------------------------------ the value matrix
    def matrix(label: str, base: list[str], opt: str, expect_of, *, ref: bool = False,
               checks: dict[str, Any] | None = None, more: tuple[str, ...] = ()) -> None:
        for v in VALUES:
            exp = expect_of(v)
            kw: dict[str, Any] = {}
            if ref and 0 in exp:
                kw.update(ref="run:reference", compare=compare_run)
            if checks and v in checks:
                kw["stdout_check"] = checks[v]
            case(f"{label}:{opt}={v!r}", with_opt(base, opt, v), exp,
                 f"{label} {opt} {v!r}", mention=mention(opt, *more), **kw)

    def lam_min(v: str) -> set[int]:
        return {0} if v in ("0", "1") else {2}

    def lam_max(v: str) -> set[int]:
        return {0} if v == "1" else {2}  # 0 or -1: below the model's lambda_min 1.0

    def seed(v: str) -> set[int]:
        return {0} if v in ("0", "1") else {2}

    def lr(v: str) -> set[int]:
        if v in ("1",):
            return {0}
        if v in ("4294967296", "18446744073709551616"):
            # a huge step size: refused (2), or training diverges (1: a failed check) or
            # runs (0); never a traceback, never NaN in the JSON
            return {0, 1, 2}
        return {2}

    def lr_final(v: str) -> set[int]:
        return {0} if v == "0" else {2}  # 1 and more exceed the model's 0.01

    def baseline_lr(v: str) -> set[int]:
        if v in ("0", "1"):
            return {0}
        if v in ("4294967296", "18446744073709551616"):
            return {0, 1, 2}
        return {2}

    def run_budget(v: str) -> set[int]:
        return _int_option(10**12, v, one={1})  # 1 instruction: budget exhausted

    def args_value(v: str) -> set[int]:
        if v == "-1":
            return {1}  # 2**32 - 1 iterations: the 1e6 budget runs out
        if v in ("0", "1"):
            return {0}
        if v == "":
            return {0, 1, 2}
        return {2}

    matrix("run", run, "--budget", run_budget, ref=True,
           more=("instructions",))
    matrix("run", run, "--args", args_value,
           checks={"0": returns(0), "1": returns(1)})
    matrix("profile-elf", prof_elf, "--top", lambda v: _int_option(10**12, v))
    matrix("profile-elf", prof_elf, "--budget", lambda v: _int_option(10**12, v, one={1}))
    matrix("profile-elf", prof_elf, "--args", args_value)
    matrix("step", step, "--lambda-min", lam_min, more=("λ",))
    matrix("step", step, "--batch", lambda v: _int_option(1_024, v))
    matrix("step", step, "--seed", seed)
    matrix("budget", budget, "--lambda-max", lam_max, more=("λ",))
    matrix("budget", budget, "--batch", lambda v: _int_option(1_024, v))
    matrix("train", train, "--epochs", lambda v: _int_option(100_000, v))
    matrix("train", train, "--lr", lr, more=("learning_rate", "learning rate"))
    matrix("train", train, "--lr-final", lr_final, more=("lr_final",))
    matrix("train", [a for a in train if a != "--no-baseline"], "--baseline-lr", baseline_lr,
           more=("baseline",))
    matrix("train", train, "--seed", seed)
    matrix("train", train, "--train-last", lambda v: _int_option(3, v),
           more=("weighted layers", "last"))
    matrix("train", train, "--pretrain", lambda v: _int_option(100_000, v))
    matrix("budget", budget, "--train-last", lambda v: _int_option(3, v),
           more=("weighted layers", "last"))
    matrix("step", step, "--train-last", lambda v: _int_option(3, v),
           more=("weighted layers", "last"))
    for v, exp in (("fc", {0}), ("conv2,fc", {0}), ("fc,fc", {0}), ("conv1", {2}),
                   ("pool1", {2}), ("nope", {2}), ("", {2}), (",", {2}), ("fc,", {2}),
                   ("[red]x", {2}), ("a" * 5000, {2})):
        case(f"budget:--trainable={v[:20]}", with_opt(budget, "--trainable", v), exp,
             f"--trainable {v[:20]!r}")
    for v in ("8,8,1", "0,8,1", "8x8", "abc", "", "65536,1,1", "1e400,1,1"):
        case(f"budget:--input-shape={v}", with_opt(budget, "--input-shape", v), {2},
             f"--input-shape {v!r} (a TOML model states its input)")
    case("budget:--train-last+--trainable",
         with_opt(with_opt(budget, "--train-last", "1"), "--trainable", "fc"), {2},
         "both --train-last and --trainable", mention=("--train-last",))
    matrix("verify", verify, "--steps", lambda v: _int_option(10_000_000, v))
    matrix("verify", verify, "--seed", seed)
    matrix("profile-model", prof_model, "--batch", lambda v: _int_option(1_024, v))
    matrix("bench", bench, "--repeat", lambda v: _int_option(1_000, v))

    for argv, note in ((with_opt(step, "--batch", "1e18"), "--batch 1e18"),
                       (with_opt(run, "--budget", "1e400"), "--budget 1e400"),
                       (with_opt(run, "--budget", "1e12"), "--budget 1e12 (the maximum)"),
                       (with_opt(run, "--budget", "1e13"), "--budget 1e13"),
                       (with_opt(run, "--budget", "0x10"), "--budget 0x10 (16: too few)"),
                       (with_opt(run, "--budget", "1.5"), "--budget 1.5")):
        exp = {0} if "maximum" in note else {1} if "0x10" in note else {2}
        case(f"extra:{note.split(' (')[0]}", argv, exp, note, mention=(note.split()[0],),
             **({"ref": "run:reference", "compare": compare_run} if exp == {0} else {}))

    # ------------------------------------------------------------------ --args in detail
    for v, exp, n in (("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", {2}, None),
                      ("0x", {2}, None), ("1,,2", {2}, None), ("0b102", {2}, None),
                      ("10,", {2}, None), ("5e3", {2}, None), ("1.0", {2}, None),
                      ("-2147483649", {2}, None), ("-2147483648", {1}, None),
                      ("4294967295", {1}, None), ("1_000", {0}, 1000), (" 5 ", {0}, 5),
                      ("0x0A", {0}, 10), ("0b1010", {0}, 10), ("0o12", {0}, 10),
                      ("\uff11\uff10", {0, 2}, 10), ("10 20", {2}, None), ("+10", {0}, 10),
                      ("1" * 5000, {2}, None)):
        case(f"run:--args={v[:40]!r}", with_opt(run, "--args", v), exp, f"--args {v[:40]!r}",
             mention=("--args",), stdout_check=returns(n) if n is not None else None)

    # ------------------------------------------------------------------ names
    for v in ("", "abc", "../etc/passwd", "[red]x", "x" * 100_000, "-", "--json",
              "RP2040"):  # the image is linked for nRF52840's map
        case(f"run:--mcu={v[:30]!r}", with_opt(run, "-m", v), {2}, f"--mcu {v[:30]!r}",
             mention=("mcu", "MCU", "memory map"))
    # MCU names match case-, space- and punctuation-insensitively (catalog._norm), by design
    for v in ("nrf52840", "nRF52840 ", "nRF52840\n", "NRF-52840"):
        case(f"run:--mcu={v!r}", with_opt(run, "-m", v), {0}, f"--mcu {v!r}",
             ref="run:reference", compare=compare_run)
    for v in ("", "[red]x", "x" * 10_000, "probe_main\n", "__stack_top", "__text_end",
              "$t"):
        case(f"run:--function={v[:30]!r}", with_opt(run, "-f", v), {2}, f"-f {v[:30]!r}",
             mention=())
    case("run:--function=hot", with_opt(run, "-f", "hot"), {0}, "-f hot (valid)")
    for v, exp in (("m0+", {0}), ("M4", {0}), ("cortex-m7", {0}), ("", {2}), ("abc", {2}),
                   ("m33", {2}), ("[red]m4", {2}), ("m4\n", {0, 2}), ("x" * 100_000, {2})):
        case(f"cost-model:{v[:30]!r}", ["cost-model", v, "--json"], exp, f"CORE {v[:30]!r}",
             mention=("core",))

    # ------------------------------------------------------------------ choices
    for argv, note in ((with_opt(run, "--energy", "bogus"), "--energy bogus"),
                       ([*step, "--rounding", "up"], "--rounding up"),
                       ([*step, "--toolchain", "clang"], "--toolchain clang"),
                       ([*prof_elf, "--by", "file"], "--by file"),
                       ([*prof_model, "--phase", "sleep"], "--phase sleep"),
                       ([*train, "--engine", "gpu"], "--engine gpu"),
                       ([*train, "--baseline-update", "adam"], "--baseline-update adam"),
                       (["mcus", "--core", "m33"], "mcus --core m33"),
                       (["build", "--core", "m33", "--print-path"], "build --core m33")):
        case(f"choice:{note}", argv, {2}, note, mention=(note.split()[-2],))
    case("choice:--energy board", with_opt(run, "--energy", "board"), {0, 2},
         "--energy board on nRF52840")

    # ------------------------------------------------------------------ paths
    (d / "adir").mkdir(exist_ok=True)
    (d / "afile").write_text("x")
    for opt in ("--speedscope", "--callgrind", "--chrome-trace"):
        for target, exp in ((str(d / "adir"), {2}), ("/nonexistent/dir/out", {2}),
                            ("/dev/full", {2}), ("/proc/version", {2}), ("", {2})):
            case(f"export:{opt}={target!r}", [*prof_elf, opt, target], exp,
                 f"{opt} {target!r}", mention=(opt, target) if target else (opt,))
    case("export:--speedscope=ok", [*prof_elf, "--speedscope", str(d / "out.speedscope.json")],
         {0}, "a writable file")
    case("profile:--annotate=bogus", [*prof_elf, "--annotate", "bogus"], {2},
         "--annotate a function that did not run", mention=("--annotate", "bogus"))
    case("profile:--annotate=hot", [*prof_elf, "--annotate", "hot"], {0}, "--annotate hot")
    case("profile:--elf-without-function", ["profile", "--elf", elf, "--mcu", "nRF52840"], {2},
         "--elf without -f", mention=("--function",))
    case("profile:no-model", ["profile", "--mcu", "nRF52840"], {2}, "neither MODEL nor --elf",
         mention=("MODEL",))
    case("train:--plot=file", [*train, "--plot", str(d / "afile")], {2}, "--plot a file",
         mention=("afile", "--plot"))
    case("train:--plot=/dev/null", [*train, "--plot", "/dev/null"], {2}, "--plot /dev/null",
         mention=("/dev/null", "--plot"))
    case("train:--plot=/proc", [*train, "--plot", "/proc/mcusim-plots"], {2},
         "--plot under /proc", mention=("/proc", "--plot"))
    for v in ("abc", "5-4", "0-99", "-1", "", "0-4,x", "0-" + "9" * 5000):
        case(f"train:--pretrain-classes={v[:20]!r}",
             [*train, "--pretrain", "1", "--pretrain-classes", v], {2},
             f"--pretrain-classes {v[:20]!r}", mention=("--pretrain-classes", "classes"))
    case("train:--pretrain-classes=0-4", [*train, "--pretrain", "1", "--pretrain-classes",
                                          "0-4"], {0}, "valid classes")
    case("train:two-mcus", [*train, "--mcu", "RP2040"], {2}, "train with two --mcu",
         mention=("--mcu", "mcu"))
    case("profile:two-mcus", [*prof_elf, "--mcu", "RP2040"], {2}, "profile with two --mcu",
         mention=("--mcu", "mcu"))
    case("budget:no-mcu", ["budget", "digits-cnn"], {2}, "budget without --mcu",
         mention=("--mcu",))

    # ------------------------------------------------------------------ argv shape
    case("argv:empty", [], {2}, "no command at all")
    case("argv:unknown-command", ["frobnicate"], {2}, "unknown command")
    case("argv:--version", ["--version"], {0}, "--version")
    case("argv:run-no-args", ["run"], {2}, "run without ELF, -f, -m")
    case("argv:--catalog-no-value", ["--catalog"], {2}, "--catalog without a file")
    case("argv:unknown-option", [*step, "--bogus"], {2}, "unknown option",
         mention=("--bogus",))
    case("argv:double-dash", ["run", "--", "-f"], {2}, "-- then -f")

    # ------------------------------------------------------------------ runaway, defaults
    case("run:runaway-default-budget", ["run", elf, "-f", "hot", "--args", "0xFFFFFFFF", "-m",
                                        "nRF52840"], {1},
         "hot(2**32-1) with the default budget (2e9 instructions): must stop within the "
         "20 s limit")

    # ------------------------------------------------------------------ environment
    for v, exp in (("native", {0}), ("python", {0}), ("", {0}), ("NATIVE", {0, 2}),
                   ("bogus", {2}), ("native\n", {0, 2})):
        case(f"env:MCUSIM_TRACER={v!r}", run, exp, f"MCUSIM_TRACER={v!r}",
             env={"MCUSIM_TRACER": v}, ref="run:reference", compare=compare_run,
             mention=("MCUSIM_TRACER",))
    case("env:MCUSIM_TRACER=python-profile", prof_elf, {0}, "python tracer profile",
         env={"MCUSIM_TRACER": "python"})
    build = ["build", "--core", "m0plus", "--mcu", "RP2040", "--print-path"]
    (d / "cachefile").write_text("not a directory")
    for v, exp in ((str(d / "cachefile"), {2}), ("/dev/null", {2}),
                   ("/proc/mcusim-cache", {2}), (str(d / "cachefile" / "sub"), {2}),
                   ("-x", {0}), ("", {0})):
        case(f"env:MCUSIM_CACHE_DIR={v!r}", build, exp, f"MCUSIM_CACHE_DIR={v!r}",
             env={"MCUSIM_CACHE_DIR": v}, mention=("MCUSIM_CACHE_DIR", v) if v else ())
    for v, exp in (("bogus", {2}), ("", {0}), ("GCC", {0, 2})):
        case(f"env:MCUSIM_TOOLCHAIN={v!r}", budget, exp, f"MCUSIM_TOOLCHAIN={v!r}",
             env={"MCUSIM_TOOLCHAIN": v}, mention=("MCUSIM_TOOLCHAIN",))
    for v, exp in (("bogus", {0, 2}), ("0", {0})):
        case(f"env:MCUSIM_CHECK_ALIGNMENT={v!r}", run, exp, f"MCUSIM_CHECK_ALIGNMENT={v!r}",
             env={"MCUSIM_CHECK_ALIGNMENT": v}, ref="run:reference", compare=compare_run,
             mention=("MCUSIM_CHECK_ALIGNMENT",))

    # a model whose step would be fine but whose --batch makes it absurd: still quick
    tiny = d / "tiny.toml"
    tiny.write_text(dumps({"model": {"input": [1, 1, 4], "classes": 2},
                           "layer": [{"type": "fc", "units": 2}]}))
    case("step:--batch=1024", [*step[:1], str(tiny), *step[2:], "--batch", "1024"], {0, 1, 2},
         "the largest batch on a tiny model")
    return cases
