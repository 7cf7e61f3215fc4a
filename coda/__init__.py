"""coda: co-design of LLM accelerators and their distributed execution.

Layers (a lower one never imports a higher one):
models -> arch -> predictor -> ilp -> placement -> evaluate -> search, serving; `coda.runs` (the
result store and the executors) sits below search and serving.

`import coda` is light; each stage is a subpackage loaded on first use:
`coda.models`, `coda.arch`, `coda.predictor`, `coda.ilp`, `coda.placement`, `coda.evaluate`,
`coda.search`, `coda.serving`. Every cache the package keeps is listed by `coda.caches.sizes()`
and emptied by `coda.clear_caches()`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from coda.errors import CodaError, ConfigError, InfeasibleDesign

__version__ = "0.1.0"

SUBPACKAGES = ("models", "arch", "predictor", "ilp", "placement", "evaluate", "search", "serving", "caches")


def clear_caches() -> None:
    """Empty every cache of the package (`coda.caches.sizes()` lists them with their sizes and bounds)."""
    from coda import caches

    caches.clear()


def __getattr__(name: str) -> ModuleType:
    """Import a subpackage (or `coda.caches`) on first access, keeping `import coda` light."""
    if name in SUBPACKAGES:
        return importlib.import_module(f"coda.{name}")
    raise AttributeError(f"module 'coda' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *SUBPACKAGES])


__all__ = ["CodaError", "ConfigError", "InfeasibleDesign", "__version__", "arch", "caches", "clear_caches",
           "evaluate", "ilp", "models", "placement", "predictor", "search", "serving"]
