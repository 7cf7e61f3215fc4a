"""A cluster from its parts: `Cluster.from_parts`, the `--cluster` spec string, and the CLI."""

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.arch.cluster_parts import parse_spec
from coda.arch.clusters import Cluster, CollectiveKind, cluster, preset_description
from coda.cli import main
from coda.errors import ConfigError

KINDS = [k for k in CollectiveKind if k is not CollectiveKind.SEND_RECV]
GROUPS = (2, 8, 64, range(0, 64, 8), [0, 1, 8, 9])


@pytest.mark.parametrize("preset,gpu,intra,inter", [("dgx-h100", "h100-sxm", 450, 400),
                                                    ("dgx-a100", "a100-sxm4-80gb", 300, 200)])
def test_restated_preset_gives_the_same_costs(preset, gpu, intra, inter, caplog):
    """DGX H100 = 8 x H100-SXM, NVLink 4 at 450 GB/s each way, 8 x 400 Gb/s NICs; nothing borrowed."""
    ref = cluster(preset, 64)
    with caplog.at_level(logging.WARNING):
        parts = Cluster.from_parts(gpu=gpu, n_devices=64, gpus_per_node=8, intra_node_GBps=intra,
                                   inter_node_Gbps=inter)
    assert not caplog.records
    assert parts.levels == ref.levels and parts.collective_overhead_s == ref.collective_overhead_s
    for kind in KINDS:
        for group in GROUPS:
            assert parts.collective_cost(kind, group) == ref.collective_cost(kind, group), (kind, group)
    assert parts.collective_cost("send_recv", [0, 8]) == ref.collective_cost("send_recv", [0, 8])
    spec = cluster(f"{gpu}:8:nvlink={intra}GBps:ib={inter}Gbps", 64)
    assert spec.levels == ref.levels and spec.name == f"{gpu}:8:nvlink={intra}GBps:ib={inter}Gbps"


@settings(max_examples=30, deadline=None)
@given(intra=st.floats(1.0, 450.0), inter=st.floats(10.0, 3200.0), factor=st.floats(1.01, 3.0),
       kind=st.sampled_from(KINDS), n_bytes=st.floats(1e3, 1e10))
def test_collective_time_monotone_in_bandwidth(intra, inter, factor, kind, n_bytes):
    """More bandwidth on either level never makes a collective slower; strictly faster for large
    messages on the level that bounds it."""
    def t(a: float, b: float, group) -> float:
        c = Cluster.from_parts(gpu="h100-sxm", n_devices=32, gpus_per_node=8, intra_node_GBps=a,
                               inter_node_Gbps=b, intra_efficiency=0.8, inter_efficiency=0.9)
        return c.collective_time(kind, n_bytes, group)

    for group in (8, 32, range(0, 32, 8)):
        base = t(intra, inter, group)
        assert t(min(intra * factor, 450.0), inter, group) <= base
        assert t(intra, min(inter * factor, 3200.0), group) <= base
    if inter * factor <= 3200:  # one GPU per node at full NVLink: the network bounds the ring
        assert t(450.0, inter * factor, range(0, 32, 8)) < t(450.0, inter, range(0, 32, 8))
    assert t(min(intra * factor, 450.0), inter, 8) < t(intra, inter, 8) or intra * factor > 450.0


def test_h800_and_fewer_nics_warn_what_is_borrowed(caplog):
    with caplog.at_level(logging.WARNING, logger="coda.arch.cluster_parts"):
        h800 = cluster("h100-sxm:8:nvlink=200GBps:ib=400Gbps", 64)
    assert "nvswitch, measured at 450 GB/s, applied at 200 GB/s" in caplog.text
    assert "infiniband" not in caplog.text  # 400 Gb/s per GPU is the DGX H100's own network
    assert [lv.bw_each_way_bytes_per_s for lv in h800.levels] == [200e9, 50e9]
    assert "borrowed" in h800.levels[0].source and "borrowed" not in h800.levels[1].source
    dgx = cluster("dgx-h100", 64)
    assert h800.collective_time("all_reduce", 2**30, 8) > dgx.collective_time("all_reduce", 2**30, 8)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="coda.arch.cluster_parts"):
        half = Cluster.from_parts("a100-sxm4-80gb", 64, 8, 300, 100)  # 4 x 200 Gb/s HDR for 8 GPUs
    assert "inter-node efficiency and latency of dgx-a100 infiniband" in caplog.text
    assert half.collective_time("all_reduce", 2**30, range(0, 64, 8)) == pytest.approx(
        2 * cluster("dgx-a100", 64).collective_time("all_reduce", 2**30, range(0, 64, 8)), rel=0.01)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="coda.arch.cluster_parts"):
        Cluster.from_parts("v100-pcie-32gb", 4, 4, 32)
    assert "v100-pcie-32gb is volta" in caplog.text


