"""Clusters and collectives: closed-form ring costs, hierarchy, monotonicity, fitted accuracy, errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.arch.clusters import Cluster, CollectiveKind, Level, cluster, collective_time, list_clusters
from coda.arch.collectives_fit import collectives_report, fit_params
from coda.arch.gpus import GPU
from coda.arch.network_data import data_sha256, dumps_params, fit_path, load_fitted_params, measurements
from coda.errors import CodaError, ConfigError, UnknownNameError

KINDS = [k.value for k in CollectiveKind]
S = 256 * 2**20  # a bandwidth-dominated message


def ideal(n_devices: int = 16, node: int = 8, alpha: float = 0.0, overhead: float = 0.0) -> Cluster:
    """DGX-A100-like bandwidths, no latency, efficiency 1: every time is a closed form."""
    levels = [Level("nvswitch", node, 300e9, alpha)]
    if n_devices > node:
        levels.append(Level("ib", n_devices, 25e9, alpha))
    return Cluster("dev", n_devices, tuple(levels), overhead)


# ------------------------------------------------------------------------------ presets


def test_presets() -> None:
    assert list_clusters() == ["dgx-a100", "dgx-h100", "tpuv4-pod", "vidur-a100", "vidur-h100"]
    c = cluster("DGX-A100", 32)
    assert isinstance(c.device, GPU) and c.device.name == "a100-sxm4-80gb"
    assert [(lv.name, lv.size, lv.bw_each_way_bytes_per_s) for lv in c.levels] == [
        ("nvswitch", 8, 300e9), ("infiniband", 32, 25e9)]
    h = cluster("dgx-h100", 16)
    assert h.device.name == "h100-sxm" and h.levels[0].bw_each_way_bytes_per_s == 450e9
    assert h.levels[1].bw_each_way_bytes_per_s == 50e9
    assert [lv.size for lv in cluster("dgx-a100", 4).levels] == [4]
    assert cluster("dgx-a100", 1).levels == ()


def test_dgx_inter_node_uses_the_published_efficiency_and_the_testbed_preset_the_fit() -> None:
    """A data-parallel group with one GPU per node: 24 GB/s per NIC on DGX A100 (NCCL maintainers:
    192 GB/s bus bandwidth over 8 HDR NICs); the Vidur testbed keeps its fitted 0.23 (5.8 GB/s)."""
    ranks = range(0, 32, 8)
    for name, eff in (("dgx-a100", 0.96), ("vidur-a100", load_fitted_params()["systems"]["a100_dgx"]
                                           ["levels"]["infiniband"]["efficiency"])):
        c = cluster(name, 32)
        assert c.levels[0] == cluster("vidur-a100", 32).levels[0]  # in-node: the fit in both
        assert 1.0 / c.collective_cost("all_reduce", ranks).s_per_byte == pytest.approx(25e9 * eff * 4 / 3 / 2)
    assert cluster("dgx-h100", 16).levels[1].efficiency == 0.94


def test_tpu_torus_has_six_links_of_45_GBps() -> None:
    c = cluster("tpuv4-pod", 4096)
    assert [lv.size for lv in c.levels] == [16, 256, 4096]
    # 3 axes x 2 links x 45 GB/s each way = 6 links per chip
    assert sum(lv.bw_each_way_bytes_per_s for lv in c.levels) == pytest.approx(6 * 45e9)
    assert c.device_name == "tpu-v4"
    assert [lv.size for lv in cluster("tpuv4-pod", 64).levels] == [16, 64]


def test_fitted_parameters_are_physical() -> None:
    for name in ("dgx-a100", "dgx-h100"):
        c = cluster(name, 16)
        for lv in c.levels:
            assert 0.1 < lv.efficiency <= 1 and 0.1 < lv.p2p_efficiency <= 1  # type: ignore[operator]
            assert 0 <= lv.latency_s < 1e-4
        assert 1e-6 < c.collective_overhead_s < 1e-4
        # NVSwitch beats InfiniBand per device
        assert c.levels[0].bw_each_way_bytes_per_s * c.levels[0].efficiency > c.levels[1].bw_each_way_bytes_per_s


def test_custom_cluster_holds_any_named_device() -> None:
    c = Cluster(SimpleNamespace(name="my-accel"), 4, (Level("ici", 4, 100e9),))
    assert c.device_name == "my-accel"
    assert c.collective_time("all_gather", 4e6, 4) == pytest.approx(0.75 * 4e6 / 100e9)


# ------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("kind,factor", [("all_reduce", 2 * 7 / 8), ("all_gather", 7 / 8), ("reduce_scatter", 7 / 8),
                                         ("all_to_all", 7 / 8), ("broadcast", 1.0)])
def test_ring_in_a_node(kind: str, factor: float) -> None:
    assert ideal().collective_time(kind, S, 8) == pytest.approx(factor * S / 300e9)


def test_nccl_tests_bus_bandwidth() -> None:
    """busbw = S/t * 2(n-1)/n for all-reduce equals the link bandwidth when latency is negligible."""
    for n in (2, 4, 8):
        t = ideal().collective_time("all_reduce", S, n)
        assert S / t * 2 * (n - 1) / n == pytest.approx(300e9)


def test_group_across_nodes_uses_the_slower_level() -> None:
    c = ideal(n_devices=32)
    # one device per node: the ring crosses InfiniBand between every pair, 25 GB/s
    assert c.collective_time("all_reduce", S, [0, 8]) == pytest.approx(S / 25e9)
    assert c.collective_time("send_recv", S, [0, 8]) == pytest.approx(S / 25e9)
    assert c.collective_time("send_recv", S, 2) == pytest.approx(S / 300e9)
    # whole nodes: 8 rings, one NIC each, min(300, 8 x 25) = 200 GB/s
    assert c.collective_time("all_reduce", S, 16) == pytest.approx(2 * 15 / 16 * S / 200e9)
    # all-to-all across 2 nodes: half of each device's chunks cross InfiniBand on its own NIC
    assert c.collective_time("all_to_all", S, 16) == pytest.approx(0.5 * S / 25e9)
    sp = c.span(range(0, 32, 8))
    assert sp.levels == (0, 1) and sp.members == (1, 1)
    assert c.collective_time("all_reduce", S, range(0, 32, 8)) > c.collective_time("all_reduce", S, 4)


def test_latency_terms() -> None:
    c = ideal(alpha=1e-6, overhead=10e-6)
    assert c.collective_cost("all_reduce", 8).latency_s == pytest.approx(10e-6 + 14e-6)
    assert c.collective_cost("all_gather", 8).latency_s == pytest.approx(10e-6 + 7e-6)
    assert c.collective_cost("send_recv", 2).latency_s == pytest.approx(1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_for_one_device_or_no_bytes(kind: str) -> None:
    c = cluster("dgx-a100", 16)
    assert c.collective_time(kind, 1e9, 1) == 0.0
    assert c.collective_time(kind, 0, 2) == 0.0
    assert collective_time(c, kind, 1e9, [5]) == 0.0


# -------------------------------------------------------------------------- monotonicity

_CLUSTERS = {"dgx-a100": cluster("dgx-a100", 64), "dgx-h100": cluster("dgx-h100", 64),
             "tpuv4-pod": cluster("tpuv4-pod", 4096), "ideal": ideal(64, alpha=1e-6, overhead=5e-6)}
_VALID = {k: [1, 2, 3, 4, 5, 6, 7, 8, 16, 24, 32, 64] if k != "tpuv4-pod" else
          [1, 2, 4, 8, 16, 32, 48, 256, 512, 4096] for k in _CLUSTERS}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(sorted(_CLUSTERS)), st.sampled_from(KINDS), st.integers(0, 2**36), st.integers(0, 2**36),
       st.data())
def test_monotone_in_bytes_and_group_size(name: str, kind: str, b1: int, b2: int, data: st.DataObject) -> None:
    c = _CLUSTERS[name]
    sizes = [g for g in _VALID[name] if kind != "send_recv" or g <= 2]
    g1, g2 = sorted(data.draw(st.lists(st.sampled_from(sizes), min_size=2, max_size=2)))
    lo, hi = sorted((b1, b2))
    assert c.collective_time(kind, lo, g1) <= c.collective_time(kind, hi, g1)
    assert c.collective_time(kind, hi, g1) <= c.collective_time(kind, hi, g2)


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("call,match", [
    (lambda c: c.collective_time("all_reduce", 1e6, 17), "does not fit"),
    (lambda c: c.collective_time("all_reduce", 1e6, 12), "multiple of 8"),
    (lambda c: c.collective_time("all_reduce", -1, 8), ">= 0"),
    (lambda c: c.collective_time("all_reduce", float("nan"), 8), ">= 0"),
    (lambda c: c.collective_time("all_reduc", 1e6, 8), "did you mean 'all_reduce'"),
    (lambda c: c.collective_time("send_recv", 1e6, 4), "two devices"),
    (lambda c: c.collective_time("all_reduce", 1e6, [0, 0]), "repeated"),
    (lambda c: c.collective_time("all_reduce", 1e6, [0, 16]), "outside"),
    (lambda c: c.collective_time("all_reduce", 1e6, 0), "does not fit"),
    (lambda c: c.collective_time("all_reduce", 1e6, "8"), "int"),
])
def test_bad_input_raises_with_a_fix(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CodaError, match=match):
        call(cluster("dgx-a100", 16))


def test_bad_cluster_input() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'dgx-a100'"):
        cluster("dgx-a10", 8)
    with pytest.raises(ConfigError, match="multiple of 8"):
        cluster("dgx-h100", 12)
    with pytest.raises(ConfigError, match="at most 4096"):
        cluster("tpuv4-pod", 8192)
    with pytest.raises(ConfigError, match="positive"):
        cluster("dgx-a100", 0)
    with pytest.raises(ConfigError, match="efficiency"):
        Level("x", 8, 1e9, efficiency=1.5)
    with pytest.raises(ConfigError, match="must equal n_devices"):
        Cluster("d", 16, (Level("x", 8, 1e9),))
    with pytest.raises(ConfigError, match="multiple of"):
        Cluster("d", 12, (Level("x", 8, 1e9), Level("y", 12, 1e9)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cluster("dgx-a100", 8).n_devices = 4  # type: ignore[misc]


# ---------------------------------------------------------------- calibration and accuracy


@pytest.fixture(scope="module")
def accuracy():  # type: ignore[no-untyped-def]
    sections = collectives_report()
    assert len(sections) == 2
    return sections[0][1]


def test_report_has_fit_and_held_out_rows(accuracy) -> None:  # type: ignore[no-untyped-def]
    assert set(accuracy["split"]) == {"fit", "held out"}
    assert set(accuracy["system"]) == {"a100_dgx", "h100_dgx"}
    assert (accuracy.query("collective == 'all_reduce' and workers == 4")["split"] == "held out").all()


def test_accuracy_target_on_single_node_groups(accuracy) -> None:  # type: ignore[no-untyped-def]
    """Median APE <= 10% over sizes >= 1 MiB for every single-node group, fitted or held out."""
    single = accuracy[accuracy["nodes"] == 1]
    assert len(single[single["split"] == "held out"]) == 2
    assert (single["median_ape_%_>=1MiB"] <= 10).all(), single


def test_accuracy_of_fitted_multi_node_rows(accuracy) -> None:  # type: ignore[no-untyped-def]
    multi = accuracy[(accuracy["nodes"] > 1) & (accuracy["split"] == "fit")]
    assert len(multi) == 4
    assert (multi["median_ape_%_>=1MiB"] <= 10).all(), multi


def test_accuracy_check_can_fail() -> None:
    """A 30% slower NVSwitch level breaks the target: the metric is sensitive to the physics."""
    c = cluster("dgx-a100", 8)
    slow = dataclasses.replace(c, levels=(dataclasses.replace(c.levels[0], efficiency=c.levels[0].efficiency * 0.7),))
    m = measurements("a100_dgx", "all_reduce").query("num_workers == 8 and n_nodes == 1 and size >= 2**20")
    for cl, ok in ((c, True), (slow, False)):
        cost = cl.collective_cost("all_reduce", 8)
        ape = (abs((cost.latency_s + cost.s_per_byte * m["size"]) / m["time_s"] - 1)).median() * 100
        assert (ape <= 10) == ok


def test_fit_file_is_reproduced_byte_for_byte() -> None:
    assert dumps_params(fit_params()) == fit_path().read_text()


def test_hash_mismatch_is_refused() -> None:
    params = json.loads(fit_path().read_text())
    assert params["data_sha256"] == data_sha256()
    params["data_sha256"] = "0" * 64
    with pytest.raises(CodaError, match="refit"):
        load_fitted_params(json.dumps(params))
    with pytest.raises(CodaError, match="JSON"):
        load_fitted_params("{not json")


def test_shipped_data_is_the_vidur_subset() -> None:
    m = measurements()
    assert set(m["system"]) == {"a100_dgx", "h100_dgx"} and set(m["collective"]) == {"all_reduce", "send_recv"}
    assert m["time_s"].between(1e-6, 1.0).all()  # milliseconds were converted
    assert (m.query("system == 'a100_dgx' and collective == 'all_reduce'")["n_nodes"] == 2).any()
    src = Path("/work/shared/data/vidur/network/a100_dgx/all_reduce.csv")
    if src.exists():
        import pandas as pd

        raw = pd.read_csv(src)
        ours = m.query("system == 'a100_dgx' and collective == 'all_reduce'")
        assert len(raw) == len(ours)
        assert sorted(raw["time_stats.all_reduce.median"] * 1e-3) == pytest.approx(sorted(ours["time_s"]))
