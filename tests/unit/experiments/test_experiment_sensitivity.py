"""The perturbations of the sensitivity table move what they say and nothing else."""

from __future__ import annotations

import pytest

from coda.arch.accelerators import tpuv4, tpuv4_like
from coda.arch.design_space import DesignSpace
from coda.experiments.sensitivity import PERTURBATIONS, Perturbation
from coda.units import MiB


def _p(constant: str, setting: str) -> Perturbation:
    return next(p for p in PERTURBATIONS if p.constant == constant and p.setting == setting)


def test_every_constant_at_both_ends_with_a_source():
    got = {(p.constant, p.setting) for p in PERTURBATIONS}
    for c in ("sram_energy", "hbm_energy", "hbm_efficiency", "network_bw", "clock"):
        assert {(c, "low"), (c, "high")} <= got
        assert _p(c, "low").factor < 1 < _p(c, "high").factor
    assert all(len(p.source) > 10 for p in PERTURBATIONS)
    assert _p("hbm_energy", "high").factor * 3.9 == pytest.approx(450 / 64)


def test_energy_moves_tdp_only():
    acc = tpuv4_like()
    lo, hi = _p("sram_energy", "low").apply(acc), _p("sram_energy", "high").apply(acc)
    assert lo.tdp_w < acc.tdp_w < hi.tdp_w
    assert hi.power_breakdown()["mac"] == acc.power_breakdown()["mac"]
    assert (lo.peak_flops, lo.hbm_bw_bytes_per_s) == (acc.peak_flops, acc.hbm_bw_bytes_per_s)
    h = _p("hbm_energy", "high").apply(acc)
    assert h.power_breakdown()["hbm"] == pytest.approx(acc.power_breakdown()["hbm"] * 450 / 64 / 3.9)


def test_hbm_efficiency_moves_bandwidth_not_hbm_power():
    acc = tpuv4()
    for s in ("low", "high"):
        p = _p("hbm_efficiency", s)
        moved = p.apply(acc)
        assert moved.hbm_bw_bytes_per_s == pytest.approx(acc.hbm_bw_bytes_per_s * p.factor)
        assert moved.power_breakdown()["hbm"] == pytest.approx(acc.power_breakdown()["hbm"], rel=1e-12)
        # the GLB's fill traffic follows the moved bandwidth (power.py charges GLB writes at hbm_bw): 0.1% of TDP
        assert moved.tdp_w == pytest.approx(acc.tdp_w, rel=2e-3)


def test_clock_moves_designs_not_the_real_chip():
    p = _p("clock", "high")
    assert p.apply(tpuv4(), is_real_chip=True) == tpuv4()
    moved = p.apply(tpuv4_like())
    assert moved.peak_flops == pytest.approx(tpuv4_like().peak_flops * 1.1)
    assert moved.tdp_w > tpuv4_like().tdp_w
    assert _p("network_bw", "low").apply(tpuv4_like()) == tpuv4_like()
    assert _p("network_bw", "low").network_scale == 0.56


def test_perturbed_space_matches_perturbed_chips():
    space = DesignSpace.phaze(n_tc=(4, 8), n_vc=(2,), tc_rows=(128,), tc_cols=(128,), glb_bytes=(32 * MiB,))
    for p in PERTURBATIONS:
        frame, accs = p.space(space).to_frame(), [p.apply(a) for a in space]
        assert list(frame["tdp_w"]) == pytest.approx([a.tdp_w for a in accs], rel=1e-12), p
        assert list(frame["peak_flops"]) == pytest.approx([a.peak_flops for a in accs], rel=1e-12), p
