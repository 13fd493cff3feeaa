"""Terminal tables of a hot-spot profile (mcusim.profile.Profile).

Function names, file names, source text and disassembly come from the program: they are
escaped (`a[i]` stays `a[i]`), and tables are `Stack`s that stack columns at 80 columns."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from mcusim.profile import Profile, source_text
from mcusim.render.layout import Stack, esc, unbroken
from mcusim.render.units import fmt_count


def _pct(c: int, total: int) -> str:
    return f"{100 * c / total:.1f}" if total else "-"


def _title(p: Profile, what: str, toolchain: str | None) -> str:
    tc = f" ({unbroken(toolchain)})" if toolchain else ""
    return f"{esc(p.title)}{tc}: {what}"


def function_table(p: Profile, top: int, toolchain: str | None = None) -> Stack:
    t = Stack(title=_title(p, f"cycles by function ({p.total:,} in all)", toolchain))
    for col in ("function", "exclusive", "%", "inclusive", "%", "calls", "instructions"):
        t.add_column(col, justify="left" if col == "function" else "right")
    for fn, f in p.top_functions(top):
        t.add_row(esc(fn), fmt_count(f.exclusive), _pct(f.exclusive, p.total),
                  fmt_count(f.inclusive), _pct(f.inclusive, p.total), fmt_count(f.calls),
                  fmt_count(f.instructions))
    t.caption = esc("; ".join(p.assumptions[:1]))
    return t


def line_table(p: Profile, top: int, toolchain: str | None = None) -> Stack:
    t = Stack(title=_title(p, "cycles by source line", toolchain))
    for col in ("file:line", "function", "cycles", "%", "source"):
        t.add_column(col, justify="right" if col in ("cycles", "%") else "left",
                     wrap=col == "source")
    for r in p.top_lines(top):
        where = f"{r.file}:{r.line}" if r.file else "(no line info)"
        text = source_text(r.file, r.line, p.paths.get(r.file or "")) or ""
        t.add_row(esc(where), esc(r.function), fmt_count(r.cycles), _pct(r.cycles, p.total),
                  Text(text.strip()))
    return t


def block_table(p: Profile, top: int, toolchain: str | None = None) -> Stack:
    t = Stack(title=_title(p, "cycles by basic block", toolchain))
    for col in ("block", "function", "cycles", "%", "runs", "cycles\n/ run", "instructions"):
        t.add_column(col, justify="right" if col in ("cycles", "%", "runs", "cycles\n/ run")
                     else "left", wrap=col == "instructions")
    for b in p.top_blocks(top):
        body = "; ".join(x.split(": ", 1)[1] for x in b.text[:6]) + (
            f"; +{len(b.text) - 6} more ({len(b.text)} in all)" if len(b.text) > 6 else "")
        t.add_row(f"{b.address:08x}-\n{b.address + b.size:08x}", esc(b.function),
                  fmt_count(b.cycles), _pct(b.cycles, p.total), fmt_count(b.executions),
                  f"{b.cycles / max(b.executions, 1):.1f}", Text(body))
    return t


def class_table(p: Profile, top: int, toolchain: str | None = None) -> Stack:
    t = Stack(title=_title(p, "cycles by instruction class", toolchain))
    for col in ("class", "instructions", "cycles", "%"):
        t.add_column(col, justify="left" if col == "class" else "right")
    rows = sorted(p.classes.items(), key=lambda kv: -kv[1][0])[:top]
    for cls, (c, n) in rows:
        t.add_row(esc(cls), fmt_count(n), fmt_count(c), _pct(c, p.total))
    return t


def annotate(p: Profile, function: str) -> Table:
    """The function's source with cycles and % per line in the margin, or its disassembly
    with cycles per instruction when there is no line table."""
    lines = {r.line: r for r in p.lines.values() if r.function == function and r.line}
    files = {r.file for r in p.lines.values() if r.function == function and r.file}
    t = Table(title=f"{esc(function)}: annotated "
                    f"({p.functions[function].exclusive:,} cycles, "
                    f"{_pct(p.functions[function].exclusive, p.total)} % of all)",
              header_style="bold", show_lines=False)
    t.add_column("cycles", justify="right", no_wrap=True)
    t.add_column("%", justify="right", no_wrap=True)
    if lines and len(files) == 1:
        path = next(iter(files))
        lo, hi = min(lines), max(lines)
        t.add_column("line", justify="right", no_wrap=True)
        t.add_column(Text(f"{path}"), overflow="fold")
        for n in range(max(1, lo - 2), hi + 2):
            r = lines.get(n)
            text = source_text(path, n, p.paths.get(path))
            if text is None and r is None:
                continue
            t.add_row(fmt_count(r.cycles) if r else "", _pct(r.cycles, p.total) if r else "",
                      str(n), Text(text or ""), style=None if r else "dim")
        return t
    t.add_column("address", no_wrap=True)
    t.add_column("instruction (no line table: disassembly)", overflow="fold")
    for addr in sorted(a for a, v in p.insns.items() if v[3] == function):
        c, _n, text, _fn = p.insns[addr]
        t.add_row(fmt_count(c), _pct(c, p.total), f"{addr:08x}", Text(text))
    return t


def call_tree(p: Profile, top: int, toolchain: str | None = None) -> Tree:
    """The traced call tree: each path's inclusive cycles (children sorted by cost)."""
    inclusive: dict[tuple[str, ...], int] = {}
    for path, (excl, _calls) in p.tree.items():
        for i in range(1, len(path) + 1):
            inclusive[path[:i]] = inclusive.get(path[:i], 0) + excl
    root = Tree(f"[bold]{_title(p, 'call tree', toolchain)}[/bold] ({p.total:,} cycles)")

    def add(node: Any, prefix: tuple[str, ...], depth: int) -> None:
        kids = sorted((q for q in inclusive if len(q) == len(prefix) + 1
                       and q[:len(prefix)] == prefix), key=lambda q: -inclusive[q])
        for q in kids[:top]:
            excl, calls = p.tree.get(q, (0, 0))
            branch = node.add(Text(f"{q[-1]}  {inclusive[q]:,} ({_pct(inclusive[q], p.total)} %)"
                                   f"  self {excl:,}  calls {calls:,}"))
            if depth < 8:
                add(branch, q, depth + 1)
        if len(kids) > top:
            node.add(f"({len(kids) - top} more)")

    add(root, (), 0)
    return root
