"""A small TOML writer for the generators (tomllib reads only).  `Raw(text)` is written as
is, for values no Python object yields (nan spelled differently, deep nesting, 1e400)."""

from __future__ import annotations

import math
import re
from typing import Any

_BARE = re.compile(r"[A-Za-z0-9_-]+\Z")


class Raw(str):
    """Text written verbatim as a value."""


def key(k: str) -> str:
    return k if _BARE.match(k) else string(k)


def string(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def value(v: Any) -> str:
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        r = repr(v)
        return r if any(c in r for c in ".en") else r + ".0"
    if isinstance(v, str):
        return string(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_table(v: Any) -> bool:
    return isinstance(v, dict) and not isinstance(v, Raw)


def _is_aot(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(_is_table(x) for x in v)


def dumps(doc: dict[str, Any]) -> str:
    lines: list[str] = []
    _body(lines, [], doc)
    return "\n".join(lines).lstrip("\n") + "\n"


def _body(lines: list[str], path: list[str], table: dict[str, Any]) -> None:
    for k, v in table.items():
        if not _is_table(v) and not _is_aot(v):
            lines.append(f"{key(k)} = {value(v)}")
    for k, v in table.items():
        if _is_table(v):
            lines += ["", "[" + ".".join(key(p) for p in [*path, k]) + "]"]
            _body(lines, [*path, k], v)
        elif _is_aot(v):
            for item in v:
                lines += ["", "[[" + ".".join(key(p) for p in [*path, k]) + "]]"]
                _body(lines, [*path, k], item)
