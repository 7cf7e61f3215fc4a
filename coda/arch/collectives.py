"""The time of collectives on a `Cluster` (`coda.arch.clusters`): the kinds, the affine cost and
the NCCL ring model.

Collective model (NCCL ring, the algorithm NCCL picks for large messages on these systems;
nccl-tests `doc/PERFORMANCE.md` for the bus-bandwidth factors). For a group of `n` devices:

- the levels it spans: level 0 if `n >= 2`, and level `l >= 1` if its members are in more than
  one level-`(l-1)` domain; `m_l` is the fewest members in one such domain (`m_0 = 1`);
- ring bandwidth `B = min_l m_l * bw_l * eff_l` over spanned levels: a ring crosses each
  domain boundary once per channel, and NCCL runs one channel per device (one NIC each), so a
  node with `m` members exports `m` links' worth (the Vidur A100 2-node data support this: the
  per-NIC efficiency at 64 MiB is 0.24 with 1 device per node and 0.21 with 4, whereas a
  two-level hierarchical all-reduce would need 0.24 and 0.12);
- per-step latency `alpha = max_l latency_l`; fixed per-call overhead `o`.

With `S = n_bytes` in the nccl-tests convention:

| kind | S is | time |
|---|---|---|
| all_reduce | the buffer (in = out) | `o + 2(n-1) alpha + 2(n-1)/n * S / B` |
| reduce_scatter | the input (n shards) | `o + (n-1) alpha + (n-1)/n * S / B` |
| all_gather | the output (n shards) | `o + (n-1) alpha + (n-1)/n * S / B` |
| broadcast | the buffer | `o + (n-1) alpha + S / B` (pipelined ring) |
| all_to_all | one device's send buffer | `o + (n-1) alpha + max_l S (n - m_l)/n / (bw_l eff_l)` |
| send_recv | the message (n = 2) | `p2p_latency_L + S / (bw_L p2p_eff_L)`, L the outer level |

`m_l` in the all-to-all row counts the peers inside a device's own level-`(l-1)` domain, whose
chunks do not cross level `l`. The time is 0 for `n == 1` or `S == 0`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from coda.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from coda.arch.clusters import Cluster, Group


class CollectiveKind(str, Enum):
    """Collectives whose time a `Cluster` predicts."""

    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"
    REDUCE_SCATTER = "reduce_scatter"
    ALL_TO_ALL = "all_to_all"
    SEND_RECV = "send_recv"
    BROADCAST = "broadcast"

    @classmethod
    def from_str(cls, name: str | CollectiveKind) -> CollectiveKind:
        """Parse `all_reduce`, `all-reduce`, `AllReduce`-style names; raise UnknownNameError otherwise."""
        if isinstance(name, cls):
            return name
        key = str(name).strip().lower().replace("-", "_")
        aliases = {"allreduce": "all_reduce", "allgather": "all_gather", "reducescatter": "reduce_scatter",
                   "alltoall": "all_to_all", "sendrecv": "send_recv", "p2p": "send_recv"}
        key = aliases.get(key, key)
        try:
            return cls(key)
        except ValueError:
            raise UnknownNameError("collective", str(name), [k.value for k in cls]) from None



@dataclass(frozen=True)
class CollectiveCost:
    """An affine cost `time = latency_s + s_per_byte * n_bytes` (0 for 0 bytes)."""

    latency_s: float
    s_per_byte: float

    def time(self, n_bytes: float) -> float:
        """Seconds for `n_bytes` (the collective's S, see the module docstring)."""
        return 0.0 if n_bytes == 0 else self.latency_s + self.s_per_byte * n_bytes



def collective_cost(cluster: Cluster, kind: str | CollectiveKind, group: Group) -> CollectiveCost:
    """Affine cost of a collective on `cluster`; see the module docstring for the formulas.

    Args:
        cluster: the cluster.
        kind: a `CollectiveKind` or its name.
        group: group size (contiguous ranks from 0) or explicit ranks.

    Returns:
        `CollectiveCost(latency_s, s_per_byte)`, zero for a group of one device.
    """
    k = CollectiveKind.from_str(kind)
    sp = cluster.span(group)
    n = sp.size
    if n == 1:
        return CollectiveCost(0.0, 0.0)
    lv = [cluster.levels[i] for i in sp.levels]
    if k is CollectiveKind.SEND_RECV:
        if n != 2:
            raise ConfigError(f"send_recv is between two devices; got a group of {n}: pass group=2 or two ranks")
        outer = lv[-1]
        assert outer.p2p_latency_s is not None and outer.p2p_efficiency is not None  # set in Level.__post_init__
        return CollectiveCost(outer.p2p_latency_s, 1.0 / (outer.bw_each_way_bytes_per_s * outer.p2p_efficiency))
    ring_bw = min(m * x.bw_each_way_bytes_per_s * x.efficiency for m, x in zip(sp.members, lv))
    alpha = max(x.latency_s for x in lv)
    o = cluster.collective_overhead_s
    if k is CollectiveKind.ALL_REDUCE:
        return CollectiveCost(o + 2 * (n - 1) * alpha, 2 * (n - 1) / n / ring_bw)
    if k in (CollectiveKind.ALL_GATHER, CollectiveKind.REDUCE_SCATTER):
        return CollectiveCost(o + (n - 1) * alpha, (n - 1) / n / ring_bw)
    if k is CollectiveKind.BROADCAST:
        return CollectiveCost(o + (n - 1) * alpha, 1.0 / ring_bw)
    # ALL_TO_ALL: chunks to peers outside a device's level-(l-1) domain cross level l on its own link.
    s_per_byte = max((n - m) / n / (x.bw_each_way_bytes_per_s * x.efficiency) for m, x in zip(sp.members, lv))
    return CollectiveCost(o + (n - 1) * alpha, s_per_byte)


def collective_time(cluster: Cluster, kind: str | CollectiveKind, n_bytes: float, group: Group) -> float:
    """Seconds for one collective on `cluster`; formulas and the meaning of `n_bytes` per kind are
    in the module docstring (nccl-tests conventions; NCCL ring algorithm).

    Args:
        cluster: the cluster.
        kind: `all_reduce`, `all_gather`, `reduce_scatter`, `all_to_all`, `send_recv`, `broadcast`.
        n_bytes: S in bytes, >= 0 (all_reduce: the buffer; all_gather: the output; ...).
        group: group size (contiguous ranks from 0) or explicit ranks.

    Raises:
        ConfigError: negative or non-finite bytes, a bad group, an unknown kind (UnknownNameError).
    """
    if isinstance(n_bytes, bool) or not isinstance(n_bytes, (int, float)) or not math.isfinite(n_bytes) or n_bytes < 0:
        raise ConfigError(f"n_bytes must be a finite number >= 0, got {n_bytes!r}")
    return collective_cost(cluster, kind, group).time(n_bytes)


__all__ = ["CollectiveCost", "CollectiveKind", "collective_cost", "collective_time"]
