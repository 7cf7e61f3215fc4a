"""A search gives the same frame on an idle and a busy machine (the ILP stops on a node budget, not
the wall clock), and its store never returns a row computed with other cost constants."""

import multiprocessing as mp
import time

import pytest

from coda.arch.accelerators import Accelerator
from coda.arch.design_space import DesignSpace
from coda.errors import ConfigError
from coda.predictor.gpu_tiles import CALIBRATION_ENV
from coda.runs.store import cost_model_digest
from coda.search import SearchLayerTime, search
from coda.units import MiB

# Two 256x256 tensor cores: bert-large's backward blocks need branch and bound on this design
# (5 of its 32 layer schedules solve a MILP), unlike most designs, where the list heuristic meets
# a lower bound.
SPACE = DesignSpace(n_tc=(2,), tc_rows=(256,), tc_cols=(256,), n_vc=(2,), glb_bytes=(128 * MiB,), max_area_mm2=1e4,
                    min_area_fraction=0)
CHOICES = {"tp": (1, 2), "micro_batch": (1,), "recompute": ("none",), "zero": (0,)}


def _run(**kw):
    return search("bert-large", SPACE, 4, 16, 512, executor="inline", layer_time=SearchLayerTime(), choices=CHOICES,
                  **kw)


def _spin(stop_at: float) -> None:
    while time.perf_counter() < stop_at:
        pass


def test_same_frame_idle_and_under_load():
    idle = _run()
    hogs = [mp.get_context("spawn").Process(target=_spin, args=(time.perf_counter() + 60,), daemon=True)
            for _ in range(3)]
    for h in hogs:
        h.start()
    try:
        busy = _run()
    finally:
        for h in hogs:
            h.terminate()
            h.join()
    drop = ["seconds"]
    assert idle.frame.drop(columns=drop).equals(busy.frame.drop(columns=drop))
    assert idle.counts()["ilp_clock_limited"] == 0 and idle.counts()["ilp_solver_errors"] == 0


def test_changed_power_constant_is_not_read_from_the_store(tmp_path, monkeypatch):
    store = tmp_path / "runs.sqlite"
    first = _run(store=store)
    assert first.n_evaluated == 1
    assert _run(store=store).n_cached == 1  # unchanged constants: read back
    original = Accelerator.power_breakdown
    monkeypatch.setattr(Accelerator, "power_breakdown", lambda self: {k: 1.1 * v for k, v in original(self).items()})
    assert _run(store=store).n_cached == 0  # another power model: evaluated again


def test_digest_follows_every_cost_file_and_the_user_calibration(tmp_path, monkeypatch):
    (tmp_path / "arch").mkdir()
    (tmp_path / "cli").mkdir()
    power = tmp_path / "arch" / "power.py"
    power.write_text("HBM_PJ_PER_BIT = 3.9\n")
    (tmp_path / "arch" / "table.json").write_text("{}")
    (tmp_path / "cli" / "search.py").write_text("# the command line does not change a result\n")
    monkeypatch.delenv(CALIBRATION_ENV, raising=False)
    base = cost_model_digest(tmp_path)
    (tmp_path / "cli" / "search.py").write_text("# edited\n")
    assert cost_model_digest(tmp_path) == base
    power.write_text("HBM_PJ_PER_BIT = 5.0\n")
    changed = cost_model_digest(tmp_path)
    assert changed != base
    (tmp_path / "arch" / "table.json").write_text('{"sram_pj": 1}')
    assert cost_model_digest(tmp_path) != changed
    cal = tmp_path / "my_cal.json"
    cal.write_text("{}")
    monkeypatch.setenv(CALIBRATION_ENV, str(cal))
    with_cal = cost_model_digest(tmp_path)
    cal.write_text('{"x": 1}')
    assert cost_model_digest(tmp_path) != with_cal
    monkeypatch.setenv(CALIBRATION_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="cannot be read"):
        cost_model_digest(tmp_path)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_node_limit_is_checked(bad):
    with pytest.raises(ConfigError, match="node_limit"):
        SearchLayerTime(node_limit=bad)


def test_another_technology_is_not_read_from_the_store(tmp_path):
    import dataclasses

    from coda.arch.technology import DEFAULT_TECHNOLOGY

    store = tmp_path / "runs.sqlite"
    assert _run(store=store).n_evaluated == 1
    other = dataclasses.replace(SPACE, technology=dataclasses.replace(DEFAULT_TECHNOLOGY, name="other",
                                                                     link_pj_per_bit=6.0))
    res = search("bert-large", other, 4, 16, 512, executor="inline", layer_time=SearchLayerTime(), choices=CHOICES,
                 store=store)
    assert res.n_cached == 0 and res.n_evaluated == 1
