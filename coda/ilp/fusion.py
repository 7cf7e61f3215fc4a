"""From a layer `OpGraph` to a scheduling instance (`Problem`): fusion, collectives, latencies.

Steps (`make_problem`):

1. Collectives (TP all-reduce, all-gather, ...) are network operations: they take no core time
   and are excluded from the on-chip schedule. Each is bridged out of the graph (its
   predecessors become predecessors of its successors), so precedence through it is kept; the
   `Schedule` lists it as a zero-length ``network`` entry at the end of its predecessors.
   Placement adds the collective's network time separately.
2. Fusion (optional, on by default, as in PHAZE): a ``matmul`` whose single consumer is an
   ``elementwise`` or ``norm`` op becomes one tensor+vector task that holds one tensor core and
   one vector core for its whole duration (all of both when parallel). Its latency combines the
   two ops' latencies: ``"max"`` (default) assumes the vector core consumes output tiles as the
   tensor core produces them (tile-pipelined epilogue), ``"sum"`` runs them back to back. The
   fused task inherits the consumer's other inputs, so it starts when they are all ready.
3. Each task gets its latency on one core of its type and split across all cores of that type
   (`coda.predictor.base.OpLatency`). An op may run "parallel" (intra-op parallelism) only if
   that is faster (`all_cores_s < one_core_s`): a slower parallel mode is dominated (run it on one
   core at the same start instead: it ends earlier and uses fewer cores), so dropping it keeps
   the schedule optimal. The exhaustive oracle does not use this rule.
4. Precedence between tasks is transitively reduced; heads, tails and lower bounds are derived.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import networkx as nx

from coda.errors import ConfigError, InfeasibleDesign
from coda.models.graph import OpGraph
from coda.predictor.base import OpLatency

TENSOR = "tensor"
VECTOR = "vector"
FUSED = "tensor+vector"
NETWORK = "network"
CORE_TYPES = (TENSOR, VECTOR)
FUSED_LATENCY = ("max", "sum")
FUSABLE_CONSUMERS = ("elementwise", "norm")


@dataclass(frozen=True)
class Task:
    """One schedulable unit: an op, or a fused matmul + consumer.

    Attributes:
        name: the op name, or ``"matmul+consumer"`` for a fused pair.
        members: original op names (one, or two for a fused task).
        core_type: `TENSOR`, `VECTOR` or `FUSED` (one tensor core and one vector core).
        one_core_s: seconds on one core of its type (one of each type when fused).
        all_cores_s: seconds split across all cores of its type(s).
    """

    name: str
    members: tuple[str, ...]
    core_type: str
    one_core_s: float
    all_cores_s: float

    @property
    def uses_tensor(self) -> bool:
        return self.core_type in (TENSOR, FUSED)

    @property
    def uses_vector(self) -> bool:
        return self.core_type in (VECTOR, FUSED)

    @property
    def can_parallel(self) -> bool:
        """Parallel mode is offered only where it is faster (see module doc, step 3)."""
        return self.all_cores_s < self.one_core_s

    def duration(self, parallel: bool) -> float:
        """Seconds in the given mode."""
        return self.all_cores_s if parallel else self.one_core_s

    @property
    def min_duration(self) -> float:
        return min(self.one_core_s, self.all_cores_s) if self.can_parallel else self.one_core_s


@dataclass(frozen=True)
class Problem:
    """A scheduling instance: tasks in topological order, reduced precedence, core counts.

    Attributes:
        tasks: the on-chip tasks, topologically ordered (index = task id).
        edges: transitively reduced precedence ``(i, j)``: j starts after i ends.
        n_tc, n_vc: tensor and vector cores of the design.
        design: the design's name (for messages and traces).
        graph: the original layer graph (the checker replays its edges).
        network: names of excluded collective ops (zero core time).
        task_of: original op name -> task id, for every non-network op.
    """

    tasks: tuple[Task, ...]
    edges: tuple[tuple[int, int], ...]
    n_tc: int
    n_vc: int
    design: str = ""
    graph: OpGraph | None = field(default=None, compare=False, repr=False)
    network: tuple[str, ...] = ()
    task_of: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def n(self) -> int:
        return len(self.tasks)

    def capacity(self, core_type: str) -> int:
        return self.n_tc if core_type == TENSOR else self.n_vc

    @cached_property
    def preds(self) -> tuple[tuple[int, ...], ...]:
        out: list[list[int]] = [[] for _ in self.tasks]
        for i, j in self.edges:
            out[j].append(i)
        return tuple(tuple(sorted(p)) for p in out)

    @cached_property
    def succs(self) -> tuple[tuple[int, ...], ...]:
        out: list[list[int]] = [[] for _ in self.tasks]
        for i, j in self.edges:
            out[i].append(j)
        return tuple(tuple(sorted(s)) for s in out)

    @cached_property
    def ancestors(self) -> tuple[int, ...]:
        """Bitmask of the ancestors of each task (tasks are in topological order)."""
        masks = [0] * self.n
        for j in range(self.n):
            for i in self.preds[j]:
                masks[j] |= masks[i] | (1 << i)
        return tuple(masks)

    def comparable(self, i: int, j: int) -> bool:
        """True if a path joins i and j (in either direction)."""
        return bool(self.ancestors[j] >> i & 1 or self.ancestors[i] >> j & 1)

    @cached_property
    def chains(self) -> tuple[tuple[int, ...], ...]:
        """Chains for the work cuts (13): the articulation tasks, and the longest path (at minimum
        durations) through each task."""
        md = [t.min_duration for t in self.tasks]
        before = [max(self.preds[j], key=lambda p: (self.head[p] + md[p], -p), default=None) for j in range(self.n)]
        after = [max(self.succs[i], key=lambda s: (md[s] + self.tail[s], -s), default=None) for i in range(self.n)]
        out = {tuple(self.articulation)}
        for i in range(self.n):
            path = [i]
            while (b := before[path[0]]) is not None:
                path.insert(0, b)
            while (a := after[path[-1]]) is not None:
                path.append(a)
            out.add(tuple(path))
        return tuple(sorted(out))

    def antichains(self, members: Sequence[int], size: int, limit: int) -> list[tuple[int, ...]]:
        """Every set of `size` pairwise incomparable tasks among `members`; [] if more than `limit`."""
        out: list[tuple[int, ...]] = []

        def grow(chosen: list[int], candidates: list[int]) -> bool:
            if len(chosen) == size:
                out.append(tuple(chosen))
                return len(out) <= limit
            for k, v in enumerate(candidates):
                if not grow(chosen + [v], [w for w in candidates[k + 1:] if not self.comparable(v, w)]):
                    return False
            return True

        return out if grow([], sorted(members)) else []

    @cached_property
    def head(self) -> tuple[float, ...]:
        """Earliest start of each task: longest path from the sources at minimum durations."""
        h = [0.0] * self.n
        for j in range(self.n):
            h[j] = max((h[i] + self.tasks[i].min_duration for i in self.preds[j]), default=0.0)
        return tuple(h)

    @cached_property
    def tail(self) -> tuple[float, ...]:
        """Least time from a task's end to the makespan: longest path to the sinks."""
        q = [0.0] * self.n
        for i in reversed(range(self.n)):
            q[i] = max((self.tasks[j].min_duration + q[j] for j in self.succs[i]), default=0.0)
        return tuple(q)

    @cached_property
    def critical_path_bound_s(self) -> float:
        """Longest path at minimum durations: no schedule is shorter."""
        return max((self.head[i] + t.min_duration + self.tail[i] for i, t in enumerate(self.tasks)), default=0.0)

    @cached_property
    def articulation(self) -> tuple[int, ...]:
        """Tasks comparable with every other task: nothing can run while they run."""
        full = (1 << self.n) - 1
        desc = [0] * self.n
        for j in range(self.n):
            for i in range(self.n):
                if self.ancestors[j] >> i & 1:
                    desc[i] |= 1 << j
        return tuple(i for i in range(self.n) if (self.ancestors[i] | desc[i] | 1 << i) == full)

    def work_bound_s(self, core_type: str) -> float:
        """A lower bound from the work on one core type (see docs/ilp.md, eq. 13).

        Articulation tasks (comparable with all others) run alone; every other task needs, of
        this type's `N` cores, `one_core_s / N` of the time if single on this type, or
        `all_cores_s` if parallel (it runs alone), so the makespan is at least the sum.
        """
        n_cores = self.capacity(core_type)
        if n_cores == 0:
            return 0.0
        alone = set(self.articulation)
        total = 0.0
        for i, t in enumerate(self.tasks):
            uses = t.uses_tensor if core_type == TENSOR else t.uses_vector
            single = t.one_core_s / n_cores if uses else 0.0
            if i in alone:
                total += t.min_duration
            else:
                total += min(single, t.all_cores_s) if t.can_parallel else single
        return total

    @cached_property
    def lower_bound_s(self) -> float:
        """max(critical path, tensor work / n_tc, vector work / n_vc)."""
        return max(self.critical_path_bound_s, self.work_bound_s(TENSOR), self.work_bound_s(VECTOR))

    @cached_property
    def identical_groups(self) -> tuple[tuple[int, ...], ...]:
        """Groups of interchangeable tasks: same core type, latencies, predecessors and successors.

        Any schedule stays valid when two such tasks swap places (and modes), so an order among
        them can be imposed (symmetry breaking, e.g. separate Q, K, V projections or experts).
        """
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, t in enumerate(self.tasks):
            key = (t.core_type, t.one_core_s, t.all_cores_s, self.preds[i], self.succs[i])
            groups.setdefault(key, []).append(i)
        return tuple(tuple(g) for g in groups.values() if len(g) > 1)

    def latency_hash(self) -> str:
        """Hash of every task's type and latencies (exact float reprs) and the core counts."""
        h = hashlib.sha256(f"{self.n_tc},{self.n_vc};".encode())
        for t in self.tasks:
            h.update(repr((t.name, t.core_type, t.one_core_s, t.all_cores_s)).encode())
        return h.hexdigest()[:16]


