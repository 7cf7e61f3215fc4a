"""`coda serve --trace FILE | --qps R | --concurrency N ...`: the serving simulation from the shell.

    coda serve --model llama2-70b --cluster dgx-h100 --devices 8 --tp 4 --qps 8 \\
        --prompt-dist uniform:64:2048 --output-dist uniform:16:512 --scheduler sarathi --chunk 512 \\
        --duration 600 --slo-ttft-p99-s 2 --slo-tbt-p99-s 0.1 --plot serve.png

`coda serve` keeps its static mode; `--trace`, `--qps` or `--concurrency` selects this one. `add_simulation_flags`
adds the simulation's flags to the `serve` parser (which already has --model, --cluster,
--devices, --device, --tp, --pp, --ep, --dtype, --prompt-len, --output-len, --plot and --json);
`simulating(args)` says whether to run `run_simulation(args)`. Every flag is checked where it
enters (its `type=`), the combinations before any work, and `--plot` for writing at parse time;
a bad one is one line `coda: error: ...` and exit code 2.

Lengths: `--prompt-len N` is a fixed length; `--prompt-dist` draws them instead: `fixed:N`,
`uniform:LO:HI` (integers LO..HI), `zipf:LO:HI:A` (LO + k - 1 with P(k) ~ k^-A) or `csv:PATH`
(resampled from a one-column CSV of lengths). The same for `--output-len` / `--output-dist`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.clusters import MAX_DEVICES
from coda.errors import ConfigError
from coda.models.config import MAX_SEQ_LEN
from coda.serving.deployment import MAX_BLOCK_TOKENS, ROUTERS
from coda.serving.metrics import PERCENTILES, SLO
from coda.serving.schedulers.base import MAX_SEQS, MAX_TOKENS, SchedulerConfig, SchedulerKind
from coda.serving.trace import ARRIVALS, MAX_REQUESTS, Lengths, Trace

DEFAULT_DURATION_S = 600.0
MAX_QPS = 1e6
MAX_DURATION_S = 1e7
DTYPES = ("bf16", "fp16", "fp8")
CLOSED_LOOP_REQUESTS_PER_CLIENT = 10
"""A closed loop's default request count per client (`--requests`)."""


def _show(v: float) -> str:
    """`1048576` rather than `1.04858e+06` for a whole bound; `0.5` as it is."""
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _number(lo: float, hi: float, unit: str, integer: bool = False, lo_open: bool = True) -> Any:
    """A `type=` for a finite number in (lo, hi] (or [lo, hi]), message naming the value and range."""
    span = f"{'(' if lo_open else '['}{_show(lo)}, {_show(hi)}] {unit}".rstrip()

    def parse(text: str) -> float | int:
        try:
            v = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if integer else 'a number'}; give one "
                                             f"in {span}") from None
        if not math.isfinite(v) or v > hi or v < lo or (lo_open and v == lo):
            raise argparse.ArgumentTypeError(f"{text!r} is outside {span}")
        return v

    parse.__name__ = "number"
    return parse


