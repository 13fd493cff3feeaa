"""Run cases in forked children of an mcusim-importing parent, and judge them.

A child: its own process group, RLIMIT_AS = 2 GiB, stdin from /dev/null, stdout and stderr
to files, the case's environment, cwd in the suite's scratch directory; then
`mcusim.cli.main(argv)` and `os._exit` with its return code.  The parent keeps `jobs`
children running, kills a child's process group after `timeout` seconds ("hang") and
reports a child killed by a signal or dying of MemoryError as a "blow-up".

Fork safety: the parent must not have started Unicorn or other threads before forking.
Importing mcusim, numpy and unicorn and building images with the cross compiler (which
joins its worker threads) are fine.
"""

from __future__ import annotations

import io
import json
import os
import re
import resource
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

TIMEOUT_S = 20.0
AS_LIMIT = 2 << 30  # 2 GiB of address space per case

ERROR_RE = re.compile(r"^mcusim(?: [a-z-]+)?: error: \S")
INTERNAL_RE = re.compile(r"^mcusim(?: [a-z-]+)?: internal error", re.MULTILINE)
PROGRESS_RE = re.compile(r"^(mcusim: \[\s*\d+ s\] |mcusim: warning: |epoch \d+: )")

Compare = Callable[[Any, Any], "str | None"]


@dataclass
class Case:
    group: str
    name: str
    argv: list[str]
    expect: frozenset[int]
    note: str = ""
    env: dict[str, str | None] = field(default_factory=dict)
    ref: str | None = None            # name of the reference case (same group)
    compare: Compare | None = None    # (json, reference json) -> problem or None
    stdout_check: Callable[[str], str | None] | None = None  # exit 0: stdout -> problem
    mention: tuple[str, ...] = ()     # exit 2: the error line names one of these
    files: tuple[str, ...] = ()       # paths replaced by <FILE> before comparing
    verdict_exit1: bool = False       # exit 1 may be a verdict (budget/step) without error
    is_reference: bool = False

    def __post_init__(self) -> None:
        self.expect = frozenset(self.expect)
        self.argv = [str(a) for a in self.argv]

    @property
    def json(self) -> bool:
        return "--json" in self.argv

    def repro(self) -> str:
        import shlex

        env = " ".join(f"{k}={shlex.quote(v)}" if v is not None else f"-u {k}"
                       for k, v in self.env.items())
        cmd = " ".join(shlex.quote(a) for a in ["mcusim", *self.argv])
        if len(cmd) > 400:
            cmd = cmd[:400] + " ...(truncated)"
        return (f"env {env} " if env else "") + cmd


@dataclass
class Result:
    case: Case
    rc: int | None          # exit code; None when killed
    signal: int | None
    hang: bool
    seconds: float
    stdout: str
    stderr: str
    native_exit: bool = False  # the process ended without returning from main() (C exit())
    problems: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.hang:
            return "hang"
        if self.signal is not None:
            return f"signal {self.signal}"
        if self.native_exit:
            return f"native exit {self.rc}"
        return f"exit {self.rc}"

    def error_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ERROR_RE.match(ln)]

    def first_stderr(self) -> str:
        lines = [ln for ln in self.stderr.splitlines()
                 if ln.strip() and not PROGRESS_RE.match(ln)]
        text = (lines[0] if lines else "(no stderr)")
        return text if len(text) <= 300 else text[:300] + "..."


# --------------------------------------------------------------------------- the child

_DEFAULT_FILTERS = (("default", DeprecationWarning, "__main__"),
                    ("ignore", DeprecationWarning, None),
                    ("ignore", PendingDeprecationWarning, None),
                    ("ignore", ImportWarning, None),
                    ("ignore", ResourceWarning, None))


PRELOAD = ("mcusim.cli", "mcusim.analyze", "mcusim.profile", "mcusim.bench", "mcusim.demo",
           "mcusim.elf", "mcusim.machine", "mcusim.toolchain", "mcusim.fqt.train",
           "mcusim.fqt.verify", "mcusim.fqt.datasets", "mcusim.model.schema",
           "mcusim.timing.table", "mcusim.render.console", "mcusim.render.step",
           "mcusim.render.train", "mcusim.render.profile", "mcusim.render.exports")


