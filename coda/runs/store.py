"""An embedded SQLite store of finished design evaluations, keyed by everything they depend on.

One table, `results(key PRIMARY KEY, row, created_s)`: `key` is `result_key(...)` (a SHA-256 of
the canonical JSON of the design with its derived area and power, the model config, the
workload, the placement choices, the layer timer, the coda version and `cost_model_digest()`),
`row` the JSON of one row of `SearchResult.frame`. Every row
is committed as soon as it is written, so an interrupted search loses at most the designs in
flight (only the searching process writes; its workers never do), and a repeated search reads
every row back instead of evaluating it.

A coda store is marked in its SQLite header: `PRAGMA application_id` is `APPLICATION_ID` and
`PRAGMA user_version` is `SCHEMA_VERSION`. A new or empty file gets the marker; any other
non-empty file (another program's database, a text file) is refused without being written. A
marked store that fails SQLite's `quick_check` is reported as damaged and left as it is. A
store that cannot be written (file or directory permissions, a read-only file system) is opened
read-only (`ResultStore.writable` is False), and `put` refuses; `search` refuses it up front
when it would have to evaluate a design.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from coda.errors import ConfigError
from coda.paths import can_append, can_create_in, writable_file

SCHEMA = "coda.search.store/1"
APPLICATION_ID = 0x436F4441
"""`PRAGMA application_id` of a coda store: the bytes "CoDA" as a 32-bit big-endian integer."""
SCHEMA_VERSION = 1
"""`PRAGMA user_version` of a coda store: the layout of its `results` table."""
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_BYTES = 100  # the SQLite file header: user_version at offset 60, application_id at 68 (big-endian)


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


COST_MODEL_SUFFIXES = (".py", ".json", ".json.gz", ".csv", ".csv.gz")
"""Files of the installed package whose content a result may depend on: code (every constant of the
area, power, predictor, ILP and placement models lives in it), catalogs, calibration and data."""


def cost_model_digest(root: str | Path | None = None) -> str:
    """SHA-256 (hex, 32 chars) of every cost-model file of the package under `root` (default: the
    installed `coda`, without its command line) and of the GPU calibration file a user selected
    with `$CODA_GPU_CALIBRATION`, so that a stored result is never read back after a constant,
    a calibration or a data file changed.

    It is deliberately coarse (any change to the package's code invalidates stored rows): a missed
    dependency would silently return stale numbers, an extra one only costs a re-evaluation.
    """
    from coda.predictor.gpu_tiles import CALIBRATION_ENV

    base = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    files = sorted(p for p in base.rglob("*") if p.is_file() and p.name.endswith(COST_MODEL_SUFFIXES)
                   and "cli" not in p.relative_to(base).parts[:1] and "__pycache__" not in p.parts)
    for path in files:
        h.update(path.relative_to(base).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    user = os.environ.get(CALIBRATION_ENV, "")
    if user:
        try:
            h.update(b"user-calibration\0" + Path(user).read_bytes())
        except OSError as err:
            raise ConfigError(f"${CALIBRATION_ENV}={user}: cannot be read ({err.strerror})") from None
    return h.hexdigest()[:32]


def result_key(**inputs: Any) -> str:
    """SHA-256 (hex, 32 chars) of the canonical JSON of `inputs` and the store schema."""
    text = json.dumps({"schema": SCHEMA, **_canonical(inputs)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


check_output_path = writable_file
"""`coda.paths.writable_file`: the one check of every output path (kept here for `coda.search` users)."""


def _header(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(_HEADER_BYTES)


class ResultStore:
    """Rows of finished evaluations in a marked SQLite file (module docstring).

    Args:
        path: the database file; its directory must exist. A missing or empty file becomes a
            new store.

    Attributes:
        path: the file.
        writable: False when the store exists but cannot be written (then `put` raises).

    Raises:
        ConfigError: `path` is a directory or in a missing directory; a new store cannot be
            created there; the file is not a coda store (another program's SQLite database, a
            file that is not SQLite, a store of another schema version); the store is damaged.
            No file that is refused is written.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        name = str(path)
        if self.path.is_dir():
            raise ConfigError(f"store {name!r} is a directory; give a file path inside it, e.g. "
                              f"{self.path / 'runs.sqlite'}")
        if not self.path.parent.is_dir():
            raise ConfigError(f"store {name!r}: directory {str(self.path.parent)!r} does not exist; create it first")
        exists = self.path.exists()
        try:
            header = _header(self.path) if exists else b""
        except OSError as err:
            raise ConfigError(f"store {name!r} cannot be read ({err.strerror}); check its permissions") from None
        if exists and header:
            self._check_marker(header)
        reason = (can_append(self.path) or can_create_in(self.path.parent)) if exists else \
            can_create_in(self.path.parent)
        if reason is not None and not (exists and header):
            raise ConfigError(f"store {name!r} cannot be created ({reason}); choose a writable directory")
        self.writable = reason is None
        try:
            if self.writable:
                self._con = sqlite3.connect(self.path)
            else:
                self._con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            if not (exists and header):  # new or empty file: mark it as a coda store
                self._con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self._con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._con.execute("CREATE TABLE results (key TEXT PRIMARY KEY, row TEXT NOT NULL, "
                                  "created_s REAL NOT NULL)")
                self._con.commit()
            else:
                check = [r[0] for r in self._con.execute("PRAGMA quick_check").fetchall()]
                if check != ["ok"]:
                    raise sqlite3.DatabaseError(check[0] if check else "quick_check returned nothing")
                self._con.execute("SELECT COUNT(*) FROM results").fetchone()
        except sqlite3.DatabaseError as err:
            self._close_quietly()
            raise self._damaged(err) from None

    def _check_marker(self, header: bytes) -> None:
        """Refuse a non-empty file that is not a coda store of this schema (nothing is written)."""
        name = str(self.path)
        if not header.startswith(_SQLITE_MAGIC) or len(header) < _HEADER_BYTES:
            raise ConfigError(f"store {name!r} is not an SQLite database (it starts with {header[:16]!r}); coda "
                              "leaves it untouched: pass a new file path")
        user_version = int.from_bytes(header[60:64], "big")
        app_id = int.from_bytes(header[68:72], "big")
        if app_id == APPLICATION_ID:
            if user_version != SCHEMA_VERSION:
                raise ConfigError(f"store {name!r} has coda store schema version {user_version}; this coda reads "
                                  f"version {SCHEMA_VERSION}: pass a new file path")
            return
        tables = self._foreign_tables()
        if app_id == 0 and tables == []:
            return  # an empty database: it becomes a store
        what = f"tables {', '.join(tables)}" if tables else "no tables"
        raise ConfigError(f"store {name!r} is an SQLite database that coda did not create (application_id "
                          f"{app_id:#x}, {what}); coda refuses to write to it: pass a new file path")

    def _foreign_tables(self) -> list[str] | None:
        """Names of the schema objects of a database read-only (None if it cannot be read)."""
        try:
            con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                return [r[0] for r in con.execute("SELECT name FROM sqlite_master ORDER BY name")]
            finally:
                con.close()
        except sqlite3.DatabaseError:
            return None

    def _damaged(self, err: Exception) -> ConfigError:
        p = str(self.path)
        if isinstance(err, sqlite3.OperationalError):  # locked, unopenable, read-only: not damage
            return ConfigError(f"store {p!r} cannot be used ({err}); check that no other program holds it and that "
                               "it can be written, or pass another path")
        return ConfigError(f"store {p!r} is damaged ({err}); coda left it as it is: move it aside to start a new "
                           f"store, or recover its rows with `sqlite3 {p} .recover`")

    def _close_quietly(self) -> None:
        con = getattr(self, "_con", None)
        if con is not None:
            try:
                con.close()
            except sqlite3.Error:
                pass

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored row for `key`, or None.

        Raises:
            ConfigError: the store is damaged.
        """
        try:
            found = self._con.execute("SELECT row FROM results WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError as err:
            raise self._damaged(err) from None
        return None if found is None else dict(json.loads(found[0]))

    def put(self, key: str, row: dict[str, Any]) -> None:
        """Write (or replace) the row for `key` and commit at once.

        Raises:
            ConfigError: the store is read-only or damaged.
        """
        if not self.writable:
            raise ConfigError(f"store {str(self.path)!r} is read-only; make it writable or pass another path")
        text = json.dumps(_canonical(row), sort_keys=True, allow_nan=True)
        try:
            self._con.execute("INSERT OR REPLACE INTO results (key, row, created_s) VALUES (?, ?, ?)",
                              (key, text, time.time()))
            self._con.commit()
        except sqlite3.DatabaseError as err:
            raise self._damaged(err) from None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __len__(self) -> int:
        try:
            return int(self._con.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        except sqlite3.DatabaseError as err:
            raise self._damaged(err) from None

    def close(self) -> None:
        """Close the connection (rows are already committed)."""
        self._close_quietly()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
