"""A technology description: the power model's constants as data, strict to load, used by every TDP."""

import dataclasses
import json

import pytest

from coda.arch.accelerators import tpuv4_like
from coda.arch.design_space import DesignSpace
from coda.arch.technology import DEFAULT_TECHNOLOGY, Technology
from coda.errors import ConfigError
from coda.units import MiB


def test_round_trip_through_json(tmp_path):
    path = tmp_path / "tech.json"
    path.write_text(json.dumps(DEFAULT_TECHNOLOGY.to_dict()))
    assert Technology.from_json(path) == DEFAULT_TECHNOLOGY


def test_hbm_energy_enters_the_tdp_in_closed_form():
    """Doubling the HBM energy per bit adds exactly hbm_bw * 8 bits * 3.9 pJ."""
    hot = dataclasses.replace(DEFAULT_TECHNOLOGY, name="2x-hbm", hbm_pj_per_bit=2 * DEFAULT_TECHNOLOGY.hbm_pj_per_bit)
    ref = tpuv4_like()
    acc = dataclasses.replace(ref, technology=hot)
    extra = acc.hbm_bw_bytes_per_s * 8 * DEFAULT_TECHNOLOGY.hbm_pj_per_bit * 1e-12
    assert acc.tdp_w - ref.tdp_w == pytest.approx(extra, rel=1e-12)
    assert acc.power_breakdown()["hbm"] == pytest.approx(2 * ref.power_breakdown()["hbm"], rel=1e-12)


def test_design_space_uses_its_technology_for_the_frame_and_the_designs():
    leaky = dataclasses.replace(DEFAULT_TECHNOLOGY, name="leaky", static_w_per_mm2=0.3)
    kw = dict(n_tc=(2, 8), tc_rows=(128,), tc_cols=(128,), n_vc=(2,), glb_bytes=(32 * MiB,), max_area_mm2=1e4,
              min_area_fraction=0)
    base, hot = DesignSpace(**kw).to_frame(), DesignSpace(**kw, technology=leaky)
    assert (hot.to_frame()["tdp_w"].to_numpy() > base["tdp_w"].to_numpy()).all()
    assert hot.to_frame()["tdp_w"].tolist() == pytest.approx([a.tdp_w for a in hot], rel=1e-12)
    assert all(a.technology == leaky for a in hot)


def _file(tmp_path, data):
    path = tmp_path / "tech.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _with(**changes):
    d = DEFAULT_TECHNOLOGY.to_dict()
    d.update(changes)
    return d


@pytest.mark.parametrize("data, message", [
    ("[1, 2]", "a technology is a JSON object"),
    ("{not json", "not JSON text"),
    (_with(cpu_pj=1.0), "unknown key"),
    ({k: v for k, v in DEFAULT_TECHNOLOGY.to_dict().items() if k != "hbm_pj_per_bit"}, "missing key"),
    (_with(hbm_pj_per_bit=-1.0), "finite positive"),
    (_with(link_pj_per_bit="5"), "finite positive"),
    (_with(mult_pj={"2": 0.34}), "operand widths 1, 2 and 4"),
    (_with(mult_pj=[0.34]), "must be an object"),
    (_with(energy_factor_vs_7nm={"7": 0.9}), "7: 1.0"),
    (_with(sources={"mult_pj": "J21"}), "no source for"),
])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message) as info:
        Technology.from_json(_file(tmp_path, data))
    assert "\n" not in str(info.value)


def test_binary_and_missing_files(tmp_path):
    path = tmp_path / "tech.json"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ConfigError, match="not JSON text"):
        Technology.from_json(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        Technology.from_json(tmp_path / "missing.json")


def test_accelerator_refuses_a_node_the_technology_has_no_factor_for():
    seven_only = dataclasses.replace(DEFAULT_TECHNOLOGY, name="7nm-only", energy_factor_vs_7nm=((7, 1.0),))
    with pytest.raises(ConfigError, match="use 7 "):
        dataclasses.replace(tpuv4_like(), tech_nm=5, technology=seven_only)
    with pytest.raises(ConfigError, match="Technology"):
        dataclasses.replace(tpuv4_like(), technology={"name": "x"})
