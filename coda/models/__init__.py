"""LLM descriptions and their operator graphs.

    cfg = coda.models.get("llama2-7b")            # or from_hf_config("config.json")
    g = coda.models.build(cfg, "forward", batch=8, seq_len=4096, tp=2)
    g.flops(), g.bytes(), [(layer.name, repeat) for layer, repeat in g.layers]
"""

from coda.models import ops
from coda.models.builder import PHASES, build
from coda.models.config import ModelConfig
from coda.models.graph import ModelGraph, OpGraph
from coda.models.hf import from_hf_config, supported_model_types
from coda.models.ops import Op
from coda.models.presets import get, list_presets, preset_source

__all__ = [
    "PHASES", "ModelConfig", "ModelGraph", "Op", "OpGraph", "build", "from_hf_config", "get",
    "list_presets", "ops", "preset_source", "supported_model_types",
]
