"""`executor="ray"` (and `coda search --executor ray`) on a local Ray instance returns the process pool's frame.

CI: `pip install ".[ray]" && pytest -q tests/unit/search/test_ray.py` (skipped when Ray is not installed).
"""

import json

import pandas as pd
import pytest

from coda.arch.design_space import DesignSpace
from coda.cli import main
from coda.placement import predictor_layer_time
from coda.search import search
from coda.units import MiB

ray = pytest.importorskip("ray")

MODEL, DEVICES, BATCH, SEQ = "gpt2", 16, 64, 512
SPACE = DesignSpace(n_tc=(2, 8), n_vc=(1, 2), tc_rows=(64, 128), tc_cols=(128,), glb_bytes=(32 * MiB,))


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_search_returns_the_process_frame(local_ray, capsys):
    kw = dict(layer_time=predictor_layer_time, workers=2)
    on_ray = search(MODEL, SPACE, DEVICES, BATCH, SEQ, executor="ray", **kw)
    on_pool = search(MODEL, SPACE, DEVICES, BATCH, SEQ, executor="process", **kw)
    pd.testing.assert_frame_equal(on_ray.frame.drop(columns="seconds"), on_pool.frame.drop(columns="seconds"))
    pd.testing.assert_series_equal(on_ray.reference.drop("seconds"), on_pool.reference.drop("seconds"))
    # designs evaluated speculatively (in flight when the incumbent rose) depend on timing, not on the executor
    timing = {"seconds": 0, "speculative": 0}
    assert on_ray.counts() | timing == on_pool.counts() | timing
    assert ray.is_initialized()  # a Ray instance the caller started is left running
    args = ["search", "--model", MODEL, "--devices", str(DEVICES), "--global-batch", str(BATCH), "--seq-len", str(SEQ),
            "--n-tc", "2,8", "--n-vc", "1,2", "--tc-rows", "64,128", "--tc-cols", "128", "--glb-mib", "32",
            "--min-area-fraction", "0", "--timer", "predictor", "--workers", "2", "--json"]
    assert main(args + ["--executor", "ray"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"] == on_pool.summary(pd.DataFrame(columns=on_pool.frame.columns))
    assert [r["name"] for r in data["top"]] == list(on_pool.frame[on_pool.frame["status"] == "ok"]["name"])