def preload() -> None:
    """Import in the parent what the commands import lazily: a child then starts in
    milliseconds.  (Imports start no threads; Unicorn is loaded, not started.)"""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _child(case: Case, out_path: str, err_path: str, cwd: str, as_limit: int) -> None:
    code = 125
    status_path = out_path[:-4] + ".status"
    try:
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
        resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, out_path), (2, err_path)):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd)
            os.close(f)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", write_through=True)
        os.chdir(cwd)
        os.environ.pop("MCUSIM_DEBUG", None)
        for k, v in case.env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        warnings.resetwarnings()  # a plain interpreter's filters, not pytest's
        for action, category, module in _DEFAULT_FILTERS:
            if module is None:
                warnings.filterwarnings(action, category=category)
            else:
                warnings.filterwarnings(action, category=category, module=module)
        import mcusim.cli

        try:
            rc = mcusim.cli.main(case.argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int) and e.code is not None:
                sys.stderr.write(f"{e.code}\n")
        code = int(rc) & 0xFF if isinstance(rc, int) else 124
    except MemoryError:
        try:
            sys.stderr.write("badinput-runner: MemoryError escaped mcusim.cli.main\n")
        except BaseException:
            pass
        code = 123
    except BaseException:
        try:
            sys.stderr.write(traceback.format_exc())
        except BaseException:
            pass
        code = 122
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        try:  # proof that the child left through here, not through a native exit()
            with open(status_path, "w") as f:
                f.write(str(code))
        except BaseException:
            pass
        os._exit(code)


# --------------------------------------------------------------------------- the parent


def run_cases(cases: Sequence[Case], *, cwd: str, jobs: int = 2, timeout: float = TIMEOUT_S,
              as_limit: int = AS_LIMIT) -> list[Result]:
    """Run every case (at most `jobs` at a time); results in the order of `cases`."""
    for s in (sys.stdout, sys.stderr):
        s.flush()
    tmp = tempfile.mkdtemp(prefix="badinput-io-")
    pending = deque(enumerate(cases))
    running: dict[int, tuple[int, Case, float, str, str]] = {}
    results: dict[int, Result] = {}

    def finish(pid: int, status: int | None, hang: bool) -> None:
        i, case, t0, out, err = running.pop(pid)
        secs = time.monotonic() - t0
        rc = sig = None
        if status is not None:
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
            else:
                rc = os.WEXITSTATUS(status)
        st = out[:-4] + ".status"
        native = rc is not None and not os.path.exists(st)
        results[i] = Result(case, rc, sig, hang, secs, _read(out), _read(err), native)
        for p in (out, err, st):
            try:
                os.unlink(p)
            except OSError:
                pass

    try:
        while pending or running:
            while pending and len(running) < jobs:
                i, case = pending.popleft()
                out = os.path.join(tmp, f"{i}.out")
                err = os.path.join(tmp, f"{i}.err")
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the child
                    _child(case, out, err, cwd, as_limit)
                try:
                    os.setpgid(pid, pid)
                except OSError:
                    pass
                running[pid] = (i, case, time.monotonic(), out, err)
            time.sleep(0.004)
            for pid in list(running):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    finish(pid, status, False)
                elif time.monotonic() - running[pid][2] > timeout:
                    _kill_group(pid)
                    os.waitpid(pid, 0)
                    finish(pid, None, True)
    finally:
        for pid in list(running):
            _kill_group(pid)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        try:
            os.rmdir(tmp)
        except OSError:
            pass
    return [results[i] for i in range(len(cases))]


