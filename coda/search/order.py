"""The order a search visits designs in: descending upper bound on the objective, ties in space order.

Two orders behind one interface (`at`, `bound`, `step`, `len`):

- `StaticOrder`: every design's bound is known up front (the peak bound of `coda.search.bounds`);
- `RefinedOrder`: best first by the refined bounds of `coda.search.refine`, computed lazily. Each
  design waits in the heap of the last bound computed for it, keyed by the least of its bounds so
  far (so a key only falls as bounds are added, and every key is an upper bound on the design's
  final bound). The next position goes to the design with the largest key over all heaps: if it
  has every bound, no remaining design can have a larger final bound, so it is next; otherwise
  its next bound is computed and it moves on. The sequence is therefore that of the final bounds
  in descending order, ties in space order, exactly as a `StaticOrder` of the final bounds would
  give, while only the designs the visit reaches are refined.

  With a process pool, the last (slowest) bound can be computed in the workers: `at(..., remote=True)`
  returns None instead of computing it for the top design; the visit then takes that design with
  `offload()`, computes the bound elsewhere and hands it back with `land()`. A design whose bound is
  out is `pending`, keyed as before; no position is given while a pending design has the largest
  key (`at` returns None: wait for it). So the sequence is the same as with every bound computed here.

  One shortcut, for a visit that ends at its first pruned design: `at(pos, is_pruned)` returns the
  top design with its key as its bound when `is_pruned(key)` holds. Its final bound is at most the
  key, so it is pruned either way, and so is every later design (their keys are no larger); the
  positions after it are never read by such a visit.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

IsPruned = Callable[[float], bool]
"""Whether a design with this upper bound on the objective can be left out of the visit."""


class StaticOrder:
    """Designs by descending `bounds` (ties in space order), every bound known up front."""

    def __init__(self, bounds: np.ndarray) -> None:
        self.bounds = np.asarray(bounds, dtype=float)
        self.seq = [int(i) for i in np.lexsort((np.arange(len(self.bounds)), -self.bounds))]

    def __len__(self) -> int:
        return len(self.seq)

    def at(self, pos: int, is_pruned: IsPruned | None = None, remote: bool = False) -> int | None:
        """The design (its index in the space) visited at position `pos`."""
        return self.seq[pos]

    def bound(self, i: int) -> float:
        """The upper bound design `i` is visited with."""
        return float(self.bounds[i])

    def step(self, is_pruned: IsPruned) -> bool:
        """Work ahead for the next position (none here: every bound is known)."""
        return False

    def can_offload(self, is_pruned: IsPruned) -> bool:
        """Whether `offload` has a bound to give (never, here)."""
        return False

    def offload(self, is_pruned: IsPruned) -> tuple[int, Callable[..., Any], tuple[Any, ...]] | None:
        """A bound to compute elsewhere (none here)."""
        return None

    def land(self, i: int, bound: float) -> None:
        """A bound computed elsewhere (never, here)."""
        raise AssertionError("a StaticOrder offloads no bound")


class RefinedOrder:
    """Designs by descending refined bound, computed lazily (module doc).

    Args:
        first: each design's first bound (the least of the peak bound and `RefinedBounds.placement`).
        stages: the further bounds, cheapest first: `stages[k](i)` bounds design `i`'s objective.
        remote: `remote(i)` = (picklable function, arguments) computing `stages[-1](i)` in a worker.
    """

    def __init__(self, first: np.ndarray, stages: Sequence[Callable[[int], float]],
                 remote: Callable[[int], tuple[Callable[..., Any], tuple[Any, ...]]] | None = None) -> None:
        self.stages = tuple(stages)
        self.remote = remote
        self.pending: dict[int, float] = {}
        """Designs whose last bound is being computed elsewhere -> their key."""
        self.heaps: list[list[tuple[float, int]]] = [[(-float(b), i) for i, b in enumerate(first)]]
        self.heaps += [[] for _ in self.stages]
        heapq.heapify(self.heaps[0])
        self.n = len(first)
        self.seq: list[int] = []
        self.bounds: dict[int, float] = {}
        self.refined = [0] * len(self.stages)
        """How many designs got bound k + 1 (`stages[k]`)."""

    def __len__(self) -> int:
        return self.n

    def _top(self, pending: bool = True) -> tuple[float, int, int] | None:
        """The design with the largest key over all heaps (and the pending designs, stage -1): (-key, index,
        stage); None if there is none."""
        heads = [(h[0][0], h[0][1], k) for k, h in enumerate(self.heaps) if h]
        if pending:
            heads += [(-b, i, -1) for i, b in self.pending.items()]
        return min(heads) if heads else None

    def _refine(self, stage: int) -> None:
        """Move the top design of heaps[stage] to heaps[stage + 1] with its next bound."""
        negb, i = heapq.heappop(self.heaps[stage])
        self.refined[stage] += 1
        heapq.heappush(self.heaps[stage + 1], (-min(-negb, float(self.stages[stage](i))), i))

    def at(self, pos: int, is_pruned: IsPruned | None = None, remote: bool = False) -> int | None:
        """The design visited at position `pos` (refining the designs it takes; module doc for `is_pruned`),
        or None while it waits for a bound computed elsewhere (only with `remote`: module doc)."""
        last = len(self.stages)
        while len(self.seq) <= pos:
            top = self._top()
            assert top is not None, "a position past the end of the order"
            negb, i, stage = top
            if is_pruned is not None and is_pruned(-negb):  # every design left is pruned: take one in a heap
                top = self._top(pending=False)
                if top is None:
                    return None
                negb, i, stage = top
            elif stage == -1 or (remote and self.remote is not None and stage == last - 1):
                return None
            elif stage < last:
                self._refine(stage)
                continue
            heapq.heappop(self.heaps[stage])
            self.seq.append(i)
            self.bounds[i] = -negb
        return self.seq[pos]

    def can_offload(self, is_pruned: IsPruned) -> bool:
        """Whether the best design not pending lacks only the last bound and is not pruned."""
        top = self._top(pending=False)
        return self.remote is not None and top is not None and top[2] == len(self.stages) - 1 and not is_pruned(-top[0])

    def offload(self, is_pruned: IsPruned) -> tuple[int, Callable[..., Any], tuple[Any, ...]] | None:
        """The best design not pending, when it lacks only the last bound and is not pruned (`can_offload`),
        as (design, function, arguments) to compute that bound elsewhere; it is pending until `land`."""
        if not self.can_offload(is_pruned):
            return None
        assert self.remote is not None
        negb, i = heapq.heappop(self.heaps[-2])
        self.pending[i] = -negb
        self.refined[-1] += 1
        return (i, *self.remote(i))

    def land(self, i: int, bound: float) -> None:
        """The last bound of a pending design, computed elsewhere."""
        heapq.heappush(self.heaps[-1], (-min(self.pending.pop(i), float(bound)), i))

    def bound(self, i: int) -> float:
        """The bound design `i` was given its position with (an upper bound on its objective)."""
        return self.bounds[i]

    def step(self, is_pruned: IsPruned) -> bool:
        """Compute one bound the next position needs unless the visit ends first (while workers evaluate);
        False when there is none. With `remote`, the last bound is left to the workers: computed here while
        they evaluate, it took CPU from them on 2 cores, and much of it was never needed (module doc)."""
        top = self._top(pending=False)
        if len(self.seq) >= self.n or top is None:
            return False
        negb, _, stage = top
        if stage == len(self.stages) or is_pruned(-negb) or (self.remote is not None and stage == len(self.stages) - 1):
            return False
        self._refine(stage)
        return True


__all__ = ["IsPruned", "RefinedOrder", "StaticOrder"]
