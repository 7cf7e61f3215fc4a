"""Shipped NCCL measurements (Vidur) and the collective parameters fitted to them.

The measurements are a compact subset of Vidur's `data/profiling/network` profiles (MIT, see
`coda/data/DATA_LICENSES.md`): one gzip CSV per system and collective with the original
column names `time_stats.<collective>.median` (milliseconds), `num_workers`, `size` (bytes),
`collective`, `devices_per_node` (GPUs of the group on each node, so `num_workers=16,
devices_per_node=8` is 2 nodes) and `max_devices_per_node` (GPUs in a node).

The fitted parameters live in `coda/arch/cluster_catalog/nccl_fit.json` together with the
sha256 of the data they were fitted on; `load_fitted_params` refuses a file whose hash does
not match the shipped data, so a stale fit can never be used silently.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from coda.errors import CodaError, ConfigError

log = logging.getLogger(__name__)

#: Systems and collectives shipped. `h100_pairwise_nvlink/send_recv.csv` upstream is a byte copy
#: of the A100 file and the `*_pairwise_nvlink` systems are not DGX presets: neither is shipped.
SYSTEMS: tuple[str, ...] = ("a100_dgx", "h100_dgx")
COLLECTIVES: tuple[str, ...] = ("all_reduce", "send_recv")
KEEP_COLUMNS = ("num_workers", "size", "collective", "devices_per_node", "max_devices_per_node")
FIT_FILE = "nccl_fit.json"


def _data_root() -> Path:
    # coda/data is a plain folder (no __init__.py), so locate it from this file.
    return Path(__file__).resolve().parent.parent / "data" / "vidur" / "network"


def _rel(system: str, collective: str) -> str:
    return f"vidur/network/{system}/{collective}.csv.gz"


@cache
def _raw_csv(system: str, collective: str) -> bytes:
    path = _data_root() / system / f"{collective}.csv.gz"
    try:
        return gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise CodaError(f"shipped NCCL data {_rel(system, collective)} is missing; reinstall coda") from None


@lru_cache(maxsize=1)
def data_sha256() -> str:
    """sha256 over the decompressed shipped CSVs, each preceded by its relative path.

    Hashing the decompressed text makes the hash independent of gzip settings.
    """
    h = hashlib.sha256()
    for system in SYSTEMS:
        for collective in COLLECTIVES:
            h.update(_rel(system, collective).encode() + b"\0")
            h.update(_raw_csv(system, collective))
    return h.hexdigest()


@cache
def _measurements(system: str, collective: str) -> pd.DataFrame:
    df = pd.read_csv(io.BytesIO(_raw_csv(system, collective)))
    col = f"time_stats.{collective}.median"
    out = df.loc[:, list(KEEP_COLUMNS)].copy()
    out["time_s"] = df[col].astype(float) * 1e-3  # the CSVs hold milliseconds
    out["system"] = system
    out["n_nodes"] = out["num_workers"] // out["devices_per_node"]
    return out


def measurements(system: str | None = None, collective: str | None = None) -> pd.DataFrame:
    """Measured NCCL times as one DataFrame (a fresh copy; the cached one is never exposed).

    Args:
        system: `a100_dgx` or `h100_dgx`; None for both.
        collective: `all_reduce` or `send_recv`; None for both.

    Returns:
        Columns `system, collective, num_workers, devices_per_node, n_nodes,
        max_devices_per_node, size` (bytes) and `time_s` (median of Vidur's runs, seconds).
    """
    systems = SYSTEMS if system is None else (system,)
    kinds = COLLECTIVES if collective is None else (collective,)
    for s in systems:
        if s not in SYSTEMS:
            raise ConfigError(f"no shipped NCCL data for system {s!r}; have {', '.join(SYSTEMS)}")
    for k in kinds:
        if k not in COLLECTIVES:
            raise ConfigError(f"no shipped NCCL data for collective {k!r}; have {', '.join(COLLECTIVES)}")
    frames = [_measurements(s, k) for s in systems for k in kinds]
    return pd.concat(frames, ignore_index=True)


def fit_path() -> Path:
    """Location of the shipped fitted-parameter file."""
    return Path(__file__).resolve().parent / "cluster_catalog" / FIT_FILE


def dumps_params(params: dict[str, Any]) -> str:
    """Canonical JSON text (sorted keys, two-space indent, trailing newline), byte-reproducible."""
    return json.dumps(params, indent=2, sort_keys=True) + "\n"


@lru_cache(maxsize=1)
def _load_fit_text() -> str:
    try:
        return fit_path().read_text()
    except FileNotFoundError:
        raise CodaError(
            f"fitted collective parameters {FIT_FILE} are missing; run "
            "`coda.arch.collectives_fit.refit_collectives()` to regenerate them"
        ) from None


def load_fitted_params(text: str | None = None) -> dict[str, Any]:
    """The fitted NCCL parameters, checked against the hash of the shipped data.

    Args:
        text: JSON text to check instead of the shipped file (used by tests and `refit`).

    Returns:
        A fresh dict `{"data_sha256", "systems": {system: {"collective_overhead_s",
        "levels": {level: {"latency_s", "efficiency", "p2p_latency_s", "p2p_efficiency"}}}}, ...}`.

    Raises:
        CodaError: the file is missing, malformed, or was fitted on different data.
    """
    raw = _load_fit_text() if text is None else text
    try:
        params = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CodaError(f"{FIT_FILE} is not valid JSON ({err}); regenerate it with refit_collectives()") from None
    if not isinstance(params, dict) or "data_sha256" not in params or "systems" not in params:
        raise CodaError(f"{FIT_FILE} lacks 'data_sha256' or 'systems'; regenerate it with refit_collectives()")
    if params["data_sha256"] != data_sha256():
        raise CodaError(
            f"{FIT_FILE} was fitted on data with sha256 {params['data_sha256'][:12]}..., but the shipped "
            f"NCCL data hashes to {data_sha256()[:12]}...; refit with "
            "`coda.arch.collectives_fit.refit_collectives()`"
        )
    return params


def export_network_subset(source_dir: str | Path, dest_dir: str | Path) -> list[Path]:
    """Write the shipped subset from a checkout of Vidur's network profiles.

    Keeps the median time and the group-shape columns, under their original names, and writes
    gzip with a zero timestamp so the output is byte-reproducible.

    Args:
        source_dir: folder holding `<system>/<collective>.csv` (e.g. `shared/data/vidur/network`).
        dest_dir: destination, normally `coda/data/vidur/network`.

    Returns:
        The files written.
    """
    written = []
    for system in SYSTEMS:
        for collective in COLLECTIVES:
            src = Path(source_dir) / system / f"{collective}.csv"
            df = pd.read_csv(src)
            cols = [f"time_stats.{collective}.median", *KEEP_COLUMNS]
            df = df.loc[:, cols].sort_values(["num_workers", "devices_per_node", "size"], kind="stable")
            dst = Path(dest_dir) / system / f"{collective}.csv.gz"
            dst.parent.mkdir(parents=True, exist_ok=True)
            text = df.to_csv(index=False).encode()
            with open(dst, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
                gz.write(text)
            written.append(dst)
            log.info("wrote %s (%d rows)", dst, len(df))
    return written
