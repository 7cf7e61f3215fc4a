"""`coda serve --trace/--qps`: flags checked before work (one line, exit 2), the percentile table and
the closing sentence, JSON, the plot, and the closed loop.

The parser is built here as `coda/cli/serve.py` builds `serve` (its shared flags, with
--batch, --prompt-len and --output-len optional, plus `add_simulation_flags`), on a subparser of
`coda.cli._args.Parser`, so bad flags fail as they will in `coda serve`.
"""

import argparse
import json

import pytest

from coda.cli._args import PLOT_SUFFIXES, Parser, int_list, int_range, output_file, text
from coda.cli.serve import add_simulation_flags, lengths_spec, run_simulation, simulating
from coda.errors import CodaError

SMALL = ["serve", "--model", "llama2-7b", "--cluster", "dgx-h100", "--devices", "1"]


def _parser() -> argparse.ArgumentParser:
    root = Parser(prog="coda")
    sub = root.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--model", required=True, type=text("model"))
    p.add_argument("--cluster", required=True, type=text("cluster"))
    p.add_argument("--devices", type=int_range(1, 2**20), required=True)
    p.add_argument("--device", type=text("device"), default=None)
    p.add_argument("--batch", type=int_list(1, 2**20), default=None)
    p.add_argument("--prompt-len", dest="prompt_len", type=int_range(1, 2**24), default=None)
    p.add_argument("--output-len", dest="output_len", type=int_range(1, 2**24), default=None)
    p.add_argument("--tp", type=int_range(1, 2**20), default=1)
    p.add_argument("--pp", type=int_range(1, 2**20), default=1)
    p.add_argument("--ep", type=int_range(1, 2**20), default=1)
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp8"), default="bf16")
    p.add_argument("--plot", metavar="OUT.png", type=output_file(PLOT_SUFFIXES), default=None)
    p.add_argument("--json", action="store_true")
    add_simulation_flags(p)
    return root


def _run(argv, capsys):
    """(exit code, stdout, stderr) as `coda.cli.main` would give them."""
    try:
        args = _parser().parse_args(argv)
        code = run_simulation(args)
    except SystemExit as done:
        code = done.code
    except CodaError as err:
        print(f"coda: error: {' '.join(str(err).split())}", file=__import__("sys").stderr)
        code = 2
    out = capsys.readouterr()
    return code, out.out, out.err


def test_simulating_selects_the_mode():
    p = _parser()
    assert simulating(p.parse_args(SMALL + ["--qps", "2", "--prompt-len", "100", "--output-len", "10"]))
    assert simulating(p.parse_args(SMALL + ["--concurrency", "2", "--prompt-len", "100", "--output-len", "10"]))
    assert not simulating(p.parse_args(SMALL + ["--batch", "8", "--prompt-len", "100", "--output-len", "10"]))


def test_qps_prints_table_and_sentence(capsys):
    code, out, err = _run(SMALL + ["--qps", "4", "--duration", "20", "--prompt-dist", "uniform:32:512",
                                   "--output-dist", "uniform:8:64", "--scheduler", "sarathi", "--chunk", "256",
                                   "--slo-ttft-p99-s", "5", "--slo-tbt-p99-s", "0.5"], capsys)
    assert code == 0, err
    assert "TTFT" in out and "P99" in out and "end-to-end" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("llama2-7b on 1 x h100") and last.endswith(".")
    assert "served 80 requests" in last and "P99 TTFT" in last and "P99 TBT" in last
    assert "meets the SLO" in last and "goodput" in last


def test_missed_slo_is_said(capsys):
    code, out, _ = _run(SMALL + ["--qps", "4", "--duration", "10", "--prompt-len", "256", "--output-len", "16",
                                 "--slo-ttft-p99-s", "1e-6"], capsys)
    assert code == 0
    assert "misses the SLO" in out.strip().splitlines()[-1]