def _kill_group(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(4 << 20)
    except OSError:
        return ""
    return data.decode("utf-8", errors="backslashreplace")


# --------------------------------------------------------------------------- the oracle


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-JSON token {name}")


def strict_json(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def normalized_json(result: Result) -> Any:
    text = result.stdout
    for f in sorted(result.case.files, key=len, reverse=True):
        if f:
            text = text.replace(json.dumps(f)[1:-1], "<FILE>")
    return strict_json(text)


def check(result: Result, refs: dict[str, Result]) -> list[str]:
    """Every way the result breaks the oracle (empty: the case passed)."""
    case, p = result.case, []
    if result.hang:
        p.append(f"hang: still running after {TIMEOUT_S:.0f} s (killed)")
    if result.signal is not None:
        p.append(f"blow-up: killed by signal {result.signal} "
                 f"({signal.Signals(result.signal).name})")
    both = result.stdout + "\n" + result.stderr
    if "MemoryError" in both or result.rc == 123:
        p.append("blow-up: MemoryError (past the 2 GiB address-space limit)")
    if "Traceback (most recent call last)" in both:
        p.append("traceback in the output")
    if INTERNAL_RE.search(result.stderr):
        p.append("internal error (the exit-3 catch-all)")
    if result.native_exit:
        p.append(f"blow-up: the process exited ({result.rc}) from native code without "
                 "returning from main()")
    if result.rc is None:
        return p
    if result.rc not in case.expect:
        p.append(f"exit {result.rc}, expected {'/'.join(map(str, sorted(case.expect)))}")
    errors = result.error_lines()
    if result.rc != 0:
        if result.rc == 1 and case.verdict_exit1:
            if len(errors) > 1:
                p.append(f"{len(errors)} error lines on stderr (at most one)")
        elif len(errors) != 1:
            p.append(f"{len(errors)} error lines on stderr (expected exactly one "
                     "'mcusim: error: ...')")
    if result.rc == 2:
        stray = [ln for ln in result.stderr.splitlines()
                 if ln.strip() and not ERROR_RE.match(ln) and not PROGRESS_RE.match(ln)]
        if stray:
            p.append(f"stderr has {len(stray)} line(s) besides the one error line, first: "
                     f"{stray[0][:120]!r}")
        if case.mention and errors and not any(
                m.lower() in errors[0].lower() for m in case.mention):
            p.append(f"the error line does not name {' or '.join(map(repr, case.mention))}")
    if case.json:
        if result.rc == 0:
            try:
                strict_json(result.stdout)
            except ValueError as e:
                p.append(f"--json: stdout is not strict JSON ({str(e)[:100]})")
        elif result.stdout.strip():
            try:
                strict_json(result.stdout)
            except ValueError:
                p.append("--json: a failing run printed non-JSON on stdout")
    if result.rc == 0 and not p:
        if case.ref is not None and case.compare is not None:
            ref = refs.get(case.ref)
            if ref is None or ref.rc != 0:
                p.append(f"reference case {case.ref!r} did not succeed")
            else:
                try:
                    msg = case.compare(normalized_json(result), normalized_json(ref))
                except (ValueError, KeyError, TypeError, IndexError) as e:
                    msg = f"cannot compare with the reference: {type(e).__name__}: {e}"
                if msg:
                    p.append(f"silent wrong result vs {case.ref}: {msg}")
        if case.stdout_check is not None:
            msg = case.stdout_check(result.stdout)
            if msg:
                p.append(msg)
    return p


def run_group(cases: Sequence[Case], *, cwd: str, jobs: int = 2) -> list[Result]:
    """References first, then the rest; every result gets its problems."""
    names = [c.name for c in cases]
    dupes = {n for n in names if names.count(n) > 1}
    assert not dupes, f"duplicate case names: {sorted(dupes)}"
    first = [c for c in cases if c.is_reference]
    rest = [c for c in cases if not c.is_reference]
    results = run_cases(first, cwd=cwd, jobs=jobs) + run_cases(rest, cwd=cwd, jobs=jobs)
    refs = {r.case.name: r for r in results if r.case.is_reference}
    for r in results:
        r.problems = check(r, refs)
    return results


def histogram(results: Iterable[Result]) -> dict[str, int]:
    h: dict[str, int] = {}
    for r in results:
        h[r.outcome] = h.get(r.outcome, 0) + 1
    return dict(sorted(h.items()))


def summary(group: str, results: Sequence[Result]) -> dict[str, Any]:
    failed = [r for r in results if r.problems]
    return {
        "group": group,
        "cases": len(results),
        "outcomes": histogram(results),
        "failures": len(failed),
        "seconds_total": round(sum(r.seconds for r in results), 2),
        "seconds_max": round(max((r.seconds for r in results), default=0.0), 2),
        "failed": [{"case": r.case.name, "note": r.case.note, "repro": r.case.repro(),
                    "outcome": r.outcome, "problems": r.problems,
                    "stderr": r.first_stderr(), "seconds": round(r.seconds, 2)}
                   for r in failed],
        "all": [{"case": r.case.name, "outcome": r.outcome, "seconds": round(r.seconds, 2),
                 "stderr": r.first_stderr()} for r in results],
    }


def report(group: str, results: Sequence[Result]) -> str:
    s = summary(group, results)
    lines = [f"bad-input group {group!r}: {s['cases']} cases, outcomes {s['outcomes']}, "
             f"{s['failures']} failing, {s['seconds_total']} s of child time "
             f"(slowest {s['seconds_max']} s)"]
    for f in s["failed"]:
        lines.append(f"- {f['case']}: {'; '.join(f['problems'])}")
        lines.append(f"    repro: {f['repro']}")
        lines.append(f"    got:   {f['outcome']}: {f['stderr']}")
    return "\n".join(lines)
