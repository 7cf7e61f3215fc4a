"""matplotlib on demand: figures are optional (`pip install coda-llm[plot]`)."""

from __future__ import annotations

from typing import Any

from coda.errors import ConfigError


def pyplot(purpose: str) -> Any:
    """`matplotlib.pyplot` with the non-interactive Agg backend, or a `ConfigError` that says how
    to install it (`purpose` names what needed it, e.g. ``"--plot"``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(f"{purpose} needs matplotlib; install it with `pip install coda-llm[plot]`") from None
    return plt
