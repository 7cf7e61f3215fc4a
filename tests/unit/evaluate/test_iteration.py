"""Single-device iteration time (coda.evaluate.iteration): physics that must hold."""

from __future__ import annotations

import random

import pytest

from coda.arch.accelerators import tpuv4_like
from coda.errors import CodaError
from coda.evaluate.iteration import CPU_DISPATCH_S, _pipeline, iteration
from coda.models import get
from coda.predictor.roofline import Roofline

GPU = "a100-sxm4-80gb"


@pytest.mark.parametrize("framework", ["fused", "eager"])
def test_train_is_forward_plus_backward(framework: str) -> None:
    r = iteration("gpt2", GPU, 2, 128, "train", framework=framework)
    assert r.forward_s > 0 and r.backward_s > r.forward_s  # backward: twice the GEMM work
    assert r.total_s == pytest.approx(r.forward_s + r.backward_s)
    f = iteration("gpt2", GPU, 2, 128, "forward", framework=framework)
    assert f.backward_s == 0 and f.total_s == f.forward_s < r.forward_s  # no loss, no dropout


@pytest.mark.parametrize("mode", ["train", "forward"])
@pytest.mark.parametrize("model,attention", [("gpt2", "unfused"), ("gpt2", "fused"), ("bert-base", "unfused")])
def test_eager_is_slower_than_fused(model: str, mode: str, attention: str) -> None:
    kw = dict(dtype="fp32", attention=attention)
    eager = iteration(model, "h100-sxm", 4, 256, mode, framework="eager", **kw)
    fused = iteration(model, "h100-sxm", 4, 256, mode, framework="fused", **kw)
    assert eager.total_s > fused.total_s
    assert len(eager.breakdown) >= len(fused.breakdown)


@pytest.mark.parametrize("framework", ["fused", "eager"])
def test_monotone_in_batch_and_sequence(framework: str) -> None:
    times = [iteration("gpt2", GPU, b, s, "forward", framework=framework).total_s
             for b, s in ((1, 64), (2, 64), (4, 64), (4, 128), (4, 256), (8, 256))]
    assert all(a < b for a, b in zip(times, times[1:]))


@pytest.mark.parametrize("per_op", [False, True])
@pytest.mark.parametrize("framework", ["fused", "eager"])
def test_breakdown_sums_to_total(per_op: bool, framework: str) -> None:
    r = iteration("gpt2", GPU, 2, 128, "train", framework=framework, per_op=per_op)
    b = r.breakdown
    assert b["total_s"].sum() == pytest.approx(r.total_s, rel=1e-9)
    assert b["total_s"].to_numpy() == pytest.approx((b["seconds"] * b["repeat"]).to_numpy(), rel=1e-12)
    for phase, want in (("forward", r.forward_s), ("backward", r.backward_s)):
        assert b.loc[b["phase"] == phase, "total_s"].sum() == pytest.approx(want, rel=1e-9)
    assert {"layer", "repeat", "phase", "seconds", "total_s"} <= set(b.columns)
    assert set(b["layer"]) == {"embedding", "block", "head", "loss"}
    assert b.loc[b["layer"] == "block", "repeat"].eq(get("gpt2").n_layers).all()


@pytest.mark.parametrize("framework", ["fused", "eager"])
def test_repeated_layers_multiply(framework: str) -> None:
    """GPU-bound sizes, so that eager's host pipeline does not blur the per-layer times."""
    cfg = get("gpt2")
    one = iteration(cfg, GPU, 8, 512, "train", framework=framework)
    two = iteration(cfg.replace(n_layers=2 * cfg.n_layers), GPU, 8, 512, "train", framework=framework)
    block = 0.0
    for phase in ("forward", "backward"):
        block += one.layer_seconds("block", phase)
        assert two.layer_seconds("block", phase) == pytest.approx(2 * one.layer_seconds("block", phase), rel=1e-3)
        for layer in ("embedding", "head"):
            assert two.layer_seconds(layer, phase) == pytest.approx(one.layer_seconds(layer, phase), rel=1e-3)
    assert two.total_s - one.total_s == pytest.approx(block, rel=1e-3)
    assert one.breakdown.loc[one.breakdown["layer"] == "block", "seconds"].to_numpy() == pytest.approx(
        two.breakdown.loc[two.breakdown["layer"] == "block", "seconds"].to_numpy(), rel=1e-3)