def _cycle_error(graph: OpGraph) -> ConfigError:
    cycle = nx.find_cycle(graph)
    names = " -> ".join([u.name for u, _ in cycle] + [cycle[0][0].name])
    return ConfigError(f"layer graph {graph.name!r} has a cycle ({names}); an operator graph must be acyclic")


def _checked_latency(name: str, lat: Any) -> OpLatency:
    if lat is None:
        raise ConfigError(f"op {name!r} has no latency; pass an OpLatency for every non-collective op")
    core_type = getattr(lat, "core_type", None)
    if core_type not in CORE_TYPES:
        raise ConfigError(f"op {name!r} has latency core_type={core_type!r}; use 'tensor' or 'vector'")
    for attr in ("one_core_s", "all_cores_s"):
        value = getattr(lat, attr, None)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"op {name!r} has no valid latency on a {core_type} core ({attr}={value!r}); "
                "latencies must be finite seconds >= 0"
            )
    return OpLatency(core_type, float(lat.one_core_s), float(lat.all_cores_s))


def fusion_pairs(graph: OpGraph, latencies: Mapping[str, OpLatency] | None = None) -> list[tuple[str, str]]:
    """Pairs (matmul, consumer) to fuse: a matmul whose only consumer is an elementwise or norm op.

    With `latencies`, a pair is fused only if the matmul runs on a tensor core and the consumer
    on a vector core. Each consumer is fused with at most one matmul (the first in topological
    order). Fusing cannot create a cycle: the matmul has no other successor.
    """
    pairs: list[tuple[str, str]] = []
    taken: set[str] = set()
    for op in graph.ops():
        if op.kind != "matmul" or graph.out_degree(op) != 1:
            continue
        (consumer,) = graph.successors(op)
        if consumer.kind not in FUSABLE_CONSUMERS or consumer.name in taken:
            continue
        if latencies is not None:
            a, b = latencies.get(op.name), latencies.get(consumer.name)
            if getattr(a, "core_type", None) != TENSOR or getattr(b, "core_type", None) != VECTOR:
                continue
        pairs.append((op.name, consumer.name))
        taken.add(consumer.name)
    return pairs


