"""Killing `coda search` (SIGKILL, SIGTERM, SIGINT) leaves no process behind, loses no finished design,
and the rerun returns the frame of an uninterrupted run (issue #12)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coda.runs.executors import Terminated, terminate_as_interrupt

CODA = str(Path(sys.executable).with_name("coda"))
# 8 designs, ILP list-scheduling heuristic (deterministic, ~0.5 s per design), every design evaluated
COMMAND = ["search", "--model", "gpt2", "--devices", "16", "--global-batch", "64", "--seq-len", "512",
           "--n-tc", "2,8", "--n-vc", "1,2", "--tc-rows", "64,128", "--tc-cols", "128", "--glb-mib", "32",
           "--min-area-fraction", "0", "--timer", "ilp", "--ilp-time-limit", "0", "--no-prune",
           "--executor", "process", "--workers", "2", "--top", "100"]
N_DESIGNS = 8
N_REFS = 2  # the TPUv4-like and the faithful TPU v4 reference rows, stored like designs


def _default_sigint() -> None:  # a child of a shell job may inherit SIGINT ignored; a terminal's would not
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args, out_dir: Path):
    """`coda *args` in a new session (its pid is the session id); output to files, which surviving workers
    could not hold open the way they would hold a pipe."""
    with open(out_dir / "out.txt", "w") as out, open(out_dir / "err.txt", "w") as err:
        return subprocess.Popen([CODA, *args], stdout=out, stderr=err, start_new_session=True,
                                preexec_fn=_default_sigint)


def finish(proc, out_dir: Path) -> str:
    """Wait for `proc`; its stderr."""
    proc.wait(timeout=60)
    return (out_dir / "err.txt").read_text()


def keys(db: Path) -> set[str]:
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return {r[0] for r in con.execute("SELECT key FROM results")}
    except sqlite3.OperationalError:  # the table is not created yet
        return set()


def session_processes(sid: int) -> list[str]:
    """Live (not zombie) processes of session `sid`, as "pid state cmd" (from /proc/<pid>/stat)."""
    alive = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":  # zombies are dead, waiting for init to reap them
            alive.append(f"{d.name} {fields[0]} {stat[:stat.rindex(')') + 1]}")
    return alive


def comparable(data: dict) -> dict:
    drop = lambda row: {k: v for k, v in row.items() if k != "seconds"}  # noqa: E731
    return dict(top=[drop(r) for r in data["top"]], reference=drop(data["reference"]), infeasible=data["infeasible"],
                summary=data["summary"])


@pytest.fixture(scope="module")
def uninterrupted():
    out = subprocess.run([CODA, *COMMAND, "--json"], capture_output=True, text=True, timeout=300, check=True)
    data = json.loads(out.stdout)
    assert data["counts"]["evaluated"] == N_DESIGNS
    return comparable(data)


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_search_leaves_no_process_keeps_designs_and_resumes(tmp_path, sig, uninterrupted):
    db = tmp_path / "runs.sqlite"
    proc = start([*COMMAND, "--store", str(db)], tmp_path)
    deadline = time.monotonic() + 120
    while len(stored := keys(db)) < N_REFS + 2:  # the references and two designs, while the rest are in flight
        assert proc.poll() is None, finish(proc, tmp_path)
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert len(stored) < N_DESIGNS + N_REFS, "the search finished before it could be interrupted"
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C in a terminal: the whole foreground group
    else:
        os.kill(proc.pid, sig)  # `kill PID`: the parent only
    err = finish(proc, tmp_path)
    deadline = time.monotonic() + 10
    while (left := session_processes(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == [], left
    after = keys(db)
    assert stored <= after  # no finished design lost
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        word, code = ("interrupted", 130) if sig == signal.SIGINT else ("terminated", 143)
        assert proc.returncode == code, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"coda: {word}: ") and "Traceback" not in err, err
        n = int(lines[0].split(": ")[2].split()[0])
        assert lines[0].endswith(f"designs stored in {db}; run the same command to resume")
        assert n <= len(after) <= n + N_REFS  # the designs, and the references that finished
    rerun = subprocess.run([CODA, *COMMAND, "--store", str(db), "--json"], capture_output=True, text=True,
                           timeout=300, check=True)
    data = json.loads(rerun.stdout)
    assert data["counts"]["cached"] >= len(after) - N_REFS and data["counts"]["cached"] + data["counts"]["evaluated"] \
        == N_DESIGNS
    assert comparable(data) == uninterrupted


def test_sigint_without_store_says_nothing_was_kept(tmp_path):
    # 48 designs (~12 s on 2 workers): the search cannot finish before the signal, however idle the machine
    longer = [*COMMAND[:COMMAND.index("--tc-cols")], "--tc-cols", "64,128", "--glb-mib", "32,64,128",
              *COMMAND[COMMAND.index("--min-area-fraction"):]]
    proc = start(longer, tmp_path)
    time.sleep(3)  # imports, the space, the first designs in flight
    os.killpg(proc.pid, signal.SIGINT)
    err = finish(proc, tmp_path)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("coda: interrupted: ") and "designs evaluated and not kept (no --store); add --store" \
        in lines[0], err


def test_terminate_as_interrupt_raises_in_main_thread_and_restores():
    before = signal.getsignal(signal.SIGTERM)
    with terminate_as_interrupt():
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs between bytecodes
    assert signal.getsignal(signal.SIGTERM) is before