def test_host_bound_eager_is_at_least_the_dispatch_time() -> None:
    """A tiny model in eager mode cannot run faster than the CPU issues its kernels."""
    r = iteration("gpt2", GPU, 1, 8, "forward", framework="eager", per_op=True)
    kernels = (r.breakdown["repeat"]).sum()
    assert r.total_s >= kernels * CPU_DISPATCH_S
    assert r.host_idle_s > 0
    assert r.total_s == pytest.approx((r.breakdown["gpu_s"] * r.breakdown["repeat"]).sum() + r.host_idle_s)
    big = iteration("gpt2-large", GPU, 8, 1024, "forward", framework="eager")
    assert big.host_idle_s < 1e-3 * big.total_s  # GPU-bound: dispatch hidden behind long kernels


def _naive_pipeline(gpu_s: list[float], repeat: int, cpu: float) -> float:
    cpu_t, gpu_t = 0.0, 0.0
    for _ in range(repeat):
        for t in gpu_s:
            cpu_t += cpu
            gpu_t = max(gpu_t, cpu_t) + t
    return gpu_t


def test_pipeline_matches_event_simulation() -> None:
    rng = random.Random(0)
    for _ in range(200):
        gpu_s = [rng.choice([1e-7, 2e-6, 5e-6, 3e-5]) * rng.random() for _ in range(rng.randint(1, 12))]
        repeat, cpu = rng.randint(1, 40), rng.choice([0.0, 1e-6, 8e-6])
        total, _ = _pipeline(gpu_s, repeat, cpu, 0.0)
        assert sum(total) == pytest.approx(_naive_pipeline(gpu_s, repeat, cpu), rel=1e-9, abs=1e-15)


def test_roofline_is_a_lower_bound() -> None:
    for framework in ("fused", "eager"):
        ours = iteration("gpt2", "h100-sxm", 4, 256, "train", framework=framework)
        roof = iteration("gpt2", "h100-sxm", 4, 256, "train", framework=framework, predictor=Roofline(),
                         cpu_dispatch_s=0.0)
        assert roof.total_s < ours.total_s


def test_accelerator_device() -> None:
    r = iteration("gpt2", tpuv4_like(), 2, 128, "train")
    assert r.total_s > 0
    with pytest.raises(CodaError):
        iteration("gpt2", tpuv4_like(), 2, 128, "train", framework="eager")


@pytest.mark.parametrize("kwargs", [
    dict(device="no-such-gpu"), dict(dtype="fp8"), dict(framework="jit"), dict(mode="backward"),
    dict(dtype="int3"), dict(head="pretraining"), dict(head="nonsense"), dict(attention="flash"), dict(batch=0),
    dict(cfg="no-such-model"), dict(device=3.5),
])
def test_bad_input_raises(kwargs: dict) -> None:
    args = dict(cfg="gpt2", device=GPU, batch=2, seq_len=64) | kwargs
    with pytest.raises(CodaError):
        iteration(**args)


def test_e2e_report_covers_every_shipped_run() -> None:
    from coda.evaluate.e2e_validation import e2e_report, measured_runs

    sections = dict(e2e_report())
    runs = measured_runs()
    table = next(df for title, df in sections.items() if title.startswith("End to end"))
    fusion = next(df for title, df in sections.items() if title.startswith("Extra"))
    rest = sections["Not compared"]
    assert len(table) + len(fusion) + len(rest) == len(runs) == 43
    assert len(table) == 16 and set(table["gpu"]) == {"h100-sxm", "a100-pcie-40gb", "a100-pcie-80gb"}
    assert (table["roofline_ms"] < table["coda_ms"]).all()  # the roofline is a lower bound of the same kernels
    assert (table["coda_fw_ms"] + table["coda_bw_ms"] - table["coda_ms"]).abs().max() < 0.2
    assert set(rest["status"]) == {"multi-GPU: see placement", "not modelled (encoder-decoder MoE)"}
