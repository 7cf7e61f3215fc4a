"""`coda models list` and `coda models show NAME_OR_CONFIG_JSON`."""

from __future__ import annotations

import argparse

import pandas as pd

from coda import models
from coda.cli._args import int_range, text
from coda.cli._output import print_json, print_table
from coda.models.config import MAX_SEQ_LEN
from coda.models.summary import summarize
from coda.units import fmt_bytes, fmt_count, fmt_si


def _list(args: argparse.Namespace) -> int:
    rows = []
    for name in models.list_presets():
        c = models.get(name)
        rows.append(dict(name=name, params=fmt_count(c.param_count()), layers=c.n_layers, hidden=c.hidden,
                         heads=c.n_heads, kv_heads=c.n_kv_heads, ffn=c.ffn_hidden, vocab=c.vocab_size,
                         max_seq=c.max_seq_len, mlp=c.mlp, experts=c.n_experts))
    df = pd.DataFrame(rows)
    if args.json:
        print_json(df.to_dict(orient="records"))
    else:
        print_table(df)
    return 0


def _show(args: argparse.Namespace) -> int:
    cfg = models.get(args.model)
    source = models.preset_source(cfg.name) if cfg.name in models.list_presets() else args.model
    info = summarize(cfg, args.seq_len, source)
    if args.json:
        print_json(info)
        return 0
    p, f, m = info["params"], info["flops_per_token"], info["memory_bytes"]
    print(f"{cfg.name}  (source: {source})")
    c = cfg
    print(f"  {c.n_layers} layers, hidden {c.hidden}, {c.n_heads} heads ({c.n_kv_heads} kv) of {c.head_dim}, "
          f"FFN {c.ffn_hidden} {c.mlp}, vocab {c.vocab_size}, {c.norm}, {c.position} positions, "
          f"{'causal' if c.causal else 'bidirectional'}"
          + (f", {c.n_experts} experts top-{c.experts_per_token}" if c.is_moe else "")
          + (f" + shared MLP {c.shared_ffn_hidden}" if c.shared_ffn_hidden else "")
          + (f", sliding window {c.sliding_window} in {c.n_layers - len(c.full_attention_layers)} of {c.n_layers} "
             "layers" if c.sliding_window else "")
          + (f", {len(c.dense_layers)} dense layers of FFN {c.dense_ffn_hidden}" if c.dense_layers else "")
          + (f", latent attention (c_kv {c.kv_lora_rank} + rope {c.qk_rope_head_dim}, c_q {c.q_lora_rank or '-'}, "
             f"v {c.v_head_dim})" if c.mla else ""))
    print(f"  parameters {fmt_count(p['total'])} ({p['total']:,}); active per token {fmt_count(p['active_per_token'])}")
    print(f"  GEMM FLOPs per token at seq {info['seq_len']}: training {fmt_si(f['training'], 'FLOP')}, "
          f"forward {fmt_si(f['forward'], 'FLOP')}, prefill {fmt_si(f['prefill'], 'FLOP')}, "
          f"decode {fmt_si(f['decode'], 'FLOP')}")
    print(f"  training memory (mixed-precision Adam, 16 B/param): weights {fmt_bytes(m['weights_bf16'])}, "
          f"gradients {fmt_bytes(m['gradients_bf16'])}, optimizer {fmt_bytes(m['adam_states_fp32'])}, "
          f"total {fmt_bytes(m['training_total'])}")
    layers = pd.DataFrame(info["layers"])
    layers["forward_flops"] = layers["forward_flops"].map(lambda v: fmt_si(v, "FLOP"))
    layers["param_bytes"] = layers["param_bytes"].map(fmt_bytes)
    print()
    print_table(layers, title="layer chain (forward, batch 1):")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="LLM presets and their sizes")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    lp = msub.add_parser("list", help="table of presets")
    lp.add_argument("--json", action="store_true", help="machine-readable output (default: off, a table)")
    lp.set_defaults(handler=_list)
    sp = msub.add_parser("show", help="parameters, FLOPs per token, memory and layers of one model")
    sp.add_argument("model", type=text("model"), help="preset name or path to a config.json (Hugging Face or coda)")
    sp.add_argument("--seq-len", type=int_range(1, MAX_SEQ_LEN, " (tokens; the longest context modelled)"),
                    default=None, help="sequence length in tokens (default: the model's max_seq_len)")
    sp.add_argument("--json", action="store_true",
                    help="machine-readable output, schema coda.models.summary/1 (default: off, text)")
    sp.set_defaults(handler=_show)
