"""Long contexts in the serving simulation: a context-parallel `Deployment` (cp), its iteration
costs against the static model, its KV budget, the table's error, and `coda serve --cp`."""

import json

import numpy as np
import pytest

from coda.arch.clusters import cluster
from coda.cli import main
from coda.errors import ConfigError
from coda.evaluate import inference
from coda.models import get
from coda.serving.costs import BatchShape, CostTable, IterationCost, random_shapes, table_error
from coda.serving.deployment import Deployment
from coda.serving.schedulers.base import SchedulerConfig, SchedulerKind
from coda.serving.simulate import simulate
from coda.serving.trace import Trace

LONG_LLAMA = {  # Llama-3-8B with its RoPE scaled to a 1M-token window (a config.json a user can write)
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    "max_position_embeddings": 1048576, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu",
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}}


@pytest.fixture(scope="module")
def llama8():
    return get("llama3-8b")


@pytest.fixture(scope="module")
def h100x16():
    return cluster("dgx-h100", 16)


@pytest.mark.parametrize("tp,pp,cp", [(1, 1, 8), (2, 1, 4), (2, 2, 4), (1, 1, 16)])
def test_single_prefill_is_the_static_ttft(llama8, h100x16, tp, pp, cp):
    c = IterationCost(Deployment(llama8, h100x16, tp=tp, pp=pp, cp=cp))
    p = 64 * 1024  # a multiple of 2*cp: no padding, so the stage hop carries p/cp tokens in both models
    r = inference(llama8, h100x16, tp, 1, p, 4, pp=pp, cp=cp)
    assert c.iteration_s(BatchShape.of([p])) == pytest.approx(r.ttft_s, rel=1e-12)


@pytest.mark.parametrize("cp", [2, 8])
def test_single_decode_step_is_the_static_tpot(llama8, h100x16, cp):
    c = IterationCost(Deployment(llama8, h100x16, tp=2, cp=cp))
    r = inference(llama8, h100x16, 2, 3, 40_000, 1, cp=cp)  # one output token: the step at context 40000
    assert c.iteration_s(BatchShape.of([], [], [40_000] * 3)) == pytest.approx(r.tpot_s, rel=1e-12)


def test_cp1_terms_are_the_attention_ops(llama8, h100x16):
    c = IterationCost(Deployment(llama8, h100x16, tp=2))
    keys = [(1, 512, 0), (3, 100, 7000)]
    assert np.array_equal(c.prefill_attention_terms(keys), c.attention_terms([(n, s, s + x) for n, s, x in keys]))
    assert np.array_equal(c.decode_attention_terms([(4, 900)]), c.attention_terms([(4, 1, 901)]))
    assert c.local_prefill_tokens(np.array([5, 7])) == 12


def test_kv_budget_shards_over_cp(llama8, h100x16):
    one = Deployment(llama8, h100x16, tp=2)
    four = Deployment(llama8, h100x16, tp=2, cp=4)
    assert four.kv_bytes_per_token() == pytest.approx(one.kv_bytes_per_token() / 4, rel=1e-15)
    assert four.devices_per_replica == 8 and four.n_replicas == 2 and "cp=4" in four.describe()
    b1, b4 = one.kv_budget(), four.kv_budget()
    assert b4.weights_bytes == b1.weights_bytes  # weights replicated over cp
    assert b4.blocks > 3.5 * b1.blocks  # a replica holds about cp times the tokens


def test_table_error_with_cp(llama8, h100x16):
    dep = Deployment(llama8, h100x16, tp=2, cp=4)
    tab = CostTable.for_deployment(dep, max_context=32768)
    err = np.abs(table_error(tab, random_shapes(90, 4096, 128, 32768, seed=3)))
    assert np.percentile(err, 99) <= 0.02
    assert np.percentile(err, 50) <= 0.005


