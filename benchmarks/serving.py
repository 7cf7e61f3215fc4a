"""Serving simulator and serving-search speed, and the iteration-cost table's error.

    taskset -c 0 python benchmarks/serving.py [--requests 10000] [--rate 8] [--scheduler sarathi] [--no-search]
    python benchmarks/serving.py --no-simulation --workload prompt --jobs 2

Prints the table's build time and its error against direct evaluation on random batches, then
simulated requests per second of wall time for Llama-2-70B on 8 H100s (two replicas of tp=4),
with the CPU seconds of this process (the figure to read on a machine shared with other jobs).
The target (issue #15) is 10,000 requests in under 5 s on one core (`taskset -c 0`).

Then the serving-plan search (`coda.serving.search`) for Llama-2-70B on up to 16 H100s under
P99 TTFT <= 2 s and P99 TBT <= 100 ms, on the prompt-heavy workload (3996 in, 100 out) or the
decode-heavy one (200 in, 2000 out): deployments in the space, evaluated, pruned, simulations,
wall and CPU seconds (this process and its workers) and the load average. The target is at least
200 deployments in under 2 minutes on 2 cores (`--jobs 2`).
"""

import argparse
import os
import resource
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
    ap.add_argument("--simulation", action=argparse.BooleanOptionalAction, default=True,
                    help="time the cost table and the simulator")
    ap.add_argument("--search", action=argparse.BooleanOptionalAction, default=True, help="time the serving search")
    ap.add_argument("--workload", choices=("prompt", "decode"), default="prompt")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--search-requests", dest="search_requests", type=int, default=100,
                    help="requests per replica per capacity simulation")
    a = ap.parse_args()
    if a.simulation:
        simulation_speed(a)
    if a.search:
        search_speed(a)


def search_speed(a: argparse.Namespace) -> None:
    from coda.serving.capacity import Workload
    from coda.serving.search import search

    p, o = (3996, 100) if a.workload == "prompt" else (200, 2000)
    load = os.getloadavg()
    t0 = time.perf_counter()
    c0, k0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    res = search("llama2-70b", ["h100-sxm"], Workload(Lengths("fixed", p), Lengths("fixed", o), a.search_requests),
                 {"ttft_p99_s": 2.0, "tbt_p99_s": 0.1}, max_devices=16, workers=a.jobs)
    wall = time.perf_counter() - t0
    c1, k1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime
           + k1.ru_utime + k1.ru_stime - k0.ru_utime - k0.ru_stime)
    c = res.counts
    print(f"serving search, llama2-70b on up to 16 x h100-sxm, {p} in / {o} out, {a.search_requests} requests per "
          f"replica, {a.jobs} workers: {c['space']} "
          f"deployments ({c['evaluated']} evaluated, {c['pruned_bound']} pruned by the bound, "
          f"{int((res.frame['status'] == 'below_best').sum())} cut below the best, {c['pruned_memory']} by memory), "
          f"{c['simulations']} simulations in {wall:.1f} s wall, {cpu:.1f} s CPU; load average before "
          f"{load[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    print(res.summary())


def simulation_speed(a: argparse.Namespace) -> None:
    cfg, cl = get("llama2-70b"), cluster("dgx-h100", 8)
    dep = Deployment(cfg, cl, tp=4, scheduler=SchedulerConfig(kind=a.scheduler, max_batch=256))
    t = time.process_time()
    table = CostTable.for_deployment(dep)
    built = time.process_time() - t
    err = np.abs(table_error(table, random_shapes(300, 4096, 256, 4096, seed=0)))
    print(f"cost table: built in {built:.2f} s CPU; |error| vs direct on 300 random batches: "
          f"p50 {np.percentile(err, 50):.2e}, p99 {np.percentile(err, 99):.2e}, max {err.max():.2e}")
    trace = generate(a.requests, a.rate, Lengths("uniform", 64, 2048), Lengths("uniform", 16, 512), seed=1)
    t, c = time.perf_counter(), time.process_time()
    r = simulate(dep, trace, cost=table)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    s = r.summary()
    print(f"{dep.describe()}: {a.requests} requests at {a.rate:g}/s simulated in {wall:.2f} s wall, {cpu:.2f} s CPU "
          f"({a.requests / wall:.0f} requests/s of wall time; {s['iterations']:.0f} iterations); TTFT p99 "
          f"{s['ttft_p99_s']:.3f} s, TBT p99 {s['tbt_p99_s'] * 1e3:.1f} ms, {s['tokens_per_s']:.0f} tokens/s")


if __name__ == "__main__":
    main()
