"""The serving simulator: `simulate(deployment, trace) -> ServingResult`.

A discrete-event simulation at iteration granularity (as Vidur, Agrawal et al. MLSys'24,
section 5): requests arrive (in trace order), the router assigns each to a replica, and each
replica's scheduler (`coda.serving.schedulers`) forms a batch whenever its first pipeline stage
is free and fewer than pp batches are in flight. A batch's stage times come from the cost model
(`coda.serving.costs`); it enters stage s at max(its leaving stage s-1 + hop, stage s free) and
its tokens are emitted when it leaves the last stage; its requests may join another batch after
the hop back to the first stage. Events (batch done, stage 0 free) sit in a heap keyed by time;
per-iteration updates are vectorised over the batch's requests.

Aggregation (pp = 1): when the scheduler returns a decode-only batch of all its running
requests, the following iterations are the same requests' decodes (`BaseScheduler.steady_decodes`)
until the next arrival, the first of them finishing, or their next KV blocks running out; that
stretch of m iterations runs as one event, its step times from `decode_steps` (context + j at
step j), every request's m tokens and inter-token times recorded as m separate iterations
would. The iteration log then holds one row for the m (column `steps`).

Swap preemption (`SchedulerConfig.preemption="swap"`): the KV blocks a scheduler swaps out or
in while forming a batch cross the host link before the batch computes. Each GPU of a replica
moves its share of every block (`KVBudget.bytes_per_block` on the fullest) over its own PCIe
link, so a block takes bytes_per_block / host_link_bw_each_way_bytes_per_s (`swap_s_per_block`),
and each pipeline stage starts the batch's compute that many seconds after it is free (its
transfer overlaps the wait for the previous stage; vLLM v0's workers run the cache swaps before
receiving the stage's input). A replica's host swap space holds swap_space_bytes /
bytes_per_block blocks (`host_blocks`). Nothing is aggregated while a request is swapped out.
"""

from __future__ import annotations

import heapq
import logging
import math
from dataclasses import dataclass

import numpy as np

from coda.errors import ConfigError, InfeasibleDesign
from coda.serving.costs import BatchShape, CostTable, IterationCost
from coda.serving.deployment import Deployment, KVBudget
from coda.serving.metrics import SLO, ServingResult, build_result
from coda.serving.router import Router
from coda.serving.schedulers import make_scheduler
from coda.serving.schedulers.base import Preemption
from coda.serving.state import Batch, ReplicaState, Requests
from coda.serving.trace import Trace

log = logging.getLogger(__name__)

_DONE, _READY = 0, 1
PROBE_STEPS = 32
"""Decode steps an aggregated stretch evaluates first; all of them only if no arrival comes sooner.
Step j's time depends on j alone (`decode_steps`), so the first steps are the same either way."""


@dataclass
class _Log:
    """Per-iteration records and inter-token times, appended as the simulation runs."""

    replica: list[int]
    start_s: list[float]
    end_s: list[float]
    prefill_tokens: list[int]
    decodes: list[int]
    sequences: list[int]
    kv_blocks: list[int]
    steps: list[int]
    swap_out_blocks: list[int]
    swap_in_blocks: list[int]
    tbt_ids: list[np.ndarray]
    tbt_s: list[np.ndarray]


