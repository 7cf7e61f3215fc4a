"""Issue #12: every bad input gets one clear line on stderr and exit code 2, before any work.

One regression test per class of the issue: input files, output paths, sizes that used to hang,
values that used to pass silently, misleading messages, the Python API, and the prompt.
"""

import argparse
import json
import signal
import time

import pytest

from coda.cli import build_parser, main
from coda.errors import ConfigError, UnknownNameError
from coda.models import from_hf_config, get

LLAMA = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
         "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
         "hidden_act": "silu", "tie_word_embeddings": False}


def run(argv, capsys):
    """(exit code, stdout, stderr lines) of one in-process call."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def one_error(argv, capsys, *needles):
    code, _, err = run(argv, capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("coda: error: "), err
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


# -- input files -------------------------------------------------------------------------------

@pytest.mark.parametrize("content, needles", [
    (bytes(range(256)), ["not UTF-8"]),
    (json.dumps(LLAMA | {"_name_or_path": "café"}, ensure_ascii=False).encode("latin-1"), ["not UTF-8"]),
    (json.dumps([LLAMA]).encode(), ["JSON list", "object"]),
    (json.dumps(LLAMA).encode()[:60], ["not valid JSON", "truncated"]),
    (json.dumps(LLAMA | {"num_hidden_layers": 32.5}).encode(), ["num_hidden_layers=32.5", "whole number"]),
    (json.dumps(LLAMA | {"hidden_size": -4096}).encode(), ["hidden_size=-4096", "positive"]),
    (json.dumps(LLAMA | {"hidden_size": "4096"}).encode(), ["hidden_size='4096'"]),
    (json.dumps(LLAMA | {"vocab_size": 10**12}).encode(), ["vocab_size=1000000000000", "16777216"]),
    (json.dumps(LLAMA | {"hidden_size": 10**30}).encode(), ["hidden_size=", "1048576"]),
    (json.dumps(LLAMA | {"layer_types": 5}).encode(), ["layer_types=5"]),
    (json.dumps(LLAMA | {"model_type": ["llama"]}).encode(), ["unsupported model_type"]),
    (json.dumps({k: v for k, v in LLAMA.items() if k != "model_type"}).encode(), ["no model_type key"]),
    (json.dumps({k: v for k, v in LLAMA.items() if k != "num_attention_heads"}).encode(),
     ["num_attention_heads"]),
])
def test_bad_config_files_name_the_file_and_key(tmp_path, capsys, content, needles):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    line = one_error(["models", "show", str(path)], capsys, *needles)
    assert str(path) in line
    with pytest.raises(ConfigError):
        from_hf_config(path)


def test_missing_file_and_directory_are_not_unknown_models(tmp_path, capsys):
    one_error(["models", "show", str(tmp_path / "nope.json")], capsys, "does not exist")
    one_error(["models", "show", str(tmp_path)], capsys, "is a directory")


def test_config_without_model_type_but_coda_keys_is_a_coda_config(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(dict(name="m", n_layers=2, hidden=64, n_heads=4, ffn_hidden=256, vocab_size=100,
                                    max_seq_len=128)))
    assert get(str(path)).n_layers == 2


# -- output paths, checked before the work ------------------------------------------------------

SERVE = ["serve", "--model", "gpt2", "--cluster", "dgx-a100", "--devices", "8", "--batch", "1", "--prompt-len", "16",
         "--output-len", "4"]


@pytest.mark.parametrize("flag, argv", [("--plot", SERVE), ("--trace", ["schedule", "gpt2"]),
                                        ("--timeline", ["schedule", "gpt2"])])
def test_output_paths_refused_before_work(tmp_path, capsys, monkeypatch, flag, argv):
    import coda.models

    def no_work(*a, **k):
        raise AssertionError("the work started before the output path was checked")

    monkeypatch.setattr(coda.models, "get", no_work)
    suffix = ".json" if flag == "--trace" else ".png"
    one_error([*argv, flag, str(tmp_path / "missing" / f"out{suffix}")], capsys, "does not exist", flag)
    one_error([*argv, flag, str(tmp_path)], capsys, "is a directory")
    if flag != "--trace":
        one_error([*argv, flag, str(tmp_path / "out")], capsys, "suffix")
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind


# -- sizes that used to hang --------------------------------------------------------------------

TRAIN = ["train", "--model", "gpt2", "--cluster", "dgx-a100", "--seq-len", "128"]


@pytest.mark.parametrize("extra, needle", [
    (["--devices", "1000000000000", "--global-batch", "8"], "1048576"),
    (["--devices", "8", "--global-batch", "999999999999"], "1073741824"),
    (["--devices", "8", "--global-batch", "16777216"], "2^30"),  # within the flag's range, too many tokens
])
def test_huge_sizes_refused_fast_with_the_bound(capsys, extra, needle):
    t0 = time.perf_counter()
    one_error([*TRAIN, *extra], capsys, needle)
    assert time.perf_counter() - t0 < 2


def test_divisors_do_not_iterate_up_to_n():
    from coda.placement.rules import divisors

    t0 = time.perf_counter()
    assert divisors(2**40) == [2**i for i in range(41)]
    assert divisors(1_000_000_007) == [1, 1_000_000_007]  # a prime: sqrt(n) trial divisions
    assert divisors(360) == [d for d in range(1, 361) if 360 % d == 0]
    assert time.perf_counter() - t0 < 1


# -- values that used to pass silently ----------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["models", "show", "gpt2", "--seq-len", "0"], "seq_len='0'"),
    (["schedule", "gpt2", "--seq-len", "0"], "seq_len='0'"),
    (["accelerators", "space", "--limit", "-1"], "limit='-1'"),
    (["predict", "matmul", "--m", "100000000000000000000"], "nearest valid: 16777216"),
    (["predict", "matmul", "--m", "1e20"], "not an integer"),
    (["predict", "attention", "--kv-heads", "0"], "kv_heads='0'"),
    (["predict", "attention", "--kv-heads", "5"], "--kv-heads 5 must divide --heads 32"),
    (["accelerators", "space", "--max-area-mm2", "nan"], "not a finite number"),
    (["accelerators", "space", "--max-tdp-w", "inf"], "not a finite number"),
    (["schedule", "gpt2", "--gap", "1"], "[0, 0.999]"),
    ([*SERVE[:-2], "--output-len", "0"], "output_len"),
])
def test_nonsense_values_refused_with_range(capsys, argv, needle):
    one_error(argv, capsys, needle)


def test_no_value_or_default_in_the_cli():
    """0 is a value, not 'unset': no `x or default` on a parsed argument in the files of this CLI."""
    import re
    from pathlib import Path

    import coda.cli

    for path in Path(coda.cli.__file__).parent.glob("*.py"):
        if path.name in ("search.py", "calibrate.py"):
            continue
        assert not re.search(r"\b(args|a)\.\w+ or ", path.read_text()), path.name


def test_model_dimensions_have_physical_bounds():
    base = dict(name="m", n_layers=2, hidden=64, n_heads=4, ffn_hidden=256, vocab_size=100, max_seq_len=128)
    from coda.models import ModelConfig

    for change, needle in ((dict(vocab_size=10**12), "16777216"), (dict(hidden=10**30), "1048576"),
                           (dict(n_layers=2**15), "16384"), (dict(causal="yes"), "true or false"),
                           (dict(dense_layers=5), "list of layer indices")):
        with pytest.raises(ConfigError, match=needle):
            ModelConfig(**{**base, **change})


# -- misleading messages ------------------------------------------------------------------------

def test_unknown_name_hints_name_real_commands(capsys):
    from coda.errors import LIST_COMMANDS

    line = one_error(["predict", "matmul", "--device", "nosuchthing"], capsys, "coda hardware gpus")
    assert "devices list" not in line
    parser = build_parser()
    for command in LIST_COMMANDS.values():
        for words in command.split("` and `"):
            argv = words.split()[1:]
            with pytest.raises(SystemExit) as done:
                parser.parse_args([*argv, "--help"])
            assert done.value.code == 0, words
    capsys.readouterr()
    assert "coda models list" in str(UnknownNameError("model", "zzzzzz", [f"m{i}" for i in range(20)]))


@pytest.mark.parametrize("extra, needle", [
    (["--tp", "3"], "tp=3 must divide the 8 devices"),
    (["--cp", "3"], "cp=3 must divide the 8 devices"),
    (["--ep", "2"], "needs an MoE model"),
    (["--schedule", "1f1b", "--virtual-stages", "2"], "needs schedule='interleaved'"),
    (["--schedule", "interleaved", "--virtual-stages", "1"], "virtual_stages >= 2"),
    (["--pp", "3"], "pp=3 must divide the 8 devices"),
    (["--pp", "8", "--tp", "2"], "tp*pp = 2*8 must divide the 8 devices"),
    (["--pp", "16", "--devices", "16", "--global-batch", "16"], "exceed the 12 layers"),
    (["--zero", "1", "--dp", "1"], "with dp*cp = 1 it is zero=0"),
])
def test_impossible_plan_shapes_get_their_own_reason(capsys, extra, needle):
    line = one_error([*TRAIN, "--devices", "8", "--global-batch", "8", *extra], capsys, needle)  # later flags win
    assert "check that tp divides" not in line


# -- the Python API -----------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [None, 42, 3.5, ["gpt2"], "", "   "])
def test_get_refuses_non_names(bad):
    with pytest.raises(ConfigError):
        get(bad)


@pytest.mark.parametrize("bad", [None, 42, [LLAMA]])
def test_from_hf_config_refuses_non_configs(bad):
    with pytest.raises(ConfigError):
        from_hf_config(bad)


def test_from_hf_config_dict_names_the_key():
    with pytest.raises(ConfigError, match="num_hidden_layers=32.5"):
        from_hf_config(LLAMA | {"num_hidden_layers": 32.5})


def test_training_and_optimize_check_arguments():
    from coda.arch.clusters import cluster
    from coda.evaluate import training
    from coda.placement import Plan, optimize

    cl = cluster("dgx-a100", 8)
    with pytest.raises(ConfigError, match="seq_len"):
        training("gpt2", cl, Plan(tp=1, dp=8, global_batch=8), 0)
    with pytest.raises(ConfigError, match="2\\^30"):
        optimize("gpt2", cl, 2**29, 2048)
    with pytest.raises(ConfigError, match="Plan"):
        training("gpt2", cl, "tp8", 128)
    with pytest.raises(ConfigError, match="n_devices"):
        cluster("dgx-a100", 2**21)


# -- the prompt ---------------------------------------------------------------------------------

def test_version(capsys):
    import coda

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"coda {coda.__version__}"


def _parsers(parser, path=("coda",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def _default_shown(action):
    h = (action.help or "").lower()
    if action.required:
        return "required" in h
    d = action.default
    if isinstance(d, bool) or d is None:
        return "default" in h
    if isinstance(d, float):
        return f"{d:g}" in h
    return str(d).lower() in h


@pytest.mark.parametrize("path, parser", [pytest.param(path, parser, id=" ".join(path))
                                          for path, parser in _parsers(build_parser())])
def test_every_flag_has_help_with_its_default(path, parser):
    missing = [a.option_strings[0] for a in parser._actions
               if a.option_strings and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
               and not _default_shown(a)]
    assert not missing, f"{' '.join(path)}: flags without help naming the default (or 'required'): {missing}"


@pytest.mark.parametrize("detail, line", [((), "coda: interrupted"), (("3 designs kept",),
                                                                      "coda: interrupted: 3 designs kept")])
def test_ctrl_c_is_one_line_and_130(capsys, monkeypatch, detail, line):
    import coda.cli.models as cli_models

    def interrupted(args):
        raise KeyboardInterrupt(*detail)

    monkeypatch.setattr(cli_models, "_list", interrupted)
    code, _, err = run(["models", "list"], capsys)
    assert code == 130 and err == [line]


def test_ctrl_c_in_a_subprocess(tmp_path):
    """A real SIGINT during `coda validate predictor` (the longest-running of these commands, ~15 s)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "coda.cli", "validate", "predictor"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("validate finished before the signal arrived")
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "coda: interrupted" and "Traceback" not in err


def test_validate_progress_only_on_a_terminal(capsys, monkeypatch):
    import coda.cli.validate as v

    monkeypatch.setitem(v.TARGETS, "probe", "coda.cli._output:_clean")  # not called: replaced below
    monkeypatch.setattr(v, "stderr_is_terminal", lambda: False)
    with v._progress("validating x"):
        pass
    assert capsys.readouterr().err == "coda: validating x ...\n"
