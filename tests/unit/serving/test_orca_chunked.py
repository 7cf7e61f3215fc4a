"""`orca` runs a prompt longer than its token budget as chunked context beside the decodes (as
TensorRT-LLM's micro-batch scheduler does), not alone after every decode has ended; prompts within
the budget keep whole prefills."""

import numpy as np
import pytest

from coda.arch.clusters import cluster
from coda.models import get
from coda.serving.deployment import Deployment
from coda.serving.schedulers import SchedulerConfig
from coda.serving.simulate import simulate
from coda.serving.trace import Trace


class ConstantCost:
    def stage_times(self, shape):
        return np.full(1, 0.01)

    def hops(self, tokens, decodes):
        return 0.0, 0.0

    def decode_steps(self, kv, m):
        return np.full(m, 0.01)


@pytest.fixture(scope="module")
def dep():
    return Deployment(get("llama2-7b"), cluster("dgx-h100", 1),
                      scheduler=SchedulerConfig(kind="orca", max_batch=64, max_tokens=512))


def test_long_prompt_is_chunked_beside_the_decodes(dep):
    tr = Trace(np.array([0.0, 0.001, 0.002]), np.array([100, 2000, 300]), np.array([200, 10, 5]))
    r = simulate(dep, tr, cost=ConstantCost())
    it, rq = r.iterations, r.requests.set_index("request")
    assert (it["prefill_tokens"] + it["decodes"] <= 512).all()  # every iteration within the budget
    assert it["prefill_tokens"].sum() == 100 + 2000 + 300  # each prompt prefilled once
    # the long prompt starts while request 0 decodes: its chunks share iterations with that decode
    chunked = it[(it["prefill_tokens"] > 0) & (it["decodes"] > 0)]
    assert len(chunked) >= 2000 // 512
    assert rq.loc[1, "arrival_s"] + rq.loc[1, "ttft_s"] < rq.loc[0, "arrival_s"] + rq.loc[0, "e2e_s"]
    # 2000 tokens in chunks of the 511 the decode leaves: the first token after 4 of them
    assert rq.loc[1, "ttft_s"] == pytest.approx(4 * 0.01 + (0.01 - 0.001), abs=1e-9)


def test_prompts_within_the_budget_stay_whole(dep):
    tr = Trace(np.array([0.0, 0.0]), np.array([400, 400]), np.array([3, 3]))
    it = simulate(dep, tr, cost=ConstantCost()).iterations
    assert it["prefill_tokens"].tolist()[:2] == [400, 400]  # the second waits: 800 > 512, no chunking
