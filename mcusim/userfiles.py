"""Reading files the user names: only regular files, never more than a size cap.

A path the user gives (an ELF, a model TOML, a data set, a catalog, a source file named by
DWARF) may be a device (`/dev/zero` reads forever), a FIFO (opening it blocks until a
writer appears), a directory or a file far larger than any sensible input.  Every reader
of user files goes through `check_regular` / `read_bytes`: the file is opened without
blocking (O_NONBLOCK: a FIFO opens at once), checked with fstat on the open descriptor (no
race between the check and the read) and read up to `limit` bytes; past the limit, or not
a regular file, is a one-line error of the caller's error class (exit 2).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mcusim.errors import McusimError, UsageError

MiB = 1 << 20
GiB = 1 << 30


def shown(path: str | Path) -> str:
    """A path for a one-line message: control and other non-printable characters escaped
    (a file name may hold a newline)."""
    text = str(path)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def size_text(n: int) -> str:
    if n >= GiB:
        return f"{n / GiB:.1f} GiB"
    if n >= MiB:
        return f"{n / MiB:.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"


def check_regular(path: str | Path, what: str, limit: int,
                  error: type[McusimError] = UsageError) -> int:
    """The size of `path` when it is a readable regular file of at most `limit` bytes;
    else `error` with one line naming the file, what it was expected to be, and why."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(f"{shown(p)}: no such file (expected {what})") from None
    except OSError as e:
        raise error(f"{shown(p)}: cannot read: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{shown(p)}: is {_kind(st.st_mode)}, not {what}") from None
    if st.st_size > limit:
        raise error(f"{shown(p)}: {size_text(st.st_size)}, larger than the {size_text(limit)} "
                    f"mcusim accepts for {what}") from None
    return st.st_size


def read_bytes(path: str | Path, what: str, limit: int,
               error: type[McusimError] = UsageError) -> bytes:
    """The contents of the regular file `path` (at most `limit` bytes), or `error`."""
    p = Path(path)
    check_regular(p, what, limit, error)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise error(f"{shown(p)}: cannot read: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between stat and open
            raise error(f"{shown(p)}: is {_kind(st.st_mode)}, not {what}")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(8 * MiB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise error(f"{shown(p)}: larger than the {size_text(limit)} mcusim accepts for "
                            f"{what}")
        return b"".join(chunks)
    except OSError as e:
        raise error(f"{shown(p)}: cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)
