"""Time to build every phase of a model's operator graphs (target: llama3.1-405b under 50 ms).

Run: python benchmarks/graphs.py
"""

from __future__ import annotations

import timeit

import pandas as pd

from coda import models


def bench(name: str, tp: int, seq_len: int, repeats: int = 20) -> dict[str, object]:
    cfg = models.get(name)

    def all_phases() -> None:
        for phase in models.PHASES:
            models.build(cfg, phase, 1, seq_len, tp=tp)

    best_s = min(timeit.repeat(all_phases, number=1, repeat=repeats))
    graphs = [models.build(cfg, p, 1, seq_len, tp=tp) for p in models.PHASES]
    ops = sum(layer.number_of_nodes() for g in graphs for layer, _ in g.layers)
    return {"model": name, "layers": cfg.n_layers, "tp": tp, "phases": len(models.PHASES), "distinct ops": ops,
            f"best of {repeats} (ms)": round(best_s * 1e3, 2)}


def main() -> None:
    rows = [bench(n, tp, 1024) for n in ("gpt2", "llama2-7b", "gpt3-175b", "llama3.1-405b") for tp in (1, 8)
            if models.get(n).n_heads % tp == 0]
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
