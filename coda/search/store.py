"""An embedded SQLite store of finished design evaluations, keyed by everything they depend on.

One table, `results(key PRIMARY KEY, row, created_s)`: `key` is `result_key(...)` (a SHA-256 of
the canonical JSON of the design, the model config, the workload, the placement choices, the
layer timer and the coda version), `row` the JSON of one row of `SearchResult.frame`. Every row
is committed as soon as it is written, so an interrupted search loses at most the designs in
flight (only the searching process writes; its workers never do), and a repeated search reads
every row back instead of evaluating it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from coda.errors import ConfigError

SCHEMA = "coda.search.store/1"


def _canonical(obj: Any) -> Any:
    """JSON-ready copy with tuples/sets as sorted-or-ordered lists and numpy scalars as Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (set, frozenset)):
        return sorted((_canonical(v) for v in obj), key=repr)
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return obj.item()
    return obj


def result_key(**inputs: Any) -> str:
    """SHA-256 (hex, 32 chars) of the canonical JSON of `inputs` and the store schema."""
    text = json.dumps({"schema": SCHEMA, **_canonical(inputs)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ResultStore:
    """Rows of finished evaluations in an SQLite file (created on first use).

    Args:
        path: the database file; its directory must exist.

    Raises:
        ConfigError: the file cannot be opened as a coda result store.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.parent.exists():
            raise ConfigError(f"store {self.path}: directory {self.path.parent} does not exist; create it first")
        try:
            self._con = sqlite3.connect(self.path)
            self._con.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, row TEXT NOT NULL, "
                              "created_s REAL NOT NULL)")
            self._con.commit()
        except sqlite3.DatabaseError as err:
            raise ConfigError(f"store {self.path} is not a usable SQLite result store ({err}); "
                              "pass another path or delete the file") from None

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored row for `key`, or None."""
        cur = self._con.execute("SELECT row FROM results WHERE key = ?", (key,))
        found = cur.fetchone()
        return None if found is None else dict(json.loads(found[0]))

    def put(self, key: str, row: dict[str, Any]) -> None:
        """Write (or replace) the row for `key` and commit at once."""
        text = json.dumps(_canonical(row), sort_keys=True, allow_nan=True)
        self._con.execute("INSERT OR REPLACE INTO results (key, row, created_s) VALUES (?, ?, ?)",
                          (key, text, time.time()))
        self._con.commit()

    def __len__(self) -> int:
        return int(self._con.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def close(self) -> None:
        """Close the connection (rows are already committed)."""
        self._con.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
