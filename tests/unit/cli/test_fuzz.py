"""Property-based fuzzing of the command line (issue #12).

Every subcommand is driven in-process through `coda.cli.main` with generated bad values for each
of its flags (empty, 0, negative, huge, NaN, inf, non-numeric, unicode, missing and unwritable
paths) and with mutated Hugging Face `config.json` files as the model. Each call must exit 0, or
exit 2 with exactly one line on stderr; never a traceback, and each within 10 s. Seeds are fixed
(`derandomize=True`) so CI runs the same cases every time.
"""

import contextlib
import io
import json
import os
import tempfile
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coda.cli import main

MAX_CALL_S = 10.0
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)

BAD_VALUES = ["", " ", "0", "-1", "-0", "1.5", "1e400", "nan", "inf", "-inf", "NaN", "abc", "0x10", "1,", ",",
              "1,,2", "99999999999999999999999", "9" * 5000, "é", "日本語", "٣", "\u200b", "1 2", "--", "-",
              "/nonexistent/dir/out.png", "/proc/coda-fuzz/out.json", "/", ".", "out", "out.png", "out.json"]

# subcommand -> (a cheap valid command line, {flag: takes a value})
COMMANDS: dict[str, tuple[list[str], list[str]]] = {
    "models": (["models", "show", "gpt2"], ["--seq-len"]),
    "hardware": (["hardware", "gpus"], []),
    "accelerators": (["accelerators", "space", "--limit", "2", "--max-area-mm2", "50"],
                     ["--max-area-mm2", "--min-area-fraction", "--max-tdp-w", "--tech-nm", "--limit", "--sort"]),
    "predict": (["predict", "matmul", "--m", "64", "--k", "64", "--n", "64"],
                ["--device", "--dtype", "--m", "--k", "--n", "--batch", "--heads", "--kv-heads", "--q-len", "--kv-len",
                 "--head-dim", "--n-elements", "--rows", "--cols"]),
    "schedule": (["schedule", "gpt2", "--seq-len", "64", "--predictor", "roofline", "--time-limit", "0"],
                 ["--phase", "--design", "--layer", "--tp", "--seq-len", "--batch", "--solver", "--time-limit", "--gap",
                  "--predictor", "--trace", "--timeline"]),
    "train": (["train", "--model", "gpt2", "--cluster", "dgx-a100", "--devices", "8", "--global-batch", "8",
               "--seq-len", "128", "--tp", "1", "--pp", "1", "--micro-batch", "1"],
              ["--model", "--cluster", "--devices", "--device", "--global-batch", "--seq-len", "--dtype", "--software",
               "--tp", "--cp", "--ep", "--pp", "--dp", "--micro-batch", "--recompute", "--schedule", "--virtual-stages",
               "--zero", "--top"]),
    "serve": (["serve", "--model", "gpt2", "--cluster", "dgx-a100", "--devices", "8", "--batch", "1", "--prompt-len",
               "16", "--output-len", "4"],
              ["--model", "--cluster", "--devices", "--device", "--batch", "--prompt-len", "--output-len", "--tp",
               "--pp", "--ep", "--dtype", "--plot"]),
    "validate": (["validate"], []),
    "calibrate": (["calibrate", "--check"], []),
    "search": (["search", "--model", "gpt2", "--devices", "4", "--global-batch", "4", "--seq-len", "64", "--n-tc", "2",
                "--n-vc", "1", "--tc-rows", "64", "--tc-cols", "64", "--glb-mib", "32", "--min-area-fraction", "0",
                "--timer", "predictor", "--executor", "inline", "--max-designs", "1"],
               ["--devices", "--global-batch", "--seq-len", "--objective", "--n-tc", "--n-vc", "--tc-rows", "--tc-cols",
                "--glb-mib", "--hbm-gib", "--max-area-mm2", "--min-area-fraction", "--max-tdp-w", "--tp", "--pp",
                "--micro-batch", "--recompute", "--zero", "--max-designs", "--store", "--ilp-time-limit", "--workers",
                "--top", "--plot"]),
}

KNOWN_FAILURES: set[tuple[str, str]] = set()
"""(subcommand, flag) cases left out because they fail in files this change does not own; see the
report of issue #12."""


