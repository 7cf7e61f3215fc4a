"""Unit constants and human-readable formatting, the only place coda converts units.

Capacities use binary prefixes (KiB = 1024 B); rates and counts use decimal SI prefixes
(GB/s = 1e9 B/s, TFLOP/s = 1e12 FLOP/s). There is no binary "tera" anywhere in coda.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4

KB = 1e3
MB = 1e6
GB = 1e9
TB = 1e12

K = 1e3
M = 1e6
G = 1e9
T = 1e12
P = 1e15

US = 1e-6
MS = 1e-3

BYTES_PER_ELEMENT = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a dtype name (`fp32`, `tf32`, `fp16`, `bf16`, `fp8`, `int8`)."""
    from coda.errors import UnknownNameError

    try:
        return BYTES_PER_ELEMENT[dtype]
    except KeyError:
        raise UnknownNameError("dtype", dtype, BYTES_PER_ELEMENT) from None


def _scaled(value: float, base: float, prefixes: str) -> tuple[float, str]:
    i = 0
    while abs(value) >= base and i < len(prefixes) - 1:
        value /= base
        i += 1
    return value, prefixes[i].strip()


def fmt_bytes(n_bytes: float, digits: int = 3) -> str:
    """Capacity in binary units: `fmt_bytes(3 * 2**30) == '3 GiB'`."""
    v, p = _scaled(float(n_bytes), 1024.0, " KMGTPE")
    return f"{v:.{digits}g} {p + 'i' if p else ''}B"


def fmt_si(value: float, unit: str, digits: int = 3) -> str:
    """Decimal SI: `fmt_si(3.12e14, 'FLOP/s') == '312 TFLOP/s'`; sub-unit values use m/u/n."""
    if value != 0 and abs(value) < 1:
        for factor, p in ((1e-3, "m"), (1e-6, "u"), (1e-9, "n")):
            if abs(value) >= factor:
                return f"{value / factor:.{digits}g} {p}{unit}"
        return f"{value:.{digits}g} {unit}"
    v, p = _scaled(float(value), 1000.0, " kMGTPE")
    return f"{v:.{digits}g} {p}{unit}"


def fmt_count(value: float, digits: int = 4) -> str:
    """Plain counts with K/M/B/T suffixes, as papers write parameter counts: `6.74B`."""
    for factor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g}{suffix}"
    return f"{value:.{digits}g}"


def markdown_table(df: pd.DataFrame, title: str | None = None, floatfmt: str = "{:.4g}") -> str:
    """A GitHub-flavoured Markdown table of `df` (a bold title line above it), floats as `floatfmt`."""
    def cell(v: Any) -> str:
        return floatfmt.format(v) if isinstance(v, float) else str(v).replace("|", "\\|")

    lines = [f"**{title}**", ""] if title else []
    lines += ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
