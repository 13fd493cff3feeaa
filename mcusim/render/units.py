"""Numbers for people: one place that turns seconds, millijoules, bytes and counts into
short strings in human units.

Rules, shared by every renderer: 3 significant digits, never exponent notation, thousands
separators for large numbers, the unit chosen so the mantissa is in [1, 1000) (and so that
rounding never shows "1000 µs": that is "1.00 ms").  JSON keeps the raw figures
(`latency_ms`, `energy_mj`, ...); these functions only make table cells.
"""

from __future__ import annotations

import math

DASH = "-"

_TIME = (("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0))
_ENERGY = (("nJ", 1e-9), ("µJ", 1e-6), ("mJ", 1e-3), ("J", 1.0), ("kJ", 1e3))


def sig(x: float, digits: int = 3) -> str:
    """`x` with `digits` significant digits (all integer digits of a large number), no
    exponent, thousands separators: 0.00667 -> '0.00667', 12.0 -> '12.0', 1234.5 -> '1,235'."""
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    r = round(x, decimals)
    if r != 0:  # 9.996 rounds to 10.0: one decimal fewer keeps 3 significant digits
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(r))))
    return f"{x:,.{decimals}f}"


def _scaled(value: float, units: tuple[tuple[str, float], ...], digits: int = 3
            ) -> tuple[str, str]:
    """(mantissa, unit) with the largest unit that keeps the rounded mantissa >= 1."""
    if value == 0:
        return "0", units[0][0]
    mag = abs(value)
    name, scale = units[0]
    for n, s in units:
        if float(sig(mag / s, digits).replace(",", "")) >= 1:
            name, scale = n, s
    return sig(value / scale, digits), name


def fmt_time(seconds: float | None) -> str:
    """Seconds in ns, µs, ms or s (3 significant digits); min and h beyond 10 minutes."""
    if seconds is None:
        return DASH
    if abs(seconds) >= 3 * 3600:
        return f"{sig(seconds / 3600)} h"
    if abs(seconds) >= 600:
        return f"{sig(seconds / 60)} min"
    m, unit = _scaled(seconds, _TIME)
    return f"{m} {unit}" if seconds else "0 s"


def fmt_ms(ms: float | None) -> str:
    """Milliseconds (as in the JSON's `latency_ms`) in human units."""
    return DASH if ms is None else fmt_time(ms / 1e3)


def fmt_cycles_time(cycles: float | None, clock_hz: int) -> str:
    """The time of `cycles` at `clock_hz`."""
    return DASH if cycles is None else fmt_time(cycles / clock_hz)


def fmt_time_range(lo_s: float, hi_s: float) -> str:
    """'6.99–7.09 ms': both ends in the unit of the larger one."""
    if hi_s <= 0 or abs(hi_s) >= 600:
        return f"{fmt_time(lo_s)} – {fmt_time(hi_s)}"
    _, unit = _scaled(hi_s, _TIME)
    scale = dict(_TIME)[unit]
    return f"{sig(lo_s / scale)}–{sig(hi_s / scale)} {unit}"


def fmt_energy(mj: float | None) -> str:
    """Millijoules (as in the JSON's `energy_mj`) in nJ, µJ, mJ, J or kJ."""
    if mj is None:
        return DASH
    if mj == 0:
        return "0 J"
    m, unit = _scaled(mj / 1e3, _ENERGY)
    return f"{m} {unit}"


def fmt_count(n: float | None) -> str:
    """A count with thousands separators: 1564563 -> '1,564,563'."""
    return DASH if n is None else f"{round(n):,}"


def fmt_pct(part: float, total: float, decimals: int = 1) -> str:
    """`part` as a percentage of `total` ('-' when the total is 0)."""
    return f"{100 * part / total:.{decimals}f}" if total else DASH


def fmt_bytes(n: int) -> str:
    """Bytes: exact sizes as they are written on datasheets ('264 KB', '2 MB', '7,936 KB'),
    others in B, KB or MB with 3 significant digits ('12.9 KB', '1.98 MB')."""
    if n < 0:
        return f"-{fmt_bytes(-n)}"
    if n < 1024:
        return f"{n} B"
    if n % (1 << 20) == 0:
        return f"{n >> 20:,} MB"
    if n % 1024 == 0:
        return f"{n >> 10:,} KB"
    if n < 1 << 20:
        return f"{sig(n / 1024)} KB"
    return f"{sig(n / (1 << 20))} MB"


def fmt_hz(hz: float) -> str:
    """A clock: '133 MHz', '64 MHz', '32.768 kHz'."""
    if hz >= 1e6:
        return f"{hz / 1e6:g} MHz"
    if hz >= 1e3:
        return f"{hz / 1e3:g} kHz"
    return f"{hz:g} Hz"


def fmt_int32(value: int) -> str:
    """r0 as the JSON's unsigned `return`, its int32 reading beside it when that differs,
    and hex: '4294967291 (-5 as int32), 0xfffffffb'."""
    u = value & 0xFFFFFFFF
    s = u - (1 << 32) if u & 0x80000000 else u
    text = f"{u}"
    if s != u:
        text += f" ({s} as int32)"
    return f"{text}, 0x{u:08x}"
