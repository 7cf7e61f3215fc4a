"""`coda serve`: a static batch (TTFT, TPOT, throughput, memory), or a simulation of serving under load.

    coda serve --model llama2-70b --cluster dgx-h100 --devices 8 --batch 64 --prompt-len 2048 \\
        --output-len 2048 --tp 2 --dtype fp8
    coda serve --model llama2-70b --cluster dgx-h100 --devices 8 --tp 4 --qps 8 \\
        --prompt-dist uniform:64:2048 --output-dist uniform:16:512 --scheduler sarathi --chunk 512 \\
        --duration 600 --slo-ttft-p99-s 2 --slo-tbt-p99-s 0.1 --plot serve.png

Static mode: tensor parallelism over `--tp` devices in each of `--pp` pipeline stages, or expert
parallelism over `--ep` devices for MoE models; the other devices are independent replicas
(`coda.evaluate.inference.inference` documents the model). `--trace`, `--qps` or `--concurrency`
selects the simulation (`coda.serving.simulate`; `add_simulation_flags` adds its flags). Every
flag is checked where it enters (`coda.cli._args`), the combinations before any work; a bad one is
one line `coda: error: ...` and exit code 2.

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
from coda.cli._args import PLOT_SUFFIXES, float_range, int_list, int_range, output_file, text
from coda.cli._output import print_json, print_table
from coda.cli.train import _cluster
from coda.errors import ConfigError
from coda.evaluate.inference import MAX_BATCH
from coda.models.config import MAX_SEQ_LEN
from coda.plotting import pyplot, save_figure
from coda.serving.deployment import MAX_BLOCK_TOKENS, ROUTERS
from coda.serving.metrics import SLO, Window
from coda.serving.report import percentile_table, sentence
from coda.serving.schedulers.base import MAX_SEQS, MAX_TOKENS, Preemption, SchedulerConfig, SchedulerKind
from coda.serving.trace import ARRIVALS, MAX_REQUESTS, Lengths, Trace
from coda.units import GiB

DTYPES = ("bf16", "fp16", "fp8")
LONG_CONTEXT_TOKENS = 2**17
"""Above this many tokens of context in a trace, the simulation evaluates iteration costs directly
(`IterationCost`, memoised) instead of tabulating them (`CostTable` grows with the longest context)."""


# -- the simulation (--trace, --qps, --concurrency) ---------------------------------------------

DEFAULT_DURATION_S = 600.0
MAX_QPS = 1e6
MAX_DURATION_S = 1e7
CLOSED_LOOP_REQUESTS_PER_CLIENT = 10
"""A closed loop's default request count per client (`--requests`)."""


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
    src.add_argument("--qps", type=float_range(0, MAX_QPS, lo_open=True, unit="requests/s"), default=None,
                     help="simulate generated arrivals at this rate, requests/s in (0, 1000000] (default: none, "
                          "static mode unless --trace or --concurrency)")
    g.add_argument("--duration", type=float_range(0, MAX_DURATION_S, lo_open=True, unit="s"), default=None,
                   help=f"seconds of arrivals: --qps generates round(qps x duration) requests; with --trace only "
                        f"requests arriving before it (default: {DEFAULT_DURATION_S:g} s with --qps, the whole trace)")
    g.add_argument("--prompt-dist", dest="prompt_dist", type=lengths_spec, default=None,
                   help="prompt lengths drawn from fixed:N, uniform:LO:HI, zipf:LO:HI:A or csv:PATH, tokens "
                        "(default: none, --prompt-len for every request)")
    g.add_argument("--output-dist", dest="output_dist", type=lengths_spec, default=None,
                   help="output lengths, as --prompt-dist (default: none, --output-len for every request)")
    g.add_argument("--arrival", choices=ARRIVALS, default=None,
                   help="arrival process of --qps: poisson, or gamma with --cv (default: poisson)")
    g.add_argument("--cv", type=float_range(0, 100, lo_open=True), default=None,
                   help="gamma arrivals' coefficient of variation, in (0, 100]; 1 is Poisson, more is burstier "
                        "(default: 1)")
    g.add_argument("--seed", type=int_range(0, 2**63 - 1), default=None,
                   help="seed of the generated trace, an integer >= 0 (default: 0)")
    g.add_argument("--concurrency", type=int_range(1, MAX_REQUESTS, " (clients)"), default=None,
                   help="simulate a closed loop of this many clients, each sending its next request when its last "
                        "one is answered (as genai-perf or `vllm bench serve --max-concurrency`); instead of --qps, "
                        "or with --trace for its lengths (default: none, open loop)")
    g.add_argument("--requests", type=int_range(1, MAX_REQUESTS, " (requests)"), default=None,
                   help=f"requests to simulate: generated ones with --qps or --concurrency, or the trace's first "
                        f"(default: round(qps x duration) with --qps, {CLOSED_LOOP_REQUESTS_PER_CLIENT} per client "
                        "with --concurrency, the whole trace)")
    g.add_argument("--scheduler", choices=[k.value for k in SchedulerKind], default=SchedulerKind.SARATHI.value,
                   help="batching policy: static, orca (iteration-level, whole prefills), vllm (paged KV, "
                        "preemption), sarathi (chunked prefills, decodes first) (default: sarathi)")
    g.add_argument("--chunk", type=int_range(1, MAX_TOKENS, " (tokens)"), default=512,
                   help=f"sarathi: token budget per iteration, decodes included, in [1, {MAX_TOKENS}] "
                        "(default: 512 tokens)")
    g.add_argument("--max-batch", dest="max_batch", type=int_range(1, MAX_SEQS, " (sequences)"), default=256,
                   help=f"most sequences in one iteration (static: the batch), in [1, {MAX_SEQS}] (default: 256)")
    g.add_argument("--max-tokens", dest="max_tokens", type=int_range(1, MAX_TOKENS, " (tokens)"),
                   default=4096, help=f"orca, vllm: most prompt tokens in one iteration, in [1, {MAX_TOKENS}] "
                                      "(default: 4096 tokens)")
    g.add_argument("--kv-block", dest="kv_block", type=int_range(1, MAX_BLOCK_TOKENS, " (tokens)"),
                   default=16, help=f"tokens per KV-cache block, in [1, {MAX_BLOCK_TOKENS}] (default: 16, vLLM's)")
    g.add_argument("--kv-dtype", dest="kv_dtype", choices=DTYPES, default=None,
                   help="KV-cache element type (default: --dtype)")
    g.add_argument("--replicas", type=int_range(1, MAX_DEVICES, " (replicas)"), default=None,
                   help="model replicas of tp x pp x ep devices each (default: as many as --devices holds)")
    g.add_argument("--router", choices=ROUTERS, default="round_robin",
                   help="how arrivals are spread over replicas (default: round_robin)")
    g.add_argument("--preemption", choices=[k.value for k in Preemption], default=Preemption.RECOMPUTE.value,
                   help="vllm, sarathi: recompute (re-prefill a preempted request later) or swap (its KV blocks go "
                        "to host memory over the GPU's PCIe link and back) (default: recompute)")
    g.add_argument("--swap-space", dest="swap_space", type=float_range(0, 1e6, unit="GiB"), default=4.0,
                   help="with --preemption swap: host memory per GPU for swapped KV blocks, GiB "
                        "(default: 4, vLLM's)")
    g.add_argument("--warmup-s", dest="warmup_s", type=float_range(0, MAX_DURATION_S, unit="s"), default=0.0,
                   help="leave out of the aggregates the requests arriving this long after the first, seconds "
                        "(default: 0)")
    g.add_argument("--cooldown-s", dest="cooldown_s", type=float_range(0, MAX_DURATION_S, unit="s"), default=0.0,
                   help="leave out of the aggregates the requests arriving this long before the last, seconds "
                        "(default: 0)")
    g.add_argument("--slo-ttft-p99-s", dest="slo_ttft_p99_s", type=float_range(0, 1e6, lo_open=True, unit="s"),
                   default=None,
                   help="SLO on the 99th percentile of time to first token, seconds; goodput counts requests "
                        "whose TTFT is within it (default: none)")
    g.add_argument("--slo-tbt-p99-s", dest="slo_tbt_p99_s", type=float_range(0, 1e6, lo_open=True, unit="s"),
                   default=None,
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


def _seed(args: argparse.Namespace) -> int:
    return 0 if args.seed is None else int(args.seed)


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
        n = CLOSED_LOOP_REQUESTS_PER_CLIENT * args.concurrency if args.requests is None else args.requests
        if n > MAX_REQUESTS:
            raise ConfigError(f"--concurrency {args.concurrency} x {CLOSED_LOOP_REQUESTS_PER_CLIENT} = {n} requests "
                              f"exceed {MAX_REQUESTS}; give --requests")
        return generate(n, 1.0, prompt, output, seed=_seed(args), model=cfg)
    if args.requests is not None and args.duration is not None:
        raise ConfigError(f"--requests {args.requests} and --duration {args.duration:g}: give one (the request count "
                          "of --qps is round(qps x duration))")
    duration = DEFAULT_DURATION_S if args.duration is None else args.duration
    n = max(1, int(round(args.qps * duration))) if args.requests is None else args.requests
    if n > MAX_REQUESTS:
        raise ConfigError(f"--qps {args.qps:g} x --duration {duration:g} s = {n} requests exceed {MAX_REQUESTS}; "
                          "shorten the duration")
    return generate(n, float(args.qps), prompt, output, arrival="poisson" if args.arrival is None else args.arrival,
                    cv=1.0 if args.cv is None else float(args.cv), seed=_seed(args), model=cfg)


def _sim_cluster(args: argparse.Namespace) -> Any:
    from coda.arch.clusters import cluster
    from coda.arch.gpus import gpu

    return cluster(args.cluster, args.devices, device=gpu(args.device) if getattr(args, "device", None) else None)


def run_simulation(args: argparse.Namespace) -> int:
    """Simulate what the flags describe and print the percentile table and the closing sentence
    (or JSON with `--json`); returns the exit code.

    Raises:
        ConfigError: flags that do not go together, a bad trace, a bad deployment.
        InfeasibleDesign: the model does not fit, or a request can never fit the KV cache.
    """
    from coda.models import get
    from coda.serving.costs import IterationCost
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
                            max_tokens=args.max_tokens, chunk=args.chunk, preemption=args.preemption,
                            swap_space_bytes=args.swap_space * GiB)
    dep = Deployment(cfg, _sim_cluster(args), tp=args.tp, pp=args.pp, ep=args.ep, replicas=args.replicas,
                     dtype=args.dtype, kv_dtype=args.kv_dtype, kv_block_tokens=args.kv_block, scheduler=sched,
                     router=args.router, cp=getattr(args, "cp", 1))
    if args.concurrency is not None:
        trace = Trace(np.zeros(len(trace)), trace.prompt_tokens, trace.output_tokens, source=trace.source)
    longest = int((trace.prompt_tokens + trace.output_tokens).max())
    cost = IterationCost(dep) if longest > LONG_CONTEXT_TOKENS else None  # a table that long costs more than it saves
    result = simulate(dep, trace, cost=cost, slo=slo, concurrency=args.concurrency)
    summary = result.summary(Window(warmup_s=args.warmup_s, cooldown_s=args.cooldown_s))
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
             ("preemptions", summary["preemptions"]), ("iterations", summary["iterations"]),
             ("requests measured (--warmup-s, --cooldown-s)", summary["requests_measured"])]
    print_table(pd.DataFrame(extra, columns=["throughput and load", "value"]))
    if args.plot:
        print(f"\nplot: {args.plot}")
    print()
    print(sentence(dep.describe(), len(trace), summary, slo))
    return 0



