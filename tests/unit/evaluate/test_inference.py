"""Unit tests of `coda.evaluate.inference` (static-batched serving) and `coda serve`."""

from __future__ import annotations

import pytest

from coda.arch.clusters import cluster
from coda.cli import main
from coda.errors import CodaError, InfeasibleDesign
from coda.evaluate.inference import inference, kv_cache_bytes, stage_weight_bytes, weight_bytes
from coda.models import build, get


@pytest.fixture(scope="module")
def h100() -> object:
    return cluster("dgx-h100", 2)


def test_ttft_grows_with_prompt_and_batch(h100: object) -> None:
    cfg = get("llama2-7b")
    base = inference(cfg, h100, 1, 4, 256, 8).ttft_s
    assert inference(cfg, h100, 1, 4, 1024, 8).ttft_s > base
    assert inference(cfg, h100, 1, 16, 256, 8).ttft_s > base


def test_tpot_grows_with_context_and_respects_roofline(h100: object) -> None:
    cfg = get("llama2-7b")
    r = inference(cfg, h100, 1, 32, 128, 2048)
    assert r.tpot_last_s > r.tpot_first_s  # KV-cache reads grow with the context
    assert r.tpot_first_s < r.tpot_s < r.tpot_last_s
    long = inference(cfg, h100, 1, 32, 2048, 64)
    assert long.tpot_s > inference(cfg, h100, 1, 32, 128, 64).tpot_s
    assert r.tpot_first_s >= r.weights_bytes / h100.device.hbm_bw_bytes_per_s  # roofline lower bound


def test_tp2_decode_faster_but_not_twice(h100: object) -> None:
    cfg = get("llama2-70b")
    one = inference(cfg, h100, 1, 1, 128, 16, dtype="fp8")
    two = inference(cfg, h100, 2, 1, 128, 16, dtype="fp8")
    assert two.tpot_s < one.tpot_s
    assert two.tpot_s > one.tpot_s / 2
    assert two.replicas == 1 and one.replicas == 2
    assert one.tokens_per_s == pytest.approx(2 * one.tokens_per_s_per_replica)


def test_kv_cache_and_weight_closed_forms(h100: object) -> None:
    cfg = get("llama2-70b")  # l=80, g=8, d=128
    assert kv_cache_bytes(cfg, 3, 1000, tp=2, dtype="bf16") == 2 * 80 * 4 * 128 * 2 * 3 * 1000
    assert kv_cache_bytes(cfg, 1, 10, tp=16, dtype="fp8") == 2 * 80 * 1 * 128 * 1 * 10  # kv heads replicated
    r = inference(cfg, h100, 2, 3, 100, 20, dtype="fp8")
    assert r.kv_cache_bytes == 2 * 80 * 4 * 128 * 1 * 3 * 120
    assert r.weights_bytes == weight_bytes(cfg, 2, "fp8") == cfg.param_count() / 2


def test_max_batch_is_largest_that_fits() -> None:
    cl = cluster("dgx-a100", 1)
    cfg = get("llama2-7b")
    r = inference(cfg, cl, 1, 1, 1024, 1024)
    assert r.max_batch > 1 and r.fits
    assert inference(cfg, cl, 1, r.max_batch, 1024, 1024).fits
    with pytest.raises(InfeasibleDesign, match="largest batch that fits"):
        inference(cfg, cl, 1, r.max_batch + 1, 1024, 1024)
    assert not inference(cfg, cl, 1, r.max_batch + 1, 1024, 1024, check_memory=False).fits


@pytest.mark.parametrize("case", ["fp8_a100", "tp_heads", "learned_positions", "tp_devices", "zero_batch"])
def test_bad_input_raises(case: str) -> None:
    with pytest.raises(CodaError) as err:
        if case == "fp8_a100":
            inference("llama2-7b", cluster("dgx-a100", 1), 1, 1, 128, 8, dtype="fp8")
        elif case == "tp_heads":
            inference("llama2-7b", cluster("dgx-h100", 3), 3, 1, 128, 8)
        elif case == "learned_positions":
            inference("gpt2", cluster("dgx-h100", 1), 1, 1, 1020, 10)
        elif case == "tp_devices":
            inference("llama2-7b", cluster("dgx-h100", 8), 16, 1, 128, 8)
        else:
            inference("llama2-7b", cluster("dgx-h100", 1), 1, 0, 128, 8)
    if case == "fp8_a100":
        assert "fp8" in str(err.value)


