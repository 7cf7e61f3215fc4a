"""Request traces: (arrival_s, prompt_tokens, output_tokens) per request, read or generated.

- `load_trace(path, model=None)`: a CSV with exactly the columns `arrival_s, prompt_tokens,
  output_tokens`, or a JSON list of objects with those keys (or `{"requests": [...]}`). Strict:
  a missing or unknown column, a non-number, a negative or decreasing arrival, a prompt or an
  output of fewer than one token, or (with `model`) a prompt + output beyond the model's
  context is a `ConfigError` naming the file, the row and the field.
- `generate(n, rate_per_s, ...)`: Poisson arrivals (exponential gaps) or gamma arrivals with a
  coefficient of variation `cv` (shape 1/cv^2, mean gap 1/rate; cv = 1 is Poisson, cv > 1
  burstier), lengths from a `Lengths` distribution: fixed, uniform, Zipf (bounded, P(k) ~ k^-a)
  or resampled from a CSV of lengths. Seeded (`numpy.random.default_rng(seed)`), so the same
  arguments give the same trace.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coda.errors import ConfigError
from coda.models.config import MAX_SEQ_LEN, ModelConfig

COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")
MAX_REQUESTS = 2**24
LENGTH_KINDS = ("fixed", "uniform", "zipf", "csv")
ARRIVALS = ("poisson", "gamma")


@dataclass(frozen=True)
class Trace:
    """Requests in arrival order (arrays of equal length; seconds and tokens)."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if not n or len(self.prompt_tokens) != n or len(self.output_tokens) != n:
            raise ConfigError(f"trace {self.source or ''}: needs at least one request and arrays of equal length")

    def __len__(self) -> int:
        return len(self.arrival_s)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"arrival_s": self.arrival_s, "prompt_tokens": self.prompt_tokens,
                             "output_tokens": self.output_tokens})

    def check_context(self, model: ModelConfig) -> None:
        """Refuse requests whose prompt + output exceed the model's context (`max_seq_len`)."""
        total = self.prompt_tokens + self.output_tokens
        bad = np.flatnonzero(total > model.max_seq_len)
        if len(bad):
            i = int(bad[0])
            raise ConfigError(f"{self.source or 'trace'}: request {i}: prompt_tokens + output_tokens = "
                              f"{int(self.prompt_tokens[i])} + {int(self.output_tokens[i])} exceeds {model.name}'s "
                              f"context of {model.max_seq_len} tokens ({len(bad)} such request(s)); shorten them or "
                              "use a model with a longer context")


def _number(value: Any, where: str, integer: bool) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise ConfigError(f"{where}: {value!r} must be finite")
    if integer and x != int(x):
        raise ConfigError(f"{where}: {value!r} must be a whole number of tokens")
    return x


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if isinstance(data, dict) and set(data) == {"requests"}:
            data = data["requests"]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ConfigError(f"{path}: expected a list of objects with keys {', '.join(COLUMNS)} "
                              "(or {\"requests\": [...]})")
        return data
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing, unknown = [c for c in COLUMNS if c not in header], [c for c in header if c not in COLUMNS]
        if missing or unknown:
            raise ConfigError(f"{path}: header has {header}; missing {missing}, unknown {unknown}; the columns must "
                              f"be exactly {', '.join(COLUMNS)}")
        return list(reader)


