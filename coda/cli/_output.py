"""Printing helpers shared by the subcommands: tables for people, stable JSON for programs."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import pandas as pd


def _clean(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars become Python numbers, NaN/inf become None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def print_json(obj: Any) -> None:
    """Stable machine-readable output: sorted keys, two-space indent."""
    json.dump(_clean(obj), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def print_table(df: pd.DataFrame, title: str | None = None, floatfmt: str = "{:.4g}") -> None:
    """A plain-text table with an optional title line."""
    if title:
        print(title)
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
        print(df.to_string(index=False, float_format=lambda v: floatfmt.format(v)))
