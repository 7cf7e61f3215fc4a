"""`coda train`: evaluate a full plan, optimise the parts left out, one-line errors."""

import json

from coda.cli import main

ARGS = ["train", "--model", "gpt3-1.3b", "--cluster", "dgx-a100", "--devices", "16", "--global-batch", "64",
        "--seq-len", "2048"]
FULL = ["--tp", "2", "--pp", "2", "--dp", "4", "--micro-batch", "2", "--recompute", "selective",
        "--no-sequence-parallel", "--schedule", "1f1b", "--virtual-stages", "1", "--zero", "1"]


def test_train_evaluates_a_full_plan(capsys):
    assert main(ARGS + FULL) == 0
    out = capsys.readouterr().out
    assert "tp2 pp2 dp4 mb2 gb64 selective 1f1b zero1" in out
    assert "step-time breakdown" in out and "memory per device by stage" in out and "top" not in out


def test_train_optimises_what_is_left_out_json(capsys):
    assert main(ARGS + ["--tp", "2", "--recompute", "full", "--json", "--top", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["plan_fields"]["tp"] == 2 and out["plan_fields"]["recompute"] == "full"
    assert len(out["alternatives"]) <= 3 and out["search"]["evaluated"] >= 1
    assert abs(sum(out["breakdown_s"].values()) - out["step_s"]) < 1e-9 * out["step_s"]


def test_train_bad_plan_is_one_line_exit_2(capsys):
    assert main(ARGS + ["--tp", "2", "--pp", "2", "--dp", "2", "--micro-batch", "1", "--recompute", "none",
                        "--no-sequence-parallel", "--schedule", "1f1b", "--virtual-stages", "1", "--zero", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("coda: error: tp*pp*dp = 2*2*2 = 8 devices") and err.count("\n") == 1


def test_train_on_tpu_pod_uses_the_accelerator_model(capsys):
    assert main(["train", "--model", "bert-large", "--cluster", "tpuv4-pod", "--devices", "16", "--global-batch", "64",
                 "--seq-len", "512", "--tp", "1", "--micro-batch", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fits"] is True


MOE = ["train", "--model", "mixtral-8x7b", "--cluster", "dgx-h100", "--devices", "16", "--global-batch", "32",
       "--seq-len", "1024"]


def test_train_searches_a_list_of_expert_parallel_widths(capsys):
    assert main(MOE + ["--zero", "1", "--tp", "1", "--ep", "1,8", "--json", "--top", "50"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["plan_fields"]["ep"] in (1, 8) and {a["ep"] for a in out["alternatives"]} <= {1, 8}
    full = ["--tp", "1", "--pp", "1", "--dp", "16", "--micro-batch", "1", "--recompute", "full",
            "--no-sequence-parallel", "--schedule", "1f1b", "--virtual-stages", "1", "--zero", "1"]
    assert main(MOE + full + ["--ep", "2,8"]) == 2
    assert "a fully given plan takes one ep width" in capsys.readouterr().err
    assert main(MOE + full + ["--ep", "8"]) == 0
    assert "ep8" in capsys.readouterr().out


def test_train_tp_comm_overlap_flag(capsys):
    """--tp-comm-overlap over a profile hides part of the TP collectives of a sequence-parallel plan;
    megatron-core-2024 has it on, --no-tp-comm-overlap turns it off again."""
    sp = ["--tp", "8", "--pp", "1", "--dp", "2", "--micro-batch", "1", "--recompute", "none", "--sequence-parallel",
          "--schedule", "1f1b", "--virtual-stages", "1", "--zero", "1", "--json"]
    base = ["train", "--model", "gpt3-6.7b", "--cluster", "dgx-h100", "--devices", "16", "--global-batch", "16",
            "--seq-len", "2048"] + sp
    runs = {}
    for name, extra in (("off", ["--software", "megatron-core"]), ("on", ["--software", "megatron-core",
                                                                           "--tp-comm-overlap"]),
                        ("2024", ["--software", "megatron-core-2024"]),
                        ("2024-off", ["--software", "megatron-core-2024", "--no-tp-comm-overlap"])):
        assert main(base + extra) == 0
        runs[name] = json.loads(capsys.readouterr().out)
    tp = {k: v["breakdown_s"]["tp_comm"] for k, v in runs.items()}
    assert 0 < tp["on"] < tp["off"] and 0 < tp["2024"] < tp["2024-off"]
    assert runs["on"]["software"] == "megatron-core+tp_comm_overlap=True"
