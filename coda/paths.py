"""Output paths checked before any work: one rule for every file coda writes (a search store, a
plot, a trace, a calibration)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from coda.errors import ConfigError


def can_create_in(directory: Path) -> str | None:
    """None when a file can be created in `directory`, else the reason (an unlinked temporary file is the test)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        return err.strerror or str(err)
    return None


def can_append(path: Path) -> str | None:
    """None when `path` (an existing file) can be opened for writing, else the reason. Nothing is written."""
    try:
        with open(path, "ab"):
            pass
    except OSError as err:
        return err.strerror or str(err)
    return None


def writable_file(path: str | Path, what: str) -> Path:
    """`path` as a file coda can write, checked before any computation.

    Args:
        path: the file to write (it may exist; it is not modified here).
        what: how the user named it, for messages (``--plot``, ``store``, ``--out``).

    Returns:
        The path.

    Raises:
        ConfigError: `path` is a directory, its directory is missing or not a directory, or
            the file (or a new file in its directory) cannot be written.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a directory; give a file path inside it, e.g. {p / 'out'}")
    parent = p.parent
    if not parent.exists():
        raise ConfigError(f"{what} {str(path)!r}: directory {str(parent)!r} does not exist; create it first "
                          "or choose a path in an existing directory")
    if not parent.is_dir():
        raise ConfigError(f"{what} {str(path)!r}: {str(parent)!r} is not a directory; choose another path")
    reason = can_append(p) if p.exists() else can_create_in(parent)
    if reason is not None:
        raise ConfigError(f"{what} {str(path)!r} cannot be written ({reason}); choose a writable place")
    return p
