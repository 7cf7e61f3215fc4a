"""Model presets: one JSON file per preset in `presets/`, each with its source."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from coda.errors import ConfigError, UnknownNameError
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


def get(name: str | os.PathLike[str]) -> ModelConfig:
    """A preset by (case-insensitive) name, or a model config JSON file by path.

    A name that is not a preset is read as a file when one exists at that path; a name that
    looks like a path (it has a directory separator or ends in ``.json``) but names no file is
    reported as a missing file, anything else as an unknown preset.

    Raises:
        UnknownNameError: no such preset; the message suggests the closest names.
        ConfigError: not a string or path, an empty name, a missing or unreadable file, or a
            malformed config (`coda.models.hf.load_config_file`).
    """
    from coda.models.hf import load_config_file

    if isinstance(name, os.PathLike):
        return load_config_file(name)
    if not isinstance(name, str):
        raise ConfigError(f"model={name!r} ({type(name).__name__}) must be a preset name (see `coda models list`) "
                          "or the path of a config.json")
    key = name.strip().lower()
    if not key:
        raise ConfigError("model name is empty; give a preset name (see `coda models list`) or the path of a "
                          "config.json")
    catalog = _catalog()
    if key in catalog:
        return catalog[key][0]
    looks_like_path = any(sep in name for sep in ("/", "\\", os.sep)) or key.endswith(".json")
    try:
        exists = Path(name).exists()
    except (OSError, ValueError):  # a name too long for a path, or with a NUL byte
        exists = False
    if exists or looks_like_path:
        return load_config_file(name)
    raise UnknownNameError("model", name, catalog)
