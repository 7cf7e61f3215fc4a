"""Figures of a serving simulation: latency CDFs and the batch and KV cache over time.

`plot_result(result, path)` writes one figure of four panels: the CDFs of TTFT and end-to-end
latency, the CDF of the inter-token times (TBT), and per replica the batch size (sequences in an
iteration) and the KV-cache use (fraction of the replica's blocks) against time. matplotlib is
optional (`coda.plotting.pyplot` says how to install it).
"""

from __future__ import annotations

import numpy as np

from coda.plotting import pyplot, save_figure
from coda.serving.metrics import ServingResult

CDF_POINTS = 2000
"""Quantiles drawn per CDF (millions of inter-token gaps are summarised, not drawn one by one)."""
MAX_REPLICA_LINES = 8
"""Replicas drawn in the over-time panels (the first ones; the rest behave alike under a fair router)."""


def cdf(values: np.ndarray, points: int = CDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(x, F(x)) of the empirical CDF of `values` (NaN dropped) at `points` quantiles, or every
    value when there are fewer."""
    v = np.sort(np.asarray(values, dtype=float)[~np.isnan(values)])
    if len(v) <= points:
        return v, np.arange(1, len(v) + 1) / max(len(v), 1)
    q = np.linspace(0.0, 1.0, points)
    return np.quantile(v, q), q


def _step(ax: object, x: np.ndarray, y: np.ndarray, **kw: object) -> None:
    ax.step(x, y, where="post", **kw)  # type: ignore[attr-defined]


def plot_result(result: ServingResult, path: str, title: str | None = None, purpose: str = "--plot") -> None:
    """Write the figure (module docstring) to `path` (format from its suffix).

    Raises:
        ConfigError: matplotlib is missing, or the file cannot be written.
    """
    plt = pyplot(purpose)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    (a_lat, a_tbt), (a_batch, a_kv) = axes
    rq = result.requests
    for col, label in (("ttft_s", "TTFT"), ("e2e_s", "end-to-end")):
        x, y = cdf(rq[col].to_numpy())
        _step(a_lat, x, y, label=label)
    a_lat.set_xlabel("latency (s)")
    a_lat.set_ylabel("fraction of requests")
    a_lat.set_title("request latency CDF", fontsize=10)
    a_lat.legend(fontsize=8)
    x, y = cdf(result.tbt["tbt_s"].to_numpy())
    if len(x):
        _step(a_tbt, x * 1e3, y, color="tab:green")
        a_tbt.set_xscale("log")
    a_tbt.set_xlabel("time between tokens (ms, log)")
    a_tbt.set_ylabel("fraction of inter-token gaps")
    a_tbt.set_title("TBT CDF", fontsize=10)
    it = result.iterations
    replicas = sorted(it["replica"].unique())[:MAX_REPLICA_LINES]
    for k in replicas:
        r = it[it["replica"] == k]
        t = r["start_s"].to_numpy()
        _step(a_batch, t, r["sequences"].to_numpy(), label=f"replica {k}", lw=0.8)
        _step(a_kv, t, 100 * r["kv_utilisation"].to_numpy(), label=f"replica {k}", lw=0.8)
    a_batch.set_xlabel("time (s)")
    a_batch.set_ylabel("sequences in the iteration")
    a_batch.set_title("batch size", fontsize=10)
    a_kv.set_xlabel("time (s)")
    a_kv.set_ylabel(f"KV blocks in use (% of {result.kv_blocks})")
    a_kv.set_ylim(0, 100)
    a_kv.set_title("KV cache use", fontsize=10)
    if 1 < len(replicas):
        a_batch.legend(fontsize=7)
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
    fig.suptitle(title or result.name, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, purpose)


__all__ = ["cdf", "plot_result"]