def _check_fits(dep: Deployment, trace: Trace, blocks: int, block_tokens: int) -> None:
    """Refuse a request whose whole KV cache can never fit one replica's budget (it would wait forever)."""
    wm = dep.scheduler.kept_free_blocks(blocks)
    need = -(-(trace.prompt_tokens + trace.output_tokens) // block_tokens)
    bad = np.flatnonzero(need > blocks - wm)
    if len(bad):
        i = int(bad[0])
        raise InfeasibleDesign(
            f"{dep.describe()}: request {i} needs {int(need[i])} KV blocks of {block_tokens} tokens "
            f"({int(trace.prompt_tokens[i])} + {int(trace.output_tokens[i])} tokens) but a replica holds "
            f"{blocks - wm} ({len(bad)} such request(s)); use a larger tp or pp, fp8 KV, or shorter requests")


def _sure_miss(slo: SLO, req: Requests, lg: _Log, now: float, n_gaps: int, checked: list[int]) -> bool:
    """Whether the run already misses the SLO's P99 targets whatever happens next: more than 1%
    of the requests got, or will get, their first token later than the TTFT target (those still
    without one have waited longer than it), or more than 1% of all the inter-token gaps the run
    will have exceed the TBT target. `checked` = [gap arrays counted so far, gaps over target]."""
    n = len(req.arrival_s)
    if slo.ttft_p99_s is not None:
        ttft = req.first_token_s - req.arrival_s
        late = int(np.count_nonzero(ttft > slo.ttft_p99_s))
        late += int(np.count_nonzero(np.isnan(ttft) & (now - req.arrival_s > slo.ttft_p99_s)))
        if late > math.floor(0.01 * (n - 1)) + 1:
            return True
    if slo.tbt_p99_s is not None and n_gaps > 0:
        while checked[0] < len(lg.tbt_s):
            checked[1] += int(np.count_nonzero(lg.tbt_s[checked[0]] > slo.tbt_p99_s))
            checked[0] += 1
        if checked[1] > math.floor(0.01 * (n_gaps - 1)) + 1:
            return True
    return False


def swap_s_per_block(dep: Deployment, budget: KVBudget) -> float:
    """Seconds one KV block takes across the host link in one direction (module docstring).

    Raises:
        ConfigError: swap preemption on a device without a host link in the catalog.
    """
    bw = getattr(dep.cluster.device, "host_link_bw_each_way_bytes_per_s", None)
    if bw is None:
        raise ConfigError(f"{dep.describe()}: preemption='swap' moves KV blocks over the device's host link, and "
                          f"{dep.cluster.device_name} has none in the catalog; use preemption='recompute'")
    return float(budget.bytes_per_block) / float(bw)


def host_blocks(dep: Deployment, budget: KVBudget) -> int:
    """KV blocks a replica's host swap space holds: swap_space_bytes per GPU over each GPU's share of a block."""
    return int(dep.scheduler.swap_space_bytes // budget.bytes_per_block)


ABORT_EVERY = 64
"""Events between two checks of `_sure_miss` when a simulation may stop at a certain SLO miss."""

_Event = tuple[float, int, int, int, Batch | None, float, np.ndarray | None]
"""(time, sequence number, _DONE or _READY, replica, batch, emit time, aggregated step times)."""


def _arrivals(trace: Trace, concurrency: int | None) -> np.ndarray:
    """Arrival times: the trace's, or a closed loop's first `concurrency` requests at 0 and the rest unknown."""
    arrivals = trace.arrival_s.astype(float)
    if concurrency is not None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"simulate: concurrency={concurrency!r} must be an integer >= 1 (clients), or None "
                              "for the trace's arrival times")
        arrivals = np.full(len(trace), np.inf)
        arrivals[:concurrency] = 0.0
    return arrivals


def simulate(deployment: Deployment, trace: Trace, cost: CostTable | IterationCost | None = None,
             slo: SLO | None = None, aggregate: bool = True, concurrency: int | None = None,
             stop_at_miss: bool = False) -> ServingResult:
    """Serve `trace` on `deployment` and measure every request (module docstring).

    Args:
        deployment: model, cluster, layout, KV paging and scheduler.
        trace: the requests (`coda.serving.trace`).
        cost: the iteration cost model; default `CostTable.for_deployment` (tabulated, see
            `coda.serving.costs.table_error`); an `IterationCost` evaluates every batch directly.
        slo: latency targets for goodput (default: none, goodput not reported).
        aggregate: run a stretch of identical decode-only iterations as one event (same results,
            `tests/unit/serving` checks it; module docstring).
        concurrency: a closed loop of this many clients instead of the trace's arrival times (as
            benchmark clients with a fixed concurrency run, e.g. genai-perf, `vllm bench serve
            --max-concurrency`): the first `concurrency` requests arrive at 0, and each later one
            arrives when an earlier one has received its last token. Default: open loop (the trace).
        stop_at_miss: with `slo`, stop as soon as the P99 TTFT or TBT target is missed for certain
            (`_sure_miss`); the result then has `stopped` set, `summary()["slo_met"]` 0, and its
            requests and gaps only as far as the run went (the capacity search needs no more).

    Raises:
        ConfigError: requests beyond the model's context.
        InfeasibleDesign: the weights leave no KV blocks, or a request can never fit them.
    """
    trace.check_context(deployment.model)
    budget = deployment.kv_budget()
    _check_fits(deployment, trace, budget.blocks, budget.block_tokens)
    if cost is None:
        cost = CostTable.for_deployment(deployment, max_context=int((trace.prompt_tokens + trace.output_tokens).max()))
    arrivals = _arrivals(trace, concurrency)
    req = Requests(arrivals, trace.prompt_tokens.astype(np.int64), trace.output_tokens.astype(np.int64))
    run = _Run(deployment, cost, req, budget, aggregate, concurrency)
    watch = stop_at_miss and slo is not None and (slo.ttft_p99_s is not None or slo.tbt_p99_s is not None)
    stopped = run.loop(slo if watch else None)
    if stopped:
        log.info("simulation stopped after %d events: the SLO is missed for certain", run.events)
        return build_result(deployment, trace, req, run.lg, budget, slo, stopped=True)
    unfinished = int(np.isnan(req.finish_s).sum())
    if unfinished:  # cannot happen: every batch makes progress and every request fits
        raise InfeasibleDesign(f"{deployment.describe()}: {unfinished} request(s) never finished")
    log.info("simulated %d requests, %d iterations", len(req), len(run.lg.start_s))
    return build_result(deployment, trace, req, run.lg, budget, slo)


class _Run:
    """One simulation's state and its steps: arrivals (`arrive`), batch formation (`schedule`),
    a batch's launch through the stages (`launch`, `steady_steps`) and its completion (`finish`)."""

    def __init__(self, dep: Deployment, cost: CostTable | IterationCost, req: Requests, budget: KVBudget,
                 aggregate: bool, concurrency: int | None) -> None:
        R, pp = dep.n_replicas, dep.pp
        self.dep, self.cost, self.req, self.budget, self.pp = dep, cost, req, budget, pp
        self.n = len(req)
        self.arrival = req.arrival_s
        self.closed = min(concurrency, self.n) if concurrency is not None else self.n  # the next closed-loop arrival
        swap = dep.scheduler.preemption is Preemption.SWAP
        host = host_blocks(dep, budget) if swap else 0
        self.swap_s = swap_s_per_block(dep, budget) if swap else 0.0
        self.states = [ReplicaState(budget, budget.blocks, host_free_blocks=host) for _ in range(R)]
        self.scheds = [make_scheduler(dep.scheduler, pp) for _ in range(R)]
        self.free = np.zeros((R, pp))
        self.router = Router(dep.router, R)
        self.lg = _Log([], [], [], [], [], [], [], [], [], [], [], [])
        self.heap: list[_Event] = []
        self.aggregate_ok = aggregate and pp == 1 and self.scheds[0].steady_decodes
        self.block_tokens = budget.block_tokens
        self.seq = 0
        self.nxt = 0  # the next arrival
        self.events = 0

    # -- the event loop ---------------------------------------------------------------------------

    def loop(self, watch: SLO | None) -> bool:
        """Run every event (arrivals in order, then batch completions and free first stages by
        time); with `watch`, stop at a certain miss of its targets. Returns whether it stopped so."""
        req, arrival, heap, n = self.req, self.arrival, self.heap, self.n
        n_gaps = int(np.maximum(req.output - 1, 0).sum())
        checked = [0, 0]
        while self.nxt < n or heap:
            self.events += 1
            if watch is not None and self.events % ABORT_EVERY == 0:
                now = heap[0][0] if heap else float(arrival[self.nxt])
                if _sure_miss(watch, req, self.lg, now, n_gaps, checked):
                    return True
            i = self.nxt
            if not heap and arrival[i] == np.inf:  # a closed loop whose clients all wait: cannot happen
                break
            if i < n and (not heap or arrival[i] <= heap[0][0]):
                self.arrive(float(arrival[i]))
                continue
            t, _, kind, k, b, emit, steps = heapq.heappop(heap)
            if kind == _DONE:
                assert b is not None
                self.finish(k, b, emit, steps, t)
            self.schedule(k, t)
        return False

    def arrive(self, t: float) -> None:
        """Route every request arriving at `t` (all queued before any replica schedules)."""
        i, touched = self.nxt, []
        while i < self.n and self.arrival[i] == t:
            k = self.router.route()
            self.req.replica[i] = k
            self.states[k].waiting.append(i)
            touched.append(k)
            i += 1
        self.nxt = i
        for k in dict.fromkeys(touched):
            self.schedule(k, t)

    def schedule(self, k: int, now: float) -> None:
        """Launch replica `k`'s next batches while its first stage is free and fewer than pp are in flight."""
        st = self.states[k]
        while st.in_flight < self.pp and self.free[k, 0] <= now:
            b = self.scheds[k].next_batch(st, self.req, now)
            if b is None:
                if st.in_flight == 0 and (st.waiting or st.running or st.swapped):
                    raise InfeasibleDesign(f"{self.dep.describe()}: replica {k} cannot schedule its "
                                           f"{len(st.waiting)} waiting, {len(st.running)} running and "
                                           f"{len(st.swapped)} swapped-out request(s) "
                                           f"with {st.free_blocks} of {self.budget.blocks} KV blocks free")
                return
            self.launch(k, b, now)

    # -- launch -----------------------------------------------------------------------------------

    def steady_steps(self, k: int, b: Batch, now: float) -> np.ndarray | None:
        """Durations of the identical decode-only iterations that start with `b` (None: just one)."""
        req, st = self.req, self.states[k]
        dec = b.decode_ids
        if not self.aggregate_ok or len(b.prefill_ids) or len(dec) != len(st.running) or st.swapped \
                or st.swap_out_blocks or st.swap_in_blocks:
            return None
        left = int((req.output[dec] - req.generated[dec]).min())  # the last of them finishes a request
        if left < 2:
            return None
        horizon = float(self.arrival[self.nxt]) if self.nxt < self.n else np.inf
        kv = req.kv[dec]
        probe = min(left, PROBE_STEPS)  # the next arrival usually comes within a few steps: try those first
        d = self.cost.decode_steps(kv, probe)
        starts = now + np.concatenate([[0.0], np.cumsum(d[:-1])])
        steps = int(np.searchsorted(starts, horizon, side="left"))
        if steps >= probe and probe < left:
            d = self.cost.decode_steps(kv, left)
            starts = now + np.concatenate([[0.0], np.cumsum(d[:-1])])
            steps = int(np.searchsorted(starts, horizon, side="left"))
        steps = min(left, steps)
        if not self.scheds[k].reserves_whole_request:  # the blocks the next tokens need must be free
            steps = self._reserve_blocks(st, dec, kv, steps)
        return d[:steps] if steps > 1 else None

    def _reserve_blocks(self, st: ReplicaState, dec: np.ndarray, kv: np.ndarray, steps: int) -> int:
        """The most of `steps` decode steps whose KV blocks are free (at least 1), with those blocks taken."""
        req, block_tokens = self.req, self.block_tokens
        have = req.blocks[dec]

        def extra(j: int) -> int:
            return int(np.maximum(-(-(kv + j) // block_tokens) - have, 0).sum())

        lo, hi = 1, steps
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if extra(mid) <= st.free_blocks else (lo, mid - 1)
        st.free_blocks -= extra(lo)
        req.blocks[dec] = np.maximum(have, -(-(kv + lo) // block_tokens))
        return lo

    def launch(self, k: int, b: Batch, now: float) -> None:
        """Start `b` on replica `k` at `now`: its stage times, its completion (and the free first
        stage) on the heap, its row in the iteration log."""
        st, free, pp = self.states[k], self.free, self.pp
        self.req.busy[b.ids()] = True
        st.in_flight += 1
        steps = self.steady_steps(k, b, now)
        moved_out, moved_in = st.swap_out_blocks, st.swap_in_blocks
        st.swap_out_blocks = st.swap_in_blocks = 0
        swap = (moved_out + moved_in) * self.swap_s
        if steps is not None:
            emit, ring = now + float(steps.sum()), 0.0
            free[k, 0] = emit
        else:
            shape = BatchShape(b.prefill_tokens, self.req.kv[b.prefill_ids], self.req.kv[b.decode_ids])
            times = self.cost.stage_times(shape)
            inter, ring = self.cost.hops(shape.tokens, len(b.decode_ids) > 0)
            t = now
            for s in range(pp):
                end = max(t, max(free[k, s], now) + swap) + float(times[s])
                free[k, s] = end
                t = end + inter
            emit = float(free[k, pp - 1])
        self._push(emit + ring, _DONE, k, b, emit, steps)
        if pp > 1:
            self._push(float(free[k, 0]), _READY, k, None, 0.0, None)
        lg = self.lg
        lg.replica.append(k)
        lg.start_s.append(now)
        lg.end_s.append(emit)
        lg.prefill_tokens.append(int(b.prefill_tokens.sum()))
        lg.decodes.append(len(b.decode_ids))
        lg.sequences.append(b.n_sequences)
        lg.kv_blocks.append(self.budget.blocks - st.free_blocks)
        lg.steps.append(1 if steps is None else len(steps))
        lg.swap_out_blocks.append(moved_out)
        lg.swap_in_blocks.append(moved_in)

    def _push(self, t: float, kind: int, k: int, b: Batch | None, emit: float, steps: np.ndarray | None) -> None:
        heapq.heappush(self.heap, (t, self.seq, kind, k, b, emit, steps))
        self.seq += 1

    # -- completion -------------------------------------------------------------------------------

    def finish(self, k: int, b: Batch, emit: float, steps: np.ndarray | None, now: float) -> None:
        """Complete `b` on replica `k`: its tokens at `emit`, finished requests' blocks freed."""
        self.states[k].in_flight -= 1
        self.req.busy[b.ids()] = False
        em = self._emit_stretch(b, emit, steps) if steps is not None else self._emit_one(b, emit)
        fin = em[self.req.generated[em] >= self.req.output[em]]
        if len(fin):
            self._release(k, fin, emit, now)

    def _emit_stretch(self, b: Batch, emit: float, steps: np.ndarray) -> np.ndarray:
        """len(steps) decode iterations of the same requests: m tokens each, m inter-token times."""
        req, lg, did = self.req, self.lg, b.decode_ids
        m = len(steps)
        req.kv[did] += m
        req.generated[did] += m
        first = (emit - float(steps[1:].sum())) - req.last_token_s[did]
        lg.tbt_ids.append(np.repeat(did, m))
        lg.tbt_s.append(np.column_stack([first, np.tile(steps[1:], (len(did), 1))]).ravel())
        req.last_token_s[did] = emit
        return did

    def _emit_one(self, b: Batch, emit: float) -> np.ndarray:
        """One iteration: prefill chunks advance, a request whose prompt is done and every decode emit a token."""
        req, lg, pid, did = self.req, self.lg, b.prefill_ids, b.decode_ids
        req.done[pid] += b.prefill_tokens
        req.kv[pid] += b.prefill_tokens
        req.kv[did] += 1
        em = np.concatenate([pid[req.done[pid] >= req.target[pid]], did])
        req.generated[em] += 1
        prev = req.last_token_s[em]
        seen = ~np.isnan(prev)
        req.first_token_s[em[~seen]] = emit
        if seen.any():
            lg.tbt_ids.append(em[seen])
            lg.tbt_s.append(emit - prev[seen])
        req.last_token_s[em] = emit
        return em

    def _release(self, k: int, fin: np.ndarray, emit: float, now: float) -> None:
        """Finished requests leave replica `k` with their blocks; a closed loop's clients send their next."""
        req, st = self.req, self.states[k]
        req.finish_s[fin] = emit
        st.free_blocks += int(req.blocks[fin].sum())
        req.blocks[fin] = 0
        gone = set(fin.tolist())
        st.running = [r for r in st.running if r not in gone]
        self.router.finished(k, len(fin))
        if self.closed < self.n:  # closed loop: each client sends its next request on receiving the last token
            j = min(self.closed + len(fin), self.n)
            self.arrival[self.closed:j] = now
            self.closed = j
