from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def assert_bounds_hold():
    """A check that `optimize`'s pruning bounds (step time, static memory per device) lie below
    every given plan's evaluated figures; a bound above them could prune the best plan."""

    def check(cfg, cl, seq_len, plans):
        from coda.evaluate import training
        from coda.placement import CostModel, Software
        from coda.placement.optimize import _bound_data

        bound = _bound_data(CostModel(cfg, cl, seq_len, software=Software()))
        for plan in plans:
            r = training(cfg, cl, plan, seq_len, check_memory=False)
            static = max(s.weight_bytes + s.grad_bytes + s.optim_bytes for s in r.pipeline.stages)
            t, mem = bound(plan)
            assert t <= r.step_time_s * (1 + 1e-9), plan.describe()
            assert mem <= static * (1 + 1e-9), plan.describe()

    return check
