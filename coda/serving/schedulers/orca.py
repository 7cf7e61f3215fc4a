"""`orca`: iteration-level scheduling with selective batching (Yu et al., "Orca", OSDI'22,
sections 4.1-4.2). Every iteration runs one decode token of each running request and the whole
prompt of newly admitted ones; requests are admitted first come, first served while fewer than
`max_batch` run, their prompts fit in what `max_tokens` leaves after the decodes, and the KV
slots of their whole prompt + output can be reserved (Orca reserves the maximum length).

A prompt longer than `max_tokens` cannot run whole in any iteration. It runs as chunked context,
as TensorRT-LLM's in-flight batcher runs it (its micro-batch scheduler,
`cpp/tensorrt_llm/batch_manager/microBatchScheduler.cpp`: generation requests first, then
context chunks in the token capacity they leave; without context chunking such a request is
never scheduled): once admitted, each iteration prefills as many of its tokens as the budget
left after the decodes (and earlier chunks) allows, beside the decodes. Prompts within
`max_tokens` keep whole prefills."""

from __future__ import annotations

from coda.serving.schedulers.base import BaseScheduler
from coda.serving.state import Batch, ReplicaState, Requests, batch


class OrcaScheduler(BaseScheduler):
    reserves_whole_request = True

    def next_batch(self, st: ReplicaState, req: Requests, now_s: float) -> Batch | None:
        idle = self.idle_running(st, req)
        dec = idle[req.done[idle] >= req.target[idle]]
        budget = self.config.max_tokens - len(dec)
        pre: list[int] = []
        toks: list[int] = []
        for r in idle[req.done[idle] < req.target[idle]].tolist():  # chunked contexts under way
            if budget <= 0:
                break
            n = min(int(req.target[r] - req.done[r]), budget)
            pre.append(int(r))
            toks.append(n)
            budget -= n
        while budget > 0 and st.waiting and len(st.running) < self.config.max_batch:
            r = st.waiting[0]
            p = int(req.target[r])
            long = p > self.config.max_tokens
            if not long and p > budget and (pre or len(dec)):
                break
            if not self.grow(st, req, r, int(req.prompt[r] + req.output[r])):
                break
            self.admit(st, req, r, now_s)
            n = min(p, budget)
            pre.append(r)
            toks.append(n)
            budget -= n
        if not pre and not len(dec):
            return None
        return batch(pre, toks, dec)
