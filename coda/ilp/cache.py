"""Schedule cache: each distinct (layer, core configuration, latencies, options) is solved once.

A design-space search meets the same layer on many designs; designs that share core counts and
op latencies share the schedule. Keys hash the graph signature (ops and edges), the core
counts, the exact latencies of every task after fusion, and the solver options. Entries live
in memory and, with `path`, as one JSON file per key in that directory (written atomically),
so a later process reuses them. `stats` reports hits and misses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coda.ilp.fusion import Problem
from coda.ilp.schedule import Schedule
from coda.models.graph import OpGraph

log = logging.getLogger(__name__)

SCHEMA = "coda.ilp.schedule-cache/1"


@dataclass(frozen=True)
class CacheStats:
    """Lookups so far: hits in memory, hits on disk, misses."""

    memory_hits: int
    disk_hits: int
    misses: int

    @property
    def hits(self) -> int:
        return self.memory_hits + self.disk_hits

    @property
    def lookups(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        """Hits / lookups (0 before the first lookup)."""
        return self.hits / self.lookups if self.lookups else 0.0


class ScheduleCache:
    """In-memory (and optionally on-disk) store of `Schedule`s by key.

    Args:
        path: directory for JSON entries; None keeps the cache in memory only.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._memory: dict[str, Schedule] = {}
        self._memory_hits = self._disk_hits = self._misses = 0

    @staticmethod
    def key(graph: OpGraph, problem: Problem, **options: Any) -> str:
        """Key of (graph signature, core counts, latency hash, options)."""
        parts = [SCHEMA, graph.signature(), str(problem.n_tc), str(problem.n_vc), problem.latency_hash(),
                 json.dumps(options, sort_keys=True, default=str)]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]

    def _file(self, key: str) -> Path:
        assert self.path is not None
        return self.path / f"{key}.json"

    def get(self, key: str) -> Schedule | None:
        """The cached schedule, or None (counted as a miss)."""
        if key in self._memory:
            self._memory_hits += 1
            return self._memory[key]
        if self.path is not None and self._file(key).exists():
            try:
                data = json.loads(self._file(key).read_text())
                if data.get("schema") != SCHEMA:
                    raise ValueError(f"schema {data.get('schema')!r}")
                entry = Schedule.from_dict(data["schedule"])
            except (OSError, ValueError, KeyError, TypeError) as err:
                log.warning("ignoring unreadable schedule cache entry %s: %s", self._file(key), err)
            else:
                self._memory[key] = entry
                self._disk_hits += 1
                return entry
        self._misses += 1
        return None

    def put(self, key: str, schedule: Schedule) -> None:
        """Store `schedule` in memory and, with a path, on disk."""
        self._memory[key] = schedule
        if self.path is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"schema": SCHEMA, "schedule": schedule.to_dict()}, fh)
        os.replace(tmp, self._file(key))

    def __len__(self) -> int:
        return len(self._memory)

    @property
    def stats(self) -> CacheStats:
        return CacheStats(self._memory_hits, self._disk_hits, self._misses)

    def clear(self) -> None:
        """Forget the in-memory entries and counters (files on disk stay)."""
        self._memory.clear()
        self._memory_hits = self._disk_hits = self._misses = 0
