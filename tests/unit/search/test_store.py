"""The result store refuses what is not a coda store, a damaged store and unwritable places, before any work,
and writes nothing it refuses (issue #12)."""

import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from coda.cli import main
from coda.errors import ConfigError
from coda.runs.store import APPLICATION_ID, SCHEMA_VERSION
from coda.search import ResultStore, check_output_path

CODA = str(Path(sys.executable).with_name("coda"))
TINY = ["search", "--model", "gpt2", "--devices", "16", "--global-batch", "64", "--seq-len", "512", "--n-tc", "2,8",
        "--n-vc", "1", "--tc-rows", "128", "--tc-cols", "128", "--glb-mib", "32", "--min-area-fraction", "0",
        "--timer", "predictor", "--executor", "inline"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def marker(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as con:
        return con.execute("PRAGMA application_id").fetchone()[0], con.execute("PRAGMA user_version").fetchone()[0]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coda: error: ") and "Traceback" not in err, err
    return lines[0]


def test_new_and_empty_files_get_the_marker(tmp_path):
    for path in (tmp_path / "new.sqlite", tmp_path / "empty.sqlite"):
        if path.name == "empty.sqlite":
            path.touch()
        with ResultStore(path) as db:
            db.put("k", {"a": 1.5})
            assert db.writable and len(db) == 1 and db.get("k") == {"a": 1.5}
        assert marker(path) == (APPLICATION_ID, SCHEMA_VERSION)
        with ResultStore(path) as db:  # reopened: recognised, rows kept
            assert "k" in db and len(db) == 1


@pytest.mark.parametrize("tables", [("CREATE TABLE users (name TEXT)",),
                                    ("CREATE TABLE results (id INTEGER, score REAL)",
                                     "INSERT INTO results VALUES (1, 2.0)")])
def test_foreign_sqlite_database_is_refused_untouched(tmp_path, capsys, tables):
    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as con:
        for sql in tables:
            con.execute(sql)
    before = digest(path)
    with pytest.raises(ConfigError, match="coda did not create"):
        ResultStore(path)
    assert main([*TINY, "--store", str(path)]) == 2
    line = one_error_line(capsys)
    assert str(path) in line and "refuses to write" in line
    assert digest(path) == before and marker(path) == (0, 0)


def test_text_file_and_other_schema_are_refused_untouched(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, but longer than one hundred bytes " * 3)
    newer = tmp_path / "newer.sqlite"
    ResultStore(newer).close()
    with sqlite3.connect(newer) as con:
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for path, match in ((text, "not an SQLite database"), (newer, "schema version")):
        before = digest(path)
        with pytest.raises(ConfigError, match=match):
            ResultStore(path)
        assert digest(path) == before


def test_damaged_store_is_reported_in_one_line_and_left_as_it_is(tmp_path, capsys):
    path = tmp_path / "runs.sqlite"
    with ResultStore(path) as db:
        for i in range(400):
            db.put(f"key{i:04d}", {"i": i, "payload": "x" * 1000})
    size = path.stat().st_size
    page = 4096
    assert size > 40 * page
    rng = random.Random(12)
    with open(path, "r+b") as fh:  # overwrite the middle pages with garbage
        fh.seek((size // page // 2 - 5) * page)
        fh.write(bytes(rng.randrange(256) for _ in range(10 * page)))
    before = digest(path)
    with pytest.raises(ConfigError, match="is damaged"):
        ResultStore(path)
    assert main([*TINY, "--store", str(path)]) == 2
    line = one_error_line(capsys)
    assert f"store '{path}' is damaged" in line and "left it as it is" in line
    assert path.exists() and digest(path) == before


def test_bad_store_and_plot_paths_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import coda.search.run as run_mod

    def no_work(*args, **kwargs):
        raise AssertionError("a design was evaluated")

    monkeypatch.setattr(run_mod, "evaluate_design", no_work)
    cases = [("--store", str(tmp_path / "missing" / "runs.sqlite"), "does not exist"),
             ("--store", str(tmp_path), "is a directory"),
             ("--plot", str(tmp_path / "missing" / "s.png"), "does not exist"),
             ("--plot", str(tmp_path), "is a directory"),
             ("--plot", str(tmp_path / "s.txt"), "must end in .png")]
    for flag, value, match in cases:
        assert main([*TINY, flag, value]) == 2, (flag, value)
        line = one_error_line(capsys)
        assert match in line and value in line, line
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ConfigError, match="is a directory"):
        check_output_path(tmp_path, "--plot")


@pytest.fixture
def locked_dir():
    """A world-readable directory with a finished store, then made read-only (file 0444, directory 0555)."""
    d = Path(tempfile.mkdtemp(prefix="coda-ro-"))
    os.chmod(d, 0o755)
    assert main([*TINY, "--store", str(d / "runs.sqlite"), "--json"]) == 0
    os.chmod(d / "runs.sqlite", 0o444)
    os.chmod(d, 0o555)
    yield d
    os.chmod(d, 0o755)
    shutil.rmtree(d)


SETPRIV = shutil.which("setpriv")
DROP = "-dac_override,-dac_read_search"


def run_unprivileged(args: list[str]) -> subprocess.CompletedProcess:
    """`coda args` in a process that file permissions apply to (as root: without the capabilities that
    override them, through util-linux `setpriv`)."""
    prefix = [SETPRIV, f"--inh-caps={DROP}", f"--bounding-set={DROP}"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, CODA, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not hasattr(os, "geteuid") or (os.geteuid() == 0 and SETPRIV is None),
                    reason="needs POSIX permissions that apply (as root: setpriv to drop CAP_DAC_OVERRIDE)")
def test_read_only_store_serves_what_it_holds_and_refuses_new_work(locked_dir, capsys):
    capsys.readouterr()
    store = locked_dir / "runs.sqlite"
    before = digest(store)
    held = run_unprivileged([*TINY, "--store", str(store), "--json"])
    assert held.returncode == 0, held.stderr
    assert '"evaluated": 0' in held.stdout
    new = run_unprivileged([*TINY[:-4], "--seq-len", "256", "--timer", "predictor", "--store", str(store)])
    assert new.returncode == 2 and new.stdout == ""
    lines = new.stderr.strip().splitlines()
    assert len(lines) == 1 and "is read-only and this search must evaluate designs" in lines[0], new.stderr
    for flag, path in (("--store", locked_dir / "new.sqlite"), ("--plot", locked_dir / "s.png")):
        out = run_unprivileged([*TINY, flag, str(path)])
        assert out.returncode == 2 and out.stdout == "" and "cannot be" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and not path.exists()
    assert digest(store) == before
