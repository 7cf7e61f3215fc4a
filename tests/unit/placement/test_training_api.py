"""coda.evaluate.training, memory rejection, the optimiser's quality and speed, accelerators, PHAZE plans."""

import time

import pytest

from coda.arch.accelerators import tpuv4_like
from coda.arch.clusters import cluster
from coda.errors import CodaError, ConfigError, InfeasibleDesign
from coda.evaluate.training import training
from coda.models import get
from coda.placement import IlpLayerTime, Plan, optimize, phaze_baselines
from coda.placement.chain import CostModel
from coda.placement.phaze import PHAZE_PLACEMENTS, phaze_comparison
from coda.placement.plan import validate_plan


def test_training_returns_breakdown_memory_and_rates():
    r = training("gpt3-1.3b", cluster("dgx-a100", 16), Plan(tp=2, pp=2, dp=4, micro_batch=2, global_batch=64), 2048)
    assert r.fits and r.plan.stage_layers == (12, 12)
    assert set(r.breakdown()) >= {"forward", "backward", "tp_comm", "pp_comm", "bubble", "dp_comm", "optimizer"}
    assert r.breakdown()["tp_comm"] > 0 and r.breakdown()["pp_comm"] > 0 and r.breakdown()["bubble"] > 0
    frame = r.stages_frame()
    assert list(frame["stage"]) == [0, 1] and (frame["total_GiB"] < 80).all()
    assert r.to_dict()["plan_fields"]["tp"] == 2


def test_gpt3_175b_without_model_parallelism_is_rejected_with_needs_and_fixes():
    with pytest.raises(InfeasibleDesign) as exc:
        training("gpt3-175b", cluster("dgx-a100", 64), Plan(tp=1, pp=1, dp=64, global_batch=512), 2048)
    msg = str(exc.value)
    assert "needs 2.62 TiB per device" in msg and "optimizer states 1.91 TiB" in msg and "has 80 GiB" in msg
    assert "it fits with" in msg and ("zero=3" in msg or "pp=" in msg)


def test_megatron_rows_fit_in_80gb():
    rows = (("megatron-1.7b", 1, 1, 32, 512, 1), ("megatron-18.4b", 8, 1, 256, 1024, 1),
            ("megatron-76.1b", 8, 4, 1024, 1792, 3), ("megatron-310.1b", 8, 16, 1920, 2160, 3))
    for name, tp, pp, n, gb, v in rows:
        plan = Plan(tp=tp, pp=pp, dp=n // (tp * pp), micro_batch=1, global_batch=gb, recompute="full",
                    schedule="interleaved" if v > 1 else "1f1b", virtual_stages=v)
        r = training(name, cluster("dgx-a100", n), plan, 2048, dtype="fp16")
        assert r.fits and r.peak_memory_bytes < 80 * 2**30


def test_optimizer_beats_megatron_hand_plan_for_gpt3_175b_quickly():
    """Narayanan et al. SC'21 ran 175B on 1024 A100s with tp 8, pp 16, micro-batch 1, interleaved."""
    cfg, cl = get("gpt3-175b"), cluster("dgx-a100", 1024)
    hand = training(cfg, cl, Plan(tp=8, pp=16, dp=8, micro_batch=1, global_batch=1536, recompute="full",
                                  schedule="interleaved", virtual_stages=2), 2048)
    t0 = time.perf_counter()
    plan, best, ranked = optimize(cfg, cl, 1536, 2048)
    assert time.perf_counter() - t0 < 10
    assert best.fits and best.step_time_s <= hand.step_time_s
    assert ranked["step_s"].is_monotonic_increasing and ranked.attrs["evaluated"] < ranked.attrs["candidates"]
    validate_plan(plan, cfg, 1024)


def test_optimize_respects_fixed_choices_and_reports_no_fit():
    plan, r, _ = optimize("gpt3-1.3b", cluster("dgx-a100", 16), 64, 2048, tp=2, pp=(1, 2), recompute="full")
    assert plan.tp == 2 and plan.pp in (1, 2) and plan.recompute == "full"
    with pytest.raises(InfeasibleDesign, match="fits under no plan"):
        optimize("gpt3-175b", cluster("dgx-a100", 8), 64, 2048)
    with pytest.raises(ConfigError, match="objective"):
        optimize("gpt3-1.3b", cluster("dgx-a100", 8), 64, 2048, objective="cost")
    with pytest.raises(ConfigError, match="unknown optimize choice"):
        optimize("gpt3-1.3b", cluster("dgx-a100", 8), 64, 2048, pipeline=2)
    # bad values of a known choice are named, not silently searched over
    for bad, msg in ((dict(recompute="sometimes"), "recompute='sometimes'"), (dict(zero=(1, 4)), r"zero=\[4\]"),
                     (dict(tp=0), r"tp=\[0\]"), (dict(schedule="gpipe"), "schedule='gpipe'")):
        with pytest.raises(ConfigError, match=msg):
            optimize("gpt3-1.3b", cluster("dgx-a100", 8), 64, 2048, **bad)
    assert optimize("gpt3-1.3b", cluster("dgx-a100", 8), 64, 2048, recompute="FULL")[0].recompute == "full"


