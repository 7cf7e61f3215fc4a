"""Model presets: one JSON file per preset in `presets/`, each with its source."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from coda.errors import UnknownNameError
from coda.models.config import ModelConfig


@lru_cache(maxsize=1)
def _catalog() -> dict[str, tuple[ModelConfig, str]]:
    out: dict[str, tuple[ModelConfig, str]] = {}
    for entry in resources.files("coda.models").joinpath("presets").iterdir():
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text())
            cfg = ModelConfig.from_dict(data["config"], source=f"preset {entry.name}")
            out[cfg.name] = (cfg, data["source"])
    return out


def list_presets() -> list[str]:
    """Names of all presets, sorted."""
    return sorted(_catalog())


def preset_source(name: str) -> str:
    """Where a preset's numbers come from."""
    return _catalog()[get(name).name][1]


def get(name: str) -> ModelConfig:
    """A preset by (case-insensitive) name, or a model config JSON file by path.

    Raises:
        UnknownNameError: no such preset; the message suggests the closest names.
    """
    key = name.strip().lower()
    catalog = _catalog()
    if key in catalog:
        return catalog[key][0]
    if name.endswith(".json") and Path(name).is_file():
        from coda.models.hf import load_config_file

        return load_config_file(name)
    raise UnknownNameError("model", name, catalog)