def load_trace(path: str | os.PathLike[str], model: ModelConfig | None = None) -> Trace:
    """Read a trace file (module docstring); rows are numbered from 1 (the CSV header is row 0).

    Raises:
        ConfigError: a missing file, bad JSON, a missing or unknown column, a non-number, a
            negative or decreasing arrival, fewer than one prompt or output token, too many
            requests, a request beyond the model's context.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"trace {str(path)!r}: no such file")
    rows = _rows(p)
    if not rows:
        raise ConfigError(f"{p}: no requests")
    if len(rows) > MAX_REQUESTS:
        raise ConfigError(f"{p}: {len(rows)} requests exceed {MAX_REQUESTS}; split the trace")
    out = np.zeros((len(rows), 3))
    prev = 0.0
    for i, row in enumerate(rows, start=1):
        keys = set(row)
        if keys != set(COLUMNS):
            raise ConfigError(f"{p}: row {i}: missing {sorted(set(COLUMNS) - keys)}, unknown "
                              f"{sorted(keys - set(COLUMNS))}; each request has exactly {', '.join(COLUMNS)}")
        for j, col in enumerate(COLUMNS):
            if row[col] is None or isinstance(row[col], bool):
                raise ConfigError(f"{p}: row {i}: {col} is empty; give a number")
            out[i - 1, j] = _number(row[col], f"{p}: row {i}: {col}", integer=j > 0)
        a, pt, ot = out[i - 1]
        if a < 0:
            raise ConfigError(f"{p}: row {i}: arrival_s = {a:g} is negative; arrivals are seconds >= 0")
        if a < prev:
            raise ConfigError(f"{p}: row {i}: arrival_s = {a:g} is before the previous row's {prev:g}; sort the "
                              "requests by arrival")
        prev = a
        for col, v in (("prompt_tokens", pt), ("output_tokens", ot)):
            if not 1 <= v <= MAX_SEQ_LEN:
                raise ConfigError(f"{p}: row {i}: {col} = {v:g} must be in [1, {MAX_SEQ_LEN}] tokens")
    trace = Trace(out[:, 0], out[:, 1].astype(np.int64), out[:, 2].astype(np.int64), source=str(p))
    if model is not None:
        trace.check_context(model)
    return trace


@dataclass(frozen=True)
class Lengths:
    """A distribution of token counts.

    Attributes:
        kind: ``fixed`` (always `lo`), ``uniform`` (integers lo..hi), ``zipf`` (lo + k - 1 with
            P(k) ~ k^-a over k = 1..hi-lo+1) or ``csv`` (resampled from the file's only column).
        lo, hi: bounds, tokens.
        a: Zipf exponent (> 0).
        path: the CSV of lengths (kind ``csv``): one column, a header, one whole number >= 1 a row.
    """

    kind: str = "fixed"
    lo: int = 1
    hi: int | None = None
    a: float = 1.0
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in LENGTH_KINDS:
            raise ConfigError(f"lengths: kind={self.kind!r} must be one of {', '.join(LENGTH_KINDS)}")
        if self.kind == "csv":
            if not self.path:
                raise ConfigError("lengths: kind='csv' needs path= a CSV of lengths")
            return
        hi = self.lo if self.hi is None else self.hi
        for name, v in (("lo", self.lo), ("hi", hi)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= MAX_SEQ_LEN:
                raise ConfigError(f"lengths: {name}={v!r} must be an integer in [1, {MAX_SEQ_LEN}] tokens")
        if hi < self.lo:
            raise ConfigError(f"lengths: hi={hi} must be >= lo={self.lo}")
        if self.kind == "zipf" and not (isinstance(self.a, (int, float)) and 0 < self.a < math.inf):
            raise ConfigError(f"lengths: Zipf exponent a={self.a!r} must be a finite number > 0")
        object.__setattr__(self, "hi", hi)

    def _from_csv(self) -> np.ndarray:
        assert self.path is not None
        p = Path(self.path)
        if not p.is_file():
            raise ConfigError(f"lengths file {self.path!r}: no such file")
        with p.open(newline="") as f:
            rows = list(csv.reader(f))
        if len(rows) < 2 or any(len(r) != 1 for r in rows):
            raise ConfigError(f"{p}: a lengths CSV has one column, a header and at least one row")
        vals = [_number(r[0], f"{p}: row {i}: {rows[0][0]}", integer=True) for i, r in enumerate(rows[1:], 1)]
        for i, v in enumerate(vals, 1):
            if not 1 <= v <= MAX_SEQ_LEN:
                raise ConfigError(f"{p}: row {i}: {rows[0][0]} = {v:g} must be in [1, {MAX_SEQ_LEN}] tokens")
        return np.asarray(vals, dtype=np.int64)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n draws, integers."""
        assert self.hi is not None or self.kind == "csv"
        if self.kind == "fixed":
            return np.full(n, self.lo, dtype=np.int64)
        if self.kind == "uniform":
            return rng.integers(self.lo, int(self.hi or self.lo) + 1, n).astype(np.int64)
        if self.kind == "zipf":
            k = np.arange(1, int(self.hi or self.lo) - self.lo + 2, dtype=float)
            prob = k ** -float(self.a)
            return (self.lo + rng.choice(len(k), size=n, p=prob / prob.sum())).astype(np.int64)
        return rng.choice(self._from_csv(), size=n, replace=True).astype(np.int64)


def generate(n: int, rate_per_s: float, prompt: Lengths, output: Lengths, arrival: str = "poisson",
             cv: float = 1.0, seed: int = 0, model: ModelConfig | None = None) -> Trace:
    """A synthetic trace of `n` requests (module docstring), the first arriving at 0.

    Raises:
        ConfigError: n, rate or cv out of range, an unknown arrival process, bad lengths, or
            (with `model`) requests beyond its context.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REQUESTS:
        raise ConfigError(f"trace: n={n!r} requests must be an integer in [1, {MAX_REQUESTS}]")
    if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, (int, float)) or not 0 < rate_per_s < math.inf:
        raise ConfigError(f"trace: rate_per_s={rate_per_s!r} must be a finite number of requests/s > 0")
    if arrival not in ARRIVALS:
        raise ConfigError(f"trace: arrival={arrival!r} must be one of {', '.join(ARRIVALS)}")
    if arrival == "gamma" and not (isinstance(cv, (int, float)) and 0 < cv < math.inf):
        raise ConfigError(f"trace: cv={cv!r} must be a finite number > 0 (1 is Poisson)")
    rng = np.random.default_rng(seed)
    if arrival == "poisson":
        gaps = rng.exponential(1.0 / rate_per_s, n)
    else:
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, 1.0 / (rate_per_s * shape), n)
    gaps[0] = 0.0
    trace = Trace(np.cumsum(gaps), prompt.sample(rng, n), output.sample(rng, n),
                  source=f"{arrival} at {rate_per_s:g}/s, seed {seed}")
    if model is not None:
        trace.check_context(model)
    return trace
