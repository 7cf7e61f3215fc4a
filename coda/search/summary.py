"""The answer of a search in words: `SearchResult.summary()` and `SearchResult.shortfall()`.

    Best: 8 tensor cores of 128x64, 2 vector cores of 128 lanes, 32 MiB GLB, 32 GiB HBM at 1.2 TB/s,
    1.05 GHz (118 W, 98.4 mm2 at 22 nm) trains gpt2 at 1.19e6 tokens/s on 16 chips with tp=1 pp=1
    dp=16 mb=4 (recompute none, ZeRO-1), 629 tokens/s/W: 1.29x the TPUv4-like reference and
    1.94x / 1.98x the a100-sxm4-80gb / h100-sxm rows.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from coda.units import fmt_bytes, fmt_si

if TYPE_CHECKING:
    from coda.search.run import SearchResult

UNITS = {"tokens_per_s_per_w": "tokens/s/W", "tokens_per_s": "tokens/s"}
"""Units of each objective, as the sentence writes them."""


def number(x: float) -> str:
    """Three significant digits; plain between 0.01 and 1e4, else mantissa and exponent (``1.19e6``)."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0 or 0.01 <= abs(x) < 1e4:
        return f"{x:.3g}"
    exp = math.floor(math.log10(abs(x)))
    mant = x / 10**exp
    if round(abs(mant), 2) >= 10:  # 9.996e5 rounds to 10.0
        mant, exp = mant / 10, exp + 1
    return f"{mant:.3g}e{exp}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def design_words(row: pd.Series) -> str:
    """The main fields of a design row in words, with its TDP and area."""
    n_tc, n_vc = int(row["n_tc"]), int(row["n_vc"])
    return (f"{_plural(n_tc, 'tensor core')} of {int(row['tc_rows'])}x{int(row['tc_cols'])}, "
            f"{_plural(n_vc, 'vector core')} of {int(row['vc_lanes'])} lanes, {fmt_bytes(row['glb_bytes'])} GLB, "
            f"{fmt_bytes(row['hbm_bytes'])} HBM at {fmt_si(row['hbm_bw_bytes_per_s'], 'B/s')}, "
            f"{fmt_si(row['clock_hz'], 'Hz')} ({number(row['tdp_w'])} W, {number(row['area_mm2'])} mm2 at 22 nm)")


def plan_words(row: pd.Series) -> str:
    """The parallel plan of a row: ``tp=1 pp=1 dp=16 mb=4 (recompute none, ZeRO-1)``."""
    return (f"tp={int(row['tp'])} pp={int(row['pp'])} dp={int(row['dp'])} mb={int(row['micro_batch'])} "
            f"(recompute {row['recompute']}, ZeRO-{int(row['zero'])})")


def _ratios(best: pd.Series, reference: pd.Series, gpus: pd.DataFrame | None, objective: str,
            faithful: pd.Series | None = None) -> str:
    value = float(best[objective])
    if reference["status"] == "ok":
        parts = [f"{value / float(reference[objective]):.2f}x PHAZE's TPUv4-like reference"]
    else:
        parts = ["PHAZE's TPUv4-like reference fits under no plan"]
    if faithful is not None:
        parts.append(f"{value / float(faithful[objective]):.2f}x the faithful TPU v4" if faithful["status"] == "ok"
                     else "the faithful TPU v4 fits under no plan")
    if gpus is not None and len(gpus):
        ok = gpus[gpus["status"] == "ok"]
        if len(ok):
            ratios = " / ".join(f"{value / float(v):.2f}x" for v in ok[objective])
            parts.append(f"{ratios} the {' / '.join(map(str, ok['name']))} row{'s' if len(ok) > 1 else ''}")
        bad = gpus[gpus["status"] != "ok"]
        if len(bad):
            parts.append(f"no plan fits on {' / '.join(map(str, bad['name']))}")
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def summary(result: SearchResult, gpus: pd.DataFrame | None = None) -> str:
    """`SearchResult.summary` (module doc)."""
    objective, unit = result.objective, UNITS[result.objective]
    best = result.best
    if best is None:
        frame = result.frame
        reason = str(frame["reason"].iloc[0]) if len(frame) else "no design was visited"
        ref = result.reference
        ref_text = (f"the TPUv4-like reference reaches {number(ref[objective])} {unit}" if ref["status"] == "ok"
                    else "the TPUv4-like reference fits under no plan either")
        n = len(frame)
        which = "the only visited design" if n == 1 else f"all {n} visited designs"
        return (f"No design fits: {which} of {result.n_space} {'is' if n == 1 else 'are'} infeasible "
                f"(first: {reason}); {ref_text}.")
    if result.complete:
        lead = "Best"
    else:
        lead = (f"Best so far (not proven: max_designs stopped the search with "
                f"{_plural(result.n_unvisited, 'design')} unvisited)")
    model = result.model or "the model"
    where = _plural(result.n_devices, "chip") if result.n_devices else "the cluster"
    tps, tpsw = number(best["tokens_per_s"]), number(best["tokens_per_s_per_w"])
    if objective == "tokens_per_s_per_w":
        work = f"trains {model} at {tps} tokens/s on {where} with {plan_words(best)}, {tpsw} {unit}"
    else:
        work = f"trains {model} on {where} with {plan_words(best)} at {tps} {unit} ({tpsw} tokens/s/W)"
    ties = result.near_ties()["name"].iloc[1:].tolist()
    family = "" if not ties else (f" Within {result.tie_tol:.0%} of it: {', '.join(map(str, ties[:5]))}"
                                  f"{f' and {len(ties) - 5} more' if len(ties) > 5 else ''}.")
    ratios = _ratios(best, result.reference, gpus, objective, result.faithful_reference)
    return f"{lead}: {design_words(best)} {work}: {ratios}.{family}"


def shortfall(result: SearchResult, top: int) -> str | None:
    """Why `result.table(top)` lists fewer than `top` designs, or None when it lists `top`."""
    frame = result.frame
    n_ok = int((frame["status"] == "ok").sum()) if len(frame) else 0
    if n_ok >= top:
        return None
    why: list[Any] = []
    if result.n_pruned:
        why.append(f"{result.n_pruned} pruned by the bound (provably worse than the best by more than "
                   f"{result.tie_tol:.0%})")
    if result.n_infeasible:
        why.append(f"{result.n_infeasible} infeasible")
    if result.n_unvisited:
        why.append(f"{result.n_unvisited} not visited (max_designs)")
    if result.n_space == n_ok + result.n_pruned + result.n_infeasible + result.n_unvisited and not why:
        why.append("that is every design of the space")
    text = f"only {n_ok} feasible design{' was' if n_ok == 1 else 's were'} visited of {result.n_space}"
    return f"{text}: {', '.join(why)}" if why else text