def make_problem(graph: OpGraph, accelerator: Any, latencies: Mapping[str, OpLatency], fuse: bool = True,
                 fused_latency: str = "max") -> Problem:
    """Build the scheduling instance of one layer graph on one design (see module doc).

    Args:
        graph: the layer's operators (forward or backward).
        accelerator: anything with integer `n_tc` and `n_vc` (an `Accelerator`); `name` is optional.
        latencies: op name -> `OpLatency` for every non-collective op.
        fuse: fuse matmul + single elementwise/norm consumer into one tensor+vector task.
        fused_latency: ``"max"`` (tile-pipelined) or ``"sum"`` (back to back).

    Raises:
        ConfigError: a cyclic graph, a missing or invalid latency (names the op), a bad option.
        InfeasibleDesign: the design has no core of a type some op needs (names the field).
    """
    if fused_latency not in FUSED_LATENCY:
        raise ConfigError(f"fused_latency={fused_latency!r} must be one of {', '.join(FUSED_LATENCY)}")
    if not nx.is_directed_acyclic_graph(graph):
        raise _cycle_error(graph)
    design = str(getattr(accelerator, "name", "") or "design")
    cores = _core_counts(accelerator, design)
    ops = graph.ops()
    lat = {op.name: _checked_latency(op.name, latencies.get(op.name)) for op in ops if op.kind != "collective"}
    _check_core_types(ops, lat, cores, design)
    h, network = _bridge_collectives(graph)
    tasks, owner = _fuse(graph, lat, fuse, fused_latency)
    t = nx.DiGraph()
    t.add_nodes_from(tasks)
    t.add_edges_from((owner[u], owner[v]) for u, v in h.edges if owner[u] != owner[v])
    order = list(nx.lexicographical_topological_sort(t))
    index = {name: i for i, name in enumerate(order)}
    reduced = nx.transitive_reduction(t)
    edges = tuple(sorted((index[u], index[v]) for u, v in reduced.edges))
    task_of = {op: index[task] for op, task in owner.items()}
    return Problem(tuple(tasks[n] for n in order), edges, cores["n_tc"], cores["n_vc"], design, graph, network,
                   task_of)