def test_given_parameters_replace_the_defaults(caplog):
    with caplog.at_level(logging.WARNING, logger="coda.arch.cluster_parts"):
        c = cluster("h100-sxm:8:nvlink=200GBps:ib=400Gbps:nvlink-eff=0.7:nvlink-lat=2us:ib-lat=500ns", 16)
    assert not caplog.records  # nothing left to borrow
    nv, ib = c.levels
    assert (nv.efficiency, nv.p2p_efficiency, nv.latency_s, nv.p2p_latency_s) == (0.7, 0.7, 2e-6, 2e-6)
    assert ib.latency_s == pytest.approx(5e-7) and ib.efficiency == 0.94
    one = Cluster.from_parts("h100-sxm", 4, 8, 450)  # one node: one level, no network needed
    assert [lv.size for lv in one.levels] == [4] and Cluster.from_parts("h100-sxm", 1, 8, 450).levels == ()


def test_spec_units():
    assert parse_spec("h100-sxm:8:nvlink=0.45TBps:ib=3.2Tbps") == dict(
        gpu="h100-sxm", gpus_per_node=8, intra_node_GBps=pytest.approx(450), inter_node_Gbps=pytest.approx(3200))
    assert parse_spec("h100-sxm:8:intra=450GB/s:inter=50GBps")["inter_node_Gbps"] == pytest.approx(400)
    desc = preset_description("h100-sxm:8:nvlink=450GBps:ib=400Gbps")
    assert desc["device_kind"] == "gpu" and desc["device"] == "h100-sxm" and len(desc["levels"]) == 2


@pytest.mark.parametrize("spec,n,match", [
    ("h100-sxm:8:nvlink=900GBps:ib=400Gbps", 16, "bidirectional"),
    ("h100-sxm:8:nvlink=450:ib=400Gbps", 16, "unit"),
    ("h100-sxm:eight:nvlink=450GBps", 8, "whole number"),
    ("h100-sxm:8:nvlink=450GBps:nvlink=400GBps", 8, "twice"),
    ("h100-sxm:8:nvswitch=450GBps", 8, "not one of"),
    ("h100-sxm:8", 8, "at least"),
    ("h100-sxm:8:ib=400Gbps", 16, "intra-node"),
    ("h100-sxm:8:nvlink=450GBps", 16, "inter_node_Gbps"),
    ("h100-sxm:8:nvlink=450GBps:ib=400Gbps", 12, "whole nodes"),
    ("h100-sxm:8:nvlink=450GBps:ib=400Gbps:ib-eff=1.5", 16, "inter_efficiency"),
    ("h100-sxm:8:nvlink=450GBps:ib=9000Gbps", 16, "inter_node_Gbps"),
    ("l4:4:nvlink=100GBps", 4, "PCIe"),
    ("h200x:8:nvlink=450GBps", 8, "unknown gpu"),
])
def test_bad_parts_are_refused(spec, n, match):
    with pytest.raises(ConfigError, match=match):
        cluster(spec, n)


def test_spec_device_conflict():
    with pytest.raises(ConfigError, match="one place"):
        cluster("h100-sxm:8:nvlink=450GBps", 8, device="a100-sxm4-80gb")
    assert cluster("h100-sxm:8:nvlink=450GBps", 8, device="h100-sxm").device_name == "h100-sxm"


def test_cli_shows_and_refuses(capsys):
    assert main(["hardware", "clusters", "--spec", "h100-sxm:8:nvlink=200GBps:ib=400Gbps", "--devices", "32"]) == 0
    out = capsys.readouterr().out
    assert "nvswitch" in out and "infiniband" in out and "200" in out
    assert main(["hardware", "clusters", "--spec", "h100-sxm:8:nvlink=450"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("coda: error:") and "unit" in err and len(err.strip().splitlines()) == 1
    assert main(["hardware", "clusters", "--spec", "h100-sxm:8:nvlink=900GBps"]) == 2
    assert "bidirectional" in capsys.readouterr().err
    assert main(["hardware", "clusters", "--devices", "16"]) == 2
