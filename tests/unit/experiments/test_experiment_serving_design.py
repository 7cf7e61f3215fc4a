"""`serving-design --quick`: the files are produced and agree with each other and with the search, and a re-run
resumes from the store."""

import json

import pandas as pd
import pytest

import coda.experiments as experiments
from coda import __version__
from coda.experiments.serving_design import CASES, quick_space


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("serving-design")
    store = out.parent / "serving-design.sqlite"
    frames = experiments.run("serving-design", out=out, store=store, quick=True, jobs=1, executor="inline")
    return out, store, frames


def test_registered():
    names = list(experiments.list_experiments()["name"])
    assert "serving-design" in names and "phaze-training" in names


def test_files_and_frames(quick):
    out, _, frames = quick
    for name in ("designs.csv", "deployments.csv", "capacity_per_watt.png", "results.md", "command.txt",
                 "metadata.json"):
        assert (out / name).stat().st_size > 0, name
    designs = pd.read_csv(out / "designs.csv")
    assert list(designs["workload"].unique()) == [c.name for c in CASES]
    n = len(quick_space())
    for c in CASES:
        mine = designs[designs["workload"] == c.name]
        assert (mine["kind"] == "design").sum() == n
        assert set(mine.loc[mine["kind"] != "design", "chip"]) == {"tpuv4", "tpuv4-like", "a100-sxm4-80gb", "h100-sxm"}
        best = mine[mine["kind"] == "design"].iloc[0]
        assert best["status"] == "ok" and bool(best["exact"])
        # per watt is capacity x output tokens / (devices x TDP), from the columns
        assert best["tokens_per_s_per_watt"] == pytest.approx(best["capacity_qps"] * c.output /
                                                              (best["n_devices"] * best["tdp_w"]), rel=1e-12)
    lib = frames["designs"].reset_index(drop=True)
    assert list(lib["reason"]) == list(designs["reason"].fillna(""))  # the CSV reads an empty reason as NaN
    pd.testing.assert_frame_equal(lib.drop(columns="reason"), designs.drop(columns="reason"), check_dtype=False,
                                  check_exact=False, rtol=1e-12)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["coda_version"] == __version__ and meta["quick"] is True and meta["space"] == n
    md = (out / "results.md").read_text()
    assert meta["answer"] in md and meta["answer"].startswith("Best chip per watt for llama3-8b")
    for c in CASES:
        assert f"## {c.name}" in md


def test_rerun_resumes_from_store(quick, tmp_path):
    out, store, frames = quick
    again = experiments.run("serving-design", out=tmp_path, store=store, quick=True, jobs=1, executor="inline")
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert all(c["evaluated"] == 0 and c["cached"] > 0 for c in meta["counts"].values())
    pd.testing.assert_frame_equal(again["designs"], frames["designs"])
