"""`coda experiment list | run`: the listing, and bad input refused in one line before any work."""

from __future__ import annotations

import pytest

from coda.cli import main


def test_list(capsys):
    assert main(["experiment", "list"]) == 0
    out = capsys.readouterr().out
    assert "phaze-training" in out and "per_model.csv" in out and "--quick" in out


@pytest.mark.parametrize("argv, needle", [
    (["experiment", "run", "phaze"], "unknown experiment 'phaze'; did you mean 'phaze-training'"),
    (["experiment", "run", "phaze-training", "--jobs", "0"], "jobs"),
    (["experiment", "run", "phaze-training", "--timer", "fast"], "--timer"),
    (["experiment", "run", "phaze-training", "--executor", "gpu"], "--executor"),
])
def test_bad_input_one_line(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("coda: error:") and err.count("\n") == 1 and needle in err


def test_bad_paths_one_line_and_nothing_written(capsys, tmp_path):
    (tmp_path / "file").write_text("not a store")
    cases = [(["--out", str(tmp_path / "file")], "is a file"),
             (["--out", str(tmp_path / "missing" / "x")], "does not exist"),
             (["--out", str(tmp_path / "o"), "--store", str(tmp_path / "file")], "file")]
    for extra, needle in cases:
        assert main(["experiment", "run", "phaze-training", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("coda: error:") and err.count("\n") == 1 and needle in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_help_states_defaults(capsys):
    with pytest.raises(SystemExit) as done:
        main(["experiment", "run", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--out", "--store", "--executor", "--jobs", "--quick", "--timer"):
        assert flag in out
