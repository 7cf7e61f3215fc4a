"""`OpGraph` (one layer's operators and their dependencies) and `ModelGraph` (the layer chain)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import networkx as nx
import pandas as pd

from coda.models.config import ModelConfig
from coda.models.ops import Op
from coda.units import dtype_bytes


class OpGraph(nx.DiGraph):
    """A networkx DiGraph whose nodes are `Op`s; an edge u -> v means v consumes u's output.

    `graph.graph["name"]` names the layer (``"block"``, ``"embedding"``, ``"head"``).
    """

    @property
    def name(self) -> str:
        return str(self.graph.get("name", ""))

    def add(self, op: Op, after: Iterable[Op] = ()) -> Op:
        """Add `op` with edges from each of `after`; returns `op` so calls chain."""
        self.add_node(op)
        for dep in after:
            self.add_edge(dep, op)
        return op

    def ops(self) -> list[Op]:
        """Ops in a deterministic topological order."""
        return list(nx.lexicographical_topological_sort(self, key=lambda op: op.name))

    def by_name(self, name: str) -> Op:
        for op in self.nodes:
            if op.name == name:
                return op
        raise KeyError(name)

    def flops(self, kinds: Iterable[str] | None = None) -> float:
        """Sum of FLOPs, optionally only over some op kinds (e.g. ``("matmul", "attention")``)."""
        keep = None if kinds is None else set(kinds)
        return sum(op.flops for op in self.nodes if keep is None or op.kind in keep)

    def bytes(self) -> float:
        return sum(op.bytes for op in self.nodes)

    def param_bytes(self) -> float:
        return sum(op.param_bytes for op in self.nodes)

    def param_count(self) -> float:
        """Parameters the ops read (their bytes over each op's element size: FP8 GEMMs read 1-byte copies)."""
        return sum(op.param_bytes / dtype_bytes(op.dtype) for op in self.nodes)

    def signature(self) -> str:
        """A content hash (ops and edges), stable across runs: the key for caching schedules."""
        h = hashlib.sha256()
        for op in sorted(self.nodes, key=lambda o: o.name):
            h.update(repr((op.name, op.kind, op.shape, op.dtype)).encode())
        for u, v in sorted((u.name, v.name) for u, v in self.edges):
            h.update(f"{u}->{v};".encode())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class ModelGraph:
    """A model in one phase: the chain of distinct layers, each with how many times it repeats.

    `layers[i] = (OpGraph, repeat)`; e.g. ``[(embedding, 1), (block, 96), (head, 1)]``.
    Totals multiply each layer by its repeat count, so depth costs nothing to build.
    """

    config: ModelConfig
    phase: str
    batch: int
    seq_len: int
    context_len: int
    tp: int
    sequence_parallel: bool
    dtype: str
    attention: str
    layers: tuple[tuple[OpGraph, int], ...]

    def _total(self, per_layer: Any) -> float:
        return float(sum(per_layer(g) * n for g, n in self.layers))

    def flops(self, kinds: Iterable[str] | None = None) -> float:
        """Total FLOPs on one device (after the tensor-parallel split)."""
        kinds = None if kinds is None else tuple(kinds)
        return self._total(lambda g: g.flops(kinds))

    def bytes(self) -> float:
        return self._total(OpGraph.bytes)

    def param_bytes(self) -> float:
        return self._total(OpGraph.param_bytes)

    def param_count(self) -> float:
        return self._total(OpGraph.param_count)

    def ops(self) -> Iterator[tuple[Op, int]]:
        """Every op with its repeat count, in layer order."""
        for g, n in self.layers:
            for op in g.ops():
                yield op, n

    def to_frame(self) -> pd.DataFrame:
        """One row per op: layer, repeat, name, kind, FLOPs, bytes, parameter bytes."""
        rows = [
            dict(layer=g.name, repeat=n, op=op.name, kind=op.kind, flops=op.flops, bytes_read=op.bytes_read,
                 bytes_written=op.bytes_written, param_bytes=op.param_bytes)
            for g, n in self.layers for op in g.ops()
        ]
        return pd.DataFrame(rows)