# -- the static mode ------------------------------------------------------------------------------



SWEEP_COLUMNS = {"batch": ("batch", 1), "fits": ("fits", 1), "ttft_s": ("TTFT_ms", 1e3), "tpot_s": ("TPOT_ms", 1e3),
                 "e2e_s": ("batch_latency_s", 1), "tokens_per_s_per_device": ("tokens_per_s_per_device", 1),
                 "tokens_per_s": ("tokens_per_s", 1), "mbu": ("decode_mbu", 1),
                 "kv_cache_bytes": ("kv_cache_GiB", 1 / GiB)}
"""Result field -> (sweep table column, display scale: s -> ms, bytes -> GiB)."""


def _title(r: Any, one_batch: bool = False) -> str:
    """What was served on what (from `InferenceResult.to_dict()`); `one_batch` adds the batch and
    its micro-batches."""
    micro = f" ({r['micro_batches']} micro-batches)" if one_batch else ""
    return (f"{r['model']} on {r['n_devices']} x {r['device']}, tp={r['tp']}"
            + (f", pp={r['pp']}{micro}" if r["pp"] > 1 else "") + (f", ep={r['ep']}" if r["ep"] > 1 else "")
            + (f", cp={r['cp']} ({r['ring']} ring)" if r.get("cp", 1) > 1 else "")
            + f", {r['dtype']}" + (f", batch {r['batch']}" if one_batch else "")
            + f", {r['prompt_len']} in / {r['output_len']} out")


