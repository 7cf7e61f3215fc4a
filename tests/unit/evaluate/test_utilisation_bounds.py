"""Utilisations stay physical: decode's model-bandwidth utilisation never exceeds 1 (no memory system
streams above its datasheet bandwidth), on GPUs and on accelerators, for generated workloads."""

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from coda.arch.accelerators import tpuv4, tpuv4_like
from coda.arch.clusters import cluster
from coda.errors import InfeasibleDesign
from coda.evaluate.inference import inference
from coda.models import get
from coda.predictor.accel_tiles import HBM_STREAM_FRACTION

CLUSTERS = {"dgx-h100": lambda: cluster("dgx-h100", 8), "dgx-a100": lambda: cluster("dgx-a100", 8),
            "tpuv4-like": lambda: cluster("tpuv4-pod", 8, device=tpuv4_like()),
            "tpuv4": lambda: cluster("tpuv4-pod", 8, device=tpuv4())}


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(system=st.sampled_from(sorted(CLUSTERS)), model=st.sampled_from(["gpt2", "llama2-7b", "mixtral-8x7b"]),
       batch=st.integers(1, 64), prompt=st.integers(1, 4096), output=st.integers(1, 512), tp=st.sampled_from([1, 2, 8]))
def test_decode_mbu_is_at_most_one(system, model, batch, prompt, output, tp):
    assume(prompt + output <= get(model).max_seq_len)
    try:
        r = inference(model, CLUSTERS[system](), tp, batch, prompt, output)
    except InfeasibleDesign:
        return  # does not fit: nothing to bound
    assert 0 < r.mbu <= 1
    if system.startswith("tpuv4"):
        assert r.mbu <= HBM_STREAM_FRACTION * (1 + 1e-9)  # the accelerator model streams at that fraction
