"""Does the family winner change when an uncertain constant moves by its uncertainty?

Each `Perturbation` moves one constant to one end of its range, for every chip compared (the clock
excepted: it moves for the designs and PHAZE's TPUv4-like chip, while the faithful TPU v4 keeps its real
1050 MHz). The re-evaluated set is the near-tie family (designs within `SENS_TOL` of the best geometric mean,
at most `MAX_DESIGNS` of them), each model's best design and the two TPU v4 references, every one for all
workloads. A design outside the set can overtake only if the perturbation raises its geometric mean, relative
to the winner's, by more than 1 / (1 - SENS_TOL); the table reports the largest such relative gain seen inside
the set (`max_relative_gain`) and, as a proof where one exists, how many designs outside the set the
perturbed family upper bound cannot exclude (`not_excluded`): the perturbed roofline bound for workloads never
evaluated, and for the energy constants (TDP only, throughput unchanged) the exact rescaling
tokens/s / (n * TDP') of every evaluated row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.accelerators import Accelerator
from coda.arch.design_space import DesignSpace
from coda.arch.technology import Technology
from coda.experiments.evaluator import Evaluator, Task, Workload
from coda.experiments.family import OBJECTIVE, FamilyResult, bounds_matrix, geomean

SENS_TOL = 0.05
"""Designs within 5% of the best geometric mean are re-evaluated under each perturbation."""
MAX_DESIGNS = 16
"""At most this many family designs are re-evaluated (the best first)."""


@dataclass(frozen=True)
class Perturbation:
    """One constant at one end of its uncertainty.

    Attributes:
        constant: what moves (``sram_energy``, ``hbm_energy``, ``hbm_efficiency``, ``network_bw``, ``clock``).
        setting: ``low`` or ``high``.
        factor: multiplier on the constant's value (on every SRAM energy point, on the HBM energy per bit,
            on the achieved HBM bandwidth, on every network level's bandwidth, on the clock).
        baseline: the constant's value in the model, in words.
        source: where the range comes from (or that it was chosen, and why).
    """

    constant: str
    setting: str
    factor: float
    baseline: str
    source: str

    @property
    def network_scale(self) -> float:
        return self.factor if self.constant == "network_bw" else 1.0

    def tech(self, t: Technology) -> Technology:
        """The technology with this perturbation (unchanged for network and clock)."""
        tag = f"{t.name}+{self.constant}x{self.factor:.3g}"
        if self.constant == "sram_energy":
            return replace(t, name=tag, sram_pj_per_64b=tuple((k, v * self.factor) for k, v in t.sram_pj_per_64b))
        if self.constant == "hbm_energy":
            return replace(t, name=tag, hbm_pj_per_bit=t.hbm_pj_per_bit * self.factor)
        if self.constant == "hbm_efficiency":  # the same HBM power at the moved achieved bandwidth
            return replace(t, name=tag, hbm_pj_per_bit=t.hbm_pj_per_bit / self.factor)
        return t

    def apply(self, acc: Accelerator, is_real_chip: bool = False) -> Accelerator:
        """`acc` under this perturbation. The achieved HBM bandwidth moves through the datasheet bandwidth with
        the HBM energy per bit moved inversely, so the chip's HBM power (bandwidth x energy) stays as it was
        (the GLB's fill traffic, charged at the HBM bandwidth by `coda.arch.power`, moves with it: < 0.1% of TDP)."""
        if self.constant == "clock":
            return acc if is_real_chip else replace(acc, clock_hz=acc.clock_hz * self.factor)
        if self.constant == "hbm_efficiency":
            return replace(acc, hbm_bw_bytes_per_s=acc.hbm_bw_bytes_per_s * self.factor, technology=self.tech(
                acc.technology))
        if self.constant == "network_bw":
            return acc
        return replace(acc, technology=self.tech(acc.technology))

    @property
    def tdp_only(self) -> bool:
        """Whether only the TDP moves (throughput unchanged): the energy constants."""
        return self.constant in ("sram_energy", "hbm_energy")

    def space(self, space: DesignSpace) -> DesignSpace:
        """The design space with this perturbation's TDP and peaks (for the perturbed bounds)."""
        if self.constant == "clock":
            return replace(space, clock_hz=tuple(c * self.factor for c in space.clock_hz))
        if self.constant == "hbm_efficiency":
            return replace(space, hbm_bw_bytes_per_s=tuple(b * self.factor for b in space.hbm_bw_bytes_per_s),
                           technology=self.tech(space.technology))
        if self.tdp_only:
            return replace(space, technology=self.tech(space.technology))
        return space  # network: same peaks, same TDP


_HBM_J21 = 450 / 64  # pJ per bit at the top of [J21]'s 250-450 pJ per 64-bit HBM2 access
_STREAM = {"a100": 1.61 / 2.039, "h100": 2.90 / 3.352}  # measured copy bandwidth / datasheet (coda.predictor)
_STREAM_MEAN = sum(_STREAM.values()) / 2

PERTURBATIONS = (
    Perturbation("sram_energy", "low", 0.5, "7.5-14 pJ per 64-bit access (8 KiB-1 MiB arrays, 7 nm)",
                 "chosen: a factor 2 either way; [J21]'s table is a 7 nm rescaling of Horowitz's 45 nm figures and "
                 "states no uncertainty"),
    Perturbation("sram_energy", "high", 2.0, "7.5-14 pJ per 64-bit access (8 KiB-1 MiB arrays, 7 nm)",
                 "chosen: a factor 2 either way (as above)"),
    Perturbation("hbm_energy", "low", 3.0 / 3.9, "3.9 pJ/bit", "Technology.sources: published HBM3 figures are "
                 "3-4 pJ/bit (low end 3.0)"),
    Perturbation("hbm_energy", "high", _HBM_J21 / 3.9, "3.9 pJ/bit", "Technology.sources: [J21] 250-450 pJ per "
                 "64-bit HBM2 access (high end 7.0 pJ/bit)"),
    Perturbation("hbm_efficiency", "low", _STREAM["a100"] / _STREAM_MEAN, "83% of datasheet bandwidth",
                 "coda.predictor: measured copy bandwidth 79% (A100-80GB) to 87% (H100) of datasheet; the model "
                 "uses their mean"),
    Perturbation("hbm_efficiency", "high", _STREAM["h100"] / _STREAM_MEAN, "83% of datasheet bandwidth",
                 "as above, the H100's 87%"),
    Perturbation("network_bw", "low", 0.56, "ICI 2 x 45 GB/s per axis, ring efficiency 1.0 (assumed)",
                 "the lowest ring efficiency of coda's fitted NCCL curves (A100 NVSwitch, 0.56): the preset's "
                 "efficiency 1.0 is an assumption"),
    Perturbation("network_bw", "high", 50 / 45, "ICI 2 x 45 GB/s per axis",
                 "Google Cloud TPU v4 docs: 45-50 GB/s per link and direction; the preset takes 45"),
    Perturbation("clock", "low", 0.9, "1.05 GHz (designs)", "chosen: +-10% around TPU v4's 1050 MHz for a new "
                 "7 nm design (the power model has no voltage-frequency relation, so only +-10% is modelled)"),
    Perturbation("clock", "high", 1.1, "1.05 GHz (designs)", "chosen: as above"),
)
"""The constants the issue names, each at both ends of its range ([J21]: Jouppi et al., ISCA 2021)."""


def sensitivity_set(family: FamilyResult, per_model_best: list[int], max_designs: int = MAX_DESIGNS) -> list[int]:
    """Design indices to re-evaluate: the family within `SENS_TOL` (at most `max_designs`) and each model's best."""
    best = family.best
    if best is None:
        return sorted(set(per_model_best))
    near = family.frame[family.frame["geomean"] >= float(best["geomean"]) * (1 - SENS_TOL)].head(max_designs)
    out = [int(i) for i in near["design"]]
    return out + [i for i in dict.fromkeys(per_model_best) if i not in out]


def run_sensitivity(space: DesignSpace, accelerators: list[Accelerator], designs: pd.DataFrame,
                    refs: dict[str, Accelerator], works: tuple[Workload, ...], family: FamilyResult,
                    chosen: list[int], evaluator: Evaluator,
                    perturbations: tuple[Perturbation, ...] = PERTURBATIONS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Re-evaluate `chosen` designs and `refs` (name -> chip; ``tpuv4`` is the real chip) under each perturbation.

    Returns:
        (summary, detail): one summary row per perturbation (the baseline first), and one detail row per
        (perturbation, chip) with its per-workload tokens/s per W and geometric mean.
    """
    names = [w.model for w in works]
    variants: list[tuple[Perturbation | None, str, Accelerator]] = []
    for p in (None, *perturbations):
        for i in chosen:
            acc = accelerators[i]
            variants.append((p, f"d{i}", acc if p is None else p.apply(acc)))
        for rname, acc in refs.items():
            variants.append((p, rname, acc if p is None else p.apply(acc, is_real_chip=rname == "tpuv4")))
    vals: dict[tuple[int, str], float] = {}
    tasks = [Task(acc, w, network_scale=1.0 if p is None else p.network_scale, tag=(k, w.model))
             for k, (p, _, acc) in enumerate(variants) for w in works]

    def on_row(task: Task, row: dict[str, Any]) -> None:
        vals[task.tag] = float(row[OBJECTIVE]) if row["status"] == "ok" else 0.0

    evaluator.run(tasks, on_row)
    detail = []
    for k, (p, who, acc) in enumerate(variants):
        per = {m: vals[(k, m)] for m in names}
        detail.append(dict(constant="baseline" if p is None else p.constant, setting="" if p is None else p.setting,
                           chip=who, name=acc.name, design=int(who[1:]) if who.startswith("d") else -1,
                           tdp_w=acc.tdp_w, **per, geomean=geomean(list(per.values()))))
    det = pd.DataFrame(detail)
    base = det[det["constant"] == "baseline"].set_index("chip")["geomean"]
    rows = [_summary(None, det[det["constant"] == "baseline"], base, family, space, designs, works, evaluator)]
    for p in perturbations:
        sub = det[(det["constant"] == p.constant) & (det["setting"] == p.setting)]
        rows.append(_summary(p, sub, base, family, space, designs, works, evaluator))
    return pd.DataFrame(rows), det


def _summary(p: Perturbation | None, sub: pd.DataFrame, base: pd.Series, family: FamilyResult, space: DesignSpace,
             designs: pd.DataFrame, works: tuple[Workload, ...], evaluator: Evaluator) -> dict[str, Any]:
    ds = sub[sub["design"] >= 0].sort_values(["geomean", "design"], ascending=[False, True], kind="stable")
    win, runner = ds.iloc[0], ds.iloc[1] if len(ds) > 1 else None
    base_winner = int(family.best["design"]) if family.best is not None else -1
    faithful = float(sub[sub["chip"] == "tpuv4"]["geomean"].iloc[0])
    like = float(sub[sub["chip"] == "tpuv4-like"]["geomean"].iloc[0])
    w_base = float(sub[sub["design"] == base_winner]["geomean"].iloc[0]) if base_winner in set(ds["design"]) else 0.0
    gains = ds["geomean"].to_numpy(float) / base[ds["chip"]].to_numpy(float)
    ref_gain = float(win["geomean"]) / float(base[win["chip"]])
    return dict(
        constant="baseline" if p is None else p.constant, setting="" if p is None else p.setting,
        factor=1.0 if p is None else p.factor, model_value="" if p is None else p.baseline,
        winner=str(win["name"]), winner_design=int(win["design"]), same_winner=int(win["design"]) == base_winner,
        winner_geomean=float(win["geomean"]), margin_over_runner_up=(float(win["geomean"]) / float(runner["geomean"])
                                                                     - 1.0) if runner is not None else np.nan,
        baseline_winner_vs_tpuv4=w_base / faithful if faithful > 0 else np.nan,
        winner_vs_tpuv4=float(win["geomean"]) / faithful if faithful > 0 else np.nan,
        winner_vs_tpuv4_like=float(win["geomean"]) / like if like > 0 else np.nan,
        max_relative_gain=float(np.max(gains) / ref_gain) if len(gains) else np.nan,
        not_excluded=_not_excluded(p, family, space, designs, works, evaluator, float(win["geomean"]),
                                   set(int(d) for d in ds["design"])),
        source="" if p is None else p.source)


def _not_excluded(p: Perturbation | None, family: FamilyResult, space: DesignSpace, designs: pd.DataFrame,
                  works: tuple[Workload, ...], evaluator: Evaluator, best: float, inside: set[int]) -> int:
    """Designs outside `inside` whose perturbed family upper bound reaches `best` (module doc)."""
    vals = family.values
    if p is None:
        bnd, scale = family.bounds, np.ones(len(designs))
    else:
        moved = p.space(space).to_frame()
        bnd = bounds_matrix(moved, works, evaluator.configs, evaluator.n_devices)
        scale = designs["tdp_w"].to_numpy(float) / moved["tdp_w"].to_numpy(float)
    exact_ok = p is None or p.tdp_only
    upper = np.where(np.isnan(vals) | (not exact_ok), bnd, vals * scale[:, None])
    with np.errstate(divide="ignore"):
        g = np.exp(np.mean(np.log(np.maximum(upper, 0.0)), axis=1))
    mask = np.ones(len(g), dtype=bool)
    mask[list(inside)] = False
    return int(np.sum(g[mask] >= best))


__all__ = ["MAX_DESIGNS", "PERTURBATIONS", "SENS_TOL", "Perturbation", "run_sensitivity", "sensitivity_set"]
