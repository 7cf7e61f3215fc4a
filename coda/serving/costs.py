"""The time of one serving iteration: a mixed batch of prefill chunks and decode tokens.

A batch holds prefill chunks i (s_i new tokens after c_i cached ones) and decodes j (one token
at context c_j). With T = sum_i s_i + n_d tokens and B = n_p + n_d sequences, stage `s` of a
replica takes (dimensions as `coda.models.build`; k runs over the distinct blocks, n_{s,k} of
them on stage s):

    t_s = [s = 0] E(T) + sum_k n_{s,k} (L_k(T) + A^dec_k(n_d, mean_j c_j) + sum_i A^pre_k(s_i, c_i))
          + [s = P-1] (N(T) + H(B))

- E, L_k, N: every op of the embedding, of block k and the head's final norm except attention,
  predicted (`coda.predictor.op_latencies`) on the graph of T tokens (`build(cfg, "prefill", 1,
  T)`), plus their tensor-parallel collectives over the tp ranks and expert all-to-alls over the
  ep ranks (`Cluster.collective_time`). Every such op sees only the T token rows, so prefill and
  decode tokens share them: Orca's selective batching (Yu et al. OSDI'22, section 4.2), Sarathi-
  Serve's fused mixed batch (Agrawal et al. OSDI'24, section 4.3), and Vidur's split of token-
  level operators (Agrawal et al. MLSys'24, section 4.2).
- H(B): the LM head's other ops, on the B rows whose next token is sampled (`build(cfg,
  "decode", B, 1)`).
- A^dec_k(n, c): the decode attention op of `build(cfg, "decode", n, 1, context_len=c)` (c the
  mean context, rounded, as Vidur batches decode attention by its KV-cache size);
  A^pre_k(s, c): the attention op of a chunk, `build(cfg, "prefill", 1, s, context_len=c)`;
  n chunks of equal (s, c) are one op of batch n (`build(cfg, "prefill", n, s, ...)`, as a
  static batch of equal prompts), unequal ones one op each (FlashAttention's variable-length
  kernel runs them together; summing their times overcounts one launch per extra chunk and
  underuses the SMs for short chunks).
- Context parallelism (cp > 1, `coda.evaluate.context_parallel`): a chunk's s tokens are split
  over the cp groups (q = its zigzag share per device), the token-level terms run on
  sum_i q_i + n_d tokens (a decode's non-attention ops run on every group), A^pre_k is the ring
  attention of the chunk against its c cached tokens (the faster of pass-KV and pass-Q; `A_pre`
  below), A^dec_k attends to ceil(c/cp) cached tokens and adds the all-gather that merges the cp
  partial outputs; stages are t*cp ranks apart and pass each device's share of the tokens.
- Expert parallelism (ep > 1): each of the ep devices takes 1/ep of the tokens, sequences and
  decodes (rounded up) and of the prefill attention.

So a batch of b decodes at context c costs `build(cfg, "decode", b, 1, context_len=c)` exactly,
and b prefills of p tokens `build(cfg, "prefill", b, p)`: the decode step and the TTFT of
`coda.evaluate.inference` (pp = 1). Pipeline stages pass T tokens' activations
(`T*h` elements, send/recv between the first ranks of adjacent stages, t apart; the ring back
from the last to the first carries the sampled tokens on to the next step), as that model does.

`IterationCost` evaluates this directly (each distinct argument once, memoised on the object;
`clear()` empties it). `CostTable` tabulates E + L + N over every token count up to a bound
(exact at every integer up to `EXACT_TOKENS`; beyond, exact at each multiple of the kernels' row
tile `TILE_ROWS` and the integer after it, where the tiled GEMMs jump, linear in between), H
likewise over batch sizes, and the attention terms bilinearly on grids (chunk length: the same
tile knots; decode batch and contexts: log-spaced), so that a
simulation spends microseconds per iteration; `table_error` measures what that costs against
the direct evaluation on random batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from coda.evaluate.context_parallel import decode_combine_s, local_tokens, ring_cost, ring_ops
from coda.models import ops as O
from coda.models.builder import activation_dtype, build
from coda.placement.chain import collectives_time
from coda.placement.costs import graph_collectives
from coda.predictor import BasePredictor, op_latencies
from coda.serving.deployment import Deployment
from coda.serving.grids import Grid, log_grid, tile_grid
from coda.serving.grids import Grid as _Grid  # noqa: F401  (the tests' name)
from coda.serving.grids import bilinear as _bilinear  # noqa: F401
from coda.units import dtype_bytes

EXACT_TOKENS = 128
"""Token counts (and batch sizes) up to which `CostTable` holds the exact value of every integer."""
GRID_RATIO = 1.1
"""Ratio of consecutive points of `CostTable`'s log grids (decode batch, contexts)."""
TILE_ROWS = 64
"""Row tile of the GEMM and attention kernels (`coda.predictor.gpu_tiles` picks 64, 128 or 256
rows): `CostTable` puts knots at every multiple of it and one past, where the time jumps."""