def call(argv: list[str]) -> tuple[int, str, float]:
    """(exit code, stderr, seconds) of one in-process `coda` call, in a scratch directory."""
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(argv)
                except SystemExit as done:  # --help, --version
                    code = done.code if isinstance(done.code, int) else 0
        finally:
            os.chdir(cwd)
    return code, err.getvalue(), time.perf_counter() - t0


def check(argv: list[str]) -> None:
    code, err, seconds = call(argv)
    lines = err.splitlines()
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("coda: error: "), (argv, err)
    assert seconds < MAX_CALL_S, (argv, seconds)


values = st.one_of(st.sampled_from(BAD_VALUES), st.text(max_size=12),
                   st.integers(min_value=-(10**30), max_value=10**30).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr))

SLOW = {"search"}
"""Subcommands whose valid runs take seconds: fuzzed by one test that draws (flag, value) pairs."""
CASES = [(name, flag) for name, (_, flags) in COMMANDS.items() for flag in flags
         if (name, flag) not in KNOWN_FAILURES and name not in SLOW]


@pytest.mark.parametrize("name, flag", CASES, ids=[f"{n} {f}" for n, f in CASES])
@settings(max_examples=6, **SETTINGS)
@given(value=values)
def test_bad_flag_values(name, flag, value):
    base, _ = COMMANDS[name]
    check([*base, flag, value])


@pytest.mark.parametrize("name", sorted(SLOW))
@settings(max_examples=12, **SETTINGS)
@given(data=st.data())
def test_bad_flag_values_of_slow_commands(name, data):
    base, flags = COMMANDS[name]
    flag = data.draw(st.sampled_from([f for f in flags if (name, f) not in KNOWN_FAILURES]))
    check([*base, flag, data.draw(values)])


@pytest.mark.parametrize("name", sorted(COMMANDS))
@settings(max_examples=6, **SETTINGS)
@given(value=values)
def test_bad_positional_or_extra_values(name, value):
    base, _ = COMMANDS[name]
    check([*base[:1], value] if name in ("models", "hardware", "validate", "accelerators") else [*base, value])


LLAMA = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
         "num_hidden_layers": 2, "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 512,
         "hidden_act": "silu", "tie_word_embeddings": False, "sliding_window": 128, "use_sliding_window": True,
         "max_window_layers": 1, "layer_types": ["sliding_attention", "full_attention"]}


def _mutations() -> st.SearchStrategy[bytes]:
    keys = sorted(LLAMA)
    retyped = st.sampled_from([None, True, 1.5, -3, 0, 10**30, 1e300, "12", [1, 2], {"a": 1}, "ü", float("nan")])
    edit = st.one_of(
        st.sampled_from(keys).map(lambda k: {kk: v for kk, v in LLAMA.items() if kk != k}),  # deleted
        st.tuples(st.sampled_from(keys), retyped).map(lambda kv: LLAMA | {kv[0]: kv[1]}),  # retyped
        st.sampled_from(keys).map(lambda k: LLAMA | {k: -LLAMA[k]} if isinstance(LLAMA[k], int)
                                  and not isinstance(LLAMA[k], bool) else LLAMA),  # negated
        st.sampled_from(keys).map(lambda k: LLAMA | {k: 10**12}),  # huge
    )
    text = edit.map(lambda d: json.dumps(d).encode())
    return st.one_of(
        text,
        st.tuples(text, st.integers(0, 300)).map(lambda t: t[0][:t[1]]),  # truncated
        st.binary(max_size=64),  # binary
        text.map(lambda b: b"[" + b + b"]"),  # an array
        text.map(lambda b: b.replace(b'"llama"', '"llamá"'.encode("latin-1"))),  # Latin-1
    )


@pytest.mark.parametrize("command", [["models", "show"], ["serve", "--batch", "1", "--prompt-len", "8",
                                                          "--output-len", "2", "--cluster", "dgx-a100", "--devices",
                                                          "1", "--model"]], ids=["models", "serve"])
@settings(max_examples=40, **SETTINGS)
@given(content=_mutations())
def test_mutated_config_files(command, content):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "config.json")
        with open(path, "wb") as f:
            f.write(content)
        check([*command, path])
