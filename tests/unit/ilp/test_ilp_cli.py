"""`coda schedule`: table, JSON schema, trace file, one-line errors."""

import json

from coda.cli import main


def test_schedule_table_and_trace(capsys, tmp_path):
    trace = tmp_path / "t.json"
    assert main(["schedule", "bert-large", "--phase", "backward", "--design", "tpuv4-like", "--predictor", "roofline",
                 "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "makespan" in out and "status" in out and "qkv.wgrad" in out
    assert json.loads(trace.read_text())["traceEvents"]


def test_schedule_json(capsys):
    assert main(["schedule", "gpt3-175b", "--phase", "forward", "--tp", "8", "--seq-len", "2048",
                 "--predictor", "roofline", "--json", "--no-fuse"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["schema"] == "coda.ilp.schedule/1"
    assert out["summary"]["status"] == "optimal"
    assert {op["name"] for op in out["ops"]} >= {"qkv", "attn.all_reduce"}


def test_schedule_errors_exit_2(capsys):
    assert main(["schedule", "llama2-7b", "--design", "nope", "--predictor", "roofline"]) == 2
    assert main(["schedule", "llama2-7b", "--layer", "decoder", "--predictor", "roofline"]) == 2
    err = capsys.readouterr().err
    assert err.count("coda: error:") == 2 and "block" in err
