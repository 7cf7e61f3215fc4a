"""Dataclass field metadata shared by the description types (`ModelConfig`, `Accelerator`, `Layout`, ...)."""

from __future__ import annotations


def help_meta(text: str) -> dict[str, str]:
    """`field(metadata=help_meta("..."))`: the field's one-line description, read by docs and error messages."""
    return {"help": text}


__all__ = ["help_meta"]
