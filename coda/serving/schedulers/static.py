"""`static`: fixed batches, as `coda.evaluate.inference` models them. A batch of up to
`max_batch` waiting requests (first come, first served, each with the KV blocks of its whole
prompt + output reserved) is formed when the previous one has finished; it prefills together,
then decodes until its last member is done; nothing is admitted meanwhile. With pp stages it
runs as m = min(pp, b) micro-batches of ceil(b/m) sequences. Finished members leave the
computed batch (no padding)."""

from __future__ import annotations

import numpy as np

from coda.serving.schedulers.base import BaseScheduler, SchedulerConfig
from coda.serving.state import Batch, ReplicaState, Requests, batch


class StaticScheduler(BaseScheduler):
    reserves_whole_request = True

    def __init__(self, config: SchedulerConfig, pp: int = 1) -> None:
        super().__init__(config, pp)
        self._micro: list[np.ndarray] = []

    def next_batch(self, st: ReplicaState, req: Requests, now_s: float) -> Batch | None:
        if not st.running:  # the last batch is done: form the next one
            members: list[int] = []
            while st.waiting and len(members) < self.config.max_batch:
                r = st.waiting[0]
                if not self.grow(st, req, r, int(req.prompt[r] + req.output[r])):
                    break
                self.admit(st, req, r, now_s)
                members.append(r)
            if not members:
                return None
            m = min(self.pp, len(members))
            size = -(-len(members) // m)
            self._micro = [np.asarray(members[i:i + size], dtype=np.int64) for i in range(0, len(members), size)]
        for mb in self._micro:
            live = mb[(req.finish_s[mb] != req.finish_s[mb]) & ~req.busy[mb]]  # unfinished, not in flight
            if len(live) and not req.busy[mb].any():
                pre = live[req.done[live] < req.target[live]]
                dec = live[req.done[live] >= req.target[live]]
                return batch(pre, req.target[pre] - req.done[pre], dec)
        return None
