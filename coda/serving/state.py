"""The mutable state of one simulation: every request's progress, each replica's queues, a batch.

These are working state, not descriptions: the simulator owns them and the schedulers read and
update them through the helpers of `coda.serving.schedulers.base`.

Token accounting of request r (prompt p, output O): `target[r]` prompt tokens to prefill (p, or
p + generated after a preemption by recomputation, vLLM SOSP'23 section 4.5), `done[r]` of them
prefilled, `kv[r]` tokens in its KV cache, `generated[r]` output tokens. Completing a prefill
emits one token (the first, or the next after a recomputation); each decode step emits one at
context `kv[r]` (= p + generated - 1).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from coda.serving.deployment import KVBudget


@dataclass
class Requests:
    """Per-request arrays (index = request id, in arrival order)."""

    arrival_s: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    target: np.ndarray = field(init=False)
    done: np.ndarray = field(init=False)
    kv: np.ndarray = field(init=False)
    generated: np.ndarray = field(init=False)
    blocks: np.ndarray = field(init=False)
    preemptions: np.ndarray = field(init=False)
    busy: np.ndarray = field(init=False)
    replica: np.ndarray = field(init=False)
    scheduled_s: np.ndarray = field(init=False)
    first_token_s: np.ndarray = field(init=False)
    last_token_s: np.ndarray = field(init=False)
    finish_s: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        self.target = self.prompt.astype(np.int64).copy()
        for name in ("done", "kv", "generated", "blocks", "preemptions"):
            setattr(self, name, np.zeros(n, dtype=np.int64))
        self.busy = np.zeros(n, dtype=bool)
        self.replica = np.full(n, -1, dtype=np.int64)
        for name in ("scheduled_s", "first_token_s", "last_token_s", "finish_s"):
            setattr(self, name, np.full(n, np.nan))

    def __len__(self) -> int:
        return len(self.arrival_s)


@dataclass
class ReplicaState:
    """One replica's queues and free KV blocks. `running` holds admitted requests in admission
    order (preemption takes from its end); `waiting` those routed here and not admitted (or
    preempted by recomputation, at its front); `swapped` those preempted by swapping, whose
    blocks (`Requests.blocks`) are in host memory."""

    budget: KVBudget
    free_blocks: int
    waiting: deque[int] = field(default_factory=deque)
    running: list[int] = field(default_factory=list)
    in_flight: int = 0  # batches in the pipeline
    swapped: list[int] = field(default_factory=list)  # swapped out to host memory, in arrival order
    host_free_blocks: int = 0  # blocks the host swap space still holds
    swap_out_blocks: int = 0  # blocks moved to / from the host since the last launch: the next
    swap_in_blocks: int = 0  # iteration's transfer (`coda.serving.simulate`)
    preempted: int = 0  # preemptions so far


@dataclass(frozen=True)
class Batch:
    """One iteration's work: prefill chunks (request ids and their new tokens) and decodes (ids)."""

    prefill_ids: np.ndarray
    prefill_tokens: np.ndarray
    decode_ids: np.ndarray

    @property
    def n_sequences(self) -> int:
        return len(self.prefill_ids) + len(self.decode_ids)

    @property
    def tokens(self) -> int:
        return int(self.prefill_tokens.sum()) + len(self.decode_ids)

    def ids(self) -> np.ndarray:
        return np.concatenate([self.prefill_ids, self.decode_ids])


EMPTY = np.zeros(0, dtype=np.int64)


def batch(prefill_ids: list[int] | np.ndarray = EMPTY, prefill_tokens: list[int] | np.ndarray = EMPTY,
          decode_ids: list[int] | np.ndarray = EMPTY) -> Batch:
    """A `Batch` from lists or arrays of ints."""
    return Batch(np.asarray(prefill_ids, dtype=np.int64), np.asarray(prefill_tokens, dtype=np.int64),
                 np.asarray(decode_ids, dtype=np.int64))