def _plot(df: pd.DataFrame, path: str) -> None:
    plt = pyplot("--plot")
    ok = df[df["fits"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ok["tpot_s"] * 1e3, ok["tokens_per_s_per_device"], marker="o")
    for _, r in ok.iterrows():
        ax.annotate(f"b={r['batch']}", (r["tpot_s"] * 1e3, r["tokens_per_s_per_device"]), textcoords="offset points",
                    xytext=(4, -10), fontsize=8)
    ax.set_xlabel("TPOT (ms per output token)")
    ax.set_ylabel("generated tokens/s per device")
    ax.set_title(_title(df.iloc[0]), fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, "--plot")


def _sweep(args: argparse.Namespace, cfg: Any) -> int:
    from coda.evaluate.inference import inference_sweep

    df = inference_sweep(cfg, _cluster(args), args.tp, args.batch, args.prompt_len, args.output_len,
                         dtype=args.dtype, pp=args.pp, ep=args.ep, cp=args.cp)
    if args.plot:
        _plot(df, args.plot)
    if args.json:
        print_json(df.to_dict(orient="records"))
        return 0
    table = pd.DataFrame({name: df[c] if k == 1 else df[c] * k for c, (name, k) in SWEEP_COLUMNS.items()})
    print_table(table, title=f"{_title(df.iloc[0])}: static batches (fits = memory holds the batch)")
    print(f"largest batch that fits: {df['max_batch'].iloc[0]}")
    if args.plot:
        print(f"\nplot: {args.plot}")
    return 0


def _check_devices(args: argparse.Namespace) -> None:
    """tp*cp*pp*ep devices per replica divide --devices (before any work)."""
    sizes = {k: getattr(args, k, 1) or 1 for k in ("tp", "cp", "pp", "ep")}
    per = math.prod(sizes.values())
    if args.devices % per:
        used = "*".join(k for k, v in sizes.items() if v > 1 or k == "tp")
        vals = "*".join(str(v) for k, v in sizes.items() if v > 1 or k == "tp")
        raise ConfigError(f"--devices {args.devices}: a replica needs {used} = {vals} = {per} devices, which must "
                          f"divide --devices; use --devices {per * max(args.devices // per, 1)} or smaller widths")


def _run(args: argparse.Namespace) -> int:
    from coda.evaluate.inference import inference
    from coda.models import get

    _check_devices(args)
    if simulating(args):
        return run_simulation(args)
    for flag in ("batch", "prompt_len", "output_len"):
        if getattr(args, flag) is None:
            raise ConfigError(f"--{flag.replace('_', '-')} is required for a static batch (or give --trace, --qps "
                              "or --concurrency to simulate serving)")
    if args.plot:
        pyplot("--plot")  # matplotlib is there before the work
    cfg = get(args.model)
    if len(args.batch) > 1 or args.plot:
        return _sweep(args, cfg)
    r = inference(cfg, _cluster(args), args.tp, args.batch[0], args.prompt_len, args.output_len,
                  dtype=args.dtype, pp=args.pp, ep=args.ep, cp=args.cp)
    if args.json:
        print_json(r.to_dict())
        return 0
    perf = [("TTFT_ms", r.ttft_s * 1e3), ("TTFT_comm_ms", r.ttft_comm_s * 1e3), ("TPOT_ms", r.tpot_s * 1e3),
            ("TPOT_comm_ms", r.tpot_comm_s * 1e3), ("batch_latency_s", r.e2e_s),
            ("tokens_per_s", r.tokens_per_s), ("tokens_per_s_per_replica", r.tokens_per_s_per_replica),
            ("tokens_per_s_per_device", r.tokens_per_s_per_device), ("replicas", r.replicas), ("decode_mbu", r.mbu)]
    print_table(pd.DataFrame(perf, columns=["field", "value"]),
                title=_title(r.to_dict(), one_batch=True))
    print()
    mem = [("weights", r.weights_bytes), ("kv_cache", r.kv_cache_bytes), ("workspace", r.workspace_bytes),
           ("free", r.free_bytes), ("limit (HBM - reserve)", r.memory_limit_bytes)]
    print_table(pd.DataFrame([(k, v / GiB) for k, v in mem], columns=["memory per device", "GiB"]))
    print(f"largest batch that fits: {r.max_batch}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    devices = int_range(1, MAX_DEVICES, " (devices in the largest cluster modelled)")
    tokens = int_range(1, MAX_SEQ_LEN, " (tokens; the longest context modelled)")
    p = sub.add_parser("serve", help="serving: a static batch (TTFT, TPOT, tokens/s, memory), or a simulation of "
                       "requests under load (--trace, --qps or --concurrency)",
                       description="Evaluate static-batched inference of a model on a cluster, or simulate serving "
                                   "a request trace with iteration-level batching (docs/serving.md).")
    p.add_argument("--model", required=True, type=text("model"), help="preset name or config.json (required)")
    p.add_argument("--cluster", required=True, type=text("cluster"), help="cluster preset: dgx-a100, dgx-h100, "
                   "vidur-a100, vidur-h100 (`coda hardware clusters`) (required)")
    p.add_argument("--devices", type=devices, required=True, help="devices in the cluster: tp*pp per replica, the "
                   f"rest replicas; at most 2^20 = {MAX_DEVICES} (required)")
    p.add_argument("--device", type=text("device"), default=None,
                   help="replace the cluster's device: a GPU preset name (default: the cluster's)")
    p.add_argument("--batch", type=int_list(1, MAX_BATCH, " (sequences)"), default=None,
                   help="sequences served together; a list such as 1,8,32,128 prints the latency-throughput sweep "
                        "(required in the static mode; default: none)")
    p.add_argument("--prompt-len", dest="prompt_len", type=tokens, default=None,
                   help="input tokens per sequence (required in the static mode and with --qps unless --prompt-dist; "
                        "default: none)")
    p.add_argument("--output-len", dest="output_len", type=tokens, default=None,
                   help="generated tokens per sequence (required in the static mode and with --qps unless "
                        "--output-dist; default: none)")
    p.add_argument("--tp", type=devices, default=1, help="tensor-parallel width, devices (default: 1)")
    p.add_argument("--pp", type=devices, default=1, help="pipeline stages; the batch runs as min(pp, batch) "
                   "micro-batches (default: 1)")
    p.add_argument("--ep", type=devices, default=1, help="expert parallelism (MoE, with tp=pp=1): ep devices each "
                   "serve batch/ep sequences and hold E/ep experts (default: 1)")
    p.add_argument("--cp", type=devices, default=1, help="context parallelism for long prompts: cp groups of tp "
                   "devices each hold 1/cp of every sequence (ring-attention prefill, KV cache sharded for decode); "
                   "tp*cp*pp*ep must divide --devices (default: 1)")
    p.add_argument("--dtype", choices=DTYPES, default="bf16",
                   help="weights, activations and KV cache (default: bf16)")
    p.add_argument("--plot", metavar="OUT.png", type=output_file(PLOT_SUFFIXES), default=None,
                   help="write tokens/s per device against TPOT over the batches, or with --trace/--qps the latency "
                        "CDFs and batch size and KV use over time; needs matplotlib (default: none)")
    p.add_argument("--json", action="store_true", help="machine-readable output (default: off, tables)")
    add_simulation_flags(p)
    p.set_defaults(handler=_run)
