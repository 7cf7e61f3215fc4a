"""`phaze-training --quick`: the files are produced and consistent with each other, and a re-run resumes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

import coda.experiments as experiments  # noqa: E402
from coda.experiments.family import geomean  # noqa: E402
from coda.experiments.outputs import FLOAT_FORMAT  # noqa: E402
from coda.experiments.phaze_training import WORKLOADS  # noqa: E402

MODELS = [w.model for w in WORKLOADS]
TABLES = ("per_model", "family", "sensitivity", "pareto")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("phaze")
    store = out.parent / "phaze.sqlite"
    frames = experiments.run("phaze-training", out=out, store=store, quick=True, jobs=2)
    return out, store, frames


def _md_tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table of `text` as rows of cells (header first, the --- line dropped)."""
    tables, cur = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                cur.append([c.strip().replace("\\|", "|") for c in line.strip()[1:-1].split(" | ")])
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def _cell(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else FLOAT_FORMAT.format(v)
    return str(v)


def test_files_and_library_frames(quick):
    out, _, frames = quick
    for name in ("results.md", "pareto.png", "command.txt", "metadata.json", *(f"{t}.csv" for t in TABLES)):
        assert (out / name).stat().st_size > 0, name
    assert set(TABLES) <= set(frames)
    meta = json.loads((out / "metadata.json").read_text())
    from coda import __version__

    assert meta["coda_version"] == __version__ and meta["timer"] == "predictor" and meta["quick"] is True
    assert "coda.experiments.run('phaze-training'" in (out / "command.txt").read_text()
    assert meta["answer"] in (out / "results.md").read_text()


def test_markdown_equals_csv(quick):
    out, _, _ = quick
    md = {tuple(t[0]): t[1:] for t in _md_tables((out / "results.md").read_text())}
    for stem in TABLES:
        df = pd.read_csv(out / f"{stem}.csv", keep_default_na=True)
        rows = md[tuple(df.columns)]
        assert len(rows) == len(df), stem
        for got, (_, want) in zip(rows, df.iterrows()):
            assert got == [_cell(v) for v in want], stem


def test_family_winner_evaluated_for_all_five(quick):
    out, _, _ = quick
    fam = pd.read_csv(out / "family.csv")
    win = fam.iloc[0]
    assert win["rank"] == "1"
    assert all(win[m] > 0 and np.isfinite(win[m]) for m in MODELS)
    pm = pd.read_csv(out / "per_model.csv")
    rows = pm[pm["role"] == "best for all five"]
    assert sorted(rows["model"]) == sorted(MODELS) and set(rows["name"]) == {win["name"]}
    for m in MODELS:  # the per-model table holds the same numbers as the family table
        assert float(rows[rows["model"] == m]["tokens_per_s_per_w"].iloc[0]) == pytest.approx(win[m], rel=1e-12)
        best = pm[(pm["model"] == m) & (pm["role"] == "best for model")]["tokens_per_s_per_w"].iloc[0]
        assert best >= win[m] * (1 - 1e-12)  # no single design beats the per-model best
    designs = pm[~pm["role"].str.startswith("GPU")]
    assert designs["tensor_cores"].notna().all() and designs["vector_cores"].notna().all()
    designs = fam[~fam["rank"].isin(["ref", "gpu"])]
    assert (designs["geomean"].diff().dropna() <= 1e-12).all()  # ranked


def test_ratios_recomputed_from_columns(quick):
    out, _, _ = quick
    pm = pd.read_csv(out / "per_model.csv")
    for m in MODELS:
        sub = pm[pm["model"] == m]
        ref = sub[sub["name"] == "tpuv4"].iloc[0]
        assert np.allclose(sub["tokens_per_s_vs_tpuv4"], sub["tokens_per_s"] / ref["tokens_per_s"], rtol=1e-12)
        assert np.allclose(sub["per_w_vs_tpuv4"], sub["tokens_per_s_per_w"] / ref["tokens_per_s_per_w"], rtol=1e-12)
        assert {"tpuv4-like", "tpuv4", "a100-sxm4-80gb", "h100-sxm"} <= set(sub["name"])
    fam = pd.read_csv(out / "family.csv")
    g = np.array([geomean(r) for r in fam[MODELS].to_numpy(float)])
    assert np.allclose(fam["geomean"], g, rtol=1e-12)
    faithful = fam[fam["name"] == "tpuv4"]["geomean"].iloc[0]
    assert np.allclose(fam["geomean_vs_tpuv4"], fam["geomean"] / faithful, rtol=1e-12)
    sens = pd.read_csv(out / "sensitivity.csv")
    assert sens.iloc[0]["constant"] == "baseline" and bool(sens.iloc[0]["same_winner"])
    assert sens.iloc[0]["winner"] == fam.iloc[0]["name"]
    assert sens.iloc[0]["winner_vs_tpuv4"] == pytest.approx(fam.iloc[0]["geomean_vs_tpuv4"], rel=1e-12)
    assert len(sens) == 11 and sens["source"].iloc[1:].str.len().min() > 10


def test_rerun_resumes_from_store(quick, tmp_path):
    out, store, frames = quick
    again = experiments.run("phaze-training", out=tmp_path, store=store, quick=True, jobs=1)
    meta = json.loads((tmp_path / "metadata.json").read_text())
    first = json.loads((out / "metadata.json").read_text())
    if meta["cost_model_digest"] != first["cost_model_digest"]:
        pytest.skip("the package's code changed between the two runs (another edit in this work tree), so the store "
                    "keys differ by design")
    for stem in TABLES:
        pd.testing.assert_frame_equal(again[stem], frames[stem])
    assert all(c["evaluated"] == 0 for c in meta["searches"].values())
    assert meta["family"]["evaluated"] == 0


def test_bad_options_refused_before_work(tmp_path):
    from coda.errors import ConfigError, UnknownNameError

    with pytest.raises(UnknownNameError, match="phaze-training"):
        experiments.run("phaze", out=tmp_path)
    with pytest.raises(ConfigError, match="jobs"):
        experiments.run("phaze-training", out=tmp_path, jobs=0)
    with pytest.raises(ConfigError, match="timer"):
        experiments.run("phaze-training", out=tmp_path, timer="fast")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        experiments.run("phaze-training", out=tmp_path / "f")
    with pytest.raises(ConfigError, match="does not exist"):
        experiments.run("phaze-training", out=tmp_path / "a" / "b")
    with pytest.raises(ConfigError):  # not a coda store
        experiments.run("phaze-training", out=tmp_path, store=tmp_path / "f")
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["f"]
