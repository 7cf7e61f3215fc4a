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


def save_figure(fig: Any, path: Any, purpose: str) -> None:
    """Write `fig` to `path` (120 dpi) and close it; a failed write (the path was checked before the
    work, but a disk may still fill or vanish) is a one-line `ConfigError` naming `purpose`."""
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=120)
    except OSError as err:
        raise ConfigError(f"{purpose} {path}: cannot write ({err.strerror or err})") from None
    finally:
        plt.close(fig)
