"""Tables that stay readable at any width: `Stack` and markup-safe text.

A `Stack` is built like a rich Table (add_column, add_row) and decides at render time,
from the console's width, how to show it: one table when every column fits at its
natural width; otherwise the columns are stacked into several tables that each repeat
the key columns (the MCU, the layer, the function, ...).  Figures and names are never
squeezed: columns are `no_wrap` unless declared `wrap=True` (free text such as a rule, a
source line or disassembly, which wraps at spaces).  So rich never has to shorten a cell
with an ellipsis.

`esc` escapes rich markup in text that comes from users, code or data (`a[i]`, `[/bold]`
in a name stay literal); every renderer passes such strings through it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

#: width a free-text (wrap=True) column claims when deciding whether columns fit
WRAP_MIN = 16


_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def esc(value: Any) -> str:
    """str(value) with rich markup escaped: shows `[i]`, `[red]`, `[/bold]` literally.

    Like rich.markup.escape, except for a trailing backslash: rich doubles it (right
    before a tag, shown doubled everywhere else); here a zero-width word joiner follows it,
    so it is shown once and never escapes a tag that follows."""
    text = _TAG.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", str(value))
    return text + "\u2060" if text.endswith("\\") else text


def unbroken(value: Any) -> str:
    """esc(value) with no-break spaces: a name such as 'gcc 12.2.1' that a wrapped title or
    caption must not split over two lines."""
    return esc(value).replace(" ", "\u00a0")


def _text(cell: Any) -> Text:
    if isinstance(cell, Text):
        return cell
    return Text.from_markup(str(cell))


def cell_width(cell: Any, wrap: bool = False, wrap_min: int = WRAP_MIN) -> int:
    """Columns a cell needs: its longest line, or for free text at most `wrap_min`."""
    lines = _text(cell).plain.split("\n")
    longest = max((Text(x).cell_len for x in lines), default=0)
    return min(longest, wrap_min) if wrap else longest


@dataclass
class _Column:
    header: str
    justify: str = "left"
    wrap: bool = False
    style: str | None = None
    min_width: int = WRAP_MIN


@dataclass
class _Row:
    cells: list[Any]
    style: str | None = None
    end_section: bool = False


@dataclass
class Stack:
    """A table that stacks its columns into several tables when the console is too narrow.
    The first `key` columns are repeated in every part."""

    title: str | None = None
    caption: str | None = None
    key: int = 1
    show_header: bool = True
    header_style: str | None = "bold"
    columns: list[_Column] = field(default_factory=list)
    rows: list[_Row] = field(default_factory=list)

    def add_column(self, header: str = "", justify: str = "left", wrap: bool = False,
                   style: str | None = None, min_width: int = WRAP_MIN) -> None:
        """`wrap`: free text that may wrap at spaces; it claims `min_width` columns."""
        self.columns.append(_Column(header, justify, wrap, style, min_width))

    def add_row(self, *cells: Any, style: str | None = None, end_section: bool = False) -> None:
        self.rows.append(_Row(list(cells), style, end_section))

    # ------------------------------------------------------------------ layout
    def widths(self) -> list[int]:
        """Each column's need: header and cells (free text: at most WRAP_MIN)."""
        out = []
        for i, c in enumerate(self.columns):
            w = cell_width(c.header) if self.show_header else 0
            for r in self.rows:
                if i < len(r.cells):
                    w = max(w, cell_width(r.cells[i], c.wrap, c.min_width))
            out.append(w)
        return out

    @staticmethod
    def need(widths: Iterable[int]) -> int:
        """Columns of a boxed table with these content widths (padding 1, borders)."""
        ws = list(widths)
        return 1 + sum(w + 3 for w in ws)

    def parts(self, max_width: int) -> list[list[int]]:
        """Column indices of each table: all in one when they fit, else greedy groups
        after the key columns."""
        widths = self.widths()
        n = len(self.columns)
        if self.need(widths) <= max_width or n <= self.key + 1:
            return [list(range(n))]
        keys = list(range(min(self.key, n)))
        groups: list[list[int]] = []
        current: list[int] = []
        for i in range(len(keys), n):
            trial = keys + current + [i]
            if current and self.need(widths[j] for j in trial) > max_width:
                groups.append(keys + current)
                current = [i]
            else:
                current.append(i)
        if current:
            groups.append(keys + current)
        return groups

    def tables(self, max_width: int) -> list[Table]:
        parts = self.parts(max_width)
        out = []
        for k, cols in enumerate(parts):
            title = self.title
            if k and self.title:  # a short reminder, not the whole title again
                title = (f"{self.title} (continued)" if Text.from_markup(self.title).cell_len
                         <= 40 else "(continued)")
            t = Table(title=title, caption=self.caption if len(parts) == 1 else None,
                      header_style=self.header_style, show_header=self.show_header)
            for i in cols:
                c = self.columns[i]
                t.add_column(c.header, justify=c.justify,  # type: ignore[arg-type]
                             no_wrap=not c.wrap, overflow="fold", style=c.style,
                             min_width=min(c.min_width, max_width // 2) if c.wrap else None)
            for r in self.rows:
                t.add_row(*[r.cells[i] if i < len(r.cells) else "" for i in cols],
                          style=r.style, end_section=r.end_section)
            out.append(t)
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        tables = self.tables(options.max_width)
        yield from tables
        if len(tables) > 1 and self.caption:  # under all the parts, at the console's width
            yield Text.from_markup(self.caption, style="table.caption", justify="center")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widths = self.widths()
        keys = widths[:self.key]
        return Measurement(min(self.need([*keys, max(widths[self.key:], default=0)]),
                               options.max_width),
                           min(self.need(widths), options.max_width))
