"""The scheduler interface: `BaseScheduler.next_batch(state, requests, now_s) -> Batch | None`,
`SchedulerConfig`, and the registry keyed by `SchedulerKind`.

A scheduler decides, each time a replica can start an iteration, which requests run in it and
how many tokens each: it admits requests from the replica's waiting queue, allocates their KV
blocks and preempts when blocks run out. The simulator (`coda.serving.simulate`) applies the
iteration's effects when it ends. Add a policy by subclassing `BaseScheduler` and calling
`register(kind, cls)` with a new `SchedulerKind`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import insort
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import numpy as np

from coda.errors import ConfigError, UnknownNameError
from coda.serving.state import Batch, ReplicaState, Requests
from coda.units import GiB

MAX_SEQS = 2**16
MAX_TOKENS = 2**20


_E = TypeVar("_E", bound=Enum)


def _parse(cls: type[_E], name: Any, field: str) -> _E:
    """`cls`'s member named `name` (case-insensitive); `UnknownNameError` naming `field` otherwise."""
    if isinstance(name, cls):
        return name
    try:
        return cls(str(name).strip().lower())
    except ValueError:
        raise UnknownNameError(field, str(name), [k.value for k in cls]) from None


class SchedulerKind(str, Enum):
    """The batching policies."""

    STATIC = "static"
    ORCA = "orca"
    VLLM = "vllm"
    SARATHI = "sarathi"

    @classmethod
    def from_str(cls, name: str | SchedulerKind) -> SchedulerKind:
        """Parse a policy name (case-insensitive); raise `UnknownNameError` for an unknown one."""
        return _parse(cls, name, "scheduler")


class Preemption(str, Enum):
    """What a paging policy (vllm, sarathi) does with a request it preempts when KV blocks run out
    (Kwon et al., SOSP'23, section 4.5): recompute its KV cache later, or swap its blocks to host
    memory and back."""

    RECOMPUTE = "recompute"
    SWAP = "swap"

    @classmethod
    def from_str(cls, name: str | Preemption) -> Preemption:
        """Parse a mode (case-insensitive); raise `UnknownNameError` for an unknown one."""
        return _parse(cls, name, "preemption")


