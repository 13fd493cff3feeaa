"""Profile exports: callgrind (valgrind's format), speedscope JSON, Chrome trace JSON.

- callgrind: `events: Cycles`, one `fl=`/`fn=` section per function with `line cycles`
  rows (self cost) and `cfn=`/`calls=` rows with each call's inclusive cost; readable by
  callgrind_annotate and KCachegrind.  Format: valgrind.org/docs/manual/cl-format.html.
- speedscope: the file format of speedscope.app (`$schema`
  https://www.speedscope.app/file-format-schema.json), one "sampled" profile whose samples
  are call stacks (phase > layer > kernel > callee) weighted by cycles.
- Chrome trace: trace-event JSON ("X" complete events), one slice per kernel call on a
  timeline of simulated time in microseconds, nested in layer and phase slices.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcusim.errors import UsageError
from mcusim.profile import Profile

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def _write(path: str | Path, text: str) -> Path:
    p = Path(path)
    try:
        p.write_text(text)
    except OSError as e:
        raise UsageError(f"cannot write {p}: {e.strerror}") from None
    return p


def callgrind(p: Profile) -> str:
    out = ["# callgrind format", "version: 1", "creator: mcusim", "positions: line",
           "events: Cycles", f"summary: {p.total}", ""]
    by_fn: dict[str, list] = {}
    for r in p.lines.values():
        by_fn.setdefault(r.function, []).append(r)
    files = {fn: next((r.file for r in rows if r.file), None) for fn, rows in by_fn.items()}
    call_costs = _call_costs(p)
    for fn in sorted(by_fn, key=lambda f: -p.functions[f].exclusive):
        rows = by_fn[fn]
        out.append(f"fl={files[fn] or '???'}")
        out.append(f"fn={fn}")
        first = min((r.line for r in rows if r.line), default=0)
        current = files[fn] or "???"
        for r in sorted(rows, key=lambda r: (r.file != files[fn], r.file or "", r.line or 0)):
            f = r.file or "???"
            if f != current:
                out.append(f"fi={f}")  # an inlined file (header)
                current = f
            out.append(f"{r.line or 0} {r.cycles}")
        if current != (files[fn] or "???"):
            out.append(f"fe={files[fn] or '???'}")
        for callee, (n, cost) in sorted(call_costs.get(fn, {}).items()):
            out.append(f"cfl={files.get(callee) or '???'}")
            out.append(f"cfn={callee}")
            out.append(f"calls={n} {first}")
            out.append(f"{first} {cost}")
        out.append("")
    top = _driver_calls(p)
    if top:  # the calls from outside the image (the host driver, or the call of `run`)
        out += [f"fl={DRIVER}", f"fn={DRIVER}", "0 0"]
        for callee, (n, cost) in sorted(top.items()):
            out += [f"cfl={files.get(callee) or '???'}", f"cfn={callee}", f"calls={n} 0",
                    f"0 {cost}"]
        out.append("")
    return "\n".join(out)


DRIVER = "(driver)"  # callgrind's caller of the profile's top-level calls (no cycles)


def _driver_calls(p: Profile) -> dict[str, tuple[int, int]]:
    """top-level function -> (calls from outside, their inclusive cost): without these a
    function that is called from outside AND by another function would get only the
    nested share of its inclusive cost in callgrind_annotate/KCachegrind, which sum a
    function's incoming calls= costs."""
    out: dict[str, list[int]] = {}
    if p.tree:
        for path, (excl, calls) in p.tree.items():
            if not path:
                continue
            e = out.setdefault(path[0], [0, 0])
            e[1] += excl
            if len(path) == 1:
                e[0] += calls
    else:  # one call of one function: the profile's root, whose inclusive is the total
        called = {b for (_a, b) in p.calls}
        for name, f in p.functions.items():
            if name not in called and f.inclusive == p.total and p.total:
                out[name] = [1, p.total]
                break
    return {k: (max(v[0], 1), v[1]) for k, v in out.items() if v[1]}