def test_accelerator_cluster_uses_ilp_layer_times():
    cl = cluster("tpuv4-pod", 64, device=tpuv4_like())
    assert isinstance(CostModel(get("bert-large"), cl, 512).layer_time, IlpLayerTime)
    plan, r, _ = optimize("bert-large", cl, 256, 512, micro_batch=(1, 2), tp=(1, 2))
    assert r.fits and r.tokens_per_s > 0 and 0 < r.mfu < 1
    with pytest.raises(ConfigError, match="tpuv4_like"):
        CostModel(get("bert-large"), cluster("tpuv4-pod", 64), 512)


def test_phaze_baselines_are_valid_plans():
    baselines = phaze_baselines()
    assert [b.model.name for b in baselines] == list(PHAZE_PLACEMENTS)
    for b in baselines:
        seq, p, d, t = PHAZE_PLACEMENTS[b.model.name]
        assert (b.plan.pp, b.plan.dp, b.plan.tp, b.seq_len) == (p, d, t, seq)
        validate_plan(b.plan, b.model, p * d * t)
        assert b.plan.global_batch == (4096 if b.model.name != "opt-350m" else 4080)
    df = phaze_comparison(cluster("tpuv4-pod", 1024, device=tpuv4_like()), models=["bert-large"], micro_batch=(1, 2))
    assert df.loc[0, "speedup"] >= 1 - 1e-12  # the search space contains the baseline


def test_bad_cluster_or_plan_is_a_coda_error():
    with pytest.raises(CodaError):
        training("gpt3-1.3b", cluster("dgx-a100", 8), Plan(tp=3, dp=1, global_batch=8), 2048)


def test_context_parallelism_splits_sequences_and_reduces_gradients_over_cp_and_dp():
    """cp=2 on 8 H100s: half of each sequence per device (activations halve; compute per
    micro-batch at least halves' worth, smaller GEMMs being no more efficient; the layout's
    gradient groups span cp*dp = 8 ranks), a ring exchange of keys and values that is never
    negative, unfused attention refused, and `optimize` over cp in {1, 2} returns the better of
    the two fixed searches."""
    from coda.placement import MEGATRON_2021, MEGATRON_CORE
    from coda.placement.chain import dp_group

    cl, cfg, kw = cluster("dgx-h100", 8), get("llama3-8b"), dict(micro_batch=1, global_batch=32, zero=1)
    one = training(cfg, cl, Plan(tp=1, pp=1, dp=8, **kw), 4096, software=MEGATRON_CORE)
    two = training(cfg, cl, Plan(tp=1, pp=1, dp=4, cp=2, **kw), 4096, software=MEGATRON_CORE)
    assert two.plan.n_devices == 8 and "cp2" in two.plan.describe()
    assert dp_group(two.plan, 0) == list(range(8)) and dp_group(Plan(tp=2, dp=2, cp=2), 0) == [0, 2, 4, 6]
    s1, s2 = one.stages_frame().iloc[0], two.stages_frame().iloc[0]
    assert s2["activations_GiB"] == pytest.approx(s1["activations_GiB"] / 2, rel=0.01)
    assert s2["optimizer_GiB"] == pytest.approx(s1["optimizer_GiB"])  # sharded over cp*dp = dp = 8 both times
    m1, m2 = one.plan.micro_batches, two.plan.micro_batches
    half = one.breakdown()["forward"] / m1 / 2  # half the work per micro-batch: never faster than half the time
    assert half <= two.breakdown()["forward"] / m2 < 1.1 * half
    assert two.breakdown()["tp_comm"] >= 0
    with pytest.raises(ConfigError, match="fused attention"):
        training(cfg, cl, Plan(tp=1, pp=1, dp=4, cp=2, **kw), 4096, software=MEGATRON_2021)
    best = {cp: optimize(cfg, cl, 32, 4096, software=MEGATRON_CORE, cp=cp)[1].step_time_s for cp in (1, 2)}
    both = optimize(cfg, cl, 32, 4096, software=MEGATRON_CORE, cp=(1, 2))[1]
    assert both.step_time_s == pytest.approx(min(best.values()))
    with pytest.raises(ConfigError, match="multiple of 2\\*cp"):
        optimize(cfg, cl, 32, 4098, software=MEGATRON_CORE, cp=2)
