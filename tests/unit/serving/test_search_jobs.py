"""The serving search's answer does not depend on the executor, the number of workers or the order in
which evaluations finish: speculative evaluations are accepted in bound order with the inline visit's
incumbent, or evaluated again (`coda.serving.search_visit.Visit`)."""

import logging
from concurrent.futures import Future

import pandas as pd
import pytest

import coda.serving.search_visit as sv
from coda.cli import main
from coda.models import get
from coda.serving.capacity import Workload
from coda.serving.search import search
from coda.serving.space import ServingSpace
from coda.serving.trace import Lengths

SLO_ = {"ttft_p99_s": 0.5, "tbt_p99_s": 0.03}
SPACE = ServingSpace(tp=(1, 2), pp=(1, 2), replicas=(1, 2), schedulers=("vllm", "sarathi"), max_batch=(16, 64),
                     chunk=(256, 1024))
WORK = Workload(Lengths("uniform", 64, 512), Lengths("uniform", 8, 64), requests=60, seed=3)
KW = dict(max_devices=4, space=SPACE)


@pytest.fixture(scope="module")
def llama7():
    return get("llama2-7b")


@pytest.fixture(scope="module")
def inline(llama7):
    return search(llama7, ["h100-sxm"], WORK, SLO_, executor="inline", **KW)


class LifoPool:
    """An executor that runs nothing until waited on, then the latest submitted call first: the
    completion order most unlike the inline visit's."""

    def __init__(self):
        self.pending: list[tuple[Future, tuple]] = []

    def submit(self, fn, *args):
        fut: Future = Future()
        self.pending.append((fut, (fn, args)))
        return fut

    def wait(self, fs, return_when=None):
        fut, (fn, args) = next((f, call) for f, call in reversed(self.pending) if f in fs and not f.done())
        fut.set_result(fn(*args))
        return {fut}, set(fs) - {fut}

    def shutdown(self, wait=True, cancel_futures=False):
        pass

    def terminate(self):
        pass


def test_reverse_completion_gives_the_inline_answer(llama7, inline, monkeypatch, caplog):
    pool = LifoPool()
    monkeypatch.setattr(sv.Visit, "_pool", lambda self: pool)
    monkeypatch.setattr(sv, "wait", pool.wait)
    with caplog.at_level(logging.INFO, logger="coda.serving.search_visit"):
        got = search(llama7, ["h100-sxm"], WORK, SLO_, executor="process", workers=3, **KW)
    assert "speculative" in caplog.text  # evaluations with a stale incumbent were redone or dropped
    assert (inline.frame["status"] == "below_best").any() and (inline.frame["status"] == "pruned_bound").any()
    pd.testing.assert_frame_equal(inline.frame, got.frame)
    assert got.counts == inline.counts


def test_cli_jobs_1_and_2_give_the_same_frame(inline, tmp_path, capsys):
    args = ["serve-search", "--model", "llama2-7b", "--gpus", "h100-sxm", "--max-devices", "4",
            "--prompt-dist", "uniform:64:512", "--output-dist", "uniform:8:64", "--requests", "60", "--seed", "3",
            "--slo-ttft-p99", "0.5", "--slo-tbt-p99", "0.03", "--tp", "1,2", "--pp", "1,2", "--replicas", "1,2",
            "--schedulers", "vllm,sarathi", "--max-batch", "16,64", "--chunk", "256,1024"]
    frames, lines = [], []
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}.csv"
        assert main([*args, "--jobs", jobs, "--csv", str(out)]) == 0
        frames.append(pd.read_csv(out))
        lines.append(capsys.readouterr().out.strip().splitlines()[-1].rsplit(" simulations in ", 1)[0])
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert lines[0] == lines[1]  # the sentence too, but for the seconds
    pd.testing.assert_series_equal(frames[0]["status"], inline.frame["status"])


def test_a_store_written_with_two_workers_answers_the_inline_search(llama7, inline, tmp_path):
    db = tmp_path / "serve.sqlite"
    first = search(llama7, ["h100-sxm"], WORK, SLO_, executor="process", workers=2, store=db, **KW)
    again = search(llama7, ["h100-sxm"], WORK, SLO_, executor="inline", store=db, **KW)
    pd.testing.assert_frame_equal(first.frame, inline.frame)
    pd.testing.assert_frame_equal(again.frame, inline.frame)
    assert again.counts["evaluated"] == 0 and again.counts["cached"] == inline.counts["evaluated"]


def test_interrupt_keeps_what_was_accepted_and_resumes_to_the_inline_answer(llama7, inline, tmp_path, monkeypatch):
    from coda.serving.search_result import ServingSearchInterrupted

    real, calls = sv.evaluate_spec, []

    def stop_at_fourth(*args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args)

    db = tmp_path / "serve.sqlite"
    monkeypatch.setattr(sv, "evaluate_spec", stop_at_fourth)
    with pytest.raises(ServingSearchInterrupted, match="3 deployments stored"):
        search(llama7, ["h100-sxm"], WORK, SLO_, executor="inline", store=db, **KW)
    monkeypatch.setattr(sv, "evaluate_spec", real)
    again = search(llama7, ["h100-sxm"], WORK, SLO_, executor="process", workers=2, store=db, **KW)
    assert again.counts["cached"] == 3
    pd.testing.assert_frame_equal(again.frame, inline.frame)