def _call_costs(p: Profile) -> dict[str, dict[str, tuple[int, int]]]:
    """caller -> callee -> (calls, inclusive cost of those calls)."""
    out: dict[str, dict[str, list[int]]] = {}
    if p.tree:
        for path, (excl, calls) in p.tree.items():
            if len(path) >= 2:  # the call into path[-1] from path[-2]
                out.setdefault(path[-2], {}).setdefault(path[-1], [0, 0])[0] += calls
            seen = set()
            for i in range(len(path) - 1):
                pair = (path[i], path[i + 1])
                if pair not in seen:  # a path's cycles count once per call pair
                    seen.add(pair)
                    out.setdefault(pair[0], {}).setdefault(pair[1], [0, 0])[1] += excl
    else:
        for (caller, callee), n in p.calls.items():
            f = p.functions.get(callee)
            cost = f.inclusive * n // max(f.calls, 1) if f else 0
            out.setdefault(caller, {})[callee] = [n, cost]
    return {a: {b: (v[0], v[1]) for b, v in d.items() if a != b} for a, d in out.items()}


def speedscope(p: Profile) -> dict[str, Any]:
    frames: list[dict[str, Any]] = []
    index: dict[str, int] = {}

    def frame(name: str) -> int:
        i = index.get(name)
        if i is None:
            i = index[name] = len(frames)
            frames.append({"name": name})
        return i

    samples: list[list[int]] = []
    weights: list[int] = []
    if p.tree:  # the traced call paths
        for path, (excl, _calls) in sorted(p.tree.items()):
            if excl > 0:
                samples.append([frame(fn) for fn in path])
                weights.append(excl)
    for s in ([] if p.tree else p.slices):
        prefix = [frame(f"{s.phase}")] if s.phase else []
        if s.layer:
            prefix.append(frame(f"{s.phase}/{s.layer}" if s.phase else s.layer))
        for fn, c in sorted(s.functions.items(), key=lambda kv: -kv[1]):
            if c <= 0:
                continue
            samples.append(prefix + [frame(x) for x in s.stack(fn)])
            weights.append(c)
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "shared": {"frames": frames},
        "profiles": [{"type": "sampled", "name": f"{p.title} (cycles)", "unit": "none",
                      "startValue": 0, "endValue": sum(weights), "samples": samples,
                      "weights": weights}],
        "name": p.title,
        "activeProfileIndex": 0,
        "exporter": "mcusim",
    }


def chrome_trace(p: Profile) -> dict[str, Any]:
    us = 1e6 / p.clock_hz
    events: list[dict[str, Any]] = []

    def span(name: str, cat: str, start: int, cycles: int, args: dict[str, Any]) -> None:
        events.append({"name": name, "cat": cat, "ph": "X", "pid": 1, "tid": 1,
                       "ts": start * us, "dur": cycles * us, "args": args})

    def runs(key):
        group: list = []
        for s in p.slices:
            if group and key(group[-1]) != key(s):
                yield group
                group = []
            group.append(s)
        if group:
            yield group

    for g in runs(lambda s: s.phase):
        span(g[0].phase or "call", "phase", g[0].start, g[-1].start + g[-1].cycles - g[0].start,
             {"calls": len(g)})
    for g in runs(lambda s: (s.phase, s.layer)):
        if g[0].layer:
            span(g[0].layer, "layer", g[0].start, g[-1].start + g[-1].cycles - g[0].start,
                 {"phase": g[0].phase})
    for s in p.slices:
        span(s.name, "kernel", s.start, s.cycles,
             {"cycles": s.cycles, "layer": s.layer, "phase": s.phase})
    events.sort(key=lambda e: (e["ts"], -e["dur"]))
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"mcu": p.mcu, "clock_hz": p.clock_hz, "cycles": p.total}}


def write_exports(p: Profile, callgrind_path: str | None, speedscope_path: str | None,
                  chrome_path: str | None) -> list[Path]:
    paths = []
    if callgrind_path:
        paths.append(_write(callgrind_path, callgrind(p)))
    if speedscope_path:
        paths.append(_write(speedscope_path, json.dumps(speedscope(p))))
    if chrome_path:
        paths.append(_write(chrome_path, json.dumps(chrome_trace(p))))
    return paths
