"""GPU rows beside a design-space search: the same model, chip count and placement space on DGX nodes.

Each GPU runs on the DGX preset of its generation (`dgx-a100` for Ampere, `dgx-h100` for
Hopper, with the GPU in place of the preset's), its layers timed by the calibrated GPU tile model
(`coda.predictor`), its plan found by the same `optimize` call and `DEFAULT_CHOICES` as the
designs' (bf16). Per-watt figures divide by the datasheet board TDP; the designs' TDP model
(`coda.arch.power`) counts the chip, its SRAM, HBM and links but no board components (voltage
regulators, fans), so a GPU is charged somewhat more power than a design of equal silicon.
Area is the GPU's die area (at its own process node, not the designs' 22 nm).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from coda.arch.clusters import cluster
from coda.arch.gpus import GPU
from coda.arch.gpus import gpu as lookup_gpu
from coda.errors import ConfigError
from coda.models.config import ModelConfig
from coda.placement.optimize import optimize
from coda.search.run import FRAME_COLUMNS, _as_cfg, _merged_choices, scored_plan

DGX_PRESET = {"ampere": "dgx-a100", "hopper": "dgx-h100"}
DTYPE = "bf16"


def _dgx(g: GPU, n_devices: int) -> Any:
    if g.architecture not in DGX_PRESET:
        raise ConfigError(f"GPU reference {g.name!r} is {g.architecture}; only Ampere and Hopper GPUs have a DGX "
                          f"preset ({', '.join(DGX_PRESET.values())}): use e.g. a100-sxm4-80gb or h100-sxm")
    return cluster(DGX_PRESET[g.architecture], n_devices, device=g)


def check_gpu_reference(gpus: Sequence[str], n_devices: int) -> None:
    """Refuse, before any evaluation, a GPU name that is unknown or has no DGX preset, or a chip count
    its DGX preset cannot hold.

    Raises:
        UnknownNameError: an unknown GPU (with close names); ConfigError: the rest.
    """
    for name in gpus:
        _dgx(lookup_gpu(name), n_devices)


def gpu_reference_row(cfg: ModelConfig, gpu_name: str, n_devices: int, global_batch: int, seq_len: int,
                      choices: dict[str, Any]) -> dict[str, Any]:
    """One GPU as a row of `SearchResult.frame` (design fields it lacks are NaN, no bound)."""
    t0 = time.perf_counter()
    g = lookup_gpu(gpu_name)
    dgx = _dgx(g, n_devices)
    row: dict[str, Any] = {c: math.nan for c in FRAME_COLUMNS}
    row.update(name=g.name, hbm_bytes=g.hbm_bytes, hbm_bw_bytes_per_s=g.hbm_bw_bytes_per_s, clock_hz=g.clock_hz,
               area_mm2=g.die_area_mm2, tdp_w=g.tdp_w, peak_flops=g.peak_flops(DTYPE))
    row.update(scored_plan(lambda: optimize(cfg, dgx, global_batch, seq_len, dtype=DTYPE, **choices),
                           n_devices * g.tdp_w))
    row["seconds"] = time.perf_counter() - t0
    return row


def gpu_reference(model: ModelConfig | str, gpus: Sequence[str], n_devices: int, global_batch: int, seq_len: int,
                  choices: dict[str, Any] | None = None) -> pd.DataFrame:
    """GPU rows to put beside a `search` result (module doc), in the order given.

    Args:
        model: a `ModelConfig` or a preset name.
        gpus: GPU catalog names or aliases (Ampere or Hopper).
        n_devices: GPUs per reference cluster (at most 8, or a multiple of 8).
        global_batch, seq_len: as for `search`.
        choices: placement restrictions merged over `DEFAULT_CHOICES`, as for `search`.

    Raises:
        UnknownNameError: an unknown GPU; ConfigError: a GPU without a DGX preset, a bad n_devices.
    """
    cfg = _as_cfg(model)
    merged = _merged_choices(choices)
    check_gpu_reference(gpus, n_devices)
    rows = [gpu_reference_row(cfg, name, n_devices, global_batch, seq_len, merged) for name in gpus]
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