@dataclass(frozen=True)
class BatchShape:
    """An iteration's batch as the cost model sees it (token counts only).

    Attributes:
        prefill_tokens: new tokens of each prefill chunk, s_i.
        prefill_context: tokens each chunk's sequence holds in its KV cache before it, c_i.
        decode_context: tokens each decoding sequence holds before its step, c_j.
    """

    prefill_tokens: np.ndarray
    prefill_context: np.ndarray
    decode_context: np.ndarray

    @classmethod
    def of(cls, prefill_tokens: Sequence[int] = (), prefill_context: Sequence[int] | None = None,
           decode_context: Sequence[int] = ()) -> BatchShape:
        pt = np.asarray(prefill_tokens, dtype=np.int64)
        pc = np.zeros_like(pt) if prefill_context is None else np.asarray(prefill_context, dtype=np.int64)
        return cls(pt, pc, np.asarray(decode_context, dtype=np.int64))

    @property
    def tokens(self) -> int:
        return int(self.prefill_tokens.sum()) + len(self.decode_context)

    @property
    def sequences(self) -> int:
        return len(self.prefill_tokens) + len(self.decode_context)


class IterationCost:
    """Direct evaluation of the iteration cost of a deployment (module docstring).

    Args:
        deployment: the model, cluster and layout (tp, pp, ep, dtype).
        predictor: op latency model (default: the device's, as `coda.evaluate.inference`).
    """

    def __init__(self, deployment: Deployment, predictor: BasePredictor | None = None) -> None:
        self.dep = deployment
        self.predictor = predictor
        cfg = deployment.model
        self.counts = np.asarray(deployment.stage_blocks, dtype=float)  # (pp, kinds)
        self.pp = deployment.pp
        self.ep = deployment.ep
        self.cp = deployment.cp
        self._ring: dict[tuple[int, int, int], np.ndarray] = {}  # cp > 1: prefill (n, s, c) -> per kind
        self._lin: dict[int, np.ndarray] = {}
        self._head: dict[int, float] = {}
        self._attn: dict[tuple[int, int, int], np.ndarray] = {}
        tp = deployment.tp
        self._kw: dict[str, Any] = dict(tp=tp, dtype=deployment.dtype, ep=deployment.ep)
        assert cfg.head_dim is not None and cfg.n_kv_heads is not None
        self._a_t, self._g_t = cfg.n_heads // tp, max(cfg.n_kv_heads // tp, 1)
        build(cfg, "decode", 1, 1, **self._kw)  # validates tp against the heads
        act = dtype_bytes(activation_dtype(deployment.dtype)) * cfg.hidden
        cl = deployment.cluster
        w = tp * self.cp  # ranks per stage
        pairs = [(s * w, (s + 1) * w) for s in range(self.pp - 1)]
        ring = pairs + [((self.pp - 1) * w, 0)] if self.pp > 1 else []
        self._hop_fwd = [cl.collective_cost("send_recv", p) for p in pairs]
        self._hop_ring = [cl.collective_cost("send_recv", p) for p in ring]
        self._act_bytes = act

    def clear(self) -> None:
        """Forget every memoised term."""
        self._lin.clear()
        self._head.clear()
        self._attn.clear()
        self._ring.clear()

    # -- terms ---------------------------------------------------------------------------------

    def _latencies(self, ops: list[Any]) -> list[float]:
        return op_latencies(ops, self.dep.cluster.device, self.predictor)

    def linear_terms(self, tokens: Sequence[int]) -> np.ndarray:
        """Per stage, E + sum_k n_{s,k} L_k + N (module docstring) for each token count; (len, pp)."""
        missing = sorted({int(t) for t in tokens if int(t) not in self._lin})
        if missing:
            cfg, cl = self.dep.model, self.dep.cluster
            graphs = [build(cfg, "prefill", 1, t, **self._kw) for t in missing]
            ops: list[Any] = []
            spans = []
            for g in graphs:
                for lg, _ in g.layers:
                    keep = [op for op in lg.nodes if op.kind != "attention"
                            and not (lg.name == "head" and op.name != "final_norm")]
                    comm = (collectives_time(cl, graph_collectives(lg, expert=False), self.dep.tp)
                            + collectives_time(cl, graph_collectives(lg, expert=True), self.ep))
                    spans.append((len(ops), len(keep), comm))
                    ops += keep
            times = self._latencies(ops)
            per = len(graphs[0].layers)
            for i, t in enumerate(missing):
                layer = [float(sum(times[a:a + n])) + comm for a, n, comm in spans[per * i: per * (i + 1)]]
                emb, blocks, head = layer[0], np.asarray(layer[1:-1]), layer[-1]
                out = self.counts @ blocks
                out[0] += emb
                out[-1] += head
                self._lin[t] = out
        return np.asarray([self._lin[int(t)] for t in tokens]).reshape(len(tokens), self.pp)

    def head_terms(self, sequences: Sequence[int]) -> np.ndarray:
        """H(B): the LM head's ops but its final norm, on B rows, for each B."""
        missing = sorted({int(b) for b in sequences if int(b) not in self._head})
        if missing:
            heads = [build(self.dep.model, "decode", b, 1, **self._kw).layers[-1][0] for b in missing]
            ops: list[Any] = []
            spans: list[tuple[int, int, float]] = []
            for hg in heads:
                keep = [op for op in hg.nodes if op.kind != "collective" and op.name != "final_norm"]
                comm = collectives_time(self.dep.cluster, graph_collectives(hg, expert=False), self.dep.tp)
                spans.append((len(ops), len(keep), comm))
                ops += keep
            times = self._latencies(ops)
            for b, (a, n, comm) in zip(missing, spans):
                self._head[b] = float(sum(times[a:a + n])) + comm
        return np.asarray([self._head[int(b)] for b in sequences], dtype=float)

    def attention_op(self, window: int | None, batch: int, q_len: int, kv_len: int) -> O.Op:
        """The fused attention op `coda.models.build` puts in a serving block (same arguments)."""
        cfg = self.dep.model
        assert cfg.head_dim is not None
        return O.attention(batch, self._a_t, self._g_t, q_len, kv_len, cfg.head_dim, cfg.causal, self.dep.dtype,
                           name="attention", kernel="fa2", window=window)

    def attention_terms(self, keys: Sequence[tuple[int, int, int]]) -> np.ndarray:
        """Per distinct block, the attention seconds of each (batch, q_len, kv_len); (len, kinds)."""
        missing = sorted({k for k in keys if k not in self._attn})
        if missing:
            kinds = self.dep.model.block_kinds
            ops = [self.attention_op(w, b, s, c) for b, s, c in missing for w, _ in kinds]
            times = np.asarray(self._latencies(ops)).reshape(len(missing), len(kinds))
            for k, row in zip(missing, times):
                self._attn[k] = row
        return np.asarray([self._attn[k] for k in keys]).reshape(len(keys), len(self.dep.model.block_kinds))

    def prefill_attention_terms(self, keys: Sequence[tuple[int, int, int]]) -> np.ndarray:
        """Per distinct block, the attention seconds of n chunks of s tokens after c cached ones,
        for each (n, s, c): `attention_terms((n, s, c + s))` at cp = 1, the ring (module
        docstring) at cp > 1; (len, kinds)."""
        if self.cp == 1:
            return self.attention_terms([(n, s, c + s) for n, s, c in keys])
        missing = sorted({k for k in keys if k not in self._ring})
        if missing:
            cfg, cp = self.dep.model, self.cp
            kinds = cfg.block_kinds
            rings = [ring_ops(self.attention_op(w, n, q, -(-c // cp) + q), cfg, c, cp)
                     for n, s, c in missing for q in [local_tokens(cfg, s, cp)] for w, _ in kinds]
            times = iter(self._latencies([o for r in rings for o in (r.diagonal, r.off_diagonal)]))
            secs = [ring_cost(self.dep.cluster, r, next(times), next(times), self.dep.tp, cp).seconds for r in rings]
            for i, k in enumerate(missing):
                self._ring[k] = np.asarray(secs[i * len(kinds): (i + 1) * len(kinds)])
        return np.asarray([self._ring[k] for k in keys]).reshape(len(keys), len(self.dep.model.block_kinds))

    def decode_attention_terms(self, keys: Sequence[tuple[int, int]]) -> np.ndarray:
        """Per distinct block, the attention seconds of n decodes at context c, for each (n, c):
        `attention_terms((n, 1, c + 1))` at cp = 1; at cp > 1 over ceil(c/cp) cached tokens plus
        the all-gather of the partial outputs; (len, kinds)."""
        cp = self.cp
        out = self.attention_terms([(n, 1, -(-c // cp) + 1) for n, c in keys])
        if cp > 1:
            out = out + np.asarray([[decode_combine_s(self.dep.cluster, self.attention_op(w, n, 1, -(-c // cp) + 1),
                                                      self.dep.tp, cp) for w, _ in self.dep.model.block_kinds]
                                    for n, c in keys]).reshape(out.shape)
        return out

    def local_prefill_tokens(self, tokens: np.ndarray) -> int:
        """Prefill tokens on one device of a context-parallel group: the sum of the chunks' shares."""
        if self.cp == 1:
            return int(tokens.sum())
        return sum(local_tokens(self.dep.model, int(s), self.cp) for s in tokens.tolist())

    # -- a batch -------------------------------------------------------------------------------

    def _local(self, n: int) -> int:
        return -(-n // self.ep)

    def stage_times(self, shape: BatchShape) -> np.ndarray:
        """Seconds of each pipeline stage for one batch (pp values; compute + TP/EP collectives)."""
        n_d = len(shape.decode_context)
        T, B = self.local_prefill_tokens(shape.prefill_tokens) + n_d, shape.sequences
        lin = self.linear_terms([self._local(T)])[0]
        keys = [(n, s, c) for (s, c), n in _groups(shape.prefill_tokens, shape.prefill_context).items()]
        attn = np.zeros(len(self.dep.model.block_kinds))
        if keys:
            attn += self.prefill_attention_terms(keys).sum(axis=0) / self.ep
        if n_d:
            c = int(math.floor(float(shape.decode_context.mean()) + 0.5))  # half up, as decode_steps
            attn += self.decode_attention_terms([(self._local(n_d), c)])[0]
        out = lin + self.counts @ attn
        out[-1] += self.head_terms([self._local(B)])[0]
        return out

    def decode_steps(self, contexts: np.ndarray, steps: int) -> np.ndarray:
        """Seconds of `steps` consecutive decode-only iterations of one replica stage (pp = 1) of
        the sequences at `contexts`, each step one token further: the j-th at contexts + j."""
        return np.asarray([self.stage_times(BatchShape(_EMPTY, _EMPTY, contexts + j)).sum() for j in range(steps)])

    def hops(self, tokens: int, decodes: bool) -> tuple[float, float]:
        """(between adjacent stages, from the last stage back to the first) send/recv seconds of a
        batch of `tokens` tokens; with decodes the worst pair of the ring bounds both, as in
        `coda.evaluate.inference`; with cp > 1 each device passes its 1/cp share."""
        if self.pp == 1:
            return 0.0, 0.0
        n = self._act_bytes * self._local(tokens if self.cp == 1 else -(-tokens // self.cp))
        ring = max(c.time(n) for c in self._hop_ring)
        return (ring if decodes else max(c.time(n) for c in self._hop_fwd)), ring

    def iteration_s(self, shape: BatchShape) -> float:
        """Latency of one batch through the whole pipeline: sum of stages + (P-1) hops."""
        inter, _ = self.hops(shape.tokens, len(shape.decode_context) > 0)
        return float(self.stage_times(shape).sum()) + (self.pp - 1) * inter


_EMPTY = np.zeros(0, dtype=np.int64)


def _groups(tokens: np.ndarray, context: np.ndarray) -> dict[tuple[int, int], int]:
    """Prefill chunks of equal (s, c), counted: each group is one batched attention op."""
    out: dict[tuple[int, int], int] = {}
    for s, c in zip(tokens.tolist(), context.tolist()):
        out[(s, c)] = out.get((s, c), 0) + 1
    return out


def linear_table(cost: IterationCost, max_tokens: int) -> np.ndarray:
    """E + sum_k n_{s,k} L_k + N (the token-level terms, module docstring) of each stage at every
    token count 0..max_tokens, as `CostTable` holds them: exact at the knots of `tile_grid`,
    linear in between; (max_tokens + 1, pp) seconds. Every iteration of T tokens (per device
    with ep) takes at least row T on each stage, which bounds throughput (`coda.serving.capacity`)."""
    tg = tile_grid(max_tokens, EXACT_TOKENS, TILE_ROWS)
    lin = cost.linear_terms(tg.tolist())  # (len, pp)
    every = np.arange(0, max_tokens + 1)
    return np.stack([np.interp(every, tg, lin[:, s]) for s in range(cost.pp)], axis=1)


class CostTable:
    """Tabulated iteration costs (module docstring): fast, within `table_error` of `IterationCost`.

    Args:
        cost: the direct model it tabulates (and falls back to outside the tables).
        max_tokens: largest token count per iteration tabulated (per device with ep).
        max_sequences: largest batch (sequences) tabulated.
        max_context: largest KV context tabulated.
    """

    def __init__(self, cost: IterationCost, max_tokens: int, max_sequences: int, max_context: int) -> None:
        self.cost = cost
        self.pp, self.ep, self.cp = cost.pp, cost.ep, cost.cp
        self.counts = cost.counts
        self.max_tokens, self.max_sequences, self.max_context = max_tokens, max_sequences, max_context
        self._lin = linear_table(cost, max_tokens)
        bg = tile_grid(max_sequences, EXACT_TOKENS, TILE_ROWS)
        self._head = np.interp(np.arange(0, max_sequences + 1), bg, cost.head_terms(bg.tolist()))
        # decode attention: batch n x context c (kv_len c + 1)
        self._dn = log_grid(1, max_sequences, 16, GRID_RATIO).astype(float)
        self._dc = np.concatenate([[0.0], log_grid(1, max_context, 16, GRID_RATIO)]).astype(float)
        dkeys = [(int(n), int(c)) for n in self._dn for c in self._dc]
        kinds = len(cost.dep.model.block_kinds)
        self._dec = cost.decode_attention_terms(dkeys).T.reshape(kinds, len(self._dn), len(self._dc))
        # prefill attention: chunk s (all its tokens, over the cp devices) x cached context c (kv_len c + s)
        self._ps = tile_grid(max_tokens * self.cp, TILE_ROWS, TILE_ROWS).astype(float)
        self._pc = np.concatenate([[0.0], log_grid(1, max_context, 16, GRID_RATIO)]).astype(float)
        keys = [(1, int(s), int(c)) for s in self._ps for c in self._pc]
        self._pre = cost.prefill_attention_terms(keys).T.reshape(kinds, len(self._ps), len(self._pc))
        # per stage (sum_k n_{s,k} A_k): interpolation is linear, so summing the kinds first changes nothing
        self._dec_s = Grid(self._dn, self._dc, np.einsum("sk,kxy->sxy", self.counts, self._dec))
        self._pre_s = Grid(self._ps, self._pc, np.einsum("sk,kxy->sxy", self.counts, self._pre))
        self._lim = (float(self._dn[-1]), float(self._ps[-1]), float(self._pc[-1]), float(self._dc[-1]))
        cost.clear()
        self._last = np.zeros(self.pp)
        self._last[-1] = 1.0

    @classmethod
    def for_deployment(cls, deployment: Deployment, max_context: int | None = None,
                       predictor: BasePredictor | None = None) -> CostTable:
        """A table covering what the deployment's scheduler can batch: up to max(max_tokens, the
        longest context) tokens, max_batch sequences, contexts up to `max_context` (default the
        model's max_seq_len)."""
        cfg, sc = deployment.model, deployment.scheduler
        ctx = int(max_context or cfg.max_seq_len)
        ep, cp = deployment.ep, deployment.cp
        tokens = -(-(max(sc.max_tokens, sc.chunk, ctx) + sc.max_batch) // ep)
        if cp > 1:  # a device's share of the prefill tokens (each chunk padded to 2*cp) and every decode
            tokens = -(-max(sc.max_tokens, sc.chunk, ctx) // cp) + 3 * sc.max_batch
        return cls(IterationCost(deployment, predictor), tokens, -(-sc.max_batch // ep) + 1, ctx)

    @classmethod
    def for_layout(cls, deployment: Deployment, max_tokens: int, max_sequences: int, max_context: int) -> CostTable:
        """A table of a replica layout (tp, pp, ep, dtype of `deployment`; replicas and the scheduler do not
        change iteration costs) covering `max_tokens` tokens and `max_sequences` sequences per iteration,
        each split over the ep groups, and contexts up to `max_context`."""
        ep = deployment.ep
        return cls(IterationCost(deployment), -(-max_tokens // ep), -(-max_sequences // ep) + 1, max_context)

    def stage_times(self, shape: BatchShape) -> np.ndarray:
        """As `IterationCost.stage_times`, from the tables (direct evaluation outside them)."""
        ep = self.ep
        pt, pc, dc = shape.prefill_tokens, shape.prefill_context, shape.decode_context
        n_p, n_dec = len(pt), len(dc)
        tokens = (self.cost.local_prefill_tokens(pt) if n_p else 0) + n_dec
        T, B = -(-tokens // ep), -(-(n_p + n_dec) // ep)
        n_d = -(-n_dec // ep)
        max_n, max_s, max_pc, max_dc = self._lim
        if n_p:
            pt_l, pc_l = pt.tolist(), pc.tolist()
            out_p = max(pt_l) > max_s or max(pc_l) > max_pc
        if (T > self.max_tokens or B > self.max_sequences or n_d > max_n or (n_p and out_p)
                or (n_dec and int(dc.max()) > max_dc)):
            return self.cost.stage_times(shape)
        out = self._lin[T] + self._last * self._head[B]
        if n_p > 1 and len(groups := _groups(pt, pc)) < n_p:  # equal chunks batch: direct (memoised)
            attn = self.cost.prefill_attention_terms([(n, s, c) for (s, c), n in groups.items()]).sum(axis=0) / ep
            out = out + self.counts @ attn
        elif n_p == 1:
            out = out + self._pre_s.at(float(pt_l[0]), float(pc_l[0])) / ep
        elif n_p:
            out = out + self._pre_s.many(pt.astype(float), pc.astype(float)).sum(axis=0) / ep
        if n_dec:
            c = float(math.floor(int(dc.sum()) / n_dec + 0.5))
            out = out + self._dec_s.at(float(n_d), c)
        return out

    def decode_steps(self, contexts: np.ndarray, steps: int) -> np.ndarray:
        """As `IterationCost.decode_steps`, vectorised over the steps (pp = 1)."""
        ep, n = self.ep, len(contexts)
        n_d = -(-n // ep)
        mean = float(math.floor(int(contexts.sum()) / n + 0.5))
        cs = mean + np.arange(steps, dtype=float)
        if n_d > self._dn[-1] or n_d > self.max_tokens or cs[-1] > self._dc[-1]:
            return self.cost.decode_steps(contexts, steps)
        attn = self._dec_s.along_y(float(n_d), cs)  # (steps,)
        return np.asarray(self._lin[n_d, 0] + self._head[n_d] + attn)

    def hops(self, tokens: int, decodes: bool) -> tuple[float, float]:
        return self.cost.hops(tokens, decodes)


def random_shapes(n: int, max_tokens: int, max_sequences: int, max_context: int, seed: int = 0) -> list[BatchShape]:
    """Random batches for `table_error`: a third decode-only, a third prefill-only, a third mixed;
    sizes and contexts log-uniform within the bounds."""
    rng = np.random.default_rng(seed)

    def logu(hi: int, size: int | None = None) -> Any:
        return np.floor(np.exp(rng.uniform(0, math.log(hi + 1), size))).astype(np.int64).clip(1, hi)

    out = []
    for i in range(n):
        kind = i % 3
        n_d = 0 if kind == 1 else int(logu(max_sequences - 1))
        dctx = logu(max_context - 1, n_d)
        n_p = 0 if kind == 0 else int(rng.integers(1, 5))
        left = max(max_tokens - n_d, n_p)
        pt = logu(max(left // max(n_p, 1), 1), n_p)
        pc = np.where(rng.uniform(size=n_p) < 0.5, 0, logu(max_context - 1, n_p))
        pc = np.minimum(pc, max_context - pt).clip(0)
        out.append(BatchShape(pt, pc, dctx))
    return out


def table_error(table: CostTable, shapes: Sequence[BatchShape]) -> np.ndarray:
    """Relative error of the table's iteration time (sum of its stages) against the direct
    evaluation, one value per shape: (table - direct) / direct."""
    direct = np.asarray([table.cost.stage_times(s).sum() for s in shapes])
    tab = np.asarray([table.stage_times(s).sum() for s in shapes])
    table.cost.clear()
    return np.asarray((tab - direct) / direct)


__all__ = ["EXACT_TOKENS", "GRID_RATIO", "BatchShape", "CostTable", "IterationCost", "linear_table",
           "random_shapes", "table_error"]
