"""`vllm`: PagedAttention's scheduler (Kwon et al., "Efficient Memory Management for Large
Language Model Serving with PagedAttention", SOSP'23, sections 4.2-4.5; vLLM v0's default
policy). KV blocks of `kv_block_tokens` tokens are allocated on demand from the replica's
budget. An iteration either prefills newly admitted requests (first come, first served, while
fewer than `max_batch` run, their prompts fit in `max_tokens` -- a longer one runs alone -- and
their prompt blocks leave a `watermark` of all blocks free), which has priority, or decodes one
token of every running request. When a decode needs a block and none is free, the latest
admitted request is preempted (`SchedulerConfig.preemption`): by recomputation (vLLM v0's
default for single sequences: its blocks are freed and it re-prefills its prompt and generated
tokens later) or by swapping (its blocks move to host memory; while any request is swapped out
no new prompt is admitted, and in an iteration without a preemption swapped requests come back,
first come first served, and decode in it: vLLM v0 `Scheduler._schedule_default`)."""

from __future__ import annotations

import numpy as np

from coda.serving.schedulers.base import BaseScheduler
from coda.serving.state import Batch, ReplicaState, Requests, batch


class VllmScheduler(BaseScheduler):
    def next_batch(self, st: ReplicaState, req: Requests, now_s: float) -> Batch | None:
        pre: list[int] = []
        tokens = 0
        while not st.swapped and st.waiting and len(st.running) < self.config.max_batch:
            r = st.waiting[0]
            p = int(req.target[r])
            if pre and tokens + p > self.config.max_tokens:
                break
            if st.budget.blocks_for(p) > self.admissible_blocks(st) or not self.grow(st, req, r, p):
                break
            self.admit(st, req, r, now_s)
            pre.append(r)
            tokens += p
        if pre:
            return batch(pre, req.target[pre] - req.done[pre])
        idle = self.idle_running(st, req)
        before = st.preempted
        dec = self.decode_with_blocks(st, req, idle, idle)
        if st.swapped and st.preempted == before:
            dec = np.concatenate([dec, self.swap_in(st, req, self.config.max_batch)])
        return batch(decode_ids=dec) if len(dec) else None
