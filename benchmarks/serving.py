"""Serving simulator speed and the iteration-cost table's error.

    taskset -c 0 python benchmarks/serving.py [--requests 10000] [--rate 8] [--scheduler sarathi]

Prints the table's build time and its error against direct evaluation on random batches, then
simulated requests per second of wall time for Llama-2-70B on 8 H100s (two replicas of tp=4).
The target (issue #15) is 10,000 requests in under 5 s on one core (`taskset -c 0`).
"""

import argparse
import time

import numpy as np

from coda.arch.clusters import cluster
from coda.models import get
from coda.serving.costs import CostTable, random_shapes, table_error
from coda.serving.deployment import Deployment
from coda.serving.schedulers import SchedulerConfig
from coda.serving.simulate import simulate
from coda.serving.trace import Lengths, generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=8.0, help="arrivals per second")
    ap.add_argument("--scheduler", default="sarathi")
    a = ap.parse_args()
    cfg, cl = get("llama2-70b"), cluster("dgx-h100", 8)
    dep = Deployment(cfg, cl, tp=4, scheduler=SchedulerConfig(kind=a.scheduler, max_batch=256))
    t = time.perf_counter()
    table = CostTable.for_deployment(dep)
    built = time.perf_counter() - t
    err = np.abs(table_error(table, random_shapes(300, 4096, 256, 4096, seed=0)))
    print(f"cost table: built in {built:.2f} s; |error| vs direct on 300 random batches: "
          f"p50 {np.percentile(err, 50):.2e}, p99 {np.percentile(err, 99):.2e}, max {err.max():.2e}")
    trace = generate(a.requests, a.rate, Lengths("uniform", 64, 2048), Lengths("uniform", 16, 512), seed=1)
    t = time.perf_counter()
    r = simulate(dep, trace, cost=table)
    wall = time.perf_counter() - t
    s = r.summary()
    print(f"{dep.describe()}: {a.requests} requests at {a.rate:g}/s simulated in {wall:.2f} s "
          f"({a.requests / wall:.0f} requests/s of wall time; {s['iterations']:.0f} iterations); TTFT p99 "
          f"{s['ttft_p99_s']:.3f} s, TBT p99 {s['tbt_p99_s'] * 1e3:.1f} ms, {s['tokens_per_s']:.0f} tokens/s")


if __name__ == "__main__":
    main()
