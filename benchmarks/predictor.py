"""Predictor throughput (targets: >= 50k matmul predictions/s vectorised; a whole llama2-70b
training iteration under 20 ms).

Run: python benchmarks/predictor.py
"""

from __future__ import annotations

import random
import timeit
import warnings

import pandas as pd

from coda import models
from coda.arch.gpus import gpu
from coda.evaluate.iteration import iteration
from coda.models import ops
from coda.predictor import latency
from coda.predictor.gpu_tiles import GPUTileModel

N_OPS = 10_000
SCALAR_OPS = 200  # the scalar loop is slow; time a subset


def random_matmuls(n: int, seed: int = 0) -> list[ops.Op]:
    """Log-uniform GEMM shapes from 16 to 16384 per dimension, batch 1-64, bf16 or fp32."""
    rng = random.Random(seed)

    def dim() -> int:
        return int(2 ** rng.uniform(4, 14))

    return [ops.matmul(dim(), dim(), dim(), batch=rng.choice((1, 1, 1, 8, 64)), dtype=rng.choice(("bf16", "fp32")))
            for _ in range(n)]


def best_of(fn, repeats: int = 5) -> float:  # type: ignore[no-untyped-def]
    return min(timeit.repeat(fn, number=1, repeat=repeats))


def main() -> None:
    h100 = gpu("h100-sxm")
    mm = random_matmuls(N_OPS)
    model = GPUTileModel.default()
    with warnings.catch_warnings():  # GPUTileModel.estimate divides by 0 waves for stream-K picks
        warnings.simplefilter("ignore", RuntimeWarning)
        scalar_s = best_of(lambda: [latency(op, h100) for op in mm[:SCALAR_OPS]], repeats=3)
    vector_s = best_of(lambda: model.predict(mm, h100))
    cfg = models.get("llama2-70b")
    iteration(cfg, h100, 1, 4096, "train")  # warm caches (calibration, GPU catalog)
    iter_s = best_of(lambda: iteration(cfg, h100, 1, 4096, "train"), repeats=10)
    eager_s = best_of(lambda: iteration("gpt2-large", h100, 4, 1024, "train", "fp32", "unfused", "eager"), repeats=10)
    n_ops = sum(g.number_of_nodes() for g, _ in models.build(cfg, "forward", 1, 4096).layers)
    rows = [
        {"benchmark": f"latency() loop, {SCALAR_OPS} random matmuls", "ops/s": round(SCALAR_OPS / scalar_s),
         "time (ms)": round(scalar_s * 1e3, 1), "target": ""},
        {"benchmark": f"GPUTileModel.predict, {N_OPS} random matmuls", "ops/s": round(N_OPS / vector_s),
         "time (ms)": round(vector_s * 1e3, 1), "target": ">= 50000 ops/s"},
        {"benchmark": f"iteration(llama2-70b, h100-sxm, b=1, s=4096, train), {n_ops} distinct fwd ops",
         "ops/s": "", "time (ms)": round(iter_s * 1e3, 1), "target": "< 20 ms"},
        {"benchmark": "iteration(gpt2-large, h100-sxm, b=4, s=1024, train, fp32, eager)", "ops/s": "",
         "time (ms)": round(eager_s * 1e3, 1), "target": ""},
    ]
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