DEFAULT_SWAP_SPACE_BYTES = 4 * GiB
"""Host memory for swapped KV blocks per GPU: vLLM's `swap_space` default, 4 GiB per GPU
(`vllm/engine/arg_utils.py`, `EngineArgs.swap_space = 4`, "CPU swap space size (GiB) per GPU")."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class SchedulerConfig:
    """How a replica batches (one config for every policy; each reads the fields it needs)."""

    kind: SchedulerKind = field(default=SchedulerKind.SARATHI, metadata=_help("static | orca | vllm | sarathi"))
    max_batch: int = field(default=256, metadata=_help("most sequences in one iteration (static: the batch size)"))
    max_tokens: int = field(default=4096, metadata=_help("most tokens in one iteration (vLLM's "
                                                         "max_num_batched_tokens; Sarathi's token budget)"))
    chunk: int = field(default=512, metadata=_help("sarathi: token budget per iteration, decodes included"))
    watermark: float = field(default=0.01, metadata=_help("vllm, sarathi: fraction of blocks kept free at admission"))
    preemption: Preemption = field(default=Preemption.RECOMPUTE, metadata=_help(
        "vllm, sarathi: recompute | swap (KV blocks to host memory over the GPU's host link and back)"))
    swap_space_bytes: float = field(default=DEFAULT_SWAP_SPACE_BYTES, metadata=_help(
        "swap: host memory for swapped KV blocks per GPU, bytes (vLLM's swap_space, 4 GiB)"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", SchedulerKind.from_str(self.kind))
        object.__setattr__(self, "preemption", Preemption.from_str(self.preemption))
        sw = self.swap_space_bytes
        if isinstance(sw, bool) or not isinstance(sw, (int, float)) or not 0 <= sw < math.inf:
            raise ConfigError(f"scheduler: swap_space_bytes={sw!r} must be a finite number of bytes >= 0 (host "
                              "memory per GPU for swapped KV blocks; vLLM's default is 4 GiB)")
        for name, hi in (("max_batch", MAX_SEQS), ("max_tokens", MAX_TOKENS), ("chunk", MAX_TOKENS)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise ConfigError(f"scheduler: {name}={v!r} must be an integer in [1, {hi}]")
        w = self.watermark
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < 1:
            raise ConfigError(f"scheduler: watermark={w!r} must be a fraction in [0, 1)")

    def kept_free_blocks(self, blocks: int) -> int:
        """KV blocks of a replica's `blocks` that admissions leave free: the watermark's share for the
        paging policies (vllm, sarathi), none for the others."""
        return int(self.watermark * blocks) if self.kind in (SchedulerKind.VLLM, SchedulerKind.SARATHI) else 0

    @property
    def iteration_tokens(self) -> int:
        """Most tokens one iteration holds when no prompt is longer than `max_tokens`: the token
        budget (Sarathi: the chunk, or the decodes when they are more), else `max_tokens`."""
        if self.kind is SchedulerKind.SARATHI:
            return max(self.chunk, self.max_batch)
        return self.max_tokens


class BaseScheduler(ABC):
    """One replica's batching policy. Subclasses implement `next_batch`; the helpers below keep
    the KV-block accounting (`ReplicaState.free_blocks`, `Requests.blocks`) consistent."""

    #: whether the policy reserves a request's whole KV (prompt + output) at admission
    reserves_whole_request: bool = False
    #: the contract that lets the simulator aggregate iterations: once the policy returns a
    #: decode-only batch of every running request, it returns the same requests' decodes until a
    #: request arrives or finishes, as long as their next blocks are free (true of the four
    #: policies here: what blocked admission -- the batch limit, the token budget, free blocks --
    #: cannot loosen while only decodes run). A policy that breaks it sets this to False.
    steady_decodes: bool = True

    def __init__(self, config: SchedulerConfig, pp: int = 1) -> None:
        self.config = config
        self.pp = pp

    @abstractmethod
    def next_batch(self, st: ReplicaState, req: Requests, now_s: float) -> Batch | None:
        """The next iteration's batch, or None if nothing can run now (the replica waits for an
        arrival or for a batch in flight). Requests in the batch must not be `req.busy`."""

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def admit(st: ReplicaState, req: Requests, r: int, now_s: float) -> None:
        """Move request `r` from the front of the waiting queue to the end of `running`."""
        got = st.waiting.popleft()
        assert got == r
        st.running.append(r)
        if np.isnan(req.scheduled_s[r]):
            req.scheduled_s[r] = now_s

    @staticmethod
    def grow(st: ReplicaState, req: Requests, r: int, tokens: int) -> bool:
        """Allocate the blocks request `r` needs to hold `tokens` in all; False if too few are free."""
        need = st.budget.blocks_for(tokens) - int(req.blocks[r])
        if need > st.free_blocks:
            return False
        if need > 0:
            st.free_blocks -= need
            req.blocks[r] += need
        return True

    @staticmethod
    def release(st: ReplicaState, req: Requests, r: int) -> None:
        st.free_blocks += int(req.blocks[r])
        req.blocks[r] = 0

    def preempt(self, st: ReplicaState, req: Requests, r: int) -> None:
        """Preempt `r` (vLLM SOSP'23 section 4.5). By swapping (`Preemption.SWAP`), when the
        replica's host swap space holds its blocks: they move to host memory (`st.swap_out_blocks`
        counts them for the next iteration's transfer time) and `r` waits in `st.swapped` with its
        KV cache and progress kept. Otherwise by recomputation: free its blocks, forget its KV
        cache, and put it at the front of the waiting queue to re-prefill prompt + generated
        tokens (vLLM v0 aborts the request when swap space runs out; this falls back instead)."""
        st.running.remove(r)
        req.preemptions[r] += 1
        st.preempted += 1
        n = int(req.blocks[r])
        if self.config.preemption is Preemption.SWAP and n <= st.host_free_blocks:
            st.free_blocks += n
            st.host_free_blocks -= n
            st.swap_out_blocks += n
            insort(st.swapped, r)
            return
        self.release(st, req, r)
        req.kv[r] = 0
        req.done[r] = 0
        req.target[r] = req.prompt[r] + req.generated[r]
        st.waiting.appendleft(r)

    def swap_in(self, st: ReplicaState, req: Requests, limit: int) -> np.ndarray:
        """Bring swapped-out requests back to the GPU, first come first served, at most `limit`,
        while fewer than `max_batch` run and their blocks, with the one a decoding request's next
        token needs, leave the watermark free (vLLM's `can_swap_in`; it counts one new block per
        sequence whether or not the next token needs it, which could refuse forever a request
        whose whole cache fills the budget). Returns the ids brought back (in `running` again,
        next blocks allocated, their blocks counted in `st.swap_in_blocks`)."""
        back: list[int] = []
        B = st.budget.block_tokens
        while st.swapped and len(back) < limit and len(st.running) < self.config.max_batch:
            r = st.swapped[0]
            n = int(req.blocks[r])
            grow = int(req.done[r] >= req.target[r] and req.kv[r] + 1 > n * B)
            if n + grow > self.admissible_blocks(st):
                break
            st.swapped.pop(0)
            st.free_blocks -= n + grow
            req.blocks[r] += grow
            st.host_free_blocks += n
            st.swap_in_blocks += n
            st.running.append(r)
            back.append(r)
        return np.asarray(back, dtype=np.int64)

    @staticmethod
    def idle_running(st: ReplicaState, req: Requests) -> np.ndarray:
        """Running requests not in a batch in flight, in admission order."""
        run = np.fromiter(st.running, dtype=np.int64, count=len(st.running))
        return run[~req.busy[run]]

    def decode_with_blocks(self, st: ReplicaState, req: Requests, ids: np.ndarray,
                           candidates: np.ndarray) -> np.ndarray:
        """Give each of `ids` (decoding requests) the block its next token needs; while blocks are
        short, preempt the latest admitted of `candidates` (idle running requests in admission
        order; vLLM's policy). Returns the ids that keep their place."""
        B = st.budget.block_tokens
        victims = list(candidates)
        while len(ids):
            short = req.kv[ids] + 1 > req.blocks[ids] * B
            need = int(short.sum())
            if need <= st.free_blocks:
                req.blocks[ids[short]] += 1
                st.free_blocks -= need
                return ids
            victim = int(victims.pop())
            self.preempt(st, req, victim)
            ids = ids[ids != victim]
        return ids

    def admissible_blocks(self, st: ReplicaState) -> int:
        """Free blocks new admissions may take: all but a watermark of the total (vLLM)."""
        return st.free_blocks - self.config.kept_free_blocks(st.budget.blocks)


_REGISTRY: dict[SchedulerKind, type[BaseScheduler]] = {}


def register(kind: SchedulerKind, cls: type[BaseScheduler]) -> None:
    """Register a policy; a second registration of the same kind is an error."""
    if kind in _REGISTRY:
        raise ConfigError(f"scheduler {kind.value!r} is registered already (by {_REGISTRY[kind].__name__})")
    _REGISTRY[kind] = cls


def scheduler_class(kind: str | SchedulerKind) -> type[BaseScheduler]:
    """The class registered for a policy."""
    k = SchedulerKind.from_str(kind)
    if k not in _REGISTRY:
        raise UnknownNameError("scheduler", k.value, [x.value for x in _REGISTRY])
    return _REGISTRY[k]


def make_scheduler(config: SchedulerConfig, pp: int = 1) -> BaseScheduler:
    """An instance of the policy `config.kind` for a replica of `pp` pipeline stages."""
    return scheduler_class(config.kind)(config, pp)
