"""Schedule cache (memory and disk), Chrome trace and timeline export."""

import json

import pytest

from coda import models
from coda.arch.accelerators import Accelerator, tpuv4_like
from coda.ilp import ScheduleCache, roofline_latencies, schedule
from coda.ilp.schedule import Schedule
from coda.units import MiB


@pytest.fixture(scope="module")
def layer():
    g = models.build(models.get("gpt3-175b"), "backward", batch=1, seq_len=2048, tp=8).layers[1][0]
    return g, roofline_latencies(g, tpuv4_like())


def test_memory_cache_hits_and_keys(layer):
    g, lat = layer
    cache = ScheduleCache()
    first = schedule(g, tpuv4_like(), lat, cache=cache)
    again = schedule(g, tpuv4_like(), lat, cache=cache)
    assert again == first
    assert cache.stats.hits == 1 and cache.stats.misses == 1 and cache.stats.hit_rate == 0.5
    # another design with the same core counts and latencies shares the entry, under its own name
    twin = Accelerator(n_tc=8, tc_rows=128, tc_cols=128, n_vc=2, vc_lanes=128, glb_bytes=64 * MiB, name="twin")
    assert schedule(g, twin, lat, cache=cache).design == "twin"
    assert cache.stats.hits == 2
    # different latencies or options miss
    slower = {k: type(v)(v.core_type, 2 * v.one_core_s, 2 * v.all_cores_s) for k, v in lat.items()}
    schedule(g, tpuv4_like(), slower, cache=cache)
    schedule(g, tpuv4_like(), lat, cache=cache, fuse=False)
    assert cache.stats.misses == 3 and len(cache) == 3


def test_disk_cache_survives_a_new_process(layer, tmp_path):
    g, lat = layer
    first = schedule(g, tpuv4_like(), lat, cache=ScheduleCache(tmp_path))
    fresh = ScheduleCache(tmp_path)
    again = schedule(g, tpuv4_like(), lat, cache=fresh)
    assert fresh.stats.disk_hits == 1 and again == first
    (next(tmp_path.glob("*.json"))).write_text("{not json")
    broken = ScheduleCache(tmp_path)
    assert schedule(g, tpuv4_like(), lat, cache=broken) == first  # unreadable entry: solved again
    assert broken.stats.misses == 1


def test_round_trip_dict(layer):
    g, lat = layer
    s = schedule(g, tpuv4_like(), lat)
    assert Schedule.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_chrome_trace_is_valid_json_with_one_track_per_core(layer, tmp_path):
    g, lat = layer
    s = schedule(g, tpuv4_like(), lat)
    path = tmp_path / "trace.json"
    trace = s.to_chrome_trace(path)
    assert json.loads(path.read_text())["traceEvents"] == json.loads(json.dumps(trace["traceEvents"]))
    events = trace["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert len(set(names.values())) == len(names)
    used = {c for e in s.ops for c in e.cores}
    assert used <= set(names.values())
    complete = [e for e in events if e["ph"] == "X"]
    assert complete and all(e["dur"] >= 0 and e["ts"] >= 0 and e["tid"] in names for e in complete)
    assert len(complete) == sum(len(e.cores) for e in s.ops)
    instants = [e for e in events if e["ph"] == "i"]
    assert {e["name"] for e in instants} == {"mlp.input_all_reduce", "attn.input_all_reduce"}
    assert max(e["ts"] + e["dur"] for e in complete) == pytest.approx(s.makespan_s * 1e6)


def test_timeline_png(layer, tmp_path):
    pytest.importorskip("matplotlib")
    g, lat = layer
    path = tmp_path / "timeline.png"
    schedule(g, tpuv4_like(), lat).plot_timeline(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