def test_ttft_of_a_long_request_falls_with_cp(tmp_path):
    """Chunked prefill (Sarathi) of a 200k prompt: more cp helps, and helps more with larger chunks,
    since each of a small chunk's cp ring steps is short against its transfer."""
    path = tmp_path / "llama3-8b-1m.json"
    path.write_text(json.dumps(LONG_LLAMA))
    cfg = get(str(path))
    h100x8 = cluster("dgx-h100", 8)
    trace = Trace(np.array([0.0]), np.array([200_000]), np.array([4]))
    ttft = {}
    for chunk in (512, 16384):
        for cp in (2, 8):
            dep = Deployment(cfg, h100x8, cp=cp, scheduler=SchedulerConfig(kind=SchedulerKind.SARATHI, chunk=chunk))
            ttft[chunk, cp] = simulate(dep, trace, cost=IterationCost(dep)).summary()["ttft_p50_s"]
    assert ttft[512, 8] < ttft[512, 2] and ttft[16384, 8] < ttft[16384, 2]
    assert ttft[16384, 2] / ttft[16384, 8] > ttft[512, 2] / ttft[512, 8]


def test_bad_deployments(llama8, h100x16):
    for cp in (0, True, 2.5):
        with pytest.raises(ConfigError, match="cp="):
            Deployment(llama8, h100x16, cp=cp)
    with pytest.raises(ConfigError, match="ep=1 with cp"):
        Deployment(get("mixtral-8x7b"), h100x16, ep=2, cp=2)


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


SERVE = ["serve", "--cluster", "dgx-h100"]


@pytest.mark.parametrize("extra,needle", [
    (["--devices", "8", "--tp", "2", "--cp", "3", "--batch", "1", "--prompt-len", "4096", "--output-len", "4"],
     "tp*cp = 2*3 = 6 devices"),
    (["--devices", "8", "--cp", "3", "--qps", "1", "--prompt-len", "4096", "--output-len", "4"], "cp = 1*3"),
    (["--devices", "8", "--cp", "0", "--batch", "1", "--prompt-len", "4096", "--output-len", "4"], "--cp"),
    (["--devices", "8", "--cp", "8", "--batch", "1", "--prompt-len", "10", "--output-len", "4"], "2*cp = 16"),
])
def test_cli_refuses_bad_cp_in_one_line(capsys, extra, needle):
    code, out, err = _run([*SERVE, "--model", "llama3-8b", *extra], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("coda: error:") and needle in err


def test_cli_context_too_long_for_the_preset_in_simulation(capsys):
    code, _, err = _run([*SERVE, "--model", "llama3-8b", "--devices", "8", "--cp", "8", "--qps", "1", "--requests",
                         "1", "--prompt-len", "1000000", "--output-len", "4"], capsys)
    assert code == 2 and "exceeds llama3-8b's context of 8192 tokens" in err


def test_cli_static_and_simulated_long_prompt(tmp_path, capsys):
    path = tmp_path / "llama3-8b-1m.json"
    path.write_text(json.dumps(LONG_LLAMA))
    code, out, _ = _run([*SERVE, "--model", str(path), "--devices", "8", "--cp", "8", "--batch", "1",
                         "--prompt-len", "1000000", "--output-len", "16", "--json"], capsys)
    static = json.loads(out)
    assert code == 0 and static["cp"] == 8 and static["ring"] == "pass-kv" and static["fits"]
    code, out, _ = _run([*SERVE, "--model", str(path), "--devices", "8", "--cp", "8", "--qps", "0.001",
                         "--requests", "1", "--prompt-len", "1000000", "--output-len", "16", "--scheduler", "orca",
                         "--max-tokens", "1000000", "--json"], capsys)
    sim = json.loads(out)["summary"]
    assert code == 0
    # one request, whole prefill: the simulated TTFT is the static one (same costs)
    assert sim["ttft_p50_s"] == pytest.approx(static["ttft_s"], rel=1e-9)
