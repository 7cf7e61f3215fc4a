"""`orca`: iteration-level scheduling with selective batching (Yu et al., "Orca", OSDI'22,
sections 4.1-4.2). Every iteration runs one decode token of each running request and the whole
prompt of newly admitted ones; requests are admitted first come, first served while fewer than
`max_batch` run, their prompts fit in `max_tokens` (a longer prompt runs alone) and the KV
slots of their whole prompt + output can be reserved (Orca reserves the maximum length)."""

from __future__ import annotations

from coda.serving.schedulers.base import BaseScheduler
from coda.serving.state import Batch, ReplicaState, Requests, batch


class OrcaScheduler(BaseScheduler):
    reserves_whole_request = True

    def next_batch(self, st: ReplicaState, req: Requests, now_s: float) -> Batch | None:
        dec = self.idle_running(st, req)
        pre: list[int] = []
        tokens = len(dec)
        while st.waiting and len(st.running) < self.config.max_batch:
            r = st.waiting[0]
            p = int(req.target[r])
            if (pre or len(dec)) and tokens + p > self.config.max_tokens:
                break
            if not self.grow(st, req, r, int(req.prompt[r] + req.output[r])):
                break
            self.admit(st, req, r, now_s)
            pre.append(r)
            tokens += p
        if not pre and not len(dec):
            return None
        return batch(pre, req.target[pre] - req.done[pre], dec)
