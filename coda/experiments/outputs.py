"""Writing an experiment's outputs: CSV and Markdown from one frame, the command and its metadata."""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from coda.units import markdown_table

FLOAT_FORMAT = "{:.4g}"
"""How floats appear in the Markdown tables (the CSV keeps full precision)."""


def write_table(df: pd.DataFrame, out: Path, stem: str) -> str:
    """Write `df` to `out/stem.csv` and return it as a Markdown table (the same columns and rows)."""
    df.to_csv(out / f"{stem}.csv", index=False)
    return markdown_table(df.astype(object).where(df.notna(), ""), floatfmt=FLOAT_FORMAT)


def git_commit(where: Path) -> dict[str, Any]:
    """The commit and dirtiness of the git work tree holding `where`, or {} when there is none (or no git)."""
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": head, "git_dirty": bool(dirty)}


def provenance() -> dict[str, Any]:
    """What the results are computed with, taken when a run starts (the code may change while it runs): coda
    version, git commit and dirtiness (when the package is in a work tree), the cost-model digest
    (`coda.runs.store.cost_model_digest`: a hash of every code and data file the numbers depend on), Python."""
    from coda import __version__
    from coda.runs.store import cost_model_digest

    return dict(coda_version=__version__, **git_commit(Path(__file__).resolve().parent),
                cost_model_digest=cost_model_digest(), python=platform.python_version(), platform=platform.platform())


def metadata(command: str, started: float, prov: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The run's command, its `provenance()` (taken at the start), start time and `extra`."""
    return dict(command=command, **prov, started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                **extra)


def cli_command() -> str:
    """The command line of this process, quoted for a shell."""
    argv = ["coda", *sys.argv[1:]] if Path(sys.argv[0]).name == "coda" else [sys.executable, *sys.argv]
    return shlex.join(argv)


def write_metadata(out: Path, meta: dict[str, Any]) -> None:
    """`command.txt` (the command alone, to copy) and `metadata.json` (everything)."""
    (out / "command.txt").write_text(meta["command"] + "\n", encoding="utf-8")
    (out / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n",
                                       encoding="utf-8")


__all__ = ["FLOAT_FORMAT", "cli_command", "git_commit", "metadata", "provenance", "write_metadata", "write_table"]
