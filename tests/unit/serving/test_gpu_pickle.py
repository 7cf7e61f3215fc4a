"""The GPU catalog entries cross process boundaries (process pools, Ray): pickling round-trips them,
their citations included, and the host link (the KV swap's path) is cited for every GPU."""

import copy
import pickle

import pytest

from coda.arch.clusters import cluster
from coda.arch.gpus import gpu, list_gpus


@pytest.mark.parametrize("name", list_gpus())
def test_gpu_pickle_round_trip_equals(name):
    g = gpu(name)
    back = pickle.loads(pickle.dumps(g))
    assert back == g and hash(back) == hash(g)
    assert dict(back.sources) == dict(g.sources)
    with pytest.raises(TypeError):
        back.sources["tdp_w"] = "changed"  # still a read-only view
    assert copy.deepcopy(g) == g


def test_cluster_of_gpus_pickles():
    c = cluster("dgx-h100", 16)
    assert pickle.loads(pickle.dumps(c)) == c


@pytest.mark.parametrize("name,each_way", [("a100-sxm4-80gb", 32e9), ("h100-sxm", 64e9), ("h200", 64e9),
                                           ("t4", 16e9)])
def test_host_link_is_pcie_x16_per_direction(name, each_way):
    g = gpu(name)
    assert g.host_link_bw_each_way_bytes_per_s == each_way
    assert "PCIe" in g.source("host_link_bw_bidir_bytes_per_s")
