"""DesignSpace: PHAZE's 29,360 designs, constraints, optional dimensions, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coda.arch import design_space as ds_module
from coda.arch.accelerators import Accelerator, tpuv4_like
from coda.arch.design_space import PHAZE_KEY, SPACE_KEY, DesignSpace, phaze_cores, powers_of_two
from coda.errors import CodaError, ConfigError, InfeasibleDesign
from coda.units import GiB, MiB

KEY, OURS = list(PHAZE_KEY), list(SPACE_KEY)


@pytest.fixture(scope="module")
def cores() -> pd.DataFrame:
    return phaze_cores()


@pytest.fixture(scope="module")
def phaze_frame() -> pd.DataFrame:
    return DesignSpace.phaze().to_frame()


def small_space(**kw) -> DesignSpace:
    base = dict(n_tc=(1, 2, 4), n_vc=(1, 2), tc_rows=(8, 16), tc_cols=(8, 16), glb_bytes=(2 * MiB, 4 * MiB))
    base.update(kw)
    return DesignSpace(**base)


def test_phaze_space_is_exactly_cores_json(cores, phaze_frame):
    ours = set(map(tuple, phaze_frame[OURS].to_numpy().tolist()))
    theirs = set(map(tuple, cores[KEY].to_numpy().tolist()))
    assert len(phaze_frame) == len(ours) == 29360
    assert ours == theirs


def test_phaze_areas_match_cores_json(cores, phaze_frame):
    merged = phaze_frame.merge(cores, left_on=OURS, right_on=KEY, validate="one_to_one")
    assert len(merged) == 29360
    assert np.allclose(merged["area_mm2"] * 1e6, merged["area"], rtol=1e-6, atol=0)


def test_phaze_defaults_and_len_without_building_accelerators(monkeypatch):
    space = DesignSpace.phaze()
    assert space.max_area_mm2 == pytest.approx(tpuv4_like().area_mm2)
    assert space.min_area_fraction == 0.3 and space.exempt_single_core
    assert space.n_points == 13 * 13 * 8 * 8 * 7

    def boom(*_a, **_k):
        raise AssertionError("len() must not build Accelerators")

    monkeypatch.setattr(ds_module, "Accelerator", boom)
    assert len(space) == 29360


def test_frame_columns_and_reference_chip_admitted(phaze_frame):
    for col in OURS + ["area_mm2", "tdp_w", "peak_flops", "peak_flops_per_w", "hbm_bytes", "clock_hz"]:
        assert col in phaze_frame.columns
    row = phaze_frame[(phaze_frame.n_tc == 8) & (phaze_frame.tc_rows == 128) & (phaze_frame.tc_cols == 128)
                      & (phaze_frame.n_vc == 2) & (phaze_frame.glb_bytes == 128 * MiB)]
    assert len(row) == 1
    assert row["tdp_w"].iloc[0] == pytest.approx(tpuv4_like().tdp_w)
    assert not phaze_frame.duplicated(OURS).any()


def test_single_core_exemption_is_what_admits_small_designs(phaze_frame):
    budget = tpuv4_like().area_mm2
    small = phaze_frame[phaze_frame.area_mm2 < 0.3 * budget]
    assert len(small) > 0 and ((small.n_tc == 1) | (small.n_vc == 1)).all()
    strict = DesignSpace.phaze(exempt_single_core=False)
    assert len(strict) == len(phaze_frame) - len(small)


def test_iteration_yields_accelerators_lazily_in_frame_order():
    space = small_space()
    frame = space.to_frame()
    accs = list(space)
    assert len(accs) == len(space) == len(frame) == 3 * 2 * 2 * 2 * 2
    assert all(isinstance(a, Accelerator) for a in accs)
    assert [a.area_mm2 for a in accs] == pytest.approx(frame["area_mm2"].tolist())
    assert [a.tdp_w for a in accs] == pytest.approx(frame["tdp_w"].tolist())
    assert all(a.vc_lanes == a.tc_rows for a in accs)  # PHAZE ties lanes to rows by default
    assert space.head(2) == accs[:2]


def test_duplicates_in_ranges_are_removed():
    a = small_space()
    b = small_space(n_tc=[4, 1, 2, 2, 1], tc_rows=(16, 8, 16))
    assert a.n_tc == b.n_tc == (1, 2, 4)
    assert len(a) == len(b) and a == b


def test_optional_dimensions_multiply_the_space():
    base = small_space()
    more = small_space(hbm_bytes=(32 * GiB, 64 * GiB, 80 * GiB), vc_lanes=(16, 32))
    assert len(more) == len(base) * 3 * 2
    df = more.to_frame()
    assert set(df.hbm_bytes) == {32 * GiB, 64 * GiB, 80 * GiB}
    fast = small_space(clock_hz=1.5e9).to_frame()
    assert (fast["tdp_w"].to_numpy() > base.to_frame()["tdp_w"].to_numpy()).all()  # one clock, still charged


def test_clock_is_not_an_axis_without_a_voltage_frequency_model():
    with pytest.raises(ConfigError, match="clock is not a search axis"):
        small_space(clock_hz=(1e9, 1.5e9))


def test_tdp_constraint_and_node(phaze_frame):
    capped = DesignSpace.phaze(max_tdp_w=200.0).to_frame()
    assert 0 < len(capped) < len(phaze_frame) and (capped.tdp_w <= 200.0).all()
    assert len(capped) == int((phaze_frame.tdp_w <= 200.0).sum())
    at4 = DesignSpace.phaze(tech_nm=4).to_frame()
    assert len(at4) == len(phaze_frame)
    assert (at4.tdp_w.to_numpy() < phaze_frame.tdp_w.to_numpy()).all()
    assert np.array_equal(at4.area_mm2.to_numpy(), phaze_frame.area_mm2.to_numpy())


def test_empty_after_area_budget_names_constraint_and_range():
    with pytest.raises(InfeasibleDesign) as info:
        len(small_space(max_area_mm2=0.001))
    msg = str(info.value)
    assert "max_area_mm2" in msg and "mm^2" in msg and "raise max_area_mm2" in msg
    assert isinstance(info.value, CodaError)


def test_empty_after_min_area_fraction():
    with pytest.raises(InfeasibleDesign, match="min_area_fraction=0.99.*lower min_area_fraction"):
        small_space(max_area_mm2=1000.0, min_area_fraction=0.99, exempt_single_core=False).to_frame()


def test_empty_after_tdp_budget_reports_tdp_range():
    with pytest.raises(InfeasibleDesign, match=r"max_tdp_w=1 .*TDP spans .* W.*raise max_tdp_w"):
        list(DesignSpace.phaze(max_tdp_w=1.0))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(tc_rows=(8, 12)), "power of two; use 8 or 16"),
        (dict(vc_lanes=(3,)), "vc_lanes contains 3"),
        (dict(n_tc=()), "n_tc is empty"),
        (dict(n_vc=(0, 1)), "positive"),
        (dict(glb_bytes=(1.5,)), "whole numbers"),
        (dict(min_area_fraction=0.3), "needs max_area_mm2"),
        (dict(max_area_mm2=100.0, min_area_fraction=1.5), "[0, 1]"),
        (dict(max_tdp_w=-5.0), "max_tdp_w"),
        (dict(tech_nm=22), "tech_nm"),
        (dict(tc_rows=(512,), tc_cols=(256,)), "65536"),
    ],
)
def test_bad_ranges_raise_config_error(kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        small_space(**kwargs)
    assert fragment in str(info.value)


def test_powers_of_two_helper():
    assert powers_of_two(1, 4096) == tuple(2**i for i in range(13))
    assert powers_of_two(2, 256) == (2, 4, 8, 16, 32, 64, 128, 256)
    assert powers_of_two(3, 3) == ()


def test_frame_tdp_equals_each_designs_tdp_with_an_hbm_axis():
    """The frame's TDP (used by max_tdp_w and the search bound) charges each design its own HBM capacity."""
    ds = DesignSpace(n_tc=(8,), tc_rows=(128,), tc_cols=(128,), n_vc=(2,), glb_bytes=(32 * MiB, 128 * MiB),
                     hbm_bytes=(32 * GiB, 80 * GiB), max_area_mm2=1e4, min_area_fraction=0)
    df = ds.to_frame()
    assert df["tdp_w"].tolist() == pytest.approx([a.tdp_w for a in ds], rel=1e-12)
    wide = df.pivot_table(index="glb_bytes", columns="hbm_bytes", values="tdp_w")
    assert (wide[80 * GiB] > wide[32 * GiB]).all()  # more HBM costs power
