"""Design-space search: the best accelerator of a `DesignSpace` for training a model, exactly.

    space = DesignSpace(n_tc=(2, 8), n_vc=(1, 2), tc_rows=(64, 128), tc_cols=(64, 128))
    res = coda.search.search("gpt2", space, n_devices=16, global_batch=64, seq_len=512, store="runs.sqlite")
    res.best, res.frame, res.reference, res.counts()

`run` holds the branch and bound over designs (inline, on a process pool or on Ray), `bounds`
the throughput upper bounds that make it exact, `store` the SQLite result store,
`gpu_reference` GPU rows to compare against (`gpu_reference("gpt2", ["h100-sxm"], 16, 64, 512)`),
`executors` where designs run and how a search ends when interrupted (`SearchInterrupted`),
`summary` the answer as a sentence (`res.summary()`).
Documentation: docs/search.md.

"""

from coda.runs.executors import SearchInterrupted
from coda.runs.store import ResultStore, check_output_path, result_key
from coda.search.bounds import objective_bound, tokens_per_s_bound, training_flops_per_token_lb
from coda.search.gpu_reference import gpu_reference
from coda.search.pareto import pareto_front
from coda.search.run import (
    CLUSTER_PRESET,
    DEFAULT_CHOICES,
    EXECUTORS,
    OBJECTIVES,
    SearchLayerTime,
    SearchResult,
    evaluate_design,
    evaluate_in_worker,
    search,
)

__all__ = [
    "CLUSTER_PRESET", "DEFAULT_CHOICES", "EXECUTORS", "OBJECTIVES", "ResultStore", "SearchInterrupted",
    "SearchLayerTime", "SearchResult", "check_output_path", "evaluate_design", "evaluate_in_worker", "gpu_reference",
    "objective_bound", "pareto_front", "result_key", "search", "tokens_per_s_bound", "training_flops_per_token_lb",
]
