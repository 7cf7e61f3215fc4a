"""Serving results for people: the percentile table and the closing sentence of a simulation."""

from __future__ import annotations

import pandas as pd

from coda.serving.metrics import PERCENTILES, SLO


def percentile_table(summary: dict[str, float]) -> pd.DataFrame:
    """TTFT, TBT, end-to-end latency and queueing at P50/P90/P99, milliseconds."""
    rows = []
    for key, name in (("ttft", "TTFT"), ("tbt", "TBT"), ("e2e", "end-to-end"), ("queue", "queueing")):
        rows.append({"latency_ms": name, **{f"P{p}": summary[f"{key}_p{p}_s"] * 1e3 for p in PERCENTILES}})
    return pd.DataFrame(rows)


def sentence(name: str, n: int, summary: dict[str, float], slo: SLO | None) -> str:
    """The closing sentence: throughput, P99 TTFT and TBT, preemptions if any, and the SLO's verdict and goodput."""
    s = summary
    text = (f"{name} served {n} requests at {s['requests_per_s']:.3g} requests/s: {s['tokens_per_s']:.0f} output "
            f"tokens/s ({s['tokens_per_s_per_device']:.0f} per device), P99 TTFT {s['ttft_p99_s']:.3g} s, P99 TBT "
            f"{s['tbt_p99_s'] * 1e3:.3g} ms")
    if s.get("preemptions", 0) > 0:
        swapped = s.get("swapped_blocks", 0)
        how = f"{swapped:.0f} KV block transfers to and from host memory" if swapped > 0 else "by recomputation"
        text += f"; {s['preemptions']:.0f} preemptions ({how})"
    if slo is not None:
        targets = [f"P99 TTFT <= {slo.ttft_p99_s:g} s" if slo.ttft_p99_s is not None else "",
                   f"P99 TBT <= {slo.tbt_p99_s * 1e3:g} ms" if slo.tbt_p99_s is not None else ""]
        verdict = "meets" if s["slo_met"] else "misses"
        text += (f"; {verdict} the SLO ({', '.join(t for t in targets if t)}); goodput "
                 f"{s['goodput_requests_per_s']:.3g} requests/s ({100 * s['slo_attainment']:.1f}% of requests "
                 "within their TTFT and time-per-token targets)")
    return text + "."


__all__ = ["percentile_table", "sentence"]
