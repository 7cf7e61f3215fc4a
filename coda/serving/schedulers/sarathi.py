"""`sarathi`: stall-free batching with chunked prefills (Agrawal et al., "Taming Throughput-
Latency Tradeoff in LLM Inference with Sarathi-Serve", OSDI'24, section 4, algorithm 2). Every
iteration first takes one decode token of each running request that has finished its prefill
(decodes never wait for prefills), then fills what is left of the token budget `chunk` with
prefill chunks: the unfinished prefills of running requests first, then new requests, first
come, first served, while fewer than `max_batch` run and their chunk's blocks leave a
`watermark` free. KV blocks are paged and preemption is as in `vllm` (by recomputation or
by swapping); swapped requests come back in an iteration without a preemption, after the
running requests' decodes and chunks and before new prompts (vLLM v0
`Scheduler._schedule_chunked_prefill`)."""

from __future__ import annotations

import numpy as np

from coda.serving.schedulers.base import BaseScheduler
from coda.serving.state import Batch, ReplicaState, Requests, batch


class SarathiScheduler(BaseScheduler):
    def next_batch(self, st: ReplicaState, req: Requests, now_s: float) -> Batch | None:
        idle = self.idle_running(st, req)
        decoding = idle[req.done[idle] >= req.target[idle]]
        before = st.preempted
        dec = self.decode_with_blocks(st, req, decoding, idle)
        budget = self.config.chunk - len(dec)
        if st.swapped and st.preempted == before and budget > 0:
            back = self.swap_in(st, req, budget)
            back = back[req.done[back] >= req.target[back]]  # decoders decode now; the others get chunks below
            dec = np.concatenate([dec, back])
            budget -= len(back)
        pre: list[int] = []
        toks: list[int] = []
        idle = self.idle_running(st, req)  # after any preemption
        for r in idle[req.done[idle] < req.target[idle]].tolist():  # unfinished prefills
            if budget <= 0:
                break
            left = int(req.target[r] - req.done[r])
            n = min(left, budget)
            if not self.grow(st, req, r, int(req.kv[r]) + n):
                break
            pre.append(int(r))
            toks.append(n)
            budget -= n
        while budget > 0 and st.waiting and len(st.running) < self.config.max_batch:
            r = st.waiting[0]
            n = min(int(req.target[r]), budget)
            if st.budget.blocks_for(n) > self.admissible_blocks(st) or not self.grow(st, req, r, n):
                break
            self.admit(st, req, r, now_s)
            pre.append(r)
            toks.append(n)
            budget -= n
        if not pre and not len(dec):
            return None
        return batch(pre, toks, dec)
