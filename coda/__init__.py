"""coda: co-design of LLM accelerators and their distributed execution.

Layers (a lower one never imports a higher one):
models -> arch -> predictor -> ilp -> placement -> evaluate -> search.
"""

from coda.errors import CodaError, ConfigError, InfeasibleDesign

__version__ = "0.1.0"

__all__ = ["CodaError", "ConfigError", "InfeasibleDesign", "__version__"]