def test_json_and_plot(tmp_path, capsys):
    plot = tmp_path / "serve.png"
    code, out, err = _run(SMALL + ["--qps", "3", "--duration", "10", "--prompt-len", "200", "--output-len", "20",
                                   "--json", "--plot", str(plot), "--seed", "3"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["requests"] == 30 and data["summary"]["ttft_p99_s"] > 0
    assert plot.stat().st_size > 10_000


def test_window_and_swap_flags(capsys):
    """--warmup-s/--cooldown-s leave requests out of the aggregates (not out of the run); --preemption swap
    with nothing preempted gives the recompute run's numbers."""
    base = SMALL + ["--qps", "3", "--duration", "20", "--prompt-len", "200", "--output-len", "20", "--json",
                    "--scheduler", "vllm"]
    runs = {}
    for extra in ([], ["--warmup-s", "5", "--cooldown-s", "5"], ["--preemption", "swap", "--swap-space", "1"]):
        code, out, err = _run(base + extra, capsys)
        assert code == 0, err
        runs[" ".join(extra)] = json.loads(out)["summary"]
    everything, window, swap = runs.values()
    assert everything["requests_measured"] == 60
    assert 0 < window["requests_measured"] < 60  # arrivals in [first + 5 s, last - 5 s] only
    assert swap == everything  # nothing was preempted, so swap changes nothing


def test_trace_file_and_duration(tmp_path, capsys):
    tr = tmp_path / "t.csv"
    tr.write_text("arrival_s,prompt_tokens,output_tokens\n0,100,5\n0.5,200,7\n3.0,50,3\n")
    code, out, err = _run(SMALL + ["--trace", str(tr), "--duration", "1", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["requests"] == 2


def test_closed_loop(capsys):
    code, out, err = _run(SMALL + ["--concurrency", "3", "--prompt-len", "300", "--output-len", "10", "--json"],
                          capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["concurrency"] == 3 and data["requests"] == 30  # 10 per client by default
    code, out, err = _run(SMALL + ["--concurrency", "2", "--requests", "7", "--prompt-dist", "uniform:10:90",
                                   "--output-len", "4", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["requests"] == 7


@pytest.mark.parametrize("extra,needle", [
    (["--qps", "0", "--prompt-len", "1", "--output-len", "1"], "--qps: qps='0' is outside (0, 1e+06] requests/s"),
    (["--qps", "nan"], "--qps: qps='nan' is not a finite number"),
    (["--qps", "1", "--trace", "x.csv"], "not allowed with argument"),
    (["--qps", "1", "--prompt-dist", "uniform:5"], "is not a length distribution"),
    (["--qps", "1", "--prompt-dist", "uniform:50:5"], "HI=5 is below LO=50"),
    (["--qps", "1", "--prompt-dist", "zipf:1:10:-1"], "Zipf exponent"),
    (["--qps", "1", "--prompt-dist", "csv:/no/such.csv"], "no such file"),
    (["--qps", "1", "--chunk", "0"], "--chunk: chunk='0' is outside [1, 2^20"),
    (["--qps", "1", "--scheduler", "fifo"], "invalid choice"),
    (["--qps", "1", "--plot", "/no/dir/x.png"], "does not exist"),
    (["--qps", "1", "--plot", "out.txt"], "image suffix"),
])
def test_bad_flags_fail_at_parse_time(capsys, extra, needle):
    code, _, err = _run(SMALL + extra, capsys)
    assert code == 2
    assert err.startswith("coda: error:") and err.count("\n") == 1
    assert needle in err


@pytest.mark.parametrize("extra,needle", [
    (["--qps", "1", "--output-len", "4"], "--qps needs --prompt-len N or --prompt-dist"),
    (["--qps", "1", "--prompt-len", "4", "--prompt-dist", "fixed:4", "--output-len", "4"], "give one"),
    (["--qps", "1", "--batch", "8", "--prompt-len", "4", "--output-len", "4"], "--batch is the static mode's"),
    (["--qps", "1", "--prompt-len", "4", "--output-len", "4", "--cv", "2"], "add --arrival gamma"),
    (["--trace", "/no/such.csv"], "no such file"),
    (["--qps", "1", "--concurrency", "4", "--prompt-len", "4", "--output-len", "4"], "give one"),
    (["--concurrency", "4", "--duration", "9", "--prompt-len", "4", "--output-len", "4"], "bound it with --requests"),
    (["--qps", "1", "--requests", "4", "--duration", "9", "--prompt-len", "4", "--output-len", "4"], "give one"),
    (["--qps", "1", "--prompt-len", "5000", "--output-len", "4"], "exceeds llama2-7b's context"),
    (["--qps", "1", "--prompt-len", "4", "--output-len", "4", "--tp", "3"], "tp"),
    (["--qps", "1", "--prompt-len", "4", "--output-len", "4", "--replicas", "2"], "replicas=2"),
])
def test_bad_combinations_are_one_line_before_work(capsys, extra, needle):
    code, out, err = _run(SMALL + extra, capsys)
    assert code == 2 and out == ""
    assert err.startswith("coda: error:") and err.count("\n") == 1
    assert needle in err


def test_lengths_spec_kinds():
    assert lengths_spec("fixed:7").lo == 7
    u = lengths_spec("uniform:3:9")
    assert (u.kind, u.lo, u.hi) == ("uniform", 3, 9)
    z = lengths_spec("zipf:1:100:1.5")
    assert (z.kind, z.a) == ("zipf", 1.5)
    with pytest.raises(argparse.ArgumentTypeError):
        lengths_spec("normal:3:4")


def test_every_flag_help_names_its_default():
    p = _parser()
    serve = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices["serve"]
    group = next(g for g in serve._action_groups if g.title.startswith("serving simulation"))
    for action in group._group_actions:
        assert "default" in (action.help or ""), action.dest
