"""Calibration plumbing: standard errors, tolerances, holds, output paths, user calibration files."""

import json
import logging
from dataclasses import fields, replace

import numpy as np
import pytest

from coda.cli import main
from coda.errors import ConfigError
from coda.predictor import calibrate, gpu_tiles
from coda.predictor.gpu_tiles import (
    CALIBRATION_ENV,
    AttentionParams,
    GemmParams,
    GPUTileModel,
    StreamParams,
    load_calibration_file,
    shipped_calibration,
)
from coda.predictor.identifiability import param_differences, prediction_differences, uncertainty


def test_standard_errors_match_ordinary_least_squares():
    """For a linear model the Gauss-Newton covariance is exact: s^2 (X^T X)^-1."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, 200)
    jac = np.column_stack([np.ones_like(x), x])
    y = 1.0 + 0.5 * x + rng.normal(0, 0.3, x.size)
    beta, *_ = np.linalg.lstsq(jac, y, rcond=None)
    r = jac @ beta - y
    se, corr, _ = uncertainty(jac, float(r @ r), beta, np.ones(2))
    s2 = r @ r / (x.size - 2)
    expected = np.sqrt(np.diag(s2 * np.linalg.inv(jac.T @ jac)))
    np.testing.assert_allclose(se, expected, rtol=1e-10)
    assert corr[0, 1] == pytest.approx(corr[1, 0]) and -1 < corr[0, 1] < 0


def test_a_parameter_the_data_cannot_see_has_an_infinite_standard_error():
    jac = np.column_stack([np.linspace(0, 1, 50), np.zeros(50)])
    se, _, sens = uncertainty(jac, 1.0, np.array([1.0, 1.0]), np.ones(2))
    assert np.isfinite(se[0]) and se[1] == np.inf and sens[1] == 0


def test_tolerances_flag_real_differences_only():
    ref = shipped_calibration().flat_params()
    assert param_differences(ref, ref) == []
    near = {g: {k: v * (1 + 5e-4) for k, v in p.items()} for g, p in ref.items()}
    assert param_differences(near, ref) == []
    far = {**ref, "gemm.tensor": {**ref["gemm.tensor"], "u_max": ref["gemm.tensor"]["u_max"] * 1.002}}
    assert param_differences(far, ref) == [f"gemm.tensor.u_max: {far['gemm.tensor']['u_max']:.6g} vs "
                                           f"{ref['gemm.tensor']['u_max']:.6g}"]
    zero = {**ref, "gemm.simt": {**ref["gemm.simt"], "k0": 5e-4}}  # k0 is 0: absolute tolerance 1e-3
    assert param_differences(zero, ref) == []
    pred = np.array([1.0, 2.0, 3.0])
    assert prediction_differences(pred * (1 + 9e-4), pred, ["a", "b", "c"]) == []
    assert prediction_differences(pred * np.array([1, 1.002, 1]), pred, ["a", "b", "c"])[0].startswith("1 of 3")


def test_every_hold_names_a_field_and_ties_point_at_earlier_fitted_parameters():
    names = {"attention": AttentionParams, "gemm": GemmParams, "stream": StreamParams}
    for group, held in calibrate.HOLDS.items():
        params = names[group.split(".")[0]]
        for name, hold in held.items():
            assert name in {f.name for f in fields(params)} and hold.reason, (group, name)
            assert hold.status in ("fixed", "tied")
            if hold.status == "fixed":
                lo, hi, _ = {AttentionParams: calibrate.ATTENTION_BOUNDS, GemmParams: calibrate.GEMM_BOUNDS,
                             StreamParams: calibrate.STREAM_BOUNDS}[params][name]
                assert lo <= hold.value <= hi or name == "mem_eff", (group, name)
            else:
                assert calibrate.get_param(shipped_calibration(), hold.tie) > 0
                assert hold.tie.rsplit(".", 1)[1] not in calibrate.holds(hold.tie.rsplit(".", 1)[0])


def test_shipped_file_respects_its_holds():
    cal = shipped_calibration()
    for group in cal.flat_params():
        for name, hold in calibrate.holds(group).items():
            want = hold.value if hold.status == "fixed" else calibrate.get_param(cal, hold.tie)
            assert calibrate.get_param(cal, f"{group}.{name}") == pytest.approx(want, rel=1e-5), (group, name)


def test_calibrate_refuses_a_bad_output_path_before_fitting(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(calibrate, "fit_report", lambda **_: pytest.fail("fitted before checking --out"))
    assert main(["calibrate", "--out", str(tmp_path / "missing" / "gpu_tiles.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("coda: error: --out") and "does not exist" in err and "\n" not in err
    assert main(["calibrate", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_calibrate_writes_where_asked_never_into_the_package(tmp_path, capsys, monkeypatch):
    cal = shipped_calibration()
    monkeypatch.setattr(calibrate, "fit_report", lambda **_: (cal, []))
    shipped = gpu_tiles.calibration_path().read_text()
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate"]) == 0
    assert (tmp_path / "gpu_tiles.json").read_text() == cal.to_json()
    assert gpu_tiles.calibration_path().read_text() == shipped
    assert main(["calibrate", "--check"]) == 0
    assert "reproduces the shipped calibration" in capsys.readouterr().err
    (tmp_path / "gpu_tiles.json").unlink()
    assert main(["calibrate", "--report", "--json"]) == 0  # a report writes nothing unless --out is given
    assert not (tmp_path / "gpu_tiles.json").exists()
    assert main(["calibrate", "--report", "--json", "--out", "fit.json"]) == 0
    assert (tmp_path / "fit.json").read_text() == cal.to_json()


def test_calibrate_check_fails_on_a_different_fit(capsys, monkeypatch):
    cal = shipped_calibration()
    ampere = cal.gemm["tensor.ampere"]
    other = replace(cal, gemm={**cal.gemm, "tensor.ampere": replace(ampere, u_max=ampere.u_max * 0.9)})
    monkeypatch.setattr(calibrate, "fit_report", lambda **_: (other, []))
    assert main(["calibrate", "--check"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("coda: error")]
    assert len(err) == 1 and "gemm.tensor.ampere.u_max" in err[0] and "predictions differ" in err[0]


def _write(path, cal):
    path.write_text(cal.to_json())
    return path


def test_user_calibration_from_the_environment(tmp_path, monkeypatch, caplog):
    cal = shipped_calibration()
    slow = replace(cal, stream={**cal.stream, "softmax": replace(cal.stream["softmax"], launch_s=1e-3)})
    path = _write(tmp_path / "mine.json", slow)
    from coda.models import ops as O

    op = O.softmax(64, 1024, "fp16")
    base = GPUTileModel.default().predict([op], "a100-sxm4-80gb")[0]
    monkeypatch.setenv(CALIBRATION_ENV, str(path))
    with caplog.at_level(logging.WARNING, logger="coda.predictor.gpu_calibration"):
        model = GPUTileModel.default()
    assert f"user GPU tile calibration {path}" in caplog.text
    assert model.calibration == slow and model is GPUTileModel.default()
    assert model.predict([op], "a100-sxm4-80gb")[0] > base + 9e-4
    assert GPUTileModel.from_file(path).calibration == slow
    monkeypatch.delenv(CALIBRATION_ENV)
    assert GPUTileModel.default().calibration == cal


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(schema="other/1"), "schema"),
    (lambda d: d.update(data_sha256="0" * 64), "coda calibrate"),
    (lambda d: d["gemm"]["tensor"].update(bogus=1.0), "unknown keys \\['bogus'\\]"),
    (lambda d: d["attention"].pop("u_max"), "missing keys \\['u_max'\\]"),
    (lambda d: d["stream"]["norm"].update(sat="fast"), "sat must be finite numbers"),
])
def test_a_bad_user_calibration_is_one_line_naming_the_file(tmp_path, edit, match):
    d = json.loads(shipped_calibration().to_json())
    edit(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=match) as err:
        load_calibration_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_calibration_file(tmp_path / "absent.json")
