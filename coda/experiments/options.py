"""How an experiment runs: one `Options` for every experiment's `run(Options)`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Options:
    """How an experiment runs (none of these change a result except `quick` and, where a layer timer is
    used, `timer`).

    Attributes:
        out: output folder.
        store: SQLite result store (None: keep nothing; a re-run then evaluates everything again).
        executor: ``process``, ``inline`` or ``ray``.
        jobs: tasks (designs or deployments) in flight.
        quick: the experiment's small space instead of the full one.
        timer: ``predictor`` or ``ilp`` layer timer (recorded only where the experiment times no layers).
        progress: progress bars on stderr.
        command: the command line recorded in `command.txt`.
    """

    out: Path
    store: Path | None = None
    executor: str = "process"
    jobs: int = 2
    quick: bool = False
    timer: str = "predictor"
    progress: bool = False
    command: str = ""
