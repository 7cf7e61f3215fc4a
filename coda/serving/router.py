"""Routing arriving requests to replicas: round robin, or the replica with the fewest
outstanding (arrived, unfinished) requests, ties to the lowest index (Vidur's global schedulers)."""

from __future__ import annotations

import numpy as np

from coda.errors import ConfigError


class Router:
    """Chooses a replica for each arrival. `policy`: ``round_robin`` or ``least_outstanding``."""

    def __init__(self, policy: str, replicas: int) -> None:
        if policy not in ("round_robin", "least_outstanding"):
            raise ConfigError(f"router={policy!r} must be round_robin or least_outstanding")
        self.policy = policy
        self.outstanding = np.zeros(replicas, dtype=np.int64)
        self._next = 0

    def route(self) -> int:
        """The replica for the next arrival (counted as outstanding there)."""
        if self.policy == "round_robin":
            k = self._next
            self._next = (k + 1) % len(self.outstanding)
        else:
            k = int(np.argmin(self.outstanding))
        self.outstanding[k] += 1
        return k

    def finished(self, replica: int, n: int) -> None:
        self.outstanding[replica] -= n