def lengths_spec(text: str) -> Lengths:
    """Parse `fixed:N`, `uniform:LO:HI`, `zipf:LO:HI:A` or `csv:PATH` (module docstring)."""
    kind, _, rest = text.partition(":")
    kind = kind.strip().lower()
    parts = rest.split(":") if rest else []
    want = {"fixed": 1, "uniform": 2, "zipf": 3}
    form = "fixed:N, uniform:LO:HI, zipf:LO:HI:A or csv:PATH"
    if kind == "csv":
        if not rest.strip():
            raise argparse.ArgumentTypeError(f"{text!r}: csv needs a path, csv:lengths.csv")
        if not Path(rest).is_file():
            raise argparse.ArgumentTypeError(f"{text!r}: no such file {rest!r}")
        return Lengths("csv", path=rest)
    if kind not in want or len(parts) != want[kind]:
        raise argparse.ArgumentTypeError(f"{text!r} is not a length distribution; give {form} (tokens)")
    try:
        ints = [int(p) for p in parts[:2]]
        a = float(parts[2]) if kind == "zipf" else 1.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: lengths are whole numbers of tokens and A a number; give "
                                         f"{form}") from None
    for v in ints:
        if not 1 <= v <= MAX_SEQ_LEN:
            raise argparse.ArgumentTypeError(f"{text!r}: length {v} is outside [1, {MAX_SEQ_LEN}] tokens")
    if len(ints) == 2 and ints[1] < ints[0]:
        raise argparse.ArgumentTypeError(f"{text!r}: HI={ints[1]} is below LO={ints[0]}")
    if kind == "zipf" and not (math.isfinite(a) and a > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: the Zipf exponent A={parts[2]} must be a finite number > 0")
    try:
        return Lengths(kind, ints[0], ints[-1], a)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None


lengths_spec.__name__ = "length distribution"


def add_simulation_flags(parser: argparse.ArgumentParser) -> None:
    """Add the simulation's flags to `parser` (the `serve` subcommand's; module docstring)."""
    g = parser.add_argument_group("serving simulation (selected by --trace, --qps or --concurrency)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--trace", metavar="FILE", default=None,
                     help="simulate this trace: a CSV or JSON of arrival_s, prompt_tokens, output_tokens per request "
                          "(default: none, static mode unless --qps or --concurrency)")
    src.add_argument("--qps", type=_number(0, MAX_QPS, "requests/s"), default=None,
                     help="simulate generated arrivals at this rate, requests/s in (0, 1000000] (default: none, "
                          "static mode unless --trace or --concurrency)")
    g.add_argument("--duration", type=_number(0, MAX_DURATION_S, "s"), default=None,
                   help=f"seconds of arrivals: --qps generates round(qps x duration) requests; with --trace only "
                        f"requests arriving before it (default: {DEFAULT_DURATION_S:g} s with --qps, the whole trace)")
    g.add_argument("--prompt-dist", dest="prompt_dist", type=lengths_spec, default=None,
                   help="prompt lengths drawn from fixed:N, uniform:LO:HI, zipf:LO:HI:A or csv:PATH, tokens "
                        "(default: none, --prompt-len for every request)")
    g.add_argument("--output-dist", dest="output_dist", type=lengths_spec, default=None,
                   help="output lengths, as --prompt-dist (default: none, --output-len for every request)")
    g.add_argument("--arrival", choices=ARRIVALS, default=None,
                   help="arrival process of --qps: poisson, or gamma with --cv (default: poisson)")
    g.add_argument("--cv", type=_number(0, 100, "(coefficient of variation of the gaps)"), default=None,
                   help="gamma arrivals' coefficient of variation, in (0, 100]; 1 is Poisson, more is burstier "
                        "(default: 1)")
    g.add_argument("--seed", type=_number(0, 2**63 - 1, "", integer=True, lo_open=False), default=None,
                   help="seed of the generated trace, an integer >= 0 (default: 0)")
    g.add_argument("--concurrency", type=_number(0, MAX_REQUESTS, "clients", integer=True), default=None,
                   help="simulate a closed loop of this many clients, each sending its next request when its last "
                        "one is answered (as genai-perf or `vllm bench serve --max-concurrency`); instead of --qps, "
                        "or with --trace for its lengths (default: none, open loop)")
    g.add_argument("--requests", type=_number(0, MAX_REQUESTS, "requests", integer=True), default=None,
                   help=f"requests to simulate: generated ones with --qps or --concurrency, or the trace's first "
                        f"(default: round(qps x duration) with --qps, {CLOSED_LOOP_REQUESTS_PER_CLIENT} per client "
                        "with --concurrency, the whole trace)")
    g.add_argument("--scheduler", choices=[k.value for k in SchedulerKind], default=SchedulerKind.SARATHI.value,
                   help="batching policy: static, orca (iteration-level, whole prefills), vllm (paged KV, "
                        "preemption), sarathi (chunked prefills, decodes first) (default: sarathi)")
    g.add_argument("--chunk", type=_number(0, MAX_TOKENS, "tokens", integer=True), default=512,
                   help=f"sarathi: token budget per iteration, decodes included, in [1, {MAX_TOKENS}] "
                        "(default: 512 tokens)")
    g.add_argument("--max-batch", dest="max_batch", type=_number(0, MAX_SEQS, "sequences", integer=True), default=256,
                   help=f"most sequences in one iteration (static: the batch), in [1, {MAX_SEQS}] (default: 256)")
    g.add_argument("--max-tokens", dest="max_tokens", type=_number(0, MAX_TOKENS, "tokens", integer=True),
                   default=4096, help=f"orca, vllm: most prompt tokens in one iteration, in [1, {MAX_TOKENS}] "
                                      "(default: 4096 tokens)")
    g.add_argument("--kv-block", dest="kv_block", type=_number(0, MAX_BLOCK_TOKENS, "tokens", integer=True),
                   default=16, help=f"tokens per KV-cache block, in [1, {MAX_BLOCK_TOKENS}] (default: 16, vLLM's)")
    g.add_argument("--kv-dtype", dest="kv_dtype", choices=DTYPES, default=None,
                   help="KV-cache element type (default: --dtype)")
    g.add_argument("--replicas", type=_number(0, MAX_DEVICES, "replicas", integer=True), default=None,
                   help="model replicas of tp x pp x ep devices each (default: as many as --devices holds)")
    g.add_argument("--router", choices=ROUTERS, default="round_robin",
                   help="how arrivals are spread over replicas (default: round_robin)")
    g.add_argument("--slo-ttft-p99-s", dest="slo_ttft_p99_s", type=_number(0, 1e6, "s"), default=None,
                   help="SLO on the 99th percentile of time to first token, seconds; goodput counts requests "
                        "whose TTFT is within it (default: none)")
    g.add_argument("--slo-tbt-p99-s", dest="slo_tbt_p99_s", type=_number(0, 1e6, "s"), default=None,
                   help="SLO on the 99th percentile of the time between tokens, seconds; goodput counts requests "
                        "whose mean time per output token is within it (default: none)")


def simulating(args: argparse.Namespace) -> bool:
    """Whether the parsed `serve` flags ask for the simulation (`--trace`, `--qps` or `--concurrency`)."""
    return any(getattr(args, k, None) is not None for k in ("trace", "qps", "concurrency"))


def _refuse(args: argparse.Namespace, dests: tuple[str, ...], why: str) -> None:
    for d in dests:
        if getattr(args, d, None) is not None:
            raise ConfigError(f"--{d.replace('_', '-')}: {why}")


def _lengths(args: argparse.Namespace, which: str) -> Lengths:
    fixed, dist = getattr(args, f"{which}_len", None), getattr(args, f"{which}_dist", None)
    if fixed is not None and dist is not None:
        raise ConfigError(f"--{which}-len {fixed} and --{which}-dist: give one (a fixed length or a distribution)")
    if dist is not None:
        return dist
    if fixed is None:
        raise ConfigError(f"--qps needs --{which}-len N or --{which}-dist (e.g. uniform:64:2048), tokens")
    return Lengths("fixed", int(fixed))


def _trace(args: argparse.Namespace, cfg: Any) -> Trace:
    from coda.serving.trace import generate, load_trace

    if args.trace is not None:
        _refuse(args, ("prompt_len", "output_len", "prompt_dist", "output_dist", "arrival", "cv", "seed"),
                "the trace gives the lengths and arrivals; leave it out with --trace")
        tr = load_trace(args.trace, cfg)
        if args.requests is not None:
            tr = Trace(tr.arrival_s[:args.requests], tr.prompt_tokens[:args.requests],
                       tr.output_tokens[:args.requests], source=tr.source)
        if args.duration is not None:
            keep = tr.arrival_s < args.duration
            if not keep.any():
                raise ConfigError(f"--duration {args.duration:g}: no request of {args.trace} arrives before it (the "
                                  f"first arrives at {tr.arrival_s[0]:g} s); give a longer duration")
            tr = Trace(tr.arrival_s[keep], tr.prompt_tokens[keep], tr.output_tokens[keep], source=tr.source)
        return tr
    prompt, output = _lengths(args, "prompt"), _lengths(args, "output")
    if args.cv is not None and args.arrival != "gamma":
        raise ConfigError(f"--cv {args.cv:g} shapes gamma arrivals; add --arrival gamma or leave --cv out")
    if args.qps is None:  # a closed loop: the arrival times come from the loop
        _refuse(args, ("duration", "arrival", "cv"), "a closed loop (--concurrency) sets its own arrivals; bound "
                "it with --requests")
        n = args.requests or CLOSED_LOOP_REQUESTS_PER_CLIENT * args.concurrency
        if n > MAX_REQUESTS:
            raise ConfigError(f"--concurrency {args.concurrency} x {CLOSED_LOOP_REQUESTS_PER_CLIENT} = {n} requests "
                              f"exceed {MAX_REQUESTS}; give --requests")
        return generate(n, 1.0, prompt, output, seed=args.seed or 0, model=cfg)
    if args.requests is not None and args.duration is not None:
        raise ConfigError(f"--requests {args.requests} and --duration {args.duration:g}: give one (the request count "
                          "of --qps is round(qps x duration))")
    duration = DEFAULT_DURATION_S if args.duration is None else args.duration
    n = args.requests or max(1, int(round(args.qps * duration)))
    if n > MAX_REQUESTS:
        raise ConfigError(f"--qps {args.qps:g} x --duration {duration:g} s = {n} requests exceed {MAX_REQUESTS}; "
                          "shorten the duration")
    return generate(n, float(args.qps), prompt, output, arrival=args.arrival or "poisson",
                    cv=1.0 if args.cv is None else float(args.cv), seed=args.seed or 0, model=cfg)


def _cluster(args: argparse.Namespace) -> Any:
    from coda.arch.clusters import cluster
    from coda.arch.gpus import gpu

    return cluster(args.cluster, args.devices, device=gpu(args.device) if getattr(args, "device", None) else None)


def percentile_table(summary: dict[str, float]) -> pd.DataFrame:
    """TTFT, TBT, end-to-end latency and queueing at P50/P90/P99, milliseconds."""
    rows = []
    for key, name in (("ttft", "TTFT"), ("tbt", "TBT"), ("e2e", "end-to-end"), ("queue", "queueing")):
        rows.append({"latency_ms": name, **{f"P{p}": summary[f"{key}_p{p}_s"] * 1e3 for p in PERCENTILES}})
    return pd.DataFrame(rows)


def sentence(name: str, n: int, summary: dict[str, float], slo: SLO | None) -> str:
    """The closing sentence: throughput, P99 TTFT and TBT, and the SLO's verdict and goodput."""
    s = summary
    text = (f"{name} served {n} requests at {s['requests_per_s']:.3g} requests/s: {s['tokens_per_s']:.0f} output "
            f"tokens/s ({s['tokens_per_s_per_device']:.0f} per device), P99 TTFT {s['ttft_p99_s']:.3g} s, P99 TBT "
            f"{s['tbt_p99_s'] * 1e3:.3g} ms")
    if slo is not None:
        targets = [f"P99 TTFT <= {slo.ttft_p99_s:g} s" if slo.ttft_p99_s is not None else "",
                   f"P99 TBT <= {slo.tbt_p99_s * 1e3:g} ms" if slo.tbt_p99_s is not None else ""]
        verdict = "meets" if s["slo_met"] else "misses"
        text += (f"; {verdict} the SLO ({', '.join(t for t in targets if t)}); goodput "
                 f"{s['goodput_requests_per_s']:.3g} requests/s ({100 * s['slo_attainment']:.1f}% of requests "
                 "within their TTFT and time-per-token targets)")
    return text + "."


def run_simulation(args: argparse.Namespace) -> int:
    """Simulate what the flags describe and print the percentile table and the closing sentence
    (or JSON with `--json`); returns the exit code.

    Raises:
        ConfigError: flags that do not go together, a bad trace, a bad deployment.
        InfeasibleDesign: the model does not fit, or a request can never fit the KV cache.
    """
    from coda.cli._output import print_json, print_table
    from coda.models import get
    from coda.serving.deployment import Deployment
    from coda.serving.simulate import simulate

    if getattr(args, "batch", None) is not None:
        raise ConfigError("--batch is the static mode's; the simulation batches by --scheduler (bound it with "
                          "--max-batch) -- leave --batch out with --trace or --qps")
    if args.concurrency is not None and args.qps is not None:
        raise ConfigError(f"--qps {args.qps:g} and --concurrency {args.concurrency}: a closed loop of clients sets "
                          "its own arrival rate; give one")
    if args.plot:
        from coda.plotting import pyplot

        pyplot("--plot")  # matplotlib is there before the work
    slo = None
    if args.slo_ttft_p99_s is not None or args.slo_tbt_p99_s is not None:
        slo = SLO(ttft_s=args.slo_ttft_p99_s, tpot_s=args.slo_tbt_p99_s, ttft_p99_s=args.slo_ttft_p99_s,
                  tbt_p99_s=args.slo_tbt_p99_s)
    cfg = get(args.model)
    trace = _trace(args, cfg)
    sched = SchedulerConfig(kind=SchedulerKind.from_str(args.scheduler), max_batch=args.max_batch,
                            max_tokens=args.max_tokens, chunk=args.chunk)
    dep = Deployment(cfg, _cluster(args), tp=args.tp, pp=args.pp, ep=args.ep, replicas=args.replicas,
                     dtype=args.dtype, kv_dtype=args.kv_dtype, kv_block_tokens=args.kv_block, scheduler=sched,
                     router=args.router)
    if args.concurrency is not None:
        trace = Trace(np.zeros(len(trace)), trace.prompt_tokens, trace.output_tokens, source=trace.source)
    result = simulate(dep, trace, slo=slo, concurrency=args.concurrency)
    summary = result.summary()
    if args.plot:
        from coda.serving.plots import plot_result

        plot_result(result, args.plot)
    if args.json:
        print_json({"deployment": dep.describe(), "requests": len(trace), "trace": trace.source,
                    "concurrency": args.concurrency, "kv_blocks": result.kv_blocks, "summary": summary})
        return 0
    load = (f"{args.concurrency} closed-loop clients" if args.concurrency is not None else trace.source)
    print_table(percentile_table(summary), title=f"{dep.describe()}; {len(trace)} requests ({load})")
    print()
    extra = [("requests/s", summary["requests_per_s"]), ("output tokens/s", summary["tokens_per_s"]),
             ("output tokens/s per device", summary["tokens_per_s_per_device"]),
             ("output tokens/s per watt (TDP)", summary["tokens_per_s_per_watt"]),
             ("mean TPOT (ms)", summary["tpot_mean_s"] * 1e3), ("mean batch (sequences)", summary["batch_mean"]),
             ("mean KV use", summary["kv_utilisation_mean"]), ("peak KV use", summary["kv_utilisation_max"]),
             ("preemptions", summary["preemptions"]), ("iterations", summary["iterations"])]
    print_table(pd.DataFrame(extra, columns=["throughput and load", "value"]))
    if args.plot:
        print(f"\nplot: {args.plot}")
    print()
    print(sentence(dep.describe(), len(trace), summary, slo))
    return 0


__all__ = ["add_simulation_flags", "lengths_spec", "percentile_table", "run_simulation", "sentence", "simulating"]
