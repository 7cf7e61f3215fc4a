"""The command line: every subcommand answers --help, output schemas, one-line errors."""

import json
import subprocess
import sys

import pytest

from coda.cli import build_parser, main


def _subcommands(parser):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield [name]
                for rest in _subcommands(sub):
                    yield [name, *rest]


@pytest.mark.parametrize("path", list(_subcommands(build_parser())), ids=" ".join)
def test_every_subcommand_has_help(path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_models_show_json_schema(capsys):
    assert main(["models", "show", "llama2-7b", "--seq-len", "4096", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["schema"] == "coda.models.summary/1"
    assert out["params"]["total"] == 6738415616
    assert set(out["flops_per_token"]) == {"forward", "training", "prefill", "decode"}
    # forward GEMM FLOPs per token: 2 * (params that multiply activations) + attention 4*s*h per layer
    assert out["flops_per_token"]["forward"] > 2 * 6.48e9


def test_models_list_json(capsys):
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(r["name"] == "gpt3-175b" for r in rows)


def test_error_is_one_line_exit_2():
    proc = subprocess.run([sys.executable, "-m", "coda.cli", "models", "show", "gpt-5"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("coda: error: unknown model")
    assert "Traceback" not in proc.stderr


def test_bad_config_file_exit_2(tmp_path):
    bad = tmp_path / "cfg.json"
    bad.write_text('{"model_type": "t5"}')
    proc = subprocess.run([sys.executable, "-m", "coda.cli", "models", "show", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "t5" in proc.stderr


def test_validate_markdown_has_one_row_per_record(capsys):
    """`coda validate training --markdown`: a table per section, as many rows as the JSON records."""
    assert main(["validate", "training", "--json"]) == 0
    sections = json.loads(capsys.readouterr().out)
    assert main(["validate", "training", "--markdown"]) == 0
    md = capsys.readouterr().out
    for title, records in sections.items():
        block = md.split(f"**{title}**\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert block[1].startswith("|---|") and len(block) == 2 + len(records)
        assert block[0].count("|") == len(records[0]) + 1
