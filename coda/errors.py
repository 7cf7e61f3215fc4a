"""Errors a user can cause. The CLI prints any `CodaError` as one line and exits with code 2.

Hierarchy:
    CodaError
    ├── ConfigError        malformed input: bad field values, unknown names, bad files
    │   └── UnknownNameError   a preset / device / cluster name that does not exist
    └── InfeasibleDesign   legal input that does not fit (memory, divisibility, empty space)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CodaError(Exception):
    """Base class of every error a user of coda can cause by their input."""


class ConfigError(CodaError, ValueError):
    """Malformed input: a field out of range, a missing key, an unsupported option."""


LIST_COMMANDS: dict[str, str] = {
    "model": "coda models list",
    "gpu": "coda hardware gpus",
    "device": "coda hardware gpus` and `coda accelerators show",
    "cluster": "coda hardware clusters",
    "accelerator": "coda accelerators show",
}
"""The command that lists each catalog `UnknownNameError` names (a kind missing here gets its
names listed in the message instead)."""


class UnknownNameError(ConfigError, KeyError):
    """A name (preset, GPU, cluster, dtype, ...) that is not in its catalog."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]) -> None:
        choices = sorted(choices)
        close = difflib.get_close_matches(str(name).lower(), choices, n=3, cutoff=0.5)
        if close:
            hint = f"did you mean {', '.join(repr(c) for c in close)}?"
        elif len(choices) <= 12 or kind not in LIST_COMMANDS:
            hint = f"known: {', '.join(choices)}"
        else:
            hint = f"{len(choices)} known; list them with `{LIST_COMMANDS[kind]}`"
        super().__init__(f"unknown {kind} {name!r}; {hint}")
        self.kind, self.name, self.suggestions = kind, name, close

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class InfeasibleDesign(CodaError):
    """A legal design or plan that cannot run: out of memory, sizes that do not divide, nothing left."""