def test_cli_serve(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["serve", "--model", "llama2-7b", "--cluster", "dgx-h100", "--devices", "1", "--batch", "8",
            "--prompt-len", "128", "--output-len", "32"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "TTFT_ms" in out and "largest batch that fits" in out
    assert main([*args[:-1], "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "output_len" in err
    assert main([*args, "--dtype", "fp8", "--device", "a100-sxm4-80gb"]) == 2


def test_pipeline_one_micro_batch_adds_only_the_hops() -> None:
    """With one sequence there is one micro-batch: stages run one after another, so TTFT and TPOT
    are the single-stage times plus the send/recv hops, and each device is busy 1/pp of the time."""
    cl, cfg = cluster("dgx-h100", 8), get("llama2-7b")
    one, two = inference(cfg, cl, 1, 1, 512, 64), inference(cfg, cl, 1, 1, 512, 64, pp=2)
    h, e = cfg.hidden, 2
    assert two.micro_batches == 1 and two.replicas == 4
    assert two.ttft_s - one.ttft_s == pytest.approx(cl.collective_time("send_recv", 512 * h * e, (0, 1)))
    assert two.tpot_s - one.tpot_s == pytest.approx(2 * cl.collective_time("send_recv", h * e, (0, 1)))
    assert two.tokens_per_s_per_device == pytest.approx(one.tokens_per_s_per_device / 2, rel=0.01)


def test_pipeline_memory_and_micro_batches() -> None:
    cl, cfg = cluster("dgx-h100", 8), get("llama2-70b")
    with pytest.raises(InfeasibleDesign, match="or pp=2"):  # 138 GB of weights on one 80 GB device
        inference(cfg, cl, 1, 8, 512, 128)
    r = inference(cfg, cl, 1, 8, 512, 128, pp=2)
    stage = 40 * cfg.block_params() + cfg.head_params()  # the last stage: its blocks, the final norm and LM head
    assert r.weights_bytes == 2 * stage and r.kv_cache_bytes == kv_cache_bytes(cfg, 8, 640) / 2
    assert r.micro_batches == 2 and r.fits and r.max_batch > 8
    # two micro-batches fill both stages: prefill takes less than two micro-batches' passes in a row
    single = inference(cfg, cl, 1, 4, 512, 128, pp=2)
    assert single.micro_batches == 2 and r.ttft_s < 2 * (single.ttft_s + 1e-9)
    # a Plan gives tp and pp too; pp must not exceed the layers, tp*pp must divide the devices
    from coda.placement import Plan

    plan = Plan(tp=2, pp=2, dp=2, micro_batch=1, global_batch=2)
    assert inference(cfg, cl, plan, 8, 512, 128).pp == 2
    with pytest.raises(CodaError, match="pp=81"):
        inference(cfg, cl, 1, 1, 8, 8, pp=81)
    with pytest.raises(InfeasibleDesign, match="tp\\*pp"):
        inference(cfg, cl, 1, 8, 512, 128, pp=3)


def test_stage_weights_sum_to_the_model() -> None:
    gpt2 = get("gpt2")  # tied embeddings: with pp > 1 the last stage keeps a copy of the table
    stages = [stage_weight_bytes(gpt2, 6, s == 0, s == 1, dtype="fp16") for s in range(2)]
    assert sum(stages) == 2 * (gpt2.param_count() + gpt2.vocab_size * gpt2.hidden)
    assert stage_weight_bytes(gpt2, 12, True, True, tp=2) == weight_bytes(gpt2, 2)


def test_cli_serve_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["serve", "--model", "llama2-70b", "--cluster", "dgx-h100", "--devices", "8", "--batch", "8",
            "--prompt-len", "256", "--output-len", "16", "--tp", "2", "--pp", "2"]
    assert main(args) == 0
    assert "tp=2, pp=2 (2 micro-batches)" in capsys.readouterr().out


def test_sweep_rows_and_cli(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    import importlib.util
    import json

    from coda.evaluate import inference_sweep

    cl = cluster("dgx-a100", 1)
    df = inference_sweep("llama2-7b", cl, 1, [1, 16, 4096], 512, 64)
    assert list(df["batch"]) == [1, 16, 4096] and list(df["fits"]) == [True, True, False]
    assert (df["max_batch"] == inference("llama2-7b", cl, 1, 1, 512, 64).max_batch).all()
    assert df["tokens_per_s"].is_monotonic_increasing and df["tpot_s"].is_monotonic_increasing
    args = ["serve", "--model", "llama2-7b", "--cluster", "dgx-a100", "--devices", "1", "--batch", "1,16,4096",
            "--prompt-len", "512", "--output-len", "64"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "TPOT_ms" in out and "largest batch that fits" in out and out.count("False") == 1
    assert main([*args, "--json"]) == 0
    assert [r["batch"] for r in json.loads(capsys.readouterr().out)] == [1, 16, 4096]
    if importlib.util.find_spec("matplotlib") is not None:
        assert main([*args, "--plot", str(tmp_path / "s.png")]) == 0
        assert (tmp_path / "s.png").stat().st_size > 0


def test_expert_parallel_serving() -> None:
    cl, cfg = cluster("dgx-h100", 8), get("qwen3-30b-a3b")
    L, E = cfg.n_layers, cfg.n_experts
    r = inference(cfg, cl, 1, 64, 512, 64, ep=8)
    # each device: the whole model but for 7/8 of the experts; the KV cache of its 8 sequences
    assert r.weights_bytes == 2 * (cfg.param_count() - L * (E - E // 8) * cfg.mlp_params())
    assert r.weights_bytes == stage_weight_bytes(cfg, L, True, True, dtype="bf16", ep=8)
    assert r.kv_cache_bytes == kv_cache_bytes(cfg, 64 // 8, 576)
    assert r.replicas == 1 and r.tokens_per_s_per_device == pytest.approx(r.tokens_per_s / 8)
    assert r.max_batch % 8 == 0 and r.max_batch > inference(cfg, cl, 1, 8, 512, 64).max_batch
    # the dispatch and combine all-to-alls over the 8 devices are the only collectives
    step = build(cfg, "decode", 8, 1, context_len=512, ep=8)
    a2a = sum(n * cl.collective_time("all_to_all", op.dims["n_bytes"], 8) for op, n in step.ops()
              if op.kind == "collective")
    assert r.tpot_first_s > a2a > 0 and r.tpot_comm_s == pytest.approx(a2a)  # the messages do not grow
    for bad in (dict(model="llama2-7b"), dict(plan=2), dict(batch=60)):
        with pytest.raises(CodaError, match="ep=8"):
            inference(bad.get("model", cfg), cl, bad.get("plan", 1), bad.get("batch", 64), 512, 64, ep=8)


def test_cli_serve_expert_parallel(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["serve", "--model", "qwen3-30b-a3b", "--cluster", "dgx-h100", "--devices", "8", "--batch", "64",
            "--prompt-len", "256", "--output-len", "16", "--ep", "8"]
    assert main(args) == 0
    assert "tp=1, ep=8" in capsys.readouterr().out