def _core_counts(accelerator: Any, design: str) -> dict[str, int]:
    """The design's `n_tc` and `n_vc`, checked to be whole numbers of cores."""
    cores = {}
    for attr in ("n_tc", "n_vc"):
        value = getattr(accelerator, attr, None)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{design}: {attr}={value!r} must be a whole number of cores")
        cores[attr] = value
    return cores


def _check_core_types(ops: Any, lat: Mapping[str, OpLatency], cores: dict[str, int], design: str) -> None:
    """Every non-collective op has a core of its type on the design."""
    for op in ops:
        if op.kind == "collective":
            continue
        field_name = "n_tc" if lat[op.name].core_type == TENSOR else "n_vc"
        if cores[field_name] < 1:
            raise InfeasibleDesign(
                f"{design}: {field_name}=0 but op {op.name!r} needs a {lat[op.name].core_type} core; "
                f"use a design with {field_name} >= 1"
            )


def _bridge_collectives(graph: OpGraph) -> tuple[nx.DiGraph, tuple[str, ...]]:
    """Step 1: a name-level copy of the graph with the collectives bridged out, and their names."""
    ops = graph.ops()
    h = nx.DiGraph()
    h.add_nodes_from(op.name for op in ops)
    h.add_edges_from((u.name, v.name) for u, v in graph.edges)
    network = tuple(op.name for op in ops if op.kind == "collective")
    for name in network:
        h.add_edges_from((p, s) for p in h.predecessors(name) for s in h.successors(name))
        h.remove_node(name)
    return h, network


def _fuse(graph: OpGraph, lat: Mapping[str, OpLatency], fuse: bool,
          fused_latency: str) -> tuple[dict[str, Task], dict[str, str]]:
    """Step 2: the tasks (fused matmul + consumer pairs, and single ops) and the task owning each op."""
    ops = graph.ops()
    pairs = fusion_pairs(graph, lat) if fuse else []
    owner = {op.name: op.name for op in ops if op.kind != "collective"}
    tasks: dict[str, Task] = {}
    for mm, consumer in pairs:
        name = f"{mm}+{consumer}"
        a, b = lat[mm], lat[consumer]
        comb = max if fused_latency == "max" else (lambda x, y: x + y)
        tasks[name] = Task(name, (mm, consumer), FUSED, comb(a.one_core_s, b.one_core_s),
                           comb(a.all_cores_s, b.all_cores_s))
        owner[mm] = owner[consumer] = name
    for name, target in owner.items():
        if target == name:
            tasks[name] = Task(name, (name,), lat[name].core_type, lat[name].one_core_s, lat[name].all_cores_s)
    return tasks, owner


def roofline_latencies(graph: OpGraph, accelerator: Any) -> dict[str, OpLatency]:
    """Roofline `OpLatency` per op: a predictor-free stand-in for tests, docs and benchmarks.

    One core of a type gets `1/n` of that type's peak and the full HBM bandwidth; all cores get
    the whole peak. `one = max(n * flops / peak, bytes / bw)`, `all = max(flops / peak, bytes / bw)`
    (seconds); matmul and attention on tensor cores, everything else on vector cores.
    """
    from coda.predictor.roofline import TENSOR_KINDS, roofline_time_s

    out = {}
    for op in graph.ops():
        if op.kind == "collective":
            continue
        compute_s, memory_s = roofline_time_s(op, accelerator)
        core_type = TENSOR if op.kind in TENSOR_KINDS else VECTOR
        n = accelerator.n_tc if core_type == TENSOR else accelerator.n_vc
        out[op.name] = OpLatency(core_type, max(n * compute_s, memory_s), max(compute_s, memory_s))
    return out
